//! One check of a Key Vault listener: fetch the secret, and install it through the gate if it is not
//! what is already served. Used at startup and by the background retry of a listener that has no
//! certificate yet.

use std::fmt;
use std::time::Duration;

use actix::{Addr, Recipient};
use cert_bundle::Thumbprint;
use event_log::{Event, FailureClass, Trigger};
use tracing::{error, info, warn};
use vault_client::{ErrorClass, SecretId};

use crate::actors::messages::{Append, FetchCertificate, Install, InstallOutcome};
use crate::actors::ListenersActor;

/// What one check did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum CheckOutcome {
    Rotated {
        #[serde(serialize_with = "ser_opt_thumbprint")]
        from: Option<Thumbprint>,
        #[serde(serialize_with = "ser_thumbprint")]
        to: Thumbprint,
        version: String,
    },
    Unchanged {
        #[serde(serialize_with = "ser_thumbprint")]
        thumbprint: Thumbprint,
        version: String,
    },
    Rejected {
        version: String,
        reason: String,
    },
    Failed {
        class: String,
        message: String,
    },
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
            } => {
                write!(f, "unchanged {thumbprint} (version {version})")
            }
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

/// Everything a check talks to.
#[derive(Clone)]
pub struct Checker {
    pub vault: Recipient<FetchCertificate>,
    pub append: Recipient<Append>,
    pub listeners: Addr<ListenersActor>,
}

impl Checker {
    /// Fetches `id` for `listener` and installs it unless it is already served. A failed fetch is
    /// recorded when `record_failure` is set (the first failure of a streak).
    pub async fn check(
        &self,
        listener: &str,
        id: &SecretId,
        trigger: Trigger,
        record_failure: bool,
    ) -> anyhow::Result<CheckOutcome> {
        let fetched = self.vault.send(FetchCertificate { id: id.clone() }).await?;
        let fetched = match fetched {
            Ok(fetched) => fetched,
            Err(err) => {
                let class = match err.class() {
                    ErrorClass::Transient => FailureClass::Transient,
                    _ => FailureClass::Configuration,
                };
                let message = err.to_string();
                error!(listener, secret = %id, class = class.as_str(), error = %message, "fetching the certificate from Key Vault failed");
                if record_failure {
                    self.append
                        .send(Append {
                            listener: listener.to_owned(),
                            event: Event::FetchFailed {
                                trigger,
                                class,
                                message: message.clone(),
                            },
                        })
                        .await??;
                }
                return Ok(CheckOutcome::Failed {
                    class: class.as_str().to_owned(),
                    message,
                });
            }
        };
        let version = fetched.version.clone();
        let outcome = self
            .listeners
            .send(Install {
                listener: listener.to_owned(),
                bundle: fetched.bundle,
                source: id.to_string(),
                version: Some(version.clone()),
                trigger,
                fetched: true,
            })
            .await??;
        Ok(match outcome {
            InstallOutcome::Installed {
                previous,
                thumbprint,
            } => CheckOutcome::Rotated {
                from: previous,
                to: thumbprint,
                version,
            },
            InstallOutcome::Unchanged { thumbprint } => CheckOutcome::Unchanged {
                thumbprint,
                version,
            },
            InstallOutcome::Rejected { reason, .. } => CheckOutcome::Rejected { version, reason },
        })
    }

    /// Keeps checking a listener that has no certificate yet until one is installed, backing off
    /// from 15 s to 5 min. The startup check already recorded the failure that began this streak,
    /// so the retries record nothing until one succeeds.
    pub async fn until_installed(self, listener: String, id: SecretId) {
        let mut delay = Duration::from_secs(15);
        loop {
            tokio::time::sleep(delay).await;
            match self.check(&listener, &id, Trigger::Startup, false).await {
                Ok(CheckOutcome::Rotated { .. } | CheckOutcome::Unchanged { .. }) => {
                    info!(listener, "the listener has a certificate and is ready");
                    return;
                }
                Ok(outcome) => {
                    warn!(listener, %outcome, retry_in = ?delay, "the listener still has no certificate")
                }
                Err(err) => warn!(listener, error = %format!("{err:#}"), "check failed"),
            }
            delay = (delay * 2).min(Duration::from_secs(300));
        }
    }
}
