//! A local Azure Key Vault data plane and managed-identity token endpoint, speaking the real wire
//! protocol, for the demo (`cargo xtask run`) and for tests.
//!
//! * **Vault** (https only, on [`EmulatorConfig::bind`]): secrets (set, get latest / by version,
//!   list versions, update, delete) and certificates (import PFX or PEM, create self-signed with a
//!   pending operation, get, list versions, get policy), api-versions
//!   [`SUPPORTED_API_VERSIONS`]. Creating or importing a certificate makes its backing secret
//!   (`managed: true`, `kid`) holding a password-less PKCS#12 (3DES, SHA-1 MAC, like Key Vault's
//!   own export) or a PEM bundle, per the policy's `secret_props.contentType`.
//! * **Auth** as Key Vault does it: a request without a valid bearer token gets 401 with the
//!   `WWW-Authenticate` challenge; tokens are opaque strings issued by the token endpoints to a
//!   known identity; each identity has an access policy (secret and certificate permissions) and a
//!   denial is Key Vault's 403 `AccessDenied` body.
//! * **Identity** (plain http, like IMDS): `GET /metadata/identity/oauth2/token` (IMDS style,
//!   `Metadata: true`) and `GET /msi/token` (App Service style, `X-IDENTITY-HEADER`).
//! * **Control**: faults (delays, error statuses, dropped connections), identities, imports, over
//!   the [`EmulatorHandle`] or over HTTP under `/_emulator/` (see the `control` module docs).
//!
//! The state directory keeps the CA (`ca.pem`, the file clients trust), the https key and the
//! vault contents (`vault.json`), so a restart keeps them.
//!
//! ```no_run
//! use vault_emulator::{Emulator, EmulatorConfig};
//!
//! let dir = tempfile::tempdir()?;
//! let emulator = Emulator::start(EmulatorConfig::new(dir.path()))?;
//! let pfx = std::fs::read("site.pfx")?;
//! let version = emulator.import_certificate("site", &pfx, Some("password"))?;
//! println!("{}secrets/site/{version}", emulator.info().vault_url);
//! emulator.stop();
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![forbid(unsafe_code)]

mod api_error;
mod certs;
pub mod control;
mod error;
mod identity;
mod pfx;
mod policy;
mod server;
mod state;
mod tls;
mod vault_api;
mod wire;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use error::EmulatorError;
pub use vault_api::SUPPORTED_API_VERSIONS;

use api_error::ApiError;
use server::{Running, Shared};

/// The file `vault-emulator --state DIR` writes into `DIR`.
pub const INFO_FILE: &str = "emulator.json";

/// How to start an emulator.
#[derive(Debug, Clone)]
pub struct EmulatorConfig {
    /// The https vault's address (`127.0.0.1:0` picks a free port).
    pub bind: SocketAddr,
    /// Where the CA, the https key and the vault contents live.
    pub state_dir: PathBuf,
    /// The token endpoints' (plain http) address; `None`: the vault's IP, a free port.
    pub identity_bind: Option<SocketAddr>,
    /// How long a `create` stays `inProgress` before it completes.
    pub pending_delay: Duration,
    /// Lifetime of the access tokens the identity endpoints issue.
    pub token_lifetime: Duration,
}

impl EmulatorConfig {
    /// Loopback, free ports, 1 s pending operations, 1 h tokens.
    pub fn new(state_dir: impl Into<PathBuf>) -> Self {
        Self {
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            state_dir: state_dir.into(),
            identity_bind: None,
            pending_delay: Duration::from_secs(1),
            token_lifetime: Duration::from_secs(3600),
        }
    }
}

/// Where a running emulator is and who may use it; serialised as `emulator.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmulatorInfo {
    /// `https://localhost:PORT/`.
    pub vault_url: String,
    /// The full IMDS-style URL: `http://127.0.0.1:PORT/metadata/identity/oauth2/token`.
    pub identity_endpoint: String,
    /// The App Service-style URL (`IDENTITY_ENDPOINT`): `http://127.0.0.1:PORT/msi/token`.
    pub app_service_endpoint: String,
    /// The `X-IDENTITY-HEADER` value (`IDENTITY_HEADER`).
    pub app_service_header: String,
    /// `http://127.0.0.1:PORT/_emulator/`.
    pub control_url: String,
    /// PEM file of the CA that signed the vault's https certificate.
    pub ca_file: PathBuf,
    /// The same PEM.
    pub ca_pem: String,
    /// An identity with every permission on the vault.
    pub client_id: String,
    pub tenant_id: String,
}

/// A fault the emulator injects into requests whose path starts with `path_prefix`
/// (`/secrets/`, `/certificates/`, `/metadata/identity`, `/msi/token`, or `/` for all).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fault {
    pub path_prefix: String,
    pub kind: FaultKind,
    /// How many requests it hits; `None`: until cleared.
    #[serde(default)]
    pub count: Option<u32>,
}

/// What a [`Fault`] does. In JSON: `{"delay_ms": 500}`, `{"status": 503}`, `"drop_connection"`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "FaultKindWire", into = "FaultKindWire")]
pub enum FaultKind {
    /// Answer normally after this delay.
    Delay(Duration),
    /// Answer with this status and Key Vault's error body (429 comes with `Retry-After: 1`).
    Status(u16),
    /// Close the connection without answering.
    DropConnection,
}

#[derive(Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum FaultKindWire {
    DelayMs(u64),
    Status(u16),
    DropConnection,
}

impl From<FaultKindWire> for FaultKind {
    fn from(wire: FaultKindWire) -> Self {
        match wire {
            FaultKindWire::DelayMs(ms) => Self::Delay(Duration::from_millis(ms)),
            FaultKindWire::Status(status) => Self::Status(status),
            FaultKindWire::DropConnection => Self::DropConnection,
        }
    }
}

impl From<FaultKind> for FaultKindWire {
    fn from(kind: FaultKind) -> Self {
        match kind {
            FaultKind::Delay(d) => Self::DelayMs(u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            FaultKind::Status(status) => Self::Status(status),
            FaultKind::DropConnection => Self::DropConnection,
        }
    }
}

/// Starts emulators.
pub struct Emulator;

impl Emulator {
    /// Loads or creates the state directory, binds both listeners and runs the servers on their
    /// own thread with their own actix system (so plain `#[test]`s and tokio tests can use it).
    pub fn start(config: EmulatorConfig) -> Result<EmulatorHandle, EmulatorError> {
        Ok(EmulatorHandle {
            running: Some(server::start(config)?),
        })
    }
}

/// A running emulator; stopped by [`stop`](Self::stop) or when dropped.
pub struct EmulatorHandle {
    running: Option<Running>,
}

impl std::fmt::Debug for EmulatorHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmulatorHandle")
            .field("vault_url", &self.info().vault_url)
            .finish_non_exhaustive()
    }
}

/// Imports a certificate (PFX bytes or PEM text) as the REST import does, with the policy read
/// from the certificate.
pub(crate) fn import(
    shared: &Shared,
    name: &str,
    bytes: &[u8],
    password: Option<&str>,
) -> Result<String, ApiError> {
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
        return Err(ApiError::bad_parameter(format!(
            "invalid certificate name '{name}'"
        )));
    }
    let imported = certs::decode_import(bytes, password).map_err(|e| {
        ApiError::bad_parameter(format!("The certificate could not be imported: {e}"))
    })?;
    let now = server::unix_now();
    shared.mutate(|v| v.import_certificate(name, &imported, None, None, None, now))
}

impl EmulatorHandle {
    fn shared(&self) -> &Shared {
        &self
            .running
            .as_ref()
            .expect("the emulator is running until dropped")
            .shared
    }

    pub fn info(&self) -> &EmulatorInfo {
        &self.shared().info
    }

    /// Writes [`info`](Self::info) as JSON to `path` (atomically).
    pub fn write_info(&self, path: &Path) -> Result<(), EmulatorError> {
        let json = serde_json::to_string_pretty(self.info()).map_err(|e| EmulatorError::Io {
            action: "cannot encode",
            path: path.to_owned(),
            source: e.into(),
        })?;
        tls::write(path, &json, false)
    }

    /// Imports a certificate: PFX (DER bytes) or PEM text with key and chain. Same effect as
    /// `POST /certificates/{name}/import`; returns the new version.
    pub fn import_certificate(
        &self,
        name: &str,
        pfx_or_pem: &[u8],
        password: Option<&str>,
    ) -> Result<String, EmulatorError> {
        Ok(import(self.shared(), name, pfx_or_pem, password)?)
    }

    /// Sets a secret as `PUT /secrets/{name}` does; returns the new version.
    pub fn set_secret(&self, name: &str, value: &str) -> Result<String, EmulatorError> {
        let now = server::unix_now();
        let (_, version) = self.shared().mutate(|v| {
            Ok(v.set_secret(name, value.to_owned(), None, Default::default(), None, now))
        })?;
        Ok(version.version)
    }

    /// Enables or disables a secret version (`None`: the latest). A disabled version answers
    /// 403 `SecretDisabled`. Does nothing when there is no such secret.
    pub fn set_secret_enabled(&self, name: &str, version: Option<&str>, enabled: bool) {
        let attributes = state::AttributesInput {
            enabled: Some(enabled),
            ..Default::default()
        };
        let now = server::unix_now();
        let _ = self
            .shared()
            .mutate(|v| v.update_secret(name, version, None, attributes, None, now));
    }

    /// Deletes a secret (all versions): 404 `SecretNotFound` from then on.
    pub fn delete_secret(&self, name: &str) {
        let _ = self.shared().mutate(|v| v.delete_secret(name));
    }

    /// Adds (or replaces) an identity and its access policy. Permissions: secrets `get`, `list`,
    /// `set`, `delete`; certificates `get`, `list`, `create`, `import`, `update`, `delete`;
    /// `all` grants every one.
    pub fn add_identity(
        &self,
        client_id: &str,
        secret_permissions: &[&str],
        certificate_permissions: &[&str],
    ) {
        let own = |list: &[&str]| list.iter().map(|p| (*p).to_owned()).collect();
        let _ = self.shared().mutate(|v| {
            v.put_identity(
                client_id,
                own(secret_permissions),
                own(certificate_permissions),
            );
            Ok(())
        });
    }

    /// Removes the identity's access policy: its next vault call gets 403 `AccessDenied`. It
    /// still gets tokens.
    pub fn revoke_identity(&self, client_id: &str) {
        let _ = self.shared().mutate(|v| {
            v.revoke_identity(client_id);
            Ok(())
        });
    }

    /// Removes the identity: the token endpoints answer 400 "Identity not found".
    pub fn remove_identity(&self, client_id: &str) {
        let _ = self.shared().mutate(|v| {
            v.identities.remove(&client_id.to_ascii_lowercase());
            Ok(())
        });
    }

    /// A bearer token for a known identity, as the token endpoints would issue it.
    pub fn access_token(&self, client_id: &str) -> Option<String> {
        let shared = self.shared();
        let vault = shared.vault();
        let identity = vault.identity(client_id)?;
        Some(identity::issue_token(
            &vault,
            &identity.client_id,
            server::unix_now() + shared.token_lifetime_secs(),
        ))
    }

    pub fn inject_fault(&self, fault: Fault) {
        self.shared().add_fault(fault);
    }

    pub fn clear_faults(&self) {
        self.shared().clear_faults();
    }

    /// Stops both servers and waits for the server thread.
    pub fn stop(mut self) {
        if let Some(running) = self.running.take() {
            running.stop();
        }
    }
}

impl Drop for EmulatorHandle {
    fn drop(&mut self) {
        if let Some(running) = self.running.take() {
            running.stop();
        }
    }
}
