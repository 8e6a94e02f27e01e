//! Reading a listener's certificate from where its config says it lives.

use std::path::Path;

use cert_bundle::CertificateBundle;

use crate::config::CertificateSource;

/// A certificate source could not be read or decoded. The message names the file and what is wrong,
/// and never contains a password or key bytes.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Decode {
        path: String,
        #[source]
        source: cert_bundle::BundleError,
    },
    #[error("{path}: the password environment variable `{var}` is not set")]
    MissingPassword { path: String, var: String },
    #[error("{0} is a Key Vault secret, not a file")]
    NotAFile(String),
}

/// Reads and decodes a file certificate source. Blocking (file I/O and PKCS#12 key derivation): call it
/// from `spawn_blocking` inside the actix system.
pub fn load(source: &CertificateSource) -> Result<CertificateBundle, SourceError> {
    match source {
        CertificateSource::Pem { pem_file } => {
            let bytes = read(pem_file)?;
            CertificateBundle::from_pem(&bytes).map_err(|source| SourceError::Decode {
                path: pem_file.display().to_string(),
                source,
            })
        }
        CertificateSource::Pfx {
            pfx_file,
            password_env,
        } => {
            let password = match password_env {
                Some(var) => {
                    Some(
                        std::env::var(var).map_err(|_| SourceError::MissingPassword {
                            path: pfx_file.display().to_string(),
                            var: var.clone(),
                        })?,
                    )
                }
                None => None,
            };
            let bytes = read(pfx_file)?;
            CertificateBundle::from_pfx(&bytes, password.as_deref()).map_err(|source| {
                SourceError::Decode {
                    path: pfx_file.display().to_string(),
                    source,
                }
            })
        }
        CertificateSource::KeyVault {
            key_vault_secret_id,
        } => Err(SourceError::NotAFile(key_vault_secret_id.clone())),
    }
}

fn read(path: &Path) -> Result<Vec<u8>, SourceError> {
    std::fs::read(path).map_err(|source| SourceError::Read {
        path: path.display().to_string(),
        source,
    })
}
