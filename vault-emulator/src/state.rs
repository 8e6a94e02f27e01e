//! The vault's contents and identities, kept in memory and written to `vault.json` in the state
//! directory (atomically: a temporary file renamed over the old one) after every change.

use std::collections::BTreeMap;
use std::path::Path;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::api_error::ApiError;
use crate::certs::{self, GeneratedKey, Imported};
use crate::policy::{CertificatePolicy, PKCS12};
use crate::EmulatorError;

pub(crate) const STATE_FILE: &str = "vault.json";
const STATE_FORMAT: u32 = 1;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Identity {
    pub client_id: String,
    pub object_id: String,
    pub secret_permissions: Vec<String>,
    pub certificate_permissions: Vec<String>,
}

impl Identity {
    pub fn allows(&self, kind: PermissionKind, permission: &str) -> bool {
        let list = match kind {
            PermissionKind::Secrets => &self.secret_permissions,
            PermissionKind::Certificates => &self.certificate_permissions,
        };
        list.iter()
            .any(|p| p.eq_ignore_ascii_case(permission) || p.eq_ignore_ascii_case("all"))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PermissionKind {
    Secrets,
    Certificates,
}

impl PermissionKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Secrets => "secrets",
            Self::Certificates => "certificates",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct SecretVersion {
    pub version: String,
    pub value: String,
    pub content_type: Option<String>,
    pub enabled: bool,
    pub nbf: Option<i64>,
    pub exp: Option<i64>,
    pub created: i64,
    pub updated: i64,
    pub tags: Option<BTreeMap<String, String>>,
    /// Backs a certificate (`managed: true`, `kid`).
    pub managed: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct SecretEntry {
    pub name: String,
    /// Oldest first.
    pub versions: Vec<SecretVersion>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct CertificateVersion {
    pub version: String,
    /// Base64 DER, leaf first.
    pub chain: Vec<String>,
    pub x5t: String,
    pub enabled: bool,
    pub nbf: i64,
    pub exp: i64,
    pub created: i64,
    pub updated: i64,
    pub tags: Option<BTreeMap<String, String>>,
    /// Made by `create` (the bundle then carries `pending.id`).
    pub from_create: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct PendingOperation {
    pub request_id: String,
    pub csr: String,
    /// `inProgress`, `completed` or `failed`.
    pub status: String,
    pub error: Option<(String, String)>,
    pub ready_at_ms: i64,
    pub created: i64,
    /// Base64 PKCS#8 and algorithm (`rsa`, `p256`, `p384`) until the certificate is made.
    pub key: Option<(String, String)>,
    pub enabled: bool,
    pub tags: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct CertificateEntry {
    pub name: String,
    pub policy: CertificatePolicy,
    /// Oldest first.
    pub versions: Vec<CertificateVersion>,
    pub pending: Option<PendingOperation>,
}

/// Attributes a client may set.
#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct AttributesInput {
    pub enabled: Option<bool>,
    pub nbf: Option<i64>,
    pub exp: Option<i64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Vault {
    pub format: u32,
    pub tenant_id: String,
    pub default_client_id: String,
    /// Hex HMAC key that signs the access tokens the emulator issues.
    pub token_key: String,
    pub app_service_header: String,
    pub identities: BTreeMap<String, Identity>,
    pub secrets: BTreeMap<String, SecretEntry>,
    pub certificates: BTreeMap<String, CertificateEntry>,
}

pub(crate) fn all_permissions() -> Vec<String> {
    vec!["all".to_owned()]
}

impl Vault {
    pub fn new() -> Self {
        let client_id = certs::new_uuid();
        let mut identities = BTreeMap::new();
        identities.insert(
            client_id.clone(),
            Identity {
                client_id: client_id.clone(),
                object_id: certs::new_uuid(),
                secret_permissions: all_permissions(),
                certificate_permissions: all_permissions(),
            },
        );
        Self {
            format: STATE_FORMAT,
            tenant_id: certs::new_uuid(),
            default_client_id: client_id,
            token_key: hex::encode(certs::random_bytes::<32>()),
            app_service_header: hex::encode(certs::random_bytes::<16>()),
            identities,
            secrets: BTreeMap::new(),
            certificates: BTreeMap::new(),
        }
    }

    /// Loads `dir/vault.json`, or makes a new vault if there is none.
    pub fn load_or_create(dir: &Path) -> Result<Self, EmulatorError> {
        let path = dir.join(STATE_FILE);
        match std::fs::read(&path) {
            Ok(bytes) => {
                let vault: Vault =
                    serde_json::from_slice(&bytes).map_err(|e| EmulatorError::State {
                        path: path.clone(),
                        detail: e.to_string(),
                    })?;
                if vault.format != STATE_FORMAT {
                    return Err(EmulatorError::State {
                        path,
                        detail: format!(
                            "format {} is not the supported {STATE_FORMAT}",
                            vault.format
                        ),
                    });
                }
                Ok(vault)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let vault = Self::new();
                vault.save(dir)?;
                Ok(vault)
            }
            Err(source) => Err(EmulatorError::Io {
                action: "cannot read",
                path,
                source,
            }),
        }
    }

    pub fn save(&self, dir: &Path) -> Result<(), EmulatorError> {
        let path = dir.join(STATE_FILE);
        let io = |action, source| EmulatorError::Io {
            action,
            path: path.clone(),
            source,
        };
        let json = serde_json::to_vec_pretty(self).map_err(|e| io("cannot encode", e.into()))?;
        let mut file = tempfile::NamedTempFile::new_in(dir)
            .map_err(|e| io("cannot create a temporary file for", e))?;
        std::io::Write::write_all(&mut file, &json).map_err(|e| io("cannot write", e))?;
        file.as_file()
            .sync_all()
            .map_err(|e| io("cannot sync", e))?;
        file.persist(&path)
            .map_err(|e| io("cannot replace", e.error))?;
        Ok(())
    }

    pub fn identity(&self, client_id: &str) -> Option<&Identity> {
        self.identities.get(&client_id.to_ascii_lowercase())
    }

    pub fn identity_by_object_id(&self, object_id: &str) -> Option<&Identity> {
        self.identities
            .values()
            .find(|i| i.object_id.eq_ignore_ascii_case(object_id))
    }

    pub fn put_identity(
        &mut self,
        client_id: &str,
        secrets: Vec<String>,
        certificates: Vec<String>,
    ) {
        let key = client_id.to_ascii_lowercase();
        let object_id = self
            .identities
            .get(&key)
            .map(|i| i.object_id.clone())
            .unwrap_or_else(certs::new_uuid);
        self.identities.insert(
            key,
            Identity {
                client_id: client_id.to_owned(),
                object_id,
                secret_permissions: secrets,
                certificate_permissions: certificates,
            },
        );
    }

    /// Removes an identity's access policy; the identity still gets tokens.
    pub fn revoke_identity(&mut self, client_id: &str) {
        if let Some(identity) = self.identities.get_mut(&client_id.to_ascii_lowercase()) {
            identity.secret_permissions.clear();
            identity.certificate_permissions.clear();
        }
    }

    // ---- secrets -------------------------------------------------------------------------

    pub fn set_secret(
        &mut self,
        name: &str,
        value: String,
        content_type: Option<String>,
        attributes: AttributesInput,
        tags: Option<BTreeMap<String, String>>,
        now: i64,
    ) -> (String, SecretVersion) {
        self.push_secret_version(
            name,
            SecretVersion {
                version: certs::new_version(),
                value,
                content_type,
                enabled: attributes.enabled.unwrap_or(true),
                nbf: attributes.nbf,
                exp: attributes.exp,
                created: now,
                updated: now,
                tags,
                managed: false,
            },
        )
    }

    fn push_secret_version(
        &mut self,
        name: &str,
        version: SecretVersion,
    ) -> (String, SecretVersion) {
        let entry = self
            .secrets
            .entry(name.to_ascii_lowercase())
            .or_insert_with(|| SecretEntry {
                name: name.to_owned(),
                versions: Vec::new(),
            });
        entry.versions.push(version.clone());
        (entry.name.clone(), version)
    }

    fn find_secret(
        &self,
        name: &str,
        version: Option<&str>,
    ) -> Result<(&SecretEntry, &SecretVersion), ApiError> {
        let not_found = || match version {
            Some(v) => ApiError::secret_not_found(&format!("{name}/{v}")),
            None => ApiError::secret_not_found(name),
        };
        let entry = self
            .secrets
            .get(&name.to_ascii_lowercase())
            .ok_or_else(not_found)?;
        let found = match version {
            Some(v) => entry
                .versions
                .iter()
                .find(|s| s.version.eq_ignore_ascii_case(v)),
            None => entry.versions.last(),
        };
        Ok((entry, found.ok_or_else(not_found)?))
    }

    /// GET semantics: a disabled version answers 403 `SecretDisabled` (no fall-back to an older
    /// version, as recorded).
    pub fn get_secret(
        &self,
        name: &str,
        version: Option<&str>,
    ) -> Result<(&SecretEntry, &SecretVersion), ApiError> {
        let (entry, found) = self.find_secret(name, version)?;
        if !found.enabled {
            return Err(ApiError::secret_disabled("get"));
        }
        Ok((entry, found))
    }

    pub fn secret_versions(&self, name: &str) -> Option<&SecretEntry> {
        self.secrets.get(&name.to_ascii_lowercase())
    }

    pub fn update_secret(
        &mut self,
        name: &str,
        version: Option<&str>,
        content_type: Option<String>,
        attributes: AttributesInput,
        tags: Option<BTreeMap<String, String>>,
        now: i64,
    ) -> Result<(String, SecretVersion), ApiError> {
        let (entry, found) = self.find_secret(name, version)?;
        let (key, target) = (entry.name.to_ascii_lowercase(), found.version.clone());
        let entry = self
            .secrets
            .get_mut(&key)
            .ok_or_else(|| ApiError::secret_not_found(name))?;
        let name = entry.name.clone();
        let found = entry
            .versions
            .iter_mut()
            .find(|s| s.version == target)
            .ok_or_else(|| ApiError::secret_not_found(&name))?;
        if let Some(enabled) = attributes.enabled {
            found.enabled = enabled;
        }
        if attributes.nbf.is_some() {
            found.nbf = attributes.nbf;
        }
        if attributes.exp.is_some() {
            found.exp = attributes.exp;
        }
        if content_type.is_some() {
            found.content_type = content_type;
        }
        if tags.is_some() {
            found.tags = tags;
        }
        found.updated = now;
        Ok((name, found.clone()))
    }

    pub fn delete_secret(&mut self, name: &str) -> Result<(String, SecretVersion), ApiError> {
        let entry = self
            .secrets
            .remove(&name.to_ascii_lowercase())
            .ok_or_else(|| ApiError::secret_not_found(name))?;
        let last = entry
            .versions
            .last()
            .cloned()
            .ok_or_else(|| ApiError::secret_not_found(name))?;
        Ok((entry.name, last))
    }

    // ---- certificates --------------------------------------------------------------------

    /// Stores a new certificate version and its backing secret (same name and version).
    #[allow(clippy::too_many_arguments)]
    fn add_certificate_version(
        &mut self,
        name: &str,
        policy: CertificatePolicy,
        chain: &[Vec<u8>],
        key_pkcs8: &[u8],
        enabled: bool,
        tags: Option<BTreeMap<String, String>>,
        from_create: bool,
        now: i64,
    ) -> Result<String, ApiError> {
        let leaf = chain
            .first()
            .ok_or_else(|| ApiError::bad_parameter("the certificate chain is empty"))?;
        let (nbf, exp) = certs::validity(leaf).map_err(ApiError::bad_parameter)?;
        let content_type = policy.content_type().unwrap_or(PKCS12).to_owned();
        let value = certs::secret_value(&content_type, chain, key_pkcs8)
            .map_err(ApiError::bad_parameter)?;
        let version = certs::new_version();
        let entry = self
            .certificates
            .entry(name.to_ascii_lowercase())
            .or_insert_with(|| CertificateEntry {
                name: name.to_owned(),
                policy: CertificatePolicy::default(),
                versions: Vec::new(),
                pending: None,
            });
        entry.policy = policy;
        entry.versions.push(CertificateVersion {
            version: version.clone(),
            chain: chain.iter().map(|c| STANDARD.encode(c)).collect(),
            x5t: certs::x5t(leaf),
            enabled,
            nbf,
            exp,
            created: now,
            updated: now,
            tags: tags.clone(),
            from_create,
        });
        let cert_name = entry.name.clone();
        self.push_secret_version(
            &cert_name,
            SecretVersion {
                version: version.clone(),
                value,
                content_type: Some(content_type),
                enabled,
                nbf: Some(nbf),
                exp: Some(exp),
                created: now,
                updated: now,
                tags,
                managed: true,
            },
        );
        Ok(version)
    }

    /// Import: the policy is read from the certificate; a given policy's key, secret, lifetime
    /// and issuer properties override it.
    pub fn import_certificate(
        &mut self,
        name: &str,
        imported: &Imported,
        policy: Option<CertificatePolicy>,
        enabled: Option<bool>,
        tags: Option<BTreeMap<String, String>>,
        now: i64,
    ) -> Result<String, ApiError> {
        let leaf = imported
            .chain
            .first()
            .ok_or_else(|| ApiError::bad_parameter("the certificate holds no certificate"))?;
        let given = policy.unwrap_or_default();
        let content_type = given
            .content_type()
            .map(str::to_owned)
            .unwrap_or_else(|| imported.given_as.to_owned());
        if content_type != PKCS12 && content_type != crate::policy::PEM {
            return Err(ApiError::bad_parameter(format!(
                "Content type '{content_type}' is not supported; use application/x-pkcs12 or application/x-pem-file"
            )));
        }
        let mut resolved = certs::policy_from_certificate(leaf, &content_type, now)
            .map_err(ApiError::bad_parameter)?;
        if let (Some(given_key), Some(key)) = (given.key_props, resolved.key_props.as_mut()) {
            if let Some(exportable) = given_key.exportable {
                key.exportable = Some(exportable);
            }
            if let Some(reuse) = given_key.reuse_key {
                key.reuse_key = Some(reuse);
            }
        }
        if given.lifetime_actions.is_some() {
            resolved.lifetime_actions = given.lifetime_actions;
        }
        if given.issuer.is_some() {
            resolved.issuer = given.issuer;
        }
        self.add_certificate_version(
            name,
            resolved,
            &imported.chain,
            &imported.key_pkcs8,
            enabled.unwrap_or(true),
            tags,
            false,
            now,
        )
    }

    /// `create`: records the pending operation; [`settle`](Self::settle) makes the certificate
    /// once `ready_at_ms` has passed.
    #[allow(clippy::too_many_arguments)]
    pub fn begin_create(
        &mut self,
        name: &str,
        policy: CertificatePolicy,
        key: &GeneratedKey,
        alg: &str,
        csr: &[u8],
        enabled: bool,
        tags: Option<BTreeMap<String, String>>,
        now: i64,
        ready_at_ms: i64,
    ) -> Result<&CertificateEntry, ApiError> {
        let entry = self
            .certificates
            .entry(name.to_ascii_lowercase())
            .or_insert_with(|| CertificateEntry {
                name: name.to_owned(),
                policy: CertificatePolicy::default(),
                versions: Vec::new(),
                pending: None,
            });
        if entry
            .pending
            .as_ref()
            .is_some_and(|p| p.status == "inProgress")
        {
            return Err(ApiError::conflict(format!(
                "Certificate {} is currently being operated and cannot be updated.",
                entry.name
            )));
        }
        entry.policy = policy;
        entry.pending = Some(PendingOperation {
            request_id: certs::new_version(),
            csr: STANDARD.encode(csr),
            status: "inProgress".to_owned(),
            error: None,
            ready_at_ms,
            created: now,
            key: Some((STANDARD.encode(&key.pkcs8), alg.to_owned())),
            enabled,
            tags,
        });
        Ok(entry)
    }

    /// Completes the pending operations that are due. Returns whether anything changed.
    pub fn settle(&mut self, now_ms: i64) -> bool {
        let due: Vec<String> = self
            .certificates
            .iter()
            .filter(|(_, e)| {
                e.pending
                    .as_ref()
                    .is_some_and(|p| p.status == "inProgress" && p.ready_at_ms <= now_ms)
            })
            .map(|(k, _)| k.clone())
            .collect();
        for key in &due {
            let Some(entry) = self.certificates.get(key) else {
                continue;
            };
            let Some(pending) = entry.pending.clone() else {
                continue;
            };
            let result = Self::make_created_certificate(&entry.policy, &pending, now_ms / 1000);
            let (name, policy) = (entry.name.clone(), entry.policy.clone());
            let outcome = result.and_then(|(chain, key)| {
                self.add_certificate_version(
                    &name,
                    policy,
                    &chain,
                    &key,
                    pending.enabled,
                    pending.tags.clone(),
                    true,
                    now_ms / 1000,
                )
                .map_err(|e| e.message)
            });
            if let Some(pending) = self
                .certificates
                .get_mut(key)
                .and_then(|e| e.pending.as_mut())
            {
                pending.key = None;
                match outcome {
                    Ok(_) => pending.status = "completed".to_owned(),
                    Err(message) => {
                        pending.status = "failed".to_owned();
                        pending.error = Some(("BadParameter".to_owned(), message));
                    }
                }
            }
        }
        !due.is_empty()
    }

    fn make_created_certificate(
        policy: &CertificatePolicy,
        pending: &PendingOperation,
        now: i64,
    ) -> Result<(Vec<Vec<u8>>, Vec<u8>), String> {
        let (key_b64, alg) = pending
            .key
            .as_ref()
            .ok_or("the pending operation lost its key")?;
        let pkcs8 = STANDARD.decode(key_b64).map_err(|e| e.to_string())?;
        let key = GeneratedKey {
            pkcs8,
            alg: match alg.as_str() {
                "p256" => &rcgen::PKCS_ECDSA_P256_SHA256,
                "p384" => &rcgen::PKCS_ECDSA_P384_SHA384,
                _ => &rcgen::PKCS_RSA_SHA256,
            },
        };
        let key_pair = key.key_pair()?;
        let params = certs::params_from_policy(policy, now)?;
        let der = certs::self_signed(params, &key_pair)?;
        Ok((vec![der], key.pkcs8))
    }

    pub fn certificate(&self, name: &str) -> Option<&CertificateEntry> {
        self.certificates.get(&name.to_ascii_lowercase())
    }

    pub fn get_certificate(
        &self,
        name: &str,
        version: Option<&str>,
    ) -> Result<(&CertificateEntry, &CertificateVersion), ApiError> {
        let not_found = || match version {
            Some(v) => ApiError::certificate_not_found(&format!("{name}/{v}")),
            None => ApiError::certificate_not_found(name),
        };
        let entry = self.certificate(name).ok_or_else(not_found)?;
        let found = match version {
            Some(v) => entry
                .versions
                .iter()
                .find(|c| c.version.eq_ignore_ascii_case(v)),
            None => entry.versions.last(),
        };
        Ok((entry, found.ok_or_else(not_found)?))
    }
}
