//! Gets a token and prints when it expires (never the token itself).
//!
//! ```text
//! cargo run -p identity --example token -- --static TOKEN
//! cargo run -p identity --example token -- --imds http://127.0.0.1:8443/metadata/identity/oauth2/token --client-id ID
//! cargo run -p identity --example token -- --imds            # the VM's own IMDS
//! cargo run -p identity --example token -- --app-service     # IDENTITY_ENDPOINT, IDENTITY_HEADER
//! cargo run -p identity --example token -- --workload-identity
//! ```
//! `--scope SCOPE` asks for another scope than Key Vault's.

use std::sync::Arc;

use identity::{
    AppService, ClientSecret, IdentityError, ManagedIdentity, StaticToken, TokenCache, TokenSource,
    WorkloadIdentity, KEY_VAULT_SCOPE,
};

const USAGE: &str = "usage: token (--static TOKEN | --imds [URL] [--client-id ID] | --app-service | --workload-identity | --client-secret) [--scope SCOPE]";

fn main() -> std::process::ExitCode {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    match runtime.block_on(run(std::env::args().skip(1).collect())) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(args: Vec<String>) -> Result<(), String> {
    let mut scope = KEY_VAULT_SCOPE.to_owned();
    let mut client_id = None;
    let mut kind = None;
    let mut args = args.into_iter().peekable();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--static" => kind = Some(("static", Some(args.next().ok_or(USAGE)?))),
            "--imds" => kind = Some(("imds", args.next_if(|a| !a.starts_with("--")))),
            "--app-service" => kind = Some(("app-service", None)),
            "--workload-identity" => kind = Some(("workload-identity", None)),
            "--client-secret" => kind = Some(("client-secret", None)),
            "--client-id" => client_id = Some(args.next().ok_or(USAGE)?),
            "--scope" => scope = args.next().ok_or(USAGE)?,
            _ => return Err(USAGE.to_owned()),
        }
    }
    let source = build(kind.ok_or(USAGE)?, client_id).map_err(|e| e.to_string())?;
    println!("asking {}", source.describe());
    let cache = TokenCache::new(source);
    let token = cache.token(&scope).await.map_err(|e| {
        let class = if e.is_transient() {
            "transient"
        } else {
            "configuration"
        };
        format!("{e} ({class} error)")
    })?;
    println!(
        "got a token for {scope}: {token}, {} bytes",
        token.secret().len()
    );
    Ok(())
}

fn build(
    kind: (&str, Option<String>),
    client_id: Option<String>,
) -> Result<Arc<dyn TokenSource>, IdentityError> {
    Ok(match kind {
        ("static", Some(token)) => Arc::new(StaticToken::new(token)),
        ("imds", endpoint) => {
            let mut source = ManagedIdentity::new();
            if let Some(endpoint) = endpoint {
                source = source.with_endpoint(&endpoint)?;
            }
            if let Some(id) = client_id {
                source = source.with_client_id(id);
            }
            Arc::new(source)
        }
        ("app-service", _) => Arc::new(AppService::from_env()?),
        ("workload-identity", _) => Arc::new(WorkloadIdentity::from_env()?),
        _ => Arc::new(ClientSecret::from_env()?),
    })
}
