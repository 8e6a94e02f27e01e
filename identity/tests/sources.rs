//! What each token source sends on the wire, and how it reads the answer, against a real local
//! HTTP server.

mod common;

use std::time::{Duration, SystemTime};

use common::{entra_token, fast_retries, imds_token, unix, unix_now, Reply, TokenServer};
use identity::{
    AppService, ClientSecret, IdentityError, ManagedIdentity, StaticToken, TokenSource,
    UserAssignedId, WorkloadIdentity, KEY_VAULT_SCOPE,
};

const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

fn imds(server: &TokenServer) -> ManagedIdentity {
    ManagedIdentity::new()
        .with_endpoint(&server.imds_url())
        .unwrap()
        .with_retry_policy(fast_retries(3))
}

#[tokio::test]
async fn imds_is_asked_with_get_api_version_resource_client_id_and_the_metadata_header() {
    let server = TokenServer::always(imds_token("imds-token", 3599)).await;
    let source = imds(&server).with_client_id("11111111-2222-3333-4444-555555555555");

    let token = source.fetch(KEY_VAULT_SCOPE).await.unwrap();

    let requests = server.requests();
    assert_eq!(requests.len(), 1);
    let request = &requests[0];
    assert_eq!(request.method, "GET");
    assert_eq!(request.path, "/metadata/identity/oauth2/token");
    assert_eq!(request.query("api-version"), Some("2018-02-01"));
    assert_eq!(
        request.query("resource"),
        Some("https://vault.azure.net"),
        "no /.default for IMDS"
    );
    assert_eq!(
        request.query("client_id"),
        Some("11111111-2222-3333-4444-555555555555")
    );
    assert_eq!(request.header("metadata"), Some("true"));
    assert_eq!(token.secret(), "imds-token");
}

#[tokio::test]
async fn imds_numbers_sent_as_strings_give_the_expiry() {
    let server = TokenServer::always(imds_token("t", 3599)).await;

    let token = imds(&server).fetch(KEY_VAULT_SCOPE).await.unwrap();

    let expires = unix(token.expires_on());
    assert!(
        expires.abs_diff(unix_now() + 3599) <= 2,
        "expires_on {expires}"
    );
}

#[tokio::test]
async fn numbers_sent_as_numbers_are_read_too() {
    // An `expires_on` that `expires_in` would not give, so the test tells which was read.
    let expires_on = unix_now() + 3000;
    let server = TokenServer::always(Reply::json(
        200,
        format!(
            r#"{{"access_token":"t","expires_in":3599,"expires_on":{expires_on},"not_before":{},"token_type":"Bearer"}}"#,
            expires_on - 3600
        ),
    ))
    .await;

    let token = imds(&server).fetch(KEY_VAULT_SCOPE).await.unwrap();

    assert_eq!(unix(token.expires_on()), expires_on);
}

#[tokio::test]
async fn imds_names_user_assigned_identities_by_client_object_or_resource_id() {
    let server = TokenServer::always(imds_token("t", 3599)).await;
    let ids = [
        (UserAssignedId::ClientId("c".into()), "client_id"),
        (UserAssignedId::ObjectId("o".into()), "object_id"),
        (
            UserAssignedId::ResourceId("/subscriptions/s/x".into()),
            "msi_res_id",
        ),
    ];
    for (id, _) in &ids {
        imds(&server)
            .with_user_assigned(Some(id.clone()))
            .fetch(KEY_VAULT_SCOPE)
            .await
            .unwrap();
    }
    imds(&server).fetch(KEY_VAULT_SCOPE).await.unwrap();

    let requests = server.requests();
    for (request, (_, param)) in requests.iter().zip(&ids) {
        let names: Vec<&str> = request.query.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(names, ["api-version", "resource", *param]);
    }
    assert_eq!(requests[2].query("msi_res_id"), Some("/subscriptions/s/x"));
    let system_assigned: Vec<&str> = requests[3].query.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        system_assigned,
        ["api-version", "resource"],
        "no id for the system-assigned identity"
    );
}

#[tokio::test]
async fn imds_accepts_a_bare_resource_as_the_scope() {
    let server = TokenServer::always(imds_token("t", 3599)).await;

    imds(&server)
        .fetch("https://vault.azure.net")
        .await
        .unwrap();

    assert_eq!(
        server.requests()[0].query("resource"),
        Some("https://vault.azure.net")
    );
}

#[tokio::test]
async fn app_service_sends_the_identity_header_and_its_own_api_version() {
    let expires_on = unix_now() + 3000;
    let server = TokenServer::always(Reply::json(
        200,
        format!(
            r#"{{"access_token":"app-token","expires_on":"{expires_on}","resource":"https://vault.azure.net","token_type":"Bearer","client_id":"c"}}"#
        ),
    ))
    .await;
    let env = |name: &str| match name {
        "IDENTITY_ENDPOINT" => Some(server.url("/msi/token")),
        "IDENTITY_HEADER" => Some("the-identity-header".to_owned()),
        _ => None,
    };
    let source = AppService::from_env_with(&env)
        .unwrap()
        .with_retry_policy(fast_retries(3));

    let token = source
        .with_client_id("c")
        .fetch(KEY_VAULT_SCOPE)
        .await
        .unwrap();

    let request = &server.requests()[0];
    assert_eq!(request.method, "GET");
    assert_eq!(request.path, "/msi/token");
    assert_eq!(request.query("api-version"), Some("2019-08-01"));
    assert_eq!(request.query("resource"), Some("https://vault.azure.net"));
    assert_eq!(request.query("client_id"), Some("c"));
    assert_eq!(
        request.header("x-identity-header"),
        Some("the-identity-header")
    );
    assert_eq!(request.header("metadata"), None);
    assert_eq!(token.secret(), "app-token");
    assert_eq!(unix(token.expires_on()), expires_on);
}

#[tokio::test]
async fn app_service_names_user_assigned_identities_with_its_own_parameter_names() {
    let server = TokenServer::always(imds_token("t", 3599)).await;
    let source = |id: UserAssignedId| {
        AppService::new(&server.url("/msi/token"), "h")
            .unwrap()
            .with_user_assigned(Some(id))
    };

    source(UserAssignedId::ObjectId("o".into()))
        .fetch(KEY_VAULT_SCOPE)
        .await
        .unwrap();
    source(UserAssignedId::ResourceId("/subscriptions/s/x".into()))
        .fetch(KEY_VAULT_SCOPE)
        .await
        .unwrap();

    let requests = server.requests();
    assert_eq!(requests[0].query("principal_id"), Some("o"));
    assert_eq!(requests[1].query("mi_res_id"), Some("/subscriptions/s/x"));
    assert_eq!(requests[1].query("msi_res_id"), None);
}

#[tokio::test]
async fn workload_identity_posts_the_current_content_of_the_token_file() {
    let server = TokenServer::always(entra_token("wi-token", 3599)).await;
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("azure-identity-token");
    std::fs::write(&token_file, "assertion-one\n").unwrap();
    let env = |name: &str| match name {
        "AZURE_FEDERATED_TOKEN_FILE" => Some(token_file.display().to_string()),
        "AZURE_CLIENT_ID" => Some("wi-client".to_owned()),
        "AZURE_TENANT_ID" => Some("wi-tenant".to_owned()),
        "AZURE_AUTHORITY_HOST" => Some(server.url("/")),
        _ => None,
    };
    let source = WorkloadIdentity::from_env_with(&env)
        .unwrap()
        .with_retry_policy(fast_retries(3));

    let first = source.fetch(KEY_VAULT_SCOPE).await.unwrap();
    // The kubelet rotates the projected token: the next request must carry the new one.
    std::fs::write(&token_file, "assertion-two").unwrap();
    source.fetch(KEY_VAULT_SCOPE).await.unwrap();

    let requests = server.requests();
    assert_eq!(requests.len(), 2);
    for request in &requests {
        assert_eq!(request.method, "POST");
        assert_eq!(request.path, "/wi-tenant/oauth2/v2.0/token");
        assert_eq!(
            request.header("content-type"),
            Some("application/x-www-form-urlencoded")
        );
    }
    let fields: Vec<String> = requests[0].form().into_iter().map(|(k, _)| k).collect();
    assert_eq!(
        fields,
        [
            "client_assertion",
            "client_assertion_type",
            "client_id",
            "grant_type",
            "scope"
        ]
    );
    assert_eq!(
        requests[0].form_field("client_assertion").as_deref(),
        Some("assertion-one")
    );
    assert_eq!(
        requests[1].form_field("client_assertion").as_deref(),
        Some("assertion-two")
    );
    assert_eq!(
        requests[0].form_field("client_assertion_type").as_deref(),
        Some(JWT_BEARER)
    );
    assert_eq!(
        requests[0].form_field("client_id").as_deref(),
        Some("wi-client")
    );
    assert_eq!(
        requests[0].form_field("grant_type").as_deref(),
        Some("client_credentials")
    );
    assert_eq!(
        requests[0].form_field("scope").as_deref(),
        Some("https://vault.azure.net/.default")
    );
    assert_eq!(first.secret(), "wi-token");
    assert!(
        unix(first.expires_on()).abs_diff(unix_now() + 3599) <= 2,
        "expires_in counts from now"
    );
}

#[tokio::test]
async fn workload_identity_without_its_token_file_is_a_configuration_error_naming_the_file() {
    let server = TokenServer::always(entra_token("t", 3599)).await;
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-token");
    let source = WorkloadIdentity::new("tenant", "client", &missing)
        .unwrap()
        .with_authority_host(&server.base)
        .unwrap();

    let err = source.fetch(KEY_VAULT_SCOPE).await.unwrap_err();

    assert!(matches!(err, IdentityError::TokenFile { .. }), "{err:?}");
    assert!(
        err.to_string().contains(&missing.display().to_string()),
        "{err}"
    );
    assert!(!err.is_transient());
    assert_eq!(server.count(), 0, "nothing is sent without an assertion");
}

#[tokio::test]
async fn client_secret_posts_the_secret_with_a_v2_scope() {
    let server = TokenServer::always(entra_token("sp-token", 3599)).await;
    let source = ClientSecret::new("sp-tenant", "sp-client", "sp-secret-value")
        .unwrap()
        .with_authority_host(&server.base)
        .unwrap()
        .with_retry_policy(fast_retries(3));

    // A bare resource gets "/.default" appended for the v2 endpoint.
    let token = source.fetch("https://vault.azure.net").await.unwrap();

    let request = &server.requests()[0];
    assert_eq!(request.method, "POST");
    assert_eq!(request.path, "/sp-tenant/oauth2/v2.0/token");
    assert_eq!(
        request.form(),
        [
            ("client_secret".to_owned(), "sp-secret-value".to_owned()),
            ("client_id".to_owned(), "sp-client".to_owned()),
            ("grant_type".to_owned(), "client_credentials".to_owned()),
            (
                "scope".to_owned(),
                "https://vault.azure.net/.default".to_owned()
            ),
        ]
    );
    assert_eq!(token.secret(), "sp-token");
}

#[tokio::test]
async fn a_static_token_is_the_same_for_every_scope_and_expires_far_ahead() {
    let source = StaticToken::new("dev-token");

    let a = source.fetch(KEY_VAULT_SCOPE).await.unwrap();
    let b = source
        .fetch("https://management.azure.com/.default")
        .await
        .unwrap();

    assert_eq!(a.secret(), "dev-token");
    assert_eq!(b.secret(), "dev-token");
    assert!(a.expires_on() > SystemTime::now() + Duration::from_secs(300 * 24 * 3600));
    assert!(!source.describe().contains("dev-token"));
    assert!(!format!("{source:?}").contains("dev-token"));
}

#[tokio::test]
async fn sources_describe_themselves_by_kind_endpoint_and_identity() {
    let server = TokenServer::always(imds_token("t", 3599)).await;
    assert_eq!(
        imds(&server).with_client_id("cid").describe(),
        format!(
            "managed identity (IMDS {}, client_id cid)",
            server.imds_url()
        )
    );
    assert_eq!(
        ManagedIdentity::new().describe(),
        "managed identity (IMDS http://169.254.169.254/metadata/identity/oauth2/token, the system-assigned identity)"
    );
    let sp = ClientSecret::new("tid", "cid", "sp-secret-value").unwrap();
    assert_eq!(
        sp.describe(),
        "client secret (client_id cid in tenant tid at https://login.microsoftonline.com/tid/oauth2/v2.0/token)"
    );
}
