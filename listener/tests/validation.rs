//! The validation gate: what a certificate must be to be served, and what the refusal says.

mod common;

use std::time::{Duration, SystemTime};

use common::{bundle, data, params, validated, with_key, Ca};
use listener::{validate, KeyAlgorithm, ListenerCertificate, Rejection};
use rcgen::{date_time_ymd, BasicConstraints, IsCa, KeyPair};

fn hostnames(names: &[&str]) -> Vec<String> {
    names.iter().map(|n| n.to_string()).collect()
}

#[track_caller]
fn rejected(result: Result<listener::ValidatedCertificate, Rejection>) -> Rejection {
    match result {
        Ok(certificate) => panic!("expected a rejection, got {certificate:?}"),
        Err(rejection) => rejection,
    }
}

#[test]
fn a_sound_certificate_passes_with_the_facts_logs_need() {
    let ca = Ca::root("Test Root");
    let key = KeyPair::generate().unwrap();
    let mut site = params(&["www.contoso.com", "contoso.com"]);
    site.not_before = date_time_ymd(2024, 1, 1);
    site.not_after = date_time_ymd(2124, 1, 1);
    let leaf = ca.sign(site, &key);
    let bundle = bundle(&[&leaf], &key);

    let certificate = validate(
        &bundle,
        &hostnames(&["www.contoso.com", "contoso.com"]),
        SystemTime::now(),
    )
    .expect("valid");

    assert_eq!(certificate.thumbprint(), bundle.thumbprint());
    assert_eq!(certificate.subject(), "CN=www.contoso.com");
    assert_eq!(certificate.issuer(), "CN=Test Root");
    assert_eq!(certificate.dns_names(), ["www.contoso.com", "contoso.com"]);
    assert_eq!(certificate.not_before(), 1_704_067_200); // 2024-01-01T00:00:00Z
    assert_eq!(certificate.not_after(), 4_859_740_800); // 2124-01-01T00:00:00Z
    assert_eq!(certificate.key(), &KeyAlgorithm::EcdsaP256);
    assert_eq!(certificate.key().to_string(), "ECDSA P-256");
    assert_eq!(certificate.chain_len(), 1);
    assert_eq!(certificate.certified_key().cert, bundle.chain());
}

#[test]
fn debug_output_shows_facts_and_never_the_key() {
    let ca = Ca::root("Test Root");
    let bundle = ca.site(&["www.contoso.com"]);
    let certificate = validated(&bundle);

    let debug = format!("{certificate:?}");

    assert!(debug.contains(&bundle.thumbprint().to_string()), "{debug}");
    assert!(debug.contains("CN=www.contoso.com"), "{debug}");
    let key = bundle.private_key().secret_der();
    let key_as_debug = format!("{:?}", &key[key.len() - 8..]);
    let key_as_debug = &key_as_debug[1..key_as_debug.len() - 1];
    assert!(!debug.contains(key_as_debug), "{debug}");
    assert!(!debug.to_lowercase().contains("private"), "{debug}");
    assert!(!format!("{certificate:#?}").contains(key_as_debug));
}

#[test]
fn a_key_that_is_not_the_leafs_is_rejected() {
    let ca = Ca::root("Test Root");
    let leaf_key = KeyPair::generate().unwrap();
    let other_key = KeyPair::generate().unwrap();
    let leaf = ca.sign(params(&["www.contoso.com"]), &leaf_key);

    let rejection = rejected(validate(
        &bundle(&[&leaf], &other_key),
        &[],
        SystemTime::now(),
    ));

    assert_eq!(rejection, Rejection::KeyMismatch);
    assert_eq!(
        rejection.to_string(),
        "the private key does not match the leaf certificate's public key"
    );
}

#[test]
fn a_key_the_tls_provider_cannot_sign_with_is_rejected() {
    let ca = Ca::root("Test Root");
    let key = KeyPair::generate().unwrap();
    let leaf = ca.sign(params(&["www.contoso.com"]), &key);
    // An Ed448 private key: the leaf passes the strength check, the key cannot be loaded.
    let ed448_key = data("ed448").private_key().clone_key();

    let rejection = rejected(validate(
        &with_key(&[&leaf], ed448_key),
        &[],
        SystemTime::now(),
    ));

    assert!(
        matches!(rejection, Rejection::UnusableKey { .. }),
        "{rejection:?}"
    );
    assert!(
        rejection
            .to_string()
            .starts_with("the private key cannot be used for signing: "),
        "{rejection}"
    );

    let garbage =
        rustls::pki_types::PrivateKeyDer::Pkcs8(vec![0x30, 0x03, 0x02, 0x01, 0x00].into());
    let rejection = rejected(validate(
        &with_key(&[&leaf], garbage),
        &[],
        SystemTime::now(),
    ));
    assert!(
        matches!(rejection, Rejection::UnusableKey { .. }),
        "{rejection:?}"
    );
}

#[test]
fn a_chain_missing_its_intermediate_is_rejected_at_the_break() {
    let root = Ca::root("Test Root");
    let intermediate = root.intermediate("Test Intermediate");
    let key = KeyPair::generate().unwrap();
    let leaf = intermediate.sign(params(&["www.contoso.com"]), &key);

    let complete = bundle(&[&leaf, &intermediate.cert, &root.cert], &key);
    assert_eq!(validated(&complete).chain_len(), 3);

    let broken = bundle(&[&leaf, &root.cert], &key);
    let rejection = rejected(validate(&broken, &[], SystemTime::now()));
    assert_eq!(
        rejection,
        Rejection::ChainOrder {
            index: 0,
            issuer: "CN=Test Intermediate".into(),
            next_subject: "CN=Test Root".into(),
        }
    );
    assert_eq!(
        rejection.to_string(),
        "the chain breaks at certificate 0: its issuer is \"CN=Test Intermediate\" but \
         certificate 1 is \"CN=Test Root\" (each certificate must be followed by its issuer, \
         leaf first; is an intermediate missing?)"
    );

    let other_root = Ca::root("Other Root");
    let broken = bundle(&[&leaf, &intermediate.cert, &other_root.cert], &key);
    let rejection = rejected(validate(&broken, &[], SystemTime::now()));
    assert!(
        rejection
            .to_string()
            .starts_with("the chain breaks at certificate 1: its issuer is \"CN=Test Root\""),
        "{rejection}"
    );
}

#[test]
fn a_ca_certificate_is_not_a_server_certificate() {
    let key = KeyPair::generate().unwrap();
    let mut ca_params = params(&["www.contoso.com"]);
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let cert = ca_params.self_signed(&key).unwrap();

    let rejection = rejected(validate(&bundle(&[&cert], &key), &[], SystemTime::now()));

    assert_eq!(
        rejection.to_string(),
        "the leaf certificate \"CN=www.contoso.com\" is a CA certificate \
         (basicConstraints cA=true), not a server certificate"
    );
}

#[track_caller]
fn check_key(bundle: &cert_bundle::CertificateBundle, expected: Result<&str, &str>) {
    match (validate(bundle, &[], SystemTime::now()), expected) {
        (Ok(certificate), Ok(description)) => {
            assert_eq!(certificate.key().to_string(), description);
        }
        (Err(rejection), Err(found)) => assert_eq!(
            rejection.to_string(),
            format!(
                "the leaf's key is {found}; only RSA of at least 2048 bits or ECDSA \
                 P-256/P-384 is accepted"
            )
        ),
        (got, expected) => panic!("expected {expected:?}, got {got:?}"),
    }
}

fn self_signed(algorithm: &'static rcgen::SignatureAlgorithm) -> cert_bundle::CertificateBundle {
    let key = KeyPair::generate_for(algorithm).unwrap();
    let cert = params(&["key.test"]).self_signed(&key).unwrap();
    bundle(&[&cert], &key)
}

#[test]
fn keys_are_rsa_2048_or_more_or_ecdsa_p256_or_p384() {
    check_key(
        &self_signed(&rcgen::PKCS_ECDSA_P256_SHA256),
        Ok("ECDSA P-256"),
    );
    check_key(
        &self_signed(&rcgen::PKCS_ECDSA_P384_SHA384),
        Ok("ECDSA P-384"),
    );
    check_key(&data("rsa2048"), Ok("RSA 2048"));

    check_key(&data("rsa1024"), Err("RSA 1024-bit"));
    check_key(&data("p521"), Err("ECDSA P-521"));
    check_key(&self_signed(&rcgen::PKCS_ED25519), Err("Ed25519"));
}

#[test]
fn an_expired_certificate_is_rejected_with_its_end_date() {
    let key = KeyPair::generate().unwrap();
    let mut expired = params(&["www.contoso.com"]);
    expired.not_before = date_time_ymd(2020, 1, 1);
    expired.not_after = date_time_ymd(2021, 1, 1);
    let cert = expired.self_signed(&key).unwrap();
    let now = SystemTime::from(date_time_ymd(2022, 6, 1));

    let rejection = rejected(validate(&bundle(&[&cert], &key), &[], now));

    assert_eq!(
        rejection.to_string(),
        "the leaf certificate expired on 2021-01-01T00:00:00Z (checked at 2022-06-01T00:00:00Z)"
    );
    let rejection = rejected(validate(&bundle(&[&cert], &key), &[], SystemTime::now()));
    assert!(matches!(rejection, Rejection::Expired { .. }));
    assert!(rejection.to_string().contains("2021-01-01T00:00:00Z"));
}

#[test]
fn a_certificate_not_yet_valid_is_rejected_with_its_start_date() {
    let key = KeyPair::generate().unwrap();
    let mut future = params(&["www.contoso.com"]);
    future.not_before = date_time_ymd(2100, 1, 1);
    future.not_after = date_time_ymd(2101, 1, 1);
    let cert = future.self_signed(&key).unwrap();

    let rejection = rejected(validate(&bundle(&[&cert], &key), &[], SystemTime::now()));

    assert!(matches!(rejection, Rejection::NotYetValid { .. }));
    assert!(
        rejection.to_string().starts_with(
            "the leaf certificate is not valid before 2100-01-01T00:00:00Z (checked at "
        ),
        "{rejection}"
    );
}

#[test]
fn the_validity_period_includes_both_ends() {
    let key = KeyPair::generate().unwrap();
    let mut window = params(&["www.contoso.com"]);
    window.not_before = date_time_ymd(2030, 1, 1);
    window.not_after = date_time_ymd(2030, 2, 1);
    let cert = window.self_signed(&key).unwrap();
    let bundle = bundle(&[&cert], &key);
    let start = SystemTime::from(date_time_ymd(2030, 1, 1));
    let end = SystemTime::from(date_time_ymd(2030, 2, 1));
    let second = Duration::from_secs(1);

    assert!(validate(&bundle, &[], start).is_ok());
    assert!(validate(&bundle, &[], end).is_ok());
    assert!(matches!(
        validate(&bundle, &[], start - second),
        Err(Rejection::NotYetValid { .. })
    ));
    assert!(matches!(
        validate(&bundle, &[], end + second),
        Err(Rejection::Expired { .. })
    ));
}

/// Validates a certificate whose DNS names are `sans` against the configured `hostnames`; `Err`
/// holds the hostname the rejection names.
#[track_caller]
fn check_hostnames(sans: &[&str], configured: &[&str], expected: Result<(), &str>) {
    let key = KeyPair::generate().unwrap();
    let cert = params(sans).self_signed(&key).unwrap();
    let result = validate(
        &bundle(&[&cert], &key),
        &hostnames(configured),
        SystemTime::now(),
    );
    match (result, expected) {
        (Ok(_), Ok(())) => {}
        (Err(rejection), Err(hostname)) => assert_eq!(
            rejection.to_string(),
            format!(
                "the leaf certificate does not cover hostname {hostname} (its DNS names: {})",
                sans.join(", ")
            ),
        ),
        (got, expected) => {
            panic!("SANs {sans:?}, hostnames {configured:?}: expected {expected:?}, got {got:?}")
        }
    }
}

#[test]
fn the_leaf_must_cover_every_configured_hostname() {
    check_hostnames(&["www.contoso.com"], &["www.contoso.com"], Ok(()));
    check_hostnames(&["www.contoso.com"], &["WWW.CONTOSO.COM"], Ok(()));
    check_hostnames(
        &["www.contoso.com", "api.contoso.com"],
        &["api.contoso.com", "www.contoso.com"],
        Ok(()),
    );
    check_hostnames(
        &["www.contoso.com"],
        &["www.contoso.com", "api.contoso.com"],
        Err("api.contoso.com"),
    );
    check_hostnames(&["www.contoso.com"], &["contoso.com"], Err("contoso.com"));

    // A wildcard covers one label, never the bare parent domain.
    check_hostnames(
        &["*.contoso.com"],
        &["www.contoso.com", "api.contoso.com"],
        Ok(()),
    );
    check_hostnames(&["*.contoso.com"], &["contoso.com"], Err("contoso.com"));
    check_hostnames(
        &["*.contoso.com"],
        &["a.b.contoso.com"],
        Err("a.b.contoso.com"),
    );
    check_hostnames(
        &["*.contoso.com", "contoso.com"],
        &["contoso.com", "www.contoso.com"],
        Ok(()),
    );

    // A wildcard hostname needs the same wildcard in the certificate.
    check_hostnames(&["*.contoso.com"], &["*.contoso.com"], Ok(()));
    check_hostnames(
        &["www.contoso.com"],
        &["*.contoso.com"],
        Err("*.contoso.com"),
    );
}

#[test]
fn the_common_name_is_not_a_dns_name() {
    let key = KeyPair::generate().unwrap();
    let mut cn_only = params(&[]);
    cn_only
        .distinguished_name
        .push(rcgen::DnType::CommonName, "www.contoso.com");
    let cert = cn_only.self_signed(&key).unwrap();

    let rejection = rejected(validate(
        &bundle(&[&cert], &key),
        &hostnames(&["www.contoso.com"]),
        SystemTime::now(),
    ));

    assert_eq!(
        rejection.to_string(),
        "the leaf certificate does not cover hostname www.contoso.com (its DNS names: none)"
    );
}

#[test]
fn without_configured_hostnames_any_name_passes() {
    let ca = Ca::root("Test Root");
    let certificate = validated(&ca.site(&["anything.example"]));
    assert_eq!(certificate.dns_names(), ["anything.example"]);
}

#[test]
fn a_listener_validates_against_its_own_hostnames_and_keeps_its_certificate_on_rejection() {
    let ca = Ca::root("Test Root");
    let listener = ListenerCertificate::new("contoso", ["www.contoso.com"]);
    let first = ca.site(&["www.contoso.com"]);
    let second = ca.site(&["www.contoso.com"]);
    let wrong = ca.site(&["www.fabrikam.com"]);

    assert_eq!(
        listener.validate_and_install(&first, SystemTime::now()),
        Ok(None)
    );
    assert_eq!(
        listener.validate_and_install(&second, SystemTime::now()),
        Ok(Some(first.thumbprint()))
    );
    let rejection = listener
        .validate_and_install(&wrong, SystemTime::now())
        .expect_err("wrong hostname");

    assert!(matches!(rejection, Rejection::HostnameNotCovered { .. }));
    assert_eq!(
        listener.current().map(|c| c.thumbprint()),
        Some(second.thumbprint())
    );
}

#[test]
fn installing_returns_the_thumbprint_it_replaces_and_clearing_empties_the_slot() {
    let ca = Ca::root("Test Root");
    let listener = ListenerCertificate::new("site", ["WWW.Contoso.com."]);
    let (a, b) = (ca.site(&["www.contoso.com"]), ca.site(&["www.contoso.com"]));

    assert_eq!(listener.name(), "site");
    assert_eq!(listener.hostnames(), ["www.contoso.com"]);
    assert!(listener.current().is_none());
    assert_eq!(listener.install(validated(&a)), None);
    assert_eq!(listener.install(validated(&b)), Some(a.thumbprint()));
    assert_eq!(listener.current().unwrap().thumbprint(), b.thumbprint());
    assert_eq!(listener.clear(), Some(b.thumbprint()));
    assert!(listener.current().is_none());
}
