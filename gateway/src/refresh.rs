//! One check of a Key Vault listener, the gateway's answer to the rotator's `RunCheck`: fetch the
//! secret and install it through the gate unless it is what is already served. Fetch failures are
//! not recorded here; the rotator's failure policy decides which to record.

use std::collections::BTreeMap;
use std::sync::Arc;

use actix::{Actor, Addr, Context, Handler, Recipient, ResponseFuture};
use event_log::FailureClass;
use listener::ListenerCertificate;
use rotator::{CheckOutcome, CheckReport, RunCheck, ServedCertificate};
use tracing::warn;
use vault_client::{ErrorClass, SecretId};

use crate::actors::messages::{FetchCertificate, Install, InstallOutcome};
use crate::actors::ListenersActor;
use crate::metrics::Metrics;

/// Runs checks for the Key Vault listeners.
pub struct CheckerActor {
    /// The secret each Key Vault listener reads.
    secrets: BTreeMap<String, SecretId>,
    /// Read-only: what each listener serves, for the report.
    slots: BTreeMap<String, Arc<ListenerCertificate>>,
    vault: Recipient<FetchCertificate>,
    listeners: Addr<ListenersActor>,
    metrics: Arc<Metrics>,
}

impl CheckerActor {
    pub fn new(
        secrets: BTreeMap<String, SecretId>,
        slots: BTreeMap<String, Arc<ListenerCertificate>>,
        vault: Recipient<FetchCertificate>,
        listeners: Addr<ListenersActor>,
        metrics: Arc<Metrics>,
    ) -> CheckerActor {
        CheckerActor {
            secrets,
            slots,
            vault,
            listeners,
            metrics,
        }
    }
}

impl Actor for CheckerActor {
    type Context = Context<Self>;
}

impl Handler<RunCheck> for CheckerActor {
    type Result = ResponseFuture<CheckReport>;

    fn handle(&mut self, msg: RunCheck, _: &mut Self::Context) -> Self::Result {
        let id = self.secrets.get(&msg.listener).cloned();
        let slot = self.slots.get(&msg.listener).cloned();
        let vault = self.vault.clone();
        let listeners = self.listeners.clone();
        let metrics = self.metrics.clone();
        Box::pin(async move {
            let outcome = match id {
                Some(id) => check(&msg, &id, &vault, &listeners).await,
                None => CheckOutcome::Failed {
                    class: FailureClass::Configuration,
                    message: format!(
                        "listener `{}` does not read its certificate from Key Vault",
                        msg.listener
                    ),
                },
            };
            let failure = match &outcome {
                CheckOutcome::Failed { class, .. } => Some(class.as_str()),
                _ => None,
            };
            metrics.checked(&msg.listener, failure);
            let served = slot.and_then(|s| s.current()).map(|c| ServedCertificate {
                thumbprint: c.thumbprint(),
                not_after: c.not_after(),
            });
            CheckReport { outcome, served }
        })
    }
}

async fn check(
    msg: &RunCheck,
    id: &SecretId,
    vault: &Recipient<FetchCertificate>,
    listeners: &Addr<ListenersActor>,
) -> CheckOutcome {
    let internal = |what: &str, err: &dyn std::fmt::Display| {
        warn!(listener = %msg.listener, error = %err, "{what}");
        CheckOutcome::Failed {
            class: FailureClass::Transient,
            message: format!("{what}: {err}"),
        }
    };
    let fetched = match vault.send(FetchCertificate { id: id.clone() }).await {
        Ok(Ok(fetched)) => fetched,
        Ok(Err(err)) => {
            let class = match err.class() {
                ErrorClass::Transient => FailureClass::Transient,
                _ => FailureClass::Configuration,
            };
            return CheckOutcome::Failed {
                class,
                message: err.to_string(),
            };
        }
        Err(err) => return internal("the Key Vault actor is gone", &err),
    };
    let version = fetched.version.clone();
    let installed = listeners
        .send(Install {
            listener: msg.listener.clone(),
            bundle: fetched.bundle,
            source: id.to_string(),
            version: Some(version.clone()),
            trigger: msg.trigger,
            fetched: true,
        })
        .await;
    match installed {
        Ok(Ok(InstallOutcome::Installed {
            previous,
            thumbprint,
        })) => CheckOutcome::Rotated {
            from: previous,
            to: thumbprint,
            version,
        },
        Ok(Ok(InstallOutcome::Unchanged { thumbprint })) => CheckOutcome::Unchanged {
            thumbprint,
            version,
        },
        Ok(Ok(InstallOutcome::Rejected { reason, .. })) => {
            CheckOutcome::Rejected { version, reason }
        }
        Ok(Err(err)) => internal("recording the install failed", &err),
        Err(err) => internal("the listeners actor is gone", &err),
    }
}
