//! `gateway`: a TLS-terminating application gateway whose certificates come from files or Azure Key
//! Vault, with every certificate change recorded in an embedded event log.
//!
//! This file only parses the command line, sets up logging and turns errors into one-line messages
//! and exit codes; the work is in the library.
#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;

/// mimalloc rather than the system allocator: the proxy path allocates and frees small buffers
/// from two worker threads at a high rate (see README, Performance).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
use clap::{Parser, Subcommand};
use gateway::audit::{self, AuditArgs};
use gateway::config::Config;

#[derive(Parser)]
#[command(
    name = "gateway",
    version,
    about = "TLS-terminating gateway with Key Vault certificates"
)]
struct Cli {
    /// How log lines on standard error look: `text` for people, `json` (one object per line) for
    /// log collectors. `RUST_LOG` sets what is logged.
    #[arg(
        long,
        global = true,
        value_enum,
        env = "GATEWAY_LOG_FORMAT",
        default_value_t = LogFormat::Text
    )]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the configured listeners.
    Run {
        #[arg(long)]
        config: PathBuf,
    },
    /// Check a config file and the certificates it names, without serving.
    CheckConfig {
        #[arg(long)]
        config: PathBuf,
    },
    /// Show or verify the certificate event log.
    Audit(AuditArgs),
    /// Check Key Vault listeners now, through the running gateway's admin API, and print each outcome.
    Refresh {
        #[arg(long)]
        config: PathBuf,
        /// Only this listener (default: every Key Vault listener).
        #[arg(long)]
        listener: Option<String>,
    },
    /// Print each listener's state and served certificate, from the running gateway's admin API.
    Status {
        /// The admin API's address (`[admin] bind`).
        #[arg(long, conflicts_with = "config", required_unless_present = "config")]
        admin: Option<SocketAddr>,
        /// Read the admin address from this config file instead.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Fetch one certificate from Key Vault with the config's identity and describe it (never the key).
    Fetch {
        #[arg(long)]
        config: PathBuf,
        /// `https://{vault}.vault.azure.net/secrets/{name}[/{version}]`
        secret_uri: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    let result = match cli.command {
        Command::Run { config } => run(config),
        Command::CheckConfig { config } => check_config(config),
        Command::Audit(args) => audit::run(&args, &mut std::io::stdout().lock()),
        Command::Fetch { config, secret_uri } => fetch(config, &secret_uri),
        Command::Refresh { config, listener } => refresh(config, listener.as_deref()),
        Command::Status { admin, config } => status(admin, config),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // `{:#}` joins the cause chain on one line: "listener `web`: /etc/site.pfx: wrong password".
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        // One JSON object per line; the event's fields at the top level next to `message`.
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .init(),
    }
}

fn run(config: PathBuf) -> anyhow::Result<()> {
    let config = Config::load(&config)?;
    actix_web::rt::System::new().block_on(async move {
        let running = gateway::serve::start(config).await?;
        for listener in &running.listeners {
            // A stable, parseable line per listener: scripts and tests read the bound port here.
            println!(
                "listening listener={} protocol={} addr={}",
                listener.name, listener.protocol, listener.addr
            );
        }
        for addr in &running.admin {
            println!("admin addr={addr}");
        }
        println!("ready");
        let stopper = running.stopper();
        actix_web::rt::spawn(async move {
            shutdown_signal().await;
            tracing::info!("shutting down: finishing open connections");
            stopper.stop(true).await;
        });
        running.wait().await.context("server")
    })
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

fn check_config(config: PathBuf) -> anyhow::Result<()> {
    let config = Config::load(&config)?;
    for line in gateway::check::check(&config)? {
        println!("{line}");
    }
    println!("{}: ok", config.path.display());
    Ok(())
}

fn fetch(config: PathBuf, uri: &str) -> anyhow::Result<()> {
    let config = Config::load(&config)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    for line in runtime.block_on(gateway::check::fetch(&config, uri))? {
        println!("{line}");
    }
    Ok(())
}

fn refresh(config: PathBuf, only: Option<&str>) -> anyhow::Result<()> {
    let config = Config::load(&config)?;
    let names: Vec<&str> = match only {
        Some(name) => vec![name],
        None => config
            .listeners
            .iter()
            .filter(|l| l.certificate.as_ref().is_some_and(|c| c.is_key_vault()))
            .map(|l| l.name.as_str())
            .collect(),
    };
    if names.is_empty() {
        anyhow::bail!(
            "{}: no listener reads its certificate from Key Vault",
            config.path.display()
        );
    }
    let mut all_good = true;
    for name in names {
        let outcome = gateway::admin_client::refresh(config.admin.bind, name)?;
        println!("{name}: {}", outcome.summary);
        all_good &= outcome.ok;
    }
    if !all_good {
        anyhow::bail!("not every refresh succeeded");
    }
    Ok(())
}

fn status(admin: Option<SocketAddr>, config: Option<PathBuf>) -> anyhow::Result<()> {
    let admin = match (admin, config) {
        (Some(admin), _) => admin,
        (None, Some(config)) => Config::load(&config)?.admin.bind,
        (None, None) => anyhow::bail!("give --admin ADDR or --config FILE"),
    };
    let views = gateway::admin_client::listeners(admin)?;
    for line in gateway::admin_client::status_lines(&views) {
        println!("{line}");
    }
    Ok(())
}
