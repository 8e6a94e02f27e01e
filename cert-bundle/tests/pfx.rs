//! PKCS#12 files as OpenSSL 3 writes them, in each encoding the gateway must accept.

mod common;

use cert_bundle::{BundleError, CertificateBundle, Origin, PasswordCheck, Thumbprint};
use common::*;
use rustls_pki_types::PrivateKeyDer;

fn open(name: &str, password: Option<&str>) -> Result<CertificateBundle, BundleError> {
    CertificateBundle::from_pfx(&data(name), password)
}

/// The RSA leaf with its key, chain ordered leaf → intermediate → root.
fn assert_rsa_bundle(name: &str, bundle: &CertificateBundle) {
    assert_eq!(bundle.thumbprint(), Thumbprint::of(&rsa_leaf()), "{name}");
    assert_eq!(
        bundle.thumbprint(),
        openssl_fingerprint("leaf-rsa.sha256.txt"),
        "{name}"
    );
    assert_eq!(bundle.leaf(), &rsa_leaf(), "{name}");
    assert_eq!(
        bundle.chain(),
        &[rsa_leaf(), intermediate(), root()],
        "{name}"
    );
    let PrivateKeyDer::Pkcs8(key) = bundle.private_key() else {
        panic!("{name}: PFX keys come out as PKCS#8");
    };
    assert_eq!(
        key.secret_pkcs8_der(),
        rsa_key_pkcs8().secret_pkcs8_der(),
        "{name}"
    );
}

#[test]
fn opens_openssl3_default_pbes2_aes256_with_sha256_mac() {
    let bundle = open("openssl3-default.pfx", Some(PASSWORD)).unwrap();
    assert_rsa_bundle("openssl3-default.pfx", &bundle);
}

#[test]
fn opens_openssl_legacy_rc2_40_and_3des_with_sha1_mac() {
    let bundle = open("legacy.pfx", Some(PASSWORD)).unwrap();
    assert_rsa_bundle("legacy.pfx", &bundle);
}

#[test]
fn opens_every_other_cipher_and_mac_digest() {
    for name in [
        "aes128-sha1mac.pfx",
        "aes192-sha384mac.pfx",
        "aes256-sha512mac.pfx",
        "rc2-128-2des.pfx",
    ] {
        let bundle = open(name, Some(PASSWORD)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_rsa_bundle(name, &bundle);
    }
}

#[test]
fn opens_an_empty_password_pfx_with_none_and_with_empty_string() {
    for password in [None, Some("")] {
        let bundle = open("empty-password.pfx", password).unwrap();
        assert_rsa_bundle("empty-password.pfx", &bundle);
    }
}

#[test]
fn opens_an_unencrypted_pfx_without_mac() {
    let bundle = open("unencrypted-nomac.pfx", None).unwrap();
    assert_rsa_bundle("unencrypted-nomac.pfx", &bundle);
}

#[test]
fn opens_an_ec_key_next_to_unencrypted_certificates() {
    let bundle = open("ec.pfx", Some(PASSWORD)).unwrap();
    assert_eq!(bundle.thumbprint(), Thumbprint::of(&ec_leaf()));
    assert_eq!(
        bundle.thumbprint(),
        openssl_fingerprint("leaf-ec.sha256.txt")
    );
    assert_eq!(bundle.chain(), &[ec_leaf(), intermediate(), root()]);
}

#[test]
fn the_local_key_id_decides_the_leaf_over_the_issuer_heuristic() {
    // The key here is the intermediate CA's; the "localhost" certificate issued nothing but is
    // not the key's certificate, so it must not become the leaf.
    let bundle = open("ca-key-with-issued-leaf.pfx", Some(PASSWORD)).unwrap();
    assert_eq!(bundle.leaf(), &intermediate());
    assert_eq!(bundle.chain(), &[intermediate(), root(), rsa_leaf()]);
}

#[test]
fn a_wrong_password_fails_the_mac_check() {
    for name in ["openssl3-default.pfx", "legacy.pfx"] {
        let err = open(name, Some("not-the-password")).unwrap_err();
        assert!(
            matches!(
                err,
                BundleError::WrongPassword {
                    check: PasswordCheck::Mac,
                    empty_password_tried: false
                }
            ),
            "{name}: {err:?}"
        );
        assert!(err.to_string().contains("wrong password"), "{err}");
    }
}

#[test]
fn no_password_on_a_protected_pfx_says_the_empty_password_was_tried() {
    let err = open("openssl3-default.pfx", None).unwrap_err();
    assert!(matches!(
        err,
        BundleError::WrongPassword {
            empty_password_tried: true,
            ..
        }
    ));
    let message = err.to_string();
    assert!(message.contains("wrong password"), "{message}");
    assert!(message.contains("empty password"), "{message}");
}

#[test]
fn a_truncated_pfx_is_malformed_pkcs12() {
    let pfx = data("openssl3-default.pfx");
    let err = CertificateBundle::from_pfx(&pfx[..pfx.len() / 2], Some(PASSWORD)).unwrap_err();
    assert!(matches!(err, BundleError::MalformedPfx { .. }), "{err:?}");
    let message = err.to_string();
    assert!(message.contains("PKCS#12"), "{message}");
    assert!(message.contains("truncated"), "{message}");
}

#[test]
fn pem_text_is_not_a_pfx() {
    let err = CertificateBundle::from_pfx(&data("bundle-rsa-pkcs8.pem"), None).unwrap_err();
    assert!(matches!(err, BundleError::MalformedPfx { .. }), "{err:?}");
    assert!(
        err.to_string().starts_with("not a valid PKCS#12 file"),
        "{err}"
    );
}

#[test]
fn a_corrupted_byte_fails_the_mac_rather_than_decoding_garbage() {
    let mut pfx = data("legacy.pfx");
    // Inside the certificates' ciphertext, well away from any length field.
    let middle = pfx.len() / 2;
    pfx[middle] ^= 0x01;
    let err = CertificateBundle::from_pfx(&pfx, Some(PASSWORD)).unwrap_err();
    assert!(
        matches!(
            err,
            BundleError::WrongPassword {
                check: PasswordCheck::Mac,
                ..
            } | BundleError::MalformedPfx { .. }
        ),
        "{err:?}"
    );
}

#[test]
fn a_pfx_without_a_key_names_non_exportable_keys() {
    let err = open("no-key.pfx", Some(PASSWORD)).unwrap_err();
    assert!(matches!(
        err,
        BundleError::NoPrivateKey {
            origin: Origin::Pkcs12
        }
    ));
    assert!(err.to_string().contains("non-exportable"), "{err}");
}
