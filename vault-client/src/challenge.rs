//! Key Vault's `WWW-Authenticate: Bearer …` challenge, parsed and checked as the Azure SDKs do.

use reqwest::Url;

/// What a vault's 401 asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Challenge {
    /// The scope to ask the identity for: the challenge's `scope`, or `resource` + `/.default`.
    pub scope: String,
    /// The tenant: the last path segment of `authorization`/`authorization_uri`, when present.
    pub tenant: Option<String>,
}

impl Challenge {
    /// Parses the `WWW-Authenticate` header values of a 401. Only a `Bearer` challenge counts;
    /// `scope=` wins over `resource=`, `authorization=` and `authorization_uri=` both give the
    /// tenant.
    pub fn parse<'a>(values: impl IntoIterator<Item = &'a str>) -> Result<Challenge, String> {
        let mut seen_any = false;
        for value in values {
            seen_any = true;
            let Some(params) = bearer_params(value) else {
                continue;
            };
            let get = |key: &str| {
                params
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(key))
                    .map(|(_, v)| v.trim().to_owned())
                    .filter(|v| !v.is_empty())
            };
            let scope = match (get("scope"), get("resource")) {
                (Some(scope), _) => scope,
                (None, Some(resource)) => resource_to_scope(&resource),
                (None, None) => {
                    return Err(
                        "the Bearer challenge has neither a resource= nor a scope= parameter"
                            .to_owned(),
                    )
                }
            };
            let tenant = get("authorization")
                .or_else(|| get("authorization_uri"))
                .and_then(|uri| tenant_of(&uri));
            return Ok(Challenge { scope, tenant });
        }
        Err(if seen_any {
            "the WWW-Authenticate header holds no Bearer challenge".to_owned()
        } else {
            "there is no WWW-Authenticate header".to_owned()
        })
    }

    /// The scope's host, e.g. `vault.azure.net` for `https://vault.azure.net/.default`.
    pub fn resource_host(&self) -> Option<String> {
        Url::parse(&self.scope)
            .ok()
            .and_then(|u| u.host_str().map(str::to_ascii_lowercase))
            .filter(|h| !h.is_empty())
    }

    /// The SDKs' `verify_challenge_resource`: the request host must end with `.` + the host of
    /// the challenge's resource (so `myvault.vault.azure.net` matches `https://vault.azure.net`,
    /// but `hostvault.azure.net`, `vault.evil.com` and `myvault.vault.azure.net.` do not).
    pub fn matches_host(&self, request_host: &str) -> bool {
        let Some(resource_host) = self.resource_host() else {
            return false;
        };
        let request_host = request_host.to_ascii_lowercase();
        request_host.ends_with(&format!(".{resource_host}"))
    }
}

fn resource_to_scope(resource: &str) -> String {
    if resource.ends_with("/.default") {
        resource.to_owned()
    } else {
        format!("{}/.default", resource.trim_end_matches('/'))
    }
}

fn tenant_of(uri: &str) -> Option<String> {
    let url = Url::parse(uri).ok()?;
    url.path_segments()?
        .rev()
        .find(|s| !s.is_empty())
        .map(str::to_owned)
}

/// The `key="value"` (or `key=value`) parameters of a `Bearer` challenge, or `None` when the
/// header is another scheme.
fn bearer_params(header: &str) -> Option<Vec<(String, String)>> {
    let header = header.trim();
    let (scheme, rest) = header
        .split_once(char::is_whitespace)
        .unwrap_or((header, ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let mut params = Vec::new();
    let mut chars = rest.chars().peekable();
    loop {
        // Skip separators.
        while chars.peek().is_some_and(|c| c.is_whitespace() || *c == ',') {
            chars.next();
        }
        let mut key = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' || c == ',' || c.is_whitespace() {
                break;
            }
            key.push(c);
            chars.next();
        }
        if key.is_empty() {
            break;
        }
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.peek() != Some(&'=') {
            params.push((key, String::new()));
            continue;
        }
        chars.next();
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '"' => break,
                    '\\' => {
                        if let Some(escaped) = chars.next() {
                            value.push(escaped);
                        }
                    }
                    c => value.push(c),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == ',' || c.is_whitespace() {
                    break;
                }
                value.push(c);
                chars.next();
            }
        }
        params.push((key, value));
    }
    Some(params)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(header: &str, scope: &str, tenant: Option<&str>) {
        let c = Challenge::parse([header]).unwrap();
        assert_eq!(c.scope, scope, "{header}");
        assert_eq!(c.tenant.as_deref(), tenant, "{header}");
    }

    #[test]
    fn parses_the_forms_the_sdks_accept() {
        let tenant = "12345678-1234-1234-1234-123456789012";
        check(
            &format!(
                r#"Bearer authorization="https://login.windows.net/{tenant}", resource="https://vault.azure.net""#
            ),
            "https://vault.azure.net/.default",
            Some(tenant),
        );
        check(
            &format!(
                r#"Bearer authorization_uri="https://login.microsoftonline.com/{tenant}/", scope="https://vault.azure.net/.default""#
            ),
            "https://vault.azure.net/.default",
            Some(tenant),
        );
        check(
            r#"Bearer resource="https://vault.azure.cn", authorization="https://login.chinacloudapi.cn/t1""#,
            "https://vault.azure.cn/.default",
            Some("t1"),
        );
        // scope wins over resource
        check(
            r#"bearer scope="https://vault.azure.net/.default",resource="https://other""#,
            "https://vault.azure.net/.default",
            None,
        );
    }

    #[test]
    fn refuses_what_is_not_a_bearer_challenge() {
        assert!(Challenge::parse([]).is_err());
        assert!(Challenge::parse(["Basic realm=\"x\""]).is_err());
        assert!(Challenge::parse(["Bearer authorization=\"https://login/x\""]).is_err());
        let c = Challenge::parse([
            "PoP nonce=\"x\"",
            "Bearer resource=\"https://vault.azure.net\"",
        ]);
        assert_eq!(c.unwrap().scope, "https://vault.azure.net/.default");
    }

    #[test]
    fn resource_must_be_a_parent_domain_of_the_host() {
        let c = Challenge::parse(["Bearer resource=\"https://vault.azure.net\""]).unwrap();
        assert!(c.matches_host("myvault.vault.azure.net"));
        assert!(c.matches_host("MyVault.Vault.Azure.Net"));
        assert!(!c.matches_host("hostvault.azure.net"));
        assert!(!c.matches_host("vault.evil.com"));
        assert!(!c.matches_host("myvault.vault.azure.net."));
        assert!(!c.matches_host("vault.azure.net"));
        assert!(!c.matches_host("myvault.vault.azure.cn"));
    }
}
