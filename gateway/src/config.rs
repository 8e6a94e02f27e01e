//! The TOML configuration (DESIGN §6): parsing with errors that name the key and its line, and the
//! checks that every reference between sections resolves.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

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

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackendPoolConfig {
    pub name: String,
    pub addresses: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    pub name: String,
    pub listener: String,
    pub backend_pool: String,
    #[serde(default)]
    pub priority: u32,
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
            for hostname in &listener.hostnames {
                check_hostname(hostname).map_err(|why| {
                    format!("listener `{}`: hostname `{hostname}` {why}", listener.name)
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

        let mut pools = BTreeSet::new();
        for pool in &self.backend_pools {
            if !pools.insert(pool.name.as_str()) {
                return Err(format!("backend_pool `{}` is defined twice", pool.name));
            }
            if pool.addresses.is_empty() {
                return Err(format!("backend_pool `{}` has no addresses", pool.name));
            }
            for address in &pool.addresses {
                crate::proxy::BackendAddress::parse(address).map_err(|why| {
                    format!("backend_pool `{}`: address `{address}` {why}", pool.name)
                })?;
            }
        }

        let mut routed = BTreeSet::new();
        let mut rule_names = BTreeSet::new();
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
            if listener.redirect_to.is_some() {
                return Err(format!(
                    "rule `{}` routes listener `{}`, which redirects; a listener either redirects or routes",
                    rule.name, rule.listener
                ));
            }
            if !routed.insert(rule.listener.as_str()) {
                return Err(format!(
                    "listener `{}` has more than one rule; path-based rules are not supported yet",
                    rule.listener
                ));
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
                None if !routed.contains(listener.name.as_str()) => {
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

    /// The pool that serves a listener's requests, if it routes rather than redirects.
    pub fn pool_for(&self, listener: &str) -> Option<&BackendPoolConfig> {
        self.rules
            .iter()
            .filter(|r| r.listener == listener)
            .min_by_key(|r| r.priority)
            .and_then(|r| self.backend_pool(&r.backend_pool))
    }
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
}
