//! The one error type of this crate.
//!
//! Callers react to two classes differently, so [`IdentityError::is_transient`] tells them apart:
//!
//! - **configuration**: the identity does not exist on this host, a variable is missing, the token
//!   endpoint refused the request (wrong tenant, client id, secret, federation). Retrying will not
//!   help until someone changes something.
//! - **transient**: the endpoint could not be reached, timed out or kept answering "try later"
//!   (404/410/429/5xx) for the whole retry schedule. Retrying later may help.
//!
//! Every message names the endpoint and the identity (client id, object id, resource id) and never
//! an access token, client secret or client assertion.

use std::sync::Arc;

/// Why no access token could be had.
///
/// The type is `Clone` so that every caller waiting on one in-flight request in
/// [`TokenCache`](crate::TokenCache) receives the same outcome.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum IdentityError {
    /// The managed identity asked for is not assigned to this host (IMDS or App Service answered
    /// 400 "identity not found").
    #[error(
        "managed identity with {identity} was not found on this host: {endpoint} answered {detail}"
    )]
    IdentityNotFound {
        /// The token endpoint that answered.
        endpoint: String,
        /// Which identity was asked for, e.g. `client_id 1234…` or `the system-assigned identity`.
        identity: String,
        /// The status and the decoded `error`/`error_description`.
        detail: String,
    },

    /// An environment variable that this kind of identity needs is not set (or is empty).
    #[error("{kind} needs the environment variable {variable}, which is not set")]
    MissingEnvironment {
        /// The kind of identity, e.g. `workload identity`.
        kind: &'static str,
        /// The variable's name.
        variable: &'static str,
    },

    /// A configuration value is unusable: a malformed endpoint URL, an empty scope, plain http to a
    /// remote token endpoint…
    #[error("invalid identity configuration: {what}: {reason}")]
    InvalidConfig {
        /// The value, named as the user would know it.
        what: String,
        /// What is wrong with it.
        reason: String,
    },

    /// The federated token file (workload identity) could not be read.
    #[error("cannot read the federated token file {path}: {source}")]
    TokenFile {
        /// The file's path.
        path: String,
        /// The I/O error.
        #[source]
        source: Arc<std::io::Error>,
    },

    /// The token endpoint refused the request with a status that retrying will not change (a 4xx
    /// other than 404/408/410/429).
    #[error("{endpoint} refused a token for {identity} (scope {scope}): {detail}")]
    Rejected {
        /// The token endpoint.
        endpoint: String,
        /// Which identity asked.
        identity: String,
        /// The scope or resource asked for.
        scope: String,
        /// The HTTP status.
        status: u16,
        /// The status and the decoded `error`/`error_description` (or the start of the body).
        detail: String,
    },

    /// The endpoint could not be reached, timed out, or kept answering with a retryable status
    /// until the retry schedule ran out.
    #[error(
        "no token from {endpoint} for {identity} after {attempts} attempt(s) over {elapsed_secs:.1} s: {last_failure}"
    )]
    Unavailable {
        /// The token endpoint.
        endpoint: String,
        /// Which identity asked.
        identity: String,
        /// How many requests were sent.
        attempts: u32,
        /// Seconds between the first request and giving up.
        elapsed_secs: f64,
        /// What went wrong the last time: a status with its decoded error, a timeout, a connect
        /// error.
        last_failure: String,
    },

    /// The endpoint answered 2xx with a body that is not a token response.
    #[error("{endpoint} sent a token response for {identity} that cannot be used: {reason}")]
    InvalidResponse {
        /// The token endpoint.
        endpoint: String,
        /// Which identity asked.
        identity: String,
        /// What is wrong with it (never the body itself, which may hold a token).
        reason: String,
    },
}

impl IdentityError {
    /// `true` when the failure may go away by itself (endpoint unreachable, timing out or still
    /// answering 404/410/429/5xx after the retries); `false` for configuration errors that need
    /// someone to change something.
    pub fn is_transient(&self) -> bool {
        matches!(self, IdentityError::Unavailable { .. })
    }
}
