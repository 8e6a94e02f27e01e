//! The fuzz targets, by name: `fuzz/fuzz_targets/*.rs` each call one of these, and
//! `tests/fuzz_corpora.rs` replays every committed seed and crash input through the same function
//! on every `cargo test`, so a crash the fuzzer once found stays fixed without a nightly toolchain.
//!
//! Each function takes raw bytes, runs one parser that untrusted input reaches, and asserts what
//! must hold for every input. Not an API.

use std::path::Path;
use std::time::SystemTime;

use cert_bundle::CertificateBundle;

use crate::config::Config;
use crate::proxy::BackendAddress;
use crate::routing::PathPattern;

/// A fuzz target: its name (the file under `fuzz/fuzz_targets/` and the folders under
/// `fuzz/seeds/` and `fuzz/regressions/`) and its entry point.
pub struct Target {
    pub name: &'static str,
    pub run: fn(&[u8]),
}

/// Every fuzz target.
pub const TARGETS: &[Target] = &[
    Target {
        name: "identifier",
        run: vault_client::fuzzing::identifier,
    },
    Target {
        name: "secret_value",
        run: vault_client::fuzzing::secret_value,
    },
    Target {
        name: "pfx",
        run: pfx,
    },
    Target {
        name: "challenge",
        run: vault_client::fuzzing::challenge,
    },
    Target {
        name: "token_response",
        run: identity::fuzzing::token_response,
    },
    Target {
        name: "config",
        run: config,
    },
    Target {
        name: "envelope",
        run: event_log::fuzzing::envelope,
    },
    Target {
        name: "client_hello",
        run: client_hello,
    },
];

/// Runs the target called `name` on `data`.
///
/// # Panics
/// When no target has that name, or when the target finds a bug.
pub fn run(name: &str, data: &[u8]) {
    let target = TARGETS
        .iter()
        .find(|t| t.name == name)
        .unwrap_or_else(|| panic!("there is no fuzz target called {name:?}"));
    (target.run)(data);
}

/// The passwords a PFX is opened with, chosen by the first input byte: Key Vault's (none), the
/// compatibility files' and an explicit empty one.
const PFX_PASSWORDS: [Option<&str>; 3] = [None, Some("test-password"), Some("")];

/// PKCS#12 decoding of raw DER, then the listener's validation gate on whatever decodes.
pub fn pfx(data: &[u8]) {
    let Some((&selector, der)) = data.split_first() else {
        return;
    };
    let password = PFX_PASSWORDS[usize::from(selector) % PFX_PASSWORDS.len()];
    if let Ok(bundle) = CertificateBundle::from_pfx(der, password) {
        assert!(
            !bundle.chain().is_empty(),
            "a decoded PFX has no certificate"
        );
        let _ = bundle.thumbprint();
        let _ = listener::validate(&bundle, &["www.example.com".to_owned()], SystemTime::now());
    }
}

/// The config parser, then everything the gateway derives from a config at startup.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(config) = Config::parse(Path::new("/etc/gateway/gateway.toml"), text) else {
        return;
    };
    let _ = config.rotation_policy();
    for listener in &config.listeners {
        let _ = config.schedule_for(listener);
        let _ = config.connection_limits(listener);
        let _ = config.max_request_body(listener);
        let _ = config.body_timeout(listener);
        let _ = config.pool_for(&listener.name);
        for rule in config.rules_for(&listener.name) {
            for entry in &rule.paths {
                let pattern = PathPattern::new(&entry.path);
                let _ = pattern.matches(&entry.path);
                let _ = pattern.matches("/");
            }
        }
    }
    for pool in &config.backend_pools {
        for address in &pool.addresses {
            let _ = BackendAddress::parse(address, pool.protocol, pool.port);
        }
        if let Some(probe) = &pool.probe {
            let _ = (probe.interval(), probe.timeout(), probe.healthy_status());
        }
    }
}

/// The ClientHello peek that runs on the first bytes of every connection: it never panics, and
/// once it has decided, more bytes do not change its answer.
pub fn client_hello(data: &[u8]) {
    let peeked = listener::peek_server_name(data);
    if let listener::Peeked::ClientHello(Some(name)) = &peeked {
        assert!(!name.is_empty(), "an empty server name was returned");
        assert_eq!(
            *name,
            name.to_ascii_lowercase(),
            "the server name is not lowercased"
        );
    }
    if peeked != listener::Peeked::NeedMore {
        let mut longer = data.to_vec();
        longer.extend_from_slice(&[0x16, 0x03, 0x01, 0x00]);
        assert_eq!(
            listener::peek_server_name(&longer),
            peeked,
            "trailing bytes changed the answer"
        );
    }
}
