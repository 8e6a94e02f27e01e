//! Building the token source and the Key Vault client from `[identity]` and `[vault]`.

use std::sync::Arc;

use anyhow::{bail, Context as _};
use identity::{
    AppService, ClientSecret, ManagedIdentity, StaticToken, TokenCache, TokenSource,
    UserAssignedId, WorkloadIdentity,
};
use vault_client::{SecretId, VaultClient, VaultClientConfig};

use crate::config::{Config, IdentityConfig, IdentityKind};

/// The environment variable a `client-secret` identity reads its secret from by default.
const DEFAULT_CLIENT_SECRET_ENV: &str = "AZURE_CLIENT_SECRET";
/// The environment variable a `static` identity reads its token from by default.
const DEFAULT_STATIC_TOKEN_ENV: &str = "GATEWAY_STATIC_TOKEN";

/// The token source `[identity]` describes, behind a per-scope cache.
pub fn token_cache(config: &IdentityConfig) -> anyhow::Result<TokenCache> {
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let user_assigned = match (&config.client_id, &config.object_id, &config.msi_res_id) {
        (Some(id), None, None) => Some(UserAssignedId::ClientId(id.clone())),
        (None, Some(id), None) => Some(UserAssignedId::ObjectId(id.clone())),
        (None, None, Some(id)) => Some(UserAssignedId::ResourceId(id.clone())),
        (None, None, None) => None,
        _ => bail!("[identity]: give at most one of client_id, object_id and msi_res_id"),
    };
    let source: Arc<dyn TokenSource> = match config.kind {
        IdentityKind::ManagedIdentity => {
            let mut source = ManagedIdentity::new().with_user_assigned(user_assigned);
            if let Some(endpoint) = &config.endpoint {
                source = source
                    .with_endpoint(endpoint)
                    .context("[identity] endpoint")?;
            }
            Arc::new(source)
        }
        IdentityKind::AppService => Arc::new(
            AppService::from_env()
                .context("[identity] kind = \"app-service\"")?
                .with_user_assigned(user_assigned),
        ),
        IdentityKind::WorkloadIdentity => {
            let overrides = |name: &str| match name {
                "AZURE_CLIENT_ID" => config.client_id.clone().or_else(|| env(name)),
                "AZURE_TENANT_ID" => config.tenant_id.clone().or_else(|| env(name)),
                "AZURE_AUTHORITY_HOST" => config.authority_host.clone().or_else(|| env(name)),
                _ => env(name),
            };
            Arc::new(
                WorkloadIdentity::from_env_with(&overrides)
                    .context("[identity] kind = \"workload-identity\"")?,
            )
        }
        IdentityKind::ClientSecret => {
            let secret_env = config
                .client_secret_env
                .as_deref()
                .unwrap_or(DEFAULT_CLIENT_SECRET_ENV);
            let secret = env(secret_env).with_context(|| {
                format!("[identity] kind = \"client-secret\": the environment variable `{secret_env}` is not set")
            })?;
            let tenant = config
                .tenant_id
                .clone()
                .or_else(|| env("AZURE_TENANT_ID"))
                .context(
                    "[identity] kind = \"client-secret\" needs tenant_id (or AZURE_TENANT_ID)",
                )?;
            let client_id = config
                .client_id
                .clone()
                .or_else(|| env("AZURE_CLIENT_ID"))
                .context(
                    "[identity] kind = \"client-secret\" needs client_id (or AZURE_CLIENT_ID)",
                )?;
            let mut source = ClientSecret::new(&tenant, &client_id, secret)?;
            if let Some(host) = config
                .authority_host
                .clone()
                .or_else(|| env("AZURE_AUTHORITY_HOST"))
            {
                source = source.with_authority_host(&host)?;
            }
            Arc::new(source)
        }
        IdentityKind::Static => {
            let token_env = config
                .token_env
                .as_deref()
                .unwrap_or(DEFAULT_STATIC_TOKEN_ENV);
            let token = env(token_env).with_context(|| {
                format!("[identity] kind = \"static\": the environment variable `{token_env}` is not set")
            })?;
            Arc::new(StaticToken::new(token))
        }
    };
    Ok(TokenCache::new(source))
}

/// The Key Vault client for this config, or `None` when no listener uses Key Vault.
pub fn vault_client(config: &Config) -> anyhow::Result<Option<VaultClient>> {
    let Some(identity) = &config.identity else {
        return Ok(None);
    };
    let tokens = Arc::new(token_cache(identity)?);
    let extra_root_pem = match &config.vault.ca_file {
        Some(path) => Some(
            std::fs::read(path)
                .with_context(|| format!("[vault] ca_file: cannot read {}", path.display()))?,
        ),
        None => None,
    };
    let client = VaultClient::new(VaultClientConfig {
        tokens,
        extra_root_pem,
        allowed_hosts: config.vault.allowed_hosts.clone(),
        retry: Default::default(),
    })
    .context("Key Vault client")?;
    Ok(Some(client))
}

/// Parses a secret URI with the config's development allowance.
pub fn secret_id(config: &Config, uri: &str) -> anyhow::Result<SecretId> {
    Ok(SecretId::parse_with_allowed_hosts(
        uri,
        &config.vault.allowed_hosts,
    )?)
}
