//! The crate's typed errors, one enum per operation: why a certificate was refused
//! ([`Rejection`]), why a set of listeners cannot share a resolver ([`ResolverError`]), and why
//! the TLS configuration could not be built ([`ServerConfigError`]).

use thiserror::Error;

/// Why [`validate`](crate::validate) refused a certificate bundle.
///
/// Each variant's message is one line that names what was wrong, so that it can go as is into
/// logs, the event log and the admin API. None of them contains key material.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum Rejection {
    /// The bundle holds no certificate at all.
    #[error("the certificate chain is empty")]
    EmptyChain,

    /// A certificate of the chain is not valid DER X.509.
    #[error("certificate {index} of the chain does not parse: {reason}")]
    Unparsable {
        /// Position in the chain, 0 being the leaf.
        index: usize,
        /// What the X.509 parser said.
        reason: String,
    },

    /// The chain is not ordered leaf first, each certificate followed by its issuer (or an
    /// intermediate is missing).
    #[error(
        "the chain breaks at certificate {index}: its issuer is \"{issuer}\" but certificate \
         {next} is \"{next_subject}\" (each certificate must be followed by its issuer, leaf \
         first; is an intermediate missing?)",
        next = .index + 1
    )]
    ChainOrder {
        /// Position of the certificate whose issuer does not follow it.
        index: usize,
        /// The issuer that certificate names.
        issuer: String,
        /// The subject of the certificate that follows it instead.
        next_subject: String,
    },

    /// The leaf is a CA certificate (basicConstraints cA=true); clients refuse it as a server
    /// certificate.
    #[error(
        "the leaf certificate \"{subject}\" is a CA certificate (basicConstraints cA=true), \
         not a server certificate"
    )]
    CaAsLeaf {
        /// The leaf's subject.
        subject: String,
    },

    /// The leaf's public key is of a kind or size that is not served.
    #[error(
        "the leaf's key is {found}; only RSA of at least 2048 bits or ECDSA P-256/P-384 is \
         accepted"
    )]
    WeakKey {
        /// What was found, such as `RSA 1024-bit`, `ECDSA P-521` or `Ed25519`.
        found: String,
    },

    /// The private key cannot be loaded as a signing key.
    #[error("the private key cannot be used for signing: {reason}")]
    UnusableKey {
        /// What the TLS library said (never the key itself).
        reason: String,
    },

    /// The private key is not the one the leaf certificate was issued for.
    #[error("the private key does not match the leaf certificate's public key")]
    KeyMismatch,

    /// The signing key does not expose its public half, so the match cannot be proven.
    #[error(
        "cannot tell whether the private key matches the leaf certificate: the signing key \
         does not expose its public key"
    )]
    KeyMatchUnknown,

    /// The leaf's validity period is over.
    #[error("the leaf certificate expired on {not_after} (checked at {now})")]
    Expired {
        /// The leaf's notAfter, RFC 3339 UTC.
        not_after: String,
        /// The time of the check, RFC 3339 UTC.
        now: String,
    },

    /// The leaf's validity period has not started.
    #[error("the leaf certificate is not valid before {not_before} (checked at {now})")]
    NotYetValid {
        /// The leaf's notBefore, RFC 3339 UTC.
        not_before: String,
        /// The time of the check, RFC 3339 UTC.
        now: String,
    },

    /// A configured hostname is not among the leaf's DNS names.
    #[error(
        "the leaf certificate does not cover hostname {hostname} (its DNS names: {})",
        display_names(.dns_names)
    )]
    HostnameNotCovered {
        /// The configured hostname that no DNS name covers.
        hostname: String,
        /// The leaf's dNSName subject alternative names.
        dns_names: Vec<String>,
    },
}

impl Rejection {
    /// A short, stable name for the kind of rejection, for metrics labels and tools.
    #[must_use]
    pub fn code(&self) -> &'static str {
        match self {
            Rejection::EmptyChain | Rejection::Unparsable { .. } => "unparsable",
            Rejection::ChainOrder { .. } => "chain_order",
            Rejection::CaAsLeaf { .. } => "ca_as_leaf",
            Rejection::WeakKey { .. } | Rejection::UnusableKey { .. } => "weak_key",
            Rejection::KeyMismatch | Rejection::KeyMatchUnknown => "key_mismatch",
            Rejection::Expired { .. } => "expired",
            Rejection::NotYetValid { .. } => "not_yet_valid",
            Rejection::HostnameNotCovered { .. } => "hostname_not_covered",
        }
    }
}

fn display_names(names: &[String]) -> String {
    if names.is_empty() {
        "none".to_owned()
    } else {
        names.join(", ")
    }
}

/// Why a set of listeners cannot share one [`SniResolver`](crate::SniResolver).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ResolverError {
    /// Two listeners claim the same hostname, so SNI could not choose between them.
    #[error("listeners \"{first}\" and \"{second}\" both claim hostname {hostname}")]
    DuplicateHostname {
        /// The hostname, lowercased.
        hostname: String,
        /// The listener that claimed it first.
        first: String,
        /// The listener that claimed it again.
        second: String,
    },

    /// Two listeners have no hostnames, so both would be the catch-all.
    #[error(
        "listeners \"{first}\" and \"{second}\" both have no hostnames; only one listener per \
         address can be the catch-all"
    )]
    DuplicateCatchAll {
        /// The first catch-all listener.
        first: String,
        /// The second one.
        second: String,
    },

    /// A configured hostname is not a DNS name SNI could carry.
    #[error("listener \"{listener}\" has an invalid hostname \"{hostname}\": {reason}")]
    InvalidHostname {
        /// The listener.
        listener: String,
        /// The hostname as configured.
        hostname: String,
        /// What is wrong with it.
        reason: &'static str,
    },
}

/// Why [`server_config`](crate::server_config) could not build a TLS configuration.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ServerConfigError {
    /// The crypto provider refused the protocol versions.
    #[error("the ring crypto provider cannot serve TLS 1.2 and 1.3")]
    Protocols(#[source] rustls::Error),

    /// The TLS 1.3 session ticket key could not be created (no randomness).
    #[error("cannot create the session ticket encrypter")]
    Ticketer(#[source] rustls::Error),
}
