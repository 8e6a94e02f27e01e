//! Choosing a listener's certificate by SNI, for all the listeners that share one address.
//!
//! This is the only module that implements rustls' resolver trait, which becomes
//! `ServerCredentialResolver` in rustls 0.24.

use std::collections::HashMap;
use std::sync::Arc;

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use crate::error::ResolverError;
use crate::hostname::{syntax_error, wildcard_suffix};
use crate::listener::ListenerCertificate;

/// Longest name looked up; longer ones cannot be DNS names (253 characters, plus a root dot).
const MAX_NAME: usize = 254;

/// The certificate resolver of one bind address, serving one or more listeners (multi-site).
///
/// For each handshake it picks a listener by the client's SNI, case-insensitively:
///
/// 1. the listener with that exact hostname;
/// 2. else the listener with a wildcard hostname one label above it (`*.example.com` for
///    `www.example.com`, but not for `example.com` or `a.b.example.com`);
/// 3. else (and when the client sends no SNI) the catch-all listener, the one with no
///    hostnames;
/// 4. else, if the address has exactly one listener, that one.
///
/// It then serves that listener's current certificate, or fails the handshake if the listener
/// has none yet. The lookup takes no lock and does not allocate.
#[derive(Debug)]
pub struct SniResolver {
    /// Every listener of the address, in the order given.
    listeners: Vec<Arc<ListenerCertificate>>,
    /// Exact hostname → index in `listeners`.
    exact: HashMap<String, usize>,
    /// For a hostname `*.example.com`, `example.com` → index in `listeners`.
    wildcard: HashMap<String, usize>,
    /// Where a handshake goes when no hostname matches: the catch-all or the only listener.
    fallback: Option<usize>,
}

impl SniResolver {
    /// A resolver for `listeners`, which share one bind address.
    ///
    /// Fails if two listeners claim the same hostname, if two have no hostnames (two catch-alls),
    /// or if a hostname is not a DNS name or a left-most-label wildcard.
    pub fn new(
        listeners: impl IntoIterator<Item = Arc<ListenerCertificate>>,
    ) -> Result<Self, ResolverError> {
        let listeners: Vec<_> = listeners.into_iter().collect();
        let mut exact = HashMap::new();
        let mut wildcard = HashMap::new();
        let mut catch_all: Option<usize> = None;
        for (index, listener) in listeners.iter().enumerate() {
            if listener.hostnames().is_empty() {
                if let Some(first) = catch_all {
                    return Err(ResolverError::DuplicateCatchAll {
                        first: listeners[first].name().to_owned(),
                        second: listener.name().to_owned(),
                    });
                }
                catch_all = Some(index);
            }
            for hostname in listener.hostnames() {
                if let Some(reason) = syntax_error(hostname) {
                    return Err(ResolverError::InvalidHostname {
                        listener: listener.name().to_owned(),
                        hostname: hostname.clone(),
                        reason,
                    });
                }
                let (table, key) = match wildcard_suffix(hostname) {
                    Some(suffix) => (&mut wildcard, suffix),
                    None => (&mut exact, hostname.as_str()),
                };
                if let Some(first) = table.insert(key.to_owned(), index) {
                    return Err(ResolverError::DuplicateHostname {
                        hostname: hostname.clone(),
                        first: listeners[first].name().to_owned(),
                        second: listener.name().to_owned(),
                    });
                }
            }
        }
        let fallback = catch_all.or((listeners.len() == 1).then_some(0));
        Ok(Self {
            listeners,
            exact,
            wildcard,
            fallback,
        })
    }

    /// The listeners of this address, in the order given.
    #[must_use]
    pub fn listeners(&self) -> &[Arc<ListenerCertificate>] {
        &self.listeners
    }

    /// The listener a handshake with this SNI (or HTTP request with this `Host`, without its
    /// port) goes to, by the rules on [`SniResolver`].
    #[must_use]
    pub fn select(&self, server_name: Option<&str>) -> Option<&Arc<ListenerCertificate>> {
        let index = server_name
            .and_then(|name| self.lookup(name))
            .or(self.fallback)?;
        self.listeners.get(index)
    }

    /// Whether a handshake with this SNI goes to a listener that is out of service: the caller
    /// refuses it with `unrecognized_name` before rustls sees it.
    #[must_use]
    pub fn refuses(&self, server_name: Option<&str>) -> bool {
        self.select(server_name).is_some_and(|l| !l.is_serving())
    }

    fn lookup(&self, name: &str) -> Option<usize> {
        let name = name.strip_suffix('.').unwrap_or(name);
        // rustls hands over SNI already lowercased; other callers (a Host header) may not, and
        // a stack buffer keeps this path free of allocation.
        let mut buffer = [0u8; MAX_NAME];
        let name = if name.bytes().any(|b| b.is_ascii_uppercase()) {
            let lowered = buffer.get_mut(..name.len())?;
            lowered.copy_from_slice(name.as_bytes());
            lowered.make_ascii_lowercase();
            std::str::from_utf8(lowered).ok()?
        } else {
            name
        };
        if let Some(index) = self.exact.get(name) {
            return Some(*index);
        }
        let (label, parent) = name.split_once('.')?;
        if label.is_empty() {
            return None;
        }
        self.wildcard.get(parent).copied()
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.select(client_hello.server_name())?.certified_key()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolver(listeners: &[(&str, &[&str])]) -> SniResolver {
        SniResolver::new(
            listeners
                .iter()
                .map(|(name, hosts)| Arc::new(ListenerCertificate::new(*name, hosts.iter()))),
        )
        .expect("valid listeners")
    }

    #[track_caller]
    fn check(resolver: &SniResolver, sni: Option<&str>, expected: Option<&str>) {
        assert_eq!(
            resolver.select(sni).map(|l| l.name()),
            expected,
            "listener chosen for SNI {sni:?}"
        );
    }

    #[test]
    fn sni_prefers_exact_then_wildcard_then_catch_all() {
        let r = resolver(&[
            ("wildcard", &["*.contoso.com"]),
            ("exact", &["www.contoso.com", "contoso.com"]),
            ("default", &[]),
        ]);
        check(&r, Some("www.contoso.com"), Some("exact"));
        check(&r, Some("WWW.Contoso.COM."), Some("exact"));
        check(&r, Some("contoso.com"), Some("exact"));
        check(&r, Some("api.contoso.com"), Some("wildcard"));
        check(&r, Some("API.contoso.com"), Some("wildcard"));
        check(&r, Some("a.b.contoso.com"), Some("default"));
        check(&r, Some("fabrikam.com"), Some("default"));
        check(&r, Some(".contoso.com"), Some("default"));
        check(&r, None, Some("default"));
        check(&r, Some(&"x".repeat(300)), Some("default"));
    }

    #[test]
    fn without_catch_all_unknown_names_find_nothing() {
        let r = resolver(&[("a", &["a.example"]), ("b", &["b.example"])]);
        check(&r, Some("a.example"), Some("a"));
        check(&r, Some("c.example"), None);
        check(&r, None, None);
    }

    #[test]
    fn a_lone_listener_serves_every_handshake() {
        let r = resolver(&[("only", &["www.example.com"])]);
        check(&r, Some("www.example.com"), Some("only"));
        check(&r, Some("other.example.com"), Some("only"));
        check(&r, None, Some("only"));
    }

    #[test]
    fn no_listeners_no_certificate() {
        let r = resolver(&[]);
        check(&r, Some("www.example.com"), None);
        check(&r, None, None);
    }

    #[track_caller]
    fn check_refused(listeners: &[(&str, &[&str])], message: &str) {
        let error = SniResolver::new(
            listeners
                .iter()
                .map(|(name, hosts)| Arc::new(ListenerCertificate::new(*name, hosts.iter()))),
        )
        .expect_err("listeners should be refused");
        assert_eq!(error.to_string(), message);
    }

    #[test]
    fn listeners_cannot_claim_the_same_name() {
        check_refused(
            &[("a", &["www.example.com"]), ("b", &["WWW.example.com."])],
            r#"listeners "a" and "b" both claim hostname www.example.com"#,
        );
        check_refused(
            &[("a", &["*.example.com"]), ("b", &["*.Example.com"])],
            r#"listeners "a" and "b" both claim hostname *.example.com"#,
        );
        check_refused(
            &[("a", &[]), ("b", &[])],
            r#"listeners "a" and "b" both have no hostnames; only one listener per address can be the catch-all"#,
        );
        check_refused(
            &[("a", &["www.*.com"])],
            r#"listener "a" has an invalid hostname "www.*.com": a wildcard may only be the whole left-most label, as in *.example.com"#,
        );
    }

    #[test]
    fn a_listener_may_repeat_its_own_hostname() {
        let r = resolver(&[("a", &["www.example.com", "WWW.EXAMPLE.COM"])]);
        assert_eq!(r.listeners()[0].hostnames(), ["www.example.com"]);
    }
}
