//! The reverse proxy: a listener's rules choose a backend pool (or a redirect, `routing`), round
//! robin over the pool's members in rotation, bodies streamed both ways, hop-by-hop headers removed
//! and `X-Forwarded-*` added, WebSocket upgrades tunnelled, and end-to-end TLS to https backends.

use std::cell::RefCell;
use std::fmt;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use actix_web::body::{BodyStream, SizedStream};
use actix_web::error::PayloadError;
use actix_web::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use actix_web::http::uri::{Authority, PathAndQuery, Scheme};
use actix_web::http::{Method, StatusCode, Uri, Version};
use actix_web::web::Bytes;
use actix_web::{web, HttpRequest, HttpResponse};
use futures_util::{Stream, StreamExt as _};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tracing::{info, warn};

use crate::config::{BackendPoolConfig, ProbeConfig, Protocol};
use crate::metrics::{BackendHealth, Metrics};
use crate::routing::{self, Action, Rule};

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

/// How long a backend may take to answer before the client gets a 504, unless the pool says.
const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// After a body over the limit, how much more of it is read (and thrown away) so that the client,
/// still sending, reads the 413 instead of a connection reset.
const DISCARD_LIMIT: u64 = 1 << 20;
const DISCARD_TIME: Duration = Duration::from_secs(2);

/// A backend member as `host[:port]` (an `http://` or `https://` prefix matching the pool's
/// protocol is accepted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendAddress {
    /// `host:port`, IPv6 hosts in brackets.
    authority: String,
    /// The same, parsed once: every request's URL is built from it without parsing text.
    uri_authority: Authority,
    /// The host, IPv6 in brackets.
    host: String,
    port: u16,
}

impl BackendAddress {
    /// Parses a member of a pool of `protocol` whose addresses default to `default_port` (else 80
    /// or 443).
    pub fn parse(
        text: &str,
        protocol: Protocol,
        default_port: Option<u16>,
    ) -> Result<BackendAddress, &'static str> {
        let (scheme, rest) = match text.split_once("://") {
            Some(("http", rest)) => (Some(Protocol::Http), rest),
            Some(("https", rest)) => (Some(Protocol::Https), rest),
            Some(_) => {
                return Err("must be host[:port], http://host[:port] or https://host[:port]")
            }
            None => (None, text),
        };
        match (scheme, protocol) {
            (Some(Protocol::Https), Protocol::Http) => {
                return Err("is https:// but the pool's protocol is http (set protocol = \"https\" on the pool)")
            }
            (Some(Protocol::Http), Protocol::Https) => {
                return Err("is http:// but the pool's protocol is https")
            }
            _ => {}
        }
        let authority = rest.trim_end_matches('/');
        if authority.contains('/') {
            return Err("must not have a path");
        }
        let uri: actix_web::http::Uri = format!("http://{authority}/")
            .parse()
            .map_err(|_| "is not a valid host:port")?;
        let host = uri.host().filter(|h| !h.is_empty()).ok_or("has no host")?;
        let port = uri.port_u16().or(default_port).unwrap_or(match protocol {
            Protocol::Http => 80,
            Protocol::Https => 443,
        });
        let authority = format!("{host}:{port}");
        Ok(BackendAddress {
            uri_authority: Authority::try_from(authority.as_str())
                .map_err(|_| "is not a valid host:port")?,
            authority,
            host: host.to_owned(),
            port,
        })
    }

    /// The host without IPv6 brackets.
    fn bare_host(&self) -> &str {
        self.host.trim_start_matches('[').trim_end_matches(']')
    }

    fn ip(&self) -> Option<IpAddr> {
        self.bare_host().parse().ok()
    }
}

impl fmt::Display for BackendAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.authority)
    }
}

/// One member of a pool: its address, whether its probe keeps it in rotation, and its drain
/// signal.
#[derive(Debug)]
pub struct Member {
    pub address: BackendAddress,
    /// Its last known health, for `gateway_backend_up`.
    pub health: Arc<BackendHealth>,
    /// Unique in the process: the key of this member's per-worker client.
    id: usize,
    in_rotation: Arc<AtomicBool>,
    /// Failed probes in a row.
    failures: AtomicU32,
    /// Bumped when the drain timeout of a removal passes: requests that started before are cut.
    cut: tokio::sync::watch::Sender<u64>,
}

impl Member {
    pub fn in_rotation(&self) -> bool {
        self.in_rotation.load(Ordering::Relaxed)
    }
}

/// Which `Host` header the backend sees.
#[derive(Debug, Clone)]
enum HostPolicy {
    Client,
    Fixed(String),
    Backend,
}

/// A pool of backend members with a round-robin cursor shared by all workers, and its backend
/// settings.
#[derive(Debug)]
pub struct BackendPool {
    pub name: String,
    members: Vec<Member>,
    next: AtomicUsize,
    protocol: Protocol,
    tls: Option<Arc<rustls::ClientConfig>>,
    sni: Option<String>,
    timeout: Duration,
    host: HostPolicy,
    drain: Option<Duration>,
    pub probe: Option<Probe>,
}

/// A pool's probe settings, parsed.
#[derive(Debug, Clone)]
pub struct Probe {
    pub path: String,
    pub interval: Duration,
    pub timeout: Duration,
    pub unhealthy_threshold: u32,
    pub healthy: Vec<(u16, u16)>,
}

impl Probe {
    fn new(config: &ProbeConfig) -> Result<Probe, String> {
        Ok(Probe {
            path: config.path.clone(),
            interval: config.interval()?,
            timeout: config.timeout()?,
            unhealthy_threshold: config.unhealthy_threshold.max(1),
            healthy: config.healthy_status()?,
        })
    }

    pub fn is_healthy(&self, status: u16) -> bool {
        self.healthy
            .iter()
            .any(|(low, high)| (*low..=*high).contains(&status))
    }
}

static NEXT_MEMBER_ID: AtomicUsize = AtomicUsize::new(0);

impl BackendPool {
    /// Builds a pool; `trusted_ca` is the PEM of its `trusted_ca_file`, read by the caller.
    pub fn new(
        config: &BackendPoolConfig,
        metrics: &Metrics,
        trusted_ca: Option<&[u8]>,
    ) -> Result<BackendPool, String> {
        let members = config
            .addresses
            .iter()
            .map(|a| {
                let address = BackendAddress::parse(a, config.protocol, config.port)
                    .map_err(|why| format!("address `{a}` {why}"))?;
                Ok(Member {
                    health: metrics.backend(&config.name, &address.to_string()),
                    address,
                    id: NEXT_MEMBER_ID.fetch_add(1, Ordering::Relaxed),
                    in_rotation: Arc::new(AtomicBool::new(true)),
                    failures: AtomicU32::new(0),
                    cut: tokio::sync::watch::channel(0).0,
                })
            })
            .collect::<Result<Vec<_>, String>>()?;
        let tls = match config.protocol {
            Protocol::Http => None,
            Protocol::Https => Some(Arc::new(backend_tls(trusted_ca)?)),
        };
        let host = match (&config.host_header, config.pick_host_from_backend) {
            (Some(host), _) => HostPolicy::Fixed(host.clone()),
            (None, true) => HostPolicy::Backend,
            (None, false) => HostPolicy::Client,
        };
        let duration = |value: &Option<String>, key: &str| {
            value
                .as_deref()
                .map(crate::config::parse_duration)
                .transpose()
                .map_err(|e| format!("{key}: {e}"))
        };
        Ok(BackendPool {
            name: config.name.clone(),
            members,
            next: AtomicUsize::new(0),
            protocol: config.protocol,
            tls,
            sni: config.sni.clone().or_else(|| {
                config
                    .host_header
                    .as_deref()
                    .map(|h| strip_port(h).to_owned())
            }),
            timeout: duration(&config.request_timeout, "request_timeout")?
                .unwrap_or(DEFAULT_REQUEST_TIMEOUT),
            host,
            drain: duration(&config.drain_timeout, "drain_timeout")?,
            probe: config.probe.as_ref().map(Probe::new).transpose()?,
        })
    }

    pub fn members(&self) -> &[Member] {
        &self.members
    }

    /// The members in rotation in the order this request should try them: round robin for the
    /// first, then the rest in pool order so a dead member costs one connect attempt, not a
    /// failed request. Empty when every member is out of rotation.
    fn members_for_request(&self) -> Vec<&Member> {
        let mut healthy: Vec<&Member> = self.members.iter().filter(|m| m.in_rotation()).collect();
        // One member needs no turn-taking (and no write to the counter both workers share).
        if healthy.len() > 1 {
            let start = self.next.fetch_add(1, Ordering::Relaxed) % healthy.len();
            healthy.rotate_left(start);
        }
        healthy
    }

    /// Records a probe of `member`: `unhealthy_threshold` failures in a row take it out of
    /// rotation, one success brings it back.
    pub fn record_probe(&self, member: &Member, healthy: bool, error: &str) {
        member.health.set(healthy);
        let threshold = self.probe.as_ref().map_or(1, |p| p.unhealthy_threshold);
        if healthy {
            member.failures.store(0, Ordering::Relaxed);
            if !member.in_rotation.swap(true, Ordering::Relaxed) {
                info!(pool = %self.name, backend = %member.address, "backend healthy again: back in rotation");
            }
            return;
        }
        let failures = member.failures.fetch_add(1, Ordering::Relaxed) + 1;
        if failures >= threshold && member.in_rotation.swap(false, Ordering::Relaxed) {
            warn!(pool = %self.name, backend = %member.address, failures, error, "backend unhealthy: out of rotation");
            if let Some(drain) = self.drain {
                let (cut, in_rotation) = (member.cut.clone(), member.in_rotation.clone());
                actix_web::rt::spawn(async move {
                    tokio::time::sleep(drain).await;
                    // Back in rotation meanwhile: its requests carry on.
                    if !in_rotation.load(Ordering::Relaxed) {
                        cut.send_modify(|epoch| *epoch += 1);
                    }
                });
            }
        }
    }

    /// The URL of `path_and_query` on `member` and the socket address to connect to when the URL's
    /// host (the SNI name) is not the member's own.
    async fn target(
        &self,
        member: &Member,
        path_and_query: PathAndQuery,
    ) -> Result<(Uri, Option<SocketAddr>), String> {
        let scheme = match self.protocol {
            Protocol::Http => Scheme::HTTP,
            Protocol::Https => Scheme::HTTPS,
        };
        let (authority, addr) = match (&self.sni, self.protocol) {
            (Some(sni), Protocol::Https)
                if !sni.eq_ignore_ascii_case(member.address.bare_host()) =>
            {
                let addr = match member.address.ip() {
                    Some(ip) => SocketAddr::new(ip, member.address.port),
                    None => tokio::net::lookup_host(member.address.authority.as_str())
                        .await
                        .map_err(|e| format!("cannot resolve {}: {e}", member.address))?
                        .next()
                        .ok_or_else(|| format!("{} has no address", member.address))?,
                };
                let authority = Authority::try_from(format!("{sni}:{}", member.address.port))
                    .map_err(|e| format!("sni `{sni}` is not a valid host name: {e}"))?;
                (authority, Some(addr))
            }
            _ => (member.address.uri_authority.clone(), None),
        };
        let mut parts = actix_web::http::uri::Parts::default();
        parts.scheme = Some(scheme);
        parts.authority = Some(authority);
        parts.path_and_query = Some(path_and_query);
        let uri =
            Uri::from_parts(parts).map_err(|e| format!("cannot build the backend URL: {e}"))?;
        Ok((uri, addr))
    }

    /// The `Host` the backend sees instead of the client's, if the pool says so.
    fn host_override(&self, member: &Member) -> Option<String> {
        match &self.host {
            HostPolicy::Client => None,
            HostPolicy::Fixed(host) => Some(host.clone()),
            HostPolicy::Backend => {
                let default_port = match self.protocol {
                    Protocol::Http => 80,
                    Protocol::Https => 443,
                };
                Some(if member.address.port == default_port {
                    member.address.host.clone()
                } else {
                    member.address.authority.clone()
                })
            }
        }
    }

    /// This worker's client for `member`: one per member so that keep-alive connections are never
    /// shared between members (awc pools by URL authority, and with an `sni` several members
    /// share one).
    pub fn client(&self, member: &Member) -> awc::Client {
        thread_local! {
            // By member id: ids are handed out densely from 0.
            static CLIENTS: RefCell<Vec<Option<awc::Client>>> = const { RefCell::new(Vec::new()) };
        }
        CLIENTS.with(|clients| {
            let mut clients = clients.borrow_mut();
            if clients.len() <= member.id {
                clients.resize(member.id + 1, None);
            }
            clients[member.id]
                .get_or_insert_with(|| {
                    let mut connector = awc::Connector::new()
                        .timeout(Duration::from_secs(5))
                        .conn_keep_alive(Duration::from_secs(30))
                        .limit(1024);
                    if let Some(tls) = &self.tls {
                        connector = connector.rustls_0_23(tls.clone());
                    }
                    // awc follows redirects by default; a proxy passes them to the client.
                    awc::Client::builder()
                        .disable_redirects()
                        .no_default_headers()
                        .timeout(self.timeout)
                        .connector(connector)
                        .finish()
                })
                .clone()
        })
    }

    /// One probe of `member`: healthy, or why not.
    pub async fn probe_once(&self, member: &Member, probe: &Probe) -> Result<(), String> {
        let path = PathAndQuery::try_from(probe.path.as_str())
            .map_err(|e| format!("probe path `{}`: {e}", probe.path))?;
        let (url, addr) = self.target(member, path).await?;
        let client = self.client(member);
        let mut request = client
            .get(url)
            .timeout(probe.timeout)
            .force_close()
            .insert_header((header::USER_AGENT, "gateway-probe"));
        if let Some(addr) = addr {
            request = request.address(addr);
        }
        let host = self
            .host_override(member)
            .unwrap_or_else(|| member.address.to_string());
        request = request.insert_header((header::HOST, host));
        let response = request.send().await.map_err(|e| e.to_string())?;
        let status = response.status().as_u16();
        if probe.is_healthy(status) {
            Ok(())
        } else {
            Err(format!("status {status}"))
        }
    }
}

/// The rustls client configuration of an https pool: its trusted CA, else the public roots.
fn backend_tls(trusted_ca: Option<&[u8]>) -> Result<rustls::ClientConfig, String> {
    use rustls::pki_types::pem::PemObject as _;
    let mut roots = rustls::RootCertStore::empty();
    match trusted_ca {
        Some(pem) => {
            for cert in rustls::pki_types::CertificateDer::pem_slice_iter(pem) {
                let cert = cert.map_err(|e| format!("trusted_ca_file: {e}"))?;
                roots
                    .add(cert)
                    .map_err(|e| format!("trusted_ca_file: {e}"))?;
            }
            if roots.is_empty() {
                return Err("trusted_ca_file has no PEM certificate".into());
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::clone(listener::provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// Everything the request handler of one listener needs.
#[derive(Debug)]
pub struct Site {
    /// The port this listener is bound to, for `X-Forwarded-Port`.
    pub port: u16,
    pub listener: String,
    pub hostnames: Vec<String>,
    pub protocol: Protocol,
    /// Its rules, by priority (a redirecting listener has one rule: the redirect).
    pub rules: Vec<Rule>,
    /// The largest request body it accepts.
    pub max_request_body: Option<u64>,
    /// The longest pause in a request body before the request is abandoned with 408.
    pub body_timeout: Duration,
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

pub(crate) fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host.split_once(']').map_or(host, |(h, _)| &h[1..]);
    }
    host.rsplit_once(':')
        .filter(|(_, p)| p.bytes().all(|b| b.is_ascii_digit()))
        .map_or(host, |(h, _)| h)
}

pub async fn handle(
    req: HttpRequest,
    payload: web::Payload,
    sites: web::Data<Sites>,
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
    let Some(target) = routing::select(&site.rules, req.path()) else {
        return short(StatusCode::NOT_FOUND, "404 Not Found: no rule\n");
    };
    let started = Instant::now();
    let response = match &target.action {
        Action::Redirect(redirect) => redirect.respond(&req),
        Action::Proxy(pool) => forward(&req, payload, site, pool).await,
    };
    target
        .stats
        .observe(response.status().as_u16(), started.elapsed());
    response
}

async fn forward(
    req: &HttpRequest,
    payload: web::Payload,
    site: &Site,
    pool: &BackendPool,
) -> HttpResponse {
    let body = RequestBody::of(req);
    if let (Some(limit), RequestBody::Sized(len)) = (site.max_request_body, body) {
        if len > limit {
            discard(payload).await;
            return too_large(limit);
        }
    }
    let members = pool.members_for_request();
    if members.is_empty() {
        discard(payload).await;
        return short(
            StatusCode::BAD_GATEWAY,
            format!(
                "502 Bad Gateway: every member of backend pool `{}` is unhealthy\n",
                pool.name
            ),
        );
    }
    if is_websocket_upgrade(req) {
        return websocket(req, payload, site, pool, members[0]).await;
    }
    let path_and_query = path_and_query(req);
    // Over the limit while streaming: the rest of the body, to discard before answering 413.
    let spilled: Rc<RefCell<Option<web::Payload>>> = Rc::default();
    // The client's body once it has paused for longer than the body timeout.
    let stalled: Stalled = Rc::default();
    // A request with a body can be tried on one member only: its stream is consumed by the attempt.
    let mut payload = Some(payload);
    for member in members {
        let (url, addr) = match pool.target(member, path_and_query.clone()).await {
            Ok(target) => target,
            Err(err) => {
                warn!(listener = %site.listener, pool = %pool.name, backend = %member.address, error = %err, "backend unreachable");
                continue;
            }
        };
        let mut headers = forwarded_headers(req, site);
        if let Some(host) = pool.host_override(member) {
            insert(&mut headers, "host", &host);
        }
        let client = pool.client(member);
        let mut request = client
            .request(req.method().clone(), url)
            .timeout(pool.timeout);
        if let Some(addr) = addr {
            request = request.address(addr);
        }
        *request.headers_mut() = headers;
        // Only a pool with a drain timeout ever cuts requests: the others skip the watch.
        let mut cut = pool.drain.map(|_| member.cut.subscribe());
        let send = async {
            match body {
                RequestBody::None => Some(request.send().await),
                RequestBody::Sized(len) => {
                    let p = Paced::new(payload.take()?, site.body_timeout, stalled.clone());
                    Some(request.send_body(SizedStream::new(len, p)).await)
                }
                RequestBody::Chunked => {
                    let p = payload.take()?;
                    let limited = Limited {
                        inner: Some(p),
                        seen: 0,
                        limit: site.max_request_body.unwrap_or(u64::MAX),
                        spilled: spilled.clone(),
                    };
                    let paced = Paced::new(limited, site.body_timeout, stalled.clone());
                    Some(request.send_body(BodyStream::new(paced)).await)
                }
            }
        };
        let sent = match &mut cut {
            None => send.await,
            Some(cut) => tokio::select! {
                sent = send => sent,
                _ = cut.changed() => {
                    return short(
                        StatusCode::BAD_GATEWAY,
                        "502 Bad Gateway: the backend left the rotation and its drain timeout passed\n",
                    );
                }
            },
        };
        let Some(sent) = sent else { break };
        let rest = stalled.borrow_mut().take();
        if let Some(rest) = rest {
            // The backend request is dropped here, unfinished.
            warn!(listener = %site.listener, pool = %pool.name, backend = %member.address, timeout = ?site.body_timeout, "request body stalled; request abandoned");
            return body_timed_out(site.body_timeout, rest);
        }
        let rest = spilled.borrow_mut().take();
        if let Some(rest) = rest {
            discard(rest).await;
            return too_large(site.max_request_body.unwrap_or(0));
        }
        match &sent {
            Ok(_) => member.health.set(true),
            Err(
                awc::error::SendRequestError::Connect(_) | awc::error::SendRequestError::Timeout,
            ) => member.health.set(false),
            Err(_) => {}
        }
        match sent {
            Ok(response) => {
                return if pool.drain.is_some() {
                    relay(req.method(), response, Some(member.cut.subscribe()))
                } else {
                    relay(req.method(), response, None)
                }
            }
            Err(awc::error::SendRequestError::Timeout) => {
                warn!(listener = %site.listener, pool = %pool.name, backend = %member.address, "backend timed out");
                return short(
                    StatusCode::GATEWAY_TIMEOUT,
                    "504 Gateway Timeout: the backend did not answer in time\n",
                );
            }
            Err(err) => {
                warn!(listener = %site.listener, pool = %pool.name, backend = %member.address, error = %err, "backend unreachable");
            }
        }
    }
    short(
        StatusCode::BAD_GATEWAY,
        "502 Bad Gateway: no backend answered\n",
    )
}

/// The client's body, handed back by `Paced` when it stalls.
type Stalled = Rc<RefCell<Option<Box<dyn std::any::Any>>>>;

/// 408 for a stalled body. The rest of the body may never come, so the connection is closed after
/// the answer: the answer's body holds the client's payload until it has been written, because
/// actix-http closes a connection whose request payload is unfinished but would keep reading
/// (draining) a chunked one whose payload was dropped, for as long as the client likes.
fn body_timed_out(timeout: Duration, payload: Box<dyn std::any::Any>) -> HttpResponse {
    let text = Bytes::from(format!(
        "408 Request Timeout: the request body paused for more than {} ms\n",
        timeout.as_millis()
    ));
    let len = text.len() as u64;
    let body = Holding {
        text: Some(text),
        _payload: payload,
    };
    HttpResponse::build(StatusCode::REQUEST_TIMEOUT)
        .content_type("text/plain; charset=utf-8")
        .force_close()
        .body(SizedStream::new(len, body))
}

/// A one-piece body that keeps something alive until the body itself is dropped.
struct Holding {
    text: Option<Bytes>,
    _payload: Box<dyn std::any::Any>,
}

impl Stream for Holding {
    type Item = Result<Bytes, std::convert::Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        Poll::Ready(self.text.take().map(Ok))
    }
}

fn too_large(limit: u64) -> HttpResponse {
    short(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("413 Payload Too Large: the request body is limited to {limit} bytes\n"),
    )
}

/// Reads and drops what is left of a refused body, within bounds, so that a client still sending
/// reads the answer rather than a reset.
async fn discard(mut payload: web::Payload) {
    let drain = async {
        let mut seen = 0u64;
        while let Some(Ok(chunk)) = payload.next().await {
            seen += chunk.len() as u64;
            if seen > DISCARD_LIMIT {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(DISCARD_TIME, drain).await;
}

/// The client's request body, counted: past `limit` it ends with an error, and the rest of the
/// payload is handed back through `spilled`.
struct Limited {
    inner: Option<web::Payload>,
    seen: u64,
    limit: u64,
    spilled: Rc<RefCell<Option<web::Payload>>>,
}

impl Stream for Limited {
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(None);
        };
        match inner.poll_next_unpin(cx) {
            Poll::Ready(Some(Ok(chunk))) => {
                this.seen += chunk.len() as u64;
                if this.seen > this.limit {
                    *this.spilled.borrow_mut() = this.inner.take();
                    return Poll::Ready(Some(Err(PayloadError::Overflow)));
                }
                Poll::Ready(Some(Ok(chunk)))
            }
            other => other,
        }
    }
}

/// A request body with a bound on each pause: once it has waited `timeout` for the next piece, it
/// ends with an error and hands the rest of the body back through `stalled`. Only time spent
/// waiting on the client counts: while the backend does not ask for more (backpressure), the
/// clock is stopped.
struct Paced<S> {
    inner: Option<S>,
    timeout: Duration,
    deadline: Pin<Box<tokio::time::Sleep>>,
    waiting: bool,
    stalled: Stalled,
}

impl<S> Paced<S> {
    fn new(inner: S, timeout: Duration, stalled: Stalled) -> Paced<S> {
        Paced {
            inner: Some(inner),
            timeout,
            deadline: Box::pin(tokio::time::sleep(timeout)),
            waiting: false,
            stalled,
        }
    }
}

impl<S: Stream<Item = Result<Bytes, PayloadError>> + Unpin + 'static> Stream for Paced<S> {
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(None);
        };
        match inner.poll_next_unpin(cx) {
            Poll::Pending => {
                if !this.waiting {
                    this.waiting = true;
                    let at = tokio::time::Instant::now() + this.timeout;
                    this.deadline.as_mut().reset(at);
                }
                if this.deadline.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                if let Some(inner) = this.inner.take() {
                    *this.stalled.borrow_mut() = Some(Box::new(inner));
                }
                Poll::Ready(Some(Err(PayloadError::Io(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "the request body stalled",
                )))))
            }
            ready => {
                this.waiting = false;
                ready
            }
        }
    }
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
            return RequestBody::Chunked;
        }
        // HTTP/2 has no Transfer-Encoding: a body without Content-Length is a stream of DATA
        // frames. Methods that carry no body are sent without one.
        let bodiless = [Method::GET, Method::HEAD, Method::OPTIONS, Method::DELETE];
        if req.version() == Version::HTTP_2 && !bodiless.contains(req.method()) {
            RequestBody::Chunked
        } else {
            RequestBody::None
        }
    }
}

/// The request's path and query, as the backend URL takes them.
fn path_and_query(req: &HttpRequest) -> PathAndQuery {
    req.uri()
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"))
}

fn is_websocket_upgrade(req: &HttpRequest) -> bool {
    let has = |name: HeaderName, token: &str| {
        req.headers()
            .get_all(name)
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    };
    req.version() == Version::HTTP_11
        && has(header::UPGRADE, "websocket")
        && has(header::CONNECTION, "upgrade")
}

/// A WebSocket upgrade: the gateway makes its own handshake with the backend (awc), answers the
/// client's with `101`, then copies bytes both ways: frames pass through untouched.
async fn websocket(
    req: &HttpRequest,
    mut payload: web::Payload,
    site: &Site,
    pool: &BackendPool,
    member: &Member,
) -> HttpResponse {
    let Some(key) = req.headers().get(header::SEC_WEBSOCKET_KEY).cloned() else {
        return short(
            StatusCode::BAD_REQUEST,
            "400 Bad Request: WebSocket upgrade without Sec-WebSocket-Key\n",
        );
    };
    let path_and_query = path_and_query(req);
    let (url, addr) = match pool.target(member, path_and_query).await {
        Ok(target) => target,
        Err(err) => {
            warn!(listener = %site.listener, pool = %pool.name, backend = %member.address, error = %err, "backend unreachable");
            return short(
                StatusCode::BAD_GATEWAY,
                "502 Bad Gateway: no backend answered\n",
            );
        }
    };
    let mut headers = forwarded_headers(req, site);
    if let Some(host) = pool.host_override(member) {
        insert(&mut headers, "host", &host);
    }
    for name in [
        header::SEC_WEBSOCKET_KEY,
        header::SEC_WEBSOCKET_VERSION,
        header::UPGRADE,
        header::CONNECTION,
    ] {
        headers.remove(name);
    }
    let mut request = pool.client(member).ws(url);
    if let Some(addr) = addr {
        request = request.address(addr);
    }
    for (name, value) in headers.iter() {
        request = request.set_header(name.clone(), value.clone());
    }
    let (response, framed) = match request.connect().await {
        Ok(connected) => connected,
        Err(awc::error::WsClientError::InvalidResponseStatus(status)) => {
            return short(
                status,
                format!("{status}: the backend refused the WebSocket upgrade\n"),
            );
        }
        Err(err) => {
            member.health.set(false);
            warn!(listener = %site.listener, pool = %pool.name, backend = %member.address, error = %err, "WebSocket upgrade to the backend failed");
            return short(
                StatusCode::BAD_GATEWAY,
                "502 Bad Gateway: the WebSocket upgrade to the backend failed\n",
            );
        }
    };
    member.health.set(true);
    let mut builder = HttpResponse::build(StatusCode::SWITCHING_PROTOCOLS);
    builder.upgrade("websocket").insert_header((
        header::SEC_WEBSOCKET_ACCEPT,
        actix_http::ws::hash_key(key.as_bytes()).to_vec(),
    ));
    for name in [
        header::SEC_WEBSOCKET_PROTOCOL,
        header::SEC_WEBSOCKET_EXTENSIONS,
    ] {
        if let Some(value) = response.headers().get(&name) {
            builder.insert_header((name, value.clone()));
        }
    }
    let parts = framed.into_parts();
    let (from_backend, mut to_backend) = tokio::io::split(parts.io);
    let buffered = parts.read_buf.freeze();
    actix_web::rt::spawn(async move {
        while let Some(Ok(chunk)) = payload.next().await {
            if to_backend.write_all(&chunk).await.is_err() {
                break;
            }
        }
        let _ = to_backend.shutdown().await;
    });
    let first = futures_util::stream::iter((!buffered.is_empty()).then_some(Ok(buffered)));
    builder.streaming(first.chain(BackendRead::new(from_backend)))
}

type ReadHalf = tokio::io::ReadHalf<awc::BoxedSocket>;
type Reading = Pin<Box<dyn Future<Output = (std::io::Result<Bytes>, ReadHalf)>>>;

/// The backend's side of a WebSocket tunnel as a stream of chunks.
struct BackendRead {
    reading: Option<Reading>,
}

impl BackendRead {
    fn new(half: ReadHalf) -> BackendRead {
        BackendRead {
            reading: Some(Self::read(half)),
        }
    }

    fn read(mut half: ReadHalf) -> Reading {
        Box::pin(async move {
            let mut buffer = vec![0u8; 16 * 1024];
            let read = half.read(&mut buffer).await.map(|n| {
                buffer.truncate(n);
                Bytes::from(buffer)
            });
            (read, half)
        })
    }
}

impl Stream for BackendRead {
    type Item = Result<Bytes, std::io::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let Some(reading) = self.reading.as_mut() else {
            return Poll::Ready(None);
        };
        match reading.as_mut().poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready((Ok(chunk), _)) if chunk.is_empty() => {
                self.reading = None;
                Poll::Ready(None)
            }
            Poll::Ready((Ok(chunk), half)) => {
                self.reading = Some(Self::read(half));
                Poll::Ready(Some(Ok(chunk)))
            }
            Poll::Ready((Err(err), _)) => {
                self.reading = None;
                Poll::Ready(Some(Err(err)))
            }
        }
    }
}

/// A response body from a member that ends (with an error, so the client sees it cut) when the
/// member's drain timeout passes after it left the rotation.
struct Drained<S> {
    inner: S,
    cut: Pin<Box<dyn Future<Output = ()>>>,
}

impl<S> Stream for Drained<S>
where
    S: Stream<Item = Result<Bytes, PayloadError>> + Unpin,
{
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.cut.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Some(Err(PayloadError::Io(std::io::Error::other(
                "the backend left the rotation and its drain timeout passed",
            )))));
        }
        self.inner.poll_next_unpin(cx)
    }
}

/// The request headers the backend sees: the client's, minus hop-by-hop ones (including any the
/// client named in `Connection`), plus `X-Forwarded-For/-Proto/-Host/-Port` and `X-Original-Host`.
fn forwarded_headers(req: &HttpRequest, site: &Site) -> HeaderMap {
    let incoming = req.headers();
    // Room for the five added headers without a regrow.
    let mut headers = HeaderMap::with_capacity(incoming.len() + 5);
    for (name, value) in end_to_end(incoming) {
        if *name != header::CONTENT_LENGTH {
            headers.append(name.clone(), value.clone());
        }
    }

    if let Some(peer) = req.peer_addr() {
        let value = match incoming
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
        {
            Some(existing) => HeaderValue::from_str(&format!("{existing}, {}", peer.ip())).ok(),
            None => ip_header_value(peer.ip()),
        };
        if let Some(value) = value {
            headers.insert(HeaderName::from_static("x-forwarded-for"), value);
        }
    }
    let proto = match site.protocol {
        Protocol::Http => HeaderValue::from_static("http"),
        Protocol::Https => HeaderValue::from_static("https"),
    };
    headers.insert(HeaderName::from_static("x-forwarded-proto"), proto);
    // HTTP/2 carries the host in :authority; the HTTP/1.1 backend needs it as (one) Host.
    let host = match incoming.get(header::HOST) {
        Some(host) => Some(host.clone()),
        None => req
            .uri()
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok()),
    };
    if let Some(host) = host {
        headers.insert(header::HOST, host.clone());
        headers.insert(HeaderName::from_static("x-forwarded-host"), host.clone());
        headers.insert(HeaderName::from_static("x-original-host"), host);
    }
    headers.insert(
        HeaderName::from_static("x-forwarded-port"),
        HeaderValue::from(site.port),
    );
    headers
}

/// `ip` as a header value. IPv4 is written by hand: `Display` through the formatter machinery
/// showed up in the keep-alive profile, once per request.
fn ip_header_value(ip: IpAddr) -> Option<HeaderValue> {
    let IpAddr::V4(v4) = ip else {
        return HeaderValue::from_str(&ip.to_string()).ok();
    };
    let mut text = [0u8; 15];
    let mut len = 0;
    for (i, octet) in v4.octets().into_iter().enumerate() {
        if i > 0 {
            text[len] = b'.';
            len += 1;
        }
        if octet >= 100 {
            text[len] = b'0' + octet / 100;
            len += 1;
        }
        if octet >= 10 {
            text[len] = b'0' + octet / 10 % 10;
            len += 1;
        }
        text[len] = b'0' + octet % 10;
        len += 1;
    }
    HeaderValue::from_bytes(&text[..len]).ok()
}

fn insert(headers: &mut HeaderMap, name: &'static str, value: &str) {
    if let Ok(value) = HeaderValue::from_str(value) {
        headers.insert(HeaderName::from_static(name), value);
    }
}

/// The headers a `Connection` header names: hop-by-hop for this message.
fn named_in_connection(headers: &HeaderMap) -> Vec<HeaderName> {
    headers
        .get_all(header::CONNECTION)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect()
}

/// `headers` without the hop-by-hop ones: [`HOP_BY_HOP`], `Upgrade` (a WebSocket upgrade makes
/// its own handshake with the backend) and any that `Connection` names.
fn end_to_end(headers: &HeaderMap) -> impl Iterator<Item = (&HeaderName, &HeaderValue)> {
    let named = named_in_connection(headers);
    headers.iter().filter(move |(name, _)| {
        **name != header::UPGRADE && !HOP_BY_HOP.contains(name) && !named.contains(name)
    })
}

fn relay<S>(
    method: &Method,
    response: awc::ClientResponse<S>,
    cut: Option<tokio::sync::watch::Receiver<u64>>,
) -> HttpResponse
where
    S: Stream<Item = Result<Bytes, PayloadError>> + Unpin + 'static,
{
    let mut builder = HttpResponse::build(response.status());
    let headers = response.headers();
    let length = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    for (name, value) in end_to_end(headers) {
        if *name != header::CONTENT_LENGTH {
            builder.append_header((name.clone(), value.clone()));
        }
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
    match (length, cut) {
        (Some(length), None) => builder.body(SizedStream::new(length, response)),
        (None, None) => builder.body(BodyStream::new(response)),
        (length, Some(mut cut)) => {
            let drained = Drained {
                inner: response,
                cut: Box::pin(async move {
                    let _ = cut.changed().await;
                }),
            };
            match length {
                Some(length) => builder.body(SizedStream::new(length, drained)),
                None => builder.body(BodyStream::new(drained)),
            }
        }
    }
}

fn short(status: StatusCode, body: impl Into<String>) -> HttpResponse {
    HttpResponse::build(status)
        .content_type("text/plain; charset=utf-8")
        .body(body.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<BackendAddress, &'static str> {
        BackendAddress::parse(text, Protocol::Http, None)
    }

    #[test]
    fn backend_addresses_are_host_and_port() {
        assert_eq!(
            parse("127.0.0.1:8080").unwrap().to_string(),
            "127.0.0.1:8080"
        );
        assert_eq!(parse("http://app:80/").unwrap().to_string(), "app:80");
        assert_eq!(parse("app").unwrap().to_string(), "app:80");
        assert_eq!(
            BackendAddress::parse("app", Protocol::Http, Some(8080))
                .unwrap()
                .to_string(),
            "app:8080"
        );
        assert_eq!(
            BackendAddress::parse("https://app", Protocol::Https, None)
                .unwrap()
                .to_string(),
            "app:443"
        );
        assert_eq!(parse("[::1]:81").unwrap().to_string(), "[::1]:81");
        assert!(parse("https://app:443").is_err());
        assert!(BackendAddress::parse("http://app", Protocol::Https, None).is_err());
        assert!(parse("ftp://app").is_err());
        assert!(parse("app:80/path").is_err());
        assert!(parse(":80").is_err());
    }

    fn pool(extra: &str) -> BackendPool {
        let config: BackendPoolConfig = toml::from_str(&format!(
            "name = \"p\"\naddresses = [\"a:1\", \"b:1\", \"c:1\"]\n{extra}"
        ))
        .unwrap();
        BackendPool::new(&config, &Metrics::default(), None).unwrap()
    }

    fn order(pool: &BackendPool) -> String {
        pool.members_for_request()
            .iter()
            .map(|member| member.address.to_string())
            .collect::<Vec<_>>()
            .join(" ")
    }

    #[test]
    fn round_robin_starts_each_request_at_the_next_member_and_falls_back_to_the_rest() {
        let pool = pool("");
        assert_eq!(order(&pool), "a:1 b:1 c:1");
        assert_eq!(order(&pool), "b:1 c:1 a:1");
        assert_eq!(order(&pool), "c:1 a:1 b:1");
        assert_eq!(order(&pool), "a:1 b:1 c:1");
    }

    #[test]
    fn a_member_leaves_after_threshold_failed_probes_and_returns_after_one_success() {
        let pool = pool("[probe]\nunhealthy_threshold = 2\n");
        let b = &pool.members()[1];
        pool.record_probe(b, false, "refused");
        assert!(b.in_rotation(), "one failure is below the threshold");
        pool.record_probe(b, false, "refused");
        assert!(!b.in_rotation());
        for _ in 0..4 {
            assert!(!order(&pool).contains("b:1"), "{}", order(&pool));
        }
        pool.record_probe(b, true, "");
        assert!(b.in_rotation());
        for member in pool.members() {
            pool.record_probe(member, false, "down");
            pool.record_probe(member, false, "down");
        }
        assert_eq!(order(&pool), "");
    }

    #[test]
    fn probe_status_ranges() {
        let pool = pool("[probe]\nhealthy_status = \"200-299,404\"\n");
        let probe = pool.probe.as_ref().unwrap();
        assert!(probe.is_healthy(204));
        assert!(probe.is_healthy(404));
        assert!(!probe.is_healthy(301));
        assert!(!probe.is_healthy(500));
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
        headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        let left: Vec<_> = end_to_end(&headers).map(|(k, _)| k.as_str()).collect();
        assert_eq!(left, ["accept"]);
    }

    #[test]
    fn peer_addresses_are_written_as_their_display_form() {
        for ip in [
            "0.0.0.0",
            "127.0.0.1",
            "10.20.99.100",
            "255.255.255.255",
            "::1",
            "2001:db8::7",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(
                ip_header_value(ip).unwrap().to_str().unwrap(),
                ip.to_string()
            );
        }
    }
}
