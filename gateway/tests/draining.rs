//! Connection draining: when its probe takes a member out of rotation, nothing new goes to it, and
//! the requests already sent to it may finish within `drain_timeout` — and are cut after it.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;

/// A backend whose `/health` answers 200 while `healthy` holds and 503 after, and whose `/slow`
/// answers after `slow`.
struct SwitchableBackend {
    addr: SocketAddr,
    healthy: Arc<AtomicBool>,
}

impl SwitchableBackend {
    fn start(slow: Duration) -> SwitchableBackend {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let healthy = Arc::new(AtomicBool::new(true));
        let flag = healthy.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let flag = flag.clone();
                std::thread::spawn(move || answer(stream, &flag, slow));
            }
        });
        SwitchableBackend { addr, healthy }
    }
}

fn answer(stream: TcpStream, healthy: &AtomicBool, slow: Duration) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
            return;
        }
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 || line.trim().is_empty() {
                break;
            }
        }
        let (status, body) = if request_line.contains("/health") {
            if healthy.load(Ordering::SeqCst) {
                ("200 OK", "healthy")
            } else {
                ("503 Service Unavailable", "unhealthy")
            }
        } else {
            std::thread::sleep(slow);
            ("200 OK", "slow answer done")
        };
        let reply = format!(
            "HTTP/1.1 {status}\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        if writer.write_all(reply.as_bytes()).is_err() {
            return;
        }
    }
}

fn config(dir: &std::path::Path, backend: SocketAddr, drain: &str) -> std::path::PathBuf {
    let config = dir.join("gateway.toml");
    std::fs::write(
        &config,
        format!(
            r#"[state]
dir = "state"
[admin]
bind = "127.0.0.1:0"
[[listener]]
name = "plain"
bind = "127.0.0.1:0"
protocol = "http"
[[backend_pool]]
name = "app"
addresses = ["{backend}"]
drain_timeout = "{drain}"
[backend_pool.probe]
path = "/health"
interval = "100ms"
timeout = "1s"
unhealthy_threshold = 1
[[rule]]
name = "all"
listener = "plain"
backend_pool = "app"
"#
        ),
    )
    .unwrap();
    config
}

fn get(addr: SocketAddr, path: &str) -> String {
    http_exchange(
        addr,
        &format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"),
    )
}

/// Waits until a fresh request is refused with 502: the member is out of rotation.
fn wait_until_out_of_rotation(addr: SocketAddr) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let answer = get(addr, "/fast");
        if answer.starts_with("HTTP/1.1 502") || Instant::now() > deadline {
            return answer;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_request_in_flight_finishes_within_the_drain_timeout_while_new_ones_are_not_sent() {
    let dir = tempfile::tempdir().unwrap();
    let backend = SwitchableBackend::start(Duration::from_secs(2));
    let gateway = Gateway::start(&config(dir.path(), backend.addr, "10s"), &[]);
    let addr = gateway.addr("plain");

    let in_flight = std::thread::spawn(move || get(addr, "/slow"));
    std::thread::sleep(Duration::from_millis(300));
    backend.healthy.store(false, Ordering::SeqCst);

    let refused = wait_until_out_of_rotation(addr);
    assert!(
        refused.starts_with("HTTP/1.1 502"),
        "no new request goes to a member out of rotation: {refused}"
    );
    let finished = in_flight.join().unwrap();
    assert!(
        finished.starts_with("HTTP/1.1 200"),
        "the request already sent finishes: {finished}"
    );
    assert!(finished.ends_with("slow answer done"), "{finished}");
}

#[test]
fn a_request_in_flight_is_cut_when_the_drain_timeout_passes() {
    let dir = tempfile::tempdir().unwrap();
    let backend = SwitchableBackend::start(Duration::from_secs(6));
    let gateway = Gateway::start(&config(dir.path(), backend.addr, "1s"), &[]);
    let addr = gateway.addr("plain");

    let in_flight = std::thread::spawn(move || get(addr, "/slow"));
    std::thread::sleep(Duration::from_millis(300));
    backend.healthy.store(false, Ordering::SeqCst);
    wait_until_out_of_rotation(addr);

    let cut = in_flight.join().unwrap();
    assert!(
        !cut.ends_with("slow answer done"),
        "the drain timeout cut the request: {cut}"
    );
    assert!(cut.starts_with("HTTP/1.1 502") || cut.is_empty(), "{cut}");
}
