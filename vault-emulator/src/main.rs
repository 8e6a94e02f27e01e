//! `vault-emulator --bind ADDR --state DIR`: runs the emulator and writes `DIR/emulator.json`.
#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use vault_emulator::{Emulator, EmulatorConfig, INFO_FILE};

/// A local Azure Key Vault (https) and managed-identity token endpoint (http).
#[derive(Parser)]
#[command(version)]
struct Args {
    /// Address of the https vault.
    #[arg(long, default_value = "127.0.0.1:8443")]
    bind: SocketAddr,
    /// Address of the token endpoints (plain http, like IMDS); default: the vault's IP, a free port.
    #[arg(long)]
    identity_bind: Option<SocketAddr>,
    /// State directory: CA, https key, vault contents, and the emulator.json written at start.
    #[arg(long)]
    state: PathBuf,
    /// Seconds a certificate `create` stays in progress.
    #[arg(long, default_value_t = 1.0)]
    pending_delay: f64,
    /// Lifetime of issued access tokens, in seconds.
    #[arg(long, default_value_t = 3600)]
    token_lifetime: u64,
}

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let args = Args::parse();
    let mut config = EmulatorConfig::new(&args.state);
    config.bind = args.bind;
    config.identity_bind = args.identity_bind;
    config.pending_delay = Duration::from_secs_f64(args.pending_delay.max(0.0));
    config.token_lifetime = Duration::from_secs(args.token_lifetime);
    let emulator = match Emulator::start(config) {
        Ok(emulator) => emulator,
        Err(e) => {
            eprintln!("vault-emulator: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let info_path = args.state.join(INFO_FILE);
    if let Err(e) = emulator.write_info(&info_path) {
        eprintln!("vault-emulator: {e}");
        return std::process::ExitCode::FAILURE;
    }
    let info = emulator.info();
    println!("vault_url:         {}", info.vault_url);
    println!("identity_endpoint: {}", info.identity_endpoint);
    println!("ca_file:           {}", info.ca_file.display());
    println!("client_id:         {}", info.client_id);
    println!("control_url:       {}", info.control_url);
    println!("wrote {}", info_path.display());
    // Runs until killed (SIGINT/SIGTERM end the process).
    loop {
        std::thread::park();
    }
}
