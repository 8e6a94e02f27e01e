//! The HTTPS server of one bind address. It is actix-web's own pipeline (rustls acceptor, then the
//! HTTP/1.1 and HTTP/2 dispatcher, then the app) with one step in front: the ClientHello is peeked
//! (not consumed), and a handshake for a listener taken out of service is refused with the
//! `unrecognized_name` alert, as Application Gateway does, instead of reaching rustls, which would
//! answer `access_denied`.
//!
//! The limits of `[limits]`: at most `max_connections` connections (actix-server stops accepting
//! beyond it, so new ones wait in the backlog); at most `max_handshakes_in_flight` connections
//! between accept and the end of the TLS handshake (the others wait for a slot), each of which
//! must finish within `handshake_timeout` of its accept, waiting included; then actix-http's
//! `client_request_timeout` for the first request's headers.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use actix_http::error::DispatchError;
use actix_http::{HttpService, Protocol};
use actix_server::Server;
use actix_service::{
    fn_factory, fn_service, map_config, IntoServiceFactory, Service, ServiceFactory,
    ServiceFactoryExt,
};
use actix_tls::accept::rustls_0_23::{Acceptor, AcceptorService, TlsStream};
use actix_tls::accept::TlsError;
use actix_web::dev::AppConfig;
use actix_web::{web, App};
use listener::{Peeked, SniResolver, MAX_PEEK, UNRECOGNIZED_NAME_ALERT};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio::time::Instant;

use crate::config::ConnectionLimits;
use crate::metrics::HandshakeStats;
use crate::proxy::{self, Sites};

type HandshakeError = TlsError<io::Error, DispatchError>;

/// The worker threads of one bind address's server and the connections each may hold, so that
/// together they hold `max_connections` (rounded up to a multiple of the worker count). A worker
/// at its cap takes no new connection; when every worker is, the server stops accepting and new
/// connections wait in the kernel's accept backlog.
pub fn workers_for(max_connections: usize) -> (usize, usize) {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let workers = cpus.clamp(1, max_connections.max(1));
    (workers, max_connections.max(1).div_ceil(workers))
}

/// Builds (does not start) the server for `socket`.
pub fn server(
    socket: std::net::TcpListener,
    tls: rustls::ServerConfig,
    resolver: Arc<SniResolver>,
    sites: web::Data<Sites>,
    handshakes: HashMap<String, Arc<HandshakeStats>>,
    limits: ConnectionLimits,
) -> io::Result<Server> {
    let handshakes = Arc::new(handshakes);
    // Shared by every worker: the handshakes in flight on this address.
    let slots = Arc::new(Semaphore::new(limits.max_handshakes_in_flight));
    let (workers, per_worker) = workers_for(limits.max_connections);
    let name = format!("https-{}", socket.local_addr()?);
    let mut acceptor = Acceptor::new(tls);
    acceptor.set_handshake_timeout(limits.handshake_timeout);
    Ok(Server::build()
        .disable_signals()
        .workers(workers)
        .max_concurrent_connections(per_worker)
        .listen(name, socket, move || {
            let app = App::new()
                .app_data(sites.clone())
                .default_service(web::to(proxy::handle));
            let count = {
                let (resolver, handshakes) = (resolver.clone(), handshakes.clone());
                move |stream: &TlsStream<TcpStream>, _: &mut actix_http::Extensions| {
                    count_handshake(stream, &resolver, &handshakes);
                }
            };
            let http = HttpService::<TlsStream<TcpStream>, _, _, _, _>::build()
                .client_request_timeout(limits.request_header_timeout)
                .on_connect_ext(count)
                .finish(map_config(app.into_factory(), |_| AppConfig::default()))
                .map_err(TlsError::Service);
            let (acceptor, resolver, slots) = (acceptor.clone(), resolver.clone(), slots.clone());
            let timeout = limits.handshake_timeout;
            fn_factory(move || {
                let tls = ServiceFactory::<TcpStream>::new_service(&acceptor, ());
                let (resolver, slots) = (resolver.clone(), slots.clone());
                async move {
                    let tls = Rc::new(tls.await?);
                    Ok::<_, ()>(fn_service(move |stream: TcpStream| {
                        let (tls, resolver, slots) = (tls.clone(), resolver.clone(), slots.clone());
                        async move { handshake(stream, &tls, &resolver, &slots, timeout).await }
                    }))
                }
            })
            .and_then(http)
        })?
        .run())
}

/// Everything before HTTP: wait for a handshake slot, peek the ClientHello (refusing a listener
/// out of service), then the rustls handshake, all within `timeout` of the accept.
async fn handshake(
    stream: TcpStream,
    tls: &AcceptorService,
    resolver: &SniResolver,
    slots: &Semaphore,
    timeout: Duration,
) -> Result<(TlsStream<TcpStream>, Protocol, Option<SocketAddr>), HandshakeError> {
    let deadline = Instant::now() + timeout;
    let work = async {
        let _slot = slots
            .acquire()
            .await
            .map_err(|_| TlsError::Tls(io::Error::other("the server is stopping")))?;
        let stream = refuse_out_of_service(stream, resolver, deadline).await?;
        tls.call(stream)
            .await
            .map_err(|err| err.into_service_error())
    };
    let stream = tokio::time::timeout_at(deadline, work)
        .await
        .map_err(|_| TlsError::Timeout)??;
    let protocol = match stream.get_ref().1.alpn_protocol() {
        Some(b"h2") => Protocol::Http2,
        _ => Protocol::Http1,
    };
    let peer = stream.get_ref().0.peer_addr().ok();
    Ok((stream, protocol, peer))
}

/// Counts a completed handshake for the listener its SNI chose.
fn count_handshake(
    stream: &TlsStream<TcpStream>,
    resolver: &SniResolver,
    handshakes: &HashMap<String, Arc<HandshakeStats>>,
) {
    let tls = stream.get_ref().1;
    let Some(listener) = resolver.select(tls.server_name()) else {
        return;
    };
    if let Some(stats) = handshakes.get(listener.name()) {
        let tls13 = tls.protocol_version() == Some(rustls::ProtocolVersion::TLSv1_3);
        let resumed = tls.handshake_kind() == Some(rustls::HandshakeKind::Resumed);
        stats.observe(tls13, resumed);
    }
}

/// Passes the connection on unless its ClientHello names a listener that is out of service.
async fn refuse_out_of_service(
    mut stream: TcpStream,
    resolver: &SniResolver,
    deadline: Instant,
) -> Result<TcpStream, HandshakeError> {
    let mut buffer = vec![0u8; MAX_PEEK];
    // A peek does not consume, so the socket stays readable: poll with a growing pause.
    let mut pause = Duration::from_millis(1);
    loop {
        let peeked = tokio::time::timeout_at(deadline, stream.peek(&mut buffer)).await;
        let read = match peeked {
            Ok(Ok(read)) => read,
            Ok(Err(_)) => return Ok(stream), // rustls will say what is wrong
            Err(_) => return Err(TlsError::Timeout),
        };
        match listener::peek_server_name(&buffer[..read]) {
            Peeked::NeedMore if read > 0 && read < buffer.len() => {
                // The rest of the ClientHello is on its way; wait for more bytes.
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_millis(50));
            }
            Peeked::ClientHello(name) if resolver.refuses(name.as_deref()) => {
                let _ = stream.write_all(&UNRECOGNIZED_NAME_ALERT).await;
                let _ = stream.shutdown().await;
                return Err(TlsError::Tls(io::Error::other("listener out of service")));
            }
            _ => return Ok(stream),
        }
    }
}
