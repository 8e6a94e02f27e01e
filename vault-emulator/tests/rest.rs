//! The emulator over real HTTPS with a real client: challenge auth, token endpoints, secrets,
//! certificates (create, import, PFX/PEM secrets), access policies, faults and restarts.

mod common;

use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use reqwest::Method;
use serde_json::{json, Value};
use vault_emulator::{Emulator, EmulatorConfig, Fault, FaultKind};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

fn self_signed_pem(name: &str) -> String {
    let key = rcgen::KeyPair::generate().expect("key");
    let cert = rcgen::CertificateParams::new(vec![name.to_owned()])
        .expect("params")
        .self_signed(&key)
        .expect("cert");
    format!("{}{}", key.serialize_pem(), cert.pem())
}

#[test]
fn unauthenticated_requests_get_the_key_vault_challenge() {
    let s = common::start();
    runtime().block_on(async {
        let (status, headers, body) = s.call(Method::GET, &s.url("secrets/missing", "7.5"), None, None).await;
        assert_eq!(status, 401);
        let tenant = &s.emulator.info().tenant_id;
        assert_eq!(
            headers["www-authenticate"].to_str().unwrap(),
            format!("Bearer authorization=\"https://login.microsoftonline.com/{tenant}\", resource=\"https://vault.azure.net\"")
        );
        assert_eq!(
            body,
            json!({"error":{"code":"Unauthorized","message":"AKV10000: Request is missing a Bearer or PoP token."}})
        );
        let (status, _, _) = s
            .call(Method::GET, &s.url("secrets/missing", "7.5"), Some("kvemu.forged.token"), None)
            .await;
        assert_eq!(status, 401);
    });
}

#[test]
fn token_endpoints_speak_imds_and_app_service() {
    let s = common::start();
    let info = s.emulator.info().clone();
    runtime().block_on(async {
        let url = format!(
            "{}?api-version=2018-02-01&resource=https://vault.azure.net",
            info.identity_endpoint
        );
        let response = s.http.get(&url).send().await.unwrap();
        assert_eq!(response.status(), 400);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"], "bad_request_102");

        let response = s
            .http
            .get(format!(
                "{url}&client_id=00000000-0000-0000-0000-000000000001"
            ))
            .header("Metadata", "true")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400);
        let body: Value = response.json().await.unwrap();
        assert_eq!(
            body,
            json!({"error":"invalid_request","error_description":"Identity not found"})
        );

        let response = s
            .http
            .get(format!("{url}&client_id={}", info.client_id))
            .header("Metadata", "true")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let body: Value = response.json().await.unwrap();
        for field in ["expires_in", "expires_on", "not_before"] {
            let value = body[field]
                .as_str()
                .unwrap_or_else(|| panic!("{field} is a string: {body}"));
            value.parse::<i64>().expect("numeric string");
        }
        assert_eq!(body["token_type"], "Bearer");
        assert_eq!(body["resource"], "https://vault.azure.net");

        let app = format!(
            "{}?api-version=2019-08-01&resource=https://vault.azure.net",
            info.app_service_endpoint
        );
        let response = s.http.get(&app).send().await.unwrap();
        assert_eq!(response.status(), 400);
        let response = s
            .http
            .get(&app)
            .header("X-IDENTITY-HEADER", &info.app_service_header)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let body: Value = response.json().await.unwrap();
        assert!(body["expires_on"].as_str().is_some());
        let token = body["access_token"].as_str().unwrap().to_owned();
        let (status, _, _) = s
            .call(
                Method::GET,
                &s.url("secrets/none", "7.6"),
                Some(&token),
                None,
            )
            .await;
        assert_eq!(status, 404);
    });
}

#[test]
fn secrets_roundtrip_versions_disable_delete_and_paging() {
    let s = common::start();
    runtime().block_on(async {
        let token = s.token(None).await;
        let t = Some(token.as_str());
        let mut versions = Vec::new();
        for i in 0..3 {
            let (status, _, body) = s
                .call(Method::PUT, &s.url("secrets/app-secret", "7.6"), t, Some(json!({"value": format!("v{i}")})))
                .await;
            assert_eq!(status, 200, "{body}");
            assert_eq!(body["value"], format!("v{i}"));
            assert_eq!(body["attributes"]["enabled"], true);
            assert_eq!(body["attributes"]["recoveryLevel"], "CustomizedRecoverable+Purgeable");
            let id = body["id"].as_str().unwrap();
            let version = id.rsplit('/').next().unwrap().to_owned();
            assert_eq!(version.len(), 32);
            assert!(version.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
            assert_eq!(id, format!("{}secrets/app-secret/{version}", s.emulator.info().vault_url));
            versions.push(version);
        }
        // Latest, with and without the trailing slash; by version.
        for path in ["secrets/app-secret", "secrets/app-secret/"] {
            let (status, _, body) = s.call(Method::GET, &s.url(path, "2025-07-01"), t, None).await;
            assert_eq!(status, 200);
            assert_eq!(body["value"], "v2");
        }
        let (_, _, body) = s
            .call(Method::GET, &s.url(&format!("secrets/app-secret/{}", versions[0]), "7.4"), t, None)
            .await;
        assert_eq!(body["value"], "v0");

        // Paging: two per page, newest first, nextLink absolute.
        let (status, _, page) = s
            .call(Method::GET, &s.url("secrets/app-secret/versions?maxresults=2", "7.5"), t, None)
            .await;
        assert_eq!(status, 200);
        assert_eq!(page["value"].as_array().unwrap().len(), 2);
        assert!(page["value"][0].get("value").is_none(), "list items carry no value");
        let next = page["nextLink"].as_str().expect("nextLink").to_owned();
        assert!(next.starts_with(&s.emulator.info().vault_url));
        let (_, _, page2) = s.call(Method::GET, &next, t, None).await;
        assert_eq!(page2["value"].as_array().unwrap().len(), 1);
        assert!(page2["nextLink"].is_null());

        // Disable the latest: versionless GET is 403 SecretDisabled, no fall-back.
        let (status, _, body) = s
            .call(
                Method::PATCH,
                &s.url(&format!("secrets/app-secret/{}", versions[2]), "7.5"),
                t,
                Some(json!({"attributes": {"enabled": false}})),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        let (status, _, body) = s.call(Method::GET, &s.url("secrets/app-secret", "7.5"), t, None).await;
        assert_eq!(status, 403);
        assert_eq!(
            body,
            json!({"error":{"code":"Forbidden","message":"Operation get is not allowed on a disabled secret.","innererror":{"code":"SecretDisabled"}}})
        );
        s.emulator.set_secret_enabled("app-secret", None, true);
        let (status, _, _) = s.call(Method::GET, &s.url("secrets/app-secret", "7.5"), t, None).await;
        assert_eq!(status, 200);

        // Unsupported api-version, empty name, delete, 404.
        let (status, _, body) = s.call(Method::GET, &s.url("secrets/app-secret", "7.3"), t, None).await;
        assert_eq!(status, 400);
        assert_eq!(body["error"]["code"], "BadParameter");
        let (status, _, body) = s.call(Method::PUT, &s.url("secrets/", "7.5"), t, Some(json!({"value": "x"}))).await;
        assert_eq!(status, 405);
        assert_eq!(body["error"]["message"], "HTTP PUT not allowed");
        let (status, _, body) = s.call(Method::DELETE, &s.url("secrets/app-secret", "7.5"), t, None).await;
        assert_eq!(status, 200, "{body}");
        assert!(body["recoveryId"].is_string());
        let (status, _, body) = s.call(Method::GET, &s.url("secrets/app-secret", "7.5"), t, None).await;
        assert_eq!(status, 404);
        assert_eq!(body["error"]["code"], "SecretNotFound");
        assert!(body["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("A secret with (name/id) app-secret was not found in this key vault."));
    });
}

#[test]
fn created_certificate_has_a_pfx_secret_that_opens_password_less() {
    let s = common::start();
    runtime().block_on(async {
        let token = s.token(None).await;
        let t = Some(token.as_str());
        let op = s
            .create_certificate(
                &token,
                "site",
                json!({
                    "key_props": {}, "secret_props": {},
                    "x509_props": {"subject": "CN=site.example", "sans": {"dns_names": ["site.example", "www.site.example"]}},
                    "issuer": {"name": "Self"}, "attributes": {}
                }),
            )
            .await;
        assert_eq!(op["target"], format!("{}certificates/site", s.emulator.info().vault_url));
        let (status, _, cert) = s.call(Method::GET, &s.url("certificates/site/", "7.5"), t, None).await;
        assert_eq!(status, 200, "{cert}");
        let version = cert["id"].as_str().unwrap().rsplit('/').next().unwrap().to_owned();
        assert_eq!(cert["sid"], format!("{}secrets/site/{version}", s.emulator.info().vault_url));
        assert_eq!(cert["kid"], format!("{}keys/site/{version}", s.emulator.info().vault_url));
        assert_eq!(cert["policy"]["key_props"], json!({"exportable": true, "kty": "RSA", "key_size": 2048, "reuse_key": false}));
        assert_eq!(cert["policy"]["lifetime_actions"][0]["action"]["action_type"], "AutoRenew");
        let attributes = &cert["attributes"];
        let created = attributes["created"].as_i64().unwrap();
        assert_eq!(attributes["nbf"].as_i64().unwrap(), created - 600);
        assert_eq!(attributes["exp"].as_i64().unwrap(), created + 31_536_000);
        assert!(cert["pending"]["id"].is_string());

        let (status, _, secret) = s.call(Method::GET, &s.url("secrets/site", "7.5"), t, None).await;
        assert_eq!(status, 200);
        assert_eq!(secret["contentType"], "application/x-pkcs12");
        assert_eq!(secret["managed"], true);
        assert_eq!(secret["kid"], cert["kid"]);
        let pfx = STANDARD.decode(secret["value"].as_str().unwrap()).unwrap();
        let bundle = cert_bundle::CertificateBundle::from_pfx(&pfx, None).expect("cert-bundle opens the PFX");
        let cer = STANDARD.decode(cert["cer"].as_str().unwrap()).unwrap();
        assert_eq!(bundle.leaf().as_ref(), cer.as_slice());
        use sha1::Digest as _;
        let x5t = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha1::Sha1::digest(&cer));
        assert_eq!(cert["x5t"], x5t);

        // The PEM flavour: PKCS#8 key first, then the certificate.
        s.create_certificate(
            &token,
            "site-pem",
            json!({"key_props": {"kty": "EC", "crv": "P-256"}, "secret_props": {"contentType": "application/x-pem-file"},
                   "x509_props": {"subject": "CN=pem.example"}, "issuer": {"name": "Self"}}),
        )
        .await;
        let (_, _, secret) = s.call(Method::GET, &s.url("secrets/site-pem", "7.5"), t, None).await;
        let pem = secret["value"].as_str().unwrap();
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----\n"), "{pem}");
        assert!(pem.contains("-----BEGIN CERTIFICATE-----"));
        cert_bundle::CertificateBundle::from_pem(pem.as_bytes()).expect("PEM bundle");

        // Versions and policy.
        let (_, _, versions) = s.call(Method::GET, &s.url("certificates/site/versions", "7.5"), t, None).await;
        assert_eq!(versions["value"].as_array().unwrap().len(), 1);
        let (_, _, policy) = s.call(Method::GET, &s.url("certificates/site/policy", "7.5"), t, None).await;
        assert_eq!(policy["x509_props"]["sans"]["dns_names"][1], "www.site.example");
        let (status, _, body) = s.call(Method::GET, &s.url("certificates/nothing", "7.5"), t, None).await;
        assert_eq!(status, 404);
        assert_eq!(body["error"]["code"], "CertificateNotFound");
    });
}

#[test]
fn import_over_rest_and_handle_make_new_versions() {
    let s = common::start();
    let pem = self_signed_pem("imported.example");
    let v1 = s
        .emulator
        .import_certificate("imported", pem.as_bytes(), None)
        .expect("import PEM");
    runtime().block_on(async {
        let token = s.token(None).await;
        let t = Some(token.as_str());
        let (_, _, secret) = s.call(Method::GET, &s.url(&format!("secrets/imported/{v1}"), "7.5"), t, None).await;
        assert_eq!(secret["contentType"], "application/x-pem-file");

        // Re-import the PFX flavour over REST, as the recorded SDK test does.
        s.create_certificate(&token, "source", json!({"x509_props": {"subject": "CN=MyCert"}, "issuer": {"name": "Self"}}))
            .await;
        let (_, _, source) = s.call(Method::GET, &s.url("secrets/source", "7.5"), t, None).await;
        let (status, _, cert) = s
            .call(
                Method::POST,
                &s.url("certificates/imported/import", "7.5"),
                t,
                Some(json!({"value": source["value"], "policy": {"secret_props": {"contentType": "application/x-pkcs12"}}})),
            )
            .await;
        assert_eq!(status, 200, "{cert}");
        assert_eq!(cert["policy"]["issuer"]["name"], "Unknown");
        assert_eq!(cert["policy"]["x509_props"]["subject"], "CN=MyCert");
        assert_eq!(cert["policy"]["x509_props"]["validity_months"], 13);
        assert_eq!(cert["policy"]["lifetime_actions"][0]["action"]["action_type"], "EmailContacts");
        assert!(cert.get("pending").is_none());
        let (_, _, versions) = s.call(Method::GET, &s.url("certificates/imported/versions", "7.5"), t, None).await;
        assert_eq!(versions["value"].as_array().unwrap().len(), 2);
        let (_, _, secret) = s.call(Method::GET, &s.url("secrets/imported", "7.5"), t, None).await;
        assert_eq!(secret["contentType"], "application/x-pkcs12");

        let (status, _, body) = s
            .call(Method::POST, &s.url("certificates/bad/import", "7.5"), t, Some(json!({"value": "bm90IGEgcGZ4"})))
            .await;
        assert_eq!(status, 400, "{body}");
    });
}

#[test]
fn access_policies_deny_with_key_vault_403_and_revoke_takes_effect() {
    let s = common::start();
    let reader = "11111111-2222-3333-4444-555555555555";
    s.emulator.add_identity(reader, &["get"], &[]);
    s.emulator.set_secret("shared", "value").unwrap();
    runtime().block_on(async {
        let token = s.token(Some(reader)).await;
        let t = Some(token.as_str());
        let (status, _, _) = s
            .call(Method::GET, &s.url("secrets/shared", "7.5"), t, None)
            .await;
        assert_eq!(status, 200);
        let (status, _, body) = s
            .call(
                Method::PUT,
                &s.url("secrets/shared", "7.5"),
                t,
                Some(json!({"value": "x"})),
            )
            .await;
        assert_eq!(status, 403);
        assert_eq!(body["error"]["code"], "Forbidden");
        assert_eq!(body["error"]["innererror"]["code"], "AccessDenied");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(
            message.starts_with(&format!(
                "The user, group or application 'appid={reader};oid="
            )),
            "{message}"
        );
        assert!(
            message.contains("does not have secrets set permission on key vault"),
            "{message}"
        );

        s.emulator.revoke_identity(reader);
        let (status, _, body) = s
            .call(Method::GET, &s.url("secrets/shared", "7.5"), t, None)
            .await;
        assert_eq!(status, 403);
        assert!(body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("secrets get permission"));
    });
}

#[test]
fn faults_delay_fail_and_drop_requests_and_can_be_driven_over_http() {
    let s = common::start();
    s.emulator.set_secret("faulty", "value").unwrap();
    runtime().block_on(async {
        let token = s.token(None).await;
        let t = Some(token.as_str());
        s.emulator.inject_fault(Fault {
            path_prefix: "/secrets/".into(),
            kind: FaultKind::Status(429),
            count: Some(1),
        });
        let (status, headers, body) = s
            .call(Method::GET, &s.url("secrets/faulty", "7.5"), t, None)
            .await;
        assert_eq!(status, 429);
        assert_eq!(headers["retry-after"], "1");
        assert_eq!(body["error"]["code"], "Throttled");
        let (status, _, _) = s
            .call(Method::GET, &s.url("secrets/faulty", "7.5"), t, None)
            .await;
        assert_eq!(status, 200, "count 1 fault is gone");

        s.emulator.inject_fault(Fault {
            path_prefix: "/secrets/".into(),
            kind: FaultKind::DropConnection,
            count: None,
        });
        let result = s
            .http
            .get(s.url("secrets/faulty", "7.5"))
            .bearer_auth(&token)
            .send()
            .await;
        assert!(result.is_err(), "the connection was dropped: {result:?}");
        s.emulator.clear_faults();

        // Over HTTP: take the identity endpoint down with 503s, then clear.
        let control = s.emulator.info().control_url.clone();
        let response = s
            .http
            .post(format!("{control}faults"))
            .json(&json!({"path_prefix": "/metadata/identity", "kind": {"status": 503}}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 204);
        let response = s
            .http
            .get(format!(
                "{}?api-version=2018-02-01&resource=https://vault.azure.net",
                s.emulator.info().identity_endpoint
            ))
            .header("Metadata", "true")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 503);
        s.http
            .delete(format!("{control}faults"))
            .send()
            .await
            .unwrap();

        s.emulator.inject_fault(Fault {
            path_prefix: "/secrets/".into(),
            kind: FaultKind::Delay(Duration::from_millis(300)),
            count: Some(1),
        });
        let started = std::time::Instant::now();
        let (status, _, _) = s
            .call(Method::GET, &s.url("secrets/faulty", "7.5"), t, None)
            .await;
        assert_eq!(status, 200);
        assert!(started.elapsed() >= Duration::from_millis(300));

        // Identities over HTTP.
        let response = s
            .http
            .put(format!("{control}identities/abc"))
            .json(&json!({"secret_permissions": ["get"]}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 204);
        let other = s.token(Some("abc")).await;
        let (status, _, _) = s
            .call(
                Method::GET,
                &s.url("secrets/faulty", "7.5"),
                Some(&other),
                None,
            )
            .await;
        assert_eq!(status, 200);
    });
}

#[test]
fn a_restart_keeps_the_ca_the_identities_the_tokens_and_the_contents() {
    let dir = tempfile::tempdir().unwrap();
    let first = Emulator::start(EmulatorConfig::new(dir.path())).unwrap();
    let info = first.info().clone();
    let version = first.set_secret("kept", "value").unwrap();
    let token = first.access_token(&info.client_id).unwrap();
    first.stop();

    let second = Emulator::start(EmulatorConfig::new(dir.path())).unwrap();
    assert_eq!(second.info().ca_pem, info.ca_pem);
    assert_eq!(second.info().client_id, info.client_id);
    let http = common::client(&second.info().ca_pem);
    runtime().block_on(async {
        let response = http
            .get(format!(
                "{}secrets/kept?api-version=7.5",
                second.info().vault_url
            ))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let body: Value = response.json().await.unwrap();
        assert!(body["id"].as_str().unwrap().ends_with(&version));
    });
    let path = dir.path().join(vault_emulator::INFO_FILE);
    second.write_info(&path).unwrap();
    let written: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    for field in ["vault_url", "identity_endpoint", "ca_file", "client_id"] {
        assert!(written[field].is_string(), "{field}");
    }
    assert!(written["identity_endpoint"]
        .as_str()
        .unwrap()
        .ends_with("/metadata/identity/oauth2/token"));
    second.stop();
}
