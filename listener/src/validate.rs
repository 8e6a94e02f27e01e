//! The validation gate: every certificate passes [`validate`] before it is served.

use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;

use cert_bundle::{CertificateBundle, Thumbprint};
use rustls::sign::CertifiedKey;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;
use x509_parser::oid_registry::{
    OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY, OID_NIST_EC_P384, OID_NIST_EC_P521,
    OID_PKCS1_RSAENCRYPTION, OID_SIG_ED25519, OID_SIG_ED448,
};
use x509_parser::prelude::FromDer;
use x509_parser::x509::SubjectPublicKeyInfo;

use crate::error::Rejection;
use crate::hostname::covers;

/// A certificate that passed [`validate`], ready to be installed on a
/// [`ListenerCertificate`](crate::ListenerCertificate), with the facts that logs and the admin API
/// report about it.
///
/// `Debug` shows those facts only: never the key, nor the certificates' bytes.
#[derive(Clone)]
pub struct ValidatedCertificate {
    /// What rustls serves: the chain and a signing key loaded by the ring provider.
    certified_key: Arc<CertifiedKey>,
    thumbprint: Thumbprint,
    subject: String,
    issuer: String,
    dns_names: Vec<String>,
    not_before: i64,
    not_after: i64,
    key: KeyAlgorithm,
}

impl ValidatedCertificate {
    /// The chain and signing key, as handed to rustls on each handshake.
    #[must_use]
    pub fn certified_key(&self) -> &Arc<CertifiedKey> {
        &self.certified_key
    }

    /// SHA-256 of the leaf's DER: the name of this certificate in logs and events.
    #[must_use]
    pub fn thumbprint(&self) -> Thumbprint {
        self.thumbprint
    }

    /// The leaf's subject, such as `CN=www.contoso.com, O=Contoso`.
    #[must_use]
    pub fn subject(&self) -> &str {
        &self.subject
    }

    /// The leaf's issuer.
    #[must_use]
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The leaf's dNSName subject alternative names, as written in the certificate.
    #[must_use]
    pub fn dns_names(&self) -> &[String] {
        &self.dns_names
    }

    /// Start of the leaf's validity, in Unix seconds.
    #[must_use]
    pub fn not_before(&self) -> i64 {
        self.not_before
    }

    /// End of the leaf's validity, in Unix seconds.
    #[must_use]
    pub fn not_after(&self) -> i64 {
        self.not_after
    }

    /// The leaf's key, such as `RSA 2048` or `ECDSA P-256`.
    #[must_use]
    pub fn key(&self) -> &KeyAlgorithm {
        &self.key
    }

    /// How many certificates the chain holds, leaf included.
    #[must_use]
    pub fn chain_len(&self) -> usize {
        self.certified_key.cert.len()
    }
}

impl fmt::Debug for ValidatedCertificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ValidatedCertificate")
            .field("thumbprint", &format_args!("{}", self.thumbprint))
            .field("subject", &self.subject)
            .field("issuer", &self.issuer)
            .field("dns_names", &self.dns_names)
            .field(
                "not_before",
                &format_args!("{}", unix_rfc3339(self.not_before)),
            )
            .field(
                "not_after",
                &format_args!("{}", unix_rfc3339(self.not_after)),
            )
            .field("key", &format_args!("{}", self.key))
            .field("chain_len", &self.chain_len())
            .finish_non_exhaustive()
    }
}

/// The kind and size of a certificate's public key, as far as the gate cares.
///
/// `Display` gives the form used in logs and messages: `RSA 2048`, `ECDSA P-256`, `Ed25519`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyAlgorithm {
    /// RSA with a modulus of this many bits.
    Rsa {
        /// Modulus length in bits.
        bits: usize,
    },
    /// ECDSA over NIST P-256.
    EcdsaP256,
    /// ECDSA over NIST P-384.
    EcdsaP384,
    /// ECDSA over NIST P-521 (refused: many clients do not do it).
    EcdsaP521,
    /// ECDSA over another named curve, by OID.
    EcdsaOther(String),
    /// Ed25519 (refused: browsers do not accept it for server certificates).
    Ed25519,
    /// Ed448 (refused).
    Ed448,
    /// Another algorithm, by OID.
    Other(String),
}

impl KeyAlgorithm {
    /// Whether certificates with this key are served: RSA of at least 2048 bits, or ECDSA
    /// P-256/P-384.
    #[must_use]
    pub fn is_accepted(&self) -> bool {
        match self {
            Self::Rsa { bits } => *bits >= 2048,
            Self::EcdsaP256 | Self::EcdsaP384 => true,
            _ => false,
        }
    }

    fn of(spki: &SubjectPublicKeyInfo<'_>) -> Self {
        let oid = &spki.algorithm.algorithm;
        if *oid == OID_PKCS1_RSAENCRYPTION {
            return match spki.parsed() {
                Ok(x509_parser::public_key::PublicKey::RSA(rsa)) => Self::Rsa {
                    bits: bit_length(rsa.modulus),
                },
                _ => Self::Rsa { bits: 0 },
            };
        }
        if *oid == OID_KEY_TYPE_EC_PUBLIC_KEY {
            let curve = spki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|params| params.as_oid().ok());
            return match curve {
                Some(c) if c == OID_EC_P256 => Self::EcdsaP256,
                Some(c) if c == OID_NIST_EC_P384 => Self::EcdsaP384,
                Some(c) if c == OID_NIST_EC_P521 => Self::EcdsaP521,
                Some(c) => Self::EcdsaOther(c.to_id_string()),
                None => Self::EcdsaOther("explicit or missing curve parameters".to_owned()),
            };
        }
        if *oid == OID_SIG_ED25519 {
            return Self::Ed25519;
        }
        if *oid == OID_SIG_ED448 {
            return Self::Ed448;
        }
        Self::Other(oid.to_id_string())
    }
}

impl fmt::Display for KeyAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Rsa { bits } => write!(f, "RSA {bits}"),
            Self::EcdsaP256 => f.write_str("ECDSA P-256"),
            Self::EcdsaP384 => f.write_str("ECDSA P-384"),
            Self::EcdsaP521 => f.write_str("ECDSA P-521"),
            Self::EcdsaOther(curve) => write!(f, "ECDSA on curve {curve}"),
            Self::Ed25519 => f.write_str("Ed25519"),
            Self::Ed448 => f.write_str("Ed448"),
            Self::Other(oid) => write!(f, "an unsupported key algorithm ({oid})"),
        }
    }
}

/// Bits in a big-endian unsigned integer, ignoring leading zero bytes.
fn bit_length(bytes: &[u8]) -> usize {
    let significant = bytes
        .iter()
        .position(|b| *b != 0)
        .map_or(&[][..], |first| &bytes[first..]);
    match significant.first() {
        Some(top) => significant.len() * 8 - top.leading_zeros() as usize,
        None => 0,
    }
}

/// Decides whether `bundle` may be served by a listener configured with `hostnames`, at `now`.
///
/// The checks, in order, each failing with its own [`Rejection`]:
///
/// 1. every certificate of the chain parses ([`Rejection::Unparsable`] names the index);
/// 2. the leaf is not a CA certificate ([`Rejection::CaAsLeaf`]);
/// 3. the leaf's key is RSA ≥ 2048 bits or ECDSA P-256/P-384 ([`Rejection::WeakKey`]);
/// 4. the private key loads in the ring provider and matches the leaf
///    ([`Rejection::UnusableKey`], [`Rejection::KeyMismatch`], [`Rejection::KeyMatchUnknown`]);
/// 5. the chain is ordered leaf first, each certificate's issuer being the next one's subject
///    ([`Rejection::ChainOrder`]);
/// 6. the leaf is valid at `now` ([`Rejection::Expired`], [`Rejection::NotYetValid`]);
/// 7. the leaf's dNSName subject alternative names cover every configured hostname, per
///    [`covers`] ([`Rejection::HostnameNotCovered`]). With no hostnames this check is skipped.
///
/// Only the leaf's dates are checked: an expired cross-signed root sent for old clients (as
/// Let's Encrypt did until 2024) is the client's business, not a reason to refuse the chain.
/// The chain is not verified against any trust store.
pub fn validate(
    bundle: &CertificateBundle,
    hostnames: &[String],
    now: SystemTime,
) -> Result<ValidatedCertificate, Rejection> {
    let chain = bundle.chain();
    if chain.is_empty() {
        return Err(Rejection::EmptyChain);
    }
    let parsed = chain
        .iter()
        .enumerate()
        .map(
            |(index, der)| match X509Certificate::from_der(der.as_ref()) {
                Ok(([], cert)) => Ok(cert),
                Ok((rest, _)) => Err(Rejection::Unparsable {
                    index,
                    reason: format!("{} unexpected bytes after the certificate", rest.len()),
                }),
                Err(e) => Err(Rejection::Unparsable {
                    index,
                    reason: e.to_string(),
                }),
            },
        )
        .collect::<Result<Vec<_>, _>>()?;
    let leaf = &parsed[0];
    let subject = leaf.subject().to_string();

    if leaf.is_ca() {
        return Err(Rejection::CaAsLeaf { subject });
    }

    let key = KeyAlgorithm::of(leaf.public_key());
    if !key.is_accepted() {
        let found = match key {
            KeyAlgorithm::Rsa { bits } => format!("RSA {bits}-bit"),
            other => other.to_string(),
        };
        return Err(Rejection::WeakKey { found });
    }

    let signing_key = crate::provider()
        .key_provider
        .load_private_key(bundle.private_key().clone_key())
        .map_err(|e| Rejection::UnusableKey {
            reason: e.to_string(),
        })?;
    let certified_key = CertifiedKey::new(chain.to_vec(), signing_key);
    match certified_key.keys_match() {
        Ok(()) => {}
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => {
            return Err(Rejection::KeyMismatch)
        }
        Err(rustls::Error::InconsistentKeys(_)) => return Err(Rejection::KeyMatchUnknown),
        Err(e) => {
            return Err(Rejection::Unparsable {
                index: 0,
                reason: e.to_string(),
            })
        }
    }

    for (index, pair) in parsed.windows(2).enumerate() {
        let (cert, next) = (&pair[0], &pair[1]);
        if cert.issuer().as_raw() != next.subject().as_raw() {
            return Err(Rejection::ChainOrder {
                index,
                issuer: cert.issuer().to_string(),
                next_subject: next.subject().to_string(),
            });
        }
    }

    let now = OffsetDateTime::from(now);
    let validity = leaf.validity();
    let (not_before, not_after) = (
        validity.not_before.to_datetime(),
        validity.not_after.to_datetime(),
    );
    if now > not_after {
        return Err(Rejection::Expired {
            not_after: rfc3339(not_after),
            now: rfc3339(now),
        });
    }
    if now < not_before {
        return Err(Rejection::NotYetValid {
            not_before: rfc3339(not_before),
            now: rfc3339(now),
        });
    }

    let dns_names = dns_names(leaf)?;
    for hostname in hostnames {
        if !dns_names.iter().any(|name| covers(name, hostname)) {
            return Err(Rejection::HostnameNotCovered {
                hostname: hostname.clone(),
                dns_names,
            });
        }
    }

    Ok(ValidatedCertificate {
        certified_key: Arc::new(certified_key),
        thumbprint: bundle.thumbprint(),
        subject,
        issuer: leaf.issuer().to_string(),
        dns_names,
        not_before: not_before.unix_timestamp(),
        not_after: not_after.unix_timestamp(),
        key,
    })
}

fn dns_names(leaf: &X509Certificate<'_>) -> Result<Vec<String>, Rejection> {
    let san = leaf
        .subject_alternative_name()
        .map_err(|e| Rejection::Unparsable {
            index: 0,
            reason: format!("subject alternative names: {e}"),
        })?;
    Ok(san
        .map(|ext| {
            ext.value
                .general_names
                .iter()
                .filter_map(|name| match name {
                    GeneralName::DNSName(dns) => Some((*dns).to_owned()),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default())
}

fn rfc3339(at: OffsetDateTime) -> String {
    at.format(&Rfc3339).unwrap_or_else(|_| at.to_string())
}

fn unix_rfc3339(secs: i64) -> String {
    OffsetDateTime::from_unix_timestamp(secs).map_or_else(|_| secs.to_string(), rfc3339)
}

#[cfg(test)]
mod tests {
    use super::bit_length;

    #[test]
    fn bit_length_ignores_leading_zeros() {
        assert_eq!(bit_length(&[]), 0);
        assert_eq!(bit_length(&[0, 0]), 0);
        assert_eq!(bit_length(&[1]), 1);
        assert_eq!(bit_length(&[0, 0x80, 0]), 16);
        assert_eq!(bit_length(&[0x7f, 0xff]), 15);
    }
}
