//! Zero-downtime rotation: clients keep shaking hands and sending keep-alive requests while the
//! certificate is rotated over and over, and not one of them notices anything but the new
//! certificate.

mod common;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cert_bundle::Thumbprint;
use common::*;

const ROTATIONS: usize = 20;
/// Threads that open new connections (a handshake and a few keep-alive requests each).
const HANDSHAKERS: usize = 4;
/// Threads that each keep one connection, opened before the first swap, busy to the end.
const LONG_LIVED: usize = 4;
/// Upper bound of the rotation loop, far above what it needs: a bound, not a speed requirement.
const ROTATION_BUDGET: Duration = Duration::from_secs(120);

/// What the client threads saw.
#[derive(Default)]
struct Seen {
    /// The leaf of every full handshake (a resumed one shows the leaf of the session it resumes).
    leaves: Vec<Thumbprint>,
    /// The leaf of every resumed handshake: that of its original session.
    resumed_leaves: Vec<Thumbprint>,
    handshakes: usize,
    requests: usize,
    /// Requests on the connections opened before the first swap.
    long_lived_requests: usize,
    failures: Vec<String>,
}

/// A client configuration for new connections: with `resume`, one session cache shared by the
/// thread's connections (TLS 1.3 tickets); without, every handshake is a full one, in which the
/// server presents the certificate it serves at that moment.
fn new_connection_config(ca_pem: &str, resume: bool) -> Arc<rustls::ClientConfig> {
    let mut config = (*client_config(ca_pem, &[b"http/1.1"])).clone();
    if !resume {
        config.resumption = rustls::client::Resumption::disabled();
    }
    Arc::new(config)
}

#[test]
fn rotating_twenty_times_under_load_fails_no_handshake_and_no_request() {
    let vault = TestVault::start();
    let pki = Pki::new();
    let backend = EchoBackend::start();
    let dir = tempfile::tempdir().unwrap();
    let first = pki.leaf(&["localhost"]);
    vault.import("site", &first, &pki);
    let admin = free_loopback_addr();
    let config = rotation_config(
        dir.path(),
        &vault,
        &vault.info().client_id,
        "schedule = \"0 0 0 1 1 *\"\njitter = \"0s\"",
        admin,
        &[ListenerSpec::key_vault("web", &vault.secret_uri("site"))],
        backend.addr,
    );
    let gateway = Gateway::start(&config, &[]);
    let addr = gateway.addr("web");
    let client = new_connection_config(&pki.ca_pem, false);

    // Every certificate that may be served; a new one is added before it is imported.
    let installable = Arc::new(Mutex::new(BTreeSet::from([first.thumbprint])));
    let stop = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(Mutex::new(Seen::default()));

    // Long-lived connections, opened before the first swap and kept busy through all of them.
    let mut long_lived = Vec::new();
    for t in 0..LONG_LIVED {
        let mut connection = KeepAliveConnection::open_with(client.clone(), addr, "localhost")
            .expect("a connection before any swap");
        assert_eq!(connection.leaf, first.thumbprint);
        let (stop, seen) = (stop.clone(), seen.clone());
        long_lived.push(std::thread::spawn(move || {
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                let path = format!("/long-lived/{t}/{n}");
                let result = connection.get(&path);
                let mut seen = seen.lock().unwrap();
                seen.requests += 1;
                seen.long_lived_requests += 1;
                match result {
                    Ok((200, body)) if body.starts_with(&format!("GET {path} HTTP/1.1")) => {}
                    Ok((status, body)) => seen
                        .failures
                        .push(format!("{path}: status {status}: {body}")),
                    Err(err) => {
                        seen.failures.push(format!("{path}: {err}"));
                        return None;
                    }
                }
                drop(seen);
                n += 1;
                std::thread::sleep(Duration::from_millis(20));
            }
            Some(connection)
        }));
    }

    // New connections all the time: a handshake, then three requests on the connection. Half
    // of the threads make full handshakes, half resume their sessions across the swaps.
    let mut handshakers = Vec::new();
    for t in 0..HANDSHAKERS {
        let resume = t % 2 == 1;
        let client = new_connection_config(&pki.ca_pem, resume);
        let (stop, seen) = (stop.clone(), seen.clone());
        handshakers.push(std::thread::spawn(move || {
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                let outcome = KeepAliveConnection::open_with(client.clone(), addr, "localhost");
                let mut connection = match outcome {
                    Ok(connection) => connection,
                    Err(err) => {
                        let mut seen = seen.lock().unwrap();
                        seen.handshakes += 1;
                        seen.failures.push(format!("handshake {t}/{n}: {err}"));
                        n += 1;
                        continue;
                    }
                };
                {
                    let mut seen = seen.lock().unwrap();
                    seen.handshakes += 1;
                    if connection.resumed {
                        seen.resumed_leaves.push(connection.leaf);
                    } else {
                        seen.leaves.push(connection.leaf);
                    }
                }
                for r in 0..3 {
                    let path = format!("/new/{t}/{n}/{r}");
                    let result = connection.get(&path);
                    let mut seen = seen.lock().unwrap();
                    seen.requests += 1;
                    match result {
                        Ok((200, body)) if body.starts_with(&format!("GET {path} HTTP/1.1")) => {}
                        Ok((status, body)) => seen
                            .failures
                            .push(format!("{path}: status {status}: {body}")),
                        Err(err) => {
                            seen.failures.push(format!("{path}: {err}"));
                            break;
                        }
                    }
                }
                n += 1;
            }
        }));
    }

    // Rotate: import a new version, refresh, and check that new handshakes see it. Before each
    // rotation the clients have made progress since the one before, so every swap happens under
    // load (a pace, not a speed requirement: the wait is bounded and not asserted).
    let started = Instant::now();
    let mut last = first.thumbprint;
    let mut rotations = 0;
    let progress = || {
        let seen = seen.lock().unwrap();
        (seen.handshakes, seen.long_lived_requests)
    };
    while rotations < ROTATIONS && started.elapsed() < ROTATION_BUDGET {
        let (handshakes, long_lived_requests) = progress();
        let pace = Instant::now() + Duration::from_secs(5);
        while Instant::now() < pace {
            let (h, l) = progress();
            if h >= handshakes + 2 * HANDSHAKERS && l >= long_lived_requests + 2 * LONG_LIVED {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let next = pki.leaf(&["localhost"]);
        installable.lock().unwrap().insert(next.thumbprint);
        let version = vault.import("site", &next, &pki);
        let outcome = admin_refresh(admin, "web");
        assert_eq!(outcome["outcome"], "rotated", "{outcome}");
        assert_eq!(outcome["from"], last.to_string());
        assert_eq!(outcome["to"], next.thumbprint.to_string());
        assert_eq!(outcome["version"], version.as_str());
        assert_eq!(
            served_leaf(addr, "localhost", &pki.ca_pem),
            next.thumbprint,
            "a handshake after the refresh answered sees the new certificate"
        );
        last = next.thumbprint;
        rotations += 1;
        let progress = seen.lock().unwrap();
        eprintln!(
            "rotation {rotations} done after {:?}: {} handshakes, {} requests, {} failures so far",
            started.elapsed(),
            progress.handshakes,
            progress.requests,
            progress.failures.len()
        );
    }
    assert_eq!(
        rotations, ROTATIONS,
        "rotations done within {ROTATION_BUDGET:?}"
    );

    // Let the new-connection threads see the last certificate before stopping them.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !seen.lock().unwrap().leaves.contains(&last) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    stop.store(true, Ordering::Relaxed);
    for handle in handshakers {
        handle.join().unwrap();
    }
    let mut survivors = Vec::new();
    for handle in long_lived {
        survivors.extend(handle.join().unwrap());
    }

    let seen = seen.lock().unwrap();
    assert!(
        seen.failures.is_empty(),
        "{} failures out of {} handshakes and {} requests, first ones: {:#?}",
        seen.failures.len(),
        seen.handshakes,
        seen.requests,
        &seen.failures[..seen.failures.len().min(10)]
    );
    assert!(
        seen.leaves.contains(&last),
        "new connections saw the last certificate ({} handshakes, {} requests)",
        seen.handshakes,
        seen.requests
    );
    let installable = installable.lock().unwrap();
    for leaf in &seen.leaves {
        assert!(
            installable.contains(leaf),
            "a handshake saw {leaf}, which was never installed"
        );
    }
    for leaf in &seen.resumed_leaves {
        assert!(
            installable.contains(leaf),
            "a resumed session was of {leaf}, which was never installed"
        );
    }
    assert!(
        !seen.resumed_leaves.is_empty(),
        "sessions were resumed across the swaps"
    );
    let distinct: BTreeSet<_> = seen.leaves.iter().collect();
    eprintln!(
        "{} handshakes ({} resumed) and {} requests during {ROTATIONS} rotations; full handshakes saw {} distinct certificates",
        seen.handshakes,
        seen.resumed_leaves.len(),
        seen.requests,
        distinct.len()
    );

    // The connections opened before the first swap still work after the last one.
    assert_eq!(survivors.len(), LONG_LIVED);
    for (t, connection) in survivors.iter_mut().enumerate() {
        assert_eq!(connection.leaf, first.thumbprint);
        let path = format!("/long-lived/{t}/after-the-last-swap");
        let (status, body) = connection.get(&path).unwrap();
        assert_eq!(status, 200, "{body}");
        assert!(body.starts_with(&format!("GET {path} HTTP/1.1")), "{body}");
    }

    // The log has every rotation, in order, with the certificates imported.
    let events = audit_json(&dir.path().join("state"), &["--listener", "web"]);
    let installed: Vec<&serde_json::Value> = events
        .iter()
        .filter(|e| e["kind"] == "certificate_installed")
        .collect();
    assert_eq!(installed.len(), ROTATIONS + 1);
    for pair in installed.windows(2) {
        assert_eq!(pair[1]["trigger"], "manual");
        assert_eq!(pair[1]["previous"], pair[0]["thumbprint"]);
    }
    let logged: BTreeSet<String> = installed
        .iter()
        .map(|e| e["thumbprint"].as_str().unwrap().to_owned())
        .collect();
    let expected: BTreeSet<String> = installable.iter().map(ToString::to_string).collect();
    assert_eq!(logged, expected);
    assert!(events.iter().all(|e| e["kind"] != "fetch_failed"));
}
