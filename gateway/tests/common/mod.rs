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
    echo_stream(stream, me)
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

    /// Like `start`, with more arguments after `run --config CONFIG` (`--log-format json`).
    pub fn start_with_args(config: &Path, args: &[&str], envs: &[(&str, &str)]) -> Gateway {
        Self::try_start_with_args(config, args, envs)
            .unwrap_or_else(|stderr| panic!("gateway did not start:\n{stderr}"))
    }

    /// Like `start`, but returns the gateway's stderr when it exits before `ready`.
    pub fn try_start(config: &Path, envs: &[(&str, &str)]) -> Result<Gateway, String> {
        Self::try_start_with_args(config, &[], envs)
    }

    /// Like `try_start`, with more arguments after `run --config CONFIG`. `RUST_LOG` is `debug`
    /// unless `envs` sets it.
    pub fn try_start_with_args(
        config: &Path,
        args: &[&str],
        envs: &[(&str, &str)],
    ) -> Result<Gateway, String> {
        let stderr_path = config.with_extension(format!("stderr.{}", unique()));
        let stderr = std::fs::File::create(&stderr_path).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_gateway"))
            .args(["run", "--config"])
            .arg(config)
            .args(args)
            .env("RUST_LOG", "debug")
            .envs(envs.iter().copied())
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

/// The audit log as JSON values, via `gateway audit --json`, in chronological order (oldest
/// first). `gateway audit` prints newest first; this reverses its lines so that tests can assert
/// sequences in the order things happened. `extra` filters still apply (`--limit N` keeps the N
/// most recent, here returned oldest first).
pub fn audit_json(state: &Path, extra: &[&str]) -> Vec<serde_json::Value> {
    let mut args = vec!["audit", "--state", state.to_str().unwrap(), "--json"];
    args.extend_from_slice(extra);
    let (ok, stdout, stderr) = gateway_cli(&args, &[]);
    assert!(ok, "audit failed: {stderr}");
    let mut events: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    events.reverse();
    events
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

// ---- Key Vault rotation support (rotation.rs, zero_downtime.rs) -----------------------------

/// A vault emulator in its own state directory that can be stopped and started again on the same
/// ports with the same contents (Key Vault down, then back).
pub struct TestVault {
    emulator: Option<vault_emulator::EmulatorHandle>,
    vault_addr: SocketAddr,
    identity_addr: SocketAddr,
    info: vault_emulator::EmulatorInfo,
    dir: tempfile::TempDir,
}

impl TestVault {
    pub fn start() -> TestVault {
        let dir = tempfile::tempdir().unwrap();
        let emulator = vault_emulator::Emulator::start(vault_emulator::EmulatorConfig::new(
            dir.path().join("emulator"),
        ))
        .unwrap();
        let info = emulator.info().clone();
        let port_of = |url: &str| -> u16 {
            let rest = url.split("://").nth(1).unwrap();
            let host_port = rest.split('/').next().unwrap();
            host_port.rsplit(':').next().unwrap().parse().unwrap()
        };
        TestVault {
            vault_addr: SocketAddr::from(([127, 0, 0, 1], port_of(&info.vault_url))),
            identity_addr: SocketAddr::from(([127, 0, 0, 1], port_of(&info.identity_endpoint))),
            info,
            emulator: Some(emulator),
            dir,
        }
    }

    /// The running emulator.
    pub fn emulator(&self) -> &vault_emulator::EmulatorHandle {
        self.emulator
            .as_ref()
            .expect("the vault emulator is running")
    }

    pub fn info(&self) -> &vault_emulator::EmulatorInfo {
        &self.info
    }

    /// Stops the vault and its token endpoint: connections are refused until `restart`.
    pub fn stop(&mut self) {
        if let Some(emulator) = self.emulator.take() {
            emulator.stop();
        }
    }

    /// Starts the emulator again on the same ports, with the same CA, contents and token key
    /// (tokens issued before stay valid).
    pub fn restart(&mut self) {
        self.stop();
        let mut config = vault_emulator::EmulatorConfig::new(self.dir.path().join("emulator"));
        config.bind = self.vault_addr;
        config.identity_bind = Some(self.identity_addr);
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            match vault_emulator::Emulator::start(config.clone()) {
                Ok(emulator) => {
                    assert_eq!(emulator.info().vault_url, self.info.vault_url);
                    self.emulator = Some(emulator);
                    return;
                }
                Err(err) if std::time::Instant::now() < deadline => {
                    eprintln!("restarting the vault emulator: {err}; trying again");
                    std::thread::sleep(Duration::from_millis(200));
                }
                Err(err) => panic!("cannot restart the vault emulator: {err}"),
            }
        }
    }

    /// `host:port` of the vault URL.
    pub fn host(&self) -> String {
        self.info
            .vault_url
            .trim_start_matches("https://")
            .trim_end_matches('/')
            .to_owned()
    }

    /// The versionless URI of secret `name`.
    pub fn secret_uri(&self, name: &str) -> String {
        format!("{}secrets/{name}", self.info.vault_url)
    }

    /// Imports `leaf` (with the CA as its chain) as a new version of certificate `name`.
    pub fn import(&self, name: &str, leaf: &Leaf, pki: &Pki) -> String {
        self.emulator()
            .import_certificate(name, leaf.bundle_pem(pki).as_bytes(), None)
            .unwrap()
    }
}

/// One `[[listener]]` of `rotation_config`: https on 127.0.0.1:0 for `localhost`.
pub struct ListenerSpec {
    pub name: String,
    /// The TOML inline table of its certificate.
    pub certificate: String,
    /// More lines of the listener's table (`rotation_schedule = …`).
    pub extra: String,
}

impl ListenerSpec {
    pub fn key_vault(name: &str, secret_uri: &str) -> ListenerSpec {
        ListenerSpec {
            name: name.to_owned(),
            certificate: format!(r#"{{ key_vault_secret_id = "{secret_uri}" }}"#),
            extra: String::new(),
        }
    }

    pub fn pem_file(name: &str, path: &Path) -> ListenerSpec {
        ListenerSpec {
            name: name.to_owned(),
            certificate: format!(r#"{{ pem_file = "{}" }}"#, path.display()),
            extra: String::new(),
        }
    }

    pub fn with(mut self, line: &str) -> ListenerSpec {
        self.extra.push_str(line);
        self.extra.push('\n');
        self
    }
}

/// A gateway config in `dir` (state in `dir/state`) with `listeners`, each proxying to `backend`,
/// reading Key Vault as `client_id` through `vault`'s IMDS-style endpoint. `rotation` is the body
/// of the `[rotation]` section; `admin` the `[admin] bind` address.
pub fn rotation_config(
    dir: &Path,
    vault: &TestVault,
    client_id: &str,
    rotation: &str,
    admin: SocketAddr,
    listeners: &[ListenerSpec],
    backend: SocketAddr,
) -> PathBuf {
    let info = vault.info();
    let mut text = format!(
        r#"[state]
dir = "state"

[admin]
bind = "{admin}"

[rotation]
{rotation}

[identity]
kind = "managed-identity"
endpoint = "{}"
client_id = "{client_id}"

[vault]
ca_file = "{}"
allowed_hosts = ["{}"]

[[backend_pool]]
name = "app"
addresses = ["{backend}"]
"#,
        info.identity_endpoint,
        info.ca_file.display(),
        vault.host()
    );
    for listener in listeners {
        text.push_str(&format!(
            r#"
[[listener]]
name = "{name}"
bind = "127.0.0.1:0"
protocol = "https"
hostnames = ["localhost"]
certificate = {certificate}
{extra}
[[rule]]
name = "{name}-to-app"
listener = "{name}"
backend_pool = "app"
"#,
            name = listener.name,
            certificate = listener.certificate,
            extra = listener.extra,
        ));
    }
    let config = dir.join("gateway.toml");
    std::fs::write(&config, text).unwrap();
    config
}

/// A loopback address with a port that was free a moment ago (for an `[admin] bind` that the
/// `gateway refresh` CLI must find in the config).
pub fn free_loopback_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// One plain HTTP/1.1 request to the admin API: the status and the JSON body.
pub fn admin_request(admin: SocketAddr, method: &str, path: &str) -> (u16, serde_json::Value) {
    let mut sock = TcpStream::connect(admin).unwrap();
    // A refresh waits for Key Vault, whose client retries for half a minute.
    sock.set_read_timeout(Some(Duration::from_secs(180)))
        .unwrap();
    write!(
        sock,
        "{method} {path} HTTP/1.1\r\nHost: {admin}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = Vec::new();
    sock.read_to_end(&mut response).unwrap();
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b)
        .unwrap_or_default();
    let json = serde_json::from_str(body)
        .unwrap_or_else(|e| panic!("{method} {path}: not JSON ({e}): {text}"));
    (status, json)
}

/// `POST /listeners/{listener}/refresh`: the outcome JSON (the request itself must succeed).
#[track_caller]
pub fn admin_refresh(admin: SocketAddr, listener: &str) -> serde_json::Value {
    let (status, body) = admin_request(admin, "POST", &format!("/listeners/{listener}/refresh"));
    assert_eq!(status, 200, "refresh of {listener}: {body}");
    body
}

/// The TLS handshake only: the leaf the server presents, or why the handshake failed.
pub fn try_served_leaf(
    addr: SocketAddr,
    server_name: &str,
    ca_pem: &str,
) -> Result<Thumbprint, String> {
    let config = client_config(ca_pem, &[]);
    let name = rustls_pki_types::ServerName::try_from(server_name.to_owned()).unwrap();
    let mut conn = rustls::ClientConnection::new(config, name).unwrap();
    let mut sock = TcpStream::connect(addr).map_err(|e| format!("connect: {e}"))?;
    sock.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    while conn.is_handshaking() {
        conn.complete_io(&mut sock).map_err(|e| e.to_string())?;
    }
    conn.peer_certificates()
        .and_then(|c| c.first())
        .map(|c| Thumbprint::of(c))
        .ok_or_else(|| "no server certificate".to_owned())
}

/// A TLS connection kept open for several HTTP/1.1 requests.
pub struct KeepAliveConnection {
    stream: BufReader<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>,
    host: String,
    /// The leaf the server presented in the handshake (for a resumed session, the leaf of the
    /// session it resumed).
    pub leaf: Thumbprint,
    /// Whether the handshake resumed an earlier session.
    pub resumed: bool,
}

impl KeepAliveConnection {
    /// Connects and completes the handshake.
    pub fn open(
        addr: SocketAddr,
        host: &str,
        ca_pem: &str,
    ) -> std::io::Result<KeepAliveConnection> {
        Self::open_with(client_config(ca_pem, &[b"http/1.1"]), addr, host)
    }

    /// Like `open`, with a client configuration built once by the caller.
    pub fn open_with(
        config: Arc<rustls::ClientConfig>,
        addr: SocketAddr,
        host: &str,
    ) -> std::io::Result<KeepAliveConnection> {
        let name = rustls_pki_types::ServerName::try_from(host.to_owned()).unwrap();
        let mut conn =
            rustls::ClientConnection::new(config, name).map_err(std::io::Error::other)?;
        let mut sock = TcpStream::connect(addr)?;
        sock.set_read_timeout(Some(Duration::from_secs(30)))?;
        sock.set_nodelay(true)?;
        while conn.is_handshaking() {
            conn.complete_io(&mut sock)?;
        }
        let leaf = conn
            .peer_certificates()
            .and_then(|c| c.first())
            .map(|c| Thumbprint::of(c))
            .ok_or_else(|| std::io::Error::other("no server certificate"))?;
        let resumed = conn.handshake_kind() == Some(rustls::HandshakeKind::Resumed);
        Ok(KeepAliveConnection {
            stream: BufReader::new(rustls::StreamOwned::new(conn, sock)),
            host: host.to_owned(),
            leaf,
            resumed,
        })
    }

    /// GET `path` on this connection (keep-alive): the status and the body.
    pub fn get(&mut self, path: &str) -> std::io::Result<(u16, String)> {
        let request = format!("GET {path} HTTP/1.1\r\nHost: {}\r\n\r\n", self.host);
        let stream = self.stream.get_mut();
        stream.write_all(request.as_bytes())?;
        stream.flush()?;
        let mut status_line = String::new();
        if self.stream.read_line(&mut status_line)? == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the server closed the connection",
            ));
        }
        let status: u16 = status_line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| std::io::Error::other(format!("bad status line {status_line:?}")))?;
        let mut content_length = None;
        let mut chunked = false;
        loop {
            let mut line = String::new();
            if self.stream.read_line(&mut line)? == 0 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "the server closed the connection in the headers",
                ));
            }
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            let (name, value) = line.split_once(':').unwrap_or((line, ""));
            let (name, value) = (name.trim().to_ascii_lowercase(), value.trim());
            if name == "content-length" {
                content_length = value.parse::<usize>().ok();
            }
            if name == "transfer-encoding" && value.eq_ignore_ascii_case("chunked") {
                chunked = true;
            }
        }
        let body = if chunked {
            read_chunked(&mut self.stream)?
        } else {
            let mut body = vec![0; content_length.unwrap_or(0)];
            self.stream.read_exact(&mut body)?;
            body
        };
        Ok((status, String::from_utf8_lossy(&body).into_owned()))
    }
}

/// Polls `check` every 100 ms until it returns `Some` or `within` has passed; panics naming `what`.
#[track_caller]
pub fn wait_for<T>(what: &str, within: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = std::time::Instant::now() + within;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out after {within:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

// ---- Routing support (routing.rs) ------------------------------------------------------------

/// An echoing backend (like `EchoBackend`) that can be stopped (listener closed, open connections
/// shut down: connections are refused) and started again on the same port.
pub struct SwitchableBackend {
    pub addr: SocketAddr,
    running: std::sync::Mutex<Option<SwitchState>>,
}

struct SwitchState {
    stop: Arc<std::sync::atomic::AtomicBool>,
    connections: Arc<std::sync::Mutex<Vec<TcpStream>>>,
}

impl SwitchableBackend {
    pub fn start() -> SwitchableBackend {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let backend = SwitchableBackend {
            addr,
            running: std::sync::Mutex::new(None),
        };
        backend.serve(listener);
        backend
    }

    fn serve(&self, listener: TcpListener) {
        let state = SwitchState {
            stop: Arc::default(),
            connections: Arc::default(),
        };
        let (stop, connections, addr) = (state.stop.clone(), state.connections.clone(), self.addr);
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                if stop.load(std::sync::atomic::Ordering::SeqCst) {
                    break;
                }
                if let Ok(clone) = stream.try_clone() {
                    connections.lock().unwrap().push(clone);
                }
                std::thread::spawn(move || {
                    let _ = echo_connection(stream, addr);
                });
            }
        });
        *self.running.lock().unwrap() = Some(state);
    }

    /// Closes the listening socket and every open connection.
    pub fn stop(&self) {
        let Some(state) = self.running.lock().unwrap().take() else {
            return;
        };
        state.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr); // wakes the accept loop, which then exits
        for connection in state.connections.lock().unwrap().drain(..) {
            let _ = connection.shutdown(std::net::Shutdown::Both);
        }
        // Wait until the port refuses connections.
        wait_for("the backend to stop", Duration::from_secs(10), || {
            TcpStream::connect(self.addr).is_err().then_some(())
        });
    }

    /// Listens on the same port again.
    pub fn restart(&self) {
        let listener = wait_for(
            "the backend port to be free",
            Duration::from_secs(20),
            || TcpListener::bind(self.addr).ok(),
        );
        self.serve(listener);
    }
}

/// An https echoing backend: `echo_connection`'s answers over TLS with `leaf`.
pub struct TlsEchoBackend {
    pub addr: SocketAddr,
}

impl TlsEchoBackend {
    pub fn start(leaf: &Leaf) -> TlsEchoBackend {
        let certs: Vec<_> =
            rustls_pki_types::CertificateDer::pem_slice_iter(leaf.cert_pem.as_bytes())
                .map(|c| c.unwrap())
                .collect();
        let key = rustls_pki_types::PrivateKeyDer::from_pem_slice(leaf.key_pem.as_bytes()).unwrap();
        let config = Arc::new(
            rustls::ServerConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .unwrap(),
        );
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let config = config.clone();
                std::thread::spawn(move || {
                    let conn = rustls::ServerConnection::new(config).unwrap();
                    let tls = rustls::StreamOwned::new(conn, stream);
                    let _ = echo_stream(tls, addr);
                });
            }
        });
        TlsEchoBackend { addr }
    }
}

/// The echo backend's answer loop over any stream (plain TCP or TLS).
fn echo_stream<S: Read + Write>(stream: S, me: SocketAddr) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream);
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
        let writer = reader.get_mut();
        write!(
            writer,
            "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\nx-backend: {me}\r\ncontent-length: {}\r\n\r\n",
            reply.len()
        )?;
        writer.write_all(&reply)?;
        writer.flush()?;
    }
}

/// A WebSocket echo server: answers the upgrade, then sends every data frame back (unmasked),
/// prefixed with `echo:`; answers a close with a close.
pub struct WsEchoBackend {
    pub addr: SocketAddr,
}

impl WsEchoBackend {
    pub fn start() -> WsEchoBackend {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                std::thread::spawn(move || {
                    let _ = ws_echo_connection(stream);
                });
            }
        });
        WsEchoBackend { addr }
    }
}

fn ws_echo_connection(stream: TcpStream) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut writer = stream;
    let mut key = None;
    let mut host = String::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            match name.trim().to_ascii_lowercase().as_str() {
                "sec-websocket-key" => key = Some(value.trim().to_owned()),
                "host" => host = value.trim().to_owned(),
                _ => {}
            }
        }
    }
    let Some(key) = key else {
        writer.write_all(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n")?;
        return Ok(());
    };
    let accept = actix_http::ws::hash_key(key.as_bytes());
    write!(
        writer,
        "HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\nsec-websocket-accept: {}\r\nx-backend-host: {host}\r\n\r\n",
        String::from_utf8_lossy(&accept)
    )?;
    loop {
        let (opcode, payload) = ws_read_frame(&mut reader)?;
        if opcode == 8 {
            ws_write_frame(&mut writer, 8, &payload, false)?;
            return Ok(());
        }
        let mut reply = b"echo:".to_vec();
        reply.extend_from_slice(&payload);
        ws_write_frame(&mut writer, opcode, &reply, false)?;
    }
}

/// Reads one WebSocket frame (unmasking it if masked): its opcode and payload.
pub fn ws_read_frame(reader: &mut impl Read) -> std::io::Result<(u8, Vec<u8>)> {
    let mut head = [0u8; 2];
    reader.read_exact(&mut head)?;
    let opcode = head[0] & 0x0f;
    let masked = head[1] & 0x80 != 0;
    let mut len = u64::from(head[1] & 0x7f);
    if len == 126 {
        let mut ext = [0u8; 2];
        reader.read_exact(&mut ext)?;
        len = u64::from(u16::from_be_bytes(ext));
    } else if len == 127 {
        let mut ext = [0u8; 8];
        reader.read_exact(&mut ext)?;
        len = u64::from_be_bytes(ext);
    }
    let mut mask = [0u8; 4];
    if masked {
        reader.read_exact(&mut mask)?;
    }
    let mut payload = vec![0u8; len as usize];
    reader.read_exact(&mut payload)?;
    if masked {
        for (i, byte) in payload.iter_mut().enumerate() {
            *byte ^= mask[i % 4];
        }
    }
    Ok((opcode, payload))
}

/// Writes one final WebSocket frame; `masked` for a client.
pub fn ws_write_frame(
    writer: &mut impl Write,
    opcode: u8,
    payload: &[u8],
    masked: bool,
) -> std::io::Result<()> {
    let mut frame = vec![0x80 | opcode];
    let mask_bit = if masked { 0x80 } else { 0 };
    match payload.len() {
        n if n < 126 => frame.push(mask_bit | n as u8),
        n if n <= 0xffff => {
            frame.push(mask_bit | 126);
            frame.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            frame.push(mask_bit | 127);
            frame.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    if masked {
        let mask = [0x37, 0xfa, 0x21, 0x3d];
        frame.extend_from_slice(&mask);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    } else {
        frame.extend_from_slice(payload);
    }
    writer.write_all(&frame)?;
    writer.flush()
}

/// Opens a TLS connection to `addr` as `host` (HTTP/1.1), for requests written by hand.
pub fn tls_stream(
    addr: SocketAddr,
    host: &str,
    ca_pem: &str,
) -> rustls::StreamOwned<rustls::ClientConnection, TcpStream> {
    let config = client_config(ca_pem, &[b"http/1.1"]);
    let name = rustls_pki_types::ServerName::try_from(host.to_owned()).unwrap();
    let conn = rustls::ClientConnection::new(config, name).unwrap();
    let sock = TcpStream::connect(addr).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    rustls::StreamOwned::new(conn, sock)
}

/// Reads an HTTP response head (through the blank line) byte by byte, leaving the rest unread.
pub fn read_head(reader: &mut impl Read) -> std::io::Result<String> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        reader.read_exact(&mut byte)?;
        head.push(byte[0]);
    }
    Ok(String::from_utf8_lossy(&head).into_owned())
}
