//! The [`TokenSource`] trait and helpers shared by its implementations.

use std::future::Future;
use std::pin::Pin;

use reqwest::Url;

use crate::error::IdentityError;
use crate::token::AccessToken;

/// A boxed, `Send` future, so that [`TokenSource`] stays object safe.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Something that hands out access tokens for a scope, e.g. `https://vault.azure.net/.default`.
///
/// Each call of [`fetch`](TokenSource::fetch) asks the endpoint again (with the source's own
/// retries); wrap a source in a [`TokenCache`](crate::TokenCache) to reuse tokens.
pub trait TokenSource: Send + Sync {
    /// A new token for `scope`. Both `https://vault.azure.net/.default` and the bare resource
    /// `https://vault.azure.net` are accepted by every source.
    fn fetch<'a>(&'a self, scope: &'a str) -> BoxFuture<'a, Result<AccessToken, IdentityError>>;

    /// One line for logs and errors: the kind, endpoint and identity, never a secret.
    fn describe(&self) -> String;
}

impl<T: TokenSource + ?Sized> TokenSource for std::sync::Arc<T> {
    fn fetch<'a>(&'a self, scope: &'a str) -> BoxFuture<'a, Result<AccessToken, IdentityError>> {
        (**self).fetch(scope)
    }

    fn describe(&self) -> String {
        (**self).describe()
    }
}

impl<T: TokenSource + ?Sized> TokenSource for Box<T> {
    fn fetch<'a>(&'a self, scope: &'a str) -> BoxFuture<'a, Result<AccessToken, IdentityError>> {
        (**self).fetch(scope)
    }

    fn describe(&self) -> String {
        (**self).describe()
    }
}

/// The resource of a scope, as IMDS and App Service want it: `https://vault.azure.net/.default`
/// becomes `https://vault.azure.net`.
pub(crate) fn scope_to_resource(scope: &str) -> Result<&str, IdentityError> {
    let scope = check_scope(scope)?;
    Ok(scope.strip_suffix("/.default").unwrap_or(scope))
}

/// The v2 scope of a scope or resource, as Entra wants it: `https://vault.azure.net` becomes
/// `https://vault.azure.net/.default`.
pub(crate) fn resource_to_scope(scope: &str) -> Result<String, IdentityError> {
    let scope = check_scope(scope)?;
    Ok(if scope.ends_with("/.default") {
        scope.to_owned()
    } else if scope.ends_with('/') {
        format!("{scope}.default")
    } else {
        format!("{scope}/.default")
    })
}

fn check_scope(scope: &str) -> Result<&str, IdentityError> {
    let trimmed = scope.trim();
    if trimmed.is_empty() || trimmed.contains(char::is_whitespace) {
        return Err(IdentityError::InvalidConfig {
            what: format!("scope {scope:?}"),
            reason: "expected one scope such as https://vault.azure.net/.default".to_owned(),
        });
    }
    Ok(trimmed)
}

/// Parses an endpoint URL that must be http(s) and carry no credentials.
pub(crate) fn parse_endpoint(what: &str, value: &str) -> Result<Url, IdentityError> {
    let mut url = Url::parse(value.trim()).map_err(|e| IdentityError::InvalidConfig {
        what: format!("{what} {value:?}"),
        reason: format!("not a URL: {e}"),
    })?;
    let has_credentials = !url.username().is_empty() || url.password().is_some();
    // Never echo a password back: name the URL without its user part.
    let _ = url.set_username("");
    let _ = url.set_password(None);
    let invalid = |reason: String| IdentityError::InvalidConfig {
        what: format!("{what} {url}"),
        reason,
    };
    if !matches!(url.scheme(), "http" | "https") {
        return Err(invalid(format!(
            "the scheme must be http or https, not {}",
            url.scheme()
        )));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(invalid("it has no host".to_owned()));
    }
    if has_credentials {
        return Err(invalid(
            "it must not carry a user name or password".to_owned(),
        ));
    }
    Ok(url)
}

/// `true` for `localhost`, `127.0.0.0/8` and `::1`: hosts where plain http stays on the machine.
pub(crate) fn is_loopback(url: &Url) -> bool {
    let Some(host) = url.host_str() else {
        return false;
    };
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    bare.parse::<std::net::IpAddr>()
        .is_ok_and(|ip| ip.is_loopback())
}

/// The URL as shown in messages: scheme, host, port and path, without the query.
pub(crate) fn display_endpoint(url: &Url) -> String {
    let mut shown = url.clone();
    shown.set_query(None);
    shown.set_fragment(None);
    shown.to_string()
}

/// Reads an environment variable through `lookup`; empty counts as unset.
pub(crate) fn required_var(
    lookup: &dyn Fn(&str) -> Option<String>,
    kind: &'static str,
    variable: &'static str,
) -> Result<String, IdentityError> {
    match lookup(variable) {
        Some(v) if !v.trim().is_empty() => Ok(v.trim().to_owned()),
        _ => Err(IdentityError::MissingEnvironment { kind, variable }),
    }
}

/// Reads an optional environment variable through `lookup`; empty counts as unset.
pub(crate) fn optional_var(
    lookup: &dyn Fn(&str) -> Option<String>,
    variable: &str,
) -> Option<String> {
    lookup(variable)
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
}

/// Reads the process environment, for the `from_env` constructors.
pub(crate) fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_and_resources_convert_both_ways() {
        assert_eq!(
            scope_to_resource("https://vault.azure.net/.default").unwrap(),
            "https://vault.azure.net"
        );
        assert_eq!(
            scope_to_resource("https://vault.azure.net").unwrap(),
            "https://vault.azure.net"
        );
        assert_eq!(
            resource_to_scope("https://vault.azure.net").unwrap(),
            "https://vault.azure.net/.default"
        );
        assert_eq!(
            resource_to_scope("https://vault.azure.net/").unwrap(),
            "https://vault.azure.net/.default"
        );
        assert_eq!(
            resource_to_scope("https://vault.azure.net/.default").unwrap(),
            "https://vault.azure.net/.default"
        );
        assert!(scope_to_resource(" ").is_err());
        assert!(resource_to_scope("a b").is_err());
    }

    #[test]
    fn endpoints_must_be_http_urls_without_credentials() {
        assert!(parse_endpoint("endpoint", "http://127.0.0.1:8080/token").is_ok());
        for bad in [
            "169.254.169.254",
            "ftp://host/",
            "http://user:pw@host/",
            "https://",
        ] {
            let err = parse_endpoint("endpoint", bad).expect_err(bad).to_string();
            assert!(err.contains("endpoint"), "{err}");
            assert!(!err.contains("pw@"), "no password in {err}");
        }
    }

    #[test]
    fn loopback_hosts_are_recognised() {
        for yes in [
            "http://localhost:1/",
            "http://127.0.0.1/",
            "http://[::1]:9/",
        ] {
            assert!(is_loopback(&Url::parse(yes).unwrap()), "{yes}");
        }
        for no in [
            "http://login.microsoftonline.com/",
            "http://10.0.0.1/",
            "http://169.254.169.254/",
        ] {
            assert!(!is_loopback(&Url::parse(no).unwrap()), "{no}");
        }
    }
}
