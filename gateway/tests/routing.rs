//! Application Gateway routing with real clients: multi-site listeners chosen by SNI and Host,
//! wildcard precedence, path rules, redirects, probe-driven failover, WebSocket, body limits,
//! HTTP/2 (curl and h2load) and TLS to the backend.

mod common;

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::*;

const STATE: &str = "[state]\ndir = \"state\"\n\n[admin]\nbind = \"127.0.0.1:0\"\n";

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

fn pem_listener(
    dir: &Path,
    pki: &Pki,
    name: &str,
    bind: &str,
    hostnames: &[&str],
    cert_names: &[&str],
) -> (String, cert_bundle::Thumbprint) {
    let leaf = pki.leaf(cert_names);
    let file = write(dir, &format!("{name}.pem"), &leaf.bundle_pem(pki));
    let hostnames = hostnames
        .iter()
        .map(|h| format!("\"{h}\""))
        .collect::<Vec<_>>()
        .join(", ");
    (
        format!(
            "\n[[listener]]\nname = \"{name}\"\nbind = \"{bind}\"\nprotocol = \"https\"\nhostnames = [{hostnames}]\ncertificate = {{ pem_file = \"{file}\" }}\n"
        ),
        leaf.thumbprint,
    )
}

fn pool(name: &str, addrs: &[SocketAddr], extra: &str) -> String {
    let addrs = addrs
        .iter()
        .map(|a| format!("\"{a}\""))
        .collect::<Vec<_>>()
        .join(", ");
    format!("\n[[backend_pool]]\nname = \"{name}\"\naddresses = [{addrs}]\n{extra}\n")
}

fn rule(name: &str, listener: &str, pool: &str, extra: &str) -> String {
    format!("\n[[rule]]\nname = \"{name}\"\nlistener = \"{listener}\"\nbackend_pool = \"{pool}\"\n{extra}\n")
}

/// A gateway with one HTTPS listener, `web`, for `localhost`, sending every request to `backend`.
fn localhost_to(dir: &Path, pki: &Pki, backend: SocketAddr) -> Gateway {
    let (web, _) = pem_listener(
        dir,
        pki,
        "web",
        "127.0.0.1:0",
        &["localhost"],
        &["localhost"],
    );
    let text = format!(
        "{STATE}{web}{}{}",
        pool("app", &[backend], ""),
        rule("all", "web", "app", "")
    );
    start(dir, &text)
}

fn start(dir: &Path, text: &str) -> Gateway {
    let config = dir.join("gateway.toml");
    std::fs::write(&config, text).unwrap();
    Gateway::start(&config, &[])
}

/// GET over HTTPS as `host` (SNI and Host): status, the answering backend, body.
fn get(addr: SocketAddr, host: &str, ca: &str, path: &str) -> (u16, Option<String>, String) {
    let exchange = https_get(addr, host, ca, path);
    (
        exchange.status(),
        exchange.header("x-backend"),
        exchange.body(),
    )
}

#[test]
fn sni_and_host_choose_among_exact_wildcard_and_catch_all_listeners_on_one_port() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new();
    let bind = free_loopback_addr().to_string();
    let backends: Vec<EchoBackend> = (0..4).map(|_| EchoBackend::start()).collect();
    let (a, a_leaf) = pem_listener(dir.path(), &pki, "a", &bind, &["a.test"], &["a.test"]);
    let (exact, exact_leaf) = pem_listener(
        dir.path(),
        &pki,
        "exact",
        &bind,
        &["api.example.test"],
        &["api.example.test"],
    );
    let (wild, wild_leaf) = pem_listener(
        dir.path(),
        &pki,
        "wild",
        &bind,
        &["*.example.test"],
        &["*.example.test"],
    );
    let (rest, rest_leaf) = pem_listener(
        dir.path(),
        &pki,
        "rest",
        &bind,
        &[],
        &["fallback.test", "other.test", "x.y.example.test"],
    );
    let mut text = format!("{STATE}{a}{exact}{wild}{rest}");
    for (i, name) in ["a", "exact", "wild", "rest"].iter().enumerate() {
        text.push_str(&pool(&format!("{name}-pool"), &[backends[i].addr], ""));
        text.push_str(&rule(name, name, &format!("{name}-pool"), ""));
    }
    let gateway = start(dir.path(), &text);
    let addr = gateway.addr("a");
    assert_eq!(addr, gateway.addr("wild"), "one socket for all four");

    let cases = [
        ("a.test", &a_leaf, 0),
        ("api.example.test", &exact_leaf, 1),
        ("www.example.test", &wild_leaf, 2),
        ("other.test", &rest_leaf, 3),
    ];
    for (host, leaf, backend) in cases {
        let exchange = https_get(addr, host, &pki.ca_pem, "/who");
        assert_eq!(&exchange.leaf, leaf, "certificate for {host}");
        assert_eq!(exchange.status(), 200, "{host}: {}", exchange.text());
        assert_eq!(
            exchange.header("x-backend"),
            Some(backends[backend].addr.to_string()),
            "backend for {host}"
        );
    }
    // `a.example.test.deep` is not one label under the wildcard: the catch-all takes it.
    assert_eq!(
        served_leaf(addr, "x.y.example.test", &pki.ca_pem),
        rest_leaf
    );
}

#[test]
fn path_rules_route_by_longest_match_and_pools_set_the_host_header() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new();
    let (app, api, v2, exact) = (
        EchoBackend::start(),
        EchoBackend::start(),
        EchoBackend::start(),
        EchoBackend::start(),
    );
    let (web, _) = pem_listener(
        dir.path(),
        &pki,
        "web",
        "127.0.0.1:0",
        &["localhost"],
        &["localhost"],
    );
    let text = format!(
        "{STATE}{web}{}{}{}{}{}{}",
        pool("app", &[app.addr], ""),
        pool("api", &[api.addr], "host_header = \"api.internal\""),
        pool("v2", &[v2.addr], "pick_host_from_backend = true"),
        pool("exact", &[exact.addr], ""),
        rule(
            "images",
            "web",
            "app",
            "priority = 20\npaths = [{ path = \"/images/*\", backend_pool = \"exact\" }]",
        ),
        rule(
            "paths",
            "web",
            "app",
            "priority = 10\npaths = [\n  { path = \"/api/*\", backend_pool = \"api\" },\n  { path = \"/api/v2/*\", backend_pool = \"v2\" },\n  { path = \"/health\", backend_pool = \"exact\" },\n  { path = \"/old/*\", redirect_url = \"https://new.example.test/\", redirect_type = \"found\" },\n]",
        ),
    );
    let gateway = start(dir.path(), &text);
    let addr = gateway.addr("web");
    let ca = &pki.ca_pem;
    let backend_of = |path: &str| get(addr, "localhost", ca, path).1.unwrap();
    assert_eq!(backend_of("/"), app.addr.to_string());
    assert_eq!(backend_of("/api/users"), api.addr.to_string());
    assert_eq!(backend_of("/api"), api.addr.to_string());
    assert_eq!(backend_of("/apix"), app.addr.to_string());
    assert_eq!(backend_of("/api/v2/users?x=1"), v2.addr.to_string());
    assert_eq!(backend_of("/health"), exact.addr.to_string());
    assert_eq!(backend_of("/health/deep"), app.addr.to_string());
    // The second rule by priority takes what the first does not match.
    assert_eq!(backend_of("/images/a.png"), exact.addr.to_string());

    let (_, _, body) = get(addr, "localhost", ca, "/api/users");
    assert!(body.contains("host: api.internal\n"), "{body}");
    assert!(body.contains("x-original-host: localhost\n"), "{body}");
    let (_, _, body) = get(addr, "localhost", ca, "/api/v2/x");
    assert!(body.contains(&format!("host: {}\n", v2.addr)), "{body}");
    let (_, _, body) = get(addr, "localhost", ca, "/");
    assert!(body.contains("host: localhost\n"), "{body}");
    assert!(body.contains("x-forwarded-for: 127.0.0.1\n"), "{body}");

    let exchange = https_get(addr, "localhost", ca, "/old/page?q=1");
    assert_eq!(exchange.status(), 302);
    assert_eq!(
        exchange.header("location").as_deref(),
        Some("https://new.example.test/old/page?q=1")
    );
}

#[test]
fn http_listeners_redirect_with_each_type_and_to_external_urls() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new();
    let backend = EchoBackend::start();
    let (web, _) = pem_listener(
        dir.path(),
        &pki,
        "web",
        "127.0.0.1:0",
        &["localhost"],
        &["localhost"],
    );
    let mut text = format!(
        "{STATE}{web}{}{}",
        pool("app", &[backend.addr], ""),
        rule("all", "web", "app", "")
    );
    let kinds = [
        ("default", "", 308),
        ("permanent", "redirect_type = \"permanent\"", 301),
        ("found", "redirect_type = \"found\"", 302),
        ("see-other", "redirect_type = \"see_other\"", 303),
        ("temporary", "redirect_type = \"temporary\"", 307),
        (
            "permanent-redirect",
            "redirect_type = \"permanent_redirect\"",
            308,
        ),
    ];
    for (name, extra, _) in kinds {
        text.push_str(&format!(
            "\n[[listener]]\nname = \"{name}\"\nbind = \"127.0.0.1:0\"\nprotocol = \"http\"\nredirect_to = \"web\"\n{extra}\n"
        ));
    }
    text.push_str("\n[[listener]]\nname = \"bare\"\nbind = \"127.0.0.1:0\"\nprotocol = \"http\"\nredirect_to = \"web\"\ninclude_path = false\ninclude_query = false\n");
    text.push_str("\n[[listener]]\nname = \"external\"\nbind = \"127.0.0.1:0\"\nprotocol = \"http\"\nredirect_url = \"https://elsewhere.example.test/landing\"\nredirect_type = \"temporary\"\n");
    let gateway = start(dir.path(), &text);
    let https_port = gateway.addr("web").port();

    let request =
        "GET /a/b?x=1&y=2 HTTP/1.1\r\nHost: shop.example.test\r\nConnection: close\r\n\r\n";
    let location = |response: &str| {
        response
            .lines()
            .find_map(|l| {
                l.strip_prefix("location: ")
                    .or_else(|| l.strip_prefix("Location: "))
            })
            .map(str::to_owned)
    };
    for (name, _, status) in kinds {
        let response = http_exchange(gateway.addr(name), request);
        assert!(
            response.starts_with(&format!("HTTP/1.1 {status} ")),
            "{name}: {response}"
        );
        assert_eq!(
            location(&response).as_deref(),
            Some(format!("https://shop.example.test:{https_port}/a/b?x=1&y=2").as_str()),
            "{name}"
        );
    }
    let response = http_exchange(gateway.addr("bare"), request);
    assert_eq!(
        location(&response).as_deref(),
        Some(format!("https://shop.example.test:{https_port}/").as_str())
    );
    let response = http_exchange(gateway.addr("external"), request);
    assert!(response.starts_with("HTTP/1.1 307 "), "{response}");
    assert_eq!(
        location(&response).as_deref(),
        Some("https://elsewhere.example.test/landing/a/b?x=1&y=2")
    );

    // The redirect is followed by curl to the https listener.
    let ca = write(dir.path(), "ca.pem", &pki.ca_pem);
    let output = Command::new("curl")
        .args(["-sS", "-L", "--cacert", &ca, "--resolve"])
        .arg(format!("localhost:{https_port}:127.0.0.1"))
        .arg(format!(
            "http://localhost:{}/followed?z=1",
            gateway.addr("temporary").port()
        ))
        .output()
        .unwrap();
    let body = String::from_utf8_lossy(&output.stdout);
    assert!(
        body.starts_with("GET /followed?z=1 HTTP/1.1"),
        "{body} {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn probes_take_a_dead_member_out_of_rotation_and_bring_it_back() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new();
    let (one, two) = (SwitchableBackend::start(), SwitchableBackend::start());
    let (web, _) = pem_listener(
        dir.path(),
        &pki,
        "web",
        "127.0.0.1:0",
        &["localhost"],
        &["localhost"],
    );
    let text = format!(
        "{STATE}{web}{}{}",
        pool(
            "app",
            &[one.addr, two.addr],
            "[backend_pool.probe]\npath = \"/healthz\"\ninterval = \"200ms\"\ntimeout = \"2s\"\nunhealthy_threshold = 2\nhealthy_status = \"200-399\"",
        ),
        rule("all", "web", "app", ""),
    );
    let gateway = start(dir.path(), &text);
    let addr = gateway.addr("web");
    let ca = &pki.ca_pem;
    let backends_seen = |n: usize| {
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..n {
            let (status, backend, body) = get(addr, "localhost", ca, "/");
            assert_eq!(status, 200, "{body}");
            seen.insert(backend.unwrap());
        }
        seen
    };
    assert_eq!(backends_seen(4).len(), 2, "both members serve");

    one.stop();
    let member = one.addr.to_string();
    wait_for(
        "the probe to take the stopped member out",
        Duration::from_secs(30),
        || {
            gateway
                .stderr()
                .lines()
                .any(|l| l.contains("out of rotation") && l.contains(&member))
                .then_some(())
        },
    );
    assert_eq!(
        backends_seen(6),
        [two.addr.to_string()].into(),
        "only the live member serves"
    );

    one.restart();
    wait_for(
        "the restarted member to serve again",
        Duration::from_secs(30),
        || {
            backends_seen(2)
                .contains(&one.addr.to_string())
                .then_some(())
        },
    );

    one.stop();
    two.stop();
    let response = wait_for(
        "every member out of rotation",
        Duration::from_secs(30),
        || {
            let exchange = https_get(addr, "localhost", ca, "/");
            (exchange.status() == 502 && exchange.body().contains("unhealthy")).then_some(exchange)
        },
    );
    assert!(
        response.body().len() < 200,
        "a short body: {}",
        response.body()
    );

    two.restart();
    wait_for(
        "a member back after all were down",
        Duration::from_secs(30),
        || (get(addr, "localhost", ca, "/").0 == 200).then_some(()),
    );
}

#[test]
fn websocket_upgrades_are_tunnelled_to_the_backend() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new();
    let backend = WsEchoBackend::start();
    let gateway = localhost_to(dir.path(), &pki, backend.addr);

    let mut tls = tls_stream(gateway.addr("web"), "localhost", &pki.ca_pem);
    let key = "dGhlIHNhbXBsZSBub25jZQ==";
    write!(
        tls,
        "GET /chat HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    .unwrap();
    tls.flush().unwrap();
    let head = read_head(&mut tls).unwrap();
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("sec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo="),
        "the accept key answers the client's key: {head}"
    );
    for message in ["hello", "through the gateway"] {
        ws_write_frame(&mut tls, 1, message.as_bytes(), true).unwrap();
        let (opcode, payload) = ws_read_frame(&mut tls).unwrap();
        assert_eq!(opcode, 1);
        assert_eq!(
            String::from_utf8(payload).unwrap(),
            format!("echo:{message}")
        );
    }
    let big = "x".repeat(70_000);
    ws_write_frame(&mut tls, 2, big.as_bytes(), true).unwrap();
    let (opcode, payload) = ws_read_frame(&mut tls).unwrap();
    assert_eq!((opcode, payload.len()), (2, 70_005));
    ws_write_frame(&mut tls, 8, &[0x03, 0xe8], true).unwrap();
    let (opcode, _) = ws_read_frame(&mut tls).unwrap();
    assert_eq!(opcode, 8, "the close comes back");
}

#[test]
fn bodies_over_the_limit_get_413_with_content_length_or_chunked() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new();
    let backend = EchoBackend::start();
    let (web, _) = pem_listener(
        dir.path(),
        &pki,
        "web",
        "127.0.0.1:0",
        &["localhost"],
        &["localhost"],
    );
    let web = web.replace(
        "protocol = \"https\"",
        "protocol = \"https\"\nmax_request_body = \"1KiB\"",
    );
    let text = format!(
        "[limits]\nmax_request_body = \"1MiB\"\n{STATE}{web}{}{}",
        pool("app", &[backend.addr], ""),
        rule("all", "web", "app", ""),
    );
    let gateway = start(dir.path(), &text);
    let addr = gateway.addr("web");
    let ca = &pki.ca_pem;
    let post = |body: &[u8], chunked: bool| {
        let mut request =
            b"POST /upload HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n".to_vec();
        if chunked {
            request.extend_from_slice(b"Transfer-Encoding: chunked\r\n\r\n");
            for chunk in body.chunks(300) {
                request.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
                request.extend_from_slice(chunk);
                request.extend_from_slice(b"\r\n");
            }
            request.extend_from_slice(b"0\r\n\r\n");
        } else {
            request.extend_from_slice(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes());
            request.extend_from_slice(body);
        }
        https_exchange(addr, "localhost", ca, &request).unwrap()
    };
    let small = vec![b'a'; 1000];
    let large = vec![b'b'; 5000];
    for chunked in [false, true] {
        let ok = post(&small, chunked);
        assert_eq!(ok.status(), 200, "{}", ok.text());
        assert!(ok.body().ends_with(&"a".repeat(1000)));
        let refused = post(&large, chunked);
        assert_eq!(
            refused.status(),
            413,
            "chunked={chunked}: {}",
            refused.text()
        );
        assert!(refused.body().contains("1024 bytes"), "{}", refused.body());
    }
}

#[test]
fn http2_with_curl_and_h2load() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new();
    let backend = EchoBackend::start();
    let gateway = localhost_to(dir.path(), &pki, backend.addr);
    let port = gateway.addr("web").port();
    let ca = write(dir.path(), "ca.pem", &pki.ca_pem);

    let output = Command::new("curl")
        .args(["-sS", "--http2", "--cacert", &ca, "--resolve"])
        .arg(format!("localhost:{port}:127.0.0.1"))
        .args([
            "--data-binary",
            "over h2",
            "-w",
            "\n%{http_version} %{http_code}",
        ])
        .arg(format!("https://localhost:{port}/h2?x=1"))
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(out.ends_with("\n2 200"), "{out}");
    assert!(out.starts_with("POST /h2?x=1 HTTP/1.1\n"), "{out}");
    assert!(out.contains("x-forwarded-proto: https\n"), "{out}");
    assert!(out.contains("host: localhost:"), "{out}");
    assert!(out.contains("\n\nover h2"), "{out}");

    // h2load checks no certificate; without SNI the address's only listener answers.
    let output = Command::new("h2load")
        .args(["-n", "400", "-c", "4", "-m", "10"])
        .arg(format!("https://127.0.0.1:{port}/load"))
        .output()
        .unwrap();
    let summary = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{summary}");
    let line = summary
        .lines()
        .find(|l| l.starts_with("requests:"))
        .unwrap_or_else(|| panic!("no summary: {summary}"));
    let count = |what: &str| -> u64 {
        line.split(',')
            .find_map(|part| {
                part.trim()
                    .trim_start_matches("requests:")
                    .trim()
                    .strip_suffix(what)
            })
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or_else(|| panic!("no `{what}` in {line}"))
    };
    assert_eq!(count("succeeded"), 400, "{summary}");
    assert_eq!(count("failed"), 0, "{summary}");
    assert_eq!(count("errored"), 0, "{summary}");
    assert!(summary.contains("Application protocol: h2"), "{summary}");
    assert!(summary.contains("status codes: 400 2xx"), "{summary}");
}

#[test]
fn tls_to_the_backend_is_verified_against_the_pools_trusted_ca() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new();
    let backend_pki = Pki::new();
    let other_pki = Pki::new();
    let backend = TlsEchoBackend::start(&backend_pki.leaf(&["backend.internal"]));
    let backend_ca = write(dir.path(), "backend-ca.pem", &backend_pki.ca_pem);
    let other_ca = write(dir.path(), "other-ca.pem", &other_pki.ca_pem);
    let (web, _) = pem_listener(
        dir.path(),
        &pki,
        "web",
        "127.0.0.1:0",
        &["localhost"],
        &["localhost"],
    );
    let text = format!(
        "{STATE}{web}{}{}{}",
        pool(
            "secure",
            &[backend.addr],
            &format!("protocol = \"https\"\ntrusted_ca_file = \"{backend_ca}\"\nsni = \"backend.internal\"\nrequest_timeout = \"10s\""),
        ),
        pool(
            "wrong-ca",
            &[backend.addr],
            &format!("protocol = \"https\"\ntrusted_ca_file = \"{other_ca}\"\nsni = \"backend.internal\""),
        ),
        rule("all", "web", "secure", "paths = [{ path = \"/wrong/*\", backend_pool = \"wrong-ca\" }]"),
    );
    let gateway = start(dir.path(), &text);
    let addr = gateway.addr("web");
    let (status, backend_addr, body) = get(addr, "localhost", &pki.ca_pem, "/secure");
    assert_eq!(status, 200, "{body}");
    assert_eq!(backend_addr, Some(backend.addr.to_string()));
    assert!(body.starts_with("GET /secure HTTP/1.1\n"), "{body}");
    assert!(body.contains("host: localhost\n"), "{body}");

    let (status, _, body) = get(addr, "localhost", &pki.ca_pem, "/wrong/x");
    assert_eq!(status, 502, "{body}");
    let mut stderr = String::new();
    std::fs::File::open(&gateway.stderr_path)
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(stderr.contains("backend unreachable"), "{stderr}");
}

/// A backend that answers every request with `302 Found` to `/landed`, counting requests.
fn redirecting_backend(requests: std::sync::Arc<std::sync::atomic::AtomicUsize>) -> SocketAddr {
    use std::io::BufRead;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let requests = requests.clone();
            std::thread::spawn(move || {
                let mut reader = std::io::BufReader::new(stream);
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    if line.trim_end().is_empty() {
                        requests.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        let answer =
                            "HTTP/1.1 302 Found\r\nlocation: /landed\r\ncontent-length: 0\r\n\r\n";
                        if reader.get_mut().write_all(answer.as_bytes()).is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    addr
}

#[test]
fn a_backend_redirect_reaches_the_client_unfollowed() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new();
    let requests = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let backend = redirecting_backend(requests.clone());
    let (listener, _) = pem_listener(
        dir.path(),
        &pki,
        "web",
        "127.0.0.1:0",
        &[],
        &["www.example.com"],
    );
    let text = format!(
        "{STATE}{listener}{}{}",
        pool("app", &[backend], ""),
        rule("all", "web", "app", "")
    );
    let gateway = start(dir.path(), &text);

    let exchange = https_get(gateway.addr("web"), "www.example.com", &pki.ca_pem, "/old");

    assert_eq!(exchange.status(), 302, "{}", exchange.text());
    assert_eq!(exchange.header("location").as_deref(), Some("/landed"));
    assert_eq!(
        requests.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "the gateway followed the backend's redirect itself"
    );
}

/// The `Date` the backend sees on a forwarded request, as seconds since the epoch.
fn forwarded_date(addr: SocketAddr, ca: &str) -> i64 {
    let (_, _, body) = get(addr, "localhost", ca, "/");
    let date = body
        .lines()
        .find_map(|line| line.strip_prefix("date: "))
        .unwrap_or_else(|| panic!("the backend got no date header: {body}"));
    let format = time::macros::format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    time::PrimitiveDateTime::parse(date, &format)
        .unwrap_or_else(|e| panic!("date `{date}`: {e}"))
        .assume_utc()
        .unix_timestamp()
}

/// The backend client shares one date per worker thread instead of building one per request
/// (vendor/README.md); the date it sends must still be the current one, request after request.
#[test]
fn forwarded_requests_carry_the_current_date() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new();
    let app = EchoBackend::start();
    let gateway = localhost_to(dir.path(), &pki, app.addr);
    let addr = gateway.addr("web");
    let now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64
    };
    let first = forwarded_date(addr, &pki.ca_pem);
    assert!((first - now()).abs() <= 2, "date {first}, now {}", now());
    std::thread::sleep(Duration::from_millis(2100));
    let later = forwarded_date(addr, &pki.ca_pem);
    assert!(
        later >= first + 2,
        "the date did not move on: {first} then {later}"
    );
    assert!((later - now()).abs() <= 2, "date {later}, now {}", now());
}
