//! Entry points for the fuzz targets in `fuzz/` and their corpus replay test. Not an API: each
//! function takes raw bytes, runs one parser the gateway exposes to untrusted input, and checks the
//! properties that must hold for every input. A panic here is a bug the fuzzer found.

use crate::challenge::Challenge;
use crate::decode::decode;
use crate::id::SecretId;

/// Key Vault identifier parsing: whatever parses prints back to an identifier that parses to
/// the same thing.
pub fn identifier(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let allowed = ["localhost:8443".to_owned()];
    if let Ok(id) = SecretId::parse_with_allowed_hosts(text, &allowed) {
        let printed = id.to_string();
        let again = SecretId::parse_with_allowed_hosts(&printed, &allowed)
            .unwrap_or_else(|e| panic!("{printed:?} (printed from {text:?}) does not parse: {e}"));
        assert_eq!(again, id, "{printed:?} parses to something else");
    }
}

/// The content types a secret may carry, chosen by the first input byte.
const CONTENT_TYPES: [Option<&str>; 4] = [
    None,
    Some(crate::PKCS12_CONTENT_TYPE),
    Some(crate::PEM_CONTENT_TYPE),
    Some("text/plain"),
];

/// Secret value decoding (base64 PKCS#12 and PEM, chosen by content type or sniffed): whatever
/// decodes has a leaf certificate first and a private key.
pub fn secret_value(data: &[u8]) {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let Ok(value) = std::str::from_utf8(rest) else {
        return;
    };
    let content_type = CONTENT_TYPES[usize::from(selector) % CONTENT_TYPES.len()];
    if let Ok((bundle, _format)) = decode(value, content_type) {
        assert!(
            !bundle.chain().is_empty(),
            "a decoded bundle has no certificate"
        );
        assert!(
            !bundle.private_key().secret_der().is_empty(),
            "a decoded bundle has an empty private key"
        );
    }
}

/// The `WWW-Authenticate` challenge parser: one header value per input line; whatever parses
/// yields a scope, and host matching never panics.
pub fn challenge(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(challenge) = Challenge::parse(text.split('\n')) {
        assert!(
            !challenge.scope.is_empty(),
            "a parsed challenge has no scope"
        );
        let _ = challenge.matches_host("myvault.vault.azure.net");
        let _ = challenge.matches_host(text);
    }
}
