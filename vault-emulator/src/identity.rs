//! The managed-identity token endpoints (IMDS style and App Service style) and the opaque
//! access tokens the vault accepts.

use std::collections::HashMap;

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde_json::json;
use sha2::Sha256;

use crate::server::{unix_now, Shared};
use crate::state::{Identity, Vault};

pub(crate) const IMDS_PATH: &str = "/metadata/identity/oauth2/token";
pub(crate) const APP_SERVICE_PATH: &str = "/msi/token";
const VAULT_RESOURCE: &str = "https://vault.azure.net";

fn mac(vault: &Vault, payload: &str) -> Vec<u8> {
    let key = hex::decode(&vault.token_key).unwrap_or_default();
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).expect("HMAC takes keys of any length");
    mac.update(payload.as_bytes());
    mac.finalize().into_bytes().to_vec()
}

/// An opaque token naming the identity and the expiry, signed with the vault's token key (so
/// tokens stay valid across a restart of the emulator).
pub(crate) fn issue_token(vault: &Vault, client_id: &str, expires_on: i64) -> String {
    let payload = URL_SAFE_NO_PAD.encode(format!("{client_id}|{expires_on}"));
    let signature = URL_SAFE_NO_PAD.encode(mac(vault, &payload));
    format!("kvemu.{payload}.{signature}")
}

/// Why a bearer token was not accepted.
pub(crate) enum TokenProblem {
    Invalid,
    Expired,
}

/// The client id a token was issued to.
pub(crate) fn verify_token(vault: &Vault, token: &str, now: i64) -> Result<String, TokenProblem> {
    let mut parts = token.split('.');
    let (Some("kvemu"), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenProblem::Invalid);
    };
    let given = URL_SAFE_NO_PAD
        .decode(signature)
        .map_err(|_| TokenProblem::Invalid)?;
    let key = hex::decode(&vault.token_key).unwrap_or_default();
    let mut check = Hmac::<Sha256>::new_from_slice(&key).map_err(|_| TokenProblem::Invalid)?;
    check.update(payload.as_bytes());
    check
        .verify_slice(&given)
        .map_err(|_| TokenProblem::Invalid)?;
    let payload = URL_SAFE_NO_PAD
        .decode(payload)
        .map_err(|_| TokenProblem::Invalid)?;
    let payload = String::from_utf8(payload).map_err(|_| TokenProblem::Invalid)?;
    let (client_id, expires_on) = payload.split_once('|').ok_or(TokenProblem::Invalid)?;
    let expires_on: i64 = expires_on.parse().map_err(|_| TokenProblem::Invalid)?;
    if expires_on <= now {
        return Err(TokenProblem::Expired);
    }
    Ok(client_id.to_owned())
}

fn json_response(status: StatusCode, body: serde_json::Value) -> HttpResponse {
    HttpResponse::build(status)
        .content_type("application/json; charset=utf-8")
        .body(body.to_string())
}

fn imds_error(error: &str, description: &str) -> HttpResponse {
    json_response(
        StatusCode::BAD_REQUEST,
        json!({ "error": error, "error_description": description }),
    )
}

fn resource_ok(resource: &str) -> bool {
    let resource = resource.trim_end_matches('/');
    let resource = resource.strip_suffix("/.default").unwrap_or(resource);
    resource.eq_ignore_ascii_case(VAULT_RESOURCE)
}

/// Which identity a request names: `client_id`, `object_id`/`principal_id`, or none (the
/// default identity, like a system-assigned one).
fn select_identity(vault: &Vault, query: &HashMap<String, String>) -> Result<Identity, ()> {
    let found = if let Some(client_id) = query.get("client_id") {
        vault.identity(client_id)
    } else if let Some(object_id) = query.get("object_id").or_else(|| query.get("principal_id")) {
        vault.identity_by_object_id(object_id)
    } else if query.contains_key("msi_res_id") || query.contains_key("mi_res_id") {
        None
    } else {
        vault.identity(&vault.default_client_id)
    };
    found.cloned().ok_or(())
}

/// `GET /metadata/identity/oauth2/token?api-version=2018-02-01&resource=…` with `Metadata: true`.
pub(crate) async fn imds_token(
    req: HttpRequest,
    query: web::Query<HashMap<String, String>>,
    shared: web::Data<Shared>,
) -> HttpResponse {
    let metadata = req.headers().get("Metadata").and_then(|v| v.to_str().ok());
    if metadata != Some("true") {
        return imds_error("bad_request_102", "Required metadata header not specified");
    }
    if !query.contains_key("api-version") {
        return imds_error(
            "invalid_request",
            "Required query variable 'api-version' is missing",
        );
    }
    let Some(resource) = query.get("resource") else {
        return imds_error(
            "invalid_request",
            "Required query variable 'resource' is missing",
        );
    };
    if !resource_ok(resource) {
        return imds_error(
            "invalid_resource",
            &format!("AADSTS500011: The resource principal named {resource} was not found in the tenant."),
        );
    }
    let (identity, token, now, expires_on) = {
        let vault = shared.vault();
        let Ok(identity) = select_identity(&vault, &query) else {
            return imds_error("invalid_request", "Identity not found");
        };
        let now = unix_now();
        let expires_on = now + shared.token_lifetime_secs();
        let token = issue_token(&vault, &identity.client_id, expires_on);
        (identity, token, now, expires_on)
    };
    tracing::debug!(client_id = %identity.client_id, "issued an IMDS token");
    let lifetime = (expires_on - now).to_string();
    json_response(
        StatusCode::OK,
        json!({
            "access_token": token,
            "client_id": identity.client_id,
            "expires_in": lifetime,
            "expires_on": expires_on.to_string(),
            "ext_expires_in": lifetime,
            "not_before": now.to_string(),
            "resource": resource,
            "token_type": "Bearer",
            "refresh_token": "",
        }),
    )
}

fn app_service_error(status: StatusCode, message: &str) -> HttpResponse {
    json_response(
        status,
        json!({ "statusCode": status.as_u16(), "message": message, "correlationId": crate::certs::new_uuid() }),
    )
}

/// `GET /msi/token?resource=…&api-version=2019-08-01` with `X-IDENTITY-HEADER`.
pub(crate) async fn app_service_token(
    req: HttpRequest,
    query: web::Query<HashMap<String, String>>,
    shared: web::Data<Shared>,
) -> HttpResponse {
    let header = req
        .headers()
        .get("X-IDENTITY-HEADER")
        .and_then(|v| v.to_str().ok());
    let expected = shared.vault().app_service_header.clone();
    if header != Some(expected.as_str()) {
        return app_service_error(
            StatusCode::BAD_REQUEST,
            "The X-IDENTITY-HEADER header is missing or not valid.",
        );
    }
    if query.get("api-version").map(String::as_str) != Some("2019-08-01") {
        return app_service_error(
            StatusCode::BAD_REQUEST,
            "The api-version is not supported; use 2019-08-01.",
        );
    }
    let Some(resource) = query.get("resource") else {
        return app_service_error(
            StatusCode::BAD_REQUEST,
            "The resource query parameter is missing.",
        );
    };
    if !resource_ok(resource) {
        return app_service_error(StatusCode::BAD_REQUEST, "The resource is not valid.");
    }
    let (identity, token, expires_on) = {
        let vault = shared.vault();
        let Ok(identity) = select_identity(&vault, &query) else {
            return app_service_error(
                StatusCode::BAD_REQUEST,
                "Unable to load the proper Managed Identity.",
            );
        };
        let expires_on = unix_now() + shared.token_lifetime_secs();
        let token = issue_token(&vault, &identity.client_id, expires_on);
        (identity, token, expires_on)
    };
    tracing::debug!(client_id = %identity.client_id, "issued an App Service token");
    json_response(
        StatusCode::OK,
        json!({
            "access_token": token,
            "expires_on": expires_on.to_string(),
            "resource": resource,
            "token_type": "Bearer",
            "client_id": identity.client_id,
        }),
    )
}
