//! Fetches a certificate from Key Vault and prints what it is, never its key.
//!
//! ```text
//! cargo run -p vault-client --example fetch -- SECRET_URI [--token TOKEN] [--ca-file F] [--allow-host H]...
//!     [--imds-endpoint URL] [--client-id ID]
//! ```
//!
//! Without `--token` the token comes from the managed identity (IMDS, or `--imds-endpoint`, e.g.
//! the emulator's `identity_endpoint`). `--ca-file` and `--allow-host` are what `[vault] ca_file`
//! and `allowed_hosts` configure in the gateway.

use std::process::ExitCode;
use std::sync::Arc;

use identity::{ManagedIdentity, StaticToken, TokenCache, TokenSource};
use vault_client::{RetryPolicy, VaultClient, VaultClientConfig};

const USAGE: &str = "usage: fetch SECRET_URI [--token TOKEN] [--ca-file F] [--allow-host HOST:PORT]... [--imds-endpoint URL] [--client-id ID]";

struct Args {
    uri: String,
    token: Option<String>,
    ca_file: Option<String>,
    allowed_hosts: Vec<String>,
    imds_endpoint: Option<String>,
    client_id: Option<String>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = std::env::args().skip(1);
    let mut parsed = Args {
        uri: String::new(),
        token: None,
        ca_file: None,
        allowed_hosts: Vec::new(),
        imds_endpoint: None,
        client_id: None,
    };
    while let Some(arg) = args.next() {
        let mut value = |name: &str| {
            args.next()
                .ok_or_else(|| format!("{name} needs a value\n{USAGE}"))
        };
        match arg.as_str() {
            "--token" => parsed.token = Some(value("--token")?),
            "--ca-file" => parsed.ca_file = Some(value("--ca-file")?),
            "--allow-host" => parsed.allowed_hosts.push(value("--allow-host")?),
            "--imds-endpoint" => parsed.imds_endpoint = Some(value("--imds-endpoint")?),
            "--client-id" => parsed.client_id = Some(value("--client-id")?),
            "-h" | "--help" => return Err(USAGE.to_owned()),
            other if other.starts_with("--") => {
                return Err(format!("unknown option {other}\n{USAGE}"))
            }
            uri if parsed.uri.is_empty() => parsed.uri = uri.to_owned(),
            extra => return Err(format!("unexpected argument {extra}\n{USAGE}")),
        }
    }
    if parsed.uri.is_empty() {
        return Err(USAGE.to_owned());
    }
    Ok(parsed)
}

async fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let source: Arc<dyn TokenSource> = match args.token {
        Some(token) => Arc::new(StaticToken::new(token)),
        None => {
            let mut managed = ManagedIdentity::new();
            if let Some(endpoint) = &args.imds_endpoint {
                managed = managed.with_endpoint(endpoint)?;
            }
            if let Some(client_id) = args.client_id {
                managed = managed.with_client_id(client_id);
            }
            Arc::new(managed)
        }
    };
    let extra_root_pem = match &args.ca_file {
        Some(path) => {
            Some(std::fs::read(path).map_err(|e| format!("cannot read --ca-file {path}: {e}"))?)
        }
        None => None,
    };
    let client = VaultClient::new(VaultClientConfig {
        tokens: Arc::new(TokenCache::new(source)),
        extra_root_pem,
        allowed_hosts: args.allowed_hosts,
        retry: RetryPolicy::default(),
    })?;
    let id = client.parse_id(&args.uri)?;
    let fetched = client.fetch_certificate(&id).await?;

    let leaf = fetched.bundle.leaf();
    let (_, cert) = x509_parser::parse_x509_certificate(leaf.as_ref())
        .map_err(|e| format!("the leaf certificate does not parse: {e}"))?;
    println!("secret:       {}", fetched.id);
    println!("version:      {}", fetched.version);
    println!("content type: {}", fetched.content_type);
    println!("subject:      {}", cert.subject());
    println!("issuer:       {}", cert.issuer());
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        let names: Vec<String> = san
            .value
            .general_names
            .iter()
            .map(|n| n.to_string())
            .collect();
        println!("SANs:         {}", names.join(", "));
    }
    println!("not before:   {}", cert.validity().not_before);
    println!("not after:    {}", cert.validity().not_after);
    println!("chain length: {}", fetched.bundle.chain().len());
    println!("SHA-256:      {}", fetched.bundle.thumbprint());
    println!(
        "enabled:      {}  managed: {}",
        fetched.enabled, fetched.managed
    );
    Ok(())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(2);
        }
    };
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}
