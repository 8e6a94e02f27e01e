//! The control endpoint, `/_emulator/…`, so that other processes can drive a running emulator:
//! faults, identities and access policies, certificate imports, secret state.
//!
//! | method and path | body | effect |
//! |---|---|---|
//! | `GET /_emulator/info` | | the [`EmulatorInfo`](crate::EmulatorInfo) |
//! | `POST /_emulator/faults` | a [`Fault`](crate::Fault): `{"path_prefix":"/secrets/","kind":{"status":503},"count":2}`, `kind` one of `{"delay_ms":N}`, `{"status":N}`, `"drop_connection"` | adds the fault |
//! | `DELETE /_emulator/faults` | | clears all faults |
//! | `PUT /_emulator/identities/{client_id}` | `{"secret_permissions":["get"],"certificate_permissions":[]}` | adds or replaces an identity and its access policy |
//! | `POST /_emulator/identities/{client_id}/revoke` | | removes its access policy (403 from then on) |
//! | `DELETE /_emulator/identities/{client_id}` | | removes the identity (the token endpoints answer "Identity not found") |
//! | `POST /_emulator/certificates/{name}/import` | `{"value": base64 PFX or PEM text, "password": optional}` | imports, answers `{"version": …}` |
//! | `PATCH /_emulator/secrets/{name}` | `{"enabled": bool, "version": optional}` | enables or disables a secret version |
//! | `DELETE /_emulator/secrets/{name}` | | deletes a secret |

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use serde::Deserialize;
use serde_json::json;

use crate::api_error::ApiError;
use crate::server::Shared;
use crate::Fault;

pub(crate) const PREFIX: &str = "/_emulator";

pub(crate) fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope(PREFIX)
            .route("/info", web::get().to(info))
            .route("/faults", web::post().to(add_fault))
            .route("/faults", web::delete().to(clear_faults))
            .route("/identities/{client_id}", web::put().to(put_identity))
            .route("/identities/{client_id}", web::delete().to(remove_identity))
            .route(
                "/identities/{client_id}/revoke",
                web::post().to(revoke_identity),
            )
            .route("/certificates/{name}/import", web::post().to(import))
            .route("/secrets/{name}", web::patch().to(set_secret_enabled))
            .route("/secrets/{name}", web::delete().to(delete_secret)),
    );
}

type Result = std::result::Result<HttpResponse, ApiError>;

fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> std::result::Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::bad_parameter(format!("invalid body: {e}")))
}

async fn info(shared: web::Data<Shared>) -> HttpResponse {
    HttpResponse::Ok().json(&shared.info)
}

async fn add_fault(shared: web::Data<Shared>, body: web::Bytes) -> Result {
    let fault: Fault = parse(&body)?;
    shared.add_fault(fault);
    Ok(HttpResponse::NoContent().finish())
}

async fn clear_faults(shared: web::Data<Shared>) -> HttpResponse {
    shared.clear_faults();
    HttpResponse::NoContent().finish()
}

#[derive(Deserialize)]
struct IdentityBody {
    #[serde(default)]
    secret_permissions: Vec<String>,
    #[serde(default)]
    certificate_permissions: Vec<String>,
}

async fn put_identity(
    shared: web::Data<Shared>,
    path: web::Path<String>,
    body: web::Bytes,
) -> Result {
    let body: IdentityBody = parse(&body)?;
    shared.mutate(|v| {
        v.put_identity(&path, body.secret_permissions, body.certificate_permissions);
        Ok(())
    })?;
    Ok(HttpResponse::NoContent().finish())
}

async fn revoke_identity(shared: web::Data<Shared>, path: web::Path<String>) -> Result {
    shared.mutate(|v| {
        v.revoke_identity(&path);
        Ok(())
    })?;
    Ok(HttpResponse::NoContent().finish())
}

async fn remove_identity(shared: web::Data<Shared>, path: web::Path<String>) -> Result {
    shared.mutate(|v| {
        v.identities.remove(&path.to_ascii_lowercase());
        Ok(())
    })?;
    Ok(HttpResponse::NoContent().finish())
}

#[derive(Deserialize)]
struct ImportBody {
    value: String,
    password: Option<String>,
}

async fn import(shared: web::Data<Shared>, path: web::Path<String>, body: web::Bytes) -> Result {
    let body: ImportBody = parse(&body)?;
    let bytes = crate::vault_api::import_value_bytes(&body.value)?;
    let shared2 = shared.clone();
    let version =
        web::block(move || crate::import(&shared2, &path, &bytes, body.password.as_deref()))
            .await
            .map_err(|e| {
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "InternalError",
                    e.to_string(),
                )
            })??;
    Ok(HttpResponse::Ok().json(json!({ "version": version })))
}

#[derive(Deserialize)]
struct EnabledBody {
    enabled: bool,
    version: Option<String>,
}

async fn set_secret_enabled(
    shared: web::Data<Shared>,
    path: web::Path<String>,
    body: web::Bytes,
) -> Result {
    let body: EnabledBody = parse(&body)?;
    shared.mutate(|v| {
        v.update_secret(
            &path,
            body.version.as_deref(),
            None,
            crate::state::AttributesInput {
                enabled: Some(body.enabled),
                ..Default::default()
            },
            None,
            crate::server::unix_now(),
        )
    })?;
    Ok(HttpResponse::NoContent().finish())
}

async fn delete_secret(shared: web::Data<Shared>, path: web::Path<String>) -> Result {
    shared.mutate(|v| v.delete_secret(&path))?;
    Ok(HttpResponse::NoContent().finish())
}
