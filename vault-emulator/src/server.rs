//! The two HTTP servers (https vault, plain-http identity endpoints), their shared state, the
//! fault-injection and Key Vault header middleware, and the server thread.

use std::any::Any;
use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{Extensions, ServerHandle, ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::middleware::{from_fn, Next};
use actix_web::{web, App, HttpResponse, HttpServer};

use crate::api_error::ApiError;
use crate::state::Vault;
use crate::{
    control, identity, tls, vault_api, EmulatorConfig, EmulatorError, EmulatorInfo, Fault,
    FaultKind,
};

pub(crate) fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// State shared by the servers' workers and the [`EmulatorHandle`](crate::EmulatorHandle).
pub(crate) struct Shared {
    vault: Mutex<Vault>,
    faults: Mutex<Vec<Fault>>,
    pub state_dir: std::path::PathBuf,
    pub vault_url: String,
    pub pending_delay: Duration,
    pub token_lifetime: Duration,
    pub info: EmulatorInfo,
}

impl Shared {
    /// The vault, with due pending certificate operations completed.
    pub fn vault(&self) -> MutexGuard<'_, Vault> {
        let mut vault = self.vault.lock().unwrap_or_else(|e| e.into_inner());
        if vault.settle(vault_api::unix_now_ms()) {
            if let Err(e) = vault.save(&self.state_dir) {
                tracing::error!(error = %e, "cannot save the vault state");
            }
        }
        vault
    }

    /// Runs a change and saves the vault when it succeeds.
    pub fn mutate<R>(
        &self,
        change: impl FnOnce(&mut Vault) -> Result<R, ApiError>,
    ) -> Result<R, ApiError> {
        let mut vault = self.vault();
        let out = change(&mut vault)?;
        vault.save(&self.state_dir).map_err(|e| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalError",
                format!("the emulator could not save its state: {e}"),
            )
        })?;
        Ok(out)
    }

    pub fn token_lifetime_secs(&self) -> i64 {
        i64::try_from(self.token_lifetime.as_secs())
            .unwrap_or(i64::MAX)
            .max(60)
    }

    pub fn retry_after_secs(&self) -> u64 {
        self.pending_delay.as_secs_f64().ceil().max(1.0) as u64
    }

    pub fn add_fault(&self, fault: Fault) {
        self.faults
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(fault);
    }

    pub fn clear_faults(&self) {
        self.faults
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }

    /// The first fault whose prefix matches `path`, counting it down.
    fn take_fault(&self, path: &str) -> Option<FaultKind> {
        if path.starts_with(control::PREFIX) {
            return None;
        }
        let mut faults = self.faults.lock().unwrap_or_else(|e| e.into_inner());
        let index = faults
            .iter()
            .position(|f| path.starts_with(&f.path_prefix))?;
        let kind = faults[index].kind.clone();
        if let Some(count) = faults[index].count.as_mut() {
            *count = count.saturating_sub(1);
            if *count == 0 {
                faults.remove(index);
            }
        }
        Some(kind)
    }
}

/// A duplicate of the connection's socket, so a fault can drop the connection.
struct ConnSocket(Arc<std::net::TcpStream>);

fn on_connect(conn: &dyn Any, ext: &mut Extensions) {
    #[cfg(unix)]
    {
        use std::os::fd::AsFd as _;
        type Tls = actix_tls::accept::rustls_0_23::TlsStream<actix_rt::net::TcpStream>;
        let tcp = match conn.downcast_ref::<Tls>() {
            Some(tls) => Some(tls.get_ref().0),
            None => conn.downcast_ref::<actix_rt::net::TcpStream>(),
        };
        if let Some(Ok(fd)) = tcp.map(|t| t.as_fd().try_clone_to_owned()) {
            ext.insert(ConnSocket(Arc::new(std::net::TcpStream::from(fd))));
        }
    }
    #[cfg(not(unix))]
    let _ = (conn, ext);
}

fn fault_response(status: u16) -> HttpResponse {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let (code, message) = match status.as_u16() {
        429 => ("Throttled", "Request was not processed because too many requests were received. Reason: VaultRequestTypeLimitReached"),
        503 => ("ServiceUnavailable", "The service is temporarily unavailable. Please retry."),
        _ => ("InternalServerError", "An unexpected error occurred (injected by the emulator)."),
    };
    let mut error = ApiError::new(status, code, message);
    error.challenge = None;
    let mut response = actix_web::ResponseError::error_response(&error);
    if status == StatusCode::TOO_MANY_REQUESTS {
        response.headers_mut().insert(
            actix_web::http::header::RETRY_AFTER,
            HeaderValue::from_static("1"),
        );
    }
    response
}

async fn faults_mw(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let fault = req
        .app_data::<web::Data<Shared>>()
        .and_then(|shared| shared.take_fault(req.path()));
    match fault {
        None => Ok(next.call(req).await?.map_into_boxed_body()),
        Some(FaultKind::Delay(delay)) => {
            actix_rt::time::sleep(delay).await;
            Ok(next.call(req).await?.map_into_boxed_body())
        }
        Some(FaultKind::Status(status)) => {
            tracing::info!(path = req.path(), status, "injected fault: status");
            Ok(req.into_response(fault_response(status)))
        }
        Some(FaultKind::DropConnection) => {
            tracing::info!(path = req.path(), "injected fault: dropping the connection");
            if let Some(socket) = req.conn_data::<ConnSocket>() {
                let _ = socket.0.shutdown(std::net::Shutdown::Both);
            }
            Ok(req.into_response(HttpResponse::new(StatusCode::INTERNAL_SERVER_ERROR)))
        }
    }
}

/// Key Vault's usual response headers, and a log line without query, tokens or bodies.
async fn kv_headers(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let client_request_id = req.headers().get("x-ms-client-request-id").cloned();
    let (method, path) = (req.method().clone(), req.path().to_owned());
    let mut res = next.call(req).await?;
    tracing::debug!(%method, %path, status = res.status().as_u16(), "vault request");
    let headers = res.headers_mut();
    for (name, value) in [
        ("cache-control", "no-cache"),
        ("pragma", "no-cache"),
        ("expires", "-1"),
        ("x-ms-keyvault-region", "local"),
        ("x-ms-keyvault-service-version", "1.9.0.0"),
        (
            "strict-transport-security",
            "max-age=31536000;includeSubDomains",
        ),
        ("x-content-type-options", "nosniff"),
    ] {
        headers.insert(
            HeaderName::from_static(name),
            HeaderValue::from_static(value),
        );
    }
    if let Ok(id) = HeaderValue::from_str(&crate::certs::new_uuid()) {
        headers.insert(HeaderName::from_static("x-ms-request-id"), id);
    }
    if let Some(id) = client_request_id {
        headers.insert(HeaderName::from_static("x-ms-client-request-id"), id);
    }
    Ok(res)
}

pub(crate) struct Running {
    pub shared: web::Data<Shared>,
    pub vault_server: ServerHandle,
    pub identity_server: ServerHandle,
    pub system: actix_rt::System,
    pub thread: std::thread::JoinHandle<()>,
}

fn bind(addr: SocketAddr) -> Result<TcpListener, EmulatorError> {
    TcpListener::bind(addr).map_err(|source| EmulatorError::Bind { addr, source })
}

pub(crate) fn start(config: EmulatorConfig) -> Result<Running, EmulatorError> {
    let dir = config.state_dir.clone();
    std::fs::create_dir_all(&dir).map_err(|source| EmulatorError::Io {
        action: "cannot create",
        path: dir.clone(),
        source,
    })?;
    let vault = Vault::load_or_create(&dir)?;
    let tls = tls::setup(&dir, Some(config.bind.ip()))?;
    let vault_listener = bind(config.bind)?;
    let identity_addr = config
        .identity_bind
        .unwrap_or_else(|| SocketAddr::new(config.bind.ip(), 0));
    let identity_listener = bind(identity_addr)?;
    let local = |l: &TcpListener, addr| {
        l.local_addr()
            .map_err(|source| EmulatorError::Bind { addr, source })
    };
    let vault_addr = local(&vault_listener, config.bind)?;
    let identity_addr = local(&identity_listener, identity_addr)?;
    let vault_host = if vault_addr.ip().is_loopback() || vault_addr.ip().is_unspecified() {
        "localhost".to_owned()
    } else {
        match vault_addr.ip() {
            std::net::IpAddr::V6(ip) => format!("[{ip}]"),
            ip => ip.to_string(),
        }
    };
    let identity_ip = if identity_addr.ip().is_unspecified() {
        std::net::IpAddr::from([127, 0, 0, 1])
    } else {
        identity_addr.ip()
    };
    let identity_base = format!(
        "http://{}",
        SocketAddr::new(identity_ip, identity_addr.port())
    );
    let vault_url = format!("https://{vault_host}:{}/", vault_addr.port());
    let info = EmulatorInfo {
        vault_url: vault_url.clone(),
        identity_endpoint: format!("{identity_base}{}", identity::IMDS_PATH),
        app_service_endpoint: format!("{identity_base}{}", identity::APP_SERVICE_PATH),
        app_service_header: vault.app_service_header.clone(),
        control_url: format!("{identity_base}{}/", control::PREFIX),
        ca_file: tls.ca_file.clone(),
        ca_pem: tls.ca_pem.clone(),
        client_id: vault.default_client_id.clone(),
        tenant_id: vault.tenant_id.clone(),
    };
    let shared = web::Data::new(Shared {
        vault: Mutex::new(vault),
        faults: Mutex::new(Vec::new()),
        state_dir: dir,
        vault_url,
        pending_delay: config.pending_delay,
        token_lifetime: config.token_lifetime,
        info,
    });

    let (tx, rx) = std::sync::mpsc::channel();
    let data = shared.clone();
    let server_config = tls.server_config;
    let thread = std::thread::Builder::new()
        .name("vault-emulator".to_owned())
        .spawn(move || {
            let system = actix_rt::System::new();
            system.block_on(async move {
                let vault_data = data.clone();
                let vault_server = HttpServer::new(move || {
                    App::new()
                        .app_data(vault_data.clone())
                        .app_data(web::PayloadConfig::new(4 << 20))
                        .wrap(from_fn(kv_headers))
                        .wrap(from_fn(faults_mw))
                        .configure(control::configure)
                        .configure(vault_api::configure)
                        .default_service(web::to(vault_api::not_found))
                })
                .workers(2)
                .disable_signals()
                .shutdown_timeout(1)
                .on_connect(on_connect)
                .listen_rustls_0_23(vault_listener, server_config);
                let identity_data = data.clone();
                let identity_server = HttpServer::new(move || {
                    App::new()
                        .app_data(identity_data.clone())
                        .wrap(from_fn(faults_mw))
                        .configure(control::configure)
                        .route(identity::IMDS_PATH, web::get().to(identity::imds_token))
                        .route(
                            identity::APP_SERVICE_PATH,
                            web::get().to(identity::app_service_token),
                        )
                })
                .workers(1)
                .disable_signals()
                .shutdown_timeout(1)
                .on_connect(on_connect)
                .listen(identity_listener);
                let (vault_server, identity_server) = match (vault_server, identity_server) {
                    (Ok(v), Ok(i)) => (v.run(), i.run()),
                    (Err(e), _) | (_, Err(e)) => {
                        let _ = tx.send(Err(EmulatorError::Start(e.to_string())));
                        return;
                    }
                };
                let _ = tx.send(Ok((
                    vault_server.handle(),
                    identity_server.handle(),
                    actix_rt::System::current(),
                )));
                let (a, b) = futures_util::future::join(vault_server, identity_server).await;
                if let Err(e) = a.and(b) {
                    tracing::error!(error = %e, "the emulator's server failed");
                }
            });
        })
        .map_err(|e| EmulatorError::Start(e.to_string()))?;
    let (vault_server, identity_server, system) = rx.recv().map_err(|_| {
        EmulatorError::Start("the server thread ended before it started".to_owned())
    })??;
    tracing::info!(vault_url = %shared.info.vault_url, identity_endpoint = %shared.info.identity_endpoint, "vault emulator started");
    Ok(Running {
        shared,
        vault_server,
        identity_server,
        system,
        thread,
    })
}

impl Running {
    pub fn stop(self) {
        let (vault, identity) = (self.vault_server, self.identity_server);
        self.system.arbiter().spawn(async move {
            vault.stop(false).await;
            identity.stop(false).await;
        });
        let _ = self.thread.join();
    }
}
