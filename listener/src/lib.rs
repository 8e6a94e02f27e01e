//! Per-listener TLS state for the gateway: the gate a certificate passes before it is served,
//! the slot that hot-swaps it, and the rustls resolver that picks a listener's certificate by
//! SNI on each handshake.
//!
//! - [`validate`] checks a [`CertificateBundle`](cert_bundle::CertificateBundle): the key
//!   matches the leaf and is strong enough, the chain parses and is in order, the leaf is in its
//!   validity period, is not a CA, and covers the listener's hostnames. It returns a
//!   [`ValidatedCertificate`] or a [`Rejection`] whose message says what is wrong.
//! - [`ListenerCertificate`] holds one listener's current certificate and swaps it atomically:
//!   connections already open keep theirs, the next handshake gets the new one.
//! - [`SniResolver`] implements rustls' `ResolvesServerCert` for all listeners sharing one
//!   address (multi-site): exact hostname, then wildcard, then the catch-all.
//! - [`server_config`] is the TLS policy: TLS 1.2 and 1.3, ALPN `h2`/`http/1.1`, session
//!   resumption that survives certificate swaps.
//!
//! The crate knows nothing of Key Vault or schedules, and works in any rustls server:
//!
//! ```no_run
//! use std::sync::Arc;
//! use std::time::SystemTime;
//! use listener::{server_config, ListenerCertificate, SniResolver};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let site = Arc::new(ListenerCertificate::new("site", ["www.contoso.com"]));
//! let resolver = Arc::new(SniResolver::new([Arc::clone(&site)])?);
//! let config = Arc::new(server_config(resolver)?); // hand to tokio-rustls, actix-web, ...
//!
//! // Whenever a new certificate arrives, from any source:
//! let pem = std::fs::read("site.pem")?;
//! let bundle = cert_bundle::CertificateBundle::from_pem(&pem)?;
//! match site.validate_and_install(&bundle, SystemTime::now()) {
//!     Ok(previous) => println!("serving {} (was {previous:?})", bundle.thumbprint()),
//!     Err(rejection) => eprintln!("kept the current certificate: {rejection}"),
//! }
//! # Ok(()) }
//! ```
//!
//! `examples/serve.rs` is a complete server: `cargo run -p listener --example serve`, then
//! follow what it prints.
#![forbid(unsafe_code)]

mod client_hello;
mod config;
mod error;
mod hostname;
mod listener;
mod resolver;
mod validate;

pub use client_hello::{peek_server_name, Peeked, MAX_PEEK, UNRECOGNIZED_NAME_ALERT};
pub use config::{provider, server_config, ALPN_PROTOCOLS};
pub use error::{Rejection, ResolverError, ServerConfigError};
pub use hostname::covers;
pub use listener::ListenerCertificate;
pub use resolver::SniResolver;
pub use validate::{validate, KeyAlgorithm, ValidatedCertificate};
