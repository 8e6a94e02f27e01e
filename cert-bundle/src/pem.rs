//! PEM bundles: certificates in any order plus exactly one private key.

use der::{AnyRef, Decode, Tag, Tagged};
use rustls_pki_types::pem::{self, PemObject, SectionKind};
use rustls_pki_types::{
    CertificateDer, PrivateKeyDer, PrivatePkcs1KeyDer, PrivatePkcs8KeyDer, PrivateSec1KeyDer,
};

use crate::error::{BundleError, Origin};

/// The certificates in file order and the single private key.
pub(crate) fn decode(
    text: &[u8],
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), BundleError> {
    if !contains(text, b"-----BEGIN ") {
        return Err(BundleError::MalformedPem {
            detail: "no \"-----BEGIN ...-----\" line found".into(),
        });
    }
    // A legacy-encrypted PKCS#1/SEC1 key has headers the base64 decoder would trip over; say
    // what it is instead of reporting bad base64.
    if contains(text, b"Proc-Type: 4,ENCRYPTED") {
        return Err(BundleError::EncryptedPemKey);
    }

    let mut certificates = Vec::new();
    let mut keys = Vec::new();
    for section in <(SectionKind, Vec<u8>) as PemObject>::pem_slice_iter(text) {
        let (kind, der) = section.map_err(pem_error)?;
        match kind {
            SectionKind::Certificate => certificates.push(CertificateDer::from(der)),
            SectionKind::PrivateKey => {
                pkcs8::PrivateKeyInfo::try_from(der.as_slice())
                    .map_err(|e| malformed_key("PKCS#8", e))?;
                keys.push(PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(der)));
            }
            SectionKind::RsaPrivateKey => {
                check_sequence(&der, "PKCS#1")?;
                keys.push(PrivateKeyDer::Pkcs1(PrivatePkcs1KeyDer::from(der)));
            }
            SectionKind::EcPrivateKey => {
                check_sequence(&der, "SEC1")?;
                keys.push(PrivateKeyDer::Sec1(PrivateSec1KeyDer::from(der)));
            }
            // Public keys, CRLs, CSRs, parameters: not part of what a server serves.
            _ => {}
        }
    }

    if certificates.is_empty() {
        return Err(BundleError::NoCertificate {
            origin: Origin::Pem,
        });
    }
    match keys.len() {
        0 if contains(text, b"-----BEGIN ENCRYPTED PRIVATE KEY-----") => {
            Err(BundleError::EncryptedPemKey)
        }
        0 => Err(BundleError::NoPrivateKey {
            origin: Origin::Pem,
        }),
        1 => Ok((certificates, keys.remove(0))),
        count => Err(BundleError::MultiplePrivateKeys {
            origin: Origin::Pem,
            count,
        }),
    }
}

/// PKCS#1 and SEC1 keys get a structural check only; the signer that loads them checks the rest.
fn check_sequence(der: &[u8], format: &'static str) -> Result<(), BundleError> {
    let any = AnyRef::from_der(der).map_err(|e| malformed_key(format, e))?;
    if any.tag() != Tag::Sequence {
        return Err(malformed_key(
            format,
            format!("expected SEQUENCE, found {}", any.tag()),
        ));
    }
    Ok(())
}

fn malformed_key(format: &'static str, detail: impl std::fmt::Display) -> BundleError {
    BundleError::MalformedPrivateKey {
        origin: Origin::Pem,
        format,
        detail: detail.to_string(),
    }
}

/// The PEM parser's own messages can quote input (an offending line, a base64 error naming a
/// byte), which may be key material; only our wording is passed on.
fn pem_error(error: pem::Error) -> BundleError {
    let detail = match error {
        pem::Error::MissingSectionEnd { end_marker } => format!(
            "a section has no END line (expected {:?})",
            String::from_utf8_lossy(&end_marker)
        ),
        pem::Error::IllegalSectionStart { .. } => "a BEGIN line is malformed".to_owned(),
        pem::Error::Base64Decode(_) => "a section's base64 body does not decode".to_owned(),
        pem::Error::SectionTooLarge => "a section is larger than 256 MB".to_owned(),
        _ => "the text is not valid PEM".to_owned(),
    };
    BundleError::MalformedPem { detail }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}
