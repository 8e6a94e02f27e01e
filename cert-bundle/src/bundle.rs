//! The decoded bundle and its identity (the SHA-256 thumbprint of the leaf).

use std::fmt;
use std::str::FromStr;

use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use sha2::{Digest, Sha256};

use crate::error::{BundleError, Origin};
use crate::{pem, pfx};

/// A certificate chain, leaf first, and the leaf's private key.
///
/// `Debug` never shows the key: it prints the thumbprint and the chain length only.
pub struct CertificateBundle {
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

impl CertificateBundle {
    /// Bundles decoded parts. The chain must be non-empty; it is normalised leaf first (see
    /// [`from_pem`](Self::from_pem)).
    pub fn new(
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
    ) -> Result<Self, BundleError> {
        let chain = normalise(chain, None, Origin::Parts)?;
        Ok(Self { chain, key })
    }

    /// Decodes PEM text: certificates in any order and exactly one private key (PKCS#8, PKCS#1
    /// RSA or SEC1 EC). Other PEM blocks are ignored.
    ///
    /// The leaf is the certificate that issued none of the others (a non-CA one when there is a
    /// choice); the chain then follows issuer links up to the root, and certificates that link to
    /// nothing come last. Exact duplicates are dropped.
    pub fn from_pem(pem: &[u8]) -> Result<Self, BundleError> {
        let (chain, key) = pem::decode(pem)?;
        let chain = normalise(chain, None, Origin::Pem)?;
        Ok(Self { chain, key })
    }

    /// Decodes a PKCS#12 (PFX) file.
    ///
    /// `None` and `Some("")` both try the two encodings of an empty password — zero-length (as
    /// Windows and Key Vault write it) and the BMPString `""`, `00 00` (as OpenSSL writes it) —
    /// for the MAC and for decryption. A non-empty password is used as given.
    ///
    /// The leaf is the certificate whose `localKeyID` matches the key's; without one, the chain
    /// is ordered as in [`from_pem`](Self::from_pem).
    pub fn from_pfx(der: &[u8], password: Option<&str>) -> Result<Self, BundleError> {
        let contents = pfx::decode(der, password)?;
        if contents.certificates.is_empty() {
            return Err(BundleError::NoCertificate {
                origin: Origin::Pkcs12,
            });
        }
        let mut keys = contents.keys;
        let (key, key_id) = match keys.len() {
            0 => {
                return Err(BundleError::NoPrivateKey {
                    origin: Origin::Pkcs12,
                })
            }
            1 => keys.remove(0),
            count => {
                return Err(BundleError::MultiplePrivateKeys {
                    origin: Origin::Pkcs12,
                    count,
                })
            }
        };
        let leaf = key_id.and_then(|key_id| {
            contents
                .certificates
                .iter()
                .position(|(_, cert_id)| cert_id.as_ref() == Some(&key_id))
        });
        let chain = contents
            .certificates
            .into_iter()
            .map(|(der, _)| CertificateDer::from(der))
            .collect();
        let chain = normalise(chain, leaf, Origin::Pkcs12)?;
        Ok(Self {
            chain,
            key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key)),
        })
    }

    /// The chain, leaf first.
    pub fn chain(&self) -> &[CertificateDer<'static>] {
        &self.chain
    }

    pub fn leaf(&self) -> &CertificateDer<'static> {
        &self.chain[0]
    }

    pub fn private_key(&self) -> &PrivateKeyDer<'static> {
        &self.key
    }

    /// SHA-256 of the leaf's DER.
    pub fn thumbprint(&self) -> Thumbprint {
        Thumbprint::of(self.leaf())
    }

    pub fn into_parts(self) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
        (self.chain, self.key)
    }
}

impl Clone for CertificateBundle {
    fn clone(&self) -> Self {
        Self {
            chain: self.chain.clone(),
            key: self.key.clone_key(),
        }
    }
}

impl fmt::Debug for CertificateBundle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertificateBundle")
            .field("thumbprint", &self.thumbprint())
            .field("chain_len", &self.chain.len())
            .finish_non_exhaustive()
    }
}

/// What the ordering needs to know of a certificate.
struct Parsed {
    subject: Vec<u8>,
    issuer: Vec<u8>,
    is_ca: bool,
}

/// Puts the leaf first and follows issuer links towards the root; leftovers go last in input
/// order. `leaf` (an index into `chain`) overrides the guess of which certificate is the leaf.
fn normalise(
    chain: Vec<CertificateDer<'static>>,
    leaf: Option<usize>,
    origin: Origin,
) -> Result<Vec<CertificateDer<'static>>, BundleError> {
    if chain.is_empty() {
        return Err(BundleError::NoCertificate { origin });
    }
    let mut parsed = Vec::with_capacity(chain.len());
    for (i, cert) in chain.iter().enumerate() {
        let malformed = |detail: String| BundleError::MalformedCertificate {
            origin,
            index: i + 1,
            detail,
        };
        let (rest, x509) =
            x509_parser::parse_x509_certificate(cert).map_err(|e| malformed(e.to_string()))?;
        if !rest.is_empty() {
            return Err(malformed(format!(
                "{} bytes after the certificate",
                rest.len()
            )));
        }
        parsed.push(Parsed {
            subject: x509.subject().as_raw().to_vec(),
            issuer: x509.issuer().as_raw().to_vec(),
            is_ca: x509.is_ca(),
        });
    }

    // Drop exact duplicates, keeping the first, and carry the leaf choice across.
    let leaf_der = leaf.map(|i| chain[i].clone());
    let mut certs: Vec<(CertificateDer<'static>, Parsed)> = Vec::with_capacity(chain.len());
    for (cert, p) in chain.into_iter().zip(parsed) {
        if !certs.iter().any(|(seen, _)| *seen == cert) {
            certs.push((cert, p));
        }
    }
    let leaf = leaf_der.and_then(|der| certs.iter().position(|(c, _)| *c == der));

    let issued_another = |i: usize| {
        certs
            .iter()
            .enumerate()
            .any(|(j, (_, other))| j != i && other.issuer == certs[i].1.subject)
    };
    let leaf = leaf.unwrap_or_else(|| {
        let candidates: Vec<usize> = (0..certs.len()).filter(|&i| !issued_another(i)).collect();
        candidates
            .iter()
            .copied()
            .find(|&i| !certs[i].1.is_ca)
            .or(candidates.first().copied())
            // Only a cycle of cross-signed CAs has no candidate; keep the input order then.
            .unwrap_or(0)
    });

    let mut used = vec![false; certs.len()];
    let mut order = vec![leaf];
    used[leaf] = true;
    let mut current = leaf;
    while certs[current].1.issuer != certs[current].1.subject {
        let Some(next) =
            (0..certs.len()).find(|&j| !used[j] && certs[j].1.subject == certs[current].1.issuer)
        else {
            break;
        };
        used[next] = true;
        order.push(next);
        current = next;
    }
    order.extend((0..certs.len()).filter(|&j| !used[j]));

    let mut slots: Vec<Option<CertificateDer<'static>>> =
        certs.into_iter().map(|(cert, _)| Some(cert)).collect();
    Ok(order.into_iter().filter_map(|i| slots[i].take()).collect())
}

/// SHA-256 over the DER of a leaf certificate: how the gateway names a certificate everywhere
/// (logs, events, admin API), and what `openssl x509 -fingerprint -sha256` prints.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Thumbprint(pub [u8; 32]);

impl Thumbprint {
    /// The thumbprint of a certificate's DER.
    pub fn of(der: &[u8]) -> Self {
        Self(Sha256::digest(der).into())
    }

    /// Parses 64 hex digits, in either case, optionally separated by `:` as OpenSSL prints them.
    pub fn from_hex(s: &str) -> Result<Self, BundleError> {
        let digits: String = s.trim().chars().filter(|&c| c != ':').collect();
        let invalid = |reason: String| BundleError::InvalidThumbprint { reason };
        if digits.len() != 64 {
            return Err(invalid(format!(
                "expected 64 hex digits (SHA-256), found {}",
                digits.len()
            )));
        }
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(&digits, &mut bytes)
            .map_err(|_| invalid("contains a character that is not a hex digit".into()))?;
        Ok(Self(bytes))
    }
}

impl FromStr for Thumbprint {
    type Err = BundleError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::from_hex(s)
    }
}

impl fmt::Display for Thumbprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode_upper(self.0))
    }
}

impl fmt::Debug for Thumbprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}
