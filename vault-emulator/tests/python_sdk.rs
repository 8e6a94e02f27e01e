//! Fidelity: the official Azure SDK for Python (azure-identity, azure-keyvault-certificates,
//! azure-keyvault-secrets, cryptography) runs `tests/python/scenario.py` against the emulator.
//!
//! The interpreter is `$GATEWAY_PYTHON` (CI's `.ci/run` makes a venv and exports it), else
//! `target/python-venv/bin/python`. Without a usable one the test prints a loud skip notice,
//! except under `CI=true`, where it fails.

use std::path::{Path, PathBuf};
use std::process::Command;

use vault_emulator::{Emulator, EmulatorConfig, INFO_FILE};

const MODULES: &str =
    "import azure.identity, azure.keyvault.certificates, azure.keyvault.secrets, cryptography";

fn python() -> Option<PathBuf> {
    let candidate = match std::env::var_os("GATEWAY_PYTHON") {
        Some(path) => PathBuf::from(path),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/python-venv/bin/python"),
    };
    let usable = Command::new(&candidate)
        .args(["-c", MODULES])
        .output()
        .is_ok_and(|out| out.status.success());
    usable.then_some(candidate)
}

fn on_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0")
}

#[test]
fn azure_python_sdk_scenario_passes() {
    let Some(python) = python() else {
        let message = "the Azure Python SDK is not available: set GATEWAY_PYTHON to a python with \
                       azure-identity, azure-keyvault-certificates, azure-keyvault-secrets and \
                       cryptography, or create target/python-venv";
        if on_ci() {
            panic!("{message}");
        }
        eprintln!("\n!!!!!!!!!! SKIPPED azure_python_sdk_scenario_passes: {message} !!!!!!!!!!\n");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut config = EmulatorConfig::new(dir.path());
    config.pending_delay = std::time::Duration::from_millis(500);
    let emulator = Emulator::start(config).unwrap();
    let no_access = "99999999-8888-7777-6666-555555555555";
    emulator.add_identity(no_access, &[], &[]);
    let info_path = dir.path().join(INFO_FILE);
    emulator.write_info(&info_path).unwrap();

    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/scenario.py");
    let output = Command::new(&python)
        .arg(&script)
        .arg(&info_path)
        .arg(no_access)
        .env_remove("AZURE_CLIENT_ID")
        .env_remove("AZURE_TENANT_ID")
        .env_remove("AZURE_FEDERATED_TOKEN_FILE")
        .output()
        .expect("python runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}");
    assert!(
        output.status.success(),
        "scenario failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    for step in [
        "ok: import password-protected PFX",
        "ok: imported certificate's secret is a password-less PFX",
        "ok: create self-signed certificate and poll the pending operation to completion",
        "ok: created certificate's secret opens with pkcs12 password None",
        "ok: PEM secret: unencrypted PKCS#8 key then certificate",
        "ok: list certificate and secret versions",
        "ok: disabled secret is 403 SecretDisabled",
        "ok: 404 SecretNotFound and CertificateNotFound",
        "ok: identity without an access policy gets 403 AccessDenied",
        "ok: unsupported api-version is 400 BadParameter",
        "ok: App Service managed identity (IDENTITY_ENDPOINT/IDENTITY_HEADER)",
        "SCENARIO PASSED",
    ] {
        assert!(stdout.contains(step), "missing step '{step}' in:\n{stdout}");
    }
    emulator.stop();
}
