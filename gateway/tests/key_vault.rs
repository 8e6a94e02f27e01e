//! Key Vault certificates end to end: the vault emulator over real HTTPS with its IMDS-style token
//! endpoint, the gateway binary, and a real TLS client.

mod common;

use std::path::Path;

use common::*;
use vault_emulator::{Emulator, EmulatorConfig, EmulatorHandle};

struct Vault {
    emulator: EmulatorHandle,
    _dir: tempfile::TempDir,
}

fn start_vault() -> Vault {
    let dir = tempfile::tempdir().unwrap();
    let emulator = Emulator::start(EmulatorConfig::new(dir.path().join("emulator"))).unwrap();
    Vault {
        emulator,
        _dir: dir,
    }
}

/// `host:port` of the emulator's vault URL.
fn vault_host(vault: &Vault) -> String {
    let url = &vault.emulator.info().vault_url;
    url.trim_start_matches("https://")
        .trim_end_matches('/')
        .to_owned()
}

/// A gateway config whose `web` listener reads `secret` from the emulator with its all-access identity.
fn key_vault_config(
    dir: &Path,
    vault: &Vault,
    secret_uri: &str,
    client_id: &str,
) -> std::path::PathBuf {
    let info = vault.emulator.info();
    let backend = EchoBackend::start();
    let config = write_config(
        dir,
        &format!(r#"{{ key_vault_secret_id = "{secret_uri}" }}"#),
        backend.addr,
    );
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(&format!(
        r#"
[identity]
kind = "managed-identity"
endpoint = "{}"
client_id = "{client_id}"

[vault]
ca_file = "{}"
allowed_hosts = ["{}"]
"#,
        info.identity_endpoint,
        info.ca_file.display(),
        vault_host(vault)
    ));
    std::fs::write(&config, text).unwrap();
    config
}

fn secret_uri(vault: &Vault, name: &str) -> String {
    format!("{}secrets/{name}", vault.emulator.info().vault_url)
}

#[test]
fn a_listener_serves_the_certificate_read_from_key_vault_and_restores_it_without_the_vault() {
    let vault = start_vault();
    let pki = Pki::new();
    let leaf = pki.leaf(&["localhost"]);
    let version = vault
        .emulator
        .import_certificate("site", leaf.bundle_pem(&pki).as_bytes(), None)
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let client_id = vault.emulator.info().client_id.clone();
    let config = key_vault_config(dir.path(), &vault, &secret_uri(&vault, "site"), &client_id);

    let gateway = Gateway::start(&config, &[]);
    let exchange = https_get(gateway.addr("web"), "localhost", &pki.ca_pem, "/");
    assert_eq!(
        exchange.leaf, leaf.thumbprint,
        "the Key Vault certificate is served"
    );
    assert_eq!(exchange.status(), 200);
    gateway.kill();

    let state = dir.path().join("state");
    let events = audit_json(&state, &[]);
    assert_eq!(
        kinds(&events),
        [
            "listener_configured",
            "certificate_fetched",
            "certificate_installed"
        ]
    );
    assert_eq!(events[1]["version"], version.as_str());
    assert_eq!(events[2]["version"], version.as_str());
    assert_eq!(events[2]["trigger"], "startup");
    assert_eq!(events[2]["thumbprint"], leaf.thumbprint.to_string());

    // With Key Vault gone, a restart serves the last installed certificate from the log.
    vault.emulator.stop();
    let gateway = Gateway::start(&config, &[]);
    assert_eq!(
        served_leaf(gateway.addr("web"), "localhost", &pki.ca_pem),
        leaf.thumbprint
    );
    drop(gateway);
    let events = audit_json(&state, &[]);
    assert_eq!(kinds(&events)[3], "certificate_restored");
}

#[test]
fn gateway_fetch_describes_a_certificate_without_its_key() {
    let vault = start_vault();
    let pki = Pki::new();
    let leaf = pki.leaf(&["localhost", "www.example.test"]);
    let version = vault
        .emulator
        .import_certificate("site", leaf.bundle_pem(&pki).as_bytes(), None)
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let client_id = vault.emulator.info().client_id.clone();
    let uri = secret_uri(&vault, "site");
    let config = key_vault_config(dir.path(), &vault, &uri, &client_id);

    let (ok, stdout, stderr) =
        gateway_cli(&["fetch", "--config", config.to_str().unwrap(), &uri], &[]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains(&leaf.thumbprint.to_string()), "{stdout}");
    assert!(stdout.contains(&version), "{stdout}");
    assert!(stdout.contains("www.example.test"), "{stdout}");
    assert!(!stdout.contains("PRIVATE KEY"), "{stdout}");
    assert!(
        !dir.path().join("state").exists(),
        "fetch does not touch the event log"
    );
}

/// `gateway fetch` of `uri` fails with one line containing every one of `expected`.
#[track_caller]
fn fetch_fails(config: &Path, uri: &str, expected: &[&str]) {
    let (ok, _, stderr) = gateway_cli(&["fetch", "--config", config.to_str().unwrap(), uri], &[]);
    assert!(!ok, "fetch of {uri} should fail");
    let last = stderr.trim().lines().last().unwrap_or_default();
    assert!(!stderr.contains("panicked"), "{stderr}");
    for needle in expected {
        assert!(last.contains(needle), "`{last}` should contain `{needle}`");
    }
}

#[test]
fn each_configuration_error_says_what_to_do() {
    let vault = start_vault();
    let pki = Pki::new();
    vault
        .emulator
        .import_certificate(
            "site",
            pki.leaf(&["localhost"]).bundle_pem(&pki).as_bytes(),
            None,
        )
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let info = vault.emulator.info().clone();
    let uri = secret_uri(&vault, "site");

    // 404: a secret that does not exist.
    let config = key_vault_config(dir.path(), &vault, &uri, &info.client_id);
    fetch_fails(
        &config,
        &secret_uri(&vault, "missing"),
        &["missing", "not found"],
    );

    // A secret holding only a certificate: its key is not exportable.
    vault
        .emulator
        .set_secret("no-key", &pki.leaf(&["localhost"]).cert_pem)
        .unwrap();
    fetch_fails(
        &config,
        &secret_uri(&vault, "no-key"),
        &["non-exportable / HSM-protected keys are not supported"],
    );

    // 403 SecretDisabled.
    vault.emulator.set_secret_enabled("site", None, false);
    fetch_fails(&config, &uri, &["disabled"]);
    vault.emulator.set_secret_enabled("site", None, true);

    // 403 AccessDenied: an identity without an access policy.
    vault
        .emulator
        .add_identity("reader-without-rights", &[], &[]);
    let config = key_vault_config(dir.path(), &vault, &uri, "reader-without-rights");
    fetch_fails(&config, &uri, &["reader-without-rights", "get", "secret"]);

    // An identity the token endpoint does not know fails at once, naming it.
    let config = key_vault_config(dir.path(), &vault, &uri, "nobody-here");
    fetch_fails(&config, &uri, &["nobody-here", "not found"]);
}

#[test]
fn a_transient_vault_error_is_retried() {
    let vault = start_vault();
    let pki = Pki::new();
    let leaf = pki.leaf(&["localhost"]);
    vault
        .emulator
        .import_certificate("site", leaf.bundle_pem(&pki).as_bytes(), None)
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let client_id = vault.emulator.info().client_id.clone();
    let uri = secret_uri(&vault, "site");
    let config = key_vault_config(dir.path(), &vault, &uri, &client_id);
    vault.emulator.inject_fault(vault_emulator::Fault {
        path_prefix: "/secrets/".into(),
        kind: vault_emulator::FaultKind::Status(503),
        count: Some(1),
    });
    let (ok, stdout, stderr) =
        gateway_cli(&["fetch", "--config", config.to_str().unwrap(), &uri], &[]);
    assert!(ok, "one 503 is retried: {stderr}");
    assert!(stdout.contains(&leaf.thumbprint.to_string()), "{stdout}");
}
