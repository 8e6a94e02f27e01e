//! `cargo xtask fuzz`: seeds the fuzz corpora from the fixtures and runs the libFuzzer targets of
//! `fuzz/` (whose entry points are `gateway::fuzzing`).
//!
//! - `cargo xtask fuzz seed` rewrites `fuzz/seeds/TARGET/` from the recorded Key Vault traffic in
//!   `../shared/fixtures/`, the PFX compatibility files, the README's configs, the event log's
//!   sample events and real rustls ClientHellos. The seeds are committed; `cargo test` replays them.
//! - `cargo xtask fuzz run TARGET|all [--time SECONDS]` runs, one target after the other, `cargo fuzz run` (default 600 s per
//!   target) with the seeds and a working corpus in `fuzz/corpus/TARGET/`; a crash is written to
//!   `fuzz/artifacts/TARGET/`. Copy it to `fuzz/regressions/TARGET/` once fixed.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use anyhow::{bail, Context as _};

const USAGE: &str =
    "usage: cargo xtask fuzz seed | cargo xtask fuzz run TARGET|all [--time SECONDS]";

pub fn run(root: &Path, args: &[String]) -> anyhow::Result<()> {
    match args {
        [task] if task == "seed" => seed(root),
        [task, target, rest @ ..] if task == "run" => {
            let seconds = match rest {
                [] => 600,
                [flag, seconds] if flag == "--time" => seconds.parse().context("--time")?,
                _ => bail!("{USAGE}"),
            };
            let known = targets(root)?;
            let chosen: Vec<&String> = if target == "all" {
                known.iter().collect()
            } else if known.contains(target) {
                vec![target]
            } else {
                bail!(
                    "there is no fuzz target {target:?}; the targets are {}",
                    known.join(", ")
                )
            };
            for target in chosen {
                fuzz(root, target, seconds)?;
            }
            Ok(())
        }
        _ => bail!("{USAGE}"),
    }
}

/// The targets: the files of `fuzz/fuzz_targets/`, by name.
fn targets(root: &Path) -> anyhow::Result<Vec<String>> {
    let dir = root.join("fuzz/fuzz_targets");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .with_context(|| format!("cannot read {}", dir.display()))?
        .filter_map(|e| {
            let path = e.ok()?.path();
            (path.extension()? == "rs").then(|| path.file_stem()?.to_str().map(str::to_owned))?
        })
        .collect();
    names.sort();
    Ok(names)
}

fn fuzz(root: &Path, target: &str, seconds: u64) -> anyhow::Result<()> {
    let fuzz_dir = root.join("fuzz");
    let corpus = fuzz_dir.join("corpus").join(target);
    let artifacts = fuzz_dir.join("artifacts").join(target);
    std::fs::create_dir_all(&corpus)?;
    std::fs::create_dir_all(&artifacts)?;
    println!("fuzzing {target} for {seconds} s");
    // cargo-fuzz passes `-Zsanitizer`, a nightly flag; RUSTC_BOOTSTRAP lets the stable toolchain
    // accept it, since no nightly toolchain can be installed here.
    let status = Command::new(env!("CARGO"))
        .current_dir(&fuzz_dir)
        .env("RUSTC_BOOTSTRAP", "1")
        .args(["fuzz", "run", target])
        .arg(&corpus)
        .arg(fuzz_dir.join("seeds").join(target))
        .arg("--")
        .arg(format!("-max_total_time={seconds}"))
        .arg(format!("-artifact_prefix={}/", artifacts.display()))
        .arg("-timeout=20")
        .arg("-rss_limit_mb=4096")
        .arg("-print_final_stats=1")
        .status()
        .context("cannot start `cargo fuzz`; install it with `cargo install cargo-fuzz`")?;
    if !status.success() {
        bail!(
            "fuzz target {target} failed ({status}); the input is in {}",
            artifacts.display()
        );
    }
    Ok(())
}

/// Writes every target's seeds, replacing what was there.
fn seed(root: &Path) -> anyhow::Result<()> {
    let fixtures = root.join("../shared/fixtures/keyvault-recordings");
    let recordings = read_recordings(&fixtures)?;
    let compat = root.join("cert-bundle/tests/data/compat");

    let seeds: [(&str, Vec<Vec<u8>>); 8] = [
        ("identifier", identifier_seeds(&recordings)),
        ("secret_value", secret_value_seeds(&recordings, &compat)?),
        ("pfx", pfx_seeds(&recordings, &compat)?),
        ("challenge", challenge_seeds(&recordings)),
        ("token_response", token_response_seeds()),
        ("config", config_seeds(root)?),
        ("envelope", event_log::fuzzing::seeds()),
        ("client_hello", client_hello_seeds()?),
    ];

    for (target, inputs) in seeds {
        let dir = root.join("fuzz/seeds").join(target);
        if dir.exists() {
            std::fs::remove_dir_all(&dir)?;
        }
        std::fs::create_dir_all(&dir)?;
        let unique: BTreeSet<Vec<u8>> = inputs.into_iter().collect();
        for (n, input) in unique.iter().enumerate() {
            std::fs::write(dir.join(format!("seed-{n:03}")), input)?;
        }
        println!("{target}: {} seeds in {}", unique.len(), dir.display());
    }
    Ok(())
}

fn read_recordings(dir: &Path) -> anyhow::Result<Vec<serde_json::Value>> {
    let mut recordings = Vec::new();
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read the recordings in {}", dir.display()))?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    paths.sort();
    for path in paths {
        let text = std::fs::read_to_string(&path)?;
        recordings
            .push(serde_json::from_str(&text).with_context(|| format!("{}", path.display()))?);
    }
    Ok(recordings)
}

fn entries(recordings: &[serde_json::Value]) -> impl Iterator<Item = &serde_json::Value> {
    recordings
        .iter()
        .filter_map(|r| r["Entries"].as_array())
        .flatten()
}

/// Every string in `value`, recursively.
fn strings<'a>(value: &'a serde_json::Value, out: &mut Vec<&'a str>) {
    match value {
        serde_json::Value::String(s) => out.push(s),
        serde_json::Value::Array(items) => items.iter().for_each(|v| strings(v, out)),
        serde_json::Value::Object(map) => map.values().for_each(|v| strings(v, out)),
        _ => {}
    }
}

fn identifier_seeds(recordings: &[serde_json::Value]) -> Vec<Vec<u8>> {
    let mut found = Vec::new();
    for entry in entries(recordings) {
        let mut all = Vec::new();
        strings(entry, &mut all);
        for s in all {
            if s.starts_with("https://") && s.contains(".vault.azure.net/") {
                found.push(s.split('?').next().unwrap_or(s).as_bytes().to_vec());
            }
        }
    }
    for extra in [
        "https://myvault.vault.azure.net/secrets/web",
        "https://myvault.vault.azure.net/certificates/web/0123456789abcdef0123456789abcdef",
        "https://MyVault.Vault.Azure.Net:443/secrets/web/",
        "https://myvault.vault.azure.cn/secrets/web",
        "https://myvault.vault.usgovcloudapi.net/secrets/web",
        "https://localhost:8443/secrets/web",
        "  https://myvault.vault.azure.net/secrets/web?api-version=7.5  ",
    ] {
        found.push(extra.as_bytes().to_vec());
    }
    found
}

/// The content-type selector byte of the `secret_value` target.
fn content_type_selector(content_type: Option<&str>) -> u8 {
    match content_type {
        Some("application/x-pkcs12") => 1,
        Some("application/x-pem-file") => 2,
        Some(_) => 3,
        None => 0,
    }
}

fn with_selector(selector: u8, body: &[u8]) -> Vec<u8> {
    let mut input = vec![selector];
    input.extend_from_slice(body);
    input
}

/// The `value` and `contentType` of every recorded secret (and certificate-as-secret) response.
fn recorded_secret_values(recordings: &[serde_json::Value]) -> Vec<(String, Option<String>)> {
    entries(recordings)
        .filter_map(|e| {
            let body = &e["ResponseBody"];
            let value = body["value"].as_str()?;
            Some((
                value.to_owned(),
                body["contentType"].as_str().map(str::to_owned),
            ))
        })
        .collect()
}

fn compat_files(dir: &Path, extensions: &[&str]) -> anyhow::Result<Vec<Vec<u8>>> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read {}", dir.display()))?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    paths.retain(|p| {
        p.extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| extensions.contains(&e))
    });
    paths.sort();
    paths
        .iter()
        .map(|p| std::fs::read(p).with_context(|| format!("{}", p.display())))
        .collect()
}

fn secret_value_seeds(
    recordings: &[serde_json::Value],
    compat: &Path,
) -> anyhow::Result<Vec<Vec<u8>>> {
    let mut seeds: Vec<Vec<u8>> = recorded_secret_values(recordings)
        .into_iter()
        .map(|(value, content_type)| {
            with_selector(
                content_type_selector(content_type.as_deref()),
                value.as_bytes(),
            )
        })
        .collect();
    for pem in compat_files(compat, &["pem"])? {
        seeds.push(with_selector(2, &pem));
    }
    Ok(seeds)
}

fn pfx_seeds(recordings: &[serde_json::Value], compat: &Path) -> anyhow::Result<Vec<Vec<u8>>> {
    use base64::Engine as _;
    let mut seeds = Vec::new();
    for (value, content_type) in recorded_secret_values(recordings) {
        if content_type.as_deref() == Some("application/x-pkcs12") {
            if let Ok(der) = base64::engine::general_purpose::STANDARD.decode(value.trim()) {
                seeds.push(with_selector(0, &der));
            }
        }
    }
    // Selector 1 opens with the compatibility files' password.
    for der in compat_files(compat, &["pfx", "p12"])? {
        seeds.push(with_selector(1, &der));
    }
    Ok(seeds)
}

fn challenge_seeds(recordings: &[serde_json::Value]) -> Vec<Vec<u8>> {
    let mut seeds: Vec<Vec<u8>> = entries(recordings)
        .filter_map(|e| e["ResponseHeaders"]["WWW-Authenticate"].as_str())
        .map(|s| s.as_bytes().to_vec())
        .collect();
    for extra in [
        "Bearer authorization=\"https://login.microsoftonline.com/72f988bf-86f1-41af-91ab-2d7cd011db47\", scope=\"https://vault.azure.net/.default\"",
        "Bearer authorization_uri=\"https://login.windows.net/tenant\", resource=\"https://vault.azure.net/\"",
        "Basic realm=\"x\"\nBearer resource=\"https://vault.azure.cn\"",
        "Bearer resource=https://vault.azure.net, authorization=https://login.windows.net/t",
        "Bearer",
    ] {
        seeds.push(extra.as_bytes().to_vec());
    }
    seeds
}

fn token_response_seeds() -> Vec<Vec<u8>> {
    let jwt =
        "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.eyJhdWQiOiJodHRwczovL3ZhdWx0LmF6dXJlLm5ldCJ9.c2ln";
    let bodies = [
        // IMDS: every number a string.
        (0, format!("{{\"access_token\":\"{jwt}\",\"refresh_token\":\"\",\"expires_in\":\"3599\",\"expires_on\":\"1506484173\",\"not_before\":\"1506480273\",\"resource\":\"https://vault.azure.net\",\"token_type\":\"Bearer\"}}")),
        // App Service 2019-08-01.
        (0, format!("{{\"access_token\":\"{jwt}\",\"expires_on\":\"1586984735\",\"resource\":\"https://vault.azure.net\",\"token_type\":\"Bearer\",\"client_id\":\"5E29463D-71DA-4FE0-8E69-999B57DB23B0\"}}")),
        // App Service 2017-09-01: a date.
        (0, format!("{{\"access_token\":\"{jwt}\",\"expires_on\":\"06/20/2019 02:57:58 +00:00\",\"token_type\":\"Bearer\"}}")),
        // Entra: numbers.
        (0, format!("{{\"token_type\":\"Bearer\",\"expires_in\":3599,\"ext_expires_in\":3599,\"access_token\":\"{jwt}\"}}")),
        // Errors.
        (2, "{\"error\":\"invalid_request\",\"error_description\":\"Identity not found\"}".to_owned()),
        (2, "{\"error\":\"invalid_scope\",\"error_description\":\"AADSTS70011: bad scope\",\"error_codes\":[70011]}".to_owned()),
        (7, "{\"error\":{\"code\":\"TooManyRequests\",\"message\":\"slow down\"}}".to_owned()),
        (8, "<html>Internal error</html>".to_owned()),
    ];
    bodies
        .into_iter()
        .map(|(selector, body)| with_selector(selector, body.as_bytes()))
        .collect()
}

/// Every ```toml block of the README, alone and after the first one.
fn config_seeds(root: &Path) -> anyhow::Result<Vec<Vec<u8>>> {
    let readme = std::fs::read_to_string(root.join("README.md"))?;
    let mut seeds = Vec::new();
    let mut block: Option<String> = None;
    for line in readme.lines() {
        match (&mut block, line.trim_end()) {
            (None, "```toml") => block = Some(String::new()),
            (Some(text), "```") => {
                seeds.push(text.as_bytes().to_vec());
                block = None;
            }
            (Some(text), line) => {
                text.push_str(line);
                text.push('\n');
            }
            (None, _) => {}
        }
    }
    let Some(first) = seeds.first().cloned() else {
        bail!("README.md has no ```toml block to seed the config target with");
    };
    // The later blocks are fragments: each also appended to the first, complete one.
    for fragment in seeds.clone().iter().skip(1) {
        let mut whole = first.clone();
        whole.extend_from_slice(fragment);
        seeds.push(whole);
    }
    Ok(seeds)
}

/// The first flight of real rustls clients: with and without SNI, with ALPN, TLS 1.2 only.
fn client_hello_seeds() -> anyhow::Result<Vec<Vec<u8>>> {
    use rustls::pki_types::ServerName;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut seeds = Vec::new();
    type Versions = &'static [&'static rustls::SupportedProtocolVersion];
    const TLS12_ONLY: Versions = &[&rustls::version::TLS12];
    let variants: [(Versions, &[&[u8]], &str); 4] = [
        (
            rustls::ALL_VERSIONS,
            &[b"h2", b"http/1.1"],
            "www.example.com",
        ),
        (rustls::ALL_VERSIONS, &[], "localhost"),
        (TLS12_ONLY, &[b"http/1.1"], "api.example.com"),
        (rustls::ALL_VERSIONS, &[], "127.0.0.1"),
    ];
    for (versions, alpn, name) in variants {
        let mut config = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(versions)?
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        let server_name = ServerName::try_from(name.to_owned())?;
        let mut connection = rustls::ClientConnection::new(Arc::new(config), server_name)?;
        let mut hello = Vec::new();
        connection.write_tls(&mut hello)?;
        seeds.push(hello);
    }
    Ok(seeds)
}
