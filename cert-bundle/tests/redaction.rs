//! Secrets never leak through `Debug` or error messages; thumbprints print and parse as agreed.

mod common;

use base64::Engine as _;
use cert_bundle::{BundleError, CertificateBundle, Thumbprint};
use common::*;

/// Fails if `text` shows any 12-byte run of `secret`, as hex (either case) or base64.
fn assert_hides(text: &str, secret: &[u8], what: &str) {
    let lower = text.to_lowercase();
    for window in secret.windows(12).step_by(3) {
        let hex = hex::encode(window);
        assert!(
            !lower.contains(&hex),
            "{what} shows secret bytes as hex: {text}"
        );
        let b64 = base64::engine::general_purpose::STANDARD.encode(window);
        assert!(
            !text.contains(&b64[..12]),
            "{what} shows secret bytes as base64: {text}"
        );
    }
    // Debug of a byte slice: "[48, 130, ...".
    let decimal = format!("{:?}", &secret[..8]);
    assert!(
        !text.contains(&decimal[1..decimal.len() - 1]),
        "{what} shows secret bytes: {text}"
    );
}

#[test]
fn debug_shows_thumbprint_and_chain_length_but_not_the_key() {
    for bundle in [
        CertificateBundle::from_pem(&data("bundle-rsa-pkcs8.pem")).unwrap(),
        CertificateBundle::from_pfx(&data("legacy.pfx"), Some(PASSWORD)).unwrap(),
    ] {
        let debug = format!("{bundle:?}");
        let pretty = format!("{bundle:#?}");
        assert!(debug.contains(&bundle.thumbprint().to_string()), "{debug}");
        assert!(debug.contains("chain_len: 3"), "{debug}");
        for text in [&debug, &pretty] {
            assert_hides(text, bundle.private_key().secret_der(), "Debug");
        }
    }
}

#[test]
fn no_error_shows_the_password_or_the_key() {
    let key = rsa_key_pkcs8();
    let key = key.secret_pkcs8_der();
    let pfx = data("openssl3-default.pfx");
    let mut flipped = data("legacy.pfx");
    let middle = flipped.len() / 2;
    flipped[middle] ^= 0x55;
    let mut bad_base64 = data("bundle-rsa-pkcs8.pem");
    let last_line = bad_base64.len() - 40;
    bad_base64[last_line] = b'*';

    let errors: Vec<BundleError> = [
        CertificateBundle::from_pfx(&pfx, Some("hunter2-password")),
        CertificateBundle::from_pfx(&pfx, None),
        CertificateBundle::from_pfx(&pfx[..pfx.len() / 2], Some(PASSWORD)),
        CertificateBundle::from_pfx(&pfx[..pfx.len() - 1], Some(PASSWORD)),
        CertificateBundle::from_pfx(&flipped, Some(PASSWORD)),
        CertificateBundle::from_pfx(&data("no-key.pfx"), Some(PASSWORD)),
        CertificateBundle::from_pfx(&data("leaf-rsa.key.pem"), Some(PASSWORD)),
        CertificateBundle::from_pem(&data("leaf-rsa.key.pem")),
        CertificateBundle::from_pem(&data("leaf-rsa.pem")),
        CertificateBundle::from_pem(&bad_base64),
        CertificateBundle::from_pem(
            &[data("bundle-rsa-pkcs8.pem"), data("leaf-rsa.key.pem")].concat(),
        ),
        CertificateBundle::from_pem(
            &[data("leaf-rsa.pem"), data("leaf-rsa.key.encrypted.pem")].concat(),
        ),
    ]
    .into_iter()
    .map(|result| result.expect_err("every input above is broken"))
    .collect();

    for err in &errors {
        for text in [err.to_string(), format!("{err:?}")] {
            assert!(!text.contains("hunter2"), "{text}");
            assert!(!text.contains(PASSWORD), "{text}");
            assert!(!text.contains('\n'), "messages are one line: {text}");
            assert_hides(&text, key, "error");
            assert_hides(&text, &pfx, "error");
        }
    }
}

#[test]
fn thumbprint_prints_as_uppercase_hex() {
    let thumbprint = Thumbprint::of(&rsa_leaf());
    let shown = thumbprint.to_string();
    assert_eq!(shown.len(), 64);
    assert!(
        shown
            .chars()
            .all(|c| c.is_ascii_digit() || c.is_ascii_uppercase()),
        "{shown}"
    );
    assert_eq!(format!("{thumbprint:?}"), shown);
}

#[test]
fn thumbprint_parses_any_case_with_or_without_colons() {
    let thumbprint = Thumbprint::of(&rsa_leaf());
    let upper = thumbprint.to_string();
    let with_colons = upper
        .as_bytes()
        .chunks(2)
        .map(|pair| std::str::from_utf8(pair).unwrap())
        .collect::<Vec<_>>()
        .join(":");
    for text in [
        upper.clone(),
        upper.to_lowercase(),
        with_colons.clone(),
        with_colons.to_lowercase(),
    ] {
        assert_eq!(Thumbprint::from_hex(&text).unwrap(), thumbprint, "{text}");
        assert_eq!(text.parse::<Thumbprint>().unwrap(), thumbprint, "{text}");
    }
}

#[test]
fn thumbprint_rejects_wrong_lengths_and_non_hex() {
    let good = Thumbprint::of(b"x").to_string();
    for bad in [
        &good[..62],
        &format!("{good}00"),
        &format!("{}zz", &good[..62]),
        "",
    ] {
        let err = Thumbprint::from_hex(bad).unwrap_err();
        assert!(
            matches!(err, BundleError::InvalidThumbprint { .. }),
            "{bad}: {err:?}"
        );
    }
}
