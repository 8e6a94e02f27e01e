//! Test support: a throw-away PKI, an echoing backend, the gateway binary as a child process, and a
//! real rustls client.
#![allow(dead_code, clippy::unwrap_in_result)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use cert_bundle::Thumbprint;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use rustls_pki_types::pem::PemObject;

/// A test CA and a way to issue leaf certificates from it.
pub struct Pki {
    pub ca_pem: String,
    ca_cert: rcgen::Certificate,
    ca_key: KeyPair,
}

/// A leaf as PEM pieces, with its thumbprint.
pub struct Leaf {
    pub cert_pem: String,
    pub key_pem: String,
    pub thumbprint: Thumbprint,
}

impl Leaf {
    /// A `pem_file` bundle: the leaf, then the CA, then the key.
    pub fn bundle_pem(&self, pki: &Pki) -> String {
        format!("{}{}{}", self.cert_pem, pki.ca_pem, self.key_pem)
    }
}

impl Pki {
    pub fn new() -> Pki {
        let ca_key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "gateway test CA");
        let ca_cert = params.self_signed(&ca_key).unwrap();
        Pki {
            ca_pem: ca_cert.pem(),
            ca_cert,
            ca_key,
        }
    }

    /// A valid leaf for `names`.
    pub fn leaf(&self, names: &[&str]) -> Leaf {
        self.leaf_with(names, |_| {})
    }

    /// A leaf for `names` whose parameters `adjust` may change (validity dates, …).
    pub fn leaf_with(&self, names: &[&str], adjust: impl FnOnce(&mut CertificateParams)) -> Leaf {
        let key = KeyPair::generate().unwrap();
        let mut params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        params.distinguished_name.push(DnType::CommonName, names[0]);
        adjust(&mut params);
        let cert = params.signed_by(&key, &self.ca_cert, &self.ca_key).unwrap();
        Leaf {
            thumbprint: Thumbprint::of(cert.der()),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }

    /// A leaf that expired in 2021.
    pub fn expired_leaf(&self, names: &[&str]) -> Leaf {
        self.leaf_with(names, |p| {
            p.not_before = rcgen::date_time_ymd(2020, 1, 1);
            p.not_after = rcgen::date_time_ymd(2021, 1, 1);
        })
    }
}

/// A backend that answers every request with a description of what it received: the request line,
/// each header as `name: value`, a blank line, then the body; its own address is in the
/// `x-backend` response header. Keeps connections alive.
pub struct EchoBackend {
    pub addr: SocketAddr,
}

impl EchoBackend {
    pub fn start() -> EchoBackend {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                std::thread::spawn(move || {
                    let _ = echo_connection(stream, addr);
                });
            }
        });
        EchoBackend { addr }
    }
}

fn echo_connection(stream: TcpStream, me: SocketAddr) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut writer = stream;
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line)? == 0 {
            return Ok(());
        }
        let mut head = request_line.trim_end().to_owned();
        head.push('\n');
        let mut content_length = 0usize;
        let mut chunked = false;
        loop {
            let mut line = String::new();
            reader.read_line(&mut line)?;
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            let (name, value) = line.split_once(':').unwrap_or((line, ""));
            let (name, value) = (name.trim().to_ascii_lowercase(), value.trim());
            if name == "content-length" {
                content_length = value.parse().unwrap_or(0);
            }
            if name == "transfer-encoding" && value.eq_ignore_ascii_case("chunked") {
                chunked = true;
            }
            head.push_str(&format!("{name}: {value}\n"));
        }
        let body = if chunked {
            read_chunked(&mut reader)?
        } else {
            let mut body = vec![0; content_length];
            reader.read_exact(&mut body)?;
            body
        };
        let mut reply = head.into_bytes();
        reply.push(b'\n');
        reply.extend_from_slice(&body);
        write!(
            writer,
            "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\nx-backend: {me}\r\ncontent-length: {}\r\n\r\n",
            reply.len()
        )?;
        writer.write_all(&reply)?;
        writer.flush()?;
    }
}

fn read_chunked(reader: &mut impl BufRead) -> std::io::Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let mut size_line = String::new();
        reader.read_line(&mut size_line)?;
        let size = usize::from_str_radix(size_line.trim().split(';').next().unwrap_or("0"), 16)
            .unwrap_or(0);
        let mut chunk = vec![0; size + 2];
        reader.read_exact(&mut chunk)?;
        if size == 0 {
            return Ok(body);
        }
        body.extend_from_slice(&chunk[..size]);
    }
}

/// A gateway child process. Killed (SIGKILL) on drop, like a crash.
pub struct Gateway {
    child: Child,
    /// `name -> address` of every bound listener, from the `listening …` lines on stdout.
    pub listeners: Vec<(String, SocketAddr)>,
    /// The admin API's address, from the `admin addr=…` line.
    pub admin: Option<SocketAddr>,
    pub stderr_path: PathBuf,
}

impl Gateway {
    /// Starts `gateway run --config CONFIG` and waits for `ready`. Panics with the gateway's
    /// stderr if it exits first.
    pub fn start(config: &Path, envs: &[(&str, &str)]) -> Gateway {
        Self::try_start(config, envs)
            .unwrap_or_else(|stderr| panic!("gateway did not start:\n{stderr}"))
    }

    /// Like `start`, but returns the gateway's stderr when it exits before `ready`.
    pub fn try_start(config: &Path, envs: &[(&str, &str)]) -> Result<Gateway, String> {
        let stderr_path = config.with_extension(format!("stderr.{}", unique()));
        let stderr = std::fs::File::create(&stderr_path).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_gateway"))
            .args(["run", "--config"])
            .arg(config)
            .envs(envs.iter().copied())
            .env("RUST_LOG", "debug")
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut listeners = Vec::new();
        let mut admin = None;
        loop {
            match rx.recv_timeout(Duration::from_secs(60)) {
                Ok(line) if line == "ready" => break,
                Ok(line) => {
                    if let Some(addr) = line.strip_prefix("admin addr=") {
                        admin = Some(addr.parse().unwrap());
                    }
                    if let Some(rest) = line.strip_prefix("listening ") {
                        let field = |key: &str| {
                            rest.split(' ')
                                .find_map(|kv| kv.strip_prefix(&format!("{key}=")))
                                .unwrap()
                                .to_owned()
                        };
                        listeners.push((field("listener"), field("addr").parse().unwrap()));
                    }
                }
                Err(_) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(std::fs::read_to_string(&stderr_path).unwrap_or_default());
                }
            }
        }
        Ok(Gateway {
            child,
            listeners,
            admin,
            stderr_path,
        })
    }

    pub fn addr(&self, listener: &str) -> SocketAddr {
        self.listeners
            .iter()
            .find(|(name, _)| name == listener)
            .unwrap_or_else(|| panic!("listener {listener} is not bound: {:?}", self.listeners))
            .1
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// Kills the process (SIGKILL) and waits for it, releasing the event log.
    pub fn kill(mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.stderr()
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// Runs the gateway CLI to completion: (success, stdout, stderr).
pub fn gateway_cli(args: &[&str], envs: &[(&str, &str)]) -> (bool, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_gateway"))
        .args(args)
        .envs(envs.iter().copied())
        .output()
        .unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// What a TLS client saw: the leaf's thumbprint, the ALPN protocol and the raw HTTP response.
pub struct Exchange {
    pub leaf: Thumbprint,
    pub alpn: Option<Vec<u8>>,
    pub response: Vec<u8>,
}

impl Exchange {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.response).into_owned()
    }

    pub fn status(&self) -> u16 {
        self.text()
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0)
    }

    /// The value of a response header (case-insensitive name).
    pub fn header(&self, name: &str) -> Option<String> {
        let text = self.text();
        let head = text.split("\r\n\r\n").next()?.to_owned();
        head.lines().skip(1).find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_owned())
        })
    }

    pub fn body(&self) -> String {
        let text = self.text();
        text.split_once("\r\n\r\n")
            .map(|(_, b)| b.to_owned())
            .unwrap_or_default()
    }
}

/// A rustls client that trusts only the test CA.
pub fn client_config(ca_pem: &str, alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pki_types::CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

/// Handshakes with `addr` as `server_name`, sends `request` (raw HTTP/1.1, which should say
/// `Connection: close`) and reads the whole response.
pub fn https_exchange(
    addr: SocketAddr,
    server_name: &str,
    ca_pem: &str,
    request: &[u8],
) -> std::io::Result<Exchange> {
    let config = client_config(ca_pem, &[b"http/1.1"]);
    let name = rustls_pki_types::ServerName::try_from(server_name.to_owned()).unwrap();
    let conn = rustls::ClientConnection::new(config, name).unwrap();
    let sock = TcpStream::connect(addr)?;
    sock.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut tls = rustls::StreamOwned::new(conn, sock);
    tls.write_all(request)?;
    tls.flush()?;
    let mut response = Vec::new();
    match tls.read_to_end(&mut response) {
        Ok(_) => {}
        // A server that closes without close_notify after a complete response is fine here.
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !response.is_empty() => {}
        Err(e) => return Err(e),
    }
    let leaf = tls
        .conn
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|c| Thumbprint::of(c))
        .expect("server sent a certificate");
    Ok(Exchange {
        leaf,
        alpn: tls.conn.alpn_protocol().map(<[u8]>::to_vec),
        response,
    })
}

/// GET `path` over HTTPS with `Connection: close`.
pub fn https_get(addr: SocketAddr, host: &str, ca_pem: &str, path: &str) -> Exchange {
    let request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    https_exchange(addr, host, ca_pem, request.as_bytes()).unwrap()
}

/// Only the TLS handshake: the leaf the server presents for `server_name`.
pub fn served_leaf(addr: SocketAddr, server_name: &str, ca_pem: &str) -> Thumbprint {
    let config = client_config(ca_pem, &[]);
    let name = rustls_pki_types::ServerName::try_from(server_name.to_owned()).unwrap();
    let mut conn = rustls::ClientConnection::new(config, name).unwrap();
    let mut sock = TcpStream::connect(addr).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    while conn.is_handshaking() {
        conn.complete_io(&mut sock).unwrap();
    }
    Thumbprint::of(&conn.peer_certificates().unwrap()[0])
}

/// Writes a config with one https listener (`web`, hostname `localhost`, on 127.0.0.1:0) whose
/// certificate is `certificate` (a TOML inline table), proxying to `backend`.
pub fn write_config(dir: &Path, certificate: &str, backend: SocketAddr) -> PathBuf {
    let config = dir.join("gateway.toml");
    std::fs::write(
        &config,
        format!(
            r#"[state]
dir = "state"

[admin]
bind = "127.0.0.1:0"

[[listener]]
name = "web"
bind = "127.0.0.1:0"
protocol = "https"
hostnames = ["localhost"]
certificate = {certificate}

[[backend_pool]]
name = "app"
addresses = ["{backend}"]

[[rule]]
name = "web-to-app"
listener = "web"
backend_pool = "app"
"#
        ),
    )
    .unwrap();
    config
}

/// The audit log as JSON values, via `gateway audit --json`.
pub fn audit_json(state: &Path, extra: &[&str]) -> Vec<serde_json::Value> {
    let mut args = vec!["audit", "--state", state.to_str().unwrap(), "--json"];
    args.extend_from_slice(extra);
    let (ok, stdout, stderr) = gateway_cli(&args, &[]);
    assert!(ok, "audit failed: {stderr}");
    stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The `kind` of every event, in order.
pub fn kinds(events: &[serde_json::Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| e["kind"].as_str().unwrap().to_owned())
        .collect()
}

/// Sends raw HTTP/1.1 over plain TCP and reads the whole response.
pub fn http_exchange(addr: SocketAddr, request: &str) -> String {
    let mut sock = TcpStream::connect(addr).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    sock.write_all(request.as_bytes()).unwrap();
    let mut response = Vec::new();
    sock.read_to_end(&mut response).unwrap();
    String::from_utf8_lossy(&response).into_owned()
}

/// A handshake restricted to one TLS version, offering `alpn`: the negotiated version and ALPN.
pub fn handshake(
    addr: SocketAddr,
    server_name: &str,
    ca_pem: &str,
    version: &'static rustls::SupportedProtocolVersion,
    alpn: &[&[u8]],
) -> (rustls::ProtocolVersion, Option<Vec<u8>>) {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pki_types::CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[version])
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let name = rustls_pki_types::ServerName::try_from(server_name.to_owned()).unwrap();
    let mut conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let mut sock = TcpStream::connect(addr).unwrap();
    while conn.is_handshaking() {
        conn.complete_io(&mut sock).unwrap();
    }
    (
        conn.protocol_version().unwrap(),
        conn.alpn_protocol().map(<[u8]>::to_vec),
    )
}
