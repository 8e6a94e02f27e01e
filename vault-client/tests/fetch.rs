//! Fetching certificates over real HTTPS from a local server that answers like Key Vault: the
//! recorded responses of real Key Vault replayed, and synthetic failures shaped like its errors.

mod common;

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use cert_bundle::Thumbprint;
use common::*;
use identity::{AccessToken, BoxFuture, IdentityError, TokenCache, TokenSource};
use serde_json::json;
use vault_client::{ErrorClass, RetryPolicy, VaultClient, VaultClientConfig, VaultError};

/// The recorded `GET /secrets/{name}/` exchange of a recording: (401 challenge, answer).
fn secret_exchange(recording: &serde_json::Value) -> (Response, serde_json::Value) {
    let gets = entries(recording, "GET", "/secrets/");
    assert_eq!(gets.len(), 2, "a challenge and an answer");
    assert_eq!(gets[0]["StatusCode"], 401);
    (replay(gets[0]), gets[1].clone())
}

/// A server that challenges requests without a token and answers the others with `answer`.
async fn challenging_vault(answer: Response) -> TestVault {
    TestVault::start(move |request, _| match request.authorization() {
        None => Response::challenge(),
        Some(_) => answer.clone(),
    })
    .await
}

/// A secret value built into a `SecretBundle` body.
fn secret_body(value: &str, content_type: Option<&str>) -> serde_json::Value {
    let mut body = json!({
        "value": value,
        "id": "https://myvault.vault.azure.net/secrets/site/2524c1d2ceb547e195ef501af32365b8",
        "attributes": {"enabled": true, "created": 1762999853, "updated": 1762999853},
    });
    if let Some(content_type) = content_type {
        body["contentType"] = json!(content_type);
    }
    body
}

#[track_caller]
fn assert_message(error: &VaultError, fragments: &[&str]) {
    assert_no_token(error);
    let message = error.to_string();
    for fragment in fragments {
        assert!(message.contains(fragment), "{message:?} lacks {fragment:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// Recorded real responses

#[tokio::test]
async fn pkcs12_secret_of_real_key_vault_opens_and_is_the_recorded_certificate() {
    let recording = recording(PKCS12_RECORDING);
    let (challenge, answer) = secret_exchange(&recording);
    let answer_response = replay(&answer);
    let vault = TestVault::start(move |request, _| match request.authorization() {
        None => challenge.clone(),
        Some(_) => answer_response.clone(),
    })
    .await;
    let source = CountingSource::new();
    let client = vault.client(tokens(&source));
    // The JS SDK's own request path, trailing slash included.
    let id = client
        .parse_id(&vault.uri(&recorded_path(&answer)))
        .unwrap();
    assert!(!id.is_versioned());

    let fetched = client.fetch_certificate(&id).await.unwrap();

    let cer = recorded_cer(&recording);
    assert_eq!(fetched.bundle.thumbprint(), Thumbprint::of(&cer));
    assert_eq!(fetched.bundle.leaf().as_ref(), cer.as_slice());
    assert_eq!(fetched.version, "06a7e4e3e63c431d8245883d2069d786");
    assert_eq!(
        fetched.id.version(),
        Some("06a7e4e3e63c431d8245883d2069d786")
    );
    assert_eq!(fetched.id.versionless(), id);
    assert_eq!(fetched.content_type, "application/x-pkcs12");
    assert!(fetched.enabled);
    assert!(fetched.managed);
    let attributes = &answer["ResponseBody"]["attributes"];
    assert_eq!(fetched.not_before, attributes["nbf"].as_i64());
    assert_eq!(fetched.expires, attributes["exp"].as_i64());
    assert_eq!(
        fetched.kid.as_deref(),
        answer["ResponseBody"]["kid"].as_str()
    );

    // Debug shows no key material and not the secret value.
    let debug = format!("{fetched:?}");
    let value = answer["ResponseBody"]["value"].as_str().unwrap();
    assert!(!debug.contains(&value[..40]), "{debug}");
    assert!(
        debug.contains(&fetched.bundle.thumbprint().to_string()),
        "{debug}"
    );

    // Challenge-based auth: the first request has no token, the second the token for the scope
    // the challenge named.
    let requests = vault.requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[0].authorization(), None);
    assert_eq!(
        requests[1].authorization(),
        Some(format!("Bearer {TOKEN}").as_str())
    );
    let name = id.name();
    for request in &requests {
        assert_eq!(request.method, "GET");
        assert_eq!(request.target, format!("/secrets/{name}?api-version=7.5"));
    }
    assert_eq!(
        *source.scopes.lock().unwrap(),
        ["https://vault.azure.net/.default"]
    );

    // The challenge is remembered: the next fetch sends the token at once.
    let again = client.fetch_certificate(&id).await.unwrap();
    assert_eq!(again.bundle.thumbprint(), fetched.bundle.thumbprint());
    let requests = vault.requests();
    assert_eq!(requests.len(), 3);
    assert_eq!(
        requests[2].authorization(),
        Some(format!("Bearer {TOKEN}").as_str())
    );
    assert_eq!(source.calls(), 1, "the token cache served the second fetch");
}

#[tokio::test]
async fn pem_secret_of_real_key_vault_opens() {
    let recording = recording(PEM_RECORDING);
    let (challenge, answer) = secret_exchange(&recording);
    let answer_response = replay(&answer);
    let vault = TestVault::start(move |request, _| match request.authorization() {
        None => challenge.clone(),
        Some(_) => answer_response.clone(),
    })
    .await;
    let source = CountingSource::new();
    let client = vault.client(tokens(&source));
    // Pinned to the version the recording returned, written as a certificate URI.
    let path = recorded_path(&answer).replace("/secrets/", "/certificates/");
    let id = client
        .parse_id(&vault.uri(&format!("{path}f8ac48a294d941e18d0e5d85b3c8ea3f")))
        .unwrap();

    let fetched = client.fetch_certificate(&id).await.unwrap();

    assert_eq!(fetched.content_type, "application/x-pem-file");
    assert_eq!(fetched.version, "f8ac48a294d941e18d0e5d85b3c8ea3f");
    assert_eq!(fetched.id, id);
    assert_eq!(
        fetched.bundle.thumbprint(),
        Thumbprint::of(&recorded_cer(&recording))
    );
    assert_eq!(fetched.bundle.chain().len(), 1);
    let requests = vault.requests();
    assert_eq!(
        requests[1].target,
        format!(
            "/secrets/{}/f8ac48a294d941e18d0e5d85b3c8ea3f?api-version=7.5",
            id.name()
        )
    );
}

#[tokio::test]
async fn recorded_not_found_errors_are_configuration_errors_naming_the_secret() {
    for (file, path_part, code) in [
        (SECRET_NOT_FOUND_RECORDING, "/secrets/", "SecretNotFound"),
        (
            CERTIFICATE_NOT_FOUND_RECORDING,
            "/certificates/",
            "CertificateNotFound",
        ),
    ] {
        let recording = recording(file);
        let gets = entries(&recording, "GET", path_part);
        let (challenge, missing) = (replay(gets[0]), replay(gets[1]));
        let vault = TestVault::start(move |request, _| match request.authorization() {
            None => challenge.clone(),
            Some(_) => missing.clone(),
        })
        .await;
        let client = vault.client(tokens(&CountingSource::new()));
        let id = client
            .parse_id(&vault.uri(&recorded_path(gets[1])))
            .unwrap();

        let error = client.fetch_certificate(&id).await.unwrap_err();

        assert!(matches!(error, VaultError::NotFound { .. }), "{error:?}");
        assert_eq!(error.class(), ErrorClass::Configuration);
        assert_eq!(error.code(), Some(code));
        assert_message(&error, &[id.name(), &vault.authority(), "not found", code]);
        assert_eq!(vault.requests().len(), 2, "{file}: not retried");
    }
}

#[tokio::test]
async fn recorded_disabled_secret_is_a_configuration_error() {
    let recording = recording(DISABLED_RECORDING);
    let get = entries(&recording, "GET", "/secrets/")[0];
    let disabled = replay(get);
    let vault = challenging_vault(disabled).await;
    let client = vault.client(tokens(&CountingSource::new()));
    let id = client.parse_id(&vault.uri(&recorded_path(get))).unwrap();

    let error = client.fetch_certificate(&id).await.unwrap_err();

    assert!(
        matches!(error, VaultError::SecretDisabled { .. }),
        "{error:?}"
    );
    assert_eq!(error.class(), ErrorClass::Configuration);
    assert_eq!(error.code(), Some("SecretDisabled"));
    assert_message(
        &error,
        &[
            id.name(),
            &vault.authority(),
            "is disabled",
            "enable the secret version",
            "Operation get is not allowed on a disabled secret.",
        ],
    );
}

// ---------------------------------------------------------------------------------------------
// Synthetic 403s shaped like the real ones (§1.7 of the protocol reference)

#[tokio::test]
async fn forbidden_errors_give_the_right_advice() {
    let cases: [(&str, Option<&str>, &str, &[&str]); 4] = [
        (
            "Forbidden",
            Some("AccessDenied"),
            "The user, group or application 'appid=1;oid=2;iss=https://sts.windows.net/t/' does not have secrets get permission on key vault 'myvault;location=westeurope'. For help resolving this issue, please see https://go.microsoft.com/fwlink/?linkid=2125287",
            &["lacks the `get` permission on secrets", "az keyvault set-policy", "--secret-permissions get", "test identity"],
        ),
        (
            "Forbidden",
            Some("ForbiddenByRbac"),
            "Caller is not authorized to perform action on resource.\r\nIf role assignments, deny assignments or role definitions were changed recently, please observe propagation time.\r\nCaller: appid=1;oid=2;iss=https://sts.windows.net/t/\r\nAction: 'Microsoft.KeyVault/vaults/secrets/getSecret/action'\r\nResource: '/subscriptions/s/resourcegroups/g/providers/microsoft.keyvault/vaults/myvault/secrets/site'\r\nAssignment: (not found)\r\nDenyAssignmentId: null\r\nDecisionReason: 'DeniedWithNoValidRBAC' \r\nVault: myvault;location=westeurope\r\n",
            &["\"Key Vault Secrets User\" role", "DeniedWithNoValidRBAC", "test identity"],
        ),
        (
            "Forbidden",
            Some("ForbiddenByFirewall"),
            "Client address is not authorized and caller is not a trusted service.\r\nClient address: 203.0.113.7\r\nCaller: appid=1\r\nVault: myvault;location=westeurope",
            &["firewall", "203.0.113.7", "private endpoint", "az keyvault network-rule add"],
        ),
        (
            "Forbidden",
            Some("SomethingNew"),
            "A new kind of refusal.",
            &["403 SomethingNew", "A new kind of refusal."],
        ),
    ];
    for (code, inner, message, fragments) in cases {
        let vault = challenging_vault(Response::error(403, code, message, inner)).await;
        let client = vault.client(tokens(&CountingSource::new()));
        let id = client.parse_id(&vault.uri("/secrets/site")).unwrap();

        let error = client.fetch_certificate(&id).await.unwrap_err();

        assert_eq!(error.class(), ErrorClass::Configuration, "{error}");
        assert_eq!(error.code(), inner);
        assert_message(&error, fragments);
        assert_message(&error, &["site", &vault.authority()]);
        assert_eq!(vault.requests().len(), 2, "not retried: {error}");
    }
}

// ---------------------------------------------------------------------------------------------
// Retries and timeouts

#[tokio::test]
async fn throttling_with_retry_after_is_retried_after_the_given_time() {
    let recorded = secret_exchange(&recording(PKCS12_RECORDING)).1;
    let answer = replay(&recorded);
    let vault = TestVault::start(move |request, index| match (request.authorization(), index) {
        (None, _) => Response::challenge(),
        (Some(_), 1) => Response::error(
            429,
            "Throttled",
            "Request was not processed because too many requests were received. Reason: VaultRequestTypeLimitReached",
            None,
        )
        .header("Retry-After", "1"),
        (Some(_), _) => answer.clone(),
    })
    .await;
    let client = vault.client(tokens(&CountingSource::new()));
    let id = client
        .parse_id(&vault.uri(&recorded_path(&recorded)))
        .unwrap();

    let fetched = client.fetch_certificate(&id).await.unwrap();

    assert_eq!(fetched.version, "06a7e4e3e63c431d8245883d2069d786");
    let requests = vault.requests();
    assert_eq!(requests.len(), 3, "challenge, 429, success");
    assert!(requests[2].authorization().is_some());
    // The schedule says 5 ms; the vault said 1 s.
    let waited = requests[2].at - requests[1].at;
    assert!(
        waited >= Duration::from_millis(950),
        "waited only {waited:?}"
    );
}

#[tokio::test]
async fn server_errors_are_retried_per_the_schedule_then_transient() {
    let vault = challenging_vault(Response::error(500, "InternalServerError", "boom", None)).await;
    let mut config = vault.config(tokens(&CountingSource::new()));
    config.retry = RetryPolicy {
        delays: vec![
            Duration::from_millis(1),
            Duration::from_millis(2),
            Duration::from_millis(3),
        ],
        request_timeout: Duration::from_secs(5),
    };
    let client = VaultClient::new(config).unwrap();
    let id = client.parse_id(&vault.uri("/secrets/site")).unwrap();

    let error = client.fetch_certificate(&id).await.unwrap_err();

    assert!(
        matches!(
            error,
            VaultError::Status {
                status: 500,
                attempts: 4,
                ..
            }
        ),
        "{error:?}"
    );
    assert_eq!(error.class(), ErrorClass::Transient);
    assert_message(
        &error,
        &[
            "500",
            "after 4 attempts",
            "InternalServerError: boom",
            "site",
        ],
    );
    let authorized = vault
        .requests()
        .iter()
        .filter(|r| r.authorization().is_some())
        .count();
    assert_eq!(authorized, 4, "one attempt and three retries");
}

#[tokio::test]
async fn a_vault_that_never_answers_times_out_as_transient() {
    let (addr, _server) = silent_server().await;
    let authority = format!("127.0.0.1:{}", addr.port());
    let source = CountingSource::new();
    let client = VaultClient::new(VaultClientConfig {
        tokens: tokens(&source),
        extra_root_pem: None,
        allowed_hosts: vec![authority.clone()],
        retry: RetryPolicy {
            delays: vec![Duration::from_millis(1)],
            request_timeout: Duration::from_millis(300),
        },
    })
    .unwrap();
    let id = client
        .parse_id(&format!("https://{authority}/secrets/site"))
        .unwrap();

    let error = client.fetch_certificate(&id).await.unwrap_err();

    assert!(
        matches!(
            error,
            VaultError::Unavailable {
                timed_out: true,
                attempts: 2,
                ..
            }
        ),
        "{error:?}"
    );
    assert_eq!(error.class(), ErrorClass::Transient);
    assert_message(&error, &["timed out", &authority, "site"]);
    assert_eq!(source.calls(), 0);
}

#[tokio::test]
async fn nothing_listening_is_transient() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let authority = format!("127.0.0.1:{port}");
    let client = VaultClient::new(VaultClientConfig {
        allowed_hosts: vec![authority.clone()],
        retry: RetryPolicy::no_retry(Duration::from_secs(5)),
        ..VaultClientConfig::new(tokens(&CountingSource::new()))
    })
    .unwrap();
    let id = client
        .parse_id(&format!("https://{authority}/secrets/site"))
        .unwrap();
    let error = client.fetch_certificate(&id).await.unwrap_err();
    assert!(
        matches!(
            error,
            VaultError::Unavailable {
                timed_out: false,
                ..
            }
        ),
        "{error:?}"
    );
    assert_eq!(error.class(), ErrorClass::Transient);
    assert_no_token(&error);
}

// ---------------------------------------------------------------------------------------------
// Secret values

#[tokio::test]
async fn a_certificate_without_its_key_is_refused_as_non_exportable() {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["site.example".to_owned()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let cert_only_pfx = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/cert-only.pfx"
    ))
    .unwrap();
    let cert_only_pfx = base64::engine::general_purpose::STANDARD.encode(cert_only_pfx);
    for (value, content_type) in [
        (cert.pem(), "application/x-pem-file"),
        (cert_only_pfx, "application/x-pkcs12"),
    ] {
        let vault = challenging_vault(Response::json(
            200,
            &secret_body(&value, Some(content_type)),
        ))
        .await;
        let client = vault.client(tokens(&CountingSource::new()));
        let id = client.parse_id(&vault.uri("/secrets/site")).unwrap();

        let error = client.fetch_certificate(&id).await.unwrap_err();

        assert!(
            matches!(error, VaultError::NoPrivateKey { .. }),
            "{content_type}: {error:?}"
        );
        assert_eq!(error.class(), ErrorClass::Configuration);
        assert_message(
            &error,
            &[
                "non-exportable / HSM-protected keys are not supported",
                "site/2524c1d2ceb547e195ef501af32365b8",
                &vault.authority(),
            ],
        );
    }
}

#[tokio::test]
async fn content_types_decide_how_the_value_is_read() {
    let recorded = secret_exchange(&recording(PKCS12_RECORDING)).1;
    let pfx = recorded["ResponseBody"]["value"]
        .as_str()
        .unwrap()
        .to_owned();

    // No content type: the value's form decides.
    let vault = challenging_vault(Response::json(200, &secret_body(&pfx, None))).await;
    let client = vault.client(tokens(&CountingSource::new()));
    let fetched = client
        .fetch_certificate(&client.parse_id(&vault.uri("/secrets/site")).unwrap())
        .await
        .unwrap();
    assert_eq!(fetched.content_type, "application/x-pkcs12");
    assert!(!fetched.managed);
    assert_eq!(fetched.kid, None);

    // A content type that is not a certificate, and a value that is not one either.
    let vault = challenging_vault(Response::json(
        200,
        &secret_body("hunter2-not-a-certificate", Some("application/json")),
    ))
    .await;
    let client = vault.client(tokens(&CountingSource::new()));
    let error = client
        .fetch_certificate(&client.parse_id(&vault.uri("/secrets/site")).unwrap())
        .await
        .unwrap_err();
    assert!(
        matches!(error, VaultError::UnsupportedContentType { .. }),
        "{error:?}"
    );
    assert_eq!(error.class(), ErrorClass::Configuration);
    assert_message(
        &error,
        &[
            "\"application/json\"",
            "application/x-pkcs12 or application/x-pem-file",
        ],
    );
    assert!(!error.to_string().contains("hunter2") && !format!("{error:?}").contains("hunter2"));

    // PKCS#12 that is not base64.
    let vault = challenging_vault(Response::json(
        200,
        &secret_body("hunter2 not base64!", Some("application/x-pkcs12")),
    ))
    .await;
    let client = vault.client(tokens(&CountingSource::new()));
    let error = client
        .fetch_certificate(&client.parse_id(&vault.uri("/secrets/site")).unwrap())
        .await
        .unwrap_err();
    assert!(
        matches!(error, VaultError::InvalidSecretValue { .. }),
        "{error:?}"
    );
    assert_message(&error, &["not valid base64"]);
    assert!(!error.to_string().contains("hunter2") && !format!("{error:?}").contains("hunter2"));

    // A body that is not a secret at all.
    let vault = challenging_vault(Response::json(200, &json!({"value": 42}))).await;
    let client = vault.client(tokens(&CountingSource::new()));
    let error = client
        .fetch_certificate(&client.parse_id(&vault.uri("/secrets/site")).unwrap())
        .await
        .unwrap_err();
    assert!(
        matches!(error, VaultError::InvalidResponse { .. }),
        "{error:?}"
    );
    assert_no_token(&error);
}

// ---------------------------------------------------------------------------------------------
// Authentication

#[tokio::test]
async fn a_challenge_for_another_domain_is_refused_without_sending_a_token() {
    let pki_vault = |resource: &'static str| {
        TestVault::start(move |_, _| {
            Response::challenge_with(&format!(
                "Bearer authorization=\"https://login.windows.net/t\", resource=\"{resource}\""
            ))
        })
    };
    for resource in [
        "https://vault.azure.cn",
        "https://evil.example",
        "https://myvault.vault.azure.net",
    ] {
        let vault = pki_vault(resource).await;
        let source = CountingSource::new();
        // A real vault name, verified like any cloud vault, resolved to the local server.
        let client = VaultClient::with_resolve(
            VaultClientConfig {
                allowed_hosts: Vec::new(),
                ..vault.config(tokens(&source))
            },
            &[("myvault.vault.azure.net", vault.addr)],
        )
        .unwrap();
        let id = client
            .parse_id("https://myvault.vault.azure.net/secrets/site")
            .unwrap();

        let error = client.fetch_certificate(&id).await.unwrap_err();

        assert!(
            matches!(error, VaultError::ChallengeMismatch { .. }),
            "{error:?}"
        );
        assert_eq!(error.class(), ErrorClass::Configuration);
        assert_message(
            &error,
            &[
                resource,
                "does not match",
                "myvault.vault.azure.net",
                "no token was sent",
            ],
        );
        assert_eq!(source.calls(), 0, "no token was even asked for");
        let requests = vault.requests();
        assert_eq!(requests.len(), 1);
        assert_eq!(requests[0].authorization(), None);
    }
}

#[tokio::test]
async fn a_real_vault_name_passes_the_challenge_check() {
    let recorded = secret_exchange(&recording(PKCS12_RECORDING)).1;
    let vault = challenging_vault(replay(&recorded)).await;
    let source = CountingSource::new();
    let client = VaultClient::with_resolve(
        VaultClientConfig {
            allowed_hosts: Vec::new(),
            ..vault.config(tokens(&source))
        },
        &[("myvault.vault.azure.net", vault.addr)],
    )
    .unwrap();
    let path = recorded_path(&recorded);
    let id = client
        .parse_id(&format!("https://myvault.vault.azure.net{path}"))
        .unwrap();
    let fetched = client.fetch_certificate(&id).await.unwrap();
    assert_eq!(
        fetched.id.to_string(),
        format!("https://myvault.vault.azure.net{path}06a7e4e3e63c431d8245883d2069d786")
    );
    assert_eq!(
        vault.requests()[1].header("host"),
        Some("myvault.vault.azure.net")
    );
}

#[tokio::test]
async fn a_refused_fresh_token_is_retried_once_then_a_configuration_error() {
    let vault = TestVault::start(|_, _| Response::challenge()).await;
    let source = CountingSource::new();
    let client = vault.client(tokens(&source));
    let id = client.parse_id(&vault.uri("/secrets/site")).unwrap();

    let error = client.fetch_certificate(&id).await.unwrap_err();

    assert!(
        matches!(error, VaultError::Unauthorized { .. }),
        "{error:?}"
    );
    assert_eq!(error.class(), ErrorClass::Configuration);
    assert_message(
        &error,
        &[
            "identity test identity",
            "was refused by vault",
            &vault.authority(),
            "site",
            "AKV10000",
        ],
    );
    assert_eq!(
        source.calls(),
        2,
        "the refused token was dropped and a fresh one asked for"
    );
    let requests = vault.requests();
    assert_eq!(requests.len(), 3);
    assert_eq!(requests[0].authorization(), None);
    assert!(requests[1..].iter().all(|r| r.authorization().is_some()));
}

#[tokio::test]
async fn plain_http_is_refused_before_any_token_is_requested() {
    let vault = TestVault::start(|_, _| Response::challenge()).await;
    let source = CountingSource::new();
    let client = vault.client(tokens(&source));
    let error = client
        .parse_id(&format!("http://{}/secrets/site", vault.authority()))
        .unwrap_err();
    assert!(matches!(error, VaultError::Identifier(_)), "{error:?}");
    assert_eq!(error.class(), ErrorClass::Configuration);
    assert_message(&error, &["http", "only reached over https"]);
    assert_eq!(source.calls(), 0);
    assert!(vault.requests().is_empty());
}

#[tokio::test]
async fn a_host_the_client_does_not_allow_gets_no_request() {
    let vault = TestVault::start(|_, _| Response::challenge()).await;
    let source = CountingSource::new();
    let client = VaultClient::new(VaultClientConfig {
        allowed_hosts: Vec::new(),
        ..vault.config(tokens(&source))
    })
    .unwrap();
    // Parsed elsewhere with the host allowed.
    let id = vault_client::SecretId::parse_with_allowed_hosts(
        &vault.uri("/secrets/site"),
        &[vault.authority()],
    )
    .unwrap();
    let error = client.fetch_certificate(&id).await.unwrap_err();
    assert!(
        matches!(error, VaultError::HostNotAllowed { .. }),
        "{error:?}"
    );
    assert_message(&error, &[&vault.authority(), "allowed_hosts"]);
    assert!(vault.requests().is_empty());
    assert_eq!(source.calls(), 0);
}

/// An identity that cannot give a token.
struct FailingSource(IdentityError);

impl TokenSource for FailingSource {
    fn fetch<'a>(&'a self, _: &'a str) -> BoxFuture<'a, Result<AccessToken, IdentityError>> {
        let error = self.0.clone();
        Box::pin(async move { Err(error) })
    }

    fn describe(&self) -> String {
        "failing test identity".to_owned()
    }
}

#[tokio::test]
async fn identity_errors_keep_their_class() {
    let not_found = IdentityError::IdentityNotFound {
        endpoint: "http://169.254.169.254/metadata/identity/oauth2/token".to_owned(),
        identity: "client_id 1234".to_owned(),
        detail: "400 invalid_request".to_owned(),
    };
    let unavailable = IdentityError::Unavailable {
        endpoint: "http://169.254.169.254/metadata/identity/oauth2/token".to_owned(),
        identity: "the system-assigned identity".to_owned(),
        attempts: 7,
        elapsed_secs: 94.0,
        last_failure: "connection refused".to_owned(),
    };
    for (identity_error, class) in [
        (not_found, ErrorClass::Configuration),
        (unavailable, ErrorClass::Transient),
    ] {
        let vault = TestVault::start(|_, _| Response::challenge()).await;
        let client = vault.client(Arc::new(TokenCache::new(Arc::new(FailingSource(
            identity_error,
        )))));
        let id = client.parse_id(&vault.uri("/secrets/site")).unwrap();
        let error = client.fetch_certificate(&id).await.unwrap_err();
        assert!(matches!(error, VaultError::Identity { .. }), "{error:?}");
        assert_eq!(error.class(), class, "{error}");
        assert_message(&error, &["no token for vault", &vault.authority(), "site"]);
        assert_eq!(
            vault.requests().len(),
            1,
            "identity errors are not retried here"
        );
    }
}

#[tokio::test]
async fn redirects_are_not_followed() {
    let vault = challenging_vault(
        Response::json(302, &serde_json::Value::Null)
            .header("Location", "https://elsewhere.example/secrets/site"),
    )
    .await;
    let client = vault.client(tokens(&CountingSource::new()));
    let id = client.parse_id(&vault.uri("/secrets/site")).unwrap();
    let error = client.fetch_certificate(&id).await.unwrap_err();
    assert!(
        matches!(error, VaultError::Status { status: 302, .. }),
        "{error:?}"
    );
    assert_eq!(error.class(), ErrorClass::Configuration);
    assert_message(&error, &["redirect", "elsewhere.example"]);
    assert_eq!(vault.requests().len(), 2);
}
