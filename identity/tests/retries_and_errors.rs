//! Retries per the IMDS guidance, errors that say what is wrong and whether it may pass, and
//! secrets that never show in `Debug`, `Display` or an error.

mod common;

use std::time::Duration;

use common::{entra_token, fast_retries, imds_token, Reply, TokenServer};
use identity::{
    ClientSecret, IdentityError, ManagedIdentity, RetryPolicy, TokenSource, WorkloadIdentity,
    KEY_VAULT_SCOPE,
};

const CLIENT_ID: &str = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee";

fn imds(server: &TokenServer, retry: RetryPolicy) -> ManagedIdentity {
    ManagedIdentity::new()
        .with_endpoint(&server.imds_url())
        .unwrap()
        .with_client_id(CLIENT_ID)
        .with_retry_policy(retry)
}

#[tokio::test]
async fn imds_retries_500_429_and_410_then_succeeds() {
    let server = TokenServer::sequence(vec![
        Reply::json(500, r#"{"error":"unknown","error_description":"oops"}"#),
        Reply::json(429, ""),
        Reply::json(410, ""),
        imds_token("finally", 3600),
    ])
    .await;

    let token = imds(&server, fast_retries(5))
        .fetch(KEY_VAULT_SCOPE)
        .await
        .unwrap();

    assert_eq!(token.secret(), "finally");
    assert_eq!(server.count(), 4);
}

#[tokio::test]
async fn imds_retries_404_while_the_identity_endpoint_starts() {
    let server = TokenServer::sequence(vec![Reply::json(404, ""), imds_token("t", 3600)]).await;

    imds(&server, fast_retries(5))
        .fetch(KEY_VAULT_SCOPE)
        .await
        .unwrap();

    assert_eq!(server.count(), 2);
}

#[tokio::test]
async fn retry_after_is_honoured_instead_of_the_schedule() {
    let server = TokenServer::sequence(vec![
        Reply::json(429, "").header("Retry-After", "1"),
        imds_token("t", 3600),
    ])
    .await;

    // The schedule says 10 ms; the server says 1 s.
    imds(&server, fast_retries(5))
        .fetch(KEY_VAULT_SCOPE)
        .await
        .unwrap();

    let requests = server.requests();
    assert_eq!(requests.len(), 2);
    let waited = requests[1].at - requests[0].at;
    assert!(
        waited >= Duration::from_millis(950),
        "waited only {waited:?}"
    );
}

#[tokio::test]
async fn still_failing_after_the_schedule_is_a_transient_error_naming_endpoint_and_identity() {
    let server = TokenServer::always(Reply::json(
        503,
        r#"{"error":"unknown","error_description":"busy"}"#,
    ))
    .await;

    let err = imds(&server, fast_retries(2))
        .fetch(KEY_VAULT_SCOPE)
        .await
        .unwrap_err();

    assert_eq!(server.count(), 3, "one request and two retries");
    assert!(err.is_transient(), "{err:?}");
    let message = err.to_string();
    assert!(message.contains(&server.imds_url()), "{message}");
    assert!(message.contains(CLIENT_ID), "{message}");
    assert!(message.contains("3 attempt(s)"), "{message}");
    assert!(message.contains("HTTP 503: unknown busy"), "{message}");
}

#[tokio::test]
async fn an_unreachable_endpoint_is_transient() {
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "http://{}/metadata/identity/oauth2/token",
        closed.local_addr().unwrap()
    );
    drop(closed);

    let err = ManagedIdentity::new()
        .with_endpoint(&url)
        .unwrap()
        .with_retry_policy(fast_retries(1))
        .fetch(KEY_VAULT_SCOPE)
        .await
        .unwrap_err();

    assert!(err.is_transient(), "{err:?}");
    assert!(err.to_string().contains("cannot connect"), "{err}");
    assert!(
        err.to_string().contains("the system-assigned identity"),
        "{err}"
    );
}

#[tokio::test]
async fn every_request_has_a_timeout_and_a_timeout_is_retried() {
    let server = TokenServer::sequence(vec![Reply::hang(), imds_token("t", 3600)]).await;
    let policy = RetryPolicy {
        request_timeout: Duration::from_millis(300),
        ..fast_retries(2)
    };

    let token = imds(&server, policy).fetch(KEY_VAULT_SCOPE).await.unwrap();

    assert_eq!(token.secret(), "t");
    assert_eq!(server.count(), 2);
}

#[tokio::test]
async fn a_timeout_on_every_attempt_says_so() {
    let server = TokenServer::always(Reply::hang()).await;
    let policy = RetryPolicy {
        request_timeout: Duration::from_millis(200),
        ..fast_retries(1)
    };

    let err = imds(&server, policy)
        .fetch(KEY_VAULT_SCOPE)
        .await
        .unwrap_err();

    assert!(err.is_transient());
    assert!(err.to_string().contains("timed out after 0.2 s"), "{err}");
}

#[tokio::test]
async fn identity_not_found_fails_at_once_and_names_the_client_id() {
    let server = TokenServer::always(Reply::json(
        400,
        r#"{"error":"invalid_request","error_description":"Identity not found"}"#,
    ))
    .await;

    let err = imds(&server, fast_retries(5))
        .fetch(KEY_VAULT_SCOPE)
        .await
        .unwrap_err();

    assert_eq!(server.count(), 1, "no retry");
    assert!(
        matches!(err, IdentityError::IdentityNotFound { .. }),
        "{err:?}"
    );
    assert!(!err.is_transient());
    let message = err.to_string();
    assert!(
        message.starts_with(&format!(
            "managed identity with client_id {CLIENT_ID} was not found on this host: "
        )),
        "{message}"
    );
    assert!(
        message.contains("HTTP 400: invalid_request Identity not found"),
        "{message}"
    );
}

#[tokio::test]
async fn other_client_errors_fail_at_once_with_the_decoded_error() {
    let server = TokenServer::always(Reply::json(
        403,
        r#"{"error":"access_denied","error_description":"The identity is not allowed this resource"}"#,
    ))
    .await;

    let err = imds(&server, fast_retries(5))
        .fetch(KEY_VAULT_SCOPE)
        .await
        .unwrap_err();

    assert_eq!(server.count(), 1);
    assert!(
        matches!(err, IdentityError::Rejected { status: 403, .. }),
        "{err:?}"
    );
    assert!(!err.is_transient());
    let message = err.to_string();
    assert!(
        message.contains("access_denied The identity is not allowed this resource"),
        "{message}"
    );
    assert!(
        message.contains("scope https://vault.azure.net"),
        "{message}"
    );
}

#[tokio::test]
async fn entra_retries_server_errors_but_not_a_refused_federation() {
    let server = TokenServer::sequence(vec![
        Reply::json(502, ""),
        Reply::json(
            400,
            r#"{"error":"invalid_request","error_description":"AADSTS70021: No matching federated identity record found for presented assertion. Assertion: federated-jwt-secret","error_codes":[70021]}"#,
        ),
    ])
    .await;
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "federated-jwt-secret").unwrap();
    let source = WorkloadIdentity::new("tenant", "wi-client", &token_file)
        .unwrap()
        .with_authority_host(&server.base)
        .unwrap()
        .with_retry_policy(fast_retries(5));

    let err = source.fetch(KEY_VAULT_SCOPE).await.unwrap_err();

    assert_eq!(server.count(), 2, "the 502 is retried, the 400 is not");
    assert!(!err.is_transient());
    let message = err.to_string();
    assert!(message.contains("AADSTS70021"), "{message}");
    assert!(
        message.contains("client_id wi-client in tenant tenant"),
        "{message}"
    );
    assert!(
        !message.contains("federated-jwt-secret"),
        "the assertion is redacted: {message}"
    );
    assert!(!format!("{err:?}").contains("federated-jwt-secret"));
    assert!(!format!("{source:?}").contains("federated-jwt-secret"));
}

#[tokio::test]
async fn a_client_secret_appears_in_no_error_debug_or_description() {
    let secret = "Zq8~client-secret-value";
    let server = TokenServer::always(Reply::json(
        401,
        format!(r#"{{"error":"invalid_client","error_description":"AADSTS7000215: Invalid client secret provided: {secret}"}}"#),
    ))
    .await;
    let source = ClientSecret::new("tenant", "sp-client", secret)
        .unwrap()
        .with_authority_host(&server.base)
        .unwrap()
        .with_retry_policy(fast_retries(5));

    let err = source.fetch(KEY_VAULT_SCOPE).await.unwrap_err();

    assert_eq!(server.count(), 1);
    assert!(err.to_string().contains("AADSTS7000215"), "{err}");
    for shown in [
        err.to_string(),
        format!("{err:?}"),
        format!("{source:?}"),
        source.describe(),
    ] {
        assert!(!shown.contains(secret), "secret in {shown}");
    }
}

#[tokio::test]
async fn a_token_appears_in_no_debug_display_or_error() {
    let token = "eyJ0eXAiOiJKV1Qi.the-access-token";
    let server = TokenServer::sequence(vec![
        imds_token(token, 3600),
        // A token response without an expiry and one of the wrong type: errors, without the token.
        Reply::json(200, format!(r#"{{"access_token":"{token}"}}"#)),
        Reply::json(
            200,
            format!(r#"{{"access_token":"{token}","expires_in":"60","token_type":"pop"}}"#),
        ),
        Reply::json(200, format!(r#"{{"access_token":"{token}","#)),
    ])
    .await;
    let source = imds(&server, fast_retries(0));

    let fetched = source.fetch(KEY_VAULT_SCOPE).await.unwrap();
    assert_eq!(fetched.secret(), token);
    for shown in [
        format!("{fetched:?}"),
        format!("{fetched:#?}"),
        fetched.to_string(),
    ] {
        assert!(!shown.contains(token), "token in {shown}");
        assert!(shown.starts_with("AccessToken(expires 2"), "{shown}");
    }

    for _ in 0..3 {
        let err = source.fetch(KEY_VAULT_SCOPE).await.unwrap_err();
        assert!(
            matches!(err, IdentityError::InvalidResponse { .. }),
            "{err:?}"
        );
        for shown in [err.to_string(), format!("{err:?}")] {
            assert!(!shown.contains("the-access-token"), "token in {shown}");
        }
    }
}

#[tokio::test]
async fn entra_answers_are_parsed_with_expires_in_as_a_number() {
    let server = TokenServer::always(entra_token("entra", 3599)).await;
    let source = ClientSecret::new("t", "c", "s3cret")
        .unwrap()
        .with_authority_host(&server.base)
        .unwrap();

    assert_eq!(
        source.fetch(KEY_VAULT_SCOPE).await.unwrap().secret(),
        "entra"
    );
}
