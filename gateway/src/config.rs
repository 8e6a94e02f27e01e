//! The TOML configuration (DESIGN §6): parsing with errors that name the key and its line, and the
//! checks that every reference between sections resolves.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// Why a configuration could not be used. Every message is one line that names the file, and where
/// it can, the key and the line.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}:{line}: {message}")]
    Syntax {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub state: StateConfig,
    #[serde(default)]
    pub identity: Option<IdentityConfig>,
    #[serde(default)]
    pub vault: VaultConfig,
    #[serde(default)]
    pub rotation: RotationConfig,
    #[serde(default)]
    pub admin: AdminConfig,
    #[serde(default, rename = "listener")]
    pub listeners: Vec<ListenerConfig>,
    #[serde(default, rename = "backend_pool")]
    pub backend_pools: Vec<BackendPoolConfig>,
    #[serde(default, rename = "rule")]
    pub rules: Vec<RuleConfig>,
    /// Request limits for every listener (`[limits]`); a listener may set its own.
    #[serde(default)]
    pub limits: LimitsConfig,
    /// The directory of the config file; relative paths in the config are resolved against it so
    /// that `gateway run --config /etc/gw/gateway.toml` behaves the same from any working directory.
    #[serde(skip)]
    pub base_dir: PathBuf,
    #[serde(skip)]
    pub path: PathBuf,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateConfig {
    pub dir: PathBuf,
}

/// How the gateway gets tokens for Key Vault (`[identity]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityConfig {
    pub kind: IdentityKind,
    /// A user-assigned managed identity's client id; the app registration's client id for
    /// `workload-identity` and `client-secret` (else `AZURE_CLIENT_ID`).
    pub client_id: Option<String>,
    /// A user-assigned managed identity by object id instead of client id.
    pub object_id: Option<String>,
    /// A user-assigned managed identity by Azure resource id.
    pub msi_res_id: Option<String>,
    /// The IMDS token endpoint (`managed-identity`), for an emulator or a proxy-less sidecar.
    pub endpoint: Option<String>,
    /// The Entra tenant for `client-secret` and `workload-identity` (else `AZURE_TENANT_ID`).
    pub tenant_id: Option<String>,
    /// The Entra authority for `client-secret` and `workload-identity` (else `AZURE_AUTHORITY_HOST`).
    pub authority_host: Option<String>,
    /// The environment variable holding the client secret (`client-secret`); the secret itself
    /// never goes in the config file.
    pub client_secret_env: Option<String>,
    /// The environment variable holding a fixed token (`static`, development only).
    pub token_env: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum IdentityKind {
    ManagedIdentity,
    WorkloadIdentity,
    ClientSecret,
    AppService,
    Static,
}

/// Key Vault client settings (`[vault]`): the development allowance for an emulator.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VaultConfig {
    /// A PEM CA certificate to trust for vault hosts, in addition to the public roots.
    pub ca_file: Option<PathBuf>,
    /// `host:port` vault hosts allowed beyond the Azure clouds' vault suffixes.
    #[serde(default)]
    pub allowed_hosts: Vec<String>,
}

/// When Key Vault listeners are checked (`[rotation]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RotationConfig {
    /// A cron expression with a seconds field (`sec min hour day-of-month month day-of-week`).
    #[serde(default = "default_schedule")]
    pub schedule: String,
    /// Each instance waits a fixed random part of this after every tick (`5m`), so a fleet does
    /// not poll Key Vault at the same second.
    #[serde(default = "default_jitter")]
    pub jitter: String,
    /// `keep-serving` or `disable-listener`: what a configuration error (403, 404, disabled
    /// secret) does to the listener.
    #[serde(default = "default_on_config_error")]
    pub on_config_error: String,
    /// Warn (and record an event, at most daily) when the served certificate expires within this
    /// and Key Vault has no newer version.
    #[serde(default = "default_expiry_warning")]
    pub expiry_warning: String,
}

fn default_schedule() -> String {
    rotator::DEFAULT_SCHEDULE.to_owned()
}
fn default_jitter() -> String {
    "5m".to_owned()
}
fn default_on_config_error() -> String {
    "keep-serving".to_owned()
}
fn default_expiry_warning() -> String {
    "14d".to_owned()
}

impl Default for RotationConfig {
    fn default() -> Self {
        RotationConfig {
            schedule: default_schedule(),
            jitter: default_jitter(),
            on_config_error: default_on_config_error(),
            expiry_warning: default_expiry_warning(),
        }
    }
}

/// The admin API (`[admin]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// Loopback by default: the admin API can rotate certificates and read the audit log.
    #[serde(default = "default_admin_bind")]
    pub bind: SocketAddr,
}

fn default_admin_bind() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9090))
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            bind: default_admin_bind(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Http,
    Https,
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::Http => "http",
            Protocol::Https => "https",
        })
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerConfig {
    pub name: String,
    pub bind: SocketAddr,
    pub protocol: Protocol,
    #[serde(default)]
    pub hostnames: Vec<String>,
    pub certificate: Option<CertificateSource>,
    /// For an `http` listener: the name of the `https` listener to redirect every request to.
    pub redirect_to: Option<String>,
    /// Redirect every request to this absolute URL (an external site) instead of routing it.
    pub redirect_url: Option<String>,
    /// The status of a `redirect_to` / `redirect_url` redirect (default: 308).
    pub redirect_type: Option<RedirectType>,
    /// Whether a redirect keeps the request's path (default true).
    pub include_path: Option<bool>,
    /// Whether a redirect keeps the request's query string (default true).
    pub include_query: Option<bool>,
    /// The largest request body this listener accepts (`"100MiB"`), else `[limits]`'s.
    pub max_request_body: Option<String>,
    /// Connections open at once on this listener's address, else `[limits]`'s.
    pub max_connections: Option<usize>,
    /// TLS handshakes in progress at once on this listener's address (https), else `[limits]`'s.
    pub max_handshakes_in_flight: Option<usize>,
    /// How long a TLS handshake may take, from accept (https), else `[limits]`'s.
    pub handshake_timeout: Option<String>,
    /// How long a client may take to send its request headers, else `[limits]`'s.
    pub request_header_timeout: Option<String>,
    /// The longest pause in a request body, else `[limits]`'s.
    pub body_timeout: Option<String>,
    /// This listener's own check schedule, instead of `[rotation] schedule`.
    pub rotation_schedule: Option<String>,
}

/// Where a listener's certificate comes from.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged, deny_unknown_fields)]
pub enum CertificateSource {
    Pfx {
        pfx_file: PathBuf,
        /// The name of the environment variable holding the PFX password (never the password).
        password_env: Option<String>,
    },
    Pem {
        pem_file: PathBuf,
    },
    KeyVault {
        /// `https://{vault}.vault.azure.net/secrets/{name}[/{version}]` (or `/certificates/…`).
        key_vault_secret_id: String,
    },
}

impl CertificateSource {
    pub fn is_key_vault(&self) -> bool {
        matches!(self, CertificateSource::KeyVault { .. })
    }
}

impl fmt::Debug for CertificateSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

impl fmt::Display for CertificateSource {
    /// The form recorded in the event log as the listener's source: a description, no secrets.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CertificateSource::Pfx { pfx_file, .. } => write!(f, "pfx_file:{}", pfx_file.display()),
            CertificateSource::Pem { pem_file } => write!(f, "pem_file:{}", pem_file.display()),
            CertificateSource::KeyVault {
                key_vault_secret_id,
            } => f.write_str(key_vault_secret_id),
        }
    }
}

/// The status a redirect answers with, named as Application Gateway names its redirect types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RedirectType {
    /// 301 Moved Permanently.
    Permanent,
    /// 302 Found.
    Found,
    /// 303 See Other.
    SeeOther,
    /// 307 Temporary Redirect.
    Temporary,
    /// 308 Permanent Redirect (method and body kept): the default.
    PermanentRedirect,
}

impl RedirectType {
    pub fn status(self) -> u16 {
        match self {
            RedirectType::Permanent => 301,
            RedirectType::Found => 302,
            RedirectType::SeeOther => 303,
            RedirectType::Temporary => 307,
            RedirectType::PermanentRedirect => 308,
        }
    }
}

/// Limits for every listener (`[limits]`); each but the fixed header limits may be set per
/// listener too.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// The largest request body (`"100MiB"`); unlimited when unset.
    pub max_request_body: Option<String>,
    /// Connections open at once per bind address (default 10000); beyond it new connections wait
    /// in the kernel's accept backlog.
    pub max_connections: Option<usize>,
    /// TLS handshakes in progress at once per https bind address (default 256); beyond it accepted
    /// connections wait for a slot.
    pub max_handshakes_in_flight: Option<usize>,
    /// How long a TLS handshake may take from accept, waiting for a slot included (default `10s`).
    pub handshake_timeout: Option<String>,
    /// How long a client may take to send the headers of its first request (default `10s`); then
    /// 408 and the connection is closed.
    pub request_header_timeout: Option<String>,
    /// The longest pause between two pieces of a request body (default `30s`); then 408, the
    /// connection is closed and the backend request abandoned.
    pub body_timeout: Option<String>,
}

pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
pub const DEFAULT_MAX_HANDSHAKES_IN_FLIGHT: usize = 256;
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_REQUEST_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(30);

/// The connection-level limits of one bind address, resolved from a listener and `[limits]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    pub max_connections: usize,
    pub max_handshakes_in_flight: usize,
    pub handshake_timeout: Duration,
    pub request_header_timeout: Duration,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackendPoolConfig {
    pub name: String,
    pub addresses: Vec<String>,
    /// The port of addresses that do not name one (default 80 for http, 443 for https).
    pub port: Option<u16>,
    /// `http` (default) or `https` (end-to-end TLS) to the backend.
    #[serde(default = "default_backend_protocol")]
    pub protocol: Protocol,
    /// PEM CA certificates that backend certificates must chain to (https; else the public roots).
    pub trusted_ca_file: Option<PathBuf>,
    /// The name sent as SNI and checked against the backend certificate (https; default: the
    /// `host_header`, else the member's host).
    pub sni: Option<String>,
    /// How long a backend may take to send its response headers (default `60s`); then 504.
    pub request_timeout: Option<String>,
    /// The `Host` header sent to the backend instead of the client's.
    pub host_header: Option<String>,
    /// Send the member's own host as `Host` instead of the client's.
    #[serde(default)]
    pub pick_host_from_backend: bool,
    /// How long requests already sent to a member its probe took out of rotation may still take
    /// (default: unbounded, they finish).
    pub drain_timeout: Option<String>,
    /// The active health probe of the pool's members.
    pub probe: Option<ProbeConfig>,
}

fn default_backend_protocol() -> Protocol {
    Protocol::Http
}

/// `[backend_pool.probe]`: an HTTP GET to every member every `interval`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProbeConfig {
    #[serde(default = "default_probe_path")]
    pub path: String,
    #[serde(default = "default_probe_interval")]
    pub interval: String,
    #[serde(default = "default_probe_timeout")]
    pub timeout: String,
    /// Failed probes in a row that take a member out of rotation; one success brings it back.
    #[serde(default = "default_unhealthy_threshold")]
    pub unhealthy_threshold: u32,
    /// The statuses that count as healthy: `"200-399"`, `"200"`, `"200-299,404"`.
    #[serde(default = "default_healthy_status")]
    pub healthy_status: String,
}

fn default_probe_path() -> String {
    "/".to_owned()
}
fn default_probe_interval() -> String {
    "30s".to_owned()
}
fn default_probe_timeout() -> String {
    "30s".to_owned()
}
fn default_unhealthy_threshold() -> u32 {
    3
}
fn default_healthy_status() -> String {
    "200-399".to_owned()
}

impl ProbeConfig {
    pub fn interval(&self) -> Result<Duration, String> {
        parse_duration(&self.interval).map_err(|e| format!("interval: {e}"))
    }
    pub fn timeout(&self) -> Result<Duration, String> {
        parse_duration(&self.timeout).map_err(|e| format!("timeout: {e}"))
    }
    pub fn healthy_status(&self) -> Result<Vec<(u16, u16)>, String> {
        parse_status_ranges(&self.healthy_status)
            .map_err(|e| format!("healthy_status `{}` {e}", self.healthy_status))
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    pub name: String,
    pub listener: String,
    /// The pool of requests that no entry of `paths` matches.
    pub backend_pool: String,
    /// Orders the rules of one listener: lower first (see README, "Routing").
    #[serde(default)]
    pub priority: u32,
    /// Path-based routing: the longest matching entry wins.
    #[serde(default)]
    pub paths: Vec<PathRuleConfig>,
}

/// One `paths` entry of a rule: a path pattern and where its requests go.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PathRuleConfig {
    /// `/exact` or `/prefix/*`.
    pub path: String,
    pub backend_pool: Option<String>,
    /// Redirect matching requests to this absolute URL instead.
    pub redirect_url: Option<String>,
    pub redirect_type: Option<RedirectType>,
    pub include_path: Option<bool>,
    pub include_query: Option<bool>,
}

impl Config {
    /// Reads, parses and checks a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Config::parse(path, &text)
    }

    /// Parses and checks config text; `path` is used for messages and to resolve relative paths.
    pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
        let mut config: Config = toml::from_str(text).map_err(|err| {
            // toml's own Display spans several lines with a source excerpt; keep its first
            // sentence so that the error stays on one line.
            let message = err
                .message()
                .lines()
                .next()
                .unwrap_or("invalid TOML")
                .to_owned();
            ConfigError::Syntax {
                path: path.to_owned(),
                line: line_of_span(text, err.span()).unwrap_or(1),
                message,
            }
        })?;
        config.path = path.to_owned();
        config.base_dir = path
            .parent()
            .map(Path::to_owned)
            .unwrap_or_else(|| PathBuf::from("."));
        config.resolve_paths();
        config.check().map_err(|message| ConfigError::Invalid {
            path: path.to_owned(),
            message,
        })?;
        Ok(config)
    }

    fn resolve_paths(&mut self) {
        let base = self.base_dir.clone();
        let resolve = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        resolve(&mut self.state.dir);
        for pool in &mut self.backend_pools {
            if let Some(ca) = &mut pool.trusted_ca_file {
                resolve(ca);
            }
        }
        if let Some(ca_file) = &mut self.vault.ca_file {
            resolve(ca_file);
        }
        for listener in &mut self.listeners {
            match &mut listener.certificate {
                Some(CertificateSource::Pfx { pfx_file, .. }) => resolve(pfx_file),
                Some(CertificateSource::Pem { pem_file }) => resolve(pem_file),
                Some(CertificateSource::KeyVault { .. }) | None => {}
            }
        }
    }

    /// Cross-references between sections. Returns the first problem as one line.
    fn check(&self) -> Result<(), String> {
        self.rotation_policy()
            .map_err(|e| format!("[rotation] {e}"))?;
        rotator::parse_duration(&self.rotation.jitter)
            .map_err(|e| format!("[rotation] jitter: {e}"))?;
        rotator::Schedule::parse(&self.rotation.schedule, std::time::Duration::ZERO)
            .map_err(|e| format!("[rotation] {e}"))?;
        for listener in &self.listeners {
            if let Some(schedule) = &listener.rotation_schedule {
                rotator::Schedule::parse(schedule, std::time::Duration::ZERO)
                    .map_err(|e| format!("listener `{}`: rotation_schedule: {e}", listener.name))?;
                if !matches!(
                    listener.certificate,
                    Some(CertificateSource::KeyVault { .. })
                ) {
                    return Err(format!(
                        "listener `{}` has a rotation_schedule but its certificate is not from Key Vault",
                        listener.name
                    ));
                }
            }
        }
        let mut names = BTreeSet::new();
        for listener in &self.listeners {
            if listener.name.is_empty() {
                return Err("a [[listener]] has an empty name".into());
            }
            if !names.insert(listener.name.as_str()) {
                return Err(format!("listener `{}` is defined twice", listener.name));
            }
            if listener.hostnames.len() > MAX_HOSTNAMES {
                return Err(format!(
                    "listener `{}` lists {} hostnames; at most {MAX_HOSTNAMES} are allowed (add another listener on the same bind)",
                    listener.name,
                    listener.hostnames.len()
                ));
            }
            let mut own = BTreeSet::new();
            for hostname in &listener.hostnames {
                check_hostname(hostname).map_err(|why| {
                    format!("listener `{}`: hostname `{hostname}` {why}", listener.name)
                })?;
                if !own.insert(hostname.to_ascii_lowercase()) {
                    return Err(format!(
                        "listener `{}` lists hostname `{hostname}` twice",
                        listener.name
                    ));
                }
            }
            if listener.redirect_to.is_some() && listener.redirect_url.is_some() {
                return Err(format!(
                    "listener `{}` has both `redirect_to` and `redirect_url`; choose one",
                    listener.name
                ));
            }
            if let Some(url) = &listener.redirect_url {
                check_redirect_url(url).map_err(|why| {
                    format!("listener `{}`: redirect_url `{url}` {why}", listener.name)
                })?;
            }
            let redirects = listener.redirect_to.is_some() || listener.redirect_url.is_some();
            if !redirects
                && (listener.redirect_type.is_some()
                    || listener.include_path.is_some()
                    || listener.include_query.is_some())
            {
                return Err(format!(
                    "listener `{}` sets redirect_type/include_path/include_query but has no `redirect_to` or `redirect_url`",
                    listener.name
                ));
            }
            if let Some(size) = &listener.max_request_body {
                parse_size(size).map_err(|why| {
                    format!(
                        "listener `{}`: max_request_body `{size}` {why}",
                        listener.name
                    )
                })?;
            }
            if let Some(CertificateSource::KeyVault {
                key_vault_secret_id,
            }) = &listener.certificate
            {
                vault_client::SecretId::parse_with_allowed_hosts(
                    key_vault_secret_id,
                    &self.vault.allowed_hosts,
                )
                .map_err(|err| {
                    format!("listener `{}`: key_vault_secret_id: {err}", listener.name)
                })?;
                if self.identity.is_none() {
                    return Err(format!(
                        "listener `{}` reads its certificate from Key Vault, which needs an [identity] section",
                        listener.name
                    ));
                }
            }
            match (listener.protocol, &listener.certificate) {
                (Protocol::Https, None) => {
                    return Err(format!(
                        "listener `{}` is https but has no `certificate`",
                        listener.name
                    ))
                }
                (Protocol::Http, Some(_)) => {
                    return Err(format!(
                        "listener `{}` is http; a `certificate` needs protocol = \"https\"",
                        listener.name
                    ))
                }
                _ => {}
            }
        }
        let listener_by_name: BTreeMap<&str, &ListenerConfig> = self
            .listeners
            .iter()
            .map(|l| (l.name.as_str(), l))
            .collect();

        // Listeners sharing an address must all be https with distinct hostnames (multi-site),
        // since an http listener cannot tell sites apart before it has read a request.
        let mut by_bind: BTreeMap<SocketAddr, Vec<&ListenerConfig>> = BTreeMap::new();
        for listener in &self.listeners {
            by_bind.entry(listener.bind).or_default().push(listener);
        }
        for (bind, group) in &by_bind {
            if group.len() < 2 {
                continue;
            }
            // Port 0 asks the OS for a free port per listener: nothing is shared.
            if bind.port() == 0 {
                continue;
            }
            if group.iter().any(|l| l.protocol == Protocol::Http) {
                return Err(format!(
                    "listeners {} share bind {bind}; only https listeners with distinct hostnames may share an address",
                    quoted_names(group)
                ));
            }
            let mut seen: BTreeMap<String, &str> = BTreeMap::new();
            let mut catch_all: Option<&str> = None;
            for listener in group {
                if listener.hostnames.is_empty() {
                    if let Some(other) = catch_all.replace(&listener.name) {
                        return Err(format!(
                            "listeners `{other}` and `{}` share bind {bind} and neither lists hostnames",
                            listener.name
                        ));
                    }
                }
                for hostname in &listener.hostnames {
                    if let Some(other) = seen.insert(hostname.to_ascii_lowercase(), &listener.name)
                    {
                        return Err(format!(
                            "hostname `{hostname}` is claimed by both listener `{other}` and listener `{}` on {bind}",
                            listener.name
                        ));
                    }
                }
            }
        }

        if let Some(size) = &self.limits.max_request_body {
            parse_size(size).map_err(|why| format!("[limits] max_request_body `{size}` {why}"))?;
        }
        self.check_limits()?;

        let mut pools = BTreeSet::new();
        for pool in &self.backend_pools {
            if !pools.insert(pool.name.as_str()) {
                return Err(format!("backend_pool `{}` is defined twice", pool.name));
            }
            check_pool(pool).map_err(|why| format!("backend_pool `{}`: {why}", pool.name))?;
        }

        let mut routed = BTreeSet::new();
        let mut rule_names = BTreeSet::new();
        let mut priorities: BTreeMap<(&str, u32), &str> = BTreeMap::new();
        for rule in &self.rules {
            if !rule_names.insert(rule.name.as_str()) {
                return Err(format!("rule `{}` is defined twice", rule.name));
            }
            let Some(listener) = listener_by_name.get(rule.listener.as_str()) else {
                return Err(format!(
                    "rule `{}` refers to listener `{}`, which is not defined",
                    rule.name, rule.listener
                ));
            };
            if !pools.contains(rule.backend_pool.as_str()) {
                return Err(format!(
                    "rule `{}` refers to backend_pool `{}`, which is not defined",
                    rule.name, rule.backend_pool
                ));
            }
            if listener.redirect_to.is_some() || listener.redirect_url.is_some() {
                return Err(format!(
                    "rule `{}` routes listener `{}`, which redirects; a listener either redirects or routes",
                    rule.name, rule.listener
                ));
            }
            if let Some(other) =
                priorities.insert((rule.listener.as_str(), rule.priority), &rule.name)
            {
                return Err(format!(
                    "rules `{other}` and `{}` of listener `{}` both have priority {}; give each rule of a listener its own priority",
                    rule.name, rule.listener, rule.priority
                ));
            }
            routed.insert(rule.listener.as_str());
            let mut paths = BTreeSet::new();
            for entry in &rule.paths {
                let path = entry.path.as_str();
                check_path_pattern(path)
                    .map_err(|why| format!("rule `{}`: path `{path}` {why}", rule.name))?;
                if !paths.insert(path) {
                    return Err(format!("rule `{}` lists path `{path}` twice", rule.name));
                }
                match (&entry.backend_pool, &entry.redirect_url) {
                    (Some(pool), None) => {
                        if !pools.contains(pool.as_str()) {
                            return Err(format!(
                                "rule `{}` path `{path}` refers to backend_pool `{pool}`, which is not defined",
                                rule.name
                            ));
                        }
                        if entry.redirect_type.is_some()
                            || entry.include_path.is_some()
                            || entry.include_query.is_some()
                        {
                            return Err(format!(
                                "rule `{}` path `{path}` sets redirect_type/include_path/include_query but has no `redirect_url`",
                                rule.name
                            ));
                        }
                    }
                    (None, Some(url)) => check_redirect_url(url).map_err(|why| {
                        format!("rule `{}` path `{path}`: redirect_url `{url}` {why}", rule.name)
                    })?,
                    (Some(_), Some(_)) => {
                        return Err(format!(
                            "rule `{}` path `{path}` has both `backend_pool` and `redirect_url`; choose one",
                            rule.name
                        ))
                    }
                    (None, None) => {
                        return Err(format!(
                            "rule `{}` path `{path}` needs a `backend_pool` or a `redirect_url`",
                            rule.name
                        ))
                    }
                }
            }
        }

        for listener in &self.listeners {
            match &listener.redirect_to {
                Some(target) => {
                    let Some(target_listener) = listener_by_name.get(target.as_str()) else {
                        return Err(format!(
                            "listener `{}` redirects to listener `{target}`, which is not defined",
                            listener.name
                        ));
                    };
                    if target_listener.protocol != Protocol::Https {
                        return Err(format!(
                            "listener `{}` redirects to listener `{target}`, which is not https",
                            listener.name
                        ));
                    }
                }
                None if listener.redirect_url.is_none()
                    && !routed.contains(listener.name.as_str()) =>
                {
                    return Err(format!(
                        "listener `{}` has no [[rule]] and no `redirect_to`, so it could not answer any request",
                        listener.name
                    ));
                }
                None => {}
            }
        }
        Ok(())
    }

    /// The failure and expiry policy of `[rotation]`.
    pub fn rotation_policy(&self) -> Result<rotator::Policy, String> {
        let on_config_error = self
            .rotation
            .on_config_error
            .parse()
            .map_err(|e: rotator::UnknownOnConfigError| format!("on_config_error: {e}"))?;
        let expiry_window = rotator::parse_duration(&self.rotation.expiry_warning)
            .map_err(|e| format!("expiry_warning: {e}"))?;
        Ok(rotator::Policy {
            on_config_error,
            expiry_window,
            ..rotator::Policy::default()
        })
    }

    /// The check schedule of a listener, with this instance's jitter.
    pub fn schedule_for(&self, listener: &ListenerConfig) -> Result<rotator::Schedule, String> {
        let jitter = rotator::parse_duration(&self.rotation.jitter)
            .map_err(|e| format!("[rotation] jitter: {e}"))?;
        let expression = listener
            .rotation_schedule
            .as_deref()
            .unwrap_or(&self.rotation.schedule);
        rotator::Schedule::parse(expression, jitter)
            .map_err(|e| format!("listener `{}`: {e}", listener.name))
    }

    pub fn listener(&self, name: &str) -> Option<&ListenerConfig> {
        self.listeners.iter().find(|l| l.name == name)
    }

    pub fn backend_pool(&self, name: &str) -> Option<&BackendPoolConfig> {
        self.backend_pools.iter().find(|p| p.name == name)
    }

    /// The default pool of a listener's requests (its first rule's), if it routes rather than
    /// redirects.
    pub fn pool_for(&self, listener: &str) -> Option<&BackendPoolConfig> {
        self.rules_for(listener)
            .first()
            .and_then(|r| self.backend_pool(&r.backend_pool))
    }

    /// A listener's rules in the order they are tried: by `priority`, then as written.
    pub fn rules_for(&self, listener: &str) -> Vec<&RuleConfig> {
        let mut rules: Vec<&RuleConfig> = self
            .rules
            .iter()
            .filter(|r| r.listener == listener)
            .collect();
        rules.sort_by_key(|r| r.priority);
        rules
    }

    /// The `[limits]` keys and their per-listener overrides: counts above zero, durations above
    /// zero, handshake limits only on https listeners, and one set of connection limits per
    /// shared bind address.
    fn check_limits(&self) -> Result<(), String> {
        let limits = &self.limits;
        let count = |key: &str, value: Option<usize>| match value {
            Some(0) => Err(format!("{key} must be at least 1")),
            _ => Ok(()),
        };
        let duration = |key: &str, value: &Option<String>| -> Result<(), String> {
            if let Some(text) = value {
                if parse_duration(text)
                    .map_err(|e| format!("{key}: {e}"))?
                    .is_zero()
                {
                    return Err(format!("{key} must be more than 0"));
                }
            }
            Ok(())
        };
        let all = |prefix: &str,
                   max_connections: Option<usize>,
                   max_handshakes: Option<usize>,
                   timeouts: [(&str, &Option<String>); 3]| {
            count("max_connections", max_connections)
                .and_then(|()| count("max_handshakes_in_flight", max_handshakes))
                .and_then(|()| {
                    timeouts
                        .iter()
                        .try_for_each(|(key, value)| duration(key, value))
                })
                .map_err(|e| format!("{prefix}{e}"))
        };
        all(
            "[limits] ",
            limits.max_connections,
            limits.max_handshakes_in_flight,
            [
                ("handshake_timeout", &limits.handshake_timeout),
                ("request_header_timeout", &limits.request_header_timeout),
                ("body_timeout", &limits.body_timeout),
            ],
        )?;
        for listener in &self.listeners {
            all(
                &format!("listener `{}`: ", listener.name),
                listener.max_connections,
                listener.max_handshakes_in_flight,
                [
                    ("handshake_timeout", &listener.handshake_timeout),
                    ("request_header_timeout", &listener.request_header_timeout),
                    ("body_timeout", &listener.body_timeout),
                ],
            )?;
            if listener.protocol == Protocol::Http
                && (listener.max_handshakes_in_flight.is_some()
                    || listener.handshake_timeout.is_some())
            {
                return Err(format!(
                    "listener `{}` is http; max_handshakes_in_flight and handshake_timeout need protocol = \"https\"",
                    listener.name
                ));
            }
        }
        // Listeners sharing an address are one server, so they share its connection limits.
        for (i, listener) in self.listeners.iter().enumerate() {
            if listener.bind.port() == 0 {
                continue;
            }
            let limits = self.connection_limits(listener);
            if let Some(other) = self.listeners[..i]
                .iter()
                .find(|o| o.bind == listener.bind && self.connection_limits(o) != limits)
            {
                return Err(format!(
                    "listeners `{}` and `{}` share bind {} but not their connection limits (max_connections, max_handshakes_in_flight, handshake_timeout, request_header_timeout); set them alike",
                    other.name, listener.name, listener.bind
                ));
            }
        }
        Ok(())
    }

    /// The connection limits of a listener's address: its own, else `[limits]`'s, else the
    /// defaults.
    pub fn connection_limits(&self, listener: &ListenerConfig) -> ConnectionLimits {
        let limits = &self.limits;
        let duration = |own: &Option<String>, global: &Option<String>, default: Duration| {
            own.as_deref()
                .or(global.as_deref())
                .and_then(|s| parse_duration(s).ok())
                .unwrap_or(default)
        };
        ConnectionLimits {
            max_connections: listener
                .max_connections
                .or(limits.max_connections)
                .unwrap_or(DEFAULT_MAX_CONNECTIONS),
            max_handshakes_in_flight: listener
                .max_handshakes_in_flight
                .or(limits.max_handshakes_in_flight)
                .unwrap_or(DEFAULT_MAX_HANDSHAKES_IN_FLIGHT),
            handshake_timeout: duration(
                &listener.handshake_timeout,
                &limits.handshake_timeout,
                DEFAULT_HANDSHAKE_TIMEOUT,
            ),
            request_header_timeout: duration(
                &listener.request_header_timeout,
                &limits.request_header_timeout,
                DEFAULT_REQUEST_HEADER_TIMEOUT,
            ),
        }
    }

    /// The longest pause in a request body on a listener: its own, else `[limits]`'s, else 30 s.
    pub fn body_timeout(&self, listener: &ListenerConfig) -> Duration {
        listener
            .body_timeout
            .as_deref()
            .or(self.limits.body_timeout.as_deref())
            .and_then(|s| parse_duration(s).ok())
            .unwrap_or(DEFAULT_BODY_TIMEOUT)
    }

    /// The body limit of a listener: its own, else `[limits]`'s, else none.
    pub fn max_request_body(&self, listener: &ListenerConfig) -> Option<u64> {
        listener
            .max_request_body
            .as_deref()
            .or(self.limits.max_request_body.as_deref())
            .and_then(|s| parse_size(s).ok())
    }
}

/// Hostnames one listener may list, as on Application Gateway.
pub const MAX_HOSTNAMES: usize = 5;

/// The backend settings of a pool, checked on their own.
fn check_pool(pool: &BackendPoolConfig) -> Result<(), String> {
    if pool.addresses.is_empty() {
        return Err("has no addresses".into());
    }
    for address in &pool.addresses {
        crate::proxy::BackendAddress::parse(address, pool.protocol, pool.port)
            .map_err(|why| format!("address `{address}` {why}"))?;
    }
    if pool.protocol == Protocol::Http {
        if pool.trusted_ca_file.is_some() {
            return Err("trusted_ca_file needs protocol = \"https\"".into());
        }
        if pool.sni.is_some() {
            return Err("sni needs protocol = \"https\"".into());
        }
    }
    if let Some(sni) = &pool.sni {
        if check_hostname(sni).is_err() || sni.starts_with("*.") {
            return Err(format!("sni `{sni}` is not a DNS name"));
        }
    }
    if pool.host_header.is_some() && pool.pick_host_from_backend {
        return Err(
            "host_header and pick_host_from_backend = true contradict each other; choose one"
                .into(),
        );
    }
    if let Some(host) = &pool.host_header {
        if host.is_empty() || actix_web::http::header::HeaderValue::from_str(host).is_err() {
            return Err(format!("host_header `{host}` is not a valid Host value"));
        }
    }
    if let Some(timeout) = &pool.request_timeout {
        parse_duration(timeout).map_err(|e| format!("request_timeout: {e}"))?;
    }
    if let Some(drain) = &pool.drain_timeout {
        parse_duration(drain).map_err(|e| format!("drain_timeout: {e}"))?;
    }
    if let Some(probe) = &pool.probe {
        let prefix = |e: String| format!("probe {e}");
        if !probe.path.starts_with('/') {
            return Err(format!("probe path `{}` must start with `/`", probe.path));
        }
        if probe.interval().map_err(prefix)?.is_zero() {
            return Err("probe interval must be more than 0".into());
        }
        if probe.timeout().map_err(prefix)?.is_zero() {
            return Err("probe timeout must be more than 0".into());
        }
        if probe.unhealthy_threshold == 0 {
            return Err("probe unhealthy_threshold must be at least 1".into());
        }
        probe.healthy_status().map_err(prefix)?;
    }
    Ok(())
}

/// A redirect target is an absolute http(s) URL with a host.
fn check_redirect_url(url: &str) -> Result<(), &'static str> {
    let uri: actix_web::http::Uri = url.parse().map_err(|_| "is not a URL")?;
    match uri.scheme_str() {
        Some("http" | "https") => {}
        _ => return Err("must start with https:// or http://"),
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err("has no host");
    }
    Ok(())
}

/// A rule path is `/exact` or `/prefix/*`: it starts with `/`, and `*` may only end it.
fn check_path_pattern(path: &str) -> Result<(), &'static str> {
    if !path.starts_with('/') {
        return Err("must start with `/`");
    }
    let body = path.strip_suffix('*').unwrap_or(path);
    if body.contains('*') {
        return Err("may have `*` only at its end (`/api/*`)");
    }
    if body.contains(['?', '#', ' ']) {
        return Err("must be a path only (no query, fragment or spaces)");
    }
    Ok(())
}

/// A duration: `500ms`, `30s`, `5m`, `1h`, `1d`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    if let Some(ms) = text.strip_suffix("ms") {
        return ms
            .parse::<u64>()
            .map(Duration::from_millis)
            .map_err(|_| format!("`{text}` is not a duration like 500ms, 30s, 5m"));
    }
    rotator::parse_duration(text)
        .map_err(|_| format!("`{text}` is not a duration like 500ms, 30s, 5m"))
}

/// A size in bytes: `1048576`, `512KiB`, `100MiB`, `1GiB`, `10kB`, `5MB`, `1GB`.
pub fn parse_size(text: &str) -> Result<u64, &'static str> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let amount: u64 = digits
        .parse()
        .map_err(|_| "is not a size like 100MiB, 512KiB or 1048576")?;
    let unit: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "kB" | "KB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        _ => return Err("has an unknown unit (use B, KiB, MiB, GiB, kB, MB or GB)"),
    };
    amount.checked_mul(unit).ok_or("is too large")
}

/// `200-399`, `200`, `200-299,404`: inclusive ranges of statuses.
pub fn parse_status_ranges(text: &str) -> Result<Vec<(u16, u16)>, &'static str> {
    let mut ranges = Vec::new();
    for part in text.split(',') {
        let part = part.trim();
        let (low, high) = part.split_once('-').unwrap_or((part, part));
        let parse = |s: &str| {
            s.trim()
                .parse::<u16>()
                .ok()
                .filter(|n| (100..=599).contains(n))
        };
        match (parse(low), parse(high)) {
            (Some(low), Some(high)) if low <= high => ranges.push((low, high)),
            _ => return Err("is not a status range like 200-399"),
        }
    }
    Ok(ranges)
}

fn line_of_span(text: &str, span: Option<std::ops::Range<usize>>) -> Option<usize> {
    let start = span?.start.min(text.len());
    Some(text[..start].matches('\n').count() + 1)
}

fn quoted_names(group: &[&ListenerConfig]) -> String {
    group
        .iter()
        .map(|l| format!("`{}`", l.name))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A configured hostname is a DNS name, optionally with `*.` as its whole left-most label.
fn check_hostname(hostname: &str) -> Result<(), &'static str> {
    let name = hostname.strip_prefix("*.").unwrap_or(hostname);
    if name.is_empty() || name.len() > 253 {
        return Err("is not a DNS name");
    }
    for label in name.split('.') {
        let valid = !label.is_empty()
            && label.len() <= 63
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-');
        if !valid {
            return Err("is not a DNS name (a wildcard may only be `*.` at the start)");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = r#"
[state]
dir = "state"

[[listener]]
name = "web"
bind = "127.0.0.1:8443"
protocol = "https"
hostnames = ["localhost"]
certificate = { pem_file = "site.pem" }

[[backend_pool]]
name = "app"
addresses = ["127.0.0.1:8080"]

[[rule]]
name = "all"
listener = "web"
backend_pool = "app"
"#;

    #[track_caller]
    fn check_err(text: &str, expected: &str) {
        let err = Config::parse(Path::new("/etc/gw/gateway.toml"), text)
            .expect_err("config should be refused")
            .to_string();
        assert!(!err.contains('\n'), "error must be one line: {err}");
        assert!(
            err.contains(expected),
            "error `{err}` should contain `{expected}`"
        );
    }

    #[test]
    fn a_valid_config_resolves_relative_paths_against_its_own_directory() {
        let config = Config::parse(Path::new("/etc/gw/gateway.toml"), BASE).unwrap();
        assert_eq!(config.state.dir, Path::new("/etc/gw/state"));
        assert_eq!(
            config.listeners[0].certificate,
            Some(CertificateSource::Pem {
                pem_file: "/etc/gw/site.pem".into()
            })
        );
        assert_eq!(config.pool_for("web").unwrap().name, "app");
    }

    #[test]
    fn an_unknown_key_is_named_with_its_line() {
        let text = BASE.replace(
            "protocol = \"https\"",
            "protocol = \"https\"\nprotocl = \"x\"",
        );
        check_err(&text, "gateway.toml:9: unknown field `protocl`");
    }

    #[test]
    fn malformed_toml_names_the_line() {
        check_err("[state]\ndir = \n", "gateway.toml:2:");
    }

    #[test]
    fn references_must_resolve() {
        check_err(
            &BASE.replace("backend_pool = \"app\"", "backend_pool = \"nope\""),
            "rule `all` refers to backend_pool `nope`, which is not defined",
        );
        check_err(
            &BASE.replace("listener = \"web\"", "listener = \"nope\""),
            "rule `all` refers to listener `nope`",
        );
    }

    #[test]
    fn https_needs_a_certificate_and_http_may_not_have_one() {
        check_err(
            &BASE.replace("certificate = { pem_file = \"site.pem\" }", ""),
            "listener `web` is https but has no `certificate`",
        );
        check_err(
            &BASE.replace("protocol = \"https\"", "protocol = \"http\""),
            "a `certificate` needs protocol = \"https\"",
        );
    }

    #[test]
    fn a_certificate_of_unknown_shape_is_refused() {
        check_err(
            &BASE.replace("{ pem_file = \"site.pem\" }", "{ pem = \"site.pem\" }"),
            "gateway.toml:10:",
        );
    }

    #[test]
    fn hostnames_must_be_dns_names() {
        check_err(
            &BASE.replace("[\"localhost\"]", "[\"a*.example.com\"]"),
            "hostname `a*.example.com` is not a DNS name",
        );
    }

    #[test]
    fn a_listener_without_rule_or_redirect_is_refused() {
        let text = format!(
            "{BASE}\n[[listener]]\nname = \"plain\"\nbind = \"127.0.0.1:8080\"\nprotocol = \"http\"\n"
        );
        check_err(
            &text,
            "listener `plain` has no [[rule]] and no `redirect_to`",
        );
    }

    #[test]
    fn two_listeners_on_one_address_need_distinct_hostnames() {
        let text = format!(
            "{BASE}\n[[listener]]\nname = \"other\"\nbind = \"127.0.0.1:8443\"\nprotocol = \"https\"\nhostnames = [\"LOCALHOST\"]\ncertificate = {{ pem_file = \"b.pem\" }}\n[[rule]]\nname = \"r2\"\nlistener = \"other\"\nbackend_pool = \"app\"\n"
        );
        check_err(
            &text,
            "hostname `LOCALHOST` is claimed by both listener `web` and listener `other`",
        );
    }

    fn with_rule_extra(extra: &str) -> String {
        format!("{BASE}{extra}")
    }

    #[test]
    fn a_listener_may_list_at_most_five_hostnames_each_once() {
        check_err(
            &BASE.replace(
                "[\"localhost\"]",
                "[\"a.test\", \"b.test\", \"c.test\", \"d.test\", \"e.test\", \"f.test\"]",
            ),
            "listener `web` lists 6 hostnames; at most 5 are allowed",
        );
        check_err(
            &BASE.replace("[\"localhost\"]", "[\"a.test\", \"A.test\"]"),
            "listener `web` lists hostname `A.test` twice",
        );
    }

    #[test]
    fn two_listeners_on_one_address_may_not_share_a_wildcard() {
        let text = format!(
            "{}\n[[listener]]\nname = \"other\"\nbind = \"127.0.0.1:8443\"\nprotocol = \"https\"\nhostnames = [\"*.Example.com\"]\ncertificate = {{ pem_file = \"b.pem\" }}\n[[rule]]\nname = \"r2\"\nlistener = \"other\"\nbackend_pool = \"app\"\n",
            BASE.replace("[\"localhost\"]", "[\"*.example.com\"]")
        );
        check_err(
            &text,
            "hostname `*.Example.com` is claimed by both listener `web` and listener `other`",
        );
    }

    #[test]
    fn path_rules_are_checked_and_resolved() {
        let config = Config::parse(
            Path::new("/etc/gw/gateway.toml"),
            &BASE.replace(
                "backend_pool = \"app\"\n",
                "backend_pool = \"app\"\npaths = [{ path = \"/api/*\", backend_pool = \"app\" }, { path = \"/old\", redirect_url = \"https://new.example/\" }]\n",
            ),
        )
        .unwrap();
        assert_eq!(config.rules[0].paths.len(), 2);
        let with_paths = |paths: &str| {
            BASE.replace(
                "backend_pool = \"app\"\n",
                &format!("backend_pool = \"app\"\npaths = [{paths}]\n"),
            )
        };
        check_err(
            &with_paths("{ path = \"/api/*\", backend_pool = \"api\" }"),
            "rule `all` path `/api/*` refers to backend_pool `api`, which is not defined",
        );
        check_err(
            &with_paths("{ path = \"api/*\", backend_pool = \"app\" }"),
            "rule `all`: path `api/*` must start with `/`",
        );
        check_err(
            &with_paths("{ path = \"/a/*/b\", backend_pool = \"app\" }"),
            "rule `all`: path `/a/*/b` may have `*` only at its end",
        );
        check_err(
            &with_paths("{ path = \"/a\", backend_pool = \"app\" }, { path = \"/a\", backend_pool = \"app\" }"),
            "rule `all` lists path `/a` twice",
        );
        check_err(
            &with_paths("{ path = \"/a\" }"),
            "rule `all` path `/a` needs a `backend_pool` or a `redirect_url`",
        );
        check_err(
            &with_paths(
                "{ path = \"/a\", backend_pool = \"app\", redirect_url = \"https://x.test/\" }",
            ),
            "rule `all` path `/a` has both `backend_pool` and `redirect_url`",
        );
        check_err(
            &with_paths("{ path = \"/a\", redirect_url = \"ftp://x.test/\" }"),
            "rule `all` path `/a`: redirect_url `ftp://x.test/` must start with https:// or http://",
        );
        check_err(
            &with_paths("{ path = \"/a\", backend_pool = \"app\", redirect_type = \"found\" }"),
            "rule `all` path `/a` sets redirect_type/include_path/include_query but has no `redirect_url`",
        );
    }

    #[test]
    fn several_rules_on_a_listener_need_distinct_priorities() {
        let text = with_rule_extra(
            "\n[[rule]]\nname = \"second\"\nlistener = \"web\"\nbackend_pool = \"app\"\n",
        );
        check_err(
            &text,
            "rules `all` and `second` of listener `web` both have priority 0",
        );
        let text = with_rule_extra(
            "\n[[backend_pool]]\nname = \"api\"\naddresses = [\"127.0.0.1:8081\"]\n[[rule]]\nname = \"first\"\nlistener = \"web\"\nbackend_pool = \"api\"\npriority = 0\n",
        )
        .replace("backend_pool = \"app\"\n\"#", "");
        let text = text.replacen(
            "name = \"all\"\nlistener = \"web\"\nbackend_pool = \"app\"\n",
            "name = \"all\"\nlistener = \"web\"\nbackend_pool = \"app\"\npriority = 10\n",
            1,
        );
        let config = Config::parse(Path::new("/etc/gw/gateway.toml"), &text).unwrap();
        assert_eq!(config.pool_for("web").unwrap().name, "api");
        let order: Vec<_> = config
            .rules_for("web")
            .iter()
            .map(|r| r.name.as_str())
            .collect();
        assert_eq!(order, ["first", "all"]);
    }

    #[test]
    fn redirects_are_checked() {
        let http = |extra: &str| {
            format!("{BASE}\n[[listener]]\nname = \"plain\"\nbind = \"127.0.0.1:8080\"\nprotocol = \"http\"\n{extra}")
        };
        Config::parse(
            Path::new("/etc/gw/gateway.toml"),
            &http("redirect_to = \"web\"\nredirect_type = \"see_other\"\ninclude_query = false\n"),
        )
        .unwrap();
        Config::parse(
            Path::new("/etc/gw/gateway.toml"),
            &http("redirect_url = \"https://elsewhere.example/\"\n"),
        )
        .unwrap();
        check_err(
            &http("redirect_to = \"nope\"\n"),
            "listener `plain` redirects to listener `nope`, which is not defined",
        );
        check_err(
            &http("redirect_to = \"web\"\nredirect_url = \"https://x.test/\"\n"),
            "listener `plain` has both `redirect_to` and `redirect_url`",
        );
        check_err(
            &http("redirect_url = \"/relative\"\n"),
            "listener `plain`: redirect_url `/relative` must start with https:// or http://",
        );
        check_err(
            &http("redirect_type = \"found\"\n"),
            "listener `plain` sets redirect_type/include_path/include_query but has no `redirect_to` or `redirect_url`",
        );
        check_err(
            &http("redirect_to = \"web\"\nredirect_type = \"moved\"\n"),
            "unknown variant `moved`",
        );
        let routed_and_redirecting = format!(
            "{}\n[[rule]]\nname = \"r2\"\nlistener = \"plain\"\nbackend_pool = \"app\"\n",
            http("redirect_url = \"https://x.test/\"\n")
        );
        check_err(
            &routed_and_redirecting,
            "rule `r2` routes listener `plain`, which redirects",
        );
    }

    #[test]
    fn backend_settings_are_checked() {
        let pool = |extra: &str| {
            BASE.replace(
                "addresses = [\"127.0.0.1:8080\"]\n",
                &format!("addresses = [\"127.0.0.1:8080\"]\n{extra}"),
            )
        };
        let config = Config::parse(
            Path::new("/etc/gw/gateway.toml"),
            &pool("protocol = \"https\"\ntrusted_ca_file = \"ca.pem\"\nsni = \"app.internal\"\nrequest_timeout = \"30s\"\ndrain_timeout = \"500ms\"\n[backend_pool.probe]\npath = \"/health\"\ninterval = \"1s\"\ntimeout = \"1s\"\nunhealthy_threshold = 2\nhealthy_status = \"200-399\"\n"),
        )
        .unwrap();
        assert_eq!(
            config.backend_pools[0].trusted_ca_file.as_deref(),
            Some(Path::new("/etc/gw/ca.pem"))
        );
        check_err(
            &pool("trusted_ca_file = \"ca.pem\"\n"),
            "backend_pool `app`: trusted_ca_file needs protocol = \"https\"",
        );
        check_err(
            &pool("sni = \"x.test\"\n"),
            "backend_pool `app`: sni needs protocol = \"https\"",
        );
        check_err(
            &pool("host_header = \"a.test\"\npick_host_from_backend = true\n"),
            "backend_pool `app`: host_header and pick_host_from_backend = true contradict each other",
        );
        check_err(
            &pool("request_timeout = \"soon\"\n"),
            "backend_pool `app`: request_timeout: `soon` is not a duration",
        );
        check_err(
            &BASE.replace("\"127.0.0.1:8080\"", "\"https://127.0.0.1:8080\""),
            "backend_pool `app`: address `https://127.0.0.1:8080` is https:// but the pool's protocol is http",
        );
        check_err(
            &pool("[backend_pool.probe]\nunhealthy_threshold = 0\n"),
            "backend_pool `app`: probe unhealthy_threshold must be at least 1",
        );
        check_err(
            &pool("[backend_pool.probe]\nhealthy_status = \"200-x\"\n"),
            "backend_pool `app`: probe healthy_status `200-x` is not a status range like 200-399",
        );
        check_err(
            &pool("[backend_pool.probe]\npath = \"health\"\n"),
            "backend_pool `app`: probe path `health` must start with `/`",
        );
        check_err(
            &pool("[backend_pool.probe]\ninterval = \"0s\"\n"),
            "backend_pool `app`: probe interval must be more than 0",
        );
    }

    #[test]
    fn body_limits_are_sizes() {
        let config = Config::parse(
            Path::new("/etc/gw/gateway.toml"),
            &format!("[limits]\nmax_request_body = \"1MiB\"\n{BASE}"),
        )
        .unwrap();
        assert_eq!(config.max_request_body(&config.listeners[0]), Some(1 << 20));
        let own = BASE.replace(
            "hostnames = [\"localhost\"]",
            "hostnames = [\"localhost\"]\nmax_request_body = \"10kB\"",
        );
        let config = Config::parse(Path::new("/etc/gw/gateway.toml"), &own).unwrap();
        assert_eq!(config.max_request_body(&config.listeners[0]), Some(10_000));
        check_err(
            &format!("[limits]\nmax_request_body = \"lots\"\n{BASE}"),
            "[limits] max_request_body `lots` is not a size",
        );
        check_err(
            &BASE.replace(
                "hostnames = [\"localhost\"]",
                "hostnames = [\"localhost\"]\nmax_request_body = \"5XB\"",
            ),
            "listener `web`: max_request_body `5XB` has an unknown unit",
        );
        assert_eq!(parse_size("100MiB"), Ok(100 << 20));
        assert_eq!(parse_size("512"), Ok(512));
    }

    #[test]
    fn connection_limits_have_defaults_and_overrides() {
        let config = Config::parse(Path::new("/etc/gw/gateway.toml"), BASE).unwrap();
        let web = &config.listeners[0];
        assert_eq!(
            config.connection_limits(web),
            ConnectionLimits {
                max_connections: DEFAULT_MAX_CONNECTIONS,
                max_handshakes_in_flight: DEFAULT_MAX_HANDSHAKES_IN_FLIGHT,
                handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
                request_header_timeout: DEFAULT_REQUEST_HEADER_TIMEOUT,
            }
        );
        assert_eq!(config.body_timeout(web), DEFAULT_BODY_TIMEOUT);
        let text = format!(
            "[limits]\nmax_connections = 100\nhandshake_timeout = \"5s\"\nbody_timeout = \"1m\"\n{}",
            BASE.replace(
                "hostnames = [\"localhost\"]",
                "hostnames = [\"localhost\"]\nmax_connections = 7\nrequest_header_timeout = \"500ms\"",
            )
        );
        let config = Config::parse(Path::new("/etc/gw/gateway.toml"), &text).unwrap();
        let web = &config.listeners[0];
        let limits = config.connection_limits(web);
        assert_eq!(limits.max_connections, 7);
        assert_eq!(limits.handshake_timeout, Duration::from_secs(5));
        assert_eq!(limits.request_header_timeout, Duration::from_millis(500));
        assert_eq!(config.body_timeout(web), Duration::from_secs(60));
        check_err(
            &format!("[limits]\nmax_connections = 0\n{BASE}"),
            "[limits] max_connections must be at least 1",
        );
        check_err(
            &format!("[limits]\nbody_timeout = \"never\"\n{BASE}"),
            "[limits] body_timeout: `never` is not a duration",
        );
        check_err(
            &BASE.replace(
                "hostnames = [\"localhost\"]",
                "hostnames = [\"localhost\"]\nhandshake_timeout = \"0s\"",
            ),
            "listener `web`: handshake_timeout must be more than 0",
        );
        check_err(
            &format!("[limits]\nmax_header_bytes = 1\n{BASE}"),
            "unknown field `max_header_bytes`",
        );
    }
}
