//! The serving state that the log folds into, and the fold itself.
//!
//! `apply` is pure: the same envelopes in the same order always give the same state, whether they
//! are replayed from the whole log or applied one at a time as they are appended (which is how the
//! per-listener snapshot is kept).

use std::collections::BTreeMap;

use cert_bundle::Thumbprint;
use serde::Serialize;

use crate::event::{ser, Envelope, Event, FailureClass, Trigger};

/// The state of every listener the log has seen.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct State {
    /// Each listener's state, by listener name.
    pub listeners: BTreeMap<String, ListenerState>,
}

/// What the log says about one listener.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ListenerState {
    /// The certificate source last configured, so a config change can be told from a restart.
    pub configured_source: Option<String>,
    /// The certificate to serve: the last one installed. Restoring it at startup does not change
    /// it; only a new install does.
    pub installed: Option<InstalledCertificate>,
    /// Whether the `disable-listener` policy took the listener out of service.
    pub disabled: bool,
    /// The sequence number of the last event about this listener.
    pub last_seq: u64,
    /// The last failed fetch `(at_ms, class, message)`, cleared by a successful fetch or install,
    /// so the admin API can say why a listener is stale.
    pub last_failure: Option<(i64, FailureClass, String)>,
}

/// The certificate a listener serves, as recorded by its install event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InstalledCertificate {
    /// The sequence number of the install envelope, where the sealed material is.
    pub seq: u64,
    /// The SHA-256 thumbprint of the leaf.
    #[serde(serialize_with = "ser::thumbprint")]
    pub thumbprint: Thumbprint,
    /// The Key Vault version, when the source has versions.
    pub version: Option<String>,
    /// Where it came from.
    pub source: String,
    /// The leaf's `notAfter`, in Unix seconds.
    pub not_after: i64,
    /// When it was installed, in Unix milliseconds.
    pub installed_at_ms: i64,
    /// Why the check that installed it ran.
    pub trigger: Trigger,
}

/// Folds one envelope into the state.
pub fn apply(state: &mut State, envelope: &Envelope) {
    state
        .listeners
        .entry(envelope.listener.clone())
        .or_default()
        .apply(envelope);
}

impl ListenerState {
    /// Folds one envelope about this listener into its state.
    pub(crate) fn apply(&mut self, envelope: &Envelope) {
        self.last_seq = envelope.seq;
        match &envelope.event {
            Event::ListenerConfigured { source } => {
                self.configured_source = Some(source.clone());
            }
            Event::CertificateFetched { .. } => {
                self.last_failure = None;
            }
            Event::CertificateInstalled {
                trigger,
                thumbprint,
                version,
                source,
                not_after,
                ..
            } => {
                self.installed = Some(InstalledCertificate {
                    seq: envelope.seq,
                    thumbprint: *thumbprint,
                    version: version.clone(),
                    source: source.clone(),
                    not_after: *not_after,
                    installed_at_ms: envelope.at_ms,
                    trigger: *trigger,
                });
                self.last_failure = None;
            }
            Event::FetchFailed { class, message, .. } => {
                self.last_failure = Some((envelope.at_ms, *class, message.clone()));
            }
            Event::ListenerDisabled { .. } => self.disabled = true,
            Event::ListenerReenabled => self.disabled = false,
            Event::CertificateRejected { .. }
            | Event::CertificateRestored { .. }
            | Event::ExpiryWarning { .. } => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{SealedBundle, ENVELOPE_FORMAT};

    const T1: Thumbprint = Thumbprint([1; 32]);
    const T2: Thumbprint = Thumbprint([2; 32]);

    /// Given these events about listener `web`, in order, at times 1000, 2000, … ms.
    fn given(events: Vec<Event>) -> State {
        let mut state = State::default();
        for (i, event) in events.into_iter().enumerate() {
            let seq = i as u64 + 1;
            let envelope = Envelope {
                format: ENVELOPE_FORMAT,
                seq,
                at_ms: seq as i64 * 1000,
                listener: "web".into(),
                event,
                prev_hash: [0; 32],
            };
            apply(&mut state, &envelope);
        }
        state
    }

    fn install(thumbprint: Thumbprint, previous: Option<Thumbprint>) -> Event {
        Event::CertificateInstalled {
            trigger: Trigger::Schedule,
            previous,
            thumbprint,
            version: Some(format!("v{}", thumbprint.0[0])),
            source: "https://v.vault.azure.net/secrets/web".into(),
            not_after: 1_900_000_000,
            material: SealedBundle::default(),
        }
    }

    fn web(state: &State) -> &ListenerState {
        &state.listeners["web"]
    }

    #[test]
    fn an_install_then_a_newer_install_serves_the_newer() {
        let state = given(vec![install(T1, None), install(T2, Some(T1))]);
        let installed = web(&state).installed.as_ref().expect("installed");
        assert_eq!(installed.thumbprint, T2);
        assert_eq!(installed.seq, 2);
        assert_eq!(installed.installed_at_ms, 2000);
        assert_eq!(installed.version.as_deref(), Some("v2"));
    }

    #[test]
    fn a_rejection_or_a_failed_fetch_keeps_the_installed_certificate() {
        let state = given(vec![
            install(T1, None),
            Event::CertificateRejected {
                trigger: Trigger::Manual,
                thumbprint: Some(T2),
                version: None,
                reason: "expired".into(),
            },
            Event::FetchFailed {
                trigger: Trigger::Schedule,
                class: FailureClass::Transient,
                message: "timeout".into(),
            },
        ]);
        assert_eq!(
            web(&state).installed.as_ref().map(|i| i.thumbprint),
            Some(T1)
        );
        assert_eq!(
            web(&state).last_failure,
            Some((3000, FailureClass::Transient, "timeout".into()))
        );
        assert_eq!(web(&state).last_seq, 3);
    }

    #[test]
    fn a_restore_does_not_change_the_install() {
        let state = given(vec![
            install(T1, None),
            Event::CertificateRestored {
                thumbprint: T1,
                version: Some("v1".into()),
            },
        ]);
        assert_eq!(web(&state).installed.as_ref().map(|i| i.seq), Some(1));
        assert_eq!(web(&state).last_seq, 2);
    }

    #[test]
    fn a_successful_fetch_clears_the_last_failure() {
        let state = given(vec![
            Event::FetchFailed {
                trigger: Trigger::Startup,
                class: FailureClass::Configuration,
                message: "403".into(),
            },
            Event::CertificateFetched {
                source: "s".into(),
                version: None,
                thumbprint: T1,
            },
        ]);
        assert_eq!(web(&state).last_failure, None);
        assert_eq!(web(&state).installed, None);
    }

    #[test]
    fn disable_and_reenable_toggle_the_listener() {
        let disabled = given(vec![Event::ListenerDisabled {
            reason: "secret gone".into(),
        }]);
        assert!(web(&disabled).disabled);
        let reenabled = given(vec![
            Event::ListenerDisabled {
                reason: "secret gone".into(),
            },
            Event::ListenerReenabled,
        ]);
        assert!(!web(&reenabled).disabled);
    }

    #[test]
    fn configuring_records_the_source_and_keeps_the_install() {
        let state = given(vec![
            install(T1, None),
            Event::ListenerConfigured {
                source: "other".into(),
            },
        ]);
        assert_eq!(web(&state).configured_source.as_deref(), Some("other"));
        assert!(web(&state).installed.is_some());
    }
}
