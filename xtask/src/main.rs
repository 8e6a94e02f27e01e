//! Project tasks, run as `cargo xtask <task>`:
//!
//! - `run`: the embedded demo — the vault emulator with a development certificate in it, a small
//!   demo backend, and the gateway on `https://localhost:8443` reading that certificate by its Key
//!   Vault URI through the emulator's managed-identity endpoint, with a `curl` line that works as
//!   printed.
//! - `bench`: the gateway, nginx and HAProxy side by side (see `bench.rs`), report in
//!   `target/bench/report.md`.
//! - `rotate`: puts a new certificate version into that running emulator and refreshes the demo
//!   listener through the gateway's admin API.
//!
//! - `fuzz`: seeds the fuzz corpora and runs the libFuzzer targets (see `fuzz.rs`).
//!
//! Repository checks (every crate has a `//!` doc and forbids unsafe code) run under
//! `cargo test -p xtask`.
#![forbid(unsafe_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context as _};

mod bench;
mod fuzz;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("run") => run_demo(&args[1..]),
        Some("rotate") => rotate_demo(),
        Some("bench") => bench::run(&workspace_root(), &args[1..]),
        Some("fuzz") => fuzz::run(&workspace_root(), &args[1..]),
        _ => {
            eprintln!("usage: cargo xtask run [--port PORT] | cargo xtask rotate | cargo xtask bench [--quick] | cargo xtask fuzz seed|run TARGET");
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

    let cert_pem = development_certificate(&demo)?;
    let ca_file = demo.join("dev-ca.pem");
    let admin_port = port.wrapping_add(2);
    std::fs::write(demo.join("admin-addr"), format!("127.0.0.1:{admin_port}"))?;

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

[admin]
bind = "127.0.0.1:{admin_port}"

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

/// The development CA: its key is kept in `target/xtask-demo/dev-ca-key.pem` so that certificates
/// issued by later runs and by `cargo xtask rotate` chain to the `dev-ca.pem` printed in the
/// `curl` line. Returns the CA certificate (rebuilt from the same name and key) and its key.
fn development_ca(demo: &Path) -> anyhow::Result<(rcgen::Certificate, rcgen::KeyPair)> {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
    let key_file = demo.join("dev-ca-key.pem");
    let ca_file = demo.join("dev-ca.pem");
    let existing = std::fs::read_to_string(&key_file)
        .ok()
        .filter(|_| ca_file.exists())
        .and_then(|pem| KeyPair::from_pem(&pem).ok());
    let fresh = existing.is_none();
    let ca_key = match existing {
        Some(key) => key,
        None => KeyPair::generate()?,
    };
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "gateway development CA");
    let ca = ca_params.self_signed(&ca_key)?;
    if fresh {
        write_private(&key_file, ca_key.serialize_pem().as_bytes())?;
        std::fs::write(&ca_file, ca.pem())?;
    }
    Ok((ca, ca_key))
}

/// A new `localhost` certificate from the development CA, as one PEM (leaf, CA, key).
fn development_certificate(demo: &Path) -> anyhow::Result<String> {
    use rcgen::{CertificateParams, DnType, KeyPair};
    let (ca, ca_key) = development_ca(demo)?;
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(vec!["localhost".to_owned()])?;
    params
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    let leaf = params.signed_by(&key, &ca, &ca_key)?;
    Ok(format!("{}{}{}", leaf.pem(), ca.pem(), key.serialize_pem()))
}

fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(bytes)?;
    Ok(())
}

/// `cargo xtask rotate`: a new certificate version into the running demo's emulator, then a
/// refresh through the gateway's admin API, printing its outcome.
fn rotate_demo() -> anyhow::Result<()> {
    let demo = workspace_root().join("target/xtask-demo");
    let info: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(demo.join("emulator").join(vault_emulator::INFO_FILE))
            .context("no running demo found: start one with `cargo xtask run`")?,
    )?;
    let admin: std::net::SocketAddr = std::fs::read_to_string(demo.join("admin-addr"))
        .context("no running demo found: start one with `cargo xtask run`")?
        .trim()
        .parse()?;
    let control = info["control_url"]
        .as_str()
        .context("emulator.json has no control_url")?;
    let pem = development_certificate(&demo)?;
    let (status, body) = http_post(
        &format!(
            "{}certificates/demo-site/import",
            control.trim_end_matches('/').to_owned() + "/"
        ),
        &serde_json::json!({ "value": pem }).to_string(),
    )?;
    if status != 200 {
        bail!("the emulator refused the import ({status}): {body}");
    }
    let version: serde_json::Value = serde_json::from_str(&body)?;
    println!(
        "imported demo-site version {}",
        version["version"].as_str().unwrap_or("?")
    );
    let (status, body) = http_post(&format!("http://{admin}/listeners/demo/refresh"), "")?;
    let outcome: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
    if status != 200 {
        bail!("refresh failed ({status}): {body}");
    }
    println!("refresh: {}", outcome["summary"].as_str().unwrap_or(&body));
    Ok(())
}

/// One plain-HTTP POST to a loopback service of the demo.
fn http_post(url: &str, body: &str) -> anyhow::Result<(u16, String)> {
    let rest = url
        .strip_prefix("http://")
        .context("only http:// URLs are used here")?;
    let (authority, path) = rest
        .split_once('/')
        .map_or((rest, "/".to_owned()), |(a, p)| (a, format!("/{p}")));
    let mut stream =
        TcpStream::connect(authority).with_context(|| format!("connecting to {authority}"))?;
    write!(
        stream,
        "POST {path} HTTP/1.1\r\nHost: {authority}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Ok((status, body))
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
