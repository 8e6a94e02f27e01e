//! `gateway check-config`: everything `run` would refuse, found without binding a socket or
//! touching the event log.

use std::time::SystemTime;

use anyhow::{bail, Context as _};

use crate::config::{CertificateSource, Config, Protocol};
use crate::sources;

/// One line per listener describing what it would serve.
pub fn check(config: &Config) -> anyhow::Result<Vec<String>> {
    let mut report = Vec::new();
    for listener in &config.listeners {
        match (&listener.certificate, listener.protocol) {
            (
                Some(CertificateSource::KeyVault {
                    key_vault_secret_id,
                }),
                Protocol::Https,
            ) => {
                let id = crate::keyvault::secret_id(config, key_vault_secret_id)?;
                let rotation = if id.is_versioned() {
                    "pinned to this version: it will never rotate (use the versionless URI to follow new versions)"
                } else {
                    "versionless: follows new versions"
                };
                report.push(format!(
                    "listener `{}`: https on {}, certificate from Key Vault {id} ({rotation}), {}",
                    listener.name,
                    listener.bind,
                    describe_route(config, listener)
                ));
            }
            (Some(source), Protocol::Https) => {
                let bundle = sources::load(source)
                    .with_context(|| format!("listener `{}`", listener.name))?;
                let validated =
                    match listener::validate(&bundle, &listener.hostnames, SystemTime::now()) {
                        Ok(v) => v,
                        Err(rejection) => {
                            bail!("listener `{}`: {source}: {rejection}", listener.name)
                        }
                    };
                report.push(format!(
                    "listener `{}`: https on {}, certificate {} ({}), expires {}, {}",
                    listener.name,
                    listener.bind,
                    validated.thumbprint(),
                    validated.subject(),
                    crate::audit::format_time_s(validated.not_after()),
                    describe_route(config, listener),
                ));
            }
            _ => {
                report.push(format!(
                    "listener `{}`: {} on {}, {}",
                    listener.name,
                    listener.protocol,
                    listener.bind,
                    describe_route(config, listener)
                ));
            }
        }
    }
    Ok(report)
}

/// Where a listener sends requests, in words.
fn describe_route(config: &Config, listener: &crate::config::ListenerConfig) -> String {
    if let Some(target) = &listener.redirect_to {
        return format!("redirects to listener `{target}`");
    }
    if let Some(url) = &listener.redirect_url {
        return format!("redirects to {url}");
    }
    let rules: Vec<String> = config
        .rules_for(&listener.name)
        .iter()
        .map(|rule| {
            let paths: Vec<String> = rule
                .paths
                .iter()
                .map(|p| match (&p.backend_pool, &p.redirect_url) {
                    (Some(pool), _) => format!("{} → `{pool}`", p.path),
                    (None, Some(url)) => format!("{} → {url}", p.path),
                    (None, None) => p.path.clone(),
                })
                .collect();
            if paths.is_empty() {
                format!(
                    "rule `{}` → backend_pool `{}`",
                    rule.name, rule.backend_pool
                )
            } else {
                format!(
                    "rule `{}` → {}, else backend_pool `{}`",
                    rule.name,
                    paths.join(", "),
                    rule.backend_pool
                )
            }
        })
        .collect();
    rules.join("; ")
}

/// `gateway fetch`: reads one secret from Key Vault with the config's identity and describes the
/// certificate in it, never its key.
pub async fn fetch(config: &Config, uri: &str) -> anyhow::Result<Vec<String>> {
    let id = crate::keyvault::secret_id(config, uri)?;
    let client = crate::keyvault::vault_client(config)?.ok_or_else(|| {
        anyhow::anyhow!(
            "{}: `gateway fetch` needs an [identity] section",
            config.path.display()
        )
    })?;
    let fetched = client.fetch_certificate(&id).await?;
    let mut lines = vec![
        format!("secret:      {}", fetched.id),
        format!("version:     {}", fetched.version),
        format!("content:     {}", fetched.content_type),
        format!("thumbprint:  {} (SHA-256)", fetched.bundle.thumbprint()),
        format!(
            "chain:       {} certificate(s)",
            fetched.bundle.chain().len()
        ),
    ];
    match listener::validate(&fetched.bundle, &[], SystemTime::now()) {
        Ok(validated) => {
            lines.push(format!("subject:     {}", validated.subject()));
            lines.push(format!("issuer:      {}", validated.issuer()));
            lines.push(format!("names:       {}", validated.dns_names().join(", ")));
            lines.push(format!(
                "not before:  {}",
                crate::audit::format_time_s(validated.not_before())
            ));
            lines.push(format!(
                "not after:   {}",
                crate::audit::format_time_s(validated.not_after())
            ));
            lines.push(format!("key:         {}", validated.key()));
        }
        Err(rejection) => lines.push(format!("would be rejected: {rejection}")),
    }
    Ok(lines)
}
