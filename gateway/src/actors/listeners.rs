//! The listeners actor: owns the per-listener certificate slots that the TLS resolvers were built
//! with, and is the only place that swaps a certificate in. Every swap is recorded in the log first,
//! so the log never misses a certificate that was served.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::SystemTime;

use actix::fut::WrapFuture;
use actix::{Actor, AtomicResponse, Context, Handler, Recipient};
use event_log::{Event, EventLogError, Trigger};
use listener::ListenerCertificate;
use tracing::{info, warn};

use super::messages::{
    Append, Install, InstallError, InstallOutcome, LoadInstalled, RecordInstall, Restore,
};

pub struct ListenersActor {
    metrics: Arc<crate::metrics::Metrics>,
    listeners: BTreeMap<String, Arc<ListenerCertificate>>,
    append: Recipient<Append>,
    record_install: Recipient<RecordInstall>,
    load_installed: Recipient<LoadInstalled>,
}

impl ListenersActor {
    pub fn new(
        metrics: Arc<crate::metrics::Metrics>,
        listeners: impl IntoIterator<Item = Arc<ListenerCertificate>>,
        append: Recipient<Append>,
        record_install: Recipient<RecordInstall>,
        load_installed: Recipient<LoadInstalled>,
    ) -> ListenersActor {
        ListenersActor {
            metrics,
            listeners: listeners
                .into_iter()
                .map(|l| (l.name().to_owned(), l))
                .collect(),
            append,
            record_install,
            load_installed,
        }
    }

    fn slot(&self, name: &str) -> Result<Arc<ListenerCertificate>, InstallError> {
        self.listeners
            .get(name)
            .cloned()
            .ok_or_else(|| InstallError::UnknownListener(name.to_owned()))
    }
}

impl Actor for ListenersActor {
    type Context = Context<Self>;
}

/// Installs run one at a time (`AtomicResponse`), so "record, then swap" of one install never
/// interleaves with another's and the log's order is the serving order.
impl Handler<Install> for ListenersActor {
    type Result = AtomicResponse<Self, Result<InstallOutcome, InstallError>>;

    fn handle(&mut self, msg: Install, _: &mut Self::Context) -> Self::Result {
        let slot = self.slot(&msg.listener);
        let append = self.append.clone();
        let record_install = self.record_install.clone();
        let metrics = self.metrics.clone();
        AtomicResponse::new(Box::pin(
            async move {
                let slot = slot?;
                let thumbprint = msg.bundle.thumbprint();
                let current = slot.current();
                let previous = current.as_ref().map(|c| c.thumbprint());
                let validation = listener::validate(&msg.bundle, slot.hostnames(), SystemTime::now());
                // The gate runs even for the certificate already served: the same leaf with a
                // wrong key or a broken chain is a bad source, and must be reported as such.
                let unchanged = matches!((&validation, &current), (Ok(validated), Some(served))
                    if served.thumbprint() == thumbprint
                        && served.certified_key().cert == validated.certified_key().cert);
                if unchanged {
                    return Ok(InstallOutcome::Unchanged { thumbprint });
                }
                if msg.fetched {
                    append
                        .send(Append {
                            listener: msg.listener.clone(),
                            event: Event::CertificateFetched {
                                source: msg.source.clone(),
                                version: msg.version.clone(),
                                thumbprint,
                            },
                        })
                        .await??;
                }
                match validation {
                    Err(rejection) => {
                        let reason = rejection.to_string();
                        metrics.rejected(&msg.listener, rejection.code());
                        warn!(listener = %msg.listener, %thumbprint, source = %msg.source, %reason, "certificate rejected; the previous one stays in service");
                        append
                            .send(Append {
                                listener: msg.listener,
                                event: Event::CertificateRejected {
                                    trigger: msg.trigger,
                                    thumbprint: Some(thumbprint),
                                    version: msg.version,
                                    reason: reason.clone(),
                                },
                            })
                            .await??;
                        Ok(InstallOutcome::Rejected { thumbprint, reason })
                    }
                    Ok(validated) => {
                        record_install
                            .send(RecordInstall {
                                listener: msg.listener.clone(),
                                bundle: msg.bundle,
                                trigger: msg.trigger,
                                previous,
                                version: msg.version,
                                source: msg.source,
                                not_after: validated.not_after(),
                            })
                            .await??;
                        slot.install(validated);
                        metrics.installed(&msg.listener, msg.trigger.as_str());
                        info!(listener = %msg.listener, %thumbprint, previous = ?previous.map(|p| p.to_string()), trigger = %msg.trigger, "certificate installed");
                        Ok(InstallOutcome::Installed {
                            previous,
                            thumbprint,
                        })
                    }
                }
            }
            .into_actor(self),
        ))
    }
}

impl Handler<Restore> for ListenersActor {
    type Result = AtomicResponse<Self, Result<Option<cert_bundle::Thumbprint>, InstallError>>;

    fn handle(&mut self, msg: Restore, _: &mut Self::Context) -> Self::Result {
        let slot = self.slot(&msg.listener);
        let append = self.append.clone();
        let load_installed = self.load_installed.clone();
        AtomicResponse::new(Box::pin(
            async move {
                let slot = slot?;
                if msg.disabled {
                    slot.set_serving(false);
                    warn!(listener = %msg.listener, "the listener was out of service when the gateway stopped; it stays out until a check succeeds");
                }
                let Some((installed, bundle)) = load_installed
                    .send(LoadInstalled {
                        listener: msg.listener.clone(),
                    })
                    .await??
                else {
                    return Ok(None);
                };
                let thumbprint = bundle.thumbprint();
                match listener::validate(&bundle, slot.hostnames(), SystemTime::now()) {
                    Ok(validated) => {
                        slot.install(validated);
                        let recorded = append
                            .send(Append {
                                listener: msg.listener.clone(),
                                event: Event::CertificateRestored {
                                    thumbprint,
                                    version: installed.version.clone(),
                                },
                            })
                            .await?;
                        match recorded {
                            Ok(_) => {}
                            // The restore changes nothing the log holds: a full disk must not
                            // keep the gateway from serving what the log says it served.
                            Err(error @ EventLogError::StorageFull { .. }) => {
                                warn!(listener = %msg.listener, %thumbprint, %error, "serving the certificate from the event log without recording its restore");
                            }
                            Err(error) => return Err(error.into()),
                        }
                        info!(listener = %msg.listener, %thumbprint, "certificate restored from the event log");
                        Ok(Some(thumbprint))
                    }
                    Err(rejection) => {
                        let reason = format!("the certificate in the event log no longer passes: {rejection}");
                        warn!(listener = %msg.listener, %thumbprint, %reason, "not restoring the last installed certificate");
                        append
                            .send(Append {
                                listener: msg.listener,
                                event: Event::CertificateRejected {
                                    trigger: Trigger::Startup,
                                    thumbprint: Some(thumbprint),
                                    version: installed.version,
                                    reason,
                                },
                            })
                            .await??;
                        Ok(None)
                    }
                }
            }
            .into_actor(self),
        ))
    }
}

/// The failure policy takes a listener out of service or puts it back. The certificate stays, so
/// putting it back needs no install; both changes are recorded.
impl Handler<rotator::SetListenerServing> for ListenersActor {
    type Result = AtomicResponse<Self, ()>;

    fn handle(&mut self, msg: rotator::SetListenerServing, _: &mut Self::Context) -> Self::Result {
        let slot = self.listeners.get(&msg.listener).cloned();
        let append = self.append.clone();
        AtomicResponse::new(Box::pin(
            async move {
                let Some(slot) = slot else { return };
                let was_serving = slot.set_serving(msg.serving);
                if was_serving == msg.serving {
                    return;
                }
                let event = if msg.serving {
                    info!(listener = %msg.listener, reason = %msg.reason, "listener back in service");
                    Event::ListenerReenabled
                } else {
                    warn!(listener = %msg.listener, reason = %msg.reason, "listener taken out of service");
                    Event::ListenerDisabled { reason: msg.reason }
                };
                match append.send(Append { listener: msg.listener.clone(), event }).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(err)) => tracing::error!(listener = %msg.listener, error = %err, "cannot record a serving change"),
                    Err(err) => tracing::error!(listener = %msg.listener, error = %err, "cannot record a serving change"),
                }
            }
            .into_actor(self),
        ))
    }
}
