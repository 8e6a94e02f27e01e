//! Key Vault secret identifiers: `https://{vault}.vault.azure.net/secrets/{name}[/{version}]`.

use std::fmt;
use std::hash::{Hash, Hasher};

use reqwest::Url;

/// An Azure cloud whose Key Vault DNS suffix this crate accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Cloud {
    /// Azure public cloud: `*.vault.azure.net`.
    Public,
    /// Azure China (21Vianet): `*.vault.azure.cn`.
    China,
    /// Azure US Government: `*.vault.usgovcloudapi.net`.
    UsGovernment,
    /// Azure Germany (retired, still listed by the SDKs): `*.vault.microsoftazure.de`.
    Germany,
}

impl Cloud {
    /// Every cloud, in the order their suffixes are tried.
    pub const ALL: [Cloud; 4] = [
        Cloud::Public,
        Cloud::China,
        Cloud::UsGovernment,
        Cloud::Germany,
    ];

    /// The DNS suffix of its vaults, without the leading dot, e.g. `vault.azure.net`.
    pub fn vault_suffix(self) -> &'static str {
        match self {
            Cloud::Public => "vault.azure.net",
            Cloud::China => "vault.azure.cn",
            Cloud::UsGovernment => "vault.usgovcloudapi.net",
            Cloud::Germany => "vault.microsoftazure.de",
        }
    }

    /// The Key Vault scope of the cloud, e.g. `https://vault.azure.net/.default`.
    pub fn scope(self) -> String {
        format!("https://{}/.default", self.vault_suffix())
    }
}

/// DNS suffixes of Managed HSM pools, which hold keys only and are not supported.
const MANAGED_HSM_SUFFIXES: [&str; 3] = [
    "managedhsm.azure.net",
    "managedhsm.azure.cn",
    "managedhsm.usgovcloudapi.net",
];

/// Which collection an identifier was written with. Both are read through `/secrets`: a
/// certificate's secret has the certificate's name and version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ObjectKind {
    /// `/secrets/{name}`.
    Secret,
    /// `/certificates/{name}`.
    Certificate,
}

impl ObjectKind {
    fn collection(self) -> &'static str {
        match self {
            ObjectKind::Secret => "secrets",
            ObjectKind::Certificate => "certificates",
        }
    }
}

/// A reference to a Key Vault secret, or to a certificate (read through its secret), with or
/// without a version.
///
/// Parsed from `https://{vault}.vault.azure.net/secrets/{name}[/{version}]` or
/// `…/certificates/{name}[/{version}]` in any Azure cloud (see [`Cloud`]), or on a development host
/// that was explicitly allowed ([`SecretId::parse_with_allowed_hosts`]).
///
/// The host and version are kept in lowercase; the name keeps its case, but identifiers compare
/// (and hash) case-insensitively, as Key Vault's do. `Display` writes the canonical
/// `https://host/secrets/name[/version]`.
#[derive(Clone)]
pub struct SecretId {
    /// `host` or `host:port` (port only when not 443), lowercase.
    authority: String,
    cloud: Option<Cloud>,
    name: String,
    version: Option<String>,
    written_as: ObjectKind,
}

/// Why a string is not a usable Key Vault secret identifier. The message is one line naming the
/// part that is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid Key Vault secret identifier {input:?}: {reason}")]
pub struct IdentifierError {
    input: String,
    reason: String,
}

impl IdentifierError {
    fn new(input: &str, reason: impl Into<String>) -> Self {
        IdentifierError {
            input: input.to_owned(),
            reason: reason.into(),
        }
    }

    /// The identifier as given.
    pub fn input(&self) -> &str {
        &self.input
    }

    /// What is wrong with it.
    pub fn reason(&self) -> &str {
        &self.reason
    }
}

const EXPECTED: &str =
    "expected https://{vault}.vault.azure.net/secrets/{name}[/{version}] or …/certificates/{name}[/{version}]";

impl SecretId {
    /// Parses an identifier whose host is a vault in one of the Azure clouds ([`Cloud`]).
    pub fn parse(input: &str) -> Result<SecretId, IdentifierError> {
        Self::parse_with_allowed_hosts(input, &[])
    }

    /// Parses an identifier whose host is a vault in one of the Azure clouds, or one of
    /// `allowed_hosts`: `host:port` entries (or `host`, meaning port 443) such as the emulator's
    /// `localhost:8443`. Allowed hosts are compared case-insensitively; a scheme or trailing `/`
    /// in an entry is ignored.
    pub fn parse_with_allowed_hosts(
        input: &str,
        allowed_hosts: &[String],
    ) -> Result<SecretId, IdentifierError> {
        let err = |reason: String| IdentifierError::new(input, reason);
        let trimmed = input.trim();
        if trimmed.is_empty() {
            return Err(err(format!("it is empty; {EXPECTED}")));
        }
        let url = Url::parse(trimmed).map_err(|e| err(format!("not a URL ({e}); {EXPECTED}")))?;
        match url.scheme() {
            "https" => {}
            "http" => {
                return Err(err(
                    "the scheme is http: Key Vault is only reached over https, and bearer tokens are never sent over plain http"
                        .to_owned(),
                ))
            }
            other => {
                return Err(err(format!(
                    "the scheme is {other:?}, expected https; {EXPECTED}"
                )))
            }
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(err("it must not carry a user name or password".to_owned()));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(err(
                "it must not carry a query (`?…`) or fragment (`#…`)".to_owned()
            ));
        }
        let host = url
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| err("it has no host".to_owned()))?
            .to_ascii_lowercase();
        // `Url` already drops the scheme's default port (443).
        let authority = match url.port() {
            Some(port) => format!("{host}:{port}"),
            None => host.clone(),
        };

        let cloud = if is_allowed(&authority, allowed_hosts) {
            None
        } else {
            Some(classify_host(&host, url.port()).map_err(err)?)
        };

        let (kind, name, version) = parse_path(url.path()).map_err(err)?;
        Ok(SecretId {
            authority,
            cloud,
            name,
            version,
            written_as: kind,
        })
    }

    /// The vault's base URL, `https://host[:port]/`.
    pub fn vault_url(&self) -> String {
        format!("https://{}/", self.authority)
    }

    /// The vault's `host[:port]` (port only when not 443).
    pub fn authority(&self) -> &str {
        &self.authority
    }

    /// The vault's host name, without the port.
    pub fn host(&self) -> &str {
        host_of(&self.authority)
    }

    /// The cloud of the vault, or `None` for an explicitly allowed development host.
    pub fn cloud(&self) -> Option<Cloud> {
        self.cloud
    }

    /// The vault's name: the first DNS label of a cloud vault's host; the whole authority of a
    /// development host.
    pub fn vault_name(&self) -> &str {
        match self.cloud {
            Some(_) => self.host().split('.').next().unwrap_or_default(),
            None => &self.authority,
        }
    }

    /// The secret's (or certificate's) name, as written.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The version (32 lowercase hex digits), or `None` for a versionless reference, which means
    /// "the latest version".
    pub fn version(&self) -> Option<&str> {
        self.version.as_deref()
    }

    /// `true` when the identifier pins a version.
    pub fn is_versioned(&self) -> bool {
        self.version.is_some()
    }

    /// Whether it was written as `/secrets/…` or `/certificates/…`.
    pub fn object_kind(&self) -> ObjectKind {
        self.written_as
    }

    /// The same secret without its version: "the latest version".
    pub fn versionless(&self) -> SecretId {
        SecretId {
            version: None,
            ..self.clone()
        }
    }

    /// The same secret at `version`, which must be 32 hex digits.
    pub fn with_version(&self, version: &str) -> Result<SecretId, IdentifierError> {
        let version = check_version(version)
            .map_err(|reason| IdentifierError::new(&format!("{self}/{version}"), reason))?;
        Ok(SecretId {
            version: Some(version),
            ..self.clone()
        })
    }

    /// The path of the secret's GET, `/secrets/{name}[/{version}]`.
    pub(crate) fn secret_path(&self) -> String {
        match &self.version {
            Some(version) => format!("secrets/{}/{version}", self.name),
            None => format!("secrets/{}", self.name),
        }
    }
}

impl fmt::Display for SecretId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "https://{}/secrets/{}", self.authority, self.name)?;
        if let Some(version) = &self.version {
            write!(f, "/{version}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for SecretId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretId({self})")
    }
}

impl PartialEq for SecretId {
    fn eq(&self, other: &Self) -> bool {
        self.authority == other.authority
            && self.name.eq_ignore_ascii_case(&other.name)
            && self.version == other.version
    }
}

impl Eq for SecretId {}

impl Hash for SecretId {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.authority.hash(state);
        self.name.to_ascii_lowercase().hash(state);
        self.version.hash(state);
    }
}

impl std::str::FromStr for SecretId {
    type Err = IdentifierError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        SecretId::parse(s)
    }
}

fn host_of(authority: &str) -> &str {
    if authority.starts_with('[') {
        // [v6]:port
        match authority.find(']') {
            Some(end) => &authority[..=end],
            None => authority,
        }
    } else {
        authority.split(':').next().unwrap_or(authority)
    }
}

/// Normalises an `allowed_hosts` entry to `host[:port]` without the default port.
pub(crate) fn normalise_allowed(entry: &str) -> String {
    let mut e = entry.trim().to_ascii_lowercase();
    for scheme in ["https://", "http://"] {
        if let Some(rest) = e.strip_prefix(scheme) {
            e = rest.to_owned();
        }
    }
    let e = e.trim_end_matches('/');
    e.strip_suffix(":443").unwrap_or(e).to_owned()
}

/// `true` when `authority` (`host[:port]`, lowercase, no default port) is one of `allowed`.
pub(crate) fn is_allowed(authority: &str, allowed: &[String]) -> bool {
    allowed.iter().any(|a| normalise_allowed(a) == authority)
}

fn classify_host(host: &str, port: Option<u16>) -> Result<Cloud, String> {
    for suffix in MANAGED_HSM_SUFFIXES {
        if host == suffix || host.ends_with(&format!(".{suffix}")) {
            return Err(format!(
                "the host {host} is a Managed HSM, which holds keys only and is not supported; \
                 certificates are read from a Key Vault (*.vault.azure.net) secret"
            ));
        }
    }
    let Some(cloud) = Cloud::ALL
        .into_iter()
        .find(|c| host.ends_with(&format!(".{}", c.vault_suffix())))
    else {
        let suffixes: Vec<&str> = Cloud::ALL.iter().map(|c| c.vault_suffix()).collect();
        return Err(format!(
            "the host {host} is not a Key Vault host: expected {{vault}}.{} (or an entry of [vault] allowed_hosts for a development vault)",
            suffixes.join(", {vault}.")
        ));
    };
    if let Some(port) = port {
        return Err(format!(
            "the port {port} is not used by Key Vault: {host} is only reached on 443"
        ));
    }
    let vault = &host[..host.len() - cloud.vault_suffix().len() - 1];
    check_vault_name(vault).map_err(|reason| format!("the vault name {vault:?} {reason}"))?;
    Ok(cloud)
}

fn check_vault_name(vault: &str) -> Result<(), &'static str> {
    if vault.contains('.') {
        return Err("must be one DNS label (no dots)");
    }
    if !(3..=24).contains(&vault.len()) {
        return Err("must be 3 to 24 characters long");
    }
    if !vault.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
        return Err("may contain only letters, digits and dashes");
    }
    if !vault.starts_with(|c: char| c.is_ascii_alphabetic()) {
        return Err("must start with a letter");
    }
    if vault.ends_with('-') {
        return Err("must not end with a dash");
    }
    if vault.contains("--") {
        return Err("must not contain consecutive dashes");
    }
    Ok(())
}

fn parse_path(path: &str) -> Result<(ObjectKind, String, Option<String>), String> {
    let trimmed = path.strip_suffix('/').unwrap_or(path);
    let segments: Vec<&str> = trimmed.split('/').skip(1).collect();
    let Some(&collection) = segments.first().filter(|s| !s.is_empty()) else {
        return Err(format!("the path is empty; {EXPECTED}"));
    };
    let kind = if collection.eq_ignore_ascii_case("secrets") {
        ObjectKind::Secret
    } else if collection.eq_ignore_ascii_case("certificates") {
        ObjectKind::Certificate
    } else if collection.eq_ignore_ascii_case("keys") {
        return Err(
            "it names a key (/keys/…); a certificate is read through its secret: use /secrets/{name} or /certificates/{name}"
                .to_owned(),
        );
    } else {
        return Err(format!(
            "the collection {collection:?} is not \"secrets\" or \"certificates\"; {EXPECTED}"
        ));
    };
    let collection = kind.collection();
    let name = match segments.get(1) {
        Some(name) if !name.is_empty() => *name,
        _ => return Err(format!("it has no {collection} name after /{collection}/")),
    };
    check_name(name).map_err(|reason| format!("the {collection} name {name:?} {reason}"))?;
    let version = match segments.get(2) {
        None => None,
        Some(&"") => return Err("the path has an empty segment (`//`)".to_owned()),
        Some(v) => Some(check_version(v)?),
    };
    if segments.len() > 3 {
        return Err(format!(
            "unexpected path after the version: /{}; {EXPECTED}",
            segments[3..].join("/")
        ));
    }
    Ok((kind, name.to_owned(), version))
}

fn check_name(name: &str) -> Result<(), &'static str> {
    if name.len() > 127 {
        return Err("is longer than 127 characters");
    }
    if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
        return Err("may contain only letters, digits and dashes");
    }
    Ok(())
}

fn check_version(version: &str) -> Result<String, String> {
    if version.len() != 32 || !version.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(format!(
            "the version {version:?} is not a Key Vault version (32 hex digits, e.g. 06a7e4e3e63c431d8245883d2069d786)"
        ));
    }
    Ok(version.to_ascii_lowercase())
}
