//! Service principals through Entra ID's v2 token endpoint: AKS workload identity (a federated
//! client assertion read from a file) and a client secret.
//!
//! `POST {authority}/{tenant}/oauth2/v2.0/token` with a form body and
//! `grant_type=client_credentials`, `scope={resource}/.default`.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use reqwest::Url;
use tokio::sync::OnceCell;

use crate::error::IdentityError;
use crate::retry::{self, RetryOn, RetryPolicy};
use crate::source::{
    display_endpoint, is_loopback, optional_var, parse_endpoint, process_env, required_var,
    resource_to_scope, BoxFuture, TokenSource,
};
use crate::token::{parse_token_response, AccessToken};

/// Entra ID's public-cloud authority, used when `AZURE_AUTHORITY_HOST` is not set.
pub const DEFAULT_AUTHORITY_HOST: &str = "https://login.microsoftonline.com/";

const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// What both Entra sources share: where to ask, as whom, and how patiently.
struct EntraApp {
    /// `{authority}/{tenant}/oauth2/v2.0/token`.
    token_url: Url,
    tenant_id: String,
    client_id: String,
    retry: RetryPolicy,
    /// Given by the caller, or built on first use (with the system's proxy settings: unlike IMDS,
    /// Entra is a remote service that a proxy may legitimately stand in front of).
    given_client: Option<reqwest::Client>,
    built_client: OnceCell<reqwest::Client>,
}

impl EntraApp {
    fn new(authority_host: &str, tenant_id: &str, client_id: &str) -> Result<Self, IdentityError> {
        let tenant_id = tenant_id.trim();
        if tenant_id.is_empty()
            || !tenant_id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))
        {
            return Err(IdentityError::InvalidConfig {
                what: format!("tenant id {tenant_id:?}"),
                reason: "expected a GUID or a domain name such as contoso.onmicrosoft.com"
                    .to_owned(),
            });
        }
        let client_id = client_id.trim();
        if client_id.is_empty() {
            return Err(IdentityError::InvalidConfig {
                what: "client id".to_owned(),
                reason: "it is empty".to_owned(),
            });
        }
        let mut authority = parse_endpoint("authority host", authority_host)?;
        if authority.scheme() != "https" && !is_loopback(&authority) {
            // A client secret or assertion must not cross the network in clear text.
            return Err(IdentityError::InvalidConfig {
                what: format!("authority host {}", display_endpoint(&authority)),
                reason: "it must use https (plain http is only accepted for localhost)".to_owned(),
            });
        }
        authority.set_query(None);
        authority.set_fragment(None);
        if !authority.path().ends_with('/') {
            let path = format!("{}/", authority.path());
            authority.set_path(&path);
        }
        let token_url = authority
            .join(&format!("{tenant_id}/oauth2/v2.0/token"))
            .map_err(|e| IdentityError::InvalidConfig {
                what: format!("authority host {}", display_endpoint(&authority)),
                reason: e.to_string(),
            })?;
        Ok(EntraApp {
            token_url,
            tenant_id: tenant_id.to_owned(),
            client_id: client_id.to_owned(),
            retry: RetryPolicy::default(),
            given_client: None,
            built_client: OnceCell::new(),
        })
    }

    fn identity(&self) -> String {
        format!("client_id {} in tenant {}", self.client_id, self.tenant_id)
    }

    async fn client(&self) -> Result<&reqwest::Client, IdentityError> {
        if let Some(client) = &self.given_client {
            return Ok(client);
        }
        self.built_client
            .get_or_try_init(|| async {
                reqwest::Client::builder()
                    .build()
                    .map_err(|e| IdentityError::InvalidConfig {
                        what: format!("HTTP client for {}", display_endpoint(&self.token_url)),
                        reason: e.to_string(),
                    })
            })
            .await
    }

    /// Posts `credential` (the form fields that prove who we are) for `scope`.
    async fn request(
        &self,
        scope: &str,
        credential: &[(&str, &str)],
        secrets: &[&str],
    ) -> Result<AccessToken, IdentityError> {
        let endpoint = display_endpoint(&self.token_url);
        let identity = self.identity();
        let scope = resource_to_scope(scope)?;
        let mut form: Vec<(&str, &str)> = credential.to_vec();
        form.extend([
            ("client_id", self.client_id.as_str()),
            ("grant_type", "client_credentials"),
            ("scope", scope.as_str()),
        ]);
        let client = self.client().await?;
        let ctx = retry::Context {
            endpoint: &endpoint,
            identity: &identity,
            secrets,
        };
        let answer = retry::send(&self.retry, RetryOn::Entra, &ctx, || {
            client.post(self.token_url.clone()).form(&form)
        })
        .await?;
        if answer.status.is_success() {
            return parse_token_response(&answer.body, SystemTime::now()).map_err(|e| {
                IdentityError::InvalidResponse {
                    endpoint,
                    identity,
                    reason: e.0,
                }
            });
        }
        Err(IdentityError::Rejected {
            detail: retry::describe_status(answer.status, &answer.body, secrets),
            status: answer.status.as_u16(),
            endpoint,
            identity,
            scope,
        })
    }

    fn debug_fields(&self, d: &mut fmt::DebugStruct<'_, '_>) {
        d.field("token_url", &display_endpoint(&self.token_url))
            .field("tenant_id", &self.tenant_id)
            .field("client_id", &self.client_id)
            .field("retry", &self.retry);
    }
}

/// Reads the authority host, tenant and client id shared by both `from_env` constructors.
fn app_from_env(
    lookup: &dyn Fn(&str) -> Option<String>,
    kind: &'static str,
) -> Result<EntraApp, IdentityError> {
    let client_id = required_var(lookup, kind, "AZURE_CLIENT_ID")?;
    let tenant_id = required_var(lookup, kind, "AZURE_TENANT_ID")?;
    let authority = optional_var(lookup, "AZURE_AUTHORITY_HOST")
        .unwrap_or_else(|| DEFAULT_AUTHORITY_HOST.to_owned());
    EntraApp::new(&authority, &tenant_id, &client_id)
}

/// AKS workload identity: a Kubernetes service-account token, exchanged as a federated client
/// assertion for an Entra token.
///
/// The token file is read again on every fetch, because the kubelet rotates it.
pub struct WorkloadIdentity {
    app: EntraApp,
    /// The projected service-account token (`AZURE_FEDERATED_TOKEN_FILE`).
    token_file: PathBuf,
}

impl fmt::Debug for WorkloadIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("WorkloadIdentity");
        self.app.debug_fields(&mut d);
        d.field("token_file", &self.token_file)
            .finish_non_exhaustive()
    }
}

impl WorkloadIdentity {
    /// The application `client_id` in `tenant_id`, proving itself with the JWT in `token_file`, at
    /// [`DEFAULT_AUTHORITY_HOST`].
    pub fn new(
        tenant_id: &str,
        client_id: &str,
        token_file: impl Into<PathBuf>,
    ) -> Result<Self, IdentityError> {
        Ok(WorkloadIdentity {
            app: EntraApp::new(DEFAULT_AUTHORITY_HOST, tenant_id, client_id)?,
            token_file: token_file.into(),
        })
    }

    /// From the variables the workload-identity webhook injects: `AZURE_FEDERATED_TOKEN_FILE`,
    /// `AZURE_CLIENT_ID`, `AZURE_TENANT_ID` and optionally `AZURE_AUTHORITY_HOST`. Errors name the
    /// missing variable.
    pub fn from_env() -> Result<Self, IdentityError> {
        Self::from_env_with(&process_env)
    }

    /// Like [`from_env`](Self::from_env), reading variables through `lookup`.
    pub fn from_env_with(lookup: &dyn Fn(&str) -> Option<String>) -> Result<Self, IdentityError> {
        const KIND: &str = "workload identity";
        let token_file = required_var(lookup, KIND, "AZURE_FEDERATED_TOKEN_FILE")?;
        Ok(WorkloadIdentity {
            app: app_from_env(lookup, KIND)?,
            token_file: token_file.into(),
        })
    }

    /// Another authority host, such as `https://login.microsoftonline.us/` or a local test server.
    /// It must be https unless it is on localhost.
    pub fn with_authority_host(mut self, authority_host: &str) -> Result<Self, IdentityError> {
        let app = EntraApp::new(authority_host, &self.app.tenant_id, &self.app.client_id)?;
        self.app = EntraApp {
            retry: self.app.retry,
            given_client: self.app.given_client,
            ..app
        };
        Ok(self)
    }

    /// Another retry schedule (tests use millisecond delays).
    pub fn with_retry_policy(mut self, retry: RetryPolicy) -> Self {
        self.app.retry = retry;
        self
    }

    /// Sends requests with this client instead of a default one (e.g. to add a CA).
    pub fn with_http_client(mut self, client: reqwest::Client) -> Self {
        self.app.given_client = Some(client);
        self
    }

    /// The token endpoint (`{authority}/{tenant}/oauth2/v2.0/token`).
    pub fn token_url(&self) -> &Url {
        &self.app.token_url
    }

    async fn read_assertion(&self) -> Result<String, IdentityError> {
        let path = self.token_file.clone();
        let read = tokio::task::spawn_blocking(move || std::fs::read_to_string(path)).await;
        let text = match read {
            Ok(Ok(text)) => text,
            Ok(Err(e)) => return Err(token_file_error(&self.token_file, e)),
            Err(join) => {
                return Err(token_file_error(
                    &self.token_file,
                    std::io::Error::other(join.to_string()),
                ))
            }
        };
        let assertion = text.trim();
        if assertion.is_empty() {
            return Err(token_file_error(
                &self.token_file,
                std::io::Error::new(std::io::ErrorKind::InvalidData, "the file is empty"),
            ));
        }
        Ok(assertion.to_owned())
    }

    async fn fetch_token(&self, scope: &str) -> Result<AccessToken, IdentityError> {
        let assertion = self.read_assertion().await?;
        let credential = [
            ("client_assertion", assertion.as_str()),
            ("client_assertion_type", JWT_BEARER),
        ];
        self.app
            .request(scope, &credential, &[assertion.as_str()])
            .await
    }
}

fn token_file_error(path: &Path, e: std::io::Error) -> IdentityError {
    IdentityError::TokenFile {
        path: path.display().to_string(),
        source: std::sync::Arc::new(e),
    }
}

impl TokenSource for WorkloadIdentity {
    fn fetch<'a>(&'a self, scope: &'a str) -> BoxFuture<'a, Result<AccessToken, IdentityError>> {
        Box::pin(self.fetch_token(scope))
    }

    fn describe(&self) -> String {
        format!(
            "workload identity ({} at {}, token file {})",
            self.app.identity(),
            display_endpoint(&self.app.token_url),
            self.token_file.display()
        )
    }
}

/// A service principal with a client secret.
pub struct ClientSecret {
    app: EntraApp,
    /// Never shown by `Debug` or in errors.
    secret: String,
}

impl fmt::Debug for ClientSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("ClientSecret");
        self.app.debug_fields(&mut d);
        d.field("secret", &"[redacted]").finish_non_exhaustive()
    }
}

impl ClientSecret {
    /// The application `client_id` in `tenant_id` with `secret`, at [`DEFAULT_AUTHORITY_HOST`].
    pub fn new(
        tenant_id: &str,
        client_id: &str,
        secret: impl Into<String>,
    ) -> Result<Self, IdentityError> {
        let secret = secret.into();
        if secret.is_empty() {
            return Err(IdentityError::InvalidConfig {
                what: "client secret".to_owned(),
                reason: "it is empty".to_owned(),
            });
        }
        Ok(ClientSecret {
            app: EntraApp::new(DEFAULT_AUTHORITY_HOST, tenant_id, client_id)?,
            secret,
        })
    }

    /// From `AZURE_CLIENT_SECRET`, `AZURE_CLIENT_ID`, `AZURE_TENANT_ID` and optionally
    /// `AZURE_AUTHORITY_HOST`. Errors name the missing variable.
    pub fn from_env() -> Result<Self, IdentityError> {
        Self::from_env_with(&process_env)
    }

    /// Like [`from_env`](Self::from_env), reading variables through `lookup`.
    pub fn from_env_with(lookup: &dyn Fn(&str) -> Option<String>) -> Result<Self, IdentityError> {
        const KIND: &str = "a client-secret identity";
        let app = app_from_env(lookup, KIND)?;
        let secret = required_var(lookup, KIND, "AZURE_CLIENT_SECRET")?;
        Ok(ClientSecret { app, secret })
    }

    /// Another authority host. It must be https unless it is on localhost.
    pub fn with_authority_host(mut self, authority_host: &str) -> Result<Self, IdentityError> {
        let app = EntraApp::new(authority_host, &self.app.tenant_id, &self.app.client_id)?;
        self.app = EntraApp {
            retry: self.app.retry,
            given_client: self.app.given_client,
            ..app
        };
        Ok(self)
    }

    /// Another retry schedule (tests use millisecond delays).
    pub fn with_retry_policy(mut self, retry: RetryPolicy) -> Self {
        self.app.retry = retry;
        self
    }

    /// Sends requests with this client instead of a default one (e.g. to add a CA).
    pub fn with_http_client(mut self, client: reqwest::Client) -> Self {
        self.app.given_client = Some(client);
        self
    }

    /// The token endpoint (`{authority}/{tenant}/oauth2/v2.0/token`).
    pub fn token_url(&self) -> &Url {
        &self.app.token_url
    }

    async fn fetch_token(&self, scope: &str) -> Result<AccessToken, IdentityError> {
        let credential = [("client_secret", self.secret.as_str())];
        self.app
            .request(scope, &credential, &[self.secret.as_str()])
            .await
    }
}

impl TokenSource for ClientSecret {
    fn fetch<'a>(&'a self, scope: &'a str) -> BoxFuture<'a, Result<AccessToken, IdentityError>> {
        Box::pin(self.fetch_token(scope))
    }

    fn describe(&self) -> String {
        format!(
            "client secret ({} at {})",
            self.app.identity(),
            display_endpoint(&self.app.token_url)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |name: &str| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn workload_identity_from_env_names_each_missing_variable() {
        let all = [
            (
                "AZURE_FEDERATED_TOKEN_FILE",
                "/var/run/secrets/azure/tokens/azure-identity-token",
            ),
            ("AZURE_CLIENT_ID", "cid"),
            ("AZURE_TENANT_ID", "tid"),
        ];
        for missing in 0..all.len() {
            let vars: Vec<_> = all
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != missing)
                .map(|(_, v)| *v)
                .collect();
            let vars: &'static [(&str, &str)] = Vec::leak(vars);
            let err = WorkloadIdentity::from_env_with(&env(vars)).unwrap_err();
            assert_eq!(
                err.to_string(),
                format!(
                    "workload identity needs the environment variable {}, which is not set",
                    all[missing].0
                )
            );
        }
        let source = WorkloadIdentity::from_env_with(&env(Vec::leak(all.to_vec()))).unwrap();
        assert_eq!(
            source.token_url().as_str(),
            "https://login.microsoftonline.com/tid/oauth2/v2.0/token"
        );
    }

    #[test]
    fn the_authority_host_may_come_from_the_environment_with_or_without_a_slash() {
        let source = ClientSecret::from_env_with(&env(&[
            ("AZURE_CLIENT_ID", "cid"),
            ("AZURE_TENANT_ID", "contoso.onmicrosoft.com"),
            ("AZURE_CLIENT_SECRET", "shh-its-a-secret"),
            ("AZURE_AUTHORITY_HOST", "https://login.microsoftonline.us"),
        ]))
        .unwrap();
        assert_eq!(
            source.token_url().as_str(),
            "https://login.microsoftonline.us/contoso.onmicrosoft.com/oauth2/v2.0/token"
        );
        assert!(!format!("{source:?}").contains("shh-its-a-secret"));
        assert!(!source.describe().contains("shh-its-a-secret"));
    }

    #[test]
    fn a_secret_never_travels_over_plain_http_to_a_remote_host() {
        let err = ClientSecret::new("tid", "cid", "shh-its-a-secret")
            .unwrap()
            .with_authority_host("http://login.example.com/")
            .unwrap_err();
        assert!(err.to_string().contains("must use https"), "{err}");
        assert!(ClientSecret::new("tid", "cid", "s")
            .unwrap()
            .with_authority_host("http://127.0.0.1:9/")
            .is_ok());
    }

    #[test]
    fn tenant_ids_cannot_rewrite_the_path() {
        for bad in ["", "../common", "a/b", "t?x=1"] {
            assert!(ClientSecret::new(bad, "cid", "s").is_err(), "{bad:?}");
        }
    }
}
