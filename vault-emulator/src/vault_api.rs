//! The Key Vault data plane: secrets and certificates, with challenge auth, access policies,
//! api-version checks and paging as Key Vault does them.

use std::collections::{BTreeMap, HashMap};

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde::Deserialize;
use serde_json::Value;

use crate::api_error::ApiError;
use crate::certs;
use crate::identity::{verify_token, TokenProblem};
use crate::policy::CertificatePolicy;
use crate::server::{unix_now, Shared};
use crate::state::{AttributesInput, PermissionKind};
use crate::wire;

/// The api-versions this emulator speaks.
pub const SUPPORTED_API_VERSIONS: &[&str] = &["7.4", "7.5", "7.6", "2025-07-01"];
const LATEST_API_VERSION: &str = "2025-07-01";
const DEFAULT_PAGE_SIZE: usize = 25;

type Query = web::Query<HashMap<String, String>>;
type ApiResult = Result<HttpResponse, ApiError>;

pub(crate) fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource(["/secrets", "/secrets/"])
            .get(list_secrets)
            .put(put_without_name),
    )
    .service(web::resource("/secrets/{name}/versions").get(list_secret_versions))
    .service(
        web::resource(["/secrets/{name}", "/secrets/{name}/"])
            .get(get_secret)
            .put(set_secret)
            .patch(update_secret)
            .delete(delete_secret),
    )
    .service(
        web::resource("/secrets/{name}/{version}")
            .get(get_secret)
            .patch(update_secret),
    )
    .service(web::resource(["/certificates", "/certificates/"]).get(list_certificates))
    .service(web::resource("/certificates/{name}/create").post(create_certificate))
    .service(web::resource("/certificates/{name}/import").post(import_certificate))
    .service(web::resource("/certificates/{name}/pending").get(get_pending))
    .service(web::resource("/certificates/{name}/policy").get(get_policy))
    .service(web::resource("/certificates/{name}/versions").get(list_certificate_versions))
    .service(web::resource(["/certificates/{name}", "/certificates/{name}/"]).get(get_certificate))
    .service(web::resource("/certificates/{name}/{version}").get(get_certificate));
}

pub(crate) async fn not_found(req: HttpRequest) -> HttpResponse {
    actix_web::ResponseError::error_response(&ApiError::new(
        StatusCode::NOT_FOUND,
        "NotFound",
        format!(
            "The requested path {} is not served by this vault.",
            req.path()
        ),
    ))
}

fn json(status: StatusCode, body: &Value) -> HttpResponse {
    HttpResponse::build(status)
        .content_type("application/json; charset=utf-8")
        .body(body.to_string())
}

/// Authentication, api-version and access policy, in that order.
fn authorize(
    req: &HttpRequest,
    query: &Query,
    shared: &Shared,
    kind: PermissionKind,
    permission: &str,
) -> Result<(), ApiError> {
    let vault = shared.vault();
    let token = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, token) = v.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        });
    let Some(token) = token else {
        return Err(ApiError::unauthorized(
            &vault.tenant_id,
            "AKV10000: Request is missing a Bearer or PoP token.",
        ));
    };
    let client_id = match verify_token(&vault, token, unix_now()) {
        Ok(client_id) => client_id,
        Err(TokenProblem::Expired) => {
            return Err(ApiError::unauthorized(&vault.tenant_id, "AKV10013: The access token has expired."))
        }
        Err(TokenProblem::Invalid) => {
            return Err(ApiError::unauthorized(
                &vault.tenant_id,
                "AKV10022: Invalid audience or signature: the token was not issued by this vault's identity endpoint.",
            ))
        }
    };
    match query.get("api-version") {
        None => return Err(ApiError::bad_parameter("The 'api-version' query parameter is missing.")),
        Some(v) if !SUPPORTED_API_VERSIONS.contains(&v.as_str()) => {
            return Err(ApiError::bad_parameter(format!(
                "The specified version ({v}) is not recognized. Consider using the latest supported version ({LATEST_API_VERSION})."
            )))
        }
        Some(_) => {}
    }
    let identity = vault.identity(&client_id);
    let allowed = identity.is_some_and(|i| i.allows(kind, permission));
    if !allowed {
        let object_id = identity
            .map(|i| i.object_id.as_str())
            .unwrap_or("00000000-0000-0000-0000-000000000000");
        let caller = format!(
            "appid={client_id};oid={object_id};iss=https://sts.windows.net/{}/",
            vault.tenant_id
        );
        tracing::info!(%client_id, kind = kind.as_str(), permission, "access denied by the access policy");
        return Err(ApiError::access_denied(
            &caller,
            kind.as_str(),
            permission,
            "vault-emulator",
        ));
    }
    Ok(())
}

fn check_name(name: &str) -> Result<(), ApiError> {
    if name.is_empty()
        || name.len() > 127
        || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    {
        return Err(ApiError::bad_parameter(format!(
            "The request URI contains an invalid name: {name}. Names are 1-127 characters of 0-9, a-z, A-Z and '-'."
        )));
    }
    Ok(())
}

fn parse_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_parameter(format!("The request body is not valid: {e}")))
}

fn path_parts(req: &HttpRequest) -> (String, Option<String>) {
    let name = req.match_info().get("name").unwrap_or_default().to_owned();
    let version = req.match_info().get("version").map(str::to_owned);
    (name, version)
}

/// One page of `items` and the `nextLink` to the rest.
fn paged(
    req: &HttpRequest,
    query: &Query,
    shared: &Shared,
    items: Vec<Value>,
) -> Result<Value, ApiError> {
    let size = match query.get("maxresults") {
        None => DEFAULT_PAGE_SIZE,
        Some(v) => match v.parse::<usize>() {
            Ok(n @ 1..=25) => n,
            _ => {
                return Err(ApiError::bad_parameter(
                    "maxresults must be between 1 and 25.",
                ))
            }
        },
    };
    let offset = match query.get("$skiptoken") {
        None => 0,
        Some(token) => STANDARD
            .decode(token)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .and_then(|s| s.strip_prefix("offset:").and_then(|n| n.parse().ok()))
            .ok_or_else(|| ApiError::bad_parameter("The $skiptoken is not valid."))?,
    };
    let total = items.len();
    let page: Vec<Value> = items.into_iter().skip(offset).take(size).collect();
    let next = (offset + size < total).then(|| {
        let token = STANDARD.encode(format!("offset:{}", offset + size));
        let api_version = query.get("api-version").cloned().unwrap_or_default();
        format!(
            "{}{}?api-version={api_version}&$skiptoken={}&maxresults={size}",
            shared.vault_url,
            req.path().trim_start_matches('/'),
            token
                .replace('=', "%3D")
                .replace('+', "%2B")
                .replace('/', "%2F"),
        )
    });
    Ok(wire::page(page, next))
}

// ---- secrets ---------------------------------------------------------------------------------

#[derive(Deserialize)]
struct SetSecretBody {
    value: String,
    #[serde(rename = "contentType")]
    content_type: Option<String>,
    #[serde(default)]
    attributes: Option<AttributesInput>,
    tags: Option<BTreeMap<String, String>>,
}

#[derive(Deserialize, Default)]
struct UpdateSecretBody {
    #[serde(rename = "contentType")]
    content_type: Option<String>,
    #[serde(default)]
    attributes: Option<AttributesInput>,
    tags: Option<BTreeMap<String, String>>,
}

async fn put_without_name(req: HttpRequest, query: Query, shared: web::Data<Shared>) -> ApiResult {
    authorize(&req, &query, &shared, PermissionKind::Secrets, "set")?;
    Err(ApiError::method_not_allowed("PUT"))
}

async fn set_secret(
    req: HttpRequest,
    query: Query,
    body: web::Bytes,
    shared: web::Data<Shared>,
) -> ApiResult {
    authorize(&req, &query, &shared, PermissionKind::Secrets, "set")?;
    let (name, _) = path_parts(&req);
    check_name(&name)?;
    let body: SetSecretBody = parse_body(&body)?;
    let now = unix_now();
    let (name, version) = shared.mutate(|v| {
        Ok(v.set_secret(
            &name,
            body.value,
            body.content_type,
            body.attributes.unwrap_or_default(),
            body.tags,
            now,
        ))
    })?;
    Ok(json(
        StatusCode::OK,
        &wire::secret_bundle(&shared.vault_url, &name, &version),
    ))
}

async fn get_secret(req: HttpRequest, query: Query, shared: web::Data<Shared>) -> ApiResult {
    authorize(&req, &query, &shared, PermissionKind::Secrets, "get")?;
    let (name, version) = path_parts(&req);
    if let Some(content_type) = query.get("outContentType") {
        if content_type != crate::policy::PEM && content_type != crate::policy::PKCS12 {
            return Err(ApiError::bad_parameter(format!(
                "The outContentType '{content_type}' is not supported."
            )));
        }
    }
    let vault = shared.vault();
    let (entry, found) = vault.get_secret(&name, version.as_deref())?;
    let mut body = wire::secret_bundle(&shared.vault_url, &entry.name, found);
    if query.get("outContentType").map(String::as_str) == Some(crate::policy::PEM)
        && found.content_type.as_deref() == Some(crate::policy::PKCS12)
    {
        let pem = STANDARD
            .decode(&found.value)
            .map_err(|e| e.to_string())
            .and_then(|der| certs::decode_import(&der, None))
            .and_then(|imported| {
                certs::secret_value(crate::policy::PEM, &imported.chain, &imported.key_pkcs8)
            })
            .map_err(|e| {
                ApiError::bad_parameter(format!("The secret cannot be converted to PEM: {e}"))
            })?;
        body["value"] = Value::String(pem);
        body["contentType"] = Value::String(crate::policy::PEM.to_owned());
    }
    Ok(json(StatusCode::OK, &body))
}

async fn list_secret_versions(
    req: HttpRequest,
    query: Query,
    shared: web::Data<Shared>,
) -> ApiResult {
    authorize(&req, &query, &shared, PermissionKind::Secrets, "list")?;
    let (name, _) = path_parts(&req);
    let items = {
        let vault = shared.vault();
        vault
            .secret_versions(&name)
            .map(|entry| {
                entry
                    .versions
                    .iter()
                    .rev()
                    .map(|v| wire::secret_item(&shared.vault_url, &entry.name, v))
                    .collect()
            })
            .unwrap_or_default()
    };
    Ok(json(StatusCode::OK, &paged(&req, &query, &shared, items)?))
}

async fn list_secrets(req: HttpRequest, query: Query, shared: web::Data<Shared>) -> ApiResult {
    authorize(&req, &query, &shared, PermissionKind::Secrets, "list")?;
    let items = {
        let vault = shared.vault();
        vault
            .secrets
            .values()
            .filter_map(|entry| {
                entry
                    .versions
                    .last()
                    .map(|v| wire::secret_list_item(&shared.vault_url, &entry.name, v))
            })
            .collect()
    };
    Ok(json(StatusCode::OK, &paged(&req, &query, &shared, items)?))
}

async fn update_secret(
    req: HttpRequest,
    query: Query,
    body: web::Bytes,
    shared: web::Data<Shared>,
) -> ApiResult {
    authorize(&req, &query, &shared, PermissionKind::Secrets, "set")?;
    let (name, version) = path_parts(&req);
    let body: UpdateSecretBody = if body.is_empty() {
        UpdateSecretBody::default()
    } else {
        parse_body(&body)?
    };
    let now = unix_now();
    let (name, found) = shared.mutate(|v| {
        v.update_secret(
            &name,
            version.as_deref(),
            body.content_type,
            body.attributes.unwrap_or_default(),
            body.tags,
            now,
        )
    })?;
    let mut out = wire::secret_bundle(&shared.vault_url, &name, &found);
    if let Value::Object(map) = &mut out {
        map.remove("value");
    }
    Ok(json(StatusCode::OK, &out))
}

async fn delete_secret(req: HttpRequest, query: Query, shared: web::Data<Shared>) -> ApiResult {
    authorize(&req, &query, &shared, PermissionKind::Secrets, "delete")?;
    let (name, _) = path_parts(&req);
    let (name, last) = shared.mutate(|v| v.delete_secret(&name))?;
    Ok(json(
        StatusCode::OK,
        &wire::deleted_secret_bundle(&shared.vault_url, &name, &last, unix_now()),
    ))
}

// ---- certificates ----------------------------------------------------------------------------

#[derive(Deserialize, Default)]
struct CreateBody {
    policy: Option<CertificatePolicy>,
    #[serde(default)]
    attributes: Option<AttributesInput>,
    tags: Option<BTreeMap<String, String>>,
}

#[derive(Deserialize)]
struct ImportBody {
    value: String,
    pwd: Option<String>,
    policy: Option<CertificatePolicy>,
    #[serde(default)]
    attributes: Option<AttributesInput>,
    tags: Option<BTreeMap<String, String>>,
}

async fn create_certificate(
    req: HttpRequest,
    query: Query,
    body: web::Bytes,
    shared: web::Data<Shared>,
) -> ApiResult {
    authorize(
        &req,
        &query,
        &shared,
        PermissionKind::Certificates,
        "create",
    )?;
    let (name, _) = path_parts(&req);
    check_name(&name)?;
    let body: CreateBody = if body.is_empty() {
        CreateBody::default()
    } else {
        parse_body(&body)?
    };
    let now = unix_now();
    let policy = body
        .policy
        .ok_or_else(|| ApiError::bad_parameter("Property policy is required."))?
        .resolved_for_create(now);
    let issuer = policy
        .issuer
        .as_ref()
        .and_then(|i| i.name.clone())
        .unwrap_or_default();
    if !issuer.eq_ignore_ascii_case("Self") {
        return Err(ApiError::bad_parameter(format!(
            "Issuer '{issuer}' is not supported by the emulator: only 'Self' (self-signed) certificates can be created; import the others."
        )));
    }
    let spec = policy.key_spec().map_err(ApiError::bad_parameter)?;
    certs::params_from_policy(&policy, now).map_err(ApiError::bad_parameter)?;
    let for_key = policy.clone();
    let (key, csr) = web::block(move || -> Result<_, String> {
        let key = certs::generate_key(spec)?;
        let params = certs::params_from_policy(&for_key, now)?;
        let csr = certs::csr(&params, &key.key_pair()?)?;
        Ok((key, csr))
    })
    .await
    .map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalError",
            e.to_string(),
        )
    })?
    .map_err(ApiError::bad_parameter)?;
    let alg = match spec {
        crate::policy::KeySpec::Rsa(_) => "rsa",
        crate::policy::KeySpec::EcP256 => "p256",
        crate::policy::KeySpec::EcP384 => "p384",
    };
    let ready_at_ms =
        unix_now_ms() + i64::try_from(shared.pending_delay.as_millis()).unwrap_or(i64::MAX);
    let enabled = body.attributes.and_then(|a| a.enabled).unwrap_or(true);
    let body = shared.mutate(|v| {
        let entry = v.begin_create(
            &name,
            policy,
            &key,
            alg,
            &csr,
            enabled,
            body.tags,
            now,
            ready_at_ms,
        )?;
        let pending = entry
            .pending
            .as_ref()
            .ok_or_else(|| ApiError::pending_not_found(&name))?;
        Ok((
            wire::operation(&shared.vault_url, entry, pending),
            entry.name.clone(),
            pending.request_id.clone(),
        ))
    })?;
    let (body, name, request_id) = body;
    let api_version = query.get("api-version").cloned().unwrap_or_default();
    Ok(HttpResponse::build(StatusCode::ACCEPTED)
        .content_type("application/json; charset=utf-8")
        .insert_header((
            header::LOCATION,
            format!(
                "{}certificates/{name}/pending?api-version={api_version}&request_id={request_id}",
                shared.vault_url
            ),
        ))
        .insert_header((header::RETRY_AFTER, shared.retry_after_secs().to_string()))
        .body(body.to_string()))
}

pub(crate) fn unix_now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Decodes the `value` of an import request: PEM text, or base64 PKCS#12.
pub(crate) fn import_value_bytes(value: &str) -> Result<Vec<u8>, ApiError> {
    if value.contains("-----BEGIN") {
        return Ok(value.as_bytes().to_vec());
    }
    let compact: String = value.chars().filter(|c| !c.is_whitespace()).collect();
    STANDARD.decode(compact).map_err(|_| {
        ApiError::bad_parameter(
            "The specified certificate value is neither PEM nor base64-encoded PKCS#12.",
        )
    })
}

async fn import_certificate(
    req: HttpRequest,
    query: Query,
    body: web::Bytes,
    shared: web::Data<Shared>,
) -> ApiResult {
    authorize(
        &req,
        &query,
        &shared,
        PermissionKind::Certificates,
        "import",
    )?;
    let (name, _) = path_parts(&req);
    check_name(&name)?;
    let body: ImportBody = parse_body(&body)?;
    let bytes = import_value_bytes(&body.value)?;
    let password = body.pwd.clone();
    let imported = web::block(move || certs::decode_import(&bytes, password.as_deref()))
        .await
        .map_err(|e| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalError",
                e.to_string(),
            )
        })?
        .map_err(|e| {
            ApiError::bad_parameter(format!("The certificate could not be imported: {e}"))
        })?;
    let now = unix_now();
    let enabled = body.attributes.and_then(|a| a.enabled);
    let version = shared
        .mutate(|v| v.import_certificate(&name, &imported, body.policy, enabled, body.tags, now))?;
    let vault = shared.vault();
    let (entry, found) = vault.get_certificate(&name, Some(&version))?;
    Ok(json(
        StatusCode::OK,
        &wire::certificate_bundle(&shared.vault_url, entry, found),
    ))
}

async fn get_certificate(req: HttpRequest, query: Query, shared: web::Data<Shared>) -> ApiResult {
    authorize(&req, &query, &shared, PermissionKind::Certificates, "get")?;
    let (name, version) = path_parts(&req);
    let vault = shared.vault();
    let (entry, found) = vault.get_certificate(&name, version.as_deref())?;
    Ok(json(
        StatusCode::OK,
        &wire::certificate_bundle(&shared.vault_url, entry, found),
    ))
}

async fn get_pending(req: HttpRequest, query: Query, shared: web::Data<Shared>) -> ApiResult {
    authorize(&req, &query, &shared, PermissionKind::Certificates, "get")?;
    let (name, _) = path_parts(&req);
    let vault = shared.vault();
    let entry = vault
        .certificate(&name)
        .ok_or_else(|| ApiError::pending_not_found(&name))?;
    let pending = entry
        .pending
        .as_ref()
        .ok_or_else(|| ApiError::pending_not_found(&name))?;
    let mut response = HttpResponse::Ok();
    response.content_type("application/json; charset=utf-8");
    if pending.status == "inProgress" {
        response.insert_header((header::RETRY_AFTER, shared.retry_after_secs().to_string()));
    }
    Ok(response.body(wire::operation(&shared.vault_url, entry, pending).to_string()))
}

async fn get_policy(req: HttpRequest, query: Query, shared: web::Data<Shared>) -> ApiResult {
    authorize(&req, &query, &shared, PermissionKind::Certificates, "get")?;
    let (name, _) = path_parts(&req);
    let vault = shared.vault();
    let entry = vault
        .certificate(&name)
        .ok_or_else(|| ApiError::certificate_not_found(&name))?;
    Ok(json(
        StatusCode::OK,
        &wire::policy(&shared.vault_url, entry),
    ))
}

async fn list_certificate_versions(
    req: HttpRequest,
    query: Query,
    shared: web::Data<Shared>,
) -> ApiResult {
    authorize(&req, &query, &shared, PermissionKind::Certificates, "list")?;
    let (name, _) = path_parts(&req);
    let items = {
        let vault = shared.vault();
        vault
            .certificate(&name)
            .map(|entry| {
                entry
                    .versions
                    .iter()
                    .rev()
                    .map(|v| wire::certificate_item(&shared.vault_url, &entry.name, v))
                    .collect()
            })
            .unwrap_or_default()
    };
    Ok(json(StatusCode::OK, &paged(&req, &query, &shared, items)?))
}

async fn list_certificates(req: HttpRequest, query: Query, shared: web::Data<Shared>) -> ApiResult {
    authorize(&req, &query, &shared, PermissionKind::Certificates, "list")?;
    let items = {
        let vault = shared.vault();
        vault
            .certificates
            .values()
            .filter_map(|entry| {
                entry
                    .versions
                    .last()
                    .map(|v| wire::certificate_list_item(&shared.vault_url, &entry.name, v))
            })
            .collect()
    };
    Ok(json(StatusCode::OK, &paged(&req, &query, &shared, items)?))
}
