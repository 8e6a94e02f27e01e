//! A server certificate with its private key, decoded from the forms certificates travel in: PEM
//! bundles and PKCS#12 (PFX) files in every encoding met in practice — OpenSSL 3's PBES2/AES default,
//! OpenSSL's `-legacy` RC2/3DES, and Key Vault's own password-less 3DES export whose MAC uses a
//! zero-length password.
//!
//! The crate only decodes; whether a certificate may be served is the `listener` crate's gate.
//!
//! ```no_run
//! let pfx = std::fs::read("site.pfx")?;
//! let bundle = cert_bundle::CertificateBundle::from_pfx(&pfx, Some("secret"))?;
//! println!("{}", bundle.thumbprint());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![forbid(unsafe_code)]

mod bundle;
mod error;
mod pbe;
mod pem;
mod pfx;

pub use bundle::{CertificateBundle, Thumbprint};
pub use error::{BundleError, Origin, PasswordCheck};
