//! Seeing what is served: the status page (asserted as HTML, then rendered by headless Chromium
//! with a screenshot kept in `target/test-artifacts/`), `gateway audit` filters on a log with
//! thousands of events, `gateway status`, and JSON log lines.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cert_bundle::Thumbprint;
use common::*;
use event_log::{Event, EventLog, FailureClass, Trigger};
use serde_json::Value;

/// The identity the gateway reads Key Vault as.
const READER: &str = "gateway-reader";

/// No scheduled check fires during a test: only the refreshes a test asks for run.
const NO_SCHEDULE: &str = "schedule = \"0 0 0 1 1 *\"\njitter = \"0s\"";

const CHROMIUM: &str = "/usr/bin/chromium";

/// A running gateway with a Key Vault listener `vault` and a file listener `files`.
struct Scene {
    vault: TestVault,
    pki: Pki,
    _dir: tempfile::TempDir,
    _backend: EchoBackend,
    config: PathBuf,
    admin: std::net::SocketAddr,
    /// What `vault` serves first, and its Key Vault version.
    first: Leaf,
    first_version: String,
    /// What `files` serves.
    file_leaf: Leaf,
}

impl Scene {
    fn new() -> Scene {
        let vault = TestVault::start();
        vault.emulator().add_identity(READER, &["get"], &[]);
        let pki = Pki::new();
        let dir = tempfile::tempdir().unwrap();
        let backend = EchoBackend::start();
        let first = pki.leaf(&["localhost"]);
        let first_version = vault.import("site", &first, &pki);
        let file_leaf = pki.leaf(&["localhost"]);
        let pem = dir.path().join("files.pem");
        std::fs::write(&pem, file_leaf.bundle_pem(&pki)).unwrap();
        let admin = free_loopback_addr();
        let config = rotation_config(
            dir.path(),
            &vault,
            READER,
            NO_SCHEDULE,
            admin,
            &[
                ListenerSpec::key_vault("vault", &vault.secret_uri("site")),
                ListenerSpec::pem_file("files", &pem),
            ],
            backend.addr,
        );
        Scene {
            vault,
            pki,
            _dir: dir,
            _backend: backend,
            config,
            admin,
            first,
            first_version,
            file_leaf,
        }
    }

    /// Imports a new version of `site` and has the gateway check now; returns the new leaf and
    /// its version once the gateway serves it.
    fn rotate(&self, gateway: &Gateway) -> (Leaf, String) {
        let next = self.pki.leaf(&["localhost"]);
        let version = self.vault.import("site", &next, &self.pki);
        let outcome = admin_refresh(self.admin, "vault");
        assert_eq!(outcome["outcome"], "rotated", "{outcome}");
        assert_eq!(
            served_leaf(gateway.addr("vault"), "localhost", &self.pki.ca_pem),
            next.thumbprint
        );
        (next, version)
    }
}

/// `GET path` on the admin API: status, headers and body as text.
fn admin_get(admin: std::net::SocketAddr, path: &str) -> (u16, String, String) {
    let response = http_exchange(
        admin,
        &format!("GET {path} HTTP/1.1\r\nHost: {admin}\r\nConnection: close\r\n\r\n"),
    );
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, head.to_owned(), body.to_owned())
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().skip(1).find_map(|line| {
        let (n, v) = line.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// `target/` (the binary lives in `target/debug/`).
fn target_dir() -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_gateway"))
        .parent()
        .and_then(Path::parent)
        .unwrap()
        .to_owned()
}

/// Runs headless Chromium with `args` then `url`, killing it after two minutes: (success, stdout,
/// stderr).
fn chromium(profile: &Path, args: &[&str], url: &str) -> (bool, String, String) {
    let mut child = Command::new(CHROMIUM)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .arg(url)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {CHROMIUM}: {e}"));
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut stdout, &mut s);
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut stderr, &mut s);
        s
    });
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let (stdout, stderr) = (out.join().unwrap(), err.join().unwrap());
    match status {
        Some(status) => (status.success(), stdout, stderr),
        None => (false, stdout, format!("timed out after 120 s\n{stderr}")),
    }
}

/// Whether the browser part can run: fails under CI without Chromium, skips loudly otherwise.
fn chromium_available() -> bool {
    if Path::new(CHROMIUM).exists() {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "{CHROMIUM} is missing and CI is set: .ci/run installs the Debian `chromium` package"
    );
    eprintln!(
        "\n==== SKIPPED: the headless Chromium part of the status page test: {CHROMIUM} is missing \
         (apt-get install chromium; under CI this fails) ====\n"
    );
    false
}

#[test]
fn the_status_page_shows_every_listener_and_the_rotation_and_renders_in_chromium() {
    let scene = Scene::new();
    let gateway = Gateway::start(&scene.config, &[]);
    let (second, second_version) = scene.rotate(&gateway);

    let (status, head, html) = admin_get(scene.admin, "/");
    assert_eq!(status, 200, "{head}\n{html}");
    assert!(
        header(&head, "content-type").is_some_and(|v| v.starts_with("text/html")),
        "{head}"
    );
    let csp = header(&head, "content-security-policy").unwrap_or_default();
    assert!(csp.contains("default-src 'none'"), "{head}");

    // Each listener, with what it serves.
    for needle in [
        "vault",
        "files",
        "serving",
        &second.thumbprint.to_string(),
        &scene.file_leaf.thumbprint.to_string(),
        &second_version,
        &scene.vault.secret_uri("site"),
        "files.pem",
        "CN=localhost",
        "days left",
    ] {
        assert!(html.contains(needle), "the page shows `{needle}`:\n{html}");
    }
    assert!(html.contains("id=\"listener-vault\""), "{html}");
    assert!(html.contains("id=\"listener-files\""), "{html}");
    // The last check of `vault` is the manual rotation.
    assert!(html.contains("rotated "), "{html}");

    // The timeline, newest first: the rotation's install on top, before the first install.
    let timeline = &html[html.find("class=\"timeline\"").expect("a timeline")..];
    let rotation = format!(
        "trigger=manual {} -&gt; {} version={second_version}",
        scene.first.thumbprint, second.thumbprint
    );
    let rotated_at = timeline
        .find(&rotation)
        .unwrap_or_else(|| panic!("the rotation `{rotation}` is in the timeline:\n{timeline}"));
    let first_install = timeline
        .find(&format!("version={}", scene.first_version))
        .expect("the first install is in the timeline");
    assert!(rotated_at < first_install, "newest first:\n{timeline}");
    assert!(timeline.contains("certificate_installed"), "{timeline}");
    assert!(timeline.contains("certificate_fetched"), "{timeline}");
    assert!(timeline.contains("listener_configured"), "{timeline}");

    // Self-contained and free of key material.
    for forbidden in [
        "<script",
        "src=\"http",
        "href=\"http",
        "@import",
        "url(",
        "PRIVATE KEY",
    ] {
        assert!(!html.contains(forbidden), "the page contains `{forbidden}`");
    }
    let key_line = second.key_pem.lines().nth(1).unwrap();
    assert!(!html.contains(key_line), "the page contains key material");

    if !chromium_available() {
        return;
    }
    let url = format!("http://{}/", scene.admin);
    let artifacts = target_dir().join("test-artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    let screenshot = artifacts.join("status-page.png");
    let _ = std::fs::remove_file(&screenshot);
    let profile = tempfile::tempdir().unwrap();
    let (ok, stdout, stderr) = chromium(
        profile.path(),
        &[
            &format!("--screenshot={}", screenshot.display()),
            "--window-size=1280,900",
        ],
        &url,
    );
    assert!(ok, "chromium --screenshot failed:\n{stdout}\n{stderr}");
    let png = std::fs::read(&screenshot)
        .unwrap_or_else(|e| panic!("no screenshot at {}: {e}\n{stderr}", screenshot.display()));
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "a PNG file");
    let width = u32::from_be_bytes(png[16..20].try_into().unwrap());
    let height = u32::from_be_bytes(png[20..24].try_into().unwrap());
    assert_eq!((width, height), (1280, 900), "the window size");
    assert!(
        png.len() > 20_000,
        "a blank page compresses to almost nothing; this one is {} bytes",
        png.len()
    );
    eprintln!("status page screenshot: {}", screenshot.display());

    let (ok, dom, stderr) = chromium(profile.path(), &["--dump-dom"], &url);
    assert!(ok, "chromium --dump-dom failed:\n{stderr}");
    for needle in [
        "vault",
        "files",
        &second.thumbprint.to_string(),
        &scene.file_leaf.thumbprint.to_string(),
        &second_version,
    ] {
        assert!(
            dom.contains(needle),
            "the rendered DOM shows `{needle}`:\n{dom}"
        );
    }
    assert!(dom.contains("<table class=\"timeline\">"), "{dom}");
}

#[test]
fn gateway_status_prints_each_listener_and_names_a_dead_address() {
    let scene = Scene::new();
    let gateway = Gateway::start(&scene.config, &[]);
    let (second, second_version) = scene.rotate(&gateway);
    let admin = scene.admin.to_string();

    let (ok, stdout, stderr) = gateway_cli(&["status", "--admin", &admin], &[]);
    assert!(ok, "{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2, "one line per listener:\n{stdout}");
    let line_of = |name: &str| {
        *lines
            .iter()
            .find(|l| l.split_whitespace().next() == Some(name))
            .unwrap_or_else(|| panic!("a line for `{name}`:\n{stdout}"))
    };
    let vault = line_of("vault");
    for needle in [
        "state=serving",
        &format!("thumbprint={}", second.thumbprint),
        &format!("version={second_version}"),
        "days_to_expiry=",
        "last_check=rotated",
    ] {
        assert!(vault.contains(needle), "`{vault}` has `{needle}`");
    }
    let files = line_of("files");
    for needle in [
        "state=serving",
        &format!("thumbprint={}", scene.file_leaf.thumbprint),
        "version=-",
        "last_check=-",
    ] {
        assert!(files.contains(needle), "`{files}` has `{needle}`");
    }

    // The same from the config's `[admin] bind`.
    let (ok, from_config, stderr) =
        gateway_cli(&["status", "--config", scene.config.to_str().unwrap()], &[]);
    assert!(ok, "{stderr}");
    assert_eq!(from_config, stdout);
    drop(gateway);

    // Nothing listens there any more: one line naming the address.
    let (ok, stdout, stderr) = gateway_cli(&["status", "--admin", &admin], &[]);
    assert!(!ok, "{stdout}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains(&admin), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn json_logs_are_one_object_per_line_and_carry_no_secret() {
    let scene = Scene::new();
    let gateway = Gateway::start_with_args(
        &scene.config,
        &["--log-format", "json"],
        &[("RUST_LOG", "trace")],
    );
    let (second, _) = scene.rotate(&gateway);
    assert_eq!(
        https_get(gateway.addr("files"), "localhost", &scene.pki.ca_pem, "/").status(),
        200
    );
    let stderr = gateway.kill();

    let mut messages = Vec::new();
    for line in stderr.lines() {
        let json: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("a log line that is not JSON ({e}): {line}"));
        assert!(json["level"].is_string(), "{line}");
        assert!(json["timestamp"].is_string(), "{line}");
        messages.push(json);
    }
    assert!(messages.len() > 5, "the run logged:\n{stderr}");
    assert!(
        messages
            .iter()
            .any(|m| m["thumbprint"] == second.thumbprint.to_string()),
        "a line names the new certificate:\n{stderr}"
    );
    for forbidden in ["PRIVATE KEY", "Bearer ", "bearer ", "eyJ"] {
        assert!(
            !stderr.contains(forbidden),
            "a log line contains `{forbidden}`"
        );
    }
    for leaf in [&scene.first, &second, &scene.file_leaf] {
        for key_line in leaf.key_pem.lines().filter(|l| !l.starts_with("-----")) {
            assert!(!stderr.contains(key_line), "key material in the logs");
        }
    }

    // The environment variable does the same.
    let gateway = Gateway::start(&scene.config, &[("GATEWAY_LOG_FORMAT", "json")]);
    let stderr = gateway.kill();
    let lines: Vec<Value> = stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(
        lines
            .iter()
            .any(|l| l["message"] == "certificate restored from the event log"),
        "{stderr}"
    );
    let (ok, _, stderr) = gateway_cli(&["--log-format", "yaml", "audit", "--state", "x"], &[]);
    assert!(!ok);
    assert!(stderr.contains("yaml"), "{stderr}");
}

#[test]
fn logs_are_human_readable_by_default() {
    let scene = Scene::new();
    let stderr = Gateway::start(&scene.config, &[]).kill();
    let first = stderr.lines().next().expect("the gateway logs");
    assert!(serde_json::from_str::<Value>(first).is_err(), "{first}");
    assert!(first.contains("INFO") || first.contains("DEBUG"), "{first}");
}

// ---- gateway audit on a log with thousands of events ---------------------------------------

const LISTENERS: [&str; 3] = ["web", "api", "admin-ui"];
const PER_BATCH: usize = 1000;

/// One appended entry as the test remembers it.
#[derive(Clone)]
struct Appended {
    seq: u64,
    listener: String,
    kind: &'static str,
}

fn event_for(i: usize) -> (Event, &'static str) {
    let thumbprint = Thumbprint([(i % 251) as u8; 32]);
    match i % 5 {
        0 => (
            Event::CertificateFetched {
                source: "https://vault.example/secrets/site".into(),
                version: Some(format!("v{i}")),
                thumbprint,
            },
            "certificate_fetched",
        ),
        1 => (
            Event::FetchFailed {
                trigger: Trigger::Schedule,
                class: FailureClass::Transient,
                message: format!("attempt {i}: connection refused"),
            },
            "fetch_failed",
        ),
        2 => (
            Event::CertificateRejected {
                trigger: Trigger::Manual,
                thumbprint: Some(thumbprint),
                version: Some(format!("v{i}")),
                reason: "expired".into(),
            },
            "certificate_rejected",
        ),
        3 => (
            Event::ExpiryWarning {
                thumbprint,
                not_after: 1_900_000_000,
            },
            "expiry_warning",
        ),
        _ => (
            Event::ListenerConfigured {
                source: format!("pem_file:/etc/site-{i}.pem"),
            },
            "listener_configured",
        ),
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// `gateway audit --state STATE --json ARGS`, as printed (newest first).
fn audit_lines(state: &Path, args: &[&str]) -> Vec<Value> {
    let mut all = vec!["audit", "--state", state.to_str().unwrap(), "--json"];
    all.extend_from_slice(args);
    let (ok, stdout, stderr) = gateway_cli(&all, &[]);
    assert!(ok, "audit {args:?}: {stderr}");
    stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

fn seqs(events: &[Value]) -> Vec<u64> {
    events.iter().map(|e| e["seq"].as_u64().unwrap()).collect()
}

/// The expected answer: the matching entries, newest first, at most `limit`.
fn expect(
    appended: &[Appended],
    keep: impl Fn(&Appended) -> bool,
    limit: Option<usize>,
) -> Vec<u64> {
    appended
        .iter()
        .rev()
        .filter(|a| keep(a))
        .take(limit.unwrap_or(usize::MAX))
        .map(|a| a.seq)
        .collect()
}

#[test]
fn audit_filters_a_log_with_thousands_of_events_newest_first() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let log = EventLog::open(&state).unwrap();
    let mut appended = Vec::new();
    let mut bounds = Vec::new();
    for batch in 0..3 {
        if batch > 0 {
            // `append` stamps the current time: leave a gap on both sides of each bound.
            std::thread::sleep(Duration::from_millis(5));
            bounds.push(now_ms());
            std::thread::sleep(Duration::from_millis(5));
        }
        for i in batch * PER_BATCH..(batch + 1) * PER_BATCH {
            let listener = LISTENERS[i % LISTENERS.len()];
            let (event, kind) = event_for(i / LISTENERS.len());
            let envelope = log.append(listener, event).unwrap();
            assert_eq!(envelope.kind().as_str(), kind);
            appended.push((
                Appended {
                    seq: envelope.seq,
                    listener: listener.to_owned(),
                    kind,
                },
                batch,
            ));
        }
    }
    drop(log);
    let batch_of = |seq: u64| appended[(seq - 1) as usize].1;
    let appended: Vec<Appended> = appended.iter().map(|(a, _)| a.clone()).collect();
    let total = appended.len();
    assert_eq!(total, 3 * PER_BATCH);
    let rfc3339 = |ms: i64| event_log::format_ms(ms);
    let (t1, t2) = (rfc3339(bounds[0]), rfc3339(bounds[1]));

    // Everything, newest first, every line JSON with the fields tools read.
    let all = audit_lines(&state, &[]);
    assert_eq!(seqs(&all), expect(&appended, |_| true, None));
    assert_eq!(all[0]["seq"], total as u64);
    assert!(all
        .windows(2)
        .all(|w| w[0]["at_ms"].as_i64() >= w[1]["at_ms"].as_i64()));
    for event in &all {
        for field in ["seq", "at", "at_ms", "listener", "kind", "prev_hash"] {
            assert!(!event[field].is_null(), "`{field}` in {event}");
        }
    }

    // The table: a header, then one line per event, newest first.
    let (ok, table, stderr) = gateway_cli(&["audit", "--state", state.to_str().unwrap()], &[]);
    assert!(ok, "{stderr}");
    let rows: Vec<&str> = table.lines().collect();
    assert_eq!(rows.len(), total + 1, "a header and one line per event");
    assert!(rows[0].trim_start().starts_with("SEQ"), "{}", rows[0]);
    assert!(
        rows[0].contains("LISTENER") && rows[0].contains("KIND"),
        "{}",
        rows[0]
    );
    let table_seqs: Vec<u64> = rows[1..]
        .iter()
        .map(|r| r.split_whitespace().next().unwrap().parse().unwrap())
        .collect();
    assert_eq!(table_seqs, seqs(&all));

    // --listener, --kind, and both.
    let api = audit_lines(&state, &["--listener", "api"]);
    assert_eq!(seqs(&api), expect(&appended, |a| a.listener == "api", None));
    assert_eq!(api.len(), PER_BATCH);
    assert!(api.iter().all(|e| e["listener"] == "api"));
    let failed = audit_lines(&state, &["--kind", "fetch_failed"]);
    assert_eq!(
        seqs(&failed),
        expect(&appended, |a| a.kind == "fetch_failed", None)
    );
    assert!(failed.iter().all(|e| e["kind"] == "fetch_failed"));
    assert!(!failed.is_empty());
    let both = audit_lines(
        &state,
        &["--listener", "web", "--kind", "certificate_rejected"],
    );
    assert_eq!(
        seqs(&both),
        expect(
            &appended,
            |a| a.listener == "web" && a.kind == "certificate_rejected",
            None
        )
    );
    assert!(!both.is_empty());

    // --since / --until with RFC 3339 bounds recorded between the batches.
    let middle = audit_lines(&state, &["--since", &t1, "--until", &t2]);
    assert_eq!(
        seqs(&middle),
        expect(&appended, |a| batch_of(a.seq) == 1, None)
    );
    assert_eq!(middle.len(), PER_BATCH);
    let later = audit_lines(&state, &["--since", &t1]);
    assert_eq!(
        seqs(&later),
        expect(&appended, |a| batch_of(a.seq) >= 1, None)
    );
    let earlier = audit_lines(&state, &["--until", &t1]);
    assert_eq!(
        seqs(&earlier),
        expect(&appended, |a| batch_of(a.seq) == 0, None)
    );
    // Ages: everything is younger than an hour.
    assert_eq!(audit_lines(&state, &["--since", "1h"]).len(), total);
    assert!(audit_lines(&state, &["--until", "1h"]).is_empty());

    // --limit keeps the most recent N, also after the other filters.
    let latest = audit_lines(&state, &["--limit", "25"]);
    assert_eq!(seqs(&latest), expect(&appended, |_| true, Some(25)));
    assert_eq!(latest[0]["seq"], total as u64);
    let latest_api_middle = audit_lines(
        &state,
        &[
            "--listener",
            "api",
            "--since",
            &t1,
            "--until",
            &t2,
            "--limit",
            "7",
        ],
    );
    assert_eq!(
        seqs(&latest_api_middle),
        expect(
            &appended,
            |a| a.listener == "api" && batch_of(a.seq) == 1,
            Some(7)
        )
    );
    let (ok, table, _) = gateway_cli(
        &["audit", "--state", state.to_str().unwrap(), "--limit", "3"],
        &[],
    );
    assert!(ok);
    assert_eq!(table.lines().count(), 4);

    // A bad bound is one line naming the flag; --verify still walks the whole chain.
    let (ok, _, stderr) = gateway_cli(
        &[
            "audit",
            "--state",
            state.to_str().unwrap(),
            "--until",
            "soon",
        ],
        &[],
    );
    assert!(!ok);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("--until `soon`"), "{stderr}");
    let (ok, stdout, stderr) = gateway_cli(
        &["audit", "--state", state.to_str().unwrap(), "--verify"],
        &[],
    );
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains(&format!("{total} entries verified")),
        "{stdout}"
    );
}
