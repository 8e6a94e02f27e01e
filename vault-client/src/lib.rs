//! The Azure Key Vault data plane over HTTPS, as much of it as serving a certificate needs:
//! identifier parsing, challenge-based auth, retries, error classes, and turning a certificate's
//! secret into a [`cert_bundle::CertificateBundle`].
//!
//! # Identifiers
//!
//! [`SecretId`] parses `https://{vault}.vault.azure.net/secrets/{name}[/{version}]` and
//! `…/certificates/{name}[/{version}]` (read through the certificate's secret, which has the same
//! name and version) in the public, China, US Government and (retired) Germany clouds. Managed HSM
//! hosts are refused (they hold keys only), and so is plain http. A development vault such as the
//! emulator's `localhost:8443` is accepted only when listed in the allowed hosts
//! ([`SecretId::parse_with_allowed_hosts`], [`VaultClientConfig::allowed_hosts`]).
//!
//! # Fetching
//!
//! [`VaultClient::fetch_certificate`] sends `GET {vault}/secrets/{name}[/{version}]?api-version=7.5`
//! ([`API_VERSION`]) and decodes the value: base64 PKCS#12 (`application/x-pkcs12`, Key Vault's
//! own password-less PFX) or PEM (`application/x-pem-file`). The chain comes leaf first. A value
//! without a private key — a non-exportable or HSM-backed key — is refused.
//!
//! Authentication works as in the Azure SDKs: the first request to a vault carries no token; its
//! `401` `WWW-Authenticate: Bearer authorization="…/{tenant}", resource="https://vault.azure.net"`
//! (or `authorization_uri=`, `scope=`) names the scope, which must be a parent domain of the vault's
//! host (unless the host is an allowed development host); the request is then repeated with a
//! token for that scope from the [`identity::TokenCache`], and the challenge is remembered per
//! vault so that later requests carry the token at once. A token refused with `401` is dropped and
//! a fresh one tried once. Tokens only ever travel over https.
//!
//! # Errors and retries
//!
//! Every [`VaultError`] has an [`ErrorClass`]: [`ErrorClass::Configuration`] (401 with a fresh
//! token, 403 `AccessDenied`/`ForbiddenByRbac`/`ForbiddenByFirewall`/`SecretDisabled`, 404, no
//! private key, unsupported content type, identity misconfigured) needs someone to act — the
//! messages say what to do; [`ErrorClass::Transient`] (connect errors, timeouts, 408, 429, 5xx,
//! identity endpoint unavailable) may pass. Transient HTTP failures are retried per
//! [`RetryPolicy`] (1, 2, 4, 8, 16 s by default), honouring `Retry-After`; every request has a
//! timeout. Messages are one line, name the vault and secret, and never carry a token, a secret
//! value or key bytes; nor does any `Debug` output.
//!
//! # Example
//!
//! ```no_run
//! use std::sync::Arc;
//! use identity::{ManagedIdentity, TokenCache};
//! use vault_client::{SecretId, VaultClient, VaultClientConfig};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let tokens = Arc::new(TokenCache::new(Arc::new(ManagedIdentity::new())));
//! let client = VaultClient::new(VaultClientConfig::new(tokens))?;
//! let id = SecretId::parse("https://myvault.vault.azure.net/secrets/site-cert")?;
//! let fetched = client.fetch_certificate(&id).await?;
//! println!("{} version {} thumbprint {}", fetched.id, fetched.version, fetched.bundle.thumbprint());
//! # Ok(())
//! # }
//! ```
//!
//! `cargo run -p vault-client --example fetch -- SECRET_URI [--token TOKEN] [--ca-file F]
//! [--allow-host H]` does the same from the command line.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod challenge;
mod client;
mod decode;
mod error;
#[doc(hidden)]
pub mod fuzzing;
mod id;

pub use client::{
    FetchedCertificate, RetryPolicy, VaultClient, VaultClientConfig, API_VERSION, MAX_RETRY_AFTER,
};
pub use decode::{PEM_CONTENT_TYPE, PKCS12_CONTENT_TYPE};
pub use error::{ErrorClass, VaultError};
pub use id::{Cloud, IdentifierError, ObjectKind, SecretId};
