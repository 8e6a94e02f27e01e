//! Access tokens for a scope from Azure identities, cached and refreshed before they expire.
//!
//! The gateway reads Key Vault with a token for `https://vault.azure.net/.default`; this crate gets
//! it. It knows nothing about Key Vault or TLS, and nothing about actix: the gateway wraps a
//! [`TokenCache`] in its `Identity` actor.
//!
//! # Kinds of identity
//!
//! Each is a [`TokenSource`]:
//!
//! | source | where | request |
//! |---|---|---|
//! | [`ManagedIdentity`] | VM, VMSS, AKS node (IMDS) | `GET http://169.254.169.254/metadata/identity/oauth2/token?api-version=2018-02-01&resource=…`, `Metadata: true`, no proxy |
//! | [`AppService`] | App Service, Functions (`IDENTITY_ENDPOINT`, `IDENTITY_HEADER`) | `GET {IDENTITY_ENDPOINT}?api-version=2019-08-01&resource=…`, `X-IDENTITY-HEADER` |
//! | [`WorkloadIdentity`] | AKS workload identity (`AZURE_FEDERATED_TOKEN_FILE`, `AZURE_CLIENT_ID`, `AZURE_TENANT_ID`, `AZURE_AUTHORITY_HOST`) | `POST {authority}/{tenant}/oauth2/v2.0/token` with the token file as a client assertion, re-read on every request |
//! | [`ClientSecret`] | a service principal with a secret | the same `POST`, with `client_secret` |
//! | [`StaticToken`] | development | none: a fixed token with a far expiry |
//!
//! Managed identities pick a user-assigned identity with [`UserAssignedId`] (client id, object id or
//! resource id), or use the system-assigned one. The env-driven kinds have `from_env` constructors
//! whose errors name the missing variable.
//!
//! # Retries and errors
//!
//! Every request has a timeout. IMDS and App Service requests are retried on 404, 408, 410, 429, 5xx,
//! timeouts and connection errors, by default for 94 s in all (the IMDS guidance asks for at least
//! 70 s), honouring `Retry-After`; Entra requests on 408, 429 and 5xx. [`RetryPolicy`] sets the
//! schedule. A 400 "identity not found" fails at once with [`IdentityError::IdentityNotFound`],
//! naming the identity. [`IdentityError::is_transient`] separates "try again later" from "fix the
//! configuration".
//!
//! # Secrets
//!
//! [`AccessToken`]'s `Debug` and `Display` show only its expiry; [`AccessToken::secret`] is the one
//! way to read it. Client secrets, federated assertions and the App Service header appear in no
//! `Debug` output and no error message.
//!
//! # Example
//!
//! ```no_run
//! use std::sync::Arc;
//! use identity::{ManagedIdentity, TokenCache};
//!
//! # async fn run() -> Result<(), identity::IdentityError> {
//! let source = ManagedIdentity::new().with_client_id("00000000-0000-0000-0000-000000000001");
//! let cache = TokenCache::new(Arc::new(source));
//! let token = cache.token("https://vault.azure.net/.default").await?;
//! println!("got {token}"); // prints "got AccessToken(expires 2026-…)", never the token
//! let _header = format!("Bearer {}", token.secret());
//! # Ok(())
//! # }
//! ```
//!
//! `cargo run -p identity --example token -- --static TOKEN` (or `--imds URL`) shows the same from
//! the command line.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod cache;
mod entra;
mod error;
#[doc(hidden)]
pub mod fuzzing;
mod managed;
mod retry;
mod source;
mod static_token;
mod token;

pub use cache::{TokenCache, DEFAULT_REFRESH_MARGIN};
pub use entra::{ClientSecret, WorkloadIdentity, DEFAULT_AUTHORITY_HOST};
pub use error::IdentityError;
pub use managed::{AppService, ManagedIdentity, UserAssignedId, IMDS_ENDPOINT};
pub use retry::RetryPolicy;
pub use source::{BoxFuture, TokenSource};
pub use static_token::{StaticToken, STATIC_TOKEN_LIFETIME};
pub use token::AccessToken;

/// The scope of Azure Key Vault's data plane in the public cloud.
pub const KEY_VAULT_SCOPE: &str = "https://vault.azure.net/.default";
