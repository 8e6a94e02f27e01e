//! Secrets exactly as real Key Vault returned them (recorded by the Azure SDK team).

mod common;

use cert_bundle::{BundleError, CertificateBundle, Thumbprint};
use common::*;
use rustls_pki_types::PrivateKeyDer;
use sha1::{Digest, Sha1};
use x509_parser::public_key::PublicKey;

/// Subject common name and RSA modulus size of a certificate.
fn describe(der: &[u8]) -> (String, usize) {
    let (_, cert) = x509_parser::parse_x509_certificate(der).unwrap();
    let cn = cert
        .subject()
        .iter_common_name()
        .next()
        .unwrap()
        .as_str()
        .unwrap()
        .to_owned();
    let PublicKey::RSA(rsa) = cert.public_key().parsed().unwrap() else {
        panic!("Key Vault's default policy makes RSA keys");
    };
    (cn, rsa.key_size())
}

#[test]
fn key_vaults_own_pfx_opens_with_no_password_and_with_empty_string() {
    let pfx = key_vault_pfx();
    let recording = recording(PKCS12_RECORDING);
    let cer = recorded_cer(&recording);
    for password in [None, Some("")] {
        let bundle = CertificateBundle::from_pfx(&pfx, password)
            .unwrap_or_else(|e| panic!("password {password:?}: {e}"));
        assert_eq!(bundle.chain().len(), 1);
        assert_eq!(describe(bundle.leaf()), ("MyCert".to_owned(), 2048));
        // The certificate inside the secret is the one the certificates endpoint returned.
        assert_eq!(bundle.leaf().as_ref(), cer.as_slice());
        assert_eq!(bundle.thumbprint(), Thumbprint::of(&cer));
        assert!(matches!(bundle.private_key(), PrivateKeyDer::Pkcs8(_)));
    }
}

#[test]
fn key_vaults_x5t_is_the_sha1_of_the_decoded_leaf() {
    let recording = recording(PKCS12_RECORDING);
    let x5t = recording["Entries"]
        .as_array()
        .unwrap()
        .iter()
        .find_map(|e| e["ResponseBody"]["x5t"].as_str())
        .unwrap()
        .to_owned();
    let bundle = CertificateBundle::from_pfx(&key_vault_pfx(), None).unwrap();
    let sha1 = Sha1::digest(bundle.leaf());
    use base64::Engine as _;
    assert_eq!(
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha1),
        x5t
    );
}

#[test]
fn key_vaults_pfx_with_a_password_it_does_not_have_is_a_wrong_password() {
    let err = CertificateBundle::from_pfx(&key_vault_pfx(), Some("secret")).unwrap_err();
    assert!(matches!(err, BundleError::WrongPassword { .. }), "{err:?}");
}

#[test]
fn key_vaults_pem_secret_opens() {
    let recording = recording(PEM_RECORDING);
    let value = secret_value(&recording, "application/x-pem-file");
    let bundle = CertificateBundle::from_pem(value.as_bytes()).unwrap();
    assert_eq!(bundle.chain().len(), 1);
    assert_eq!(describe(bundle.leaf()), ("MyCert".to_owned(), 2048));
    assert_eq!(
        bundle.thumbprint(),
        Thumbprint::of(&recorded_cer(&recording))
    );
    assert!(matches!(bundle.private_key(), PrivateKeyDer::Pkcs8(_)));
}
