//! `GET /metrics` against a running gateway with the vault emulator, parsed as Prometheus text.

mod common;

use std::collections::BTreeMap;

use common::*;
use vault_emulator::{Emulator, EmulatorConfig};

/// A parsed exposition: `name{k="v",…}` (labels sorted) → value, and each family's TYPE.
struct Exposition {
    samples: BTreeMap<String, f64>,
    types: BTreeMap<String, String>,
}

/// Parses the Prometheus text format strictly enough to catch malformed output: every sample
/// belongs to a family declared by `# TYPE` before it, label values are quoted and escaped, and
/// every value is a number.
fn parse(text: &str) -> Exposition {
    let mut samples = BTreeMap::new();
    let mut types = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("TYPE has a kind");
            assert!(["counter", "gauge", "histogram"].contains(&kind), "{line}");
            types.insert(name.to_owned(), kind.to_owned());
            continue;
        }
        if line.starts_with("# HELP ") {
            continue;
        }
        assert!(
            !line.starts_with('#') && !line.is_empty(),
            "unexpected line `{line}`"
        );
        let (series, value) = line.rsplit_once(' ').expect("a sample has a value");
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("value of `{line}`"));
        let (name, labels) = match series.split_once('{') {
            Some((name, labels)) => (name, labels.strip_suffix('}').expect("labels close")),
            None => (series, ""),
        };
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| {
                name.strip_suffix(suffix)
                    .filter(|f| types.get(*f).is_some_and(|t| t == "histogram"))
            })
            .unwrap_or(name);
        assert!(
            types.contains_key(family),
            "`{name}` has no # TYPE before it"
        );
        let mut pairs: Vec<String> = Vec::new();
        let mut rest = labels;
        while !rest.is_empty() {
            let (key, after) = rest.split_once("=\"").expect("label=\"value\"");
            let mut value = String::new();
            let mut chars = after.char_indices();
            let end = loop {
                match chars.next().expect("label value closes") {
                    (_, '\\') => value.push(chars.next().expect("escape").1),
                    (i, '"') => break i,
                    (_, c) => value.push(c),
                }
            };
            pairs.push(format!("{key}={value}"));
            rest = after[end + 1..].trim_start_matches(',');
        }
        pairs.sort();
        samples.insert(format!("{name}{{{}}}", pairs.join(",")), value);
    }
    Exposition { samples, types }
}

impl Exposition {
    #[track_caller]
    fn value(&self, series: &str) -> f64 {
        *self.samples.get(series).unwrap_or_else(|| {
            panic!(
                "no sample `{series}`; have:\n{}",
                self.samples.keys().cloned().collect::<Vec<_>>().join("\n")
            )
        })
    }
}

#[test]
fn metrics_show_certificates_checks_handshakes_requests_and_backends() {
    let dir = tempfile::tempdir().unwrap();
    let emulator = Emulator::start(EmulatorConfig::new(dir.path().join("emulator"))).unwrap();
    let info = emulator.info().clone();
    let pki = Pki::new();
    let first = pki.leaf(&["localhost"]);
    let version = emulator
        .import_certificate("site", first.bundle_pem(&pki).as_bytes(), None)
        .unwrap();
    let backend = EchoBackend::start();
    let config = write_config(
        dir.path(),
        &format!(
            r#"{{ key_vault_secret_id = "{}secrets/site" }}"#,
            info.vault_url
        ),
        backend.addr,
    );
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(&format!(
        "\n[identity]\nkind = \"managed-identity\"\nendpoint = \"{}\"\nclient_id = \"{}\"\n[vault]\nca_file = \"{}\"\nallowed_hosts = [\"{}\"]\n",
        info.identity_endpoint,
        info.client_id,
        info.ca_file.display(),
        info.vault_url.trim_start_matches("https://").trim_end_matches('/'),
    ));
    std::fs::write(&config, text).unwrap();
    let gateway = Gateway::start(&config, &[]);
    let (web, admin) = (gateway.addr("web"), gateway.admin.unwrap());

    // Traffic: 3 proxied requests, TLS 1.2 and 1.3 handshakes.
    for _ in 0..3 {
        assert_eq!(https_get(web, "localhost", &pki.ca_pem, "/").status(), 200);
    }
    handshake(web, "localhost", &pki.ca_pem, &rustls::version::TLS12, &[]);
    // A rejected new version: expired.
    emulator
        .import_certificate(
            "site",
            pki.expired_leaf(&["localhost"]).bundle_pem(&pki).as_bytes(),
            None,
        )
        .unwrap();
    let answer = http_exchange(admin, "POST /listeners/web/refresh HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    assert!(answer.contains(r#""outcome":"rejected""#), "{answer}");

    let response = http_exchange(
        admin,
        "GET /metrics HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    );
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(
        response
            .to_ascii_lowercase()
            .contains("content-type: text/plain; version=0.0.4"),
        "{response}"
    );
    let body = response.split_once("\r\n\r\n").unwrap().1;
    let metrics = parse(body);

    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as f64;
    let not_after = metrics.value("gateway_certificate_not_after_seconds{listener=web}");
    assert!(not_after > now, "the served certificate is valid");
    let to_expiry = metrics.value("gateway_certificate_expiry_seconds{listener=web}");
    assert!((not_after - now - to_expiry).abs() < 120.0);
    let info_series = format!(
        "gateway_certificate_info{{listener=web,source={}secrets/site,thumbprint={},version={version}}}",
        info.vault_url, first.thumbprint
    );
    assert_eq!(metrics.value(&info_series), 1.0);
    assert_eq!(
        metrics.value("gateway_certificate_latest{listener=web}"),
        0.0,
        "a newer version was refused: drift"
    );
    assert_eq!(metrics.value("gateway_listener_serving{listener=web}"), 1.0);
    assert_eq!(
        metrics.value("gateway_certificate_installs_total{listener=web,trigger=startup}"),
        1.0
    );
    assert_eq!(
        metrics.value("gateway_certificate_rejections_total{listener=web,reason=expired}"),
        1.0
    );
    assert_eq!(
        metrics.value("gateway_keyvault_consecutive_failures{listener=web}"),
        0.0
    );
    assert!(
        metrics.value("gateway_keyvault_last_success_timestamp_seconds{listener=web}") <= now + 1.0
    );
    assert!(
        metrics.value("gateway_tls_handshakes_total{kind=full,listener=web,version=TLSv1.3}")
            >= 3.0
    );
    assert!(
        metrics.value("gateway_tls_handshakes_total{kind=full,listener=web,version=TLSv1.2}")
            >= 1.0
    );
    assert_eq!(
        metrics.value("gateway_http_requests_total{class=2xx,listener=web,pool=app}"),
        3.0
    );
    assert_eq!(
        metrics.value("gateway_http_request_duration_seconds_count{listener=web,pool=app}"),
        3.0
    );
    assert_eq!(
        metrics
            .value("gateway_http_request_duration_seconds_bucket{le=+Inf,listener=web,pool=app}"),
        3.0
    );
    assert_eq!(
        metrics.types["gateway_http_request_duration_seconds"],
        "histogram"
    );
    assert_eq!(
        metrics.value(&format!(
            "gateway_backend_up{{member={},pool=app}}",
            backend.addr
        )),
        1.0
    );

    // A failing check counts as a failure and a streak.
    emulator.revoke_identity(&info.client_id);
    http_exchange(admin, "POST /listeners/web/refresh HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    let response = http_exchange(
        admin,
        "GET /metrics HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    );
    let metrics = parse(response.split_once("\r\n\r\n").unwrap().1);
    assert_eq!(
        metrics.value("gateway_keyvault_check_failures_total{class=configuration,listener=web}"),
        1.0
    );
    assert_eq!(
        metrics.value("gateway_keyvault_consecutive_failures{listener=web}"),
        1.0
    );
}
