//! Errors of decoding a certificate bundle.
//!
//! Every message is one line that names the input and what is wrong with it. None ever carries
//! key bytes, PFX bytes or a password: the details come from our own wording or from the
//! structural errors of `der`/`x509-parser`, which report tags, lengths and offsets only.

use std::fmt;

/// Which kind of input an error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Origin {
    /// [`CertificateBundle::from_pem`](crate::CertificateBundle::from_pem).
    Pem,
    /// [`CertificateBundle::from_pfx`](crate::CertificateBundle::from_pfx).
    Pkcs12,
    /// [`CertificateBundle::new`](crate::CertificateBundle::new): parts already decoded.
    Parts,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Pem => "the PEM bundle",
            Self::Pkcs12 => "the PKCS#12 file",
            Self::Parts => "the certificate chain",
        })
    }
}

impl Origin {
    fn no_key_hint(self) -> &'static str {
        match self {
            Self::Pem => {
                " (expected a PKCS#8 \"PRIVATE KEY\", PKCS#1 \"RSA PRIVATE KEY\" or SEC1 \"EC PRIVATE KEY\" block)"
            }
            // Key Vault exports a certificate without its key when the key is not exportable.
            Self::Pkcs12 => {
                " (non-exportable or HSM-protected keys cannot be served)"
            }
            Self::Parts => "",
        }
    }
}

/// What was being checked when a PKCS#12 password was found wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PasswordCheck {
    /// The integrity MAC over the whole file.
    Mac,
    /// Decrypting the shrouded private-key bag.
    KeyBag,
    /// Decrypting the encrypted certificate contents.
    Certificates,
}

impl fmt::Display for PasswordCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Mac => "the MAC check failed",
            Self::KeyBag => "the private-key bag did not decrypt",
            Self::Certificates => "the certificate contents did not decrypt",
        })
    }
}

/// Why a certificate bundle could not be decoded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BundleError {
    /// The input holds no certificate (or [`CertificateBundle::new`](crate::CertificateBundle::new)
    /// was given an empty chain).
    #[error("{origin} holds no certificate")]
    NoCertificate { origin: Origin },

    /// The input holds no private key.
    #[error("{origin} holds no private key{}", origin.no_key_hint())]
    NoPrivateKey { origin: Origin },

    /// The input holds more than one private key, so which one serves is ambiguous.
    #[error("{origin} holds {count} private keys; exactly one is expected")]
    MultiplePrivateKeys { origin: Origin, count: usize },

    /// The PEM bundle's key is password-protected; the gateway only takes plain keys in PEM.
    #[error(
        "the PEM bundle holds an encrypted private key, which is not supported; \
         decrypt it first (e.g. `openssl pkey -in key.pem -out plain-key.pem`) or use a PKCS#12 file"
    )]
    EncryptedPemKey,

    /// The PEM text itself is broken (bad base64, a section without its END line, ...).
    #[error("malformed PEM: {detail}")]
    MalformedPem { detail: String },

    /// A certificate is not valid X.509 DER. `index` counts from 1 in input order.
    #[error("certificate #{index} in {origin} is not valid X.509 DER: {detail}")]
    MalformedCertificate {
        origin: Origin,
        index: usize,
        detail: String,
    },

    /// The private key is not valid DER of the format it claims.
    #[error("the private key in {origin} is not valid {format} DER: {detail}")]
    MalformedPrivateKey {
        origin: Origin,
        format: &'static str,
        detail: String,
    },

    /// The PKCS#12 structure is truncated or malformed; `location` says where.
    #[error("not a valid PKCS#12 file: {location}: {detail}")]
    MalformedPfx { location: String, detail: String },

    /// The PKCS#12 password is wrong. `empty_password_tried` says the empty password was tried
    /// in both of its encodings (zero-length and the BMPString `""`, `00 00`).
    #[error(
        "wrong password for the PKCS#12 file: {check} with {}",
        if *.empty_password_tried {
            "the empty password (tried both as zero-length and as BMPString \"\")"
        } else {
            "the given password"
        }
    )]
    WrongPassword {
        check: PasswordCheck,
        empty_password_tried: bool,
    },

    /// An algorithm or content type this crate does not implement.
    #[error("unsupported {what} in the PKCS#12 file: OID {oid}{}", name.map(|n| format!(" ({n})")).unwrap_or_default())]
    UnsupportedAlgorithm {
        what: &'static str,
        oid: String,
        name: Option<&'static str>,
    },

    /// A thumbprint string is not 32 bytes of hex.
    #[error("invalid thumbprint: {reason}")]
    InvalidThumbprint { reason: String },
}

impl BundleError {
    pub(crate) fn malformed_pfx(location: impl Into<String>, detail: impl fmt::Display) -> Self {
        Self::MalformedPfx {
            location: location.into(),
            detail: detail.to_string(),
        }
    }
}
