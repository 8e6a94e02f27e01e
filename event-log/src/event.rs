//! The events of the log, the envelope each is stored in, and their audit forms (`Display`, JSON).
//!
//! Nothing here knows how events are stored: that is the `codec` module's job.

use std::fmt;
use std::str::FromStr;

use cert_bundle::Thumbprint;
use serde::Serialize;

use crate::error::{UnknownEventKind, UnknownTrigger};

/// The envelope format this build writes. Older formats are read through upcasters in `codec`.
pub const ENVELOPE_FORMAT: u16 = 1;

/// Something that happened to a listener's certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Event {
    /// The listener's certificate source was configured (or changed) from the config file.
    ListenerConfigured {
        /// Where the certificate comes from: a Key Vault URI or a file path.
        source: String,
    },
    /// A certificate was fetched from its source (not yet validated).
    CertificateFetched {
        /// Where it came from.
        source: String,
        /// The Key Vault version, when the source has versions.
        version: Option<String>,
        /// The SHA-256 thumbprint of the leaf.
        #[serde(serialize_with = "ser::thumbprint")]
        thumbprint: Thumbprint,
    },
    /// A certificate passed validation and now serves the listener.
    CertificateInstalled {
        /// Why the check that led to it ran.
        trigger: Trigger,
        /// The certificate it replaced, if any.
        #[serde(serialize_with = "ser::opt_thumbprint")]
        previous: Option<Thumbprint>,
        /// The new certificate.
        #[serde(serialize_with = "ser::thumbprint")]
        thumbprint: Thumbprint,
        /// The Key Vault version, when the source has versions.
        version: Option<String>,
        /// Where it came from.
        source: String,
        /// The leaf's `notAfter`, in Unix seconds.
        not_after: i64,
        /// The chain and the sealed private key, so a restart can serve it again.
        #[serde(skip)]
        material: SealedBundle,
    },
    /// A fetched certificate failed validation and was not installed.
    CertificateRejected {
        /// Why the check ran.
        trigger: Trigger,
        /// The rejected certificate, when it could be parsed far enough to have one.
        #[serde(serialize_with = "ser::opt_thumbprint")]
        thumbprint: Option<Thumbprint>,
        /// The Key Vault version, when known.
        version: Option<String>,
        /// Why it was rejected.
        reason: String,
    },
    /// Fetching a certificate failed.
    FetchFailed {
        /// Why the check ran.
        trigger: Trigger,
        /// Whether retrying may help.
        class: FailureClass,
        /// What went wrong (never a token or key).
        message: String,
    },
    /// The listener stopped serving (the `disable-listener` failure policy).
    ListenerDisabled {
        /// Why.
        reason: String,
    },
    /// The listener serves again.
    ListenerReenabled,
    /// The last installed certificate was restored from the log at startup.
    CertificateRestored {
        /// The restored certificate.
        #[serde(serialize_with = "ser::thumbprint")]
        thumbprint: Thumbprint,
        /// Its Key Vault version, when it has one.
        version: Option<String>,
    },
    /// The serving certificate expires soon.
    ExpiryWarning {
        /// The certificate.
        #[serde(serialize_with = "ser::thumbprint")]
        thumbprint: Thumbprint,
        /// Its `notAfter`, in Unix seconds.
        not_after: i64,
    },
}

impl Event {
    /// The kind of this event.
    pub fn kind(&self) -> EventKind {
        match self {
            Event::ListenerConfigured { .. } => EventKind::ListenerConfigured,
            Event::CertificateFetched { .. } => EventKind::CertificateFetched,
            Event::CertificateInstalled { .. } => EventKind::CertificateInstalled,
            Event::CertificateRejected { .. } => EventKind::CertificateRejected,
            Event::FetchFailed { .. } => EventKind::FetchFailed,
            Event::ListenerDisabled { .. } => EventKind::ListenerDisabled,
            Event::ListenerReenabled => EventKind::ListenerReenabled,
            Event::CertificateRestored { .. } => EventKind::CertificateRestored,
            Event::ExpiryWarning { .. } => EventKind::ExpiryWarning,
        }
    }
}

/// The kind of an event, with a stable snake_case name used by `gateway audit --kind`, the admin
/// API and the JSON form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum EventKind {
    /// [`Event::ListenerConfigured`].
    ListenerConfigured,
    /// [`Event::CertificateFetched`].
    CertificateFetched,
    /// [`Event::CertificateInstalled`].
    CertificateInstalled,
    /// [`Event::CertificateRejected`].
    CertificateRejected,
    /// [`Event::FetchFailed`].
    FetchFailed,
    /// [`Event::ListenerDisabled`].
    ListenerDisabled,
    /// [`Event::ListenerReenabled`].
    ListenerReenabled,
    /// [`Event::CertificateRestored`].
    CertificateRestored,
    /// [`Event::ExpiryWarning`].
    ExpiryWarning,
}

impl EventKind {
    /// Every kind, in declaration order.
    pub const ALL: [EventKind; 9] = [
        EventKind::ListenerConfigured,
        EventKind::CertificateFetched,
        EventKind::CertificateInstalled,
        EventKind::CertificateRejected,
        EventKind::FetchFailed,
        EventKind::ListenerDisabled,
        EventKind::ListenerReenabled,
        EventKind::CertificateRestored,
        EventKind::ExpiryWarning,
    ];

    /// The stable name of the kind.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::ListenerConfigured => "listener_configured",
            EventKind::CertificateFetched => "certificate_fetched",
            EventKind::CertificateInstalled => "certificate_installed",
            EventKind::CertificateRejected => "certificate_rejected",
            EventKind::FetchFailed => "fetch_failed",
            EventKind::ListenerDisabled => "listener_disabled",
            EventKind::ListenerReenabled => "listener_reenabled",
            EventKind::CertificateRestored => "certificate_restored",
            EventKind::ExpiryWarning => "expiry_warning",
        }
    }

    /// Every name, comma separated, for error messages and help text.
    pub fn names() -> String {
        Self::ALL
            .iter()
            .map(|k| k.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for EventKind {
    type Err = UnknownEventKind;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| UnknownEventKind {
                given: s.to_owned(),
            })
    }
}

/// Why a certificate check ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    /// The gateway started.
    Startup,
    /// The rotation schedule fired.
    Schedule,
    /// An operator asked (admin API, `cargo xtask rotate`).
    Manual,
    /// The configuration changed.
    Config,
}

impl Trigger {
    /// The stable name of the trigger.
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Startup => "startup",
            Trigger::Schedule => "schedule",
            Trigger::Manual => "manual",
            Trigger::Config => "config",
        }
    }
}

impl fmt::Display for Trigger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Trigger {
    type Err = UnknownTrigger;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [
            Trigger::Startup,
            Trigger::Schedule,
            Trigger::Manual,
            Trigger::Config,
        ]
        .into_iter()
        .find(|t| t.as_str() == s)
        .ok_or_else(|| UnknownTrigger {
            given: s.to_owned(),
        })
    }
}

/// Whether a failed fetch may succeed if retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureClass {
    /// Network, throttling, 5xx: retry with backoff.
    Transient,
    /// Not found, forbidden, bad content: retrying will not help until someone changes something.
    Configuration,
}

impl FailureClass {
    /// The stable name of the class.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureClass::Transient => "transient",
            FailureClass::Configuration => "configuration",
        }
    }
}

impl fmt::Display for FailureClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A certificate chain in the clear and its private key sealed with the log's seal key.
///
/// Made by [`crate::EventLog::seal`]; opened only inside the crate, by
/// [`crate::EventLog::installed_bundle`]. `Debug` shows lengths only.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct SealedBundle {
    /// DER of each certificate, leaf first. Certificates are public.
    pub(crate) chain: Vec<Vec<u8>>,
    /// A 96-bit nonce followed by the AES-256-GCM ciphertext (and tag) of the key-type tag and the
    /// private key DER.
    pub(crate) sealed_key: Vec<u8>,
}

impl SealedBundle {
    /// DER of each certificate of the chain, leaf first.
    pub fn chain(&self) -> &[Vec<u8>] {
        &self.chain
    }

    /// The length of the sealed key, in bytes (nonce, ciphertext and tag).
    pub fn sealed_key_len(&self) -> usize {
        self.sealed_key.len()
    }
}

impl fmt::Debug for SealedBundle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SealedBundle")
            .field("chain_certificates", &self.chain.len())
            .field(
                "chain_bytes",
                &self.chain.iter().map(Vec::len).sum::<usize>(),
            )
            .field("sealed_key_bytes", &self.sealed_key.len())
            .finish()
    }
}

/// One stored entry of the log: an event with its place in the log and in time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// The envelope format it was written in ([`ENVELOPE_FORMAT`] for new entries; entries read
    /// through an upcaster keep the format they were written in).
    pub format: u16,
    /// The sequence number, from 1, without gaps.
    pub seq: u64,
    /// When it was appended, in Unix milliseconds (UTC).
    pub at_ms: i64,
    /// The listener it is about.
    pub listener: String,
    /// What happened.
    pub event: Event,
    /// SHA-256 of the stored bytes of the previous entry (all zeros for the first entry).
    pub prev_hash: [u8; 32],
}

impl Envelope {
    /// The kind of its event.
    pub fn kind(&self) -> EventKind {
        self.event.kind()
    }
}

/// Formats Unix milliseconds as RFC 3339 UTC, e.g. `2025-05-01T12:00:00.123Z`.
pub fn format_ms(at_ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(at_ms) * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| format!("@{at_ms}ms"))
}

/// Formats Unix seconds as RFC 3339 UTC, e.g. `2026-05-01T00:00:00Z`.
pub fn format_secs(secs: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| format!("@{secs}s"))
}

/// `Some(version)` as the version, `None` as `-`.
struct Opt<'a, T>(&'a Option<T>);

impl<T: fmt::Display> fmt::Display for Opt<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(v) => v.fmt(f),
            None => f.write_str("-"),
        }
    }
}

impl fmt::Display for Event {
    /// The details of the event on one line. Free text is quoted and escaped so a message cannot
    /// forge another audit line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Event::ListenerConfigured { source } => write!(f, "source={source:?}"),
            Event::CertificateFetched {
                source,
                version,
                thumbprint,
            } => write!(
                f,
                "thumbprint={thumbprint} version={} source={source:?}",
                Opt(version)
            ),
            Event::CertificateInstalled {
                trigger,
                previous,
                thumbprint,
                version,
                source,
                not_after,
                material: _,
            } => write!(
                f,
                "trigger={trigger} {} -> {thumbprint} version={} not_after={} source={source:?}",
                Opt(previous),
                Opt(version),
                format_secs(*not_after)
            ),
            Event::CertificateRejected {
                trigger,
                thumbprint,
                version,
                reason,
            } => write!(
                f,
                "trigger={trigger} thumbprint={} version={} reason={reason:?}",
                Opt(thumbprint),
                Opt(version)
            ),
            Event::FetchFailed {
                trigger,
                class,
                message,
            } => write!(f, "trigger={trigger} class={class} message={message:?}"),
            Event::ListenerDisabled { reason } => write!(f, "reason={reason:?}"),
            Event::ListenerReenabled => Ok(()),
            Event::CertificateRestored {
                thumbprint,
                version,
            } => write!(f, "thumbprint={thumbprint} version={}", Opt(version)),
            Event::ExpiryWarning {
                thumbprint,
                not_after,
            } => write!(
                f,
                "thumbprint={thumbprint} not_after={}",
                format_secs(*not_after)
            ),
        }
    }
}

impl fmt::Display for Envelope {
    /// One audit line: `TIME #SEQ LISTENER KIND DETAILS`. Never shows key material.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} #{} {} {}",
            format_ms(self.at_ms),
            self.seq,
            self.listener,
            self.kind()
        )?;
        let details = self.event.to_string();
        if !details.is_empty() {
            write!(f, " {details}")?;
        }
        Ok(())
    }
}

impl Serialize for Envelope {
    /// The JSON audit record: the envelope's fields, `at` in RFC 3339, and the event's fields
    /// flattened next to `kind`. Sealed key material is left out.
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Record<'a> {
            seq: u64,
            at: String,
            at_ms: i64,
            listener: &'a str,
            #[serde(flatten)]
            event: &'a Event,
            format: u16,
            prev_hash: String,
        }
        Record {
            seq: self.seq,
            at: format_ms(self.at_ms),
            at_ms: self.at_ms,
            listener: &self.listener,
            event: &self.event,
            format: self.format,
            prev_hash: hex::encode(self.prev_hash),
        }
        .serialize(serializer)
    }
}

/// Serde helpers for types of other crates.
pub(crate) mod ser {
    use cert_bundle::Thumbprint;
    use serde::Serializer;

    /// A thumbprint as uppercase hex.
    pub(crate) fn thumbprint<S: Serializer>(t: &Thumbprint, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode_upper(t.0))
    }

    /// An optional thumbprint as uppercase hex or `null`.
    pub(crate) fn opt_thumbprint<S: Serializer>(
        t: &Option<Thumbprint>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match t {
            Some(t) => thumbprint(t, s),
            None => s.serialize_none(),
        }
    }
}
