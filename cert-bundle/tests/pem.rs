//! PEM bundles, and bundles built from parts.

mod common;

use cert_bundle::{BundleError, CertificateBundle, Origin, Thumbprint};
use common::*;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

fn open(name: &str) -> Result<CertificateBundle, BundleError> {
    CertificateBundle::from_pem(&data(name))
}

fn pem_of(names: &[&str]) -> Vec<u8> {
    names.iter().flat_map(|name| data(name)).collect()
}

#[test]
fn pkcs8_bundle_opens_leaf_first() {
    let bundle = open("bundle-rsa-pkcs8.pem").unwrap();
    assert_eq!(bundle.thumbprint(), Thumbprint::of(&rsa_leaf()));
    assert_eq!(
        bundle.thumbprint(),
        openssl_fingerprint("leaf-rsa.sha256.txt")
    );
    assert_eq!(bundle.chain(), &[rsa_leaf(), intermediate(), root()]);
    let PrivateKeyDer::Pkcs8(key) = bundle.private_key() else {
        panic!("expected the PKCS#8 key");
    };
    assert_eq!(key.secret_pkcs8_der(), rsa_key_pkcs8().secret_pkcs8_der());
}

#[test]
fn pkcs1_rsa_key_is_kept_as_pkcs1() {
    let bundle = open("bundle-rsa-pkcs1.pem").unwrap();
    assert_eq!(bundle.thumbprint(), Thumbprint::of(&rsa_leaf()));
    assert_eq!(bundle.chain(), &[rsa_leaf(), intermediate()]);
    assert!(matches!(bundle.private_key(), PrivateKeyDer::Pkcs1(_)));
}

#[test]
fn sec1_ec_key_is_kept_as_sec1() {
    let bundle = open("bundle-ec-sec1.pem").unwrap();
    assert_eq!(bundle.thumbprint(), Thumbprint::of(&ec_leaf()));
    assert_eq!(
        bundle.thumbprint(),
        openssl_fingerprint("leaf-ec.sha256.txt")
    );
    assert_eq!(bundle.chain(), &[ec_leaf(), intermediate(), root()]);
    assert!(matches!(bundle.private_key(), PrivateKeyDer::Sec1(_)));
}

#[test]
fn a_chain_in_reverse_order_comes_out_leaf_first() {
    let bundle = open("bundle-rsa-reversed.pem").unwrap();
    assert_eq!(bundle.chain(), &[rsa_leaf(), intermediate(), root()]);
}

#[test]
fn duplicates_are_dropped_and_unrelated_certificates_go_last() {
    // The EC leaf shares the RSA leaf's issuer but is nobody's issuer either: a second leaf
    // candidate. The first one in the file wins; the other is a leftover.
    let pem = pem_of(&[
        "root-ca.pem",
        "leaf-rsa.pem",
        "intermediate-ca.pem",
        "leaf-ec.pem",
        "leaf-rsa.pem",
        "leaf-rsa.key.pem",
    ]);
    let bundle = CertificateBundle::from_pem(&pem).unwrap();
    assert_eq!(
        bundle.chain(),
        &[rsa_leaf(), intermediate(), root(), ec_leaf()]
    );
}

#[test]
fn no_certificate_is_no_certificate() {
    let err = open("leaf-rsa.key.pem").unwrap_err();
    assert!(
        matches!(
            err,
            BundleError::NoCertificate {
                origin: Origin::Pem
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("no certificate"), "{err}");
}

#[test]
fn no_private_key_is_no_private_key() {
    let err =
        CertificateBundle::from_pem(&pem_of(&["leaf-rsa.pem", "intermediate-ca.pem"])).unwrap_err();
    assert!(
        matches!(
            err,
            BundleError::NoPrivateKey {
                origin: Origin::Pem
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("no private key"), "{err}");
}

#[test]
fn two_private_keys_are_refused() {
    let err =
        CertificateBundle::from_pem(&pem_of(&["bundle-rsa-pkcs8.pem", "bundle-rsa-pkcs1.pem"]))
            .unwrap_err();
    assert!(
        matches!(
            err,
            BundleError::MultiplePrivateKeys {
                origin: Origin::Pem,
                count: 2
            }
        ),
        "{err:?}"
    );
}

#[test]
fn an_encrypted_key_is_named_as_such() {
    let err = CertificateBundle::from_pem(&pem_of(&["leaf-rsa.pem", "leaf-rsa.key.encrypted.pem"]))
        .unwrap_err();
    assert!(matches!(err, BundleError::EncryptedPemKey), "{err:?}");
}

#[test]
fn bad_base64_is_malformed_pem() {
    let mut pem = data("bundle-rsa-pkcs8.pem");
    let body = pem.iter().position(|&b| b == b'\n').unwrap() + 5;
    pem[body] = b'!';
    let err = CertificateBundle::from_pem(&pem).unwrap_err();
    assert!(matches!(err, BundleError::MalformedPem { .. }), "{err:?}");
}

#[test]
fn a_missing_end_line_is_malformed_pem() {
    let pem = data("leaf-rsa.pem");
    let text = String::from_utf8(pem)
        .unwrap()
        .replace("-----END CERTIFICATE-----", "");
    let err = CertificateBundle::from_pem(text.as_bytes()).unwrap_err();
    assert!(matches!(err, BundleError::MalformedPem { .. }), "{err:?}");
    assert!(err.to_string().contains("END"), "{err}");
}

#[test]
fn text_without_pem_sections_is_malformed_pem() {
    let err = CertificateBundle::from_pem(b"hello").unwrap_err();
    assert!(matches!(err, BundleError::MalformedPem { .. }), "{err:?}");
}

#[test]
fn a_broken_certificate_is_named_by_position() {
    let mut pem = b"-----BEGIN CERTIFICATE-----\nMAMCAQE=\n-----END CERTIFICATE-----\n".to_vec();
    pem.splice(0..0, data("leaf-rsa.pem"));
    pem.extend(data("leaf-rsa.key.pem"));
    let err = CertificateBundle::from_pem(&pem).unwrap_err();
    assert!(
        matches!(
            err,
            BundleError::MalformedCertificate {
                origin: Origin::Pem,
                index: 2,
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn a_broken_pkcs8_key_is_malformed_private_key() {
    let mut pem = data("leaf-rsa.pem");
    pem.extend_from_slice(b"-----BEGIN PRIVATE KEY-----\nMAMCAQE=\n-----END PRIVATE KEY-----\n");
    let err = CertificateBundle::from_pem(&pem).unwrap_err();
    assert!(
        matches!(
            err,
            BundleError::MalformedPrivateKey {
                origin: Origin::Pem,
                format: "PKCS#8",
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn new_normalises_the_chain_like_pem() {
    let key = PrivateKeyDer::Pkcs8(rsa_key_pkcs8());
    let bundle = CertificateBundle::new(vec![root(), intermediate(), rsa_leaf()], key).unwrap();
    assert_eq!(bundle.chain(), &[rsa_leaf(), intermediate(), root()]);
}

#[test]
fn new_with_rcgen_certificates() {
    // Certificates from another encoder than OpenSSL, with an issuer name rcgen writes itself.
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "rcgen CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let leaf = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .signed_by(&leaf_key, &ca, &ca_key)
        .unwrap();

    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der()));
    let chain = vec![ca.der().clone(), leaf.der().clone()];
    let bundle = CertificateBundle::new(chain, key).unwrap();
    assert_eq!(bundle.leaf(), leaf.der());
    assert_eq!(bundle.chain(), &[leaf.der().clone(), ca.der().clone()]);
}

#[test]
fn new_refuses_an_empty_chain() {
    let err =
        CertificateBundle::new(Vec::new(), PrivateKeyDer::Pkcs8(rsa_key_pkcs8())).unwrap_err();
    assert!(
        matches!(
            err,
            BundleError::NoCertificate {
                origin: Origin::Parts
            }
        ),
        "{err:?}"
    );
}

#[test]
fn new_refuses_a_certificate_that_is_not_x509() {
    let chain = vec![
        rsa_leaf(),
        CertificateDer::from(vec![0x30, 0x03, 0x02, 0x01, 0x01]),
    ];
    let err = CertificateBundle::new(chain, PrivateKeyDer::Pkcs8(rsa_key_pkcs8())).unwrap_err();
    assert!(
        matches!(err, BundleError::MalformedCertificate { index: 2, .. }),
        "{err:?}"
    );
}

#[test]
fn clone_and_into_parts_keep_everything() {
    let bundle = open("bundle-ec-sec1.pem").unwrap();
    let copy = bundle.clone();
    assert_eq!(copy.chain(), bundle.chain());
    assert_eq!(copy.private_key(), bundle.private_key());
    let thumbprint = bundle.thumbprint();
    let (chain, key) = bundle.into_parts();
    assert_eq!(Thumbprint::of(&chain[0]), thumbprint);
    assert_eq!(&key, copy.private_key());
}
