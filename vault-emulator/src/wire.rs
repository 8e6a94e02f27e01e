//! JSON bodies as Key Vault writes them (field names and shapes as in the recordings and the
//! OpenAPI definitions `SecretBundle`, `SecretItem`, `CertificateBundle`, `CertificateItem`,
//! `CertificatePolicy`, `CertificateOperation`).

use serde_json::{json, Map, Value};

use crate::state::{CertificateEntry, CertificateVersion, PendingOperation, SecretVersion};

const RECOVERY_LEVEL: &str = "CustomizedRecoverable+Purgeable";
const RECOVERABLE_DAYS: i64 = 7;

fn attributes(
    enabled: bool,
    nbf: Option<i64>,
    exp: Option<i64>,
    created: i64,
    updated: i64,
) -> Value {
    let mut map = Map::new();
    map.insert("enabled".into(), json!(enabled));
    if let Some(nbf) = nbf {
        map.insert("nbf".into(), json!(nbf));
    }
    if let Some(exp) = exp {
        map.insert("exp".into(), json!(exp));
    }
    map.insert("created".into(), json!(created));
    map.insert("updated".into(), json!(updated));
    map.insert("recoveryLevel".into(), json!(RECOVERY_LEVEL));
    map.insert("recoverableDays".into(), json!(RECOVERABLE_DAYS));
    Value::Object(map)
}

fn secret_attributes(v: &SecretVersion) -> Value {
    attributes(v.enabled, v.nbf, v.exp, v.created, v.updated)
}

pub(crate) fn secret_bundle(base: &str, name: &str, v: &SecretVersion) -> Value {
    let mut body = secret_item(base, name, v);
    body["value"] = json!(v.value);
    if v.managed {
        body["kid"] = json!(format!("{base}keys/{name}/{}", v.version));
    }
    body
}

pub(crate) fn secret_item(base: &str, name: &str, v: &SecretVersion) -> Value {
    let mut body = json!({
        "id": format!("{base}secrets/{name}/{}", v.version),
        "attributes": secret_attributes(v),
    });
    if let Some(content_type) = &v.content_type {
        body["contentType"] = json!(content_type);
    }
    if let Some(tags) = &v.tags {
        body["tags"] = json!(tags);
    }
    if v.managed {
        body["managed"] = json!(true);
    }
    body
}

/// `SecretItem` of `GET /secrets` (base identifier, no version).
pub(crate) fn secret_list_item(base: &str, name: &str, v: &SecretVersion) -> Value {
    let mut body = secret_item(base, name, v);
    body["id"] = json!(format!("{base}secrets/{name}"));
    body
}

pub(crate) fn deleted_secret_bundle(base: &str, name: &str, v: &SecretVersion, now: i64) -> Value {
    let mut body = secret_item(base, name, v);
    if v.managed {
        body["kid"] = json!(format!("{base}keys/{name}/{}", v.version));
    }
    body["recoveryId"] = json!(format!("{base}deletedsecrets/{name}"));
    body["deletedDate"] = json!(now);
    body["scheduledPurgeDate"] = json!(now + RECOVERABLE_DAYS * 86_400);
    body
}

fn certificate_attributes(v: &CertificateVersion) -> Value {
    attributes(v.enabled, Some(v.nbf), Some(v.exp), v.created, v.updated)
}

pub(crate) fn certificate_bundle(
    base: &str,
    entry: &CertificateEntry,
    v: &CertificateVersion,
) -> Value {
    let name = &entry.name;
    let mut body = json!({
        "id": format!("{base}certificates/{name}/{}", v.version),
        "kid": format!("{base}keys/{name}/{}", v.version),
        "sid": format!("{base}secrets/{name}/{}", v.version),
        "x5t": v.x5t,
        "cer": v.chain.first().cloned().unwrap_or_default(),
        "attributes": certificate_attributes(v),
        "policy": policy(base, entry),
    });
    if let Some(tags) = &v.tags {
        body["tags"] = json!(tags);
    }
    if v.from_create {
        body["pending"] = json!({ "id": format!("{base}certificates/{name}/pending") });
    }
    body
}

pub(crate) fn certificate_item(base: &str, name: &str, v: &CertificateVersion) -> Value {
    let mut body = json!({
        "id": format!("{base}certificates/{name}/{}", v.version),
        "x5t": v.x5t,
        "attributes": certificate_attributes(v),
    });
    if let Some(tags) = &v.tags {
        body["tags"] = json!(tags);
    }
    body
}

pub(crate) fn certificate_list_item(base: &str, name: &str, v: &CertificateVersion) -> Value {
    let mut body = certificate_item(base, name, v);
    body["id"] = json!(format!("{base}certificates/{name}"));
    body
}

pub(crate) fn policy(base: &str, entry: &CertificateEntry) -> Value {
    let mut body = serde_json::to_value(&entry.policy).unwrap_or_else(|_| json!({}));
    if let Value::Object(map) = &mut body {
        let mut ordered = Map::new();
        ordered.insert(
            "id".into(),
            json!(format!("{base}certificates/{}/policy", entry.name)),
        );
        ordered.extend(std::mem::take(map));
        *map = ordered;
    }
    body
}

pub(crate) fn operation(base: &str, entry: &CertificateEntry, pending: &PendingOperation) -> Value {
    let name = &entry.name;
    let issuer = entry
        .policy
        .issuer
        .as_ref()
        .map(|i| serde_json::to_value(i).unwrap_or_else(|_| json!({})))
        .unwrap_or_else(|| json!({ "name": "Self" }));
    let mut body = json!({
        "id": format!("{base}certificates/{name}/pending"),
        "issuer": issuer,
        "csr": pending.csr,
        "cancellation_requested": false,
        "status": pending.status,
        "request_id": pending.request_id,
    });
    match pending.status.as_str() {
        "inProgress" => {
            body["status_details"] = json!("Pending certificate created. Certificate request is in progress. This may take some time based on the issuer provider. Please check again later.");
        }
        "completed" => {
            body["target"] = json!(format!("{base}certificates/{name}"));
        }
        _ => {
            if let Some((code, message)) = &pending.error {
                body["error"] = json!({ "code": code, "message": message });
            }
            body["target"] = json!(format!("{base}certificates/{name}"));
        }
    }
    body
}

pub(crate) fn page(items: Vec<Value>, next_link: Option<String>) -> Value {
    json!({ "value": items, "nextLink": next_link })
}
