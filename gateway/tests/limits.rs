//! `[limits]` under load: each limit is flooded, and the gateway keeps serving other clients.
//! Connections over `max_connections` wait in the backlog; handshakes over
//! `max_handshakes_in_flight` wait for a slot and are cut at `handshake_timeout`; headers trickled
//! past `request_header_timeout` get 408; heads over actix-http's fixed limits get 431; a request
//! body that stalls past `body_timeout` gets 408 and its backend request is dropped.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::*;

/// One listener of a test config: its name, protocol, extra keys and the rule's extra keys.
struct Listener<'a> {
    name: &'a str,
    https: bool,
    extra: &'a str,
    rule: &'a str,
}

impl<'a> Listener<'a> {
    fn http(name: &'a str, extra: &'a str) -> Self {
        Listener {
            name,
            https: false,
            extra,
            rule: "",
        }
    }
    fn https(name: &'a str, extra: &'a str) -> Self {
        Listener {
            name,
            https: true,
            extra,
            rule: "",
        }
    }
    fn rule(mut self, rule: &'a str) -> Self {
        self.rule = rule;
        self
    }
}

struct Setup {
    gateway: Gateway,
    ca: String,
    _dir: tempfile::TempDir,
}

impl Setup {
    fn addr(&self, listener: &str) -> SocketAddr {
        self.gateway.addr(listener)
    }
}

/// Starts a gateway with `listeners`, each on its own port, all routed to an echo backend (pool
/// `app`); `extra` is appended (more pools).
fn start(listeners: &[Listener<'_>], extra: &str) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new();
    let leaf = pki.leaf(&["localhost"]);
    let pem = dir.path().join("site.pem");
    std::fs::write(&pem, leaf.bundle_pem(&pki)).unwrap();
    let backend = EchoBackend::start();
    let mut text = format!(
        "[state]\ndir = \"state\"\n\n[admin]\nbind = \"127.0.0.1:0\"\n\n[[backend_pool]]\nname = \"app\"\naddresses = [\"{}\"]\n{extra}\n",
        backend.addr
    );
    for l in listeners {
        let (protocol, certificate) = if l.https {
            (
                "https",
                format!("certificate = {{ pem_file = \"{}\" }}\n", pem.display()),
            )
        } else {
            ("http", String::new())
        };
        text.push_str(&format!(
            "\n[[listener]]\nname = \"{name}\"\nbind = \"127.0.0.1:0\"\nprotocol = \"{protocol}\"\nhostnames = [\"localhost\"]\n{certificate}{extra}\n\n[[rule]]\nname = \"{name}-rule\"\nlistener = \"{name}\"\nbackend_pool = \"app\"\n{rule}\n",
            name = l.name,
            extra = l.extra,
            rule = l.rule,
        ));
    }
    let config = dir.path().join("gateway.toml");
    std::fs::write(&config, text).unwrap();
    Setup {
        gateway: Gateway::start(&config, &[]),
        ca: pki.ca_pem,
        _dir: dir,
    }
}

const GET: &str = "GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";

fn status_of(response: &str) -> u16 {
    response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// A GET on a listener, plain or TLS: the status.
fn get_status(setup: &Setup, listener: &str, https: bool) -> u16 {
    let addr = setup.addr(listener);
    if https {
        https_get(addr, "localhost", &setup.ca, "/").status()
    } else {
        status_of(&http_exchange(addr, GET))
    }
}

fn timed_out(err: &std::io::Error) -> bool {
    matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)
}

/// Reads until the peer closes (or resets, or 30 s pass): what arrived.
fn read_rest(reader: &mut impl Read) -> String {
    let mut response = Vec::new();
    let mut buffer = [0u8; 4096];
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        match reader.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => response.extend_from_slice(&buffer[..n]),
            Err(e) if timed_out(&e) => continue,
            Err(_) => break,
        }
    }
    String::from_utf8_lossy(&response).into_owned()
}

fn client_connection(ca: &str) -> rustls::ClientConnection {
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    rustls::ClientConnection::new(client_config(ca, &[b"http/1.1"]), name).unwrap()
}

/// A TLS connection with its handshake done, whose socket reads time out after `read_timeout`.
fn tls_connected(
    addr: SocketAddr,
    ca: &str,
    read_timeout: Duration,
) -> rustls::StreamOwned<rustls::ClientConnection, TcpStream> {
    let mut conn = client_connection(ca);
    let mut sock = TcpStream::connect(addr).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    while conn.is_handshaking() {
        conn.complete_io(&mut sock).unwrap();
    }
    sock.set_read_timeout(Some(read_timeout)).unwrap();
    rustls::StreamOwned::new(conn, sock)
}

#[test]
fn connections_beyond_max_connections_wait_in_the_backlog_while_other_listeners_serve() {
    let setup = start(
        &[
            Listener::http(
                "capped",
                "max_connections = 4\nrequest_header_timeout = \"60s\"",
            ),
            Listener::https(
                "capped-tls",
                "max_connections = 4\nhandshake_timeout = \"60s\"",
            ),
            Listener::http("other", ""),
            Listener::https("other-tls", ""),
        ],
        "",
    );
    for (capped, https) in [("capped", false), ("capped-tls", true)] {
        let addr = setup.addr(capped);
        // Idle connections: no request, no ClientHello. The kernel completes every TCP handshake
        // (the backlog); the gateway takes only its cap of them.
        let idle: Vec<TcpStream> = (0..16).map(|_| TcpStream::connect(addr).unwrap()).collect();

        assert_eq!(get_status(&setup, "other", false), 200, "{capped}");
        assert_eq!(get_status(&setup, "other-tls", true), 200, "{capped}");

        // A new client on the capped listener waits: no answer while the idle ones hold it.
        let mut sock = TcpStream::connect(addr).unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(1500)))
            .unwrap();
        let mut tls = client_connection(&setup.ca);
        let waited = if https {
            let mut result = Ok((0, 0));
            while tls.is_handshaking() {
                result = tls.complete_io(&mut sock);
                if result.is_err() {
                    break;
                }
            }
            result.err()
        } else {
            sock.write_all(GET.as_bytes()).unwrap();
            let mut byte = [0u8; 1];
            sock.read(&mut byte).err()
        };
        assert!(
            waited.as_ref().is_some_and(timed_out),
            "{capped}: a connection over max_connections was served at once: {waited:?}"
        );

        // Once the idle connections go, the waiting client is served, and so is a new one.
        drop(idle);
        sock.set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let response = if https {
            while tls.is_handshaking() {
                tls.complete_io(&mut sock).unwrap();
            }
            let mut stream = rustls::StreamOwned::new(tls, sock);
            stream.write_all(GET.as_bytes()).unwrap();
            read_rest(&mut stream)
        } else {
            read_rest(&mut sock)
        };
        assert_eq!(status_of(&response), 200, "{capped}: {response}");
        assert_eq!(get_status(&setup, capped, https), 200, "{capped}");
    }
}

#[test]
fn half_open_handshakes_beyond_the_limit_are_cut_at_the_timeout_and_free_their_slots() {
    let setup = start(
        &[
            Listener::https(
                "tls",
                "max_handshakes_in_flight = 4\nhandshake_timeout = \"4s\"",
            ),
            Listener::https("other-tls", ""),
        ],
        "",
    );
    let addr = setup.addr("tls");
    let opened = Instant::now();
    // Silent connections, and connections that send the start of a ClientHello (a record header
    // announcing 512 bytes, then a few) and stop.
    let mut attackers: Vec<TcpStream> =
        (0..12).map(|_| TcpStream::connect(addr).unwrap()).collect();
    for _ in 0..4 {
        let mut sock = TcpStream::connect(addr).unwrap();
        sock.write_all(&[
            0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03,
        ])
        .unwrap();
        attackers.push(sock);
    }

    // Another listener is not affected.
    assert_eq!(get_status(&setup, "other-tls", true), 200);

    // While the slots are held, a handshake on this listener does not complete.
    let mut sock = TcpStream::connect(addr).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
    let mut conn = client_connection(&setup.ca);
    let mut result = Ok((0, 0));
    while conn.is_handshaking() && result.is_ok() {
        result = conn.complete_io(&mut sock);
    }
    if opened.elapsed() < Duration::from_secs(3) {
        assert!(
            result.as_ref().is_err_and(timed_out),
            "a handshake completed while max_handshakes_in_flight were held: {result:?}"
        );
    }
    drop(sock);

    // The timeout frees the slots: a normal client completes.
    let served = wait_for("a handshake on `tls`", Duration::from_secs(30), || {
        https_exchange(addr, "localhost", &setup.ca, GET.as_bytes())
            .ok()
            .filter(|e| e.status() == 200)
    });
    assert_eq!(served.status(), 200);

    // And the gateway closed every half-open connection.
    for mut attacker in attackers {
        attacker
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        if let Err(e) = attacker.read_to_end(&mut Vec::new()) {
            assert!(!timed_out(&e), "a half-open connection was kept open");
        }
    }
    assert_eq!(get_status(&setup, "other-tls", true), 200);
}

/// Sends the start of a request, then `X-Slow: 1\r\n` one byte every 100 ms, until the gateway
/// answers or about 20 s pass; serves `normal` once meanwhile. Returns what the gateway sent.
fn slowloris(stream: &mut (impl Read + Write), normal: impl FnOnce()) -> String {
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n")
        .unwrap();
    stream.flush().unwrap();
    let mut normal = Some(normal);
    let trickle = b"X-Slow: 1\r\n".repeat(20);
    for (i, byte) in trickle.iter().enumerate() {
        if i == 3 {
            (normal.take().unwrap())();
        }
        if stream
            .write_all(std::slice::from_ref(byte))
            .and_then(|()| stream.flush())
            .is_err()
        {
            break;
        }
        // The read timeout (100 ms) paces the trickle.
        let mut buffer = [0u8; 1024];
        match stream.read(&mut buffer) {
            Ok(0) => return String::new(),
            Ok(n) => {
                let mut response = String::from_utf8_lossy(&buffer[..n]).into_owned();
                response.push_str(&read_rest(stream));
                return response;
            }
            Err(e) if timed_out(&e) => {}
            Err(_) => break,
        }
    }
    read_rest(stream)
}

#[test]
fn headers_trickled_past_the_request_header_timeout_get_408_while_others_are_served() {
    let setup = start(
        &[
            Listener::http("slow", "request_header_timeout = \"1s\""),
            Listener::https("slow-tls", "request_header_timeout = \"1s\""),
        ],
        "",
    );
    let started = Instant::now();
    let mut sock = TcpStream::connect(setup.addr("slow")).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let response = slowloris(&mut sock, || {
        assert_eq!(get_status(&setup, "slow", false), 200)
    });
    assert_eq!(status_of(&response), 408, "http: {response:?}");
    assert!(started.elapsed() < Duration::from_secs(20));

    let started = Instant::now();
    let mut tls = tls_connected(
        setup.addr("slow-tls"),
        &setup.ca,
        Duration::from_millis(100),
    );
    let response = slowloris(&mut tls, || {
        assert_eq!(get_status(&setup, "slow-tls", true), 200)
    });
    assert_eq!(status_of(&response), 408, "https: {response:?}");
    assert!(started.elapsed() < Duration::from_secs(20));
    assert_eq!(get_status(&setup, "slow", false), 200);
    assert_eq!(get_status(&setup, "slow-tls", true), 200);
}

/// Sends `head` (a request head without its final blank line) then the blank line, and returns
/// the answer; write errors are ignored (the gateway may close before reading everything).
fn send_head(setup: &Setup, listener: &str, https: bool, head: &str) -> String {
    let request = format!("{head}\r\n");
    let addr = setup.addr(listener);
    if https {
        let mut tls = tls_connected(addr, &setup.ca, Duration::from_secs(30));
        let _ = tls.write_all(request.as_bytes()).and_then(|()| tls.flush());
        read_rest(&mut tls)
    } else {
        let mut sock = TcpStream::connect(addr).unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let _ = sock.write_all(request.as_bytes());
        read_rest(&mut sock)
    }
}

#[test]
fn heads_over_the_fixed_header_limits_get_431() {
    let setup = start(
        &[Listener::http("web", ""), Listener::https("web-tls", "")],
        "",
    );
    let base = "GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n";
    for (listener, https) in [("web", false), ("web-tls", true)] {
        // 128 KiB is the most a request head may take.
        let big = format!("{base}X-Big: {}\r\n", "a".repeat(140 * 1024));
        let response = send_head(&setup, listener, https, &big);
        assert_eq!(status_of(&response), 431, "{listener}: {response:?}");

        // 96 header lines are the most a request may have.
        let many: String = (0..100).map(|i| format!("X-Header-{i}: {i}\r\n")).collect();
        let response = send_head(&setup, listener, https, &format!("{base}{many}"));
        assert_eq!(status_of(&response), 431, "{listener}: {response:?}");

        // Just under both limits is served.
        let under: String = (0..90).map(|i| format!("X-Header-{i}: {i}\r\n")).collect();
        let head = format!("{base}{under}X-Big: {}\r\n", "a".repeat(64 * 1024));
        let response = send_head(&setup, listener, https, &head);
        assert_eq!(status_of(&response), 200, "{listener}");
        assert!(response.contains("x-header-89: 89"), "{listener}");

        assert_eq!(get_status(&setup, listener, https), 200, "{listener}");
    }
}

/// A backend that reads every connection until it closes and never answers; reports each close.
fn sink_backend() -> (SocketAddr, mpsc::Receiver<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let tx = tx.clone();
            std::thread::spawn(move || {
                let mut stream = stream;
                let mut buffer = [0u8; 4096];
                while matches!(stream.read(&mut buffer), Ok(n) if n > 0) {}
                let _ = tx.send(());
            });
        }
    });
    (addr, rx)
}

#[test]
fn a_stalled_request_body_gets_408_and_its_backend_request_is_dropped() {
    let (sink, closed) = sink_backend();
    let to_sink = "paths = [{ path = \"/sink/*\", backend_pool = \"sink\" }]";
    let setup = start(
        &[
            Listener::http("upload", "body_timeout = \"1s\"").rule(to_sink),
            Listener::https("upload-tls", "body_timeout = \"1s\"").rule(to_sink),
        ],
        &format!("\n[[backend_pool]]\nname = \"sink\"\naddresses = [\"{sink}\"]\n"),
    );
    let requests = [
        // A sized body that stops after 10 of its 1000 bytes.
        "POST /sink/upload HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1000\r\n\r\n0123456789",
        // A chunked body that stops after its first chunk.
        "POST /sink/upload HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
    ];
    for (listener, https) in [("upload", false), ("upload-tls", true)] {
        for request in requests {
            let addr = setup.addr(listener);
            let t = Instant::now();
            let response = if https {
                let mut tls = tls_connected(addr, &setup.ca, Duration::from_secs(30));
                tls.write_all(request.as_bytes()).unwrap();
                tls.flush().unwrap();
                // Others are served while this body stalls.
                assert_eq!(get_status(&setup, listener, https), 200);
                read_rest(&mut tls)
            } else {
                let mut sock = TcpStream::connect(addr).unwrap();
                sock.set_read_timeout(Some(Duration::from_secs(30)))
                    .unwrap();
                sock.write_all(request.as_bytes()).unwrap();
                assert_eq!(get_status(&setup, listener, https), 200);
                read_rest(&mut sock)
            };
            // The connection is closed after the answer (read_rest gives up after 30 s).
            assert!(
                t.elapsed() < Duration::from_secs(25),
                "{listener}: the connection stayed open after the 408"
            );
            assert_eq!(status_of(&response), 408, "{listener}: {response:?}");
            assert!(
                response.contains("request body paused"),
                "{listener}: {response:?}"
            );
            closed
                .recv_timeout(Duration::from_secs(30))
                .unwrap_or_else(|_| panic!("{listener}: the backend request was not dropped"));
        }
        assert_eq!(get_status(&setup, listener, https), 200);
    }
}
