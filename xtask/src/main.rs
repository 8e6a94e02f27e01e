//! Project tasks, run as `cargo xtask <task>`:
//!
//! - `run`: the embedded demo — the vault emulator with a development certificate in it, a small
//!   demo backend, and the gateway on `https://localhost:8443` reading that certificate by its Key
//!   Vault URI through the emulator's managed-identity endpoint, with a `curl` line that works as
//!   printed.
//!
//! Repository checks (every crate has a `//!` doc and forbids unsafe code) run under
//! `cargo test -p xtask`.
#![forbid(unsafe_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context as _};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("run") => run_demo(&args[1..]),
        _ => {
            eprintln!("usage: cargo xtask run [--port PORT]");
            bail!("unknown or missing task")
        }
    }
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_owned()
}

fn run_demo(args: &[String]) -> anyhow::Result<()> {
    let port: u16 = match args {
        [] => 8443,
        [flag, port] if flag == "--port" => port.parse().context("--port")?,
        _ => bail!("usage: cargo xtask run [--port PORT]"),
    };
    let root = workspace_root();
    let demo = root.join("target/xtask-demo");
    std::fs::create_dir_all(&demo)?;

    let (ca_pem, cert_pem) = development_certificate()?;
    let ca_file = demo.join("dev-ca.pem");
    std::fs::write(&ca_file, ca_pem)?;

    // The vault: the emulator, in this process, with the development certificate imported as a
    // new version of `demo-site` (each run adds a version, so the audit log shows a rotation).
    // A fixed vault port keeps the secret URI, and so the listener's configured source, the same
    // from one run to the next.
    let mut emulator_config = vault_emulator::EmulatorConfig::new(demo.join("emulator"));
    emulator_config.bind = ([127, 0, 0, 1], port.wrapping_add(1)).into();
    let emulator =
        vault_emulator::Emulator::start(emulator_config).context("starting the vault emulator")?;
    emulator.write_info(&demo.join("emulator").join(vault_emulator::INFO_FILE))?;
    let version = emulator
        .import_certificate("demo-site", cert_pem.as_bytes(), None)
        .context("importing the development certificate into the emulator")?;
    let info = emulator.info().clone();
    let vault_host = info
        .vault_url
        .trim_start_matches("https://")
        .trim_end_matches('/')
        .to_owned();
    let secret_uri = format!("{}secrets/demo-site", info.vault_url);

    let backend = TcpListener::bind("127.0.0.1:0").context("demo backend")?;
    let backend_addr = backend.local_addr()?;
    std::thread::spawn(move || serve_demo_backend(backend));

    let config = demo.join("gateway.toml");
    std::fs::write(
        &config,
        format!(
            r#"# Written by `cargo xtask run`.
[state]
dir = "state"

[identity]
kind = "managed-identity"
endpoint = "{identity_endpoint}"
client_id = "{client_id}"

[vault]
ca_file = "{vault_ca}"
allowed_hosts = ["{vault_host}"]

[[listener]]
name = "demo"
bind = "127.0.0.1:{port}"
protocol = "https"
hostnames = ["localhost"]
certificate = {{ key_vault_secret_id = "{secret_uri}" }}

[[backend_pool]]
name = "demo-backend"
addresses = ["{backend_addr}"]

[[rule]]
name = "demo"
listener = "demo"
backend_pool = "demo-backend"
"#,
            identity_endpoint = info.identity_endpoint,
            client_id = info.client_id,
            vault_ca = info.ca_file.display(),
        ),
    )?;

    let status = Command::new(env!("CARGO"))
        .current_dir(&root)
        .args(["build", "--quiet", "-p", "gateway"])
        .status()?;
    if !status.success() {
        bail!("building the gateway failed");
    }
    let mut gateway = Command::new(root.join("target/debug/gateway"))
        .args(["run", "--config"])
        .arg(&config)
        .stdout(Stdio::piped())
        .spawn()
        .context("starting the gateway")?;
    let stdout = gateway.stdout.take().expect("piped");
    for line in BufReader::new(stdout).lines() {
        let line = line?;
        if line == "ready" {
            println!();
            println!("The demo gateway is serving https://localhost:{port}/ (backend on http://{backend_addr}).");
            println!(
                "Its certificate is {secret_uri} (version {version}) in the vault emulator at {}.",
                info.vault_url
            );
            println!("Try:");
            println!();
            println!(
                "    curl --cacert {} https://localhost:{port}/hello",
                ca_file.display()
            );
            println!();
            println!(
                "Audit log:  cargo run -q -p gateway -- audit --state {}",
                demo.join("state").display()
            );
            println!("Press Ctrl-C to stop.");
            break;
        }
    }
    let status = gateway.wait()?;
    emulator.stop();
    if !status.success() {
        bail!("the gateway exited with {status}");
    }
    Ok(())
}

/// A development CA and a `localhost` certificate it signed, both as PEM (the leaf's PEM holds the
/// certificate, the CA certificate and the key, as a `pem_file` listener expects).
fn development_certificate() -> anyhow::Result<(String, String)> {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
    let ca_key = KeyPair::generate()?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "gateway development CA");
    let ca = ca_params.self_signed(&ca_key)?;

    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(vec!["localhost".to_owned()])?;
    params
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    let leaf = params.signed_by(&key, &ca, &ca_key)?;
    Ok((
        ca.pem(),
        format!("{}{}{}", leaf.pem(), ca.pem(), key.serialize_pem()),
    ))
}

/// A tiny HTTP/1.1 backend: answers every request with what it received, so the demo shows the
/// headers the gateway adds.
fn serve_demo_backend(listener: TcpListener) {
    for stream in listener.incoming().flatten() {
        std::thread::spawn(move || {
            let _ = answer_connection(stream);
        });
    }
}

fn answer_connection(stream: TcpStream) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut writer = stream;
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line)? == 0 {
            return Ok(());
        }
        let mut headers = Vec::new();
        let mut content_length = 0usize;
        loop {
            let mut line = String::new();
            reader.read_line(&mut line)?;
            let line = line.trim_end().to_owned();
            if line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    content_length = value.trim().parse().unwrap_or(0);
                }
            }
            headers.push(line);
        }
        let mut body = vec![0; content_length];
        reader.read_exact(&mut body)?;
        let mut reply = format!(
            "Hello from the demo backend.\n\n{}",
            request_line.trim_end()
        );
        for header in headers
            .iter()
            .filter(|h| h.to_ascii_lowercase().starts_with("x-"))
        {
            reply.push('\n');
            reply.push_str(header);
        }
        reply.push('\n');
        write!(
            writer,
            "HTTP/1.1 200 OK\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: {}\r\n\r\n{reply}",
            reply.len()
        )?;
        writer.flush()?;
    }
}

#[cfg(test)]
mod tidy {
    use super::workspace_root;

    /// Every crate root starts with a `//!` doc and forbids unsafe code.
    #[test]
    fn every_crate_root_is_documented_and_forbids_unsafe() {
        let root = workspace_root();
        let mut checked = 0;
        for entry in std::fs::read_dir(&root).unwrap() {
            let dir = entry.unwrap().path();
            if !dir.join("Cargo.toml").exists() || dir == root {
                continue;
            }
            for file in ["src/lib.rs", "src/main.rs"] {
                let path = dir.join(file);
                let Ok(text) = std::fs::read_to_string(&path) else {
                    continue;
                };
                assert!(
                    text.starts_with("//!"),
                    "{} must start with a //! crate doc",
                    path.display()
                );
                assert!(
                    text.contains("#![forbid(unsafe_code)]"),
                    "{} must have #![forbid(unsafe_code)]",
                    path.display()
                );
                checked += 1;
            }
        }
        assert!(
            checked >= 9,
            "expected every crate to be checked, found {checked}"
        );
    }
}
