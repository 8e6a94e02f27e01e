//! `gateway run`: open the log, restore, reconcile with the configured sources, bind, serve.
//!
//! The order is DESIGN §3's: the log is replayed and each listener's last good certificate is
//! installed *before* its socket is bound, so a restart never serves a handshake without the
//! certificate the log says was being served.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use actix::{Actor, Addr};
use actix_web::{web, App, HttpServer};
use anyhow::{bail, Context as _};
use event_log::{Event, EventLog, FailureClass, Trigger};
use listener::{ListenerCertificate, SniResolver};
use tracing::{error, info, warn};
use vault_client::SecretId;

use crate::actors::messages::{Append, Install, InstallOutcome, ReadState, Restore};
use crate::actors::{EventLogActor, ListenersActor, VaultActor};
use crate::config::{CertificateSource, Config, ListenerConfig, Protocol};
use crate::keyvault;
use crate::proxy::{self, BackendPool, Route, Site, Sites};
use crate::refresh::{CheckOutcome, Checker};
use crate::sources;

/// A listener that is accepting connections.
#[derive(Debug, Clone)]
pub struct BoundListener {
    pub name: String,
    pub protocol: Protocol,
    pub addr: SocketAddr,
}

/// The running gateway: its bound addresses and the servers to wait on.
pub struct Running {
    pub listeners: Vec<BoundListener>,
    /// A server only starts accepting once polled, so each runs as its own task from the start.
    servers: Vec<tokio::task::JoinHandle<std::io::Result<()>>>,
    handles: Vec<actix_web::dev::ServerHandle>,
}

impl Running {
    /// A handle that stops every server: gracefully (open connections finish) or at once.
    pub fn stopper(&self) -> Stopper {
        Stopper(self.handles.clone())
    }

    /// Waits until every server has stopped (on SIGINT/SIGTERM, after draining connections).
    pub async fn wait(self) -> std::io::Result<()> {
        for server in self.servers {
            server.await.map_err(std::io::Error::other)??;
        }
        Ok(())
    }
}

/// Stops the running servers.
#[derive(Clone)]
pub struct Stopper(Vec<actix_web::dev::ServerHandle>);

impl Stopper {
    pub async fn stop(&self, graceful: bool) {
        for handle in &self.0 {
            handle.stop(graceful).await;
        }
    }
}

/// Starts the gateway inside the current actix system.
pub async fn start(config: Config) -> anyhow::Result<Running> {
    let state_dir = config.state.dir.clone();
    let log = tokio::task::spawn_blocking(move || EventLog::open(&state_dir))
        .await?
        .with_context(|| format!("event log in {}", config.state.dir.display()))?;
    let log = Arc::new(log);
    let log_actor = EventLogActor::start(log);

    let slots: BTreeMap<String, Arc<ListenerCertificate>> = config
        .listeners
        .iter()
        .filter(|l| l.protocol == Protocol::Https)
        .map(|l| {
            (
                l.name.clone(),
                Arc::new(ListenerCertificate::new(
                    l.name.clone(),
                    l.hostnames.clone(),
                )),
            )
        })
        .collect();
    let listeners_actor = ListenersActor::new(
        slots.values().cloned(),
        log_actor.clone().recipient(),
        log_actor.clone().recipient(),
        log_actor.clone().recipient(),
    )
    .start();

    let checker = keyvault::vault_client(&config)?.map(|client| Checker {
        vault: VaultActor::new(client).start().recipient(),
        append: log_actor.clone().recipient(),
        listeners: listeners_actor.clone(),
    });

    let state = log_actor.send(ReadState).await??;
    let mut after_bind = Vec::new();
    for listener in config
        .listeners
        .iter()
        .filter(|l| l.protocol == Protocol::Https)
    {
        let configured = state
            .listeners
            .get(&listener.name)
            .and_then(|s| s.configured_source.clone());
        let pending = reconcile(
            &config,
            listener,
            configured,
            &log_actor,
            &listeners_actor,
            checker.as_ref(),
        )
        .await?;
        after_bind.extend(pending);
    }

    let running = bind_all(&config, &slots).await?;
    for pending in after_bind {
        match pending {
            AfterBind::Check {
                checker,
                listener,
                id,
            } => {
                actix_web::rt::spawn(async move {
                    match checker.check(&listener, &id, Trigger::Startup, true).await {
                        Ok(outcome) => info!(listener, %outcome, "startup check against Key Vault"),
                        Err(err) => {
                            warn!(listener, error = %format!("{err:#}"), "startup check failed")
                        }
                    }
                });
            }
            AfterBind::RetryUntilInstalled {
                checker,
                listener,
                id,
            } => {
                actix_web::rt::spawn(checker.until_installed(listener, id));
            }
        }
    }
    Ok(running)
}

/// Work for a Key Vault listener that waits until the sockets are bound.
enum AfterBind {
    /// Served from the log: compare with Key Vault in the background.
    Check {
        checker: Checker,
        listener: String,
        id: SecretId,
    },
    /// Nothing to serve yet and Key Vault did not give a certificate: keep trying.
    RetryUntilInstalled {
        checker: Checker,
        listener: String,
        id: SecretId,
    },
}

/// Brings one https listener to its serving state: record a changed source, restore the last
/// installed certificate from the log, then compare with the configured source.
async fn reconcile(
    config: &Config,
    listener: &ListenerConfig,
    configured_source: Option<String>,
    log: &Addr<EventLogActor>,
    listeners: &Addr<ListenersActor>,
    checker: Option<&Checker>,
) -> anyhow::Result<Option<AfterBind>> {
    let source = listener
        .certificate
        .clone()
        .context("https listener without certificate")?;
    let source_text = source.to_string();
    if configured_source.as_deref() != Some(source_text.as_str()) {
        log.send(Append {
            listener: listener.name.clone(),
            event: Event::ListenerConfigured {
                source: source_text.clone(),
            },
        })
        .await??;
    }
    let restored = listeners
        .send(Restore {
            listener: listener.name.clone(),
        })
        .await??;
    let CertificateSource::KeyVault {
        key_vault_secret_id,
    } = &source
    else {
        reconcile_file(listener, source, restored, log, listeners).await?;
        return Ok(None);
    };
    let id = keyvault::secret_id(config, key_vault_secret_id)?;
    let checker = checker
        .context("a Key Vault listener needs [identity]")?
        .clone();
    let name = listener.name.clone();
    if restored.is_some() {
        return Ok(Some(AfterBind::Check {
            checker,
            listener: name,
            id,
        }));
    }
    // Nothing to restore: the listener is not ready until Key Vault answers, so try now, before
    // binding. Other listeners wait at most for the client's retries.
    let outcome = checker.check(&name, &id, Trigger::Startup, true).await?;
    match outcome {
        CheckOutcome::Rotated { .. } | CheckOutcome::Unchanged { .. } => Ok(None),
        outcome => {
            error!(listener = %name, %outcome, "the listener has no certificate and is not ready; retrying in the background");
            Ok(Some(AfterBind::RetryUntilInstalled {
                checker,
                listener: name,
                id,
            }))
        }
    }
}

/// Brings a file listener to its serving state after the restore: install the file if it changed.
async fn reconcile_file(
    listener: &ListenerConfig,
    source: CertificateSource,
    restored: Option<cert_bundle::Thumbprint>,
    log: &Addr<EventLogActor>,
    listeners: &Addr<ListenersActor>,
) -> anyhow::Result<()> {
    let name = listener.name.clone();
    let source_text = source.to_string();
    let loaded = tokio::task::spawn_blocking(move || sources::load(&source)).await?;
    match (loaded, restored) {
        (Ok(bundle), restored) => {
            let trigger = if restored.is_some() {
                Trigger::Config
            } else {
                Trigger::Startup
            };
            let outcome = listeners
                .send(Install {
                    listener: name.clone(),
                    bundle,
                    source: source_text.clone(),
                    version: None,
                    trigger,
                    fetched: false,
                })
                .await??;
            match outcome {
                InstallOutcome::Rejected { reason, .. } if restored.is_none() => {
                    bail!("listener `{name}`: certificate from {source_text} rejected: {reason}")
                }
                InstallOutcome::Rejected { reason, .. } => {
                    error!(listener = %name, source = %source_text, %reason, "the configured certificate was rejected; still serving the last good certificate from the event log");
                }
                InstallOutcome::Installed { .. } | InstallOutcome::Unchanged { .. } => {}
            }
        }
        (Err(err), None) => bail!("listener `{name}`: {err}"),
        (Err(err), Some(thumbprint)) => {
            let message = err.to_string();
            error!(listener = %name, %thumbprint, error = %message, "the configured certificate cannot be read; still serving the last good certificate from the event log");
            log.send(Append {
                listener: name,
                event: Event::FetchFailed {
                    trigger: Trigger::Startup,
                    class: FailureClass::Configuration,
                    message,
                },
            })
            .await??;
        }
    }
    Ok(())
}

/// Binds https listeners first (an http listener may redirect to one and needs its port), then the
/// http ones.
async fn bind_all(
    config: &Config,
    slots: &BTreeMap<String, Arc<ListenerCertificate>>,
) -> anyhow::Result<Running> {
    let mut bound: Vec<BoundListener> = Vec::new();
    let mut servers = Vec::new();
    let mut handles = Vec::new();
    let mut ordered: Vec<&ListenerConfig> = config.listeners.iter().collect();
    ordered.sort_by_key(|l| l.protocol == Protocol::Http);

    let mut pools: BTreeMap<String, Arc<BackendPool>> = BTreeMap::new();
    for pool in &config.backend_pools {
        let built = BackendPool::new(pool)
            .map_err(|why| anyhow::anyhow!("backend_pool `{}`: {why}", pool.name))?;
        pools.insert(pool.name.clone(), Arc::new(built));
    }

    // Listeners sharing an address are one server: https ones behind one SNI resolver
    // (multi-site), chosen per request by Host.
    let mut groups: Vec<(SocketAddr, Vec<&ListenerConfig>)> = Vec::new();
    for listener in ordered {
        // Port 0 means "any free port", a separate socket per listener.
        let shared = listener.bind.port() != 0;
        match groups
            .iter_mut()
            .find(|(bind, _)| shared && *bind == listener.bind)
        {
            Some((_, group)) => group.push(listener),
            None => groups.push((listener.bind, vec![listener])),
        }
    }

    for (bind, group) in groups {
        let mut sites = Vec::new();
        for listener in &group {
            let route = match &listener.redirect_to {
                Some(target) => {
                    let port = bound
                        .iter()
                        .find(|b| &b.name == target)
                        .map(|b| b.addr.port())
                        .with_context(|| {
                            format!(
                                "listener `{}`: redirect target `{target}` is not bound",
                                listener.name
                            )
                        })?;
                    Route::RedirectToHttps { port }
                }
                None => {
                    let pool = config
                        .pool_for(&listener.name)
                        .with_context(|| format!("listener `{}` has no rule", listener.name))?;
                    Route::Proxy(pools[&pool.name].clone())
                }
            };
            sites.push(Site {
                listener: listener.name.clone(),
                hostnames: listener.hostnames.clone(),
                protocol: listener.protocol,
                route,
            });
        }
        let sites = web::Data::new(Sites::new(sites));
        let names = group
            .iter()
            .map(|l| format!("`{}`", l.name))
            .collect::<Vec<_>>()
            .join(", ");
        let server = HttpServer::new(move || {
            App::new()
                .app_data(sites.clone())
                .app_data(web::Data::new(proxy::backend_client()))
                .default_service(web::to(proxy::handle))
        })
        .disable_signals();
        let protocol = group[0].protocol;
        let server = match protocol {
            Protocol::Http => server.bind(bind),
            Protocol::Https => {
                let resolver = SniResolver::new(group.iter().map(|l| slots[&l.name].clone()))
                    .with_context(|| format!("listeners {names}"))?;
                let tls = listener::server_config(Arc::new(resolver))
                    .with_context(|| format!("listeners {names}: TLS configuration"))?;
                server.bind_rustls_0_23(bind, tls)
            }
        }
        .with_context(|| format!("listeners {names}: cannot bind {bind}"))?;
        for addr in server.addrs() {
            for listener in &group {
                info!(listener = %listener.name, %protocol, %addr, "listening");
                bound.push(BoundListener {
                    name: listener.name.clone(),
                    protocol,
                    addr,
                });
            }
        }
        let server = server.run();
        handles.push(server.handle());
        servers.push(actix_web::rt::spawn(server));
    }
    if bound.is_empty() {
        warn!("no listeners are configured");
    }
    Ok(Running {
        listeners: bound,
        servers,
        handles,
    })
}
