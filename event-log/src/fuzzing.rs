//! Entry points for the fuzz targets in `fuzz/` and their corpus replay test. Not an API: each
//! function takes raw bytes, runs one parser the gateway exposes to untrusted input, and checks the
//! properties that must hold for every input. A panic here is a bug the fuzzer found.

use cert_bundle::Thumbprint;

use crate::codec::{
    decode_envelope, decode_listener_state, encode_envelope, encode_listener_state,
};
use crate::event::{Envelope, Event, FailureClass, SealedBundle, Trigger, ENVELOPE_FORMAT};
use crate::state::{apply, State};

/// Event envelope and snapshot decoding, as a damaged or hostile `events.redb` would feed them:
/// whatever decodes encodes back to the same value, and folding it into the state never panics.
pub fn envelope(data: &[u8]) {
    if let Ok(envelope) = decode_envelope(1, data) {
        let bytes = encode_envelope(&envelope).expect("a decoded envelope encodes");
        let again = decode_envelope(1, &bytes).expect("a re-encoded envelope decodes");
        assert_eq!(again, envelope, "the envelope changed in a round trip");
        let mut state = State::default();
        apply(&mut state, &envelope);
        apply(&mut state, &envelope);
    }
    if let Ok(snapshot) = decode_listener_state("fuzz", data) {
        let bytes = encode_listener_state("fuzz", &snapshot).expect("a decoded snapshot encodes");
        let again = decode_listener_state("fuzz", &bytes).expect("a re-encoded snapshot decodes");
        assert_eq!(again, snapshot, "the snapshot changed in a round trip");
    }
}

/// One event of every kind, with every optional field set somewhere.
pub fn sample_events() -> Vec<Event> {
    let thumbprint = Thumbprint([9; 32]);
    vec![
        Event::ListenerConfigured {
            source: "keyvault:https://myvault.vault.azure.net/secrets/web".into(),
        },
        Event::CertificateFetched {
            source: "s".into(),
            version: Some("0123456789abcdef0123456789abcdef".into()),
            thumbprint,
        },
        Event::CertificateInstalled {
            trigger: Trigger::Config,
            previous: Some(Thumbprint([1; 32])),
            thumbprint,
            version: None,
            source: "s".into(),
            not_after: -5,
            material: SealedBundle {
                chain: vec![vec![1, 2], vec![3]],
                sealed_key: vec![4; 40],
            },
        },
        Event::CertificateRejected {
            trigger: Trigger::Manual,
            thumbprint: None,
            version: None,
            reason: "r".into(),
        },
        Event::FetchFailed {
            trigger: Trigger::Startup,
            class: FailureClass::Configuration,
            message: "m".into(),
        },
        Event::FetchFailed {
            trigger: Trigger::Schedule,
            class: FailureClass::Transient,
            message: "HTTP 503".into(),
        },
        Event::ListenerDisabled { reason: "r".into() },
        Event::ListenerReenabled,
        Event::CertificateRestored {
            thumbprint,
            version: None,
        },
        Event::ExpiryWarning {
            thumbprint,
            not_after: 12,
        },
    ]
}

/// Seeds for the `envelope` target: every sample event as a stored envelope, and the snapshots
/// they fold into.
pub fn seeds() -> Vec<Vec<u8>> {
    let mut state = State::default();
    let mut seeds = Vec::new();
    for (seq, event) in (1..).zip(sample_events()) {
        let envelope = Envelope {
            format: ENVELOPE_FORMAT,
            seq,
            at_ms: 1_700_000_000_123,
            listener: "web".into(),
            event,
            prev_hash: [7; 32],
        };
        seeds.push(encode_envelope(&envelope).expect("a sample envelope encodes"));
        apply(&mut state, &envelope);
        if let Some(snapshot) = state.listeners.get("web") {
            seeds.push(encode_listener_state("web", snapshot).expect("a snapshot encodes"));
        }
    }
    seeds
}
