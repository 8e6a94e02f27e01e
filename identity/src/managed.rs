//! Managed identities: IMDS (VM, VMSS, AKS node) and App Service / Functions.

use std::fmt;

use reqwest::{StatusCode, Url};
use tokio::sync::OnceCell;

use crate::error::IdentityError;
use crate::retry::{self, RetryOn, RetryPolicy};
use crate::source::{
    display_endpoint, optional_var, parse_endpoint, process_env, required_var, scope_to_resource,
    BoxFuture, TokenSource,
};
use crate::token::{parse_token_response, AccessToken};

/// The IMDS token endpoint of every Azure VM.
pub const IMDS_ENDPOINT: &str = "http://169.254.169.254/metadata/identity/oauth2/token";

/// Which managed identity to ask for when a host has several. `None` (in the constructors) means the
/// system-assigned identity, or the only user-assigned one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserAssignedId {
    /// The identity's client (application) id: `client_id=` on IMDS and App Service.
    ClientId(String),
    /// The identity's object (principal) id: `object_id=` on IMDS, `principal_id=` on App Service.
    ObjectId(String),
    /// The identity's ARM resource id: `msi_res_id=` on IMDS, `mi_res_id=` on App Service.
    ResourceId(String),
}

impl fmt::Display for UserAssignedId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UserAssignedId::ClientId(id) => write!(f, "client_id {id}"),
            UserAssignedId::ObjectId(id) => write!(f, "object_id {id}"),
            UserAssignedId::ResourceId(id) => write!(f, "resource id {id}"),
        }
    }
}

/// An empty id (e.g. `client_id = ""` in a config file) means no user-assigned identity.
fn non_empty(id: Option<UserAssignedId>) -> Option<UserAssignedId> {
    id.filter(|id| match id {
        UserAssignedId::ClientId(s)
        | UserAssignedId::ObjectId(s)
        | UserAssignedId::ResourceId(s) => !s.trim().is_empty(),
    })
}

fn describe_identity(id: Option<&UserAssignedId>) -> String {
    match id {
        Some(id) => id.to_string(),
        None => "the system-assigned identity".to_owned(),
    }
}

/// The HTTP client of a managed-identity source: given by the caller, or built on first use with no
/// proxy (IMDS and the App Service endpoint are host-local and must not be reached through one).
#[derive(Debug, Default)]
struct LocalClient {
    given: Option<reqwest::Client>,
    built: OnceCell<reqwest::Client>,
}

impl LocalClient {
    async fn get(&self, endpoint: &str, identity: &str) -> Result<&reqwest::Client, IdentityError> {
        if let Some(client) = &self.given {
            return Ok(client);
        }
        self.built
            .get_or_try_init(|| async {
                reqwest::Client::builder().no_proxy().build().map_err(|e| {
                    IdentityError::InvalidConfig {
                        what: format!("HTTP client for {endpoint} ({identity})"),
                        reason: e.to_string(),
                    }
                })
            })
            .await
    }
}

/// Interprets a final answer from IMDS or App Service.
pub(crate) fn token_from_answer(
    answer: retry::Answer,
    endpoint: &str,
    identity: &str,
    scope: &str,
) -> Result<AccessToken, IdentityError> {
    if answer.status.is_success() {
        return parse_token_response(&answer.body, std::time::SystemTime::now()).map_err(|e| {
            IdentityError::InvalidResponse {
                endpoint: endpoint.to_owned(),
                identity: identity.to_owned(),
                reason: e.0,
            }
        });
    }
    let detail = retry::describe_status(answer.status, &answer.body, &[]);
    if answer.status == StatusCode::BAD_REQUEST && says_identity_not_found(&answer.body) {
        return Err(IdentityError::IdentityNotFound {
            endpoint: endpoint.to_owned(),
            identity: identity.to_owned(),
            detail,
        });
    }
    Err(IdentityError::Rejected {
        endpoint: endpoint.to_owned(),
        identity: identity.to_owned(),
        scope: scope.to_owned(),
        status: answer.status.as_u16(),
        detail,
    })
}

/// IMDS answers `400 {"error":"invalid_request","error_description":"Identity not found"}` when the
/// identity asked for is not assigned to the VM; App Service words it similarly.
fn says_identity_not_found(body: &[u8]) -> bool {
    let Some((error, description)) = retry::decode_error(body) else {
        return false;
    };
    let text = format!(
        "{} {}",
        error.unwrap_or_default(),
        description.unwrap_or_default()
    )
    .to_ascii_lowercase();
    text.contains("identity") && text.contains("not found")
}

/// A managed identity through the Azure Instance Metadata Service (VM, VMSS, AKS node).
///
/// `GET {endpoint}?api-version=2018-02-01&resource={resource}[&client_id=|&object_id=|&msi_res_id=]`
/// with `Metadata: true`, never through a proxy, retried per the IMDS guidance ([`RetryPolicy`]).
#[derive(Debug)]
pub struct ManagedIdentity {
    /// The token endpoint; [`IMDS_ENDPOINT`] unless overridden (tests, the vault emulator).
    endpoint: Url,
    /// The user-assigned identity to ask for, or `None` for the system-assigned one.
    id: Option<UserAssignedId>,
    retry: RetryPolicy,
    client: LocalClient,
}

impl Default for ManagedIdentity {
    fn default() -> Self {
        Self::new()
    }
}

impl ManagedIdentity {
    /// The system-assigned identity (or the only user-assigned one) at [`IMDS_ENDPOINT`].
    pub fn new() -> Self {
        ManagedIdentity {
            endpoint: Url::parse(IMDS_ENDPOINT).expect("IMDS_ENDPOINT is a valid URL"),
            id: None,
            retry: RetryPolicy::default(),
            client: LocalClient::default(),
        }
    }

    /// The user-assigned identity with this client id.
    pub fn with_client_id(self, client_id: impl Into<String>) -> Self {
        self.with_user_assigned(Some(UserAssignedId::ClientId(client_id.into())))
    }

    /// A user-assigned identity, or `None` for the system-assigned one.
    pub fn with_user_assigned(mut self, id: Option<UserAssignedId>) -> Self {
        self.id = non_empty(id);
        self
    }

    /// Another token endpoint speaking the IMDS protocol, such as the vault emulator's
    /// `identity_endpoint`. Errors if it is not an http(s) URL.
    pub fn with_endpoint(mut self, endpoint: &str) -> Result<Self, IdentityError> {
        self.endpoint = parse_endpoint("managed identity endpoint", endpoint)?;
        Ok(self)
    }

    /// Another retry schedule (tests use millisecond delays).
    pub fn with_retry_policy(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// Sends requests with this client instead of a proxy-less default one, e.g. to trust the
    /// emulator's CA on an https endpoint. It must not use a proxy to reach IMDS.
    pub fn with_http_client(mut self, client: reqwest::Client) -> Self {
        self.client = LocalClient {
            given: Some(client),
            built: OnceCell::new(),
        };
        self
    }

    /// The token endpoint.
    pub fn endpoint(&self) -> &Url {
        &self.endpoint
    }

    async fn fetch_token(&self, scope: &str) -> Result<AccessToken, IdentityError> {
        let endpoint = display_endpoint(&self.endpoint);
        let identity = describe_identity(self.id.as_ref());
        let resource = scope_to_resource(scope)?;
        let id_param = self.id.as_ref().map(|id| match id {
            UserAssignedId::ClientId(id) => ("client_id", id),
            UserAssignedId::ObjectId(id) => ("object_id", id),
            UserAssignedId::ResourceId(id) => ("msi_res_id", id),
        });
        let url = token_request_url(&self.endpoint, "2018-02-01", resource, id_param);
        let client = self.client.get(&endpoint, &identity).await?;
        let ctx = retry::Context {
            endpoint: &endpoint,
            identity: &identity,
            secrets: &[],
        };
        let answer = retry::send(&self.retry, RetryOn::ManagedIdentity, &ctx, || {
            client.get(url.clone()).header("Metadata", "true")
        })
        .await?;
        token_from_answer(answer, &endpoint, &identity, resource)
    }
}

impl TokenSource for ManagedIdentity {
    fn fetch<'a>(&'a self, scope: &'a str) -> BoxFuture<'a, Result<AccessToken, IdentityError>> {
        Box::pin(self.fetch_token(scope))
    }

    fn describe(&self) -> String {
        format!(
            "managed identity (IMDS {}, {})",
            display_endpoint(&self.endpoint),
            describe_identity(self.id.as_ref())
        )
    }
}

/// A managed identity on App Service / Functions (and other hosts that set `IDENTITY_ENDPOINT` and
/// `IDENTITY_HEADER`).
///
/// `GET {IDENTITY_ENDPOINT}?api-version=2019-08-01&resource={resource}[&client_id=|&principal_id=|&mi_res_id=]`
/// with `X-IDENTITY-HEADER: {IDENTITY_HEADER}`, retried like IMDS.
pub struct AppService {
    endpoint: Url,
    /// The `IDENTITY_HEADER` value: a secret the platform rotates, so it never reaches `Debug`.
    header: String,
    id: Option<UserAssignedId>,
    retry: RetryPolicy,
    client: LocalClient,
}

impl fmt::Debug for AppService {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AppService")
            .field("endpoint", &display_endpoint(&self.endpoint))
            .field("header", &"[redacted]")
            .field("id", &self.id)
            .field("retry", &self.retry)
            .finish_non_exhaustive()
    }
}

impl AppService {
    /// The App Service identity at `endpoint` (the value of `IDENTITY_ENDPOINT`), authenticated by
    /// `identity_header` (the value of `IDENTITY_HEADER`).
    pub fn new(endpoint: &str, identity_header: impl Into<String>) -> Result<Self, IdentityError> {
        let identity_header = identity_header.into();
        if identity_header.trim().is_empty() {
            return Err(IdentityError::InvalidConfig {
                what: "App Service identity header".to_owned(),
                reason: "it is empty".to_owned(),
            });
        }
        Ok(AppService {
            endpoint: parse_endpoint("App Service identity endpoint", endpoint)?,
            header: identity_header,
            id: None,
            retry: RetryPolicy::default(),
            client: LocalClient::default(),
        })
    }

    /// From `IDENTITY_ENDPOINT` and `IDENTITY_HEADER`, plus `AZURE_CLIENT_ID` for a user-assigned
    /// identity if it is set. Errors name the missing variable.
    pub fn from_env() -> Result<Self, IdentityError> {
        Self::from_env_with(&process_env)
    }

    /// Like [`from_env`](Self::from_env), reading variables through `lookup`.
    pub fn from_env_with(lookup: &dyn Fn(&str) -> Option<String>) -> Result<Self, IdentityError> {
        const KIND: &str = "the App Service managed identity";
        let endpoint = required_var(lookup, KIND, "IDENTITY_ENDPOINT")?;
        let header = required_var(lookup, KIND, "IDENTITY_HEADER")?;
        let id = optional_var(lookup, "AZURE_CLIENT_ID").map(UserAssignedId::ClientId);
        Ok(Self::new(&endpoint, header)?.with_user_assigned(id))
    }

    /// The user-assigned identity with this client id.
    pub fn with_client_id(self, client_id: impl Into<String>) -> Self {
        self.with_user_assigned(Some(UserAssignedId::ClientId(client_id.into())))
    }

    /// A user-assigned identity, or `None` for the system-assigned one.
    pub fn with_user_assigned(mut self, id: Option<UserAssignedId>) -> Self {
        self.id = non_empty(id);
        self
    }

    /// Another retry schedule (tests use millisecond delays).
    pub fn with_retry_policy(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// Sends requests with this client instead of a proxy-less default one.
    pub fn with_http_client(mut self, client: reqwest::Client) -> Self {
        self.client = LocalClient {
            given: Some(client),
            built: OnceCell::new(),
        };
        self
    }

    async fn fetch_token(&self, scope: &str) -> Result<AccessToken, IdentityError> {
        let endpoint = display_endpoint(&self.endpoint);
        let identity = describe_identity(self.id.as_ref());
        let resource = scope_to_resource(scope)?;
        let id_param = self.id.as_ref().map(|id| match id {
            UserAssignedId::ClientId(id) => ("client_id", id),
            UserAssignedId::ObjectId(id) => ("principal_id", id),
            UserAssignedId::ResourceId(id) => ("mi_res_id", id),
        });
        let url = token_request_url(&self.endpoint, "2019-08-01", resource, id_param);
        let client = self.client.get(&endpoint, &identity).await?;
        let secrets = [self.header.as_str()];
        let ctx = retry::Context {
            endpoint: &endpoint,
            identity: &identity,
            secrets: &secrets,
        };
        let answer = retry::send(&self.retry, RetryOn::ManagedIdentity, &ctx, || {
            client
                .get(url.clone())
                .header("X-IDENTITY-HEADER", &self.header)
        })
        .await?;
        token_from_answer(answer, &endpoint, &identity, resource)
    }
}

impl TokenSource for AppService {
    fn fetch<'a>(&'a self, scope: &'a str) -> BoxFuture<'a, Result<AccessToken, IdentityError>> {
        Box::pin(self.fetch_token(scope))
    }

    fn describe(&self) -> String {
        format!(
            "managed identity (App Service {}, {})",
            display_endpoint(&self.endpoint),
            describe_identity(self.id.as_ref())
        )
    }
}

/// The GET URL of a managed-identity token request: IMDS and App Service differ only in the
/// api-version and in how a user-assigned identity is named (`id_param`).
fn token_request_url(
    endpoint: &Url,
    api_version: &str,
    resource: &str,
    id_param: Option<(&str, &String)>,
) -> Url {
    let mut url = endpoint.clone();
    {
        let mut query = url.query_pairs_mut();
        query
            .append_pair("api-version", api_version)
            .append_pair("resource", resource);
        if let Some((name, value)) = id_param {
            query.append_pair(name, value);
        }
    }
    url
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_not_found_is_recognised_in_imds_and_app_service_wording() {
        assert!(says_identity_not_found(
            br#"{"error":"invalid_request","error_description":"Identity not found"}"#
        ));
        assert!(says_identity_not_found(
            br#"{"error":{"code":"x","message":"Managed identity not found"}}"#
        ));
        assert!(!says_identity_not_found(
            br#"{"error":"invalid_request","error_description":"Multiple user assigned identities exist, please specify the clientId / resourceId of the identity in the token request"}"#
        ));
        assert!(!says_identity_not_found(b"not json"));
    }

    #[test]
    fn app_service_needs_both_variables_and_names_the_missing_one() {
        let env = |vars: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                vars.iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| v.to_string())
            }
        };
        let err = AppService::from_env_with(&env(&[("IDENTITY_HEADER", "h")])).unwrap_err();
        assert_eq!(err.to_string(), "the App Service managed identity needs the environment variable IDENTITY_ENDPOINT, which is not set");
        let err = AppService::from_env_with(&env(&[(
            "IDENTITY_ENDPOINT",
            "http://127.0.0.1:41/msi/token",
        )]))
        .unwrap_err();
        assert!(err.to_string().contains("IDENTITY_HEADER"), "{err}");
        assert!(!err.is_transient());
        let source = AppService::from_env_with(&env(&[
            ("IDENTITY_ENDPOINT", "http://127.0.0.1:41/msi/token"),
            ("IDENTITY_HEADER", "header-secret"),
            ("AZURE_CLIENT_ID", "cid"),
        ]))
        .unwrap();
        assert_eq!(
            source.describe(),
            "managed identity (App Service http://127.0.0.1:41/msi/token, client_id cid)"
        );
        assert!(
            !format!("{source:?}").contains("header-secret"),
            "{source:?}"
        );
    }
}
