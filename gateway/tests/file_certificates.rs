//! The gateway end to end with certificates given as files: a real rustls client against the
//! gateway binary on 127.0.0.1:0, an echoing backend, and the redb log on disk.

mod common;

use std::path::Path;

use common::*;

fn cert_bundle_data(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../cert-bundle/tests/data")
        .join(name)
}

#[test]
fn serves_the_pem_certificate_and_proxies_with_forwarded_headers() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new();
    let leaf = pki.leaf(&["localhost"]);
    std::fs::write(dir.path().join("site.pem"), leaf.bundle_pem(&pki)).unwrap();
    let backend = EchoBackend::start();
    let config = write_config(dir.path(), r#"{ pem_file = "site.pem" }"#, backend.addr);
    let gateway = Gateway::start(&config, &[]);
    let addr = gateway.addr("web");

    let request = format!(
        "POST /echo/path?q=1 HTTP/1.1\r\nHost: localhost:{port}\r\nConnection: close, x-hop\r\nX-Hop: drop me\r\nKeep-Alive: timeout=5\r\nX-Forwarded-For: 203.0.113.7\r\nContent-Length: 11\r\n\r\nhello world",
        port = addr.port()
    );
    let exchange = https_exchange(addr, "localhost", &pki.ca_pem, request.as_bytes()).unwrap();

    assert_eq!(
        exchange.leaf, leaf.thumbprint,
        "the served certificate is the configured one"
    );
    assert_eq!(exchange.status(), 200, "{}", exchange.text());
    let body = exchange.body();
    assert!(body.starts_with("POST /echo/path?q=1 HTTP/1.1\n"), "{body}");
    assert!(
        body.contains("x-forwarded-for: 203.0.113.7, 127.0.0.1\n"),
        "{body}"
    );
    assert!(body.contains("x-forwarded-proto: https\n"), "{body}");
    assert!(
        body.contains(&format!("x-forwarded-host: localhost:{}\n", addr.port())),
        "{body}"
    );
    assert!(
        !body.contains("x-hop"),
        "headers named in Connection are hop-by-hop: {body}"
    );
    assert!(!body.contains("keep-alive"), "{body}");
    assert!(
        body.ends_with("\n\nhello world"),
        "the request body reaches the backend: {body}"
    );
    assert_eq!(
        exchange.header("x-backend"),
        Some(backend.addr.to_string()),
        "backend headers come back"
    );
}

#[test]
fn large_bodies_stream_both_ways_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new();
    let leaf = pki.leaf(&["localhost"]);
    std::fs::write(dir.path().join("site.pem"), leaf.bundle_pem(&pki)).unwrap();
    let backend = EchoBackend::start();
    let config = write_config(dir.path(), r#"{ pem_file = "site.pem" }"#, backend.addr);
    let gateway = Gateway::start(&config, &[]);

    let payload: Vec<u8> = (0..4 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    let mut request =
        format!("PUT /upload HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Length: {}\r\n\r\n", payload.len())
            .into_bytes();
    request.extend_from_slice(&payload);
    let exchange = https_exchange(gateway.addr("web"), "localhost", &pki.ca_pem, &request).unwrap();
    assert_eq!(exchange.status(), 200);
    assert!(
        exchange.response.ends_with(&payload),
        "the 4 MiB body comes back byte for byte ({} bytes received)",
        exchange.response.len()
    );
}

#[test]
fn pfx_files_from_openssl_3_defaults_and_legacy_mode_both_serve() {
    for (file, encoding) in [
        ("openssl3-default.pfx", "PBES2/AES"),
        ("legacy.pfx", "RC2/3DES"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let pfx = cert_bundle_data(file);
        let backend = EchoBackend::start();
        let config = write_config(
            dir.path(),
            &format!(
                r#"{{ pfx_file = "{}", password_env = "SITE_PFX_PASSWORD" }}"#,
                pfx.display()
            ),
            backend.addr,
        );
        let gateway = Gateway::start(&config, &[("SITE_PFX_PASSWORD", "test-password")]);

        let ca = std::fs::read_to_string(cert_bundle_data("root-ca.pem")).unwrap();
        let expected = cert_bundle::CertificateBundle::from_pfx(
            &std::fs::read(&pfx).unwrap(),
            Some("test-password"),
        )
        .unwrap()
        .thumbprint();
        let exchange = https_get(gateway.addr("web"), "localhost", &ca, "/");
        assert_eq!(exchange.leaf, expected, "{encoding} PFX is served");
        assert_eq!(exchange.status(), 200, "{encoding}: {}", exchange.text());
        assert_eq!(exchange.alpn, Some(b"http/1.1".to_vec()));
    }
}

#[test]
fn a_rejected_certificate_leaves_the_previous_one_serving_and_is_recorded() {
    let pki = Pki::new();
    let good = pki.leaf(&["localhost"]);
    let other_key = pki.leaf(&["localhost"]);
    let cases = [
        (
            "wrong key",
            format!("{}{}", good.cert_pem, other_key.key_pem),
            "does not match",
        ),
        (
            "expired",
            pki.expired_leaf(&["localhost"]).bundle_pem(&pki),
            "2021-01-01",
        ),
        (
            "hostname not covered",
            pki.leaf(&["other.example"]).bundle_pem(&pki),
            "localhost",
        ),
    ];
    for (case, bad_pem, expected_reason) in cases {
        let dir = tempfile::tempdir().unwrap();
        let site = dir.path().join("site.pem");
        std::fs::write(&site, good.bundle_pem(&pki)).unwrap();
        let backend = EchoBackend::start();
        let config = write_config(dir.path(), r#"{ pem_file = "site.pem" }"#, backend.addr);
        Gateway::start(&config, &[]).kill();

        std::fs::write(&site, bad_pem).unwrap();
        let gateway = Gateway::start(&config, &[]);
        assert_eq!(
            served_leaf(gateway.addr("web"), "localhost", &pki.ca_pem),
            good.thumbprint,
            "{case}: the last good certificate keeps serving"
        );
        let rejected = audit_json(
            &dir.path().join("state"),
            &["--kind", "certificate_rejected"],
        );
        assert_eq!(rejected.len(), 1, "{case}: one rejection recorded");
        let reason = rejected[0]["reason"].as_str().unwrap();
        assert!(
            reason.contains(expected_reason),
            "{case}: reason `{reason}` should mention `{expected_reason}`"
        );
        assert_eq!(rejected[0]["trigger"], "config");
    }
}

#[test]
fn a_restart_rebuilds_from_the_log_and_follows_file_changes() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let pki = Pki::new();
    let first = pki.leaf(&["localhost"]);
    let site = dir.path().join("site.pem");
    std::fs::write(&site, first.bundle_pem(&pki)).unwrap();
    let backend = EchoBackend::start();
    let config = write_config(dir.path(), r#"{ pem_file = "site.pem" }"#, backend.addr);

    // First start: configured and installed.
    let gateway = Gateway::start(&config, &[]);
    assert_eq!(
        served_leaf(gateway.addr("web"), "localhost", &pki.ca_pem),
        first.thumbprint
    );
    gateway.kill();
    assert_eq!(
        kinds(&audit_json(&state, &[])),
        ["listener_configured", "certificate_installed"]
    );

    // Unchanged file: restored from the log, not installed again.
    let gateway = Gateway::start(&config, &[]);
    assert_eq!(
        served_leaf(gateway.addr("web"), "localhost", &pki.ca_pem),
        first.thumbprint
    );
    gateway.kill();
    assert_eq!(
        kinds(&audit_json(&state, &[])),
        [
            "listener_configured",
            "certificate_installed",
            "certificate_restored"
        ]
    );

    // Changed file: installed with trigger "config", replacing the restored one.
    let second = pki.leaf(&["localhost"]);
    std::fs::write(&site, second.bundle_pem(&pki)).unwrap();
    let gateway = Gateway::start(&config, &[]);
    assert_eq!(
        served_leaf(gateway.addr("web"), "localhost", &pki.ca_pem),
        second.thumbprint
    );
    gateway.kill();
    let installs = audit_json(&state, &["--kind", "certificate_installed"]);
    assert_eq!(installs.len(), 2);
    assert_eq!(installs[1]["trigger"], "config");
    assert_eq!(installs[1]["previous"], first.thumbprint.to_string());
    assert_eq!(installs[1]["thumbprint"], second.thumbprint.to_string());

    // Missing file: the last good certificate keeps serving, loudly, and the failure is recorded.
    std::fs::remove_file(&site).unwrap();
    let gateway = Gateway::start(&config, &[]);
    assert_eq!(
        served_leaf(gateway.addr("web"), "localhost", &pki.ca_pem),
        second.thumbprint
    );
    let stderr = gateway.kill();
    assert!(stderr.contains("ERROR"), "a loud warning: {stderr}");
    assert!(
        stderr.contains("site.pem"),
        "the warning names the file: {stderr}"
    );
    let failures = audit_json(&state, &["--kind", "fetch_failed"]);
    assert_eq!(failures.len(), 1);
    assert_eq!(failures[0]["class"], "configuration");
    assert!(failures[0]["message"]
        .as_str()
        .unwrap()
        .contains("site.pem"));
}

#[test]
fn audit_verify_names_an_entry_edited_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let pki = Pki::new();
    std::fs::write(
        dir.path().join("site.pem"),
        pki.leaf(&["localhost"]).bundle_pem(&pki),
    )
    .unwrap();
    let backend = EchoBackend::start();
    let config = write_config(dir.path(), r#"{ pem_file = "site.pem" }"#, backend.addr);
    Gateway::start(&config, &[]).kill();
    Gateway::start(&config, &[]).kill();

    let state_arg = state.to_str().unwrap();
    let (ok, stdout, stderr) = gateway_cli(&["audit", "--state", state_arg, "--verify"], &[]);
    assert!(ok, "a clean log verifies: {stderr}");
    assert!(
        stdout.contains('3'),
        "the report counts the entries: {stdout}"
    );

    // Edit entry 2 (the install) in place: same length, still decodable, different listener name.
    {
        use redb::ReadableTable;
        const EVENTS: redb::TableDefinition<'_, u64, &[u8]> = redb::TableDefinition::new("events");
        let db = redb::Database::open(state.join("events.redb")).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let mut table = txn.open_table(EVENTS).unwrap();
            let mut bytes = table.get(2).unwrap().unwrap().value().to_vec();
            let at = bytes
                .windows(3)
                .position(|w| w == b"web")
                .expect("listener name in entry");
            bytes[at..at + 3].copy_from_slice(b"wab");
            table.insert(2, bytes.as_slice()).unwrap();
        }
        txn.commit().unwrap();
    }

    let (ok, _, stderr) = gateway_cli(&["audit", "--state", state_arg, "--verify"], &[]);
    assert!(!ok, "an edited log fails verification");
    assert!(
        stderr.contains("entry 2"),
        "the edited entry is named: {stderr}"
    );
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
}

#[test]
fn no_backend_answering_gives_a_short_502() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new();
    std::fs::write(
        dir.path().join("site.pem"),
        pki.leaf(&["localhost"]).bundle_pem(&pki),
    )
    .unwrap();
    // A port that was just free: nothing listens there.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let config = write_config(dir.path(), r#"{ pem_file = "site.pem" }"#, dead);
    let gateway = Gateway::start(&config, &[]);
    let exchange = https_get(gateway.addr("web"), "localhost", &pki.ca_pem, "/");
    assert_eq!(exchange.status(), 502);
    assert!(
        exchange.body().len() < 100,
        "short body: {}",
        exchange.body()
    );
}

#[test]
fn round_robin_spreads_requests_over_the_pool() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new();
    std::fs::write(
        dir.path().join("site.pem"),
        pki.leaf(&["localhost"]).bundle_pem(&pki),
    )
    .unwrap();
    let (a, b) = (EchoBackend::start(), EchoBackend::start());
    let config = write_config(dir.path(), r#"{ pem_file = "site.pem" }"#, a.addr);
    let text = std::fs::read_to_string(&config).unwrap().replace(
        &format!("[\"{}\"]", a.addr),
        &format!("[\"{}\", \"{}\"]", a.addr, b.addr),
    );
    std::fs::write(&config, text).unwrap();
    let gateway = Gateway::start(&config, &[]);
    let answered_by: Vec<String> = (0..4)
        .map(|_| {
            https_get(gateway.addr("web"), "localhost", &pki.ca_pem, "/")
                .header("x-backend")
                .unwrap()
        })
        .collect();
    let (a, b) = (a.addr.to_string(), b.addr.to_string());
    let expected = if answered_by[0] == a {
        [&a, &b, &a, &b]
    } else {
        [&b, &a, &b, &a]
    };
    assert_eq!(
        answered_by.iter().collect::<Vec<_>>(),
        expected,
        "requests alternate between the members"
    );
}

#[test]
fn an_http_listener_redirects_to_its_https_listener_keeping_path_and_query() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new();
    std::fs::write(
        dir.path().join("site.pem"),
        pki.leaf(&["localhost"]).bundle_pem(&pki),
    )
    .unwrap();
    let backend = EchoBackend::start();
    let config = write_config(dir.path(), r#"{ pem_file = "site.pem" }"#, backend.addr);
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(
        "\n[[listener]]\nname = \"plain\"\nbind = \"127.0.0.1:0\"\nprotocol = \"http\"\nredirect_to = \"web\"\n",
    );
    std::fs::write(&config, text).unwrap();
    let gateway = Gateway::start(&config, &[]);

    let response = http_exchange(
        gateway.addr("plain"),
        "GET /a/b?c=d HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    );
    assert!(response.starts_with("HTTP/1.1 308"), "{response}");
    let location = format!(
        "location: https://localhost:{}/a/b?c=d",
        gateway.addr("web").port()
    );
    assert!(
        response.to_ascii_lowercase().contains(&location),
        "{response}"
    );
}

#[test]
fn a_plain_http_listener_proxies_with_proto_http() {
    let dir = tempfile::tempdir().unwrap();
    let backend = EchoBackend::start();
    let config = dir.path().join("gateway.toml");
    std::fs::write(
        &config,
        format!(
            "[state]\ndir = \"state\"\n[admin]\nbind = \"127.0.0.1:0\"\n[[listener]]\nname = \"plain\"\nbind = \"127.0.0.1:0\"\nprotocol = \"http\"\n\
             [[backend_pool]]\nname = \"app\"\naddresses = [\"{}\"]\n[[rule]]\nname = \"r\"\nlistener = \"plain\"\nbackend_pool = \"app\"\n",
            backend.addr
        ),
    )
    .unwrap();
    let gateway = Gateway::start(&config, &[]);
    let response = http_exchange(
        gateway.addr("plain"),
        "GET /x HTTP/1.1\r\nHost: example.test\r\nConnection: close\r\n\r\n",
    );
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.contains("x-forwarded-proto: http\n"), "{response}");
    assert!(
        response.contains("x-forwarded-host: example.test\n"),
        "{response}"
    );
}

#[test]
fn https_offers_h2_and_http_1_1_over_tls_1_2_and_1_3() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new();
    let leaf = pki.leaf(&["localhost"]);
    std::fs::write(dir.path().join("site.pem"), leaf.bundle_pem(&pki)).unwrap();
    let backend = EchoBackend::start();
    let config = write_config(dir.path(), r#"{ pem_file = "site.pem" }"#, backend.addr);
    let gateway = Gateway::start(&config, &[]);
    for version in [&rustls::version::TLS12, &rustls::version::TLS13] {
        let (protocol, alpn) = handshake(
            gateway.addr("web"),
            "localhost",
            &pki.ca_pem,
            version,
            &[b"h2", b"http/1.1"],
        );
        assert_eq!(protocol, version.version);
        assert_eq!(
            alpn.as_deref(),
            Some(&b"h2"[..]),
            "h2 is preferred when the client offers it"
        );
    }
    let (_, alpn) = handshake(
        gateway.addr("web"),
        "localhost",
        &pki.ca_pem,
        &rustls::version::TLS13,
        &[b"http/1.1"],
    );
    assert_eq!(alpn.as_deref(), Some(&b"http/1.1"[..]));
}

#[test]
fn check_config_describes_what_each_listener_would_serve() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new();
    let leaf = pki.leaf(&["localhost"]);
    std::fs::write(dir.path().join("site.pem"), leaf.bundle_pem(&pki)).unwrap();
    let config = write_config(
        dir.path(),
        r#"{ pem_file = "site.pem" }"#,
        "127.0.0.1:9".parse().unwrap(),
    );
    let (ok, stdout, stderr) =
        gateway_cli(&["check-config", "--config", config.to_str().unwrap()], &[]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains(&leaf.thumbprint.to_string()), "{stdout}");
    assert!(stdout.trim_end().ends_with(": ok"), "{stdout}");
    assert!(
        !dir.path().join("state").exists(),
        "check-config does not create the event log"
    );
}
