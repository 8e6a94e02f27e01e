//! `TokenCache`: reuse, refresh before expiry, single flight and no cached errors, counted at a real
//! local token server.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{fast_retries, imds_token, Reply, TokenServer};
use identity::{ManagedIdentity, TokenCache, KEY_VAULT_SCOPE};
use tokio::task::JoinSet;

fn cache(server: &TokenServer) -> TokenCache {
    let source = ManagedIdentity::new()
        .with_endpoint(&server.imds_url())
        .unwrap()
        .with_client_id("cache-client")
        .with_retry_policy(fast_retries(0));
    TokenCache::new(Arc::new(source))
}

#[tokio::test]
async fn a_cached_token_is_returned_without_a_second_request() {
    let server = TokenServer::start(|n, _| imds_token(&format!("token-{n}"), 3600)).await;
    let cache = cache(&server);

    let first = cache.token(KEY_VAULT_SCOPE).await.unwrap();
    let second = cache.token(KEY_VAULT_SCOPE).await.unwrap();

    assert_eq!(server.count(), 1);
    assert_eq!(first.secret(), "token-0");
    assert_eq!(second.secret(), "token-0");
}

#[tokio::test]
async fn a_token_with_less_than_five_minutes_left_is_refreshed() {
    let server = TokenServer::sequence(vec![
        imds_token("short-lived", 4 * 60),
        imds_token("long-lived", 3600),
    ])
    .await;
    let cache = cache(&server);

    assert_eq!(
        cache.token(KEY_VAULT_SCOPE).await.unwrap().secret(),
        "short-lived"
    );
    assert_eq!(
        cache.token(KEY_VAULT_SCOPE).await.unwrap().secret(),
        "long-lived"
    );
    assert_eq!(
        cache.token(KEY_VAULT_SCOPE).await.unwrap().secret(),
        "long-lived"
    );

    assert_eq!(server.count(), 2);
}

#[tokio::test]
async fn a_token_with_more_than_five_minutes_left_is_kept() {
    let server = TokenServer::start(|n, _| imds_token(&format!("token-{n}"), 6 * 60)).await;
    let cache = cache(&server);

    cache.token(KEY_VAULT_SCOPE).await.unwrap();
    cache.token(KEY_VAULT_SCOPE).await.unwrap();

    assert_eq!(server.count(), 1);
}

#[tokio::test]
async fn twenty_concurrent_callers_cause_exactly_one_request() {
    // The slow answer keeps the request in flight while all the callers arrive.
    let server = TokenServer::start(|n, _| {
        imds_token(&format!("token-{n}"), 3600).after(Duration::from_millis(300))
    })
    .await;
    let cache = cache(&server);

    let mut callers = JoinSet::new();
    for _ in 0..20 {
        let cache = cache.clone();
        callers.spawn(async move { cache.token(KEY_VAULT_SCOPE).await });
    }
    let tokens: Vec<String> = callers
        .join_all()
        .await
        .into_iter()
        .map(|t| t.unwrap().secret().to_owned())
        .collect();

    assert_eq!(server.count(), 1);
    assert_eq!(tokens, vec!["token-0".to_owned(); 20]);
}

#[tokio::test]
async fn callers_waiting_on_a_failing_request_share_its_error_and_errors_are_not_cached() {
    let server = TokenServer::start(|n, _| {
        if n == 0 {
            Reply::json(
                403,
                r#"{"error":"access_denied","error_description":"not now"}"#,
            )
            .after(Duration::from_millis(300))
        } else {
            imds_token("after-the-error", 3600)
        }
    })
    .await;
    let cache = cache(&server);

    let mut callers = JoinSet::new();
    for _ in 0..10 {
        let cache = cache.clone();
        callers.spawn(async move { cache.token(KEY_VAULT_SCOPE).await });
    }
    let outcomes = callers.join_all().await;
    assert!(
        outcomes.iter().all(Result::is_err),
        "every waiter gets the one failure"
    );
    assert_eq!(
        server.count(),
        1,
        "waiters do not each send their own request"
    );

    let next = cache.token(KEY_VAULT_SCOPE).await.unwrap();
    assert_eq!(next.secret(), "after-the-error", "the error was not cached");
    assert_eq!(server.count(), 2);
}

#[tokio::test]
async fn each_scope_has_its_own_token() {
    let server = TokenServer::start(|_, request| {
        imds_token(
            &format!("for {}", request.query("resource").unwrap_or_default()),
            3600,
        )
    })
    .await;
    let cache = cache(&server);

    let vault = cache.token(KEY_VAULT_SCOPE).await.unwrap();
    let arm = cache
        .token("https://management.azure.com/.default")
        .await
        .unwrap();
    cache.token(KEY_VAULT_SCOPE).await.unwrap();

    assert_eq!(vault.secret(), "for https://vault.azure.net");
    assert_eq!(arm.secret(), "for https://management.azure.com");
    assert_eq!(server.count(), 2);
}

#[tokio::test]
async fn an_invalidated_token_is_fetched_again() {
    let server = TokenServer::start(|n, _| imds_token(&format!("token-{n}"), 3600)).await;
    let cache = cache(&server);

    cache.token(KEY_VAULT_SCOPE).await.unwrap();
    cache.invalidate(KEY_VAULT_SCOPE);
    let again = cache.token(KEY_VAULT_SCOPE).await.unwrap();

    assert_eq!(again.secret(), "token-1");
    assert_eq!(server.count(), 2);
}

#[tokio::test]
async fn a_failed_refresh_keeps_handing_out_the_token_that_still_works() {
    let server = TokenServer::sequence(vec![
        imds_token("still-valid", 4 * 60),
        Reply::json(503, r#"{"error":"unknown","error_description":"busy"}"#),
        imds_token("refreshed", 3600),
    ])
    .await;
    let cache = cache(&server);

    assert_eq!(
        cache.token(KEY_VAULT_SCOPE).await.unwrap().secret(),
        "still-valid"
    );
    // The refresh fails (503, and this policy does not retry): the old token has 4 minutes left.
    assert_eq!(
        cache.token(KEY_VAULT_SCOPE).await.unwrap().secret(),
        "still-valid"
    );
    // The next call tries again.
    assert_eq!(
        cache.token(KEY_VAULT_SCOPE).await.unwrap().secret(),
        "refreshed"
    );
    assert_eq!(server.count(), 3);
}
