//! `gateway run`: open the log, restore, reconcile with the configured sources, bind, serve.
//!
//! The order is DESIGN §3's: the log is replayed and each listener's last good certificate is
//! installed *before* its socket is bound, so a restart never serves a handshake without the
//! certificate the log says was being served.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use actix::{Actor, Addr};
use actix_web::http::StatusCode;
use actix_web::{web, App, HttpServer};
use anyhow::{bail, Context as _};
use event_log::{Event, EventLog, FailureClass, Trigger};
use listener::{ListenerCertificate, SniResolver};
use rotator::{CheckNow, ListenerPlan, Recipients, Rotator};
use tracing::{error, info, warn};

use crate::actors::messages::{Append, Install, InstallOutcome, ReadState, Restore};
use crate::actors::{EventLogActor, ListenersActor, VaultActor};
use crate::admin::{self, AdminState};
use crate::config::RedirectType;
use crate::config::{CertificateSource, Config, ListenerConfig, Protocol};
use crate::https;
use crate::keyvault;
use crate::metrics::{Metrics, RequestStats};
use crate::probes;
use crate::proxy::{self, BackendPool, Site, Sites};
use crate::refresh::CheckerActor;
use crate::routing::{Action, PathPattern, Redirect, RedirectTo, Rule, Target};
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
    /// Where the admin API listens.
    pub admin: Vec<SocketAddr>,
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
    let metrics = Metrics::new();
    let listeners_actor = ListenersActor::new(
        metrics.clone(),
        slots.values().cloned(),
        log_actor.clone().recipient(),
        log_actor.clone().recipient(),
        log_actor.clone().recipient(),
    )
    .start();

    let state = log_actor.send(ReadState).await??;
    for listener in config
        .listeners
        .iter()
        .filter(|l| l.protocol == Protocol::Https)
    {
        let logged = state.listeners.get(&listener.name);
        let configured = logged.and_then(|s| s.configured_source.clone());
        let disabled = logged.is_some_and(|s| s.disabled);
        reconcile(listener, configured, disabled, &log_actor, &listeners_actor).await?;
    }
    let disabled: Vec<String> = state
        .listeners
        .iter()
        .filter(|(_, s)| s.disabled)
        .map(|(name, _)| name.clone())
        .collect();

    let mut running = bind_all(&config, &slots, &metrics).await?;
    let rotator = start_rotator(
        &config,
        &slots,
        &disabled,
        &log_actor,
        &listeners_actor,
        &metrics,
    )
    .await?;

    let (admin_addrs, admin_server) = admin::start(
        config.admin.bind,
        AdminState {
            listeners: admin::ListenerInfo::from_config(&config)
                .into_iter()
                .map(|mut info| {
                    // Show where the listener really is (port 0 in the config means "any").
                    if let Some(bound) = running.listeners.iter().find(|b| b.name == info.name) {
                        info.bind = bound.addr;
                    }
                    info
                })
                .collect(),
            slots: slots.clone(),
            log: log_actor.clone(),
            rotator,
            metrics,
        },
    )
    .with_context(|| format!("[admin] cannot bind {}", config.admin.bind))?;
    running.admin = admin_addrs;
    running.handles.push(admin_server.handle());
    running.servers.push(actix_web::rt::spawn(admin_server));
    Ok(running)
}

/// Starts the Key Vault side: the vault client, the checker and the rotator, then reconciles every
/// Key Vault listener with Key Vault (DESIGN §3: after binding). Listeners that have nothing to
/// serve yet are waited for, within the client's retries, so that `ready` means "startup checks
/// done"; the others are compared in the background.
async fn start_rotator(
    config: &Config,
    slots: &BTreeMap<String, Arc<ListenerCertificate>>,
    disabled: &[String],
    log: &Addr<EventLogActor>,
    listeners: &Addr<ListenersActor>,
    metrics: &Arc<Metrics>,
) -> anyhow::Result<Option<Addr<Rotator>>> {
    let Some(client) = keyvault::vault_client(config)? else {
        return Ok(None);
    };
    let mut secrets = BTreeMap::new();
    let mut plans = Vec::new();
    for listener in &config.listeners {
        let Some(CertificateSource::KeyVault {
            key_vault_secret_id,
        }) = &listener.certificate
        else {
            continue;
        };
        let id = keyvault::secret_id(config, key_vault_secret_id)?;
        plans.push(ListenerPlan {
            name: listener.name.clone(),
            schedule: config.schedule_for(listener).map_err(anyhow::Error::msg)?,
            pinned: id.is_versioned(),
        });
        secrets.insert(listener.name.clone(), id);
    }
    if plans.is_empty() {
        return Ok(None);
    }
    let policy = config.rotation_policy().map_err(anyhow::Error::msg)?;
    let vault = VaultActor::new(client).start();
    let checker = CheckerActor::new(
        secrets,
        slots.clone(),
        vault.recipient(),
        listeners.clone(),
        metrics.clone(),
    )
    .start();
    let rotator = Rotator::new(
        plans.clone(),
        policy,
        Recipients {
            run_check: checker.recipient(),
            record_failure: log.clone().recipient(),
            set_serving: listeners.clone().recipient(),
            warn_expiry: log.clone().recipient(),
        },
    )
    .with_disabled(disabled)
    .start();

    let mut first_installs = Vec::new();
    for plan in plans {
        let has_certificate = slots.get(&plan.name).is_some_and(|s| s.current().is_some());
        let check = rotator.send(CheckNow {
            listener: plan.name.clone(),
            trigger: Trigger::Startup,
        });
        let name = plan.name;
        let report = async move {
            match check.await {
                Ok(Ok(outcome)) if outcome.is_success() => {
                    info!(listener = %name, %outcome, "startup check against Key Vault")
                }
                Ok(Ok(outcome)) => {
                    error!(listener = %name, %outcome, "startup check against Key Vault")
                }
                Ok(Err(err)) => {
                    error!(listener = %name, error = %err, "startup check against Key Vault")
                }
                Err(err) => {
                    error!(listener = %name, error = %err, "startup check against Key Vault")
                }
            }
        };
        if has_certificate {
            actix_web::rt::spawn(report);
        } else {
            first_installs.push(report);
        }
    }
    futures_util::future::join_all(first_installs).await;
    for slot in slots.values().filter(|s| s.current().is_none()) {
        error!(listener = %slot.name(), "the listener has no certificate and is not ready; the rotator keeps trying");
    }
    Ok(Some(rotator))
}

/// Brings one https listener to its serving state before binding: record a changed source,
/// restore the last installed certificate from the log, and for a file listener compare with the
/// file. Key Vault listeners are compared by the rotator once the sockets are bound.
async fn reconcile(
    listener: &ListenerConfig,
    configured_source: Option<String>,
    disabled: bool,
    log: &Addr<EventLogActor>,
    listeners: &Addr<ListenersActor>,
) -> anyhow::Result<()> {
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
            disabled,
        })
        .await??;
    if source.is_key_vault() {
        return Ok(());
    }
    reconcile_file(listener, source, restored, log, listeners).await
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
    metrics: &Arc<Metrics>,
) -> anyhow::Result<Running> {
    let mut bound: Vec<BoundListener> = Vec::new();
    let mut servers = Vec::new();
    let mut handles = Vec::new();
    let mut ordered: Vec<&ListenerConfig> = config.listeners.iter().collect();
    ordered.sort_by_key(|l| l.protocol == Protocol::Http);

    let mut pools: BTreeMap<String, Arc<BackendPool>> = BTreeMap::new();
    for pool in &config.backend_pools {
        let trusted_ca = match pool.trusted_ca_file.clone() {
            Some(path) => Some(
                tokio::task::spawn_blocking(move || {
                    std::fs::read(&path)
                        .with_context(|| format!("cannot read trusted_ca_file {}", path.display()))
                })
                .await?
                .with_context(|| format!("backend_pool `{}`", pool.name))?,
            ),
            None => None,
        };
        let built = BackendPool::new(pool, metrics, trusted_ca.as_deref())
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
            let rules = listener_rules(config, listener, &bound, &pools, metrics)?;
            sites.push(Site {
                port: 0,
                listener: listener.name.clone(),
                hostnames: listener.hostnames.clone(),
                protocol: listener.protocol,
                rules,
                max_request_body: config.max_request_body(listener),
                body_timeout: config.body_timeout(listener),
            });
        }
        let names = group
            .iter()
            .map(|l| format!("`{}`", l.name))
            .collect::<Vec<_>>()
            .join(", ");
        let socket = bind_listener(bind)
            .with_context(|| format!("listeners {names}: cannot bind {bind}"))?;
        let addr = socket.local_addr()?;
        for site in &mut sites {
            site.port = addr.port();
        }
        let sites = web::Data::new(Sites::new(sites));
        let protocol = group[0].protocol;
        // The config check makes every listener of a shared address agree on these.
        let limits = config.connection_limits(group[0]);
        let server = match protocol {
            Protocol::Http => {
                let (workers, per_worker) = https::workers_for(limits.max_connections);
                HttpServer::new(move || {
                    App::new()
                        .app_data(sites.clone())
                        .default_service(web::to(proxy::handle))
                })
                .disable_signals()
                .workers(workers)
                .max_connections(per_worker)
                .client_request_timeout(limits.request_header_timeout)
                .listen(socket)
                .with_context(|| format!("listeners {names}: {bind}"))?
                .run()
            }
            Protocol::Https => {
                let resolver = Arc::new(
                    SniResolver::new(group.iter().map(|l| slots[&l.name].clone()))
                        .with_context(|| format!("listeners {names}"))?,
                );
                let tls = listener::server_config(resolver.clone())
                    .with_context(|| format!("listeners {names}: TLS configuration"))?;
                let handshakes = group
                    .iter()
                    .map(|l| (l.name.clone(), metrics.handshakes(&l.name)))
                    .collect();
                https::server(socket, tls, resolver, sites, handshakes, limits)
                    .with_context(|| format!("listeners {names}: {bind}"))?
            }
        };
        for listener in &group {
            info!(listener = %listener.name, %protocol, %addr, "listening");
            bound.push(BoundListener {
                name: listener.name.clone(),
                protocol,
                addr,
            });
        }
        handles.push(server.handle());
        servers.push(actix_web::rt::spawn(server));
    }
    if bound.is_empty() {
        warn!("no listeners are configured");
    }
    for pool in pools.values() {
        probes::spawn(pool.clone());
    }
    Ok(Running {
        listeners: bound,
        admin: Vec::new(),
        servers,
        handles,
    })
}

/// The compiled rules of one listener, in priority order: a redirecting listener has one rule, the
/// redirect; a routing listener has its `[[rule]]`s with their `paths`.
fn listener_rules(
    config: &Config,
    listener: &ListenerConfig,
    bound: &[BoundListener],
    pools: &BTreeMap<String, Arc<BackendPool>>,
    metrics: &Arc<Metrics>,
) -> anyhow::Result<Vec<Rule>> {
    // One set of request counters per listener and pool (or "redirect").
    let stats: std::cell::RefCell<BTreeMap<String, Arc<RequestStats>>> = Default::default();
    let stats_for = |label: &str| {
        stats
            .borrow_mut()
            .entry(label.to_owned())
            .or_insert_with(|| metrics.requests(&listener.name, label))
            .clone()
    };
    let redirect = |to: RedirectTo,
                    kind: Option<RedirectType>,
                    include_path: Option<bool>,
                    include_query: Option<bool>| Redirect {
        status: StatusCode::from_u16(kind.unwrap_or(RedirectType::PermanentRedirect).status())
            .unwrap_or(StatusCode::PERMANENT_REDIRECT),
        to,
        include_path: include_path.unwrap_or(true),
        include_query: include_query.unwrap_or(true),
    };
    let to = match (&listener.redirect_to, &listener.redirect_url) {
        (Some(target), _) => {
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
            Some(RedirectTo::Listener { port })
        }
        (None, Some(url)) => Some(RedirectTo::Url(url.clone())),
        (None, None) => None,
    };
    if let Some(to) = to {
        return Ok(vec![Rule {
            name: format!("{}-redirect", listener.name),
            default: Target {
                stats: stats_for("redirect"),
                action: Action::Redirect(redirect(
                    to,
                    listener.redirect_type,
                    listener.include_path,
                    listener.include_query,
                )),
            },
            paths: Vec::new(),
        }]);
    }
    let proxy_to = |name: &str| -> anyhow::Result<Target> {
        let pool = pools.get(name).with_context(|| {
            format!(
                "listener `{}`: backend_pool `{name}` is not defined",
                listener.name
            )
        })?;
        Ok(Target {
            stats: stats_for(name),
            action: Action::Proxy(pool.clone()),
        })
    };
    let mut rules = Vec::new();
    for rule in config.rules_for(&listener.name) {
        let default = proxy_to(&rule.backend_pool)?;
        let mut paths = Vec::new();
        for entry in &rule.paths {
            let target = match (&entry.backend_pool, &entry.redirect_url) {
                (Some(pool), _) => proxy_to(pool)?,
                (None, Some(url)) => Target {
                    stats: stats_for("redirect"),
                    action: Action::Redirect(redirect(
                        RedirectTo::Url(url.clone()),
                        entry.redirect_type,
                        entry.include_path,
                        entry.include_query,
                    )),
                },
                (None, None) => bail!("rule `{}` path `{}` has no target", rule.name, entry.path),
            };
            paths.push((PathPattern::new(&entry.path), target));
        }
        rules.push(Rule {
            name: rule.name.clone(),
            default,
            paths,
        });
    }
    if rules.is_empty() {
        bail!("listener `{}` has no rule", listener.name);
    }
    Ok(rules)
}

/// How many connections may wait to be accepted; the kernel caps it at `net.core.somaxconn`.
/// std's `TcpListener::bind` asks for 128, and a burst of new connections beyond that loses SYNs
/// that clients only send again a second later (nginx's default is 511; HAProxy's, maxconn).
const LISTEN_BACKLOG: i32 = 4096;

/// Binds `addr` as std's `TcpListener::bind` does, but with [`LISTEN_BACKLOG`].
fn bind_listener(addr: std::net::SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )?;
    // As std does on Unix: a restart may bind while old connections are in TIME_WAIT.
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    Ok(socket.into())
}
