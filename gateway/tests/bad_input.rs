//! Bad input gets a one-line error that names the input and what is wrong, a non-zero exit, and
//! never a panic; secrets never reach logs or the audit output.

mod common;

use std::path::Path;

use common::*;

fn cert_bundle_data(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../cert-bundle/tests/data")
        .join(name)
}

/// Runs `gateway check-config` (and `gateway run`) on `config` and expects both to fail with one
/// line containing every one of `expected`.
#[track_caller]
fn refused(config: &Path, envs: &[(&str, &str)], expected: &[&str]) {
    for command in ["check-config", "run"] {
        let (ok, _, stderr) = gateway_cli(&[command, "--config", config.to_str().unwrap()], envs);
        assert!(!ok, "`gateway {command}` should fail");
        assert!(
            !stderr.contains("panicked"),
            "`gateway {command}` panicked: {stderr}"
        );
        let last = stderr.trim().lines().last().unwrap_or_default();
        assert!(last.starts_with("error: "), "`gateway {command}`: {stderr}");
        for needle in expected {
            assert!(
                last.contains(needle),
                "`gateway {command}`: `{last}` should contain `{needle}`"
            );
        }
    }
}

fn config_with(dir: &Path, certificate: &str) -> std::path::PathBuf {
    write_config(dir, certificate, "127.0.0.1:9".parse().unwrap())
}

#[test]
fn malformed_toml_names_the_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("gateway.toml");
    std::fs::write(&config, "[state]\ndir = \"state\"\n[[listener]\nname = 1\n").unwrap();
    refused(&config, &[], &["gateway.toml:3:"]);
}

#[test]
fn an_unknown_key_is_named_with_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let config = config_with(dir.path(), r#"{ pem_file = "site.pem" }"#);
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("protocol = ", "protcol = \"x\"\nprotocol = ");
    std::fs::write(&config, text).unwrap();
    refused(
        &config,
        &[],
        &["gateway.toml:10:", "unknown field `protcol`"],
    );
}

#[test]
fn a_missing_config_file_is_named() {
    let dir = tempfile::tempdir().unwrap();
    refused(
        &dir.path().join("nope.toml"),
        &[],
        &["nope.toml", "No such file"],
    );
}

#[test]
fn a_missing_certificate_file_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let config = config_with(dir.path(), r#"{ pem_file = "absent.pem" }"#);
    refused(
        &config,
        &[],
        &["listener `web`", "absent.pem", "No such file"],
    );
}

#[test]
fn a_wrong_pfx_password_is_reported_without_the_password() {
    let dir = tempfile::tempdir().unwrap();
    let pfx = cert_bundle_data("openssl3-default.pfx");
    let config = config_with(
        dir.path(),
        &format!(
            r#"{{ pfx_file = "{}", password_env = "PFX_PW" }}"#,
            pfx.display()
        ),
    );
    refused(
        &config,
        &[("PFX_PW", "hunter2-wrong")],
        &["openssl3-default.pfx", "password"],
    );
    let (_, _, stderr) = gateway_cli(
        &["check-config", "--config", config.to_str().unwrap()],
        &[("PFX_PW", "hunter2-wrong")],
    );
    assert!(
        !stderr.contains("hunter2"),
        "the password is never printed: {stderr}"
    );
}

#[test]
fn an_unset_password_variable_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let pfx = cert_bundle_data("openssl3-default.pfx");
    let config = config_with(
        dir.path(),
        &format!(
            r#"{{ pfx_file = "{}", password_env = "NOT_SET_ANYWHERE" }}"#,
            pfx.display()
        ),
    );
    refused(&config, &[], &["NOT_SET_ANYWHERE", "not set"]);
}

#[test]
fn a_truncated_pfx_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(cert_bundle_data("openssl3-default.pfx")).unwrap();
    std::fs::write(dir.path().join("cut.pfx"), &bytes[..bytes.len() / 2]).unwrap();
    let config = config_with(
        dir.path(),
        r#"{ pfx_file = "cut.pfx", password_env = "PFX_PW" }"#,
    );
    refused(
        &config,
        &[("PFX_PW", "test-password")],
        &["cut.pfx", "PKCS#12"],
    );
}

#[test]
fn a_pem_without_a_certificate_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new();
    std::fs::write(
        dir.path().join("key-only.pem"),
        pki.leaf(&["localhost"]).key_pem,
    )
    .unwrap();
    let config = config_with(dir.path(), r#"{ pem_file = "key-only.pem" }"#);
    refused(&config, &[], &["key-only.pem", "no certificate"]);
}

#[test]
fn a_corrupted_event_log_is_named_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new();
    std::fs::write(
        dir.path().join("site.pem"),
        pki.leaf(&["localhost"]).bundle_pem(&pki),
    )
    .unwrap();
    let config = config_with(dir.path(), r#"{ pem_file = "site.pem" }"#);
    let state = dir.path().join("state");
    std::fs::create_dir_all(&state).unwrap();
    let garbage = b"this is not a redb file, it is a damaged one".repeat(200);
    std::fs::write(state.join("events.redb"), &garbage).unwrap();

    let (ok, _, stderr) = gateway_cli(&["run", "--config", config.to_str().unwrap()], &[]);
    assert!(!ok);
    assert!(!stderr.contains("panicked"), "{stderr}");
    let last = stderr.trim().lines().last().unwrap();
    assert!(last.contains("events.redb"), "names the file: {last}");
    let (ok, _, stderr) = gateway_cli(&["audit", "--state", state.to_str().unwrap()], &[]);
    assert!(!ok);
    assert!(stderr.contains("events.redb"), "{stderr}");
    assert_eq!(
        std::fs::read(state.join("events.redb")).unwrap(),
        garbage,
        "the damaged file is not overwritten"
    );
}

#[test]
fn no_key_pfx_or_password_bytes_reach_logs_or_audit_output() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let pfx_path = cert_bundle_data("openssl3-default.pfx");
    let pfx = std::fs::read(&pfx_path).unwrap();
    let password = "test-password";
    let bundle = cert_bundle::CertificateBundle::from_pfx(&pfx, Some(password)).unwrap();
    let key_der = bundle.private_key().secret_der().to_vec();
    let backend = EchoBackend::start();
    let config = write_config(
        dir.path(),
        &format!(
            r#"{{ pfx_file = "{}", password_env = "SITE_PFX_PASSWORD" }}"#,
            pfx_path.display()
        ),
        backend.addr,
    );

    let gateway = Gateway::start(
        &config,
        &[("SITE_PFX_PASSWORD", password), ("RUST_LOG", "trace")],
    );
    let ca = std::fs::read_to_string(cert_bundle_data("root-ca.pem")).unwrap();
    assert_eq!(
        https_get(gateway.addr("web"), "localhost", &ca, "/").status(),
        200
    );
    let mut output = gateway.kill();
    let state_arg = state.to_str().unwrap();
    for args in [
        vec!["audit", "--state", state_arg],
        vec!["audit", "--state", state_arg, "--json"],
        vec!["audit", "--state", state_arg, "--verify"],
    ] {
        let (ok, stdout, stderr) = gateway_cli(&args, &[]);
        assert!(ok, "{stderr}");
        output.push_str(&stdout);
        output.push_str(&stderr);
    }
    assert!(
        output.contains("certificate_installed"),
        "the outputs were captured: {output}"
    );

    assert!(!output.contains(password), "the password leaked");
    for secret in [&key_der[..], &pfx[..]] {
        // Any 24-byte window of the secret, in the encodings a log line could carry it.
        for window in secret.chunks(24).filter(|w| w.len() == 24).take(8) {
            assert!(
                !output.contains(&hex::encode(window)),
                "secret bytes leaked as hex"
            );
            assert!(
                !output.contains(&hex::encode_upper(window)),
                "secret bytes leaked as HEX"
            );
            assert!(
                !output.contains(&base64_of(window)),
                "secret bytes leaked as base64"
            );
            assert!(
                !output.contains(&format!("{:?}", &window[..12])),
                "secret bytes leaked as Debug"
            );
        }
    }
}

/// Standard base64 of `bytes` without padding (a window inside a longer base64 text starts on a
/// 3-byte boundary only sometimes, so the test windows start at multiples of 24).
fn base64_of(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n =
            chunk.iter().fold(0u32, |acc, b| (acc << 8) | u32::from(*b)) << (8 * (3 - chunk.len()));
        for i in 0..=chunk.len() {
            out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}
