//! A server certificate with its private key, decoded from the forms certificates travel in: PEM
//! bundles and PKCS#12 (PFX) files in every encoding met in practice — OpenSSL 3's PBES2/AES default,
//! OpenSSL's `-legacy` RC2/3DES, and Key Vault's own password-less 3DES export whose MAC uses a
//! zero-length password. Java keytool keystores and Python `cryptography`'s files open too;
//! `tests/compat.rs` holds one row per producer, encryption choice and key type (RSA 2048-4096,
//! EC P-256/P-384). What is not implemented (RC4, DES, MD5, SHA-3 MACs, PBMAC1, ...) fails with
//! [`BundleError::UnsupportedAlgorithm`] naming the algorithm.
//!
//! The crate only decodes; whether a certificate may be served (validity, key match, names) is
//! the `listener` crate's gate.
//!
//! Whatever the input order, a bundle's chain is leaf first, then its issuers towards the root.
//! Its identity is the [`Thumbprint`], the SHA-256 of the leaf, as `openssl x509 -fingerprint
//! -sha256` prints it. Keys never show in `Debug` output or in a [`BundleError`].
//!
//! ```no_run
//! let pfx = std::fs::read("site.pfx")?;
//! let bundle = cert_bundle::CertificateBundle::from_pfx(&pfx, Some("secret"))?;
//! println!("{}", bundle.thumbprint());
//!
//! // A Key Vault certificate's secret value, base64-decoded, opens without a password.
//! let kv = std::fs::read("kv-secret.pfx")?;
//! let bundle = cert_bundle::CertificateBundle::from_pfx(&kv, None)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! `cargo run -p cert-bundle --example inspect -- FILE [PASSWORD]` prints what a file holds.
#![forbid(unsafe_code)]

mod bundle;
mod error;
mod pbe;
mod pem;
mod pfx;

pub use bundle::{CertificateBundle, Thumbprint};
pub use error::{BundleError, Origin, PasswordCheck};
