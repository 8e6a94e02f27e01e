//! The reverse proxy: one backend pool per listener, round robin over its addresses, bodies streamed
//! both ways, hop-by-hop headers removed and `X-Forwarded-*` added.

use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::body::{BodyStream, SizedStream};
use actix_web::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use actix_web::http::{Method, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use tracing::warn;

use crate::config::{BackendPoolConfig, Protocol};
use crate::metrics::{BackendHealth, Metrics, RequestStats};

/// The headers that describe one hop and must not be forwarded (RFC 9110 §7.6.1), plus the
/// legacy `Proxy-Connection` and `Keep-Alive` that some clients still send.
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
];

/// How long a backend may take to answer before the client gets a 504.
const BACKEND_TIMEOUT: Duration = Duration::from_secs(60);

/// A backend member as `host:port` (an `http://` prefix is accepted and ignored).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendAddress {
    authority: String,
}

impl BackendAddress {
    pub fn parse(text: &str) -> Result<BackendAddress, &'static str> {
        let authority = text
            .strip_prefix("http://")
            .unwrap_or(text)
            .trim_end_matches('/');
        if authority.contains("://") {
            return Err(
                "must be host:port or http://host:port (TLS to backends is not supported yet)",
            );
        }
        if authority.contains('/') {
            return Err("must not have a path");
        }
        let uri: actix_web::http::Uri = format!("http://{authority}/")
            .parse()
            .map_err(|_| "is not a valid host:port")?;
        if uri.host().is_none_or(str::is_empty) {
            return Err("has no host");
        }
        Ok(BackendAddress {
            authority: authority.to_owned(),
        })
    }
}

impl fmt::Display for BackendAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.authority)
    }
}

/// A pool of backend members with a round-robin cursor shared by all workers.
#[derive(Debug)]
pub struct BackendPool {
    pub name: String,
    members: Vec<BackendAddress>,
    /// Each member's last known health, for `gateway_backend_up`.
    health: Vec<Arc<BackendHealth>>,
    next: AtomicUsize,
}

impl BackendPool {
    pub fn new(config: &BackendPoolConfig, metrics: &Metrics) -> Result<BackendPool, String> {
        let members = config
            .addresses
            .iter()
            .map(|a| BackendAddress::parse(a).map_err(|why| format!("address `{a}` {why}")))
            .collect::<Result<Vec<_>, _>>()?;
        let health = members
            .iter()
            .map(|m| metrics.backend(&config.name, &m.to_string()))
            .collect();
        Ok(BackendPool {
            name: config.name.clone(),
            members,
            health,
            next: AtomicUsize::new(0),
        })
    }

    /// The members in the order this request should try them: round robin for the first, then the
    /// rest in pool order so a dead member costs one connect attempt, not a failed request.
    fn members_for_request(&self) -> impl Iterator<Item = (&BackendAddress, &BackendHealth)> {
        let start = self.next.fetch_add(1, Ordering::Relaxed) % self.members.len();
        let members = self.members.iter().zip(self.health.iter().map(|h| &**h));
        members.clone().skip(start).chain(members.take(start))
    }
}

/// What a listener does with a request, shared by every worker.
#[derive(Debug)]
pub enum Route {
    Proxy(Arc<BackendPool>),
    /// Redirect to the https listener at this port, keeping host, path and query.
    RedirectToHttps {
        port: u16,
    },
}

/// Everything the request handler of one listener needs.
#[derive(Debug)]
pub struct Site {
    /// The port this listener is bound to, for `X-Forwarded-Port`.
    pub port: u16,
    /// This listener's request counters.
    pub stats: Arc<RequestStats>,
    pub listener: String,
    pub hostnames: Vec<String>,
    pub protocol: Protocol,
    pub route: Route,
}

/// The listeners sharing one address, chosen per request by `Host` the way the TLS resolver
/// chooses by SNI: exact hostname, then wildcard, then the listener without hostnames.
#[derive(Debug)]
pub struct Sites {
    sites: Vec<Site>,
}

impl Sites {
    pub fn new(sites: Vec<Site>) -> Sites {
        Sites { sites }
    }

    pub fn for_host(&self, host: Option<&str>) -> Option<&Site> {
        if let [only] = self.sites.as_slice() {
            return Some(only);
        }
        let catch_all = || self.sites.iter().find(|s| s.hostnames.is_empty());
        let Some(host) = host else {
            return catch_all();
        };
        let host = strip_port(host).trim_end_matches('.').to_ascii_lowercase();
        let exact = self
            .sites
            .iter()
            .find(|s| s.hostnames.iter().any(|h| h.eq_ignore_ascii_case(&host)));
        let wildcard = || {
            let (_, parent) = host.split_once('.')?;
            self.sites.iter().find(|s| {
                s.hostnames.iter().any(|h| {
                    h.strip_prefix("*.")
                        .is_some_and(|p| p.eq_ignore_ascii_case(parent))
                })
            })
        };
        exact.or_else(wildcard).or_else(catch_all)
    }
}

fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host.split_once(']').map_or(host, |(h, _)| &h[1..]);
    }
    host.rsplit_once(':')
        .filter(|(_, p)| p.bytes().all(|b| b.is_ascii_digit()))
        .map_or(host, |(h, _)| h)
}

/// Builds the per-worker backend client. awc is per-worker (it is `!Send`), so each worker keeps
/// its own pool of keep-alive connections to the backends.
pub fn backend_client() -> awc::Client {
    awc::Client::builder()
        .no_default_headers()
        .timeout(BACKEND_TIMEOUT)
        .connector(
            awc::Connector::new()
                .timeout(Duration::from_secs(5))
                .conn_keep_alive(Duration::from_secs(30))
                .limit(1024),
        )
        .finish()
}

pub async fn handle(
    req: HttpRequest,
    payload: web::Payload,
    sites: web::Data<Sites>,
    client: web::Data<awc::Client>,
) -> HttpResponse {
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| req.uri().host());
    let Some(site) = sites.for_host(host) else {
        return short(
            StatusCode::MISDIRECTED_REQUEST,
            "421 Misdirected Request: no listener here serves this host\n",
        );
    };
    let started = Instant::now();
    let response = match &site.route {
        Route::RedirectToHttps { port } => redirect_to_https(&req, *port),
        Route::Proxy(pool) => forward(&req, payload, site, pool, &client).await,
    };
    site.stats
        .observe(response.status().as_u16(), started.elapsed());
    response
}

fn redirect_to_https(req: &HttpRequest, port: u16) -> HttpResponse {
    let info = req.connection_info();
    let host = strip_port(info.host());
    let host = if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_owned()
    };
    let authority = if port == 443 {
        host
    } else {
        format!("{host}:{port}")
    };
    let path_and_query = req.uri().path_and_query().map_or("/", |pq| pq.as_str());
    HttpResponse::PermanentRedirect()
        .insert_header((
            header::LOCATION,
            format!("https://{authority}{path_and_query}"),
        ))
        .finish()
}

async fn forward(
    req: &HttpRequest,
    payload: web::Payload,
    site: &Site,
    pool: &BackendPool,
    client: &awc::Client,
) -> HttpResponse {
    let headers = forwarded_headers(req, site);
    let path_and_query = req.uri().path_and_query().map_or("/", |pq| pq.as_str());
    let body = RequestBody::of(req);
    // A request with a body can be tried on one member only: its stream is consumed by the attempt.
    let mut payload = Some(payload);
    for (member, health) in pool.members_for_request() {
        let url = format!("http://{member}{path_and_query}");
        let mut request = client.request(req.method().clone(), url);
        *request.headers_mut() = headers.clone();
        let sent = match body {
            RequestBody::None => request.send().await,
            RequestBody::Sized(len) => match payload.take() {
                Some(p) => request.send_body(SizedStream::new(len, p)).await,
                None => break,
            },
            RequestBody::Chunked => match payload.take() {
                Some(p) => request.send_body(BodyStream::new(p)).await,
                None => break,
            },
        };
        match &sent {
            Ok(_) => health.set(true),
            Err(
                awc::error::SendRequestError::Connect(_) | awc::error::SendRequestError::Timeout,
            ) => health.set(false),
            Err(_) => {}
        }
        match sent {
            Ok(response) => return relay(req.method(), response),
            Err(awc::error::SendRequestError::Timeout) => {
                warn!(listener = %site.listener, pool = %pool.name, backend = %member, "backend timed out");
                return short(
                    StatusCode::GATEWAY_TIMEOUT,
                    "504 Gateway Timeout: the backend did not answer in time\n",
                );
            }
            Err(err) => {
                warn!(listener = %site.listener, pool = %pool.name, backend = %member, error = %err, "backend unreachable");
            }
        }
    }
    short(
        StatusCode::BAD_GATEWAY,
        "502 Bad Gateway: no backend answered\n",
    )
}

#[derive(Clone, Copy)]
enum RequestBody {
    None,
    Sized(u64),
    Chunked,
}

impl RequestBody {
    fn of(req: &HttpRequest) -> RequestBody {
        if let Some(len) = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
        {
            return if len == 0 {
                RequestBody::None
            } else {
                RequestBody::Sized(len)
            };
        }
        if req.headers().contains_key(header::TRANSFER_ENCODING) {
            RequestBody::Chunked
        } else {
            RequestBody::None
        }
    }
}

/// The request headers the backend sees: the client's, minus hop-by-hop ones (including any the
/// client named in `Connection`), plus `X-Forwarded-For/-Proto/-Host/-Port` and `X-Original-Host`.
fn forwarded_headers(req: &HttpRequest, site: &Site) -> HeaderMap {
    let protocol = site.protocol;
    let mut headers = req.headers().clone();
    strip_hop_by_hop(&mut headers);
    headers.remove(header::CONTENT_LENGTH);

    let peer = req.peer_addr().map(|a| a.ip().to_string());
    if let Some(peer) = peer {
        let value = match req
            .headers()
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
        {
            Some(existing) => format!("{existing}, {peer}"),
            None => peer,
        };
        insert(&mut headers, "x-forwarded-for", &value);
    }
    insert(&mut headers, "x-forwarded-proto", &protocol.to_string());
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or_else(|| req.uri().authority().map(|a| a.to_string()));
    if let Some(host) = host {
        insert(&mut headers, "x-forwarded-host", &host);
        insert(&mut headers, "x-original-host", &host);
        // HTTP/2 carries the host in :authority; the HTTP/1.1 backend needs it as Host.
        insert(&mut headers, "host", &host);
    }
    insert(&mut headers, "x-forwarded-port", &site.port.to_string());
    headers
}

fn insert(headers: &mut HeaderMap, name: &'static str, value: &str) {
    if let Ok(value) = HeaderValue::from_str(value) {
        headers.insert(HeaderName::from_static(name), value);
    }
}

fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in HOP_BY_HOP.iter().chain(&named) {
        headers.remove(name);
    }
    // `Upgrade` is hop-by-hop too; WebSocket proxying (which needs it) is not supported yet.
    headers.remove(header::UPGRADE);
}

fn relay<S>(method: &Method, response: awc::ClientResponse<S>) -> HttpResponse
where
    S: futures_util::Stream<Item = Result<web::Bytes, actix_web::error::PayloadError>>
        + Unpin
        + 'static,
{
    let mut builder = HttpResponse::build(response.status());
    let mut headers = response.headers().clone();
    strip_hop_by_hop(&mut headers);
    let length = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    headers.remove(header::CONTENT_LENGTH);
    for (name, value) in headers.iter() {
        builder.append_header((name.clone(), value.clone()));
    }
    let status = response.status();
    if *method == Method::HEAD
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
    {
        if let Some(length) = length {
            builder.no_chunking(length);
        }
        return builder.finish();
    }
    match length {
        Some(length) => builder.body(SizedStream::new(length, response)),
        None => builder.body(BodyStream::new(response)),
    }
}

fn short(status: StatusCode, body: &'static str) -> HttpResponse {
    HttpResponse::build(status)
        .content_type("text/plain; charset=utf-8")
        .body(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backend_addresses_are_host_and_port() {
        assert_eq!(
            BackendAddress::parse("127.0.0.1:8080").unwrap().to_string(),
            "127.0.0.1:8080"
        );
        assert_eq!(
            BackendAddress::parse("http://app:80/").unwrap().to_string(),
            "app:80"
        );
        assert!(BackendAddress::parse("https://app:443").is_err());
        assert!(BackendAddress::parse("app:80/path").is_err());
        assert!(BackendAddress::parse(":80").is_err());
    }

    #[test]
    fn round_robin_starts_each_request_at_the_next_member_and_falls_back_to_the_rest() {
        let pool = BackendPool::new(
            &BackendPoolConfig {
                name: "p".into(),
                addresses: vec!["a:1".into(), "b:1".into(), "c:1".into()],
            },
            &Metrics::default(),
        )
        .unwrap();
        let order = |pool: &BackendPool| {
            pool.members_for_request()
                .map(|(member, _)| member.to_string())
                .collect::<Vec<_>>()
                .join(" ")
        };
        assert_eq!(order(&pool), "a:1 b:1 c:1");
        assert_eq!(order(&pool), "b:1 c:1 a:1");
        assert_eq!(order(&pool), "c:1 a:1 b:1");
        assert_eq!(order(&pool), "a:1 b:1 c:1");
    }

    #[test]
    fn hop_by_hop_headers_and_those_named_in_connection_are_removed() {
        let mut headers = HeaderMap::new();
        for (name, value) in [
            ("connection", "keep-alive, x-secret-hop"),
            ("keep-alive", "timeout=5"),
            ("x-secret-hop", "1"),
            ("transfer-encoding", "chunked"),
            ("te", "trailers"),
            ("accept", "*/*"),
        ] {
            headers.insert(
                HeaderName::from_static(name),
                HeaderValue::from_static(value),
            );
        }
        strip_hop_by_hop(&mut headers);
        let left: Vec<_> = headers.keys().map(|k| k.as_str().to_owned()).collect();
        assert_eq!(left, ["accept"]);
    }
}
