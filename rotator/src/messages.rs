//! Every message the rotator sends or handles, each with its typed reply.
//!
//! The rotator knows nothing about HTTP or Key Vault: it asks whoever holds the
//! `Recipient<RunCheck>` (the gateway) to run a check, and tells the holders of the other outgoing
//! recipients what the failure policy decided. The gateway talks to the rotator with the incoming
//! messages.

use std::fmt;

use actix::{Message, MessageResponse};
use cert_bundle::Thumbprint;
use event_log::{FailureClass, Trigger};
use serde::Serialize;

use crate::RotatorError;

// === Outgoing: the gateway handles these ===

/// Check one listener now: fetch its Key Vault secret and install it through the listener's gate
/// unless it is already served.
///
/// The handler records the fetched / installed / rejected events itself, but never a fetch
/// failure: whether a failure is recorded is the rotator's decision ([`RecordFetchFailure`]).
/// Errors of the handler's own plumbing are reported as [`CheckOutcome::Failed`].
#[derive(Debug, Clone, PartialEq, Eq, Message)]
#[rtype(result = "CheckReport")]
pub struct RunCheck {
    /// The listener's configured name.
    pub listener: String,
    /// Why the check runs: [`Trigger::Schedule`] (cron tick or a retry) or [`Trigger::Manual`].
    pub trigger: Trigger,
}

/// What a [`RunCheck`] did, and what the listener serves after it.
#[derive(Debug, Clone, PartialEq, Eq, MessageResponse)]
pub struct CheckReport {
    /// The outcome of the check.
    pub outcome: CheckOutcome,
    /// The certificate the listener serves after the check (for the expiry warning), if any.
    pub served: Option<ServedCertificate>,
}

/// The certificate a listener serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServedCertificate {
    /// Its SHA-256 thumbprint.
    pub thumbprint: Thumbprint,
    /// Its leaf's `notAfter`, in Unix seconds.
    pub not_after: i64,
}

/// Append a `fetch_failed` event. Sent once per failure streak, not per retry.
#[derive(Debug, Clone, PartialEq, Eq, Message)]
#[rtype(result = "()")]
pub struct RecordFetchFailure {
    /// The listener whose fetch failed.
    pub listener: String,
    /// Why the failed check ran.
    pub trigger: Trigger,
    /// Whether retrying may help.
    pub class: FailureClass,
    /// What went wrong, as the check reported it.
    pub message: String,
}

/// Take a listener out of service (`serving: false`, the `disable-listener` policy) or put it
/// back. The handler records `listener_disabled` / `listener_reenabled`.
#[derive(Debug, Clone, PartialEq, Eq, Message)]
#[rtype(result = "()")]
pub struct SetListenerServing {
    /// The listener.
    pub listener: String,
    /// Whether it serves from now on.
    pub serving: bool,
    /// Why, in a sentence for the event log.
    pub reason: String,
}

/// The served certificate is within the expiry window and no newer version was installed. The
/// handler records an `expiry_warning`. Sent at most once a day per listener.
#[derive(Debug, Clone, PartialEq, Eq, Message)]
#[rtype(result = "()")]
pub struct WarnExpiry {
    /// The listener.
    pub listener: String,
    /// The served certificate.
    pub thumbprint: Thumbprint,
    /// Its `notAfter`, in Unix seconds.
    pub not_after: i64,
}

// === Incoming: the rotator handles these ===

/// Run a check of one listener now ([`Trigger::Manual`]), apply the failure policy, and reply with
/// the outcome once the policy's messages were delivered.
///
/// When a check of that listener is already running, this one runs right after it finishes
/// (requests that arrive meanwhile share that next run), so the reply always describes a check
/// that started after the request.
#[derive(Debug, Clone, PartialEq, Eq, Message)]
#[rtype(result = "Result<CheckOutcome, RotatorError>")]
pub struct CheckNow {
    /// The listener's configured name.
    pub listener: String,
    /// Why: `Manual` for the admin API and `gateway refresh`, `Startup` for the gateway's
    /// reconciliation with Key Vault right after it binds.
    pub trigger: Trigger,
}

/// The check state of every listener, in configuration order (admin API `GET /listeners`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Message)]
#[rtype(result = "Vec<ListenerCheckStatus>")]
pub struct ListenerStatus;

/// One listener's check state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ListenerCheckStatus {
    /// The listener's configured name.
    pub listener: String,
    /// When the last check finished, in Unix milliseconds.
    pub last_check_ms: Option<i64>,
    /// What the last check did.
    pub last_outcome: Option<CheckOutcome>,
    /// When the next check is due, in Unix milliseconds (a retry when a transient streak runs).
    pub next_check_ms: Option<i64>,
    /// When the current run of failed checks began, in Unix milliseconds.
    pub failing_since_ms: Option<i64>,
    /// The class of the current failure streak.
    pub failure_class: Option<FailureClass>,
    /// Whether the `disable-listener` policy took the listener out of service.
    pub disabled: bool,
    /// Whether the listener references one Key Vault version (it is checked but never rotates).
    pub pinned: bool,
}

// === Shared types ===

/// What one check did.
///
/// Serialized for the admin API with an `outcome` tag; thumbprints are uppercase hex strings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum CheckOutcome {
    /// A new certificate was installed (`from` is `None` when the listener had none).
    Rotated {
        /// The certificate it replaced.
        #[serde(serialize_with = "ser_opt_thumbprint")]
        from: Option<Thumbprint>,
        /// The certificate now served.
        #[serde(serialize_with = "ser_thumbprint")]
        to: Thumbprint,
        /// Its Key Vault version.
        version: String,
    },
    /// Key Vault holds what is already served.
    Unchanged {
        /// The served certificate.
        #[serde(serialize_with = "ser_thumbprint")]
        thumbprint: Thumbprint,
        /// Its Key Vault version.
        version: String,
    },
    /// A new version failed the listener's gate; the served certificate stays.
    Rejected {
        /// The rejected Key Vault version.
        version: String,
        /// Why the gate refused it.
        reason: String,
    },
    /// The secret could not be fetched.
    Failed {
        /// Whether retrying may help.
        class: FailureClass,
        /// What went wrong (never a token or key).
        message: String,
    },
}

impl CheckOutcome {
    /// Whether the check reached Key Vault and the listener serves what it holds.
    pub fn is_success(&self) -> bool {
        matches!(
            self,
            CheckOutcome::Rotated { .. } | CheckOutcome::Unchanged { .. }
        )
    }
}

impl fmt::Display for CheckOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CheckOutcome::Rotated { from, to, version } => match from {
                Some(from) => write!(f, "rotated {from} -> {to} (version {version})"),
                None => write!(f, "installed {to} (version {version})"),
            },
            CheckOutcome::Unchanged {
                thumbprint,
                version,
            } => write!(f, "unchanged {thumbprint} (version {version})"),
            CheckOutcome::Rejected { version, reason } => {
                write!(f, "rejected version {version}: {reason}")
            }
            CheckOutcome::Failed { class, message } => write!(f, "failed ({class}): {message}"),
        }
    }
}

fn ser_thumbprint<S: serde::Serializer>(t: &Thumbprint, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(t)
}

fn ser_opt_thumbprint<S: serde::Serializer>(
    t: &Option<Thumbprint>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => s.collect_str(t),
        None => s.serialize_none(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn thumb(byte: u8) -> Thumbprint {
        Thumbprint([byte; 32])
    }

    #[test]
    fn outcomes_display_for_people() {
        let cases = [
            (
                CheckOutcome::Rotated {
                    from: Some(thumb(0xab)),
                    to: thumb(0xcd),
                    version: "v2".into(),
                },
                format!(
                    "rotated {} -> {} (version v2)",
                    "AB".repeat(32),
                    "CD".repeat(32)
                ),
            ),
            (
                CheckOutcome::Rotated {
                    from: None,
                    to: thumb(0xcd),
                    version: "v1".into(),
                },
                format!("installed {} (version v1)", "CD".repeat(32)),
            ),
            (
                CheckOutcome::Unchanged {
                    thumbprint: thumb(1),
                    version: "v1".into(),
                },
                format!("unchanged {} (version v1)", "01".repeat(32)),
            ),
            (
                CheckOutcome::Rejected {
                    version: "v3".into(),
                    reason: "expired".into(),
                },
                "rejected version v3: expired".to_owned(),
            ),
            (
                CheckOutcome::Failed {
                    class: FailureClass::Transient,
                    message: "503".into(),
                },
                "failed (transient): 503".to_owned(),
            ),
        ];
        for (outcome, expected) in cases {
            assert_eq!(outcome.to_string(), expected);
        }
    }

    #[test]
    fn outcomes_serialize_with_a_tag_and_hex_thumbprints() {
        let rotated = serde_json::to_value(CheckOutcome::Rotated {
            from: None,
            to: thumb(0xcd),
            version: "v1".into(),
        })
        .unwrap();
        assert_eq!(
            rotated,
            serde_json::json!({"outcome": "rotated", "from": null, "to": "CD".repeat(32), "version": "v1"})
        );
        let failed = serde_json::to_value(CheckOutcome::Failed {
            class: FailureClass::Configuration,
            message: "403".into(),
        })
        .unwrap();
        assert_eq!(
            failed,
            serde_json::json!({"outcome": "failed", "class": "configuration", "message": "403"})
        );
    }
}
