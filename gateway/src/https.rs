//! The HTTPS server of one bind address. It is actix-web's own pipeline (rustls acceptor, then the
//! HTTP/1.1 and HTTP/2 dispatcher, then the app) with one step in front: the ClientHello is peeked
//! (not consumed), and a handshake for a listener taken out of service is refused with the
//! `unrecognized_name` alert, as Application Gateway does, instead of reaching rustls, which would
//! answer `access_denied`.

use std::collections::HashMap;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use actix_http::HttpService;
use actix_server::Server;
use actix_service::{fn_service, map_config, IntoServiceFactory, ServiceFactoryExt};
use actix_tls::accept::rustls_0_23::TlsStream;
use actix_tls::accept::TlsError;
use actix_web::dev::AppConfig;
use actix_web::{web, App};
use listener::{Peeked, SniResolver, MAX_PEEK, UNRECOGNIZED_NAME_ALERT};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::metrics::HandshakeStats;
use crate::proxy::{self, Sites};

/// How long a client may take to send its ClientHello before the connection is handed to rustls
/// as it is (rustls then applies its own handshake timeout).
const PEEK_TIMEOUT: Duration = Duration::from_secs(10);

/// Builds (does not start) the server for `socket`.
pub fn server(
    socket: std::net::TcpListener,
    tls: rustls::ServerConfig,
    resolver: Arc<SniResolver>,
    sites: web::Data<Sites>,
    handshakes: HashMap<String, Arc<HandshakeStats>>,
) -> io::Result<Server> {
    let handshakes = Arc::new(handshakes);
    let name = format!("https-{}", socket.local_addr()?);
    Ok(Server::build()
        .disable_signals()
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
                .on_connect_ext(count)
                .finish(map_config(app.into_factory(), |_| AppConfig::default()))
                .rustls_0_23(tls.clone());
            let resolver = resolver.clone();
            fn_service(move |stream: TcpStream| {
                let resolver = resolver.clone();
                async move { refuse_out_of_service(stream, &resolver).await }
            })
            .and_then(http)
        })?
        .run())
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
) -> Result<TcpStream, TlsError<io::Error, actix_http::error::DispatchError>> {
    let mut buffer = vec![0u8; MAX_PEEK];
    let deadline = tokio::time::Instant::now() + PEEK_TIMEOUT;
    loop {
        let peeked = tokio::time::timeout_at(deadline, stream.peek(&mut buffer)).await;
        let Ok(Ok(read)) = peeked else {
            return Ok(stream); // timed out or failed: rustls will say what is wrong
        };
        match listener::peek_server_name(&buffer[..read]) {
            Peeked::NeedMore if read > 0 && read < buffer.len() => {
                // The rest of the ClientHello is on its way; wait for more bytes.
                tokio::time::sleep(Duration::from_millis(1)).await;
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
