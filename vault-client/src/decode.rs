//! A certificate's secret value turned into a [`CertificateBundle`].

use base64::Engine as _;
use cert_bundle::{BundleError, CertificateBundle};

/// The two content types Key Vault gives a certificate's secret.
pub const PKCS12_CONTENT_TYPE: &str = "application/x-pkcs12";
/// See [`PKCS12_CONTENT_TYPE`].
pub const PEM_CONTENT_TYPE: &str = "application/x-pem-file";

/// How a value was (to be) read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    Pkcs12,
    Pem,
}

impl Format {
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Pkcs12 => PKCS12_CONTENT_TYPE,
            Format::Pem => PEM_CONTENT_TYPE,
        }
    }
}

/// Why a value did not decode.
#[derive(Debug)]
pub(crate) enum DecodeError {
    /// The value holds certificates but no private key.
    NoPrivateKey,
    /// The content type is neither, and sniffing the value did not find a certificate either.
    Unsupported,
    /// The value is broken; the text never holds value bytes.
    Invalid { read_as: String, detail: String },
}

/// The format a content type names: `Ok(Some)` for PKCS#12 and PEM, `Ok(None)` when it says
/// nothing (absent, empty, `application/octet-stream`, `text/plain`), `Err` for anything else.
fn format_of(content_type: Option<&str>) -> Result<Option<Format>, ()> {
    let Some(ct) = content_type else {
        return Ok(None);
    };
    let essence = ct
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    match essence.as_str() {
        "" | "application/octet-stream" | "text/plain" => Ok(None),
        "application/x-pkcs12" | "application/pkcs12" | "application/x-pfx" => {
            Ok(Some(Format::Pkcs12))
        }
        "application/x-pem-file" | "application/x-pem" | "application/pem-certificate-chain" => {
            Ok(Some(Format::Pem))
        }
        _ => Err(()),
    }
}

/// PEM text starts with a `-----BEGIN` line; anything else is taken for base64 PKCS#12.
fn sniff(value: &str) -> Format {
    if value.trim_start().starts_with("-----BEGIN") {
        Format::Pem
    } else {
        Format::Pkcs12
    }
}

/// Decodes `value` as `content_type` says; returns the bundle and the format it was read as.
pub(crate) fn decode(
    value: &str,
    content_type: Option<&str>,
) -> Result<(CertificateBundle, Format), DecodeError> {
    let format = match format_of(content_type) {
        Ok(Some(format)) => format,
        Ok(None) => sniff(value),
        Err(()) => {
            // A content type set by hand may still hold a certificate; refuse only if it does not.
            let format = sniff(value);
            return match read(value, format) {
                Ok(bundle) => {
                    tracing::warn!(
                        content_type = content_type.unwrap_or_default(),
                        "the secret's content type is not application/x-pkcs12 or application/x-pem-file, \
                         but its value is a {}; using it",
                        format.content_type()
                    );
                    Ok((bundle, format))
                }
                Err(DecodeError::NoPrivateKey) => Err(DecodeError::NoPrivateKey),
                Err(_) => Err(DecodeError::Unsupported),
            };
        }
    };
    read(value, format).map(|bundle| (bundle, format))
}

fn read(value: &str, format: Format) -> Result<CertificateBundle, DecodeError> {
    let bundle = match format {
        Format::Pem => CertificateBundle::from_pem(value.as_bytes()),
        Format::Pkcs12 => {
            let compact: String = value.chars().filter(|c| !c.is_ascii_whitespace()).collect();
            let der = base64::engine::general_purpose::STANDARD
                .decode(compact.as_bytes())
                .or_else(|_| {
                    base64::engine::general_purpose::STANDARD_NO_PAD.decode(compact.as_bytes())
                })
                .map_err(|_| DecodeError::Invalid {
                    read_as: "base64 PKCS#12".to_owned(),
                    detail: "the value is not valid base64".to_owned(),
                })?;
            CertificateBundle::from_pfx(&der, None)
        }
    };
    bundle.map_err(|e| match e {
        BundleError::NoPrivateKey { .. } => DecodeError::NoPrivateKey,
        other => DecodeError::Invalid {
            read_as: match format {
                Format::Pem => "PEM".to_owned(),
                Format::Pkcs12 => "base64 PKCS#12".to_owned(),
            },
            detail: other.to_string(),
        },
    })
}
