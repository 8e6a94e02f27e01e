//! `gateway check-config`: everything `run` would refuse, found without binding a socket or
//! touching the event log.

use std::time::SystemTime;

use anyhow::{bail, Context as _};

use crate::config::{Config, Protocol};
use crate::sources;

/// One line per listener describing what it would serve.
pub fn check(config: &Config) -> anyhow::Result<Vec<String>> {
    let mut report = Vec::new();
    for listener in &config.listeners {
        match (&listener.certificate, listener.protocol) {
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
                    "listener `{}`: https on {}, certificate {} ({}), expires {}",
                    listener.name,
                    listener.bind,
                    validated.thumbprint(),
                    validated.subject(),
                    crate::audit::format_time_s(validated.not_after()),
                ));
            }
            _ => {
                let target = match &listener.redirect_to {
                    Some(target) => format!("redirects to `{target}`"),
                    None => format!(
                        "proxies to backend_pool `{}`",
                        config
                            .pool_for(&listener.name)
                            .map_or("?", |p| p.name.as_str())
                    ),
                };
                report.push(format!(
                    "listener `{}`: {} on {}, {target}",
                    listener.name, listener.protocol, listener.bind
                ));
            }
        }
    }
    Ok(report)
}
