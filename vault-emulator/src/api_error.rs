//! Key Vault's error responses, with the bodies and headers real Key Vault sends (see the
//! recordings in `shared/fixtures/keyvault-recordings`).

use actix_web::http::{header, StatusCode};
use actix_web::{HttpResponse, ResponseError};
use serde_json::json;

use crate::EmulatorError;

/// A Key Vault error: `{"error":{"code","message","innererror":{"code"}}}`.
#[derive(Debug, Clone)]
pub(crate) struct ApiError {
    pub status: StatusCode,
    pub code: String,
    pub message: String,
    pub inner: Option<String>,
    /// `WWW-Authenticate` value of a 401.
    pub challenge: Option<String>,
}

const HELP_NOT_FOUND: &str =
    "For help resolving this issue, please see https://go.microsoft.com/fwlink/?linkid=2125182";

impl ApiError {
    pub fn new(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        Self {
            status,
            code: code.to_owned(),
            message: message.into(),
            inner: None,
            challenge: None,
        }
    }

    fn with_inner(mut self, inner: &str) -> Self {
        self.inner = Some(inner.to_owned());
        self
    }

    pub fn unauthorized(tenant_id: &str, message: &str) -> Self {
        let mut error = Self::new(StatusCode::UNAUTHORIZED, "Unauthorized", message);
        error.challenge = Some(format!(
            "Bearer authorization=\"https://login.microsoftonline.com/{tenant_id}\", resource=\"https://vault.azure.net\""
        ));
        error
    }

    /// Access-policy denial.
    pub fn access_denied(caller: &str, kind: &str, permission: &str, vault: &str) -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "Forbidden",
            format!(
                "The user, group or application '{caller}' does not have {kind} {permission} permission on key vault '{vault};location=local'. For help resolving this issue, please see https://go.microsoft.com/fwlink/?linkid=2125287"
            ),
        )
        .with_inner("AccessDenied")
    }

    pub fn secret_disabled(operation: &str) -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "Forbidden",
            format!("Operation {operation} is not allowed on a disabled secret."),
        )
        .with_inner("SecretDisabled")
    }

    pub fn secret_not_found(name_or_id: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "SecretNotFound",
            format!("A secret with (name/id) {name_or_id} was not found in this key vault. If you recently deleted this secret you may be able to recover it using the correct recovery command. {HELP_NOT_FOUND}"),
        )
    }

    pub fn certificate_not_found(name_or_id: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "CertificateNotFound",
            format!("A certificate with (name/id) {name_or_id} was not found in this key vault. If you recently deleted this certificate you may be able to recover it using the correct recovery command. {HELP_NOT_FOUND}"),
        )
    }

    pub fn pending_not_found(name: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "PendingCertificateNotFound",
            format!("Pending certificate not found: {name}"),
        )
    }

    pub fn bad_parameter(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "BadParameter", message)
    }

    pub fn method_not_allowed(method: &str) -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            format!("HTTP {method} not allowed"),
        )
    }

    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "Conflict", message)
    }

    pub fn body(&self) -> serde_json::Value {
        let mut error = json!({ "code": self.code, "message": self.message });
        if let Some(inner) = &self.inner {
            error["innererror"] = json!({ "code": inner });
        }
        json!({ "error": error })
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.status.as_u16(),
            self.code,
            self.message
        )
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status);
        response.insert_header((header::CONTENT_TYPE, "application/json; charset=utf-8"));
        if let Some(challenge) = &self.challenge {
            response.insert_header((header::WWW_AUTHENTICATE, challenge.as_str()));
        }
        response.body(self.body().to_string())
    }
}

impl From<ApiError> for EmulatorError {
    fn from(error: ApiError) -> Self {
        EmulatorError::Rejected {
            status: error.status.as_u16(),
            code: error.code,
            message: error.message,
        }
    }
}
