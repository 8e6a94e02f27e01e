//! A real HTTPS server on 127.0.0.1 that answers like Key Vault (from recorded responses or
//! synthetic ones), a token source that counts its requests, and the recordings in
//! `../shared/fixtures/keyvault-recordings/`.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use identity::{AccessToken, BoxFuture, IdentityError, TokenCache, TokenSource};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use vault_client::{RetryPolicy, VaultClient, VaultClientConfig};

/// The token every test hands out; no error message may ever contain it.
pub const TOKEN: &str = "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.test-token-do-not-leak.c2lnbmF0dXJl";

/// The vault name the recordings were made against, sanitized by the SDK team.
pub const RECORDED_HOST: &str = "keyvault_name.vault.azure.net";

/// The challenge header real Key Vault sends (as in every JS recording).
pub const REAL_CHALLENGE: &str = "Bearer authorization=\"https://login.windows.net/12345678-1234-1234-1234-123456789012\", resource=\"https://vault.azure.net\"";

// ---------------------------------------------------------------------------------------------
// Recordings

pub const PKCS12_RECORDING: &str = "recording_can_get_a_certificates_secret_in_pkcs_12_format.json";
pub const PEM_RECORDING: &str = "recording_can_get_a_certificates_secret_in_pem_format.json";
pub const SECRET_NOT_FOUND_RECORDING: &str = "recording_can_get_a_secret_non_existing.json";
pub const CERTIFICATE_NOT_FOUND_RECORDING: &str =
    "recording_can_get_a_certificate_non_existing.json";
pub const DISABLED_RECORDING: &str = "recording_cant_get_a_disabled_secret.json";

pub fn recording(name: &str) -> serde_json::Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/fixtures/keyvault-recordings")
        .join(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

/// The entries of a recording whose request is `method` on a URI containing `path_part`.
pub fn entries<'a>(
    recording: &'a serde_json::Value,
    method: &str,
    path_part: &str,
) -> Vec<&'a serde_json::Value> {
    recording["Entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| {
            e["RequestMethod"] == method && e["RequestUri"].as_str().unwrap().contains(path_part)
        })
        .collect()
}

/// A recorded exchange, replayed as the server's response.
pub fn replay(entry: &serde_json::Value) -> Response {
    let mut response = Response::json(
        entry["StatusCode"].as_u64().unwrap() as u16,
        &entry["ResponseBody"],
    );
    if let Some(challenge) = entry["ResponseHeaders"]["WWW-Authenticate"].as_str() {
        response = response.header("WWW-Authenticate", challenge);
    }
    if let Some(retry_after) = entry["ResponseHeaders"]["Retry-After"].as_str() {
        response = response.header("Retry-After", retry_after);
    }
    response
}

/// The path (after the host) of a recorded request URI, without the query.
pub fn recorded_path(entry: &serde_json::Value) -> String {
    let uri = entry["RequestUri"].as_str().unwrap();
    let rest = uri
        .strip_prefix(&format!("https://{RECORDED_HOST}"))
        .unwrap();
    rest.split('?').next().unwrap().to_owned()
}

/// The DER of the `cer` the certificates endpoint returned in a recording.
pub fn recorded_cer(recording: &serde_json::Value) -> Vec<u8> {
    use base64::Engine as _;
    let entry = recording["Entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["ResponseBody"]["cer"].is_string())
        .expect("a GET certificate entry");
    base64::engine::general_purpose::STANDARD
        .decode(entry["ResponseBody"]["cer"].as_str().unwrap())
        .unwrap()
}

// ---------------------------------------------------------------------------------------------
// The server

/// A request as the server received it.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    /// Path and query.
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub at: Instant,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn authorization(&self) -> Option<&str> {
        self.header("authorization")
    }

    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap()
    }
}

/// What the server answers.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Response {
    pub fn json(status: u16, body: &serde_json::Value) -> Response {
        Response {
            status,
            headers: vec![(
                "Content-Type".to_owned(),
                "application/json; charset=utf-8".to_owned(),
            )],
            body: if body.is_null() {
                String::new()
            } else {
                body.to_string()
            },
        }
    }

    pub fn header(mut self, name: &str, value: &str) -> Response {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Key Vault's answer to a request without a token.
    pub fn challenge() -> Response {
        Response::challenge_with(REAL_CHALLENGE)
    }

    /// A 401 with the given `WWW-Authenticate`.
    pub fn challenge_with(www_authenticate: &str) -> Response {
        Response::json(
            401,
            &serde_json::json!({"error": {"code": "Unauthorized", "message": "AKV10000: Request is missing a Bearer or PoP token."}}),
        )
        .header("WWW-Authenticate", www_authenticate)
    }

    /// A Key Vault error body, `innererror` when given.
    pub fn error(status: u16, code: &str, message: &str, inner: Option<&str>) -> Response {
        let mut error = serde_json::json!({"code": code, "message": message});
        if let Some(inner) = inner {
            error["innererror"] = serde_json::json!({"code": inner});
        }
        Response::json(status, &serde_json::json!({ "error": error }))
    }
}

type Handler = dyn Fn(&Request, usize) -> Response + Send + Sync;

/// A test CA and a server certificate it signed for `localhost`, `127.0.0.1` and
/// `myvault.vault.azure.net`.
pub struct TestPki {
    pub ca_pem: String,
    pub server_config: Arc<rustls::ServerConfig>,
}

impl TestPki {
    pub fn new() -> TestPki {
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "vault-client test CA");
        let ca = ca_params.self_signed(&ca_key).unwrap();

        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(vec![
            "localhost".to_owned(),
            "127.0.0.1".to_owned(),
            "myvault.vault.azure.net".to_owned(),
        ])
        .unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, "test vault");
        let leaf = params.signed_by(&key, &ca, &ca_key).unwrap();

        let server_config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![leaf.der().clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )
        .unwrap();
        TestPki {
            ca_pem: ca.pem(),
            server_config: Arc::new(server_config),
        }
    }
}

/// An HTTPS/1.1 server on 127.0.0.1 that records every request and answers with `handler(request,
/// index)` (index counts requests from 0).
pub struct TestVault {
    pub addr: SocketAddr,
    pub ca_pem: String,
    requests: Arc<Mutex<Vec<Request>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TestVault {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TestVault {
    pub async fn start(
        handler: impl Fn(&Request, usize) -> Response + Send + Sync + 'static,
    ) -> TestVault {
        let pki = TestPki::new();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let acceptor = tokio_rustls::TlsAcceptor::from(pki.server_config.clone());
        let handler: Arc<Handler> = Arc::new(handler);
        let recorded = requests.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let acceptor = acceptor.clone();
                let handler = handler.clone();
                let recorded = recorded.clone();
                tokio::spawn(async move {
                    if let Ok(tls) = acceptor.accept(tcp).await {
                        serve(tls, handler, recorded).await;
                    }
                });
            }
        });
        TestVault {
            addr,
            ca_pem: pki.ca_pem,
            requests,
            task,
        }
    }

    /// `127.0.0.1:port`, the entry for `allowed_hosts`.
    pub fn authority(&self) -> String {
        format!("127.0.0.1:{}", self.addr.port())
    }

    /// `https://127.0.0.1:port{path}`.
    pub fn uri(&self, path: &str) -> String {
        format!("https://{}{path}", self.authority())
    }

    pub fn requests(&self) -> Vec<Request> {
        self.requests.lock().unwrap().clone()
    }

    /// A client trusting the server's CA, with the server's host allowed and a fast schedule.
    pub fn client(&self, tokens: Arc<TokenCache>) -> VaultClient {
        VaultClient::new(self.config(tokens)).unwrap()
    }

    pub fn config(&self, tokens: Arc<TokenCache>) -> VaultClientConfig {
        VaultClientConfig {
            tokens,
            extra_root_pem: Some(self.ca_pem.clone().into_bytes()),
            allowed_hosts: vec![self.authority()],
            retry: fast_retry(),
        }
    }
}

/// Millisecond delays, a 5 s timeout.
pub fn fast_retry() -> RetryPolicy {
    RetryPolicy {
        delays: vec![Duration::from_millis(5); 5],
        request_timeout: Duration::from_secs(5),
    }
}

async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    handler: Arc<Handler>,
    recorded: Arc<Mutex<Vec<Request>>>,
) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let end = loop {
            if let Some(pos) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break pos + 4;
            }
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
        buf.drain(..end);
        let mut lines = head.split("\r\n");
        let mut first = lines.next().unwrap_or_default().split(' ');
        let method = first.next().unwrap_or_default().to_owned();
        let target = first.next().unwrap_or_default().to_owned();
        let headers: Vec<(String, String)> = lines
            .filter(|l| !l.is_empty())
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
            .collect();
        let request = Request {
            method,
            target,
            headers,
            at: Instant::now(),
        };
        let index = {
            let mut all = recorded.lock().unwrap();
            all.push(request.clone());
            all.len() - 1
        };
        let response = handler(&request, index);
        let mut out = format!(
            "HTTP/1.1 {} X\r\nContent-Length: {}\r\n",
            response.status,
            response.body.len()
        );
        for (name, value) in &response.headers {
            out.push_str(&format!("{name}: {value}\r\n"));
        }
        out.push_str("\r\n");
        out.push_str(&response.body);
        if stream.write_all(out.as_bytes()).await.is_err() || stream.flush().await.is_err() {
            return;
        }
    }
}

/// A TCP server that accepts connections and never says a word.
pub async fn silent_server() -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((tcp, _)) = listener.accept().await {
            held.push(tcp);
        }
    });
    (addr, task)
}

// ---------------------------------------------------------------------------------------------
// Tokens

/// Hands out [`TOKEN`] and counts how often it was asked, and for which scopes.
pub struct CountingSource {
    pub scopes: Mutex<Vec<String>>,
    pub calls: AtomicUsize,
}

impl CountingSource {
    pub fn new() -> Arc<CountingSource> {
        Arc::new(CountingSource {
            scopes: Mutex::new(Vec::new()),
            calls: AtomicUsize::new(0),
        })
    }

    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

impl TokenSource for CountingSource {
    fn fetch<'a>(&'a self, scope: &'a str) -> BoxFuture<'a, Result<AccessToken, IdentityError>> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.scopes.lock().unwrap().push(scope.to_owned());
        Box::pin(async {
            Ok(AccessToken::new(
                TOKEN,
                SystemTime::now() + Duration::from_secs(3600),
            ))
        })
    }

    fn describe(&self) -> String {
        "test identity 00000000-0000-0000-0000-000000000001".to_owned()
    }
}

pub fn tokens(source: &Arc<CountingSource>) -> Arc<TokenCache> {
    Arc::new(TokenCache::new(source.clone()))
}

/// Neither `Display` nor `Debug` of an error may show the token.
#[track_caller]
pub fn assert_no_token(error: &vault_client::VaultError) {
    let display = error.to_string();
    let debug = format!("{error:?}");
    assert!(
        !display.contains(TOKEN) && !display.contains("test-token-do-not-leak"),
        "{display}"
    );
    assert!(
        !debug.contains(TOKEN) && !debug.contains("test-token-do-not-leak"),
        "{debug}"
    );
    assert!(!display.contains('\n'), "one line: {display}");
}
