//! The `disable-listener` failure policy: a configuration error takes only that listener out of
//! service, its handshakes are refused with `unrecognized_name` as Application Gateway does, and a
//! later successful check puts it back.

mod common;

use std::sync::Arc;

use common::*;
use vault_emulator::{Emulator, EmulatorConfig};

fn refresh(admin: std::net::SocketAddr, listener: &str) -> String {
    http_exchange(
        admin,
        &format!("POST /listeners/{listener}/refresh HTTP/1.1\r\nHost: admin\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"),
    )
}

/// The error a handshake for `server_name` ends with, if it fails.
fn handshake_error(
    addr: std::net::SocketAddr,
    server_name: &str,
    ca_pem: &str,
) -> Option<rustls::Error> {
    let config = client_config(ca_pem, &[]);
    let name = rustls_pki_types::ServerName::try_from(server_name.to_owned()).unwrap();
    let mut conn = rustls::ClientConnection::new(Arc::clone(&config), name).unwrap();
    let mut sock = std::net::TcpStream::connect(addr).unwrap();
    while conn.is_handshaking() {
        if let Err(err) = conn.complete_io(&mut sock) {
            return err
                .into_inner()
                .and_then(|inner| inner.downcast::<rustls::Error>().ok())
                .map(|e| *e)
                .or(Some(rustls::Error::General("connection failed".into())));
        }
    }
    None
}

#[test]
fn a_configuration_error_takes_only_that_listener_out_of_service_until_a_check_succeeds() {
    let dir = tempfile::tempdir().unwrap();
    let emulator = Emulator::start(EmulatorConfig::new(dir.path().join("emulator"))).unwrap();
    let info = emulator.info().clone();
    let pki = Pki::new();
    let vault_leaf = pki.leaf(&["vault.example.test"]);
    emulator
        .import_certificate("site", vault_leaf.bundle_pem(&pki).as_bytes(), None)
        .unwrap();
    emulator.add_identity("gateway-id", &["get"], &[]);
    let file_leaf = pki.leaf(&["file.example.test"]);
    std::fs::write(dir.path().join("file.pem"), file_leaf.bundle_pem(&pki)).unwrap();
    let backend = EchoBackend::start();
    let vault_host = info
        .vault_url
        .trim_start_matches("https://")
        .trim_end_matches('/');
    let config = dir.path().join("gateway.toml");
    std::fs::write(
        &config,
        format!(
            r#"[state]
dir = "state"
[admin]
bind = "127.0.0.1:0"
[identity]
kind = "managed-identity"
endpoint = "{identity}"
client_id = "gateway-id"
[vault]
ca_file = "{ca}"
allowed_hosts = ["{vault_host}"]
[rotation]
on_config_error = "disable-listener"

[[listener]]
name = "vault"
bind = "127.0.0.1:0"
protocol = "https"
hostnames = ["vault.example.test"]
certificate = {{ key_vault_secret_id = "{vault_url}secrets/site" }}

[[listener]]
name = "file"
bind = "127.0.0.1:0"
protocol = "https"
hostnames = ["file.example.test"]
certificate = {{ pem_file = "file.pem" }}

[[backend_pool]]
name = "app"
addresses = ["{backend}"]
[[rule]]
name = "vault"
listener = "vault"
backend_pool = "app"
[[rule]]
name = "file"
listener = "file"
backend_pool = "app"
"#,
            identity = info.identity_endpoint,
            ca = info.ca_file.display(),
            vault_url = info.vault_url,
            backend = backend.addr,
        ),
    )
    .unwrap();
    let gateway = Gateway::start(&config, &[]);
    let admin = gateway.admin.expect("admin address");
    let (vault_addr, file_addr) = (gateway.addr("vault"), gateway.addr("file"));
    assert_eq!(
        served_leaf(vault_addr, "vault.example.test", &pki.ca_pem),
        vault_leaf.thumbprint
    );

    // Access revoked: 403, a configuration error, and the policy takes the listener out.
    emulator.revoke_identity("gateway-id");
    let answer = refresh(admin, "vault");
    assert!(
        answer.contains(r#""outcome":"failed""#) && answer.contains(r#""class":"configuration""#),
        "{answer}"
    );
    assert_eq!(
        handshake_error(vault_addr, "vault.example.test", &pki.ca_pem),
        Some(rustls::Error::AlertReceived(
            rustls::AlertDescription::UnrecognisedName
        )),
        "handshakes for the listener out of service get unrecognized_name"
    );
    assert_eq!(
        served_leaf(file_addr, "file.example.test", &pki.ca_pem),
        file_leaf.thumbprint,
        "the other listener serves on"
    );
    // Readiness does not wait for a listener taken out on purpose (gateway/src/admin.rs
    // `readyz`); `/listeners` shows it disabled.
    let ready = http_exchange(
        admin,
        "GET /readyz HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n",
    );
    assert!(ready.starts_with("HTTP/1.1 200"), "{ready}");
    let listeners = http_exchange(
        admin,
        "GET /listeners HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n",
    );
    assert!(listeners.contains(r#""state":"disabled""#), "{listeners}");

    // Access back: the next check succeeds and puts the listener back with the same certificate.
    emulator.add_identity("gateway-id", &["get"], &[]);
    let answer = refresh(admin, "vault");
    assert!(answer.contains(r#""outcome":"unchanged""#), "{answer}");
    assert_eq!(
        served_leaf(vault_addr, "vault.example.test", &pki.ca_pem),
        vault_leaf.thumbprint
    );
    let ready = http_exchange(
        admin,
        "GET /readyz HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n",
    );
    assert!(ready.starts_with("HTTP/1.1 200"), "{ready}");
    drop(gateway);

    let kinds = kinds(&audit_json(
        &dir.path().join("state"),
        &["--listener", "vault"],
    ));
    let tail: Vec<&str> = kinds
        .iter()
        .map(String::as_str)
        .skip_while(|k| *k != "fetch_failed")
        .collect();
    assert_eq!(
        tail,
        ["fetch_failed", "listener_disabled", "listener_reenabled"]
    );
}
