//! The TLS policy every HTTPS listener shares.

use std::sync::{Arc, LazyLock};

use rustls::crypto::CryptoProvider;
use rustls::server::ServerSessionMemoryCache;
use rustls::ServerConfig;

use crate::error::ServerConfigError;
use crate::resolver::SniResolver;

/// How many TLS 1.2 sessions (by session ID) the stateful cache remembers.
const SESSION_CACHE_SIZE: usize = 4096;

/// The ALPN protocols offered, in order of preference.
pub const ALPN_PROTOCOLS: [&[u8]; 2] = [b"h2", b"http/1.1"];

static PROVIDER: LazyLock<Arc<CryptoProvider>> =
    LazyLock::new(|| Arc::new(rustls::crypto::aws_lc_rs::default_provider()));

/// The aws-lc-rs crypto provider, built once: it loads keys in [`validate`](crate::validate), runs
/// handshakes in [`server_config`], and the gateway's TLS to backends uses it too. aws-lc-rs
/// rather than ring for its RSA signatures: a full handshake with an RSA-2048 certificate costs
/// about 28% less CPU (ARCHITECTURE.md, "TLS providers").
pub fn provider() -> &'static Arc<CryptoProvider> {
    &PROVIDER
}

/// The rustls configuration for one bind address, whose certificates come from `resolver`.
///
/// The policy: the aws-lc-rs provider; TLS 1.2 and 1.3 only; ALPN `h2` then `http/1.1`; session
/// resumption by a stateful session cache (TLS 1.2 session IDs) and by tickets (TLS 1.3, and
/// TLS 1.2 clients that ask), with a ticket key that rotates every six hours.
///
/// Build it once per address and clone it (actix-web clones it for each worker): the clones
/// share the resolver, the session cache and the ticket key, so certificate swaps inside the
/// resolver never cost clients their sessions. Building a new config instead would.
pub fn server_config(resolver: Arc<SniResolver>) -> Result<ServerConfig, ServerConfigError> {
    let mut config = ServerConfig::builder_with_provider(Arc::clone(provider()))
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(ServerConfigError::Protocols)?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    config.alpn_protocols = ALPN_PROTOCOLS.iter().map(|p| p.to_vec()).collect();
    config.session_storage = ServerSessionMemoryCache::new(SESSION_CACHE_SIZE);
    config.ticketer =
        rustls::crypto::aws_lc_rs::Ticketer::new().map_err(ServerConfigError::Ticketer)?;
    Ok(config)
}
