//! The stored form of envelopes and snapshots: the only module that uses bincode.
//!
//! The public types do not derive bincode traits. Instead this module keeps one wire type per
//! stored format (`v1`), converts to and from the public types, and checks the envelope format
//! before decoding the rest. A future format 2 adds a `v2` module and an upcaster from `v1`; the
//! `v1` types then never change again.
//!
//! Wire rules: variant order and field order are the format. Never reorder, remove or insert
//! in the middle; add a new format instead.

use bincode::config::{Configuration, Limit, LittleEndian, Varint};
use cert_bundle::Thumbprint;

use crate::error::EventLogError;
use crate::event::{Envelope, Event, FailureClass, SealedBundle, Trigger, ENVELOPE_FORMAT};
use crate::state::{InstalledCertificate, ListenerState};

/// The largest value the decoder will accept: it stops a damaged length prefix from asking for
/// gigabytes. A certificate chain is a few kilobytes.
const MAX_VALUE: usize = 16 * 1024 * 1024;

type Config = Configuration<LittleEndian, Varint, Limit<MAX_VALUE>>;

fn config() -> Config {
    bincode::config::standard().with_limit::<MAX_VALUE>()
}

/// Encodes an envelope in the current format.
pub(crate) fn encode_envelope(envelope: &Envelope) -> Result<Vec<u8>, EventLogError> {
    let wire = v1::Envelope::from(envelope);
    bincode::encode_to_vec(&wire, config()).map_err(|e| EventLogError::Encode {
        listener: envelope.listener.clone(),
        reason: e.to_string(),
    })
}

/// Decodes the envelope stored under `seq`, upcasting older formats.
pub(crate) fn decode_envelope(seq: u64, bytes: &[u8]) -> Result<Envelope, EventLogError> {
    let decode_error = |e: bincode::error::DecodeError| EventLogError::Decode {
        seq,
        reason: e.to_string(),
    };
    // Every format starts with its number, so it can be read before knowing the rest.
    let (format, _): (u16, usize) =
        bincode::decode_from_slice(bytes, config()).map_err(decode_error)?;
    match format {
        1 => {
            let (wire, read): (v1::Envelope, usize) =
                bincode::decode_from_slice(bytes, config()).map_err(decode_error)?;
            if read != bytes.len() {
                return Err(EventLogError::Decode {
                    seq,
                    reason: format!("{} unexpected bytes after the envelope", bytes.len() - read),
                });
            }
            Ok(wire.into())
        }
        format => Err(EventLogError::UnknownFormat {
            seq,
            format,
            known: ENVELOPE_FORMAT,
        }),
    }
}

/// Encodes a listener's snapshot.
pub(crate) fn encode_listener_state(
    listener: &str,
    state: &ListenerState,
) -> Result<Vec<u8>, EventLogError> {
    bincode::encode_to_vec(v1::ListenerState::from(state), config()).map_err(|e| {
        EventLogError::Encode {
            listener: listener.to_owned(),
            reason: e.to_string(),
        }
    })
}

/// Decodes a listener's snapshot.
pub(crate) fn decode_listener_state(
    listener: &str,
    bytes: &[u8],
) -> Result<ListenerState, EventLogError> {
    let (wire, read): (v1::ListenerState, usize) = bincode::decode_from_slice(bytes, config())
        .map_err(|e| EventLogError::SnapshotDecode {
            listener: listener.to_owned(),
            reason: e.to_string(),
        })?;
    if read != bytes.len() {
        return Err(EventLogError::SnapshotDecode {
            listener: listener.to_owned(),
            reason: "unexpected bytes after the snapshot".into(),
        });
    }
    Ok(wire.into())
}

/// Format 1 of the stored values.
mod v1 {
    use bincode::{Decode, Encode};

    #[derive(Encode, Decode)]
    pub(super) struct Envelope {
        /// Always first, always 1 in this module.
        pub format: u16,
        pub seq: u64,
        pub at_ms: i64,
        pub listener: String,
        pub event: Event,
        pub prev_hash: [u8; 32],
    }

    #[derive(Encode, Decode)]
    pub(super) enum Event {
        ListenerConfigured {
            source: String,
        },
        CertificateFetched {
            source: String,
            version: Option<String>,
            thumbprint: [u8; 32],
        },
        CertificateInstalled {
            trigger: Trigger,
            previous: Option<[u8; 32]>,
            thumbprint: [u8; 32],
            version: Option<String>,
            source: String,
            not_after: i64,
            material: SealedBundle,
        },
        CertificateRejected {
            trigger: Trigger,
            thumbprint: Option<[u8; 32]>,
            version: Option<String>,
            reason: String,
        },
        FetchFailed {
            trigger: Trigger,
            class: FailureClass,
            message: String,
        },
        ListenerDisabled {
            reason: String,
        },
        ListenerReenabled,
        CertificateRestored {
            thumbprint: [u8; 32],
            version: Option<String>,
        },
        ExpiryWarning {
            thumbprint: [u8; 32],
            not_after: i64,
        },
    }

    #[derive(Encode, Decode, Clone, Copy)]
    pub(super) enum Trigger {
        Startup,
        Schedule,
        Manual,
        Config,
    }

    #[derive(Encode, Decode, Clone, Copy)]
    pub(super) enum FailureClass {
        Transient,
        Configuration,
    }

    #[derive(Encode, Decode)]
    pub(super) struct SealedBundle {
        pub chain: Vec<Vec<u8>>,
        pub sealed_key: Vec<u8>,
    }

    #[derive(Encode, Decode)]
    pub(super) struct ListenerState {
        pub configured_source: Option<String>,
        pub installed: Option<InstalledCertificate>,
        pub disabled: bool,
        pub last_seq: u64,
        pub last_failure: Option<(i64, FailureClass, String)>,
    }

    #[derive(Encode, Decode)]
    pub(super) struct InstalledCertificate {
        pub seq: u64,
        pub thumbprint: [u8; 32],
        pub version: Option<String>,
        pub source: String,
        pub not_after: i64,
        pub installed_at_ms: i64,
        pub trigger: Trigger,
    }
}

// Conversions between the public types and format 1.

impl From<&Envelope> for v1::Envelope {
    fn from(e: &Envelope) -> Self {
        v1::Envelope {
            format: 1,
            seq: e.seq,
            at_ms: e.at_ms,
            listener: e.listener.clone(),
            event: (&e.event).into(),
            prev_hash: e.prev_hash,
        }
    }
}

impl From<v1::Envelope> for Envelope {
    fn from(e: v1::Envelope) -> Self {
        Envelope {
            format: e.format,
            seq: e.seq,
            at_ms: e.at_ms,
            listener: e.listener,
            event: e.event.into(),
            prev_hash: e.prev_hash,
        }
    }
}

impl From<&Event> for v1::Event {
    fn from(e: &Event) -> Self {
        match e.clone() {
            Event::ListenerConfigured { source } => v1::Event::ListenerConfigured { source },
            Event::CertificateFetched {
                source,
                version,
                thumbprint,
            } => v1::Event::CertificateFetched {
                source,
                version,
                thumbprint: thumbprint.0,
            },
            Event::CertificateInstalled {
                trigger,
                previous,
                thumbprint,
                version,
                source,
                not_after,
                material,
            } => v1::Event::CertificateInstalled {
                trigger: trigger.into(),
                previous: previous.map(|t| t.0),
                thumbprint: thumbprint.0,
                version,
                source,
                not_after,
                material: v1::SealedBundle {
                    chain: material.chain,
                    sealed_key: material.sealed_key,
                },
            },
            Event::CertificateRejected {
                trigger,
                thumbprint,
                version,
                reason,
            } => v1::Event::CertificateRejected {
                trigger: trigger.into(),
                thumbprint: thumbprint.map(|t| t.0),
                version,
                reason,
            },
            Event::FetchFailed {
                trigger,
                class,
                message,
            } => v1::Event::FetchFailed {
                trigger: trigger.into(),
                class: class.into(),
                message,
            },
            Event::ListenerDisabled { reason } => v1::Event::ListenerDisabled { reason },
            Event::ListenerReenabled => v1::Event::ListenerReenabled,
            Event::CertificateRestored {
                thumbprint,
                version,
            } => v1::Event::CertificateRestored {
                thumbprint: thumbprint.0,
                version,
            },
            Event::ExpiryWarning {
                thumbprint,
                not_after,
            } => v1::Event::ExpiryWarning {
                thumbprint: thumbprint.0,
                not_after,
            },
        }
    }
}

impl From<v1::Event> for Event {
    fn from(e: v1::Event) -> Self {
        match e {
            v1::Event::ListenerConfigured { source } => Event::ListenerConfigured { source },
            v1::Event::CertificateFetched {
                source,
                version,
                thumbprint,
            } => Event::CertificateFetched {
                source,
                version,
                thumbprint: Thumbprint(thumbprint),
            },
            v1::Event::CertificateInstalled {
                trigger,
                previous,
                thumbprint,
                version,
                source,
                not_after,
                material,
            } => Event::CertificateInstalled {
                trigger: trigger.into(),
                previous: previous.map(Thumbprint),
                thumbprint: Thumbprint(thumbprint),
                version,
                source,
                not_after,
                material: SealedBundle {
                    chain: material.chain,
                    sealed_key: material.sealed_key,
                },
            },
            v1::Event::CertificateRejected {
                trigger,
                thumbprint,
                version,
                reason,
            } => Event::CertificateRejected {
                trigger: trigger.into(),
                thumbprint: thumbprint.map(Thumbprint),
                version,
                reason,
            },
            v1::Event::FetchFailed {
                trigger,
                class,
                message,
            } => Event::FetchFailed {
                trigger: trigger.into(),
                class: class.into(),
                message,
            },
            v1::Event::ListenerDisabled { reason } => Event::ListenerDisabled { reason },
            v1::Event::ListenerReenabled => Event::ListenerReenabled,
            v1::Event::CertificateRestored {
                thumbprint,
                version,
            } => Event::CertificateRestored {
                thumbprint: Thumbprint(thumbprint),
                version,
            },
            v1::Event::ExpiryWarning {
                thumbprint,
                not_after,
            } => Event::ExpiryWarning {
                thumbprint: Thumbprint(thumbprint),
                not_after,
            },
        }
    }
}

impl From<Trigger> for v1::Trigger {
    fn from(t: Trigger) -> Self {
        match t {
            Trigger::Startup => v1::Trigger::Startup,
            Trigger::Schedule => v1::Trigger::Schedule,
            Trigger::Manual => v1::Trigger::Manual,
            Trigger::Config => v1::Trigger::Config,
        }
    }
}

impl From<v1::Trigger> for Trigger {
    fn from(t: v1::Trigger) -> Self {
        match t {
            v1::Trigger::Startup => Trigger::Startup,
            v1::Trigger::Schedule => Trigger::Schedule,
            v1::Trigger::Manual => Trigger::Manual,
            v1::Trigger::Config => Trigger::Config,
        }
    }
}

impl From<FailureClass> for v1::FailureClass {
    fn from(c: FailureClass) -> Self {
        match c {
            FailureClass::Transient => v1::FailureClass::Transient,
            FailureClass::Configuration => v1::FailureClass::Configuration,
        }
    }
}

impl From<v1::FailureClass> for FailureClass {
    fn from(c: v1::FailureClass) -> Self {
        match c {
            v1::FailureClass::Transient => FailureClass::Transient,
            v1::FailureClass::Configuration => FailureClass::Configuration,
        }
    }
}

impl From<&ListenerState> for v1::ListenerState {
    fn from(s: &ListenerState) -> Self {
        v1::ListenerState {
            configured_source: s.configured_source.clone(),
            installed: s.installed.as_ref().map(|i| v1::InstalledCertificate {
                seq: i.seq,
                thumbprint: i.thumbprint.0,
                version: i.version.clone(),
                source: i.source.clone(),
                not_after: i.not_after,
                installed_at_ms: i.installed_at_ms,
                trigger: i.trigger.into(),
            }),
            disabled: s.disabled,
            last_seq: s.last_seq,
            last_failure: s
                .last_failure
                .as_ref()
                .map(|(at, class, message)| (*at, (*class).into(), message.clone())),
        }
    }
}

impl From<v1::ListenerState> for ListenerState {
    fn from(s: v1::ListenerState) -> Self {
        ListenerState {
            configured_source: s.configured_source,
            installed: s.installed.map(|i| InstalledCertificate {
                seq: i.seq,
                thumbprint: Thumbprint(i.thumbprint),
                version: i.version,
                source: i.source,
                not_after: i.not_after,
                installed_at_ms: i.installed_at_ms,
                trigger: i.trigger.into(),
            }),
            disabled: s.disabled,
            last_seq: s.last_seq,
            last_failure: s
                .last_failure
                .map(|(at, class, message)| (at, class.into(), message)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn envelope(event: Event) -> Envelope {
        Envelope {
            format: ENVELOPE_FORMAT,
            seq: 3,
            at_ms: 1_700_000_000_123,
            listener: "web".into(),
            event,
            prev_hash: [7; 32],
        }
    }

    #[test]
    fn every_event_round_trips() {
        for event in crate::fuzzing::sample_events() {
            let e = envelope(event);
            let bytes = encode_envelope(&e).expect("encode");
            assert_eq!(decode_envelope(3, &bytes).expect("decode"), e);
        }
    }

    #[test]
    fn an_unknown_format_is_named_with_its_entry() {
        let mut bytes = encode_envelope(&envelope(Event::ListenerReenabled)).expect("encode");
        bytes[0] = 2; // The format is the first varint; 2 fits in one byte.
        let err = decode_envelope(3, &bytes).expect_err("format 2 is unknown");
        assert!(matches!(
            err,
            EventLogError::UnknownFormat {
                seq: 3,
                format: 2,
                ..
            }
        ));
        assert!(
            err.to_string().contains("entry 3 uses envelope format 2"),
            "{err}"
        );
    }

    #[test]
    fn truncated_or_padded_bytes_are_errors_not_panics() {
        let bytes = encode_envelope(&envelope(Event::ListenerReenabled)).expect("encode");
        for len in 0..bytes.len() {
            let err = decode_envelope(5, &bytes[..len]).expect_err("truncated");
            assert!(
                err.to_string().starts_with("entry 5 cannot be decoded"),
                "{err}"
            );
        }
        let mut padded = bytes.clone();
        padded.push(0);
        assert!(decode_envelope(5, &padded).is_err());
        // A huge length prefix must not allocate: listener length set to u64::MAX.
        let mut huge = bytes[..11].to_vec();
        huge.extend_from_slice(&[0xff; 20]);
        assert!(decode_envelope(5, &huge).is_err());
    }
}
