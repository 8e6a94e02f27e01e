//! Shared helpers: the checked-in test PKI (see `data/regenerate.sh`) and the recorded Key Vault
//! traffic in `../shared/fixtures/keyvault-recordings/`.
#![allow(dead_code)] // each test binary uses its own subset

use std::path::{Path, PathBuf};

use base64::Engine as _;
use cert_bundle::Thumbprint;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivatePkcs8KeyDer};

pub const PASSWORD: &str = "test-password";

pub fn data_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

pub fn data(name: &str) -> Vec<u8> {
    let path = data_path(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The single certificate of a PEM file in `tests/data`.
pub fn cert(name: &str) -> CertificateDer<'static> {
    CertificateDer::from_pem_slice(&data(name)).unwrap()
}

pub fn rsa_leaf() -> CertificateDer<'static> {
    cert("leaf-rsa.pem")
}

pub fn ec_leaf() -> CertificateDer<'static> {
    cert("leaf-ec.pem")
}

pub fn intermediate() -> CertificateDer<'static> {
    cert("intermediate-ca.pem")
}

pub fn root() -> CertificateDer<'static> {
    cert("root-ca.pem")
}

pub fn rsa_key_pkcs8() -> PrivatePkcs8KeyDer<'static> {
    PrivatePkcs8KeyDer::from_pem_slice(&data("leaf-rsa.key.pem")).unwrap()
}

/// The thumbprint `openssl x509 -fingerprint -sha256` printed when the PKI was generated.
pub fn openssl_fingerprint(name: &str) -> Thumbprint {
    let text = String::from_utf8(data(name)).unwrap();
    let (_, hex) = text.trim().split_once('=').unwrap();
    Thumbprint::from_hex(hex).unwrap()
}

pub fn recording(name: &str) -> serde_json::Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/fixtures/keyvault-recordings")
        .join(name);
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_slice(&bytes).unwrap()
}

fn response_bodies(recording: &serde_json::Value) -> impl Iterator<Item = &serde_json::Value> {
    recording["Entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| &entry["ResponseBody"])
}

/// The `value` of the recorded secret with this content type.
pub fn secret_value(recording: &serde_json::Value, content_type: &str) -> String {
    response_bodies(recording)
        .find(|body| body["contentType"] == content_type)
        .and_then(|body| body["value"].as_str())
        .unwrap_or_else(|| panic!("no {content_type} secret in the recording"))
        .to_owned()
}

/// The certificate Key Vault returned (`cer`, base64 DER) in the same recording.
pub fn recorded_cer(recording: &serde_json::Value) -> Vec<u8> {
    let cer = response_bodies(recording)
        .filter_map(|body| body["cer"].as_str())
        .last()
        .expect("no certificate bundle with `cer` in the recording");
    base64::engine::general_purpose::STANDARD
        .decode(cer)
        .unwrap()
}

pub const PKCS12_RECORDING: &str = "recording_can_get_a_certificates_secret_in_pkcs_12_format.json";
pub const PEM_RECORDING: &str = "recording_can_get_a_certificates_secret_in_pem_format.json";

pub fn key_vault_pfx() -> Vec<u8> {
    let value = secret_value(&recording(PKCS12_RECORDING), "application/x-pkcs12");
    base64::engine::general_purpose::STANDARD
        .decode(value)
        .unwrap()
}
