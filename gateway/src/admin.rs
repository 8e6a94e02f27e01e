//! The admin API (DESIGN §6), on `[admin] bind` (loopback by default): health, readiness, what
//! each listener serves, the event log, and on-demand refresh.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use actix::Addr;
use actix_web::{web, App, HttpResponse, HttpServer};
use event_log::{EventKind, Query};
use listener::ListenerCertificate;
use rotator::{CheckNow, ListenerStatus, Rotator, RotatorError};
use serde::{Deserialize, Serialize};

use crate::actors::messages::{QueryEvents, ReadState};
use crate::actors::EventLogActor;
use crate::config::{Config, Protocol};

/// What the admin handlers read.
pub struct AdminState {
    pub listeners: Vec<ListenerInfo>,
    pub slots: BTreeMap<String, Arc<ListenerCertificate>>,
    pub log: Addr<EventLogActor>,
    pub rotator: Option<Addr<Rotator>>,
    pub metrics: Arc<crate::metrics::Metrics>,
}

/// A listener as configured.
pub struct ListenerInfo {
    pub name: String,
    pub protocol: Protocol,
    pub bind: SocketAddr,
    pub hostnames: Vec<String>,
    pub source: Option<String>,
    pub key_vault: bool,
}

impl ListenerInfo {
    pub fn from_config(config: &Config) -> Vec<ListenerInfo> {
        config
            .listeners
            .iter()
            .map(|l| ListenerInfo {
                name: l.name.clone(),
                protocol: l.protocol,
                bind: l.bind,
                hostnames: l.hostnames.clone(),
                source: l.certificate.as_ref().map(ToString::to_string),
                key_vault: l.certificate.as_ref().is_some_and(|c| c.is_key_vault()),
            })
            .collect()
    }
}

/// Binds the admin server and starts it; returns its address and the running server.
pub fn start(
    bind: SocketAddr,
    state: AdminState,
) -> std::io::Result<(Vec<SocketAddr>, actix_web::dev::Server)> {
    let state = web::Data::new(state);
    let server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .route("/", web::get().to(crate::status_page::page))
            .route("/metrics", web::get().to(crate::metrics::render))
            .route("/healthz", web::get().to(healthz))
            .route("/readyz", web::get().to(readyz))
            .route("/listeners", web::get().to(listeners))
            .route("/events", web::get().to(events))
            .route("/listeners/{name}/refresh", web::post().to(refresh))
    })
    .workers(1)
    .disable_signals()
    .bind(bind)?;
    let addrs = server.addrs();
    Ok((addrs, server.run()))
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain").body("ok\n")
}

/// Ready when every enabled https listener has a certificate. A listener the failure policy took
/// out of service is not waited for: it is out on purpose, and `/listeners` shows it.
async fn readyz(state: web::Data<AdminState>) -> HttpResponse {
    let not_ready: Vec<&str> = state
        .slots
        .values()
        .filter(|slot| slot.is_serving() && slot.current().is_none())
        .map(|slot| slot.name())
        .collect();
    if not_ready.is_empty() {
        HttpResponse::Ok().json(serde_json::json!({ "ready": true }))
    } else {
        HttpResponse::ServiceUnavailable()
            .json(serde_json::json!({ "ready": false, "not_ready": not_ready }))
    }
}

/// One listener as the admin API, the status page and `gateway status` show it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ListenerView {
    pub name: String,
    pub protocol: String,
    pub bind: String,
    pub hostnames: Vec<String>,
    pub source: Option<String>,
    /// `serving`, `disabled` (taken out of service by the failure policy), `no_certificate`, or
    /// `plain` for http listeners.
    pub state: String,
    pub thumbprint: Option<String>,
    pub subject: Option<String>,
    pub dns_names: Option<Vec<String>>,
    pub not_after: Option<String>,
    /// Whole days until `not_after` (negative once expired).
    pub days_to_expiry: Option<i64>,
    pub version: Option<String>,
    pub installed_at: Option<String>,
    pub last_check: Option<String>,
    pub last_outcome: Option<serde_json::Value>,
    pub next_check: Option<String>,
    pub failing_since: Option<String>,
}

/// Every listener's view, from the serving slots, the log's state and the rotator's checks.
pub async fn listener_views(state: &AdminState) -> Result<Vec<ListenerView>, String> {
    let log_state = match state.log.send(ReadState).await {
        Ok(Ok(s)) => s,
        Ok(Err(err)) => return Err(err.to_string()),
        Err(err) => return Err(err.to_string()),
    };
    let checks = match &state.rotator {
        Some(rotator) => rotator.send(ListenerStatus).await.unwrap_or_default(),
        None => Vec::new(),
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    Ok(state
        .listeners
        .iter()
        .map(|info| {
            let slot = state.slots.get(&info.name);
            let current = slot.and_then(|s| s.current());
            let logged = log_state.listeners.get(&info.name);
            let installed = logged.and_then(|l| l.installed.as_ref());
            let check = checks.iter().find(|c| c.listener == info.name);
            let listener_state = match (info.protocol, slot) {
                (Protocol::Http, _) | (_, None) => "plain",
                (_, Some(slot)) if !slot.is_serving() => "disabled",
                (_, Some(_)) if current.is_none() => "no_certificate",
                _ => "serving",
            };
            ListenerView {
                name: info.name.clone(),
                protocol: info.protocol.to_string(),
                bind: info.bind.to_string(),
                hostnames: info.hostnames.clone(),
                source: info.source.clone(),
                state: listener_state.to_owned(),
                thumbprint: current.as_ref().map(|c| c.thumbprint().to_string()),
                subject: current.as_ref().map(|c| c.subject().to_string()),
                dns_names: current.as_ref().map(|c| c.dns_names().to_vec()),
                not_after: current
                    .as_ref()
                    .map(|c| event_log::format_secs(c.not_after())),
                days_to_expiry: current
                    .as_ref()
                    .map(|c| (c.not_after() - now).div_euclid(86_400)),
                version: installed
                    .filter(|i| Some(i.thumbprint) == current.as_ref().map(|c| c.thumbprint()))
                    .and_then(|i| i.version.clone()),
                installed_at: installed.map(|i| event_log::format_ms(i.installed_at_ms)),
                last_check: check
                    .and_then(|c| c.last_check_ms)
                    .map(event_log::format_ms),
                last_outcome: check
                    .and_then(|c| c.last_outcome.as_ref())
                    .and_then(|o| serde_json::to_value(o).ok()),
                next_check: check
                    .and_then(|c| c.next_check_ms)
                    .map(event_log::format_ms),
                failing_since: check
                    .and_then(|c| c.failing_since_ms)
                    .map(event_log::format_ms),
            }
        })
        .collect())
}

async fn listeners(state: web::Data<AdminState>) -> HttpResponse {
    match listener_views(&state).await {
        Ok(views) => HttpResponse::Ok().json(views),
        Err(err) => internal(&err),
    }
}

#[derive(Deserialize)]
struct EventsQuery {
    listener: Option<String>,
    kind: Option<String>,
    since: Option<String>,
    until: Option<String>,
    limit: Option<usize>,
}

async fn events(state: web::Data<AdminState>, query: web::Query<EventsQuery>) -> HttpResponse {
    let kind = match query
        .kind
        .as_deref()
        .map(str::parse::<EventKind>)
        .transpose()
    {
        Ok(kind) => kind,
        Err(err) => return bad_request(&format!("kind: {err}")),
    };
    let since_ms = match query
        .since
        .as_deref()
        .map(|s| crate::audit::parse_time("since", s, std::time::SystemTime::now()))
        .transpose()
    {
        Ok(since) => since,
        Err(err) => return bad_request(&format!("{err:#}")),
    };
    let until_ms = match query
        .until
        .as_deref()
        .map(|s| crate::audit::parse_time("until", s, std::time::SystemTime::now()))
        .transpose()
    {
        Ok(until) => until,
        Err(err) => return bad_request(&format!("{err:#}")),
    };
    let result = state
        .log
        .send(QueryEvents(Query {
            listener: query.listener.clone(),
            kind,
            since_ms,
            until_ms,
            limit: query.limit,
        }))
        .await;
    match result {
        Ok(Ok(events)) => HttpResponse::Ok().json(events),
        Ok(Err(err)) => internal(&err.to_string()),
        Err(err) => internal(&err.to_string()),
    }
}

/// Runs a check now and answers with its outcome; waits for it.
async fn refresh(state: web::Data<AdminState>, name: web::Path<String>) -> HttpResponse {
    let name = name.into_inner();
    let Some(info) = state.listeners.iter().find(|l| l.name == name) else {
        return error(
            actix_web::http::StatusCode::NOT_FOUND,
            &format!("no listener named `{name}`"),
        );
    };
    let (true, Some(rotator)) = (info.key_vault, &state.rotator) else {
        return error(
            actix_web::http::StatusCode::CONFLICT,
            &format!("listener `{name}` does not read its certificate from Key Vault; there is nothing to refresh"),
        );
    };
    match rotator
        .send(CheckNow {
            listener: name.clone(),
            trigger: event_log::Trigger::Manual,
        })
        .await
    {
        Ok(Ok(outcome)) => {
            let mut body = serde_json::to_value(&outcome).unwrap_or_default();
            if let Some(map) = body.as_object_mut() {
                map.insert("listener".into(), name.into());
                map.insert("summary".into(), outcome.to_string().into());
            }
            HttpResponse::Ok().json(body)
        }
        Ok(Err(RotatorError::UnknownListener { .. })) => error(
            actix_web::http::StatusCode::NOT_FOUND,
            &format!("no Key Vault listener named `{name}`"),
        ),
        Ok(Err(err)) => internal(&err.to_string()),
        Err(err) => internal(&err.to_string()),
    }
}

fn error(status: actix_web::http::StatusCode, message: &str) -> HttpResponse {
    HttpResponse::build(status).json(serde_json::json!({ "error": message }))
}

fn bad_request(message: &str) -> HttpResponse {
    error(actix_web::http::StatusCode::BAD_REQUEST, message)
}

fn internal(message: &str) -> HttpResponse {
    error(actix_web::http::StatusCode::INTERNAL_SERVER_ERROR, message)
}
