//! `cargo xtask bench`: the gateway, nginx and HAProxy side by side on this machine, one at a time,
//! with the same certificate, the same backend and the same load, following
//! `../shared/reference/performance.md` §6. Installs nothing: it names what is missing.
//!
//! Output: `target/bench/report.md` (medians and gateway/nginx, gateway/HAProxy ratios) and the raw
//! output of every tool run in `target/bench/raw/`.

use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};

const LISTEN: &str = "127.0.0.1:8443";
const BACKEND: &str = "127.0.0.1:8080";
const ADMIN: &str = "127.0.0.1:9443";
const URL: &str = "https://localhost:8443/";
/// About 100 bytes, the backend's whole answer.
const BODY: &str = "Hello from the benchmark backend. This answer is about one hundred bytes long, padded to that size.\n";

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Server {
    Gateway,
    Nginx,
    Haproxy,
}

impl Server {
    const ALL: [Server; 3] = [Server::Gateway, Server::Nginx, Server::Haproxy];

    fn name(self) -> &'static str {
        match self {
            Server::Gateway => "gateway",
            Server::Nginx => "nginx",
            Server::Haproxy => "haproxy",
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Key {
    Ecdsa,
    Rsa,
}

impl Key {
    fn name(self) -> &'static str {
        match self {
            Key::Ecdsa => "ecdsa",
            Key::Rsa => "rsa",
        }
    }
}

struct Options {
    duration: u64,
    reps: usize,
}

struct Bench {
    root: PathBuf,
    dir: PathBuf,
    options: Options,
    rows: Vec<Row>,
    /// What each server negotiated with h2load in C, as h2load printed it, for the report.
    negotiated: Vec<String>,
}

/// One figure of one scenario, for each server in `Server::ALL` order.
struct Row {
    scenario: String,
    figure: String,
    unit: &'static str,
    higher_is_better: bool,
    values: [Option<f64>; 3],
}

pub fn run(root: &Path, args: &[String]) -> anyhow::Result<()> {
    let mut options = Options {
        duration: 15,
        reps: 3,
    };
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--quick" => {
                options.duration = 5;
                options.reps = 1;
            }
            "--duration" => options.duration = args.next().context("--duration SECONDS")?.parse()?,
            "--reps" => options.reps = args.next().context("--reps N")?.parse()?,
            other => bail!("unknown option `{other}`; usage: cargo xtask bench [--quick] [--duration S] [--reps N]"),
        }
    }
    check_tools()?;
    let dir = root.join("target/bench");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("raw"))?;
    let mut bench = Bench {
        root: root.to_owned(),
        dir,
        options,
        rows: Vec::new(),
        negotiated: Vec::new(),
    };
    bench.prepare()?;
    let backend = bench.start_backend()?;
    let result = bench.scenarios();
    stop(backend);
    result?;
    let report = bench.report();
    std::fs::write(bench.dir.join("report.md"), &report)?;
    println!("{report}");
    println!("written to {}", bench.dir.join("report.md").display());
    Ok(())
}

fn check_tools() -> anyhow::Result<()> {
    let missing: Vec<&str> = [
        ("nginx", "nginx-light"),
        ("haproxy", "haproxy"),
        ("wrk", "wrk"),
        ("h2load", "nghttp2-client"),
        ("openssl", "openssl"),
    ]
    .into_iter()
    .filter(|(tool, _)| which(tool).is_none())
    .map(|(_, package)| package)
    .collect();
    if !missing.is_empty() {
        bail!(
            "missing tools; install them with: sudo apt-get install {}",
            missing.join(" ")
        );
    }
    Ok(())
}

fn which(tool: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
            .map(|p| p.join(tool))
            .find(|p| p.is_file())
    })
}

fn stop(mut child: Child) {
    // SIGTERM first so that servers exit cleanly, then make sure.
    let _ = Command::new("kill").arg(child.id().to_string()).status();
    for _ in 0..50 {
        if matches!(child.try_wait(), Ok(Some(_))) {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
}

fn wait_for_port(addr: &str) -> anyhow::Result<()> {
    let addr: SocketAddr = addr.parse()?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    bail!("nothing listens on {addr} after 30 s")
}

fn wait_for_port_free(addr: &str) {
    let addr: SocketAddr = addr.parse().expect("fixed address");
    for _ in 0..100 {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_err() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn median(mut values: Vec<f64>) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(|a, b| a.total_cmp(b));
    Some(values[values.len() / 2])
}

impl Bench {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Builds the gateway in release mode and makes the certificates.
    fn prepare(&self) -> anyhow::Result<()> {
        println!("building the gateway (release)…");
        let status = Command::new(env!("CARGO"))
            .current_dir(&self.root)
            .args(["build", "--release", "--quiet", "-p", "gateway"])
            .status()?;
        if !status.success() {
            bail!("building the gateway failed");
        }
        for key in [Key::Ecdsa, Key::Rsa] {
            let newkey = match key {
                Key::Ecdsa => vec!["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"],
                Key::Rsa => vec!["-newkey", "rsa:2048"],
            };
            let (cert, keyfile) = (
                self.path(&format!("{}-cert.pem", key.name())),
                self.path(&format!("{}-key.pem", key.name())),
            );
            self_signed(&newkey, &cert, &keyfile)?;
            let combined = format!(
                "{}{}",
                std::fs::read_to_string(&cert)?,
                std::fs::read_to_string(&keyfile)?
            );
            std::fs::write(self.path(&format!("{}-combined.pem", key.name())), combined)?;
        }
        Ok(())
    }

    /// nginx as the shared backend: one worker answering ~100 bytes, keep-alive.
    fn start_backend(&self) -> anyhow::Result<Child> {
        let conf = self.path("backend-nginx.conf");
        std::fs::write(
            &conf,
            format!(
                "worker_processes 1;\npid {dir}/backend.pid;\nerror_log {dir}/backend-error.log;\nevents {{ worker_connections 16384; }}\n\
                 http {{ access_log off; keepalive_requests 100000000; client_body_temp_path {dir}/tmp; proxy_temp_path {dir}/tmp; \
                 fastcgi_temp_path {dir}/tmp; uwsgi_temp_path {dir}/tmp; scgi_temp_path {dir}/tmp;\n  \
                 server {{ listen {BACKEND} backlog=4096; location / {{ default_type text/plain; return 200 \"{BODY}\"; }} }} }}\n",
                dir = self.dir.display()
            ),
        )?;
        std::fs::create_dir_all(self.path("tmp"))?;
        let child = Command::new(which("nginx").expect("checked"))
            .args(["-g", "daemon off;", "-c"])
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        wait_for_port(BACKEND)?;
        Ok(child)
    }

    /// Starts one server on 127.0.0.1:8443 with `key`. For the gateway, `vault` switches the listener
    /// to a Key Vault reference (the rotation scenario).
    fn start(&self, server: Server, key: Key, vault: Option<&VaultSetup>) -> anyhow::Result<Child> {
        wait_for_port_free(LISTEN);
        let cert = self.path(&format!("{}-cert.pem", key.name()));
        let keyfile = self.path(&format!("{}-key.pem", key.name()));
        let child = match server {
            Server::Gateway => {
                let state = self.path(&format!("gateway-state-{}", unique()));
                let certificate = match vault {
                    Some(v) => format!("{{ key_vault_secret_id = \"{}\" }}", v.secret_uri),
                    None => format!(
                        "{{ pem_file = \"{}\" }}",
                        self.path(&format!("{}-combined.pem", key.name())).display()
                    ),
                };
                let identity = match vault {
                    Some(v) => v.config.clone(),
                    None => String::new(),
                };
                let conf = self.path("gateway.toml");
                std::fs::write(
                    &conf,
                    format!(
                        "[state]\ndir = \"{}\"\n[admin]\nbind = \"{ADMIN}\"\n{identity}\n[[listener]]\nname = \"bench\"\nbind = \"{LISTEN}\"\nprotocol = \"https\"\n\
                         hostnames = [\"localhost\"]\ncertificate = {certificate}\n[[backend_pool]]\nname = \"backend\"\naddresses = [\"{BACKEND}\"]\n\
                         [[rule]]\nname = \"all\"\nlistener = \"bench\"\nbackend_pool = \"backend\"\n",
                        state.display()
                    ),
                )?;
                let mut child = Command::new(self.root.join("target/release/gateway"))
                    .args(["run", "--config"])
                    .arg(&conf)
                    .env("RUST_LOG", "warn")
                    .stdout(Stdio::piped())
                    .stderr(std::fs::File::create(self.path("gateway-stderr.log"))?)
                    .spawn()?;
                let stdout = child.stdout.take().expect("piped");
                let mut ready = false;
                for line in BufReader::new(stdout).lines() {
                    if line? == "ready" {
                        ready = true;
                        break;
                    }
                }
                if !ready {
                    bail!(
                        "the gateway did not start; see {}",
                        self.path("gateway-stderr.log").display()
                    );
                }
                child
            }
            Server::Nginx => {
                let conf = self.path("nginx.conf");
                std::fs::write(
                    &conf,
                    format!(
                        "worker_processes 2;\nworker_rlimit_nofile 20000;\npid {dir}/nginx.pid;\nerror_log {dir}/nginx-error.log;\nevents {{ worker_connections 16384; }}\n\
                         http {{ access_log off; keepalive_requests 100000000; client_body_temp_path {dir}/tmp; proxy_temp_path {dir}/tmp; \
                         fastcgi_temp_path {dir}/tmp; uwsgi_temp_path {dir}/tmp; scgi_temp_path {dir}/tmp;\n  \
                         upstream be {{ server {BACKEND}; keepalive 128; }}\n  \
                         server {{ listen {LISTEN} ssl http2 backlog=4096; ssl_certificate {cert}; ssl_certificate_key {key};\n    \
                         ssl_protocols TLSv1.2 TLSv1.3;\n    \
                         location / {{ proxy_pass http://be; proxy_http_version 1.1; proxy_set_header Connection \"\"; }} }} }}\n",
                        dir = self.dir.display(),
                        cert = cert.display(),
                        key = keyfile.display()
                    ),
                )?;
                let child = Command::new(which("nginx").expect("checked"))
                    .args(["-g", "daemon off;", "-c"])
                    .arg(&conf)
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()?;
                wait_for_port(LISTEN)?;
                child
            }
            Server::Haproxy => {
                let conf = self.path("haproxy.cfg");
                let combined = self.path(&format!("{}-combined.pem", key.name()));
                std::fs::write(
                    &conf,
                    format!(
                        // HAProxy picks TLS 1.3 suites in its own order, where AES-256 comes first;
                        // nginx and the gateway follow the client, whose first is AES-128.
                        "global\n  nbthread 2\n  maxconn 9000\n  stats socket {sock} level admin\n  ssl-default-bind-options ssl-min-ver TLSv1.2\n\
                         ssl-default-bind-ciphersuites TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256\n\
                         defaults\n  mode http\n  timeout connect 5s\n  timeout client 30s\n  timeout server 30s\n\
                         frontend fe\n  bind {LISTEN} ssl crt {combined} alpn h2,http/1.1\n  default_backend be\n\
                         backend be\n  http-reuse always\n  server s1 {BACKEND}\n",
                        sock = self.path("haproxy.sock").display(),
                        combined = combined.display()
                    ),
                )?;
                let child = Command::new(which("haproxy").expect("checked"))
                    .args(["-db", "-f"])
                    .arg(&conf)
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()?;
                wait_for_port(LISTEN)?;
                child
            }
        };
        Ok(child)
    }

    /// Runs a load tool, keeps its output under raw/, and returns it.
    fn tool(&self, label: &str, program: &str, args: &[String]) -> anyhow::Result<String> {
        let output = Command::new(which(program).expect("checked"))
            .args(args)
            .output()
            .with_context(|| format!("running {program}"))?;
        let text = format!(
            "$ {program} {}\n{}{}",
            args.join(" "),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        std::fs::write(self.dir.join("raw").join(format!("{label}.txt")), &text)?;
        Ok(text)
    }

    fn record(
        &mut self,
        scenario: &str,
        figure: &str,
        unit: &'static str,
        higher_is_better: bool,
        server: Server,
        value: Option<f64>,
    ) {
        let index = Server::ALL
            .iter()
            .position(|s| *s == server)
            .expect("a server");
        match self
            .rows
            .iter_mut()
            .find(|r| r.scenario == scenario && r.figure == figure)
        {
            Some(row) => row.values[index] = value,
            None => {
                let mut values = [None; 3];
                values[index] = value;
                self.rows.push(Row {
                    scenario: scenario.to_owned(),
                    figure: figure.to_owned(),
                    unit,
                    higher_is_better,
                    values,
                });
            }
        }
    }

    fn scenarios(&mut self) -> anyhow::Result<()> {
        let duration = self.options.duration;
        let reps = self.options.reps;
        let vault = VaultSetup::start(&self.dir)?;
        for server in Server::ALL {
            println!("== {}", server.name());
            let child = self.start(server, Key::Ecdsa, None)?;
            let pid = child.id();

            // A: HTTPS keep-alive HTTP/1.1, closed loop.
            let mut rps = Vec::new();
            let mut cpu_per_request = Vec::new();
            let mut errors = 0.0;
            for rep in 0..reps {
                let cpu_before = cpu_micros(server, pid);
                let out = self.tool(
                    &format!("A-{}-{rep}", server.name()),
                    "wrk",
                    &["-t1", "-c64", &format!("-d{duration}s"), "--latency", URL].map(String::from),
                )?;
                let cpu = cpu_micros(server, pid).zip(cpu_before).map(|(a, b)| a - b);
                if let (Some(cpu), Some(requests)) = (cpu, wrk_requests(&out)) {
                    cpu_per_request.push(cpu as f64 / requests);
                }
                rps.extend(parse_after(&out, "Requests/sec:"));
                errors += wrk_errors(&out);
            }
            self.record(
                "A. HTTP/1.1 keep-alive (wrk -c64)",
                "requests/s",
                "req/s",
                true,
                server,
                median(rps),
            );
            self.record(
                "A. HTTP/1.1 keep-alive (wrk -c64)",
                "server CPU per request",
                "µs",
                false,
                server,
                median(cpu_per_request),
            );
            self.record(
                "A. HTTP/1.1 keep-alive (wrk -c64)",
                "errors",
                "",
                false,
                server,
                Some(errors),
            );

            // B: HTTP/2 keep-alive.
            let mut rps = Vec::new();
            for rep in 0..reps {
                let out = self.tool(
                    &format!("B-{}-{rep}", server.name()),
                    "h2load",
                    &[
                        "-t1",
                        "-c16",
                        "-m32",
                        "-D",
                        &duration.to_string(),
                        "--warm-up-time=2",
                        URL,
                    ]
                    .map(String::from),
                )?;
                rps.extend(h2load_rps(&out));
            }
            self.record(
                "B. HTTP/2 keep-alive (h2load -c16 -m32)",
                "requests/s",
                "req/s",
                true,
                server,
                median(rps),
            );

            // D: latency at a fixed rate below saturation (1,000 req/s over 20 connections).
            let (mut p50s, mut p99s) = (Vec::new(), Vec::new());
            for rep in 0..reps {
                let log = self.path(&format!("D-{}-{rep}.log", server.name()));
                let _ = self.tool(
                    &format!("D-{}-{rep}", server.name()),
                    "h2load",
                    &[
                        "--h1",
                        "-t1",
                        "-c20",
                        "--rps",
                        "50",
                        "-D",
                        &duration.to_string(),
                        "--log-file",
                        &log.display().to_string(),
                        URL,
                    ]
                    .map(String::from),
                )?;
                let (p50, p99) = latency_percentiles(&log);
                p50s.extend(p50);
                p99s.extend(p99);
            }
            for (figure, values) in [("p50", p50s), ("p99", p99s)] {
                self.record(
                    "D. latency at 1,000 req/s (h2load --rps)",
                    figure,
                    "ms",
                    false,
                    server,
                    median(values),
                );
            }

            // F: resident memory with 5,000 idle TLS connections.
            let before = rss_kib(server, pid);
            let idle = open_idle_connections(5_000);
            let after = rss_kib(server, pid);
            self.record(
                "F. memory, 5,000 idle TLS connections",
                "connections held",
                "",
                true,
                server,
                Some(idle.len() as f64),
            );
            self.record(
                "F. memory, 5,000 idle TLS connections",
                "resident memory",
                "MiB",
                false,
                server,
                after.map(|a| a as f64 / 1024.0),
            );
            self.record(
                "F. memory, 5,000 idle TLS connections",
                "added per connection",
                "KiB",
                false,
                server,
                before
                    .zip(after)
                    .map(|(b, a)| (a as f64 - b as f64) / idle.len().max(1) as f64),
            );
            drop(idle);
            stop(child);

            // C: full handshakes, one request per new connection, ECDSA and RSA.
            for key in [Key::Ecdsa, Key::Rsa] {
                let child = self.start(server, key, None)?;
                let pid = child.id();
                let mut rps = Vec::new();
                let mut cpu_per_connection = Vec::new();
                let mut failed = 0.0;
                for rep in 0..reps {
                    let cpu_before = cpu_micros(server, pid);
                    let out = self.tool(
                        &format!("C-{}-{}-{rep}", server.name(), key.name()),
                        "h2load",
                        &["--h1", "-t1", "-c2000", "-n2000", URL].map(String::from),
                    )?;
                    if let (Some(after), Some(before)) = (cpu_micros(server, pid), cpu_before) {
                        cpu_per_connection.push((after - before) as f64 / 2000.0);
                    }
                    if rep == 0 {
                        self.negotiated.push(format!(
                            "{} ({}): {}",
                            server.name(),
                            key.name(),
                            h2load_tls(&out)
                        ));
                    }
                    rps.extend(h2load_rps(&out));
                    failed += h2load_failed(&out);
                }
                let scenario = format!(
                    "C. new TLS connection per request, {} (h2load -c2000 -n2000)",
                    key.name().to_uppercase()
                );
                self.record(
                    &scenario,
                    "connections/s",
                    "conn/s",
                    true,
                    server,
                    median(rps),
                );
                self.record(
                    &scenario,
                    "server CPU per connection",
                    "µs",
                    false,
                    server,
                    median(cpu_per_connection),
                );
                self.record(
                    &scenario,
                    "failed requests",
                    "",
                    false,
                    server,
                    Some(failed),
                );
                stop(child);
            }

            // E: rotation under load: every 2 s during A and during C-style reconnects.
            let child = self.start(
                server,
                Key::Ecdsa,
                (server == Server::Gateway).then_some(&vault),
            )?;
            for (label, program, args) in [
                (
                    "keep-alive",
                    "wrk",
                    vec![
                        "-t1".to_owned(),
                        "-c64".into(),
                        format!("-d{duration}s"),
                        URL.into(),
                    ],
                ),
                (
                    "reconnects",
                    "wrk",
                    vec![
                        "-t1".to_owned(),
                        "-c32".into(),
                        format!("-d{duration}s"),
                        "-H".into(),
                        "Connection: close".into(),
                        URL.into(),
                    ],
                ),
            ] {
                let (mut rps, mut failed, mut rotations_done) = (Vec::new(), 0.0, 0);
                for rep in 0..reps {
                    let stop_rotating = Arc::new(std::sync::atomic::AtomicBool::new(false));
                    let rotations = Arc::new(std::sync::atomic::AtomicUsize::new(0));
                    let rotator = {
                        let (stop_rotating, rotations) = (stop_rotating.clone(), rotations.clone());
                        let dir = self.dir.clone();
                        let vault = vault.handle.clone();
                        let secret = vault_secret_uri(&vault);
                        std::thread::spawn(move || {
                            while !stop_rotating.load(std::sync::atomic::Ordering::Relaxed) {
                                std::thread::sleep(Duration::from_secs(2));
                                if rotate(server, &dir, &vault, &secret).is_ok() {
                                    rotations.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                                }
                            }
                        })
                    };
                    let out = self.tool(
                        &format!("E-{}-{label}-{rep}", server.name()),
                        program,
                        &args,
                    )?;
                    stop_rotating.store(true, std::sync::atomic::Ordering::Relaxed);
                    let _ = rotator.join();
                    rps.extend(parse_after(&out, "Requests/sec:"));
                    failed += wrk_errors(&out);
                    rotations_done += rotations.load(std::sync::atomic::Ordering::Relaxed);
                }
                // Failures and rotations are summed over the runs, like A's and C's failures.
                let scenario = format!("E. rotation every 2 s under load ({label})");
                self.record(&scenario, "requests/s", "req/s", true, server, median(rps));
                self.record(
                    &scenario,
                    "failed requests",
                    "",
                    false,
                    server,
                    Some(failed),
                );
                self.record(
                    &scenario,
                    "rotations done",
                    "",
                    true,
                    server,
                    Some(rotations_done as f64),
                );
            }
            stop(child);
        }
        vault.handle.stop_in_place();
        Ok(())
    }

    fn report(&self) -> String {
        let mut out = String::new();
        let cpu = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|c| {
                c.lines()
                    .find(|l| l.starts_with("model name"))
                    .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
            })
            .unwrap_or_default();
        let _ = writeln!(out, "# Benchmark: gateway vs nginx vs HAProxy\n");
        let _ = writeln!(
            out,
            "Machine: {} cores, {cpu}. One server at a time on {LISTEN}, backend nginx (1 worker, ~100 B) on {BACKEND}, \
             the same self-signed certificate, 2 workers/threads each, access logs off, upstream keep-alive, TLS 1.2+1.3 enabled \
             with TLS_AES_128_GCM_SHA256 as the first choice everywhere (nginx and the gateway follow the client's order; HAProxy is told). Server CPU is user + system time from `/proc/PID/stat` (nginx: master and workers) over the run. Each figure is the median of {} run(s) of {} s; failed requests and rotations are summed over them; F is measured once per server. \
             Raw tool output is in `raw/`.\n",
            std::thread::available_parallelism().map_or(0, |n| n.get()),
            self.options.reps,
            self.options.duration
        );
        if !self.negotiated.is_empty() {
            let _ = writeln!(
                out,
                "Negotiated with h2load in C: {}.\n",
                self.negotiated.join("; ")
            );
        }
        let _ = writeln!(
            out,
            "| scenario | figure | gateway | nginx | HAProxy | gateway/nginx | gateway/HAProxy |"
        );
        let _ = writeln!(out, "|---|---|---:|---:|---:|---:|---:|");
        for Row {
            scenario,
            figure,
            unit,
            higher_is_better: higher,
            values,
        } in &self.rows
        {
            let cell = |v: Option<f64>| {
                v.map_or("–".to_owned(), |v| {
                    format!("{v:.1} {unit}").trim().to_owned()
                })
            };
            let ratio = |other: Option<f64>| match (values[0], other) {
                (Some(g), Some(o)) if o > 0.0 && g > 0.0 => {
                    // Ratios read "gateway is N× as good": inverted for lower-is-better figures.
                    let r = if *higher { g / o } else { o / g };
                    format!("{r:.2}×")
                }
                _ => "–".to_owned(),
            };
            let _ = writeln!(
                out,
                "| {scenario} | {figure} | {} | {} | {} | {} | {} |",
                cell(values[0]),
                cell(values[1]),
                cell(values[2]),
                ratio(values[1]),
                ratio(values[2])
            );
        }
        let _ = writeln!(out, "\nRatios above 1.0× favour the gateway (for latency, CPU, memory and errors the inverse is taken).");
        out
    }
}

fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

fn parse_after(text: &str, label: &str) -> Vec<f64> {
    text.lines()
        .filter_map(|l| l.trim().strip_prefix(label))
        .filter_map(|rest| rest.split_whitespace().next()?.parse().ok())
        .collect()
}

/// The protocol, suite and key exchange h2load reports, e.g. "TLSv1.3 TLS_AES_128_GCM_SHA256 X25519".
fn h2load_tls(text: &str) -> String {
    let field = |label: &str| {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(label))
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap_or("?")
            .to_owned()
    };
    format!(
        "{} {} {}",
        field("TLS Protocol:"),
        field("Cipher:"),
        field("Server Temp Key:")
    )
}

/// How many requests wrk completed: "N requests in 8.00s, …".
fn wrk_requests(text: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.contains(" requests in "))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Socket errors plus non-2xx responses, from wrk's summary.
fn wrk_errors(text: &str) -> f64 {
    let mut errors = 0.0;
    for line in text.lines() {
        let line = line.trim();
        if let Some(rest) = line.strip_prefix("Socket errors:") {
            errors += rest
                .split(',')
                .filter_map(|part| part.split_whitespace().last()?.parse::<f64>().ok())
                .sum::<f64>();
        }
        if let Some(rest) = line.strip_prefix("Non-2xx or 3xx responses:") {
            errors += rest.trim().parse::<f64>().unwrap_or(0.0);
        }
    }
    errors
}

/// "finished in 10.00s, 12345.67 req/s, …"
fn h2load_rps(text: &str) -> Vec<f64> {
    text.lines()
        .filter(|l| l.starts_with("finished in"))
        .filter_map(|l| l.split(',').nth(1)?.split_whitespace().next()?.parse().ok())
        .collect()
}

/// "requests: 2000 total, 2000 started, 2000 done, 1998 succeeded, 2 failed, 2 errored, 0 timeout"
fn h2load_failed(text: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with("requests:"))
        .map(|l| {
            l.split(',')
                .filter(|part| {
                    part.contains("failed") || part.contains("errored") || part.contains("timeout")
                })
                .filter_map(|part| part.split_whitespace().next()?.parse::<f64>().ok())
                .sum()
        })
        .unwrap_or(f64::NAN)
}

/// p50 and p99 in milliseconds from an h2load `--log-file` (start µs, status, duration µs).
fn latency_percentiles(log: &Path) -> (Option<f64>, Option<f64>) {
    let Ok(text) = std::fs::read_to_string(log) else {
        return (None, None);
    };
    let mut durations: Vec<f64> = text
        .lines()
        .filter_map(|l| l.split('\t').nth(2)?.trim().parse::<f64>().ok())
        .collect();
    if durations.is_empty() {
        return (None, None);
    }
    durations.sort_by(|a, b| a.total_cmp(b));
    let at = |q: f64| durations[((durations.len() as f64 - 1.0) * q).round() as usize] / 1000.0;
    (Some(at(0.50)), Some(at(0.99)))
}

/// The resident memory of the server: the process and, for nginx, its workers.
/// The server's processes: `pid`, and for nginx the workers its master started.
fn server_pids(server: Server, pid: u32) -> Vec<u32> {
    let mut pids = vec![pid];
    if server == Server::Nginx {
        let Ok(entries) = std::fs::read_dir("/proc") else {
            return pids;
        };
        for entry in entries.flatten() {
            let Ok(child) = entry.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            if stat_fields(child).and_then(|f| f.get(1)?.parse::<u32>().ok()) == Some(pid) {
                pids.push(child);
            }
        }
    }
    pids
}

/// The fields of `/proc/PID/stat` after the command name: state, ppid, … (`man 5 proc`, from 3).
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    Some(
        stat.rsplit(')')
            .next()?
            .split_whitespace()
            .map(str::to_owned)
            .collect(),
    )
}

fn rss_kib(server: Server, pid: u32) -> Option<u64> {
    let rss = |pid: u32| -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        status
            .lines()
            .find(|l| l.starts_with("VmRSS:"))?
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()
    };
    Some(server_pids(server, pid).into_iter().filter_map(rss).sum())
}

/// User plus system CPU time the server's processes have used so far, in microseconds.
fn cpu_micros(server: Server, pid: u32) -> Option<u64> {
    // /proc counts in USER_HZ, which is 100 on Linux whatever the kernel's own tick rate.
    const MICROS_PER_TICK: u64 = 10_000;
    let mut ticks = 0;
    for pid in server_pids(server, pid) {
        let fields = stat_fields(pid)?;
        // utime and stime are fields 14 and 15, 12 and 13 here.
        ticks += fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    }
    Some(ticks * MICROS_PER_TICK)
}

/// Opens up to `count` TLS connections to the server and keeps them idle.
fn open_idle_connections(
    count: usize,
) -> Vec<rustls::StreamOwned<rustls::ClientConnection, TcpStream>> {
    let config = Arc::new(
        rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("default versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAny))
        .with_no_client_auth(),
    );
    let mut connections = Vec::with_capacity(count);
    for _ in 0..count {
        let Ok(mut sock) = TcpStream::connect(LISTEN) else {
            break;
        };
        let name = rustls::pki_types::ServerName::try_from("localhost").expect("a name");
        let Ok(mut conn) = rustls::ClientConnection::new(config.clone(), name) else {
            break;
        };
        let handshaken = (|| {
            while conn.is_handshaking() {
                conn.complete_io(&mut sock)?;
            }
            Ok::<_, std::io::Error>(())
        })();
        if handshaken.is_err() {
            break;
        }
        connections.push(rustls::StreamOwned::new(conn, sock));
    }
    std::thread::sleep(Duration::from_secs(1));
    connections
}

/// The benchmark trusts its own self-signed certificate without checking it: it measures, it does
/// not authenticate.
#[derive(Debug)]
struct AcceptAny;

impl rustls::client::danger::ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }

    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        rustls::crypto::ring::default_provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// The vault emulator for the gateway's rotation scenario, with the benchmark certificate in it.
struct VaultSetup {
    handle: Arc<VaultHandle>,
    secret_uri: String,
    /// `[identity]` and `[vault]` for the gateway config.
    config: String,
}

/// The emulator handle, shareable with the rotating thread.
struct VaultHandle(std::sync::Mutex<Option<vault_emulator::EmulatorHandle>>);

impl VaultHandle {
    fn with<T>(&self, f: impl FnOnce(&vault_emulator::EmulatorHandle) -> T) -> Option<T> {
        self.0.lock().ok()?.as_ref().map(f)
    }

    fn stop_in_place(&self) {
        if let Some(handle) = self.0.lock().ok().and_then(|mut h| h.take()) {
            handle.stop();
        }
    }
}

impl VaultSetup {
    fn start(dir: &Path) -> anyhow::Result<VaultSetup> {
        let emulator = vault_emulator::Emulator::start(vault_emulator::EmulatorConfig::new(
            dir.join("emulator"),
        ))?;
        emulator.import_certificate(
            "bench",
            std::fs::read_to_string(dir.join("ecdsa-combined.pem"))?.as_bytes(),
            None,
        )?;
        let info = emulator.info().clone();
        let host = info
            .vault_url
            .trim_start_matches("https://")
            .trim_end_matches('/')
            .to_owned();
        Ok(VaultSetup {
            secret_uri: format!("{}secrets/bench", info.vault_url),
            config: format!(
                "[identity]\nkind = \"managed-identity\"\nendpoint = \"{}\"\nclient_id = \"{}\"\n[vault]\nca_file = \"{}\"\nallowed_hosts = [\"{host}\"]\n",
                info.identity_endpoint,
                info.client_id,
                info.ca_file.display()
            ),
            handle: Arc::new(VaultHandle(std::sync::Mutex::new(Some(emulator)))),
        })
    }
}

fn vault_secret_uri(vault: &VaultHandle) -> String {
    vault
        .with(|h| format!("{}secrets/bench", h.info().vault_url))
        .unwrap_or_default()
}

/// A self-signed `localhost` server certificate (not a CA: the gateway's gate refuses those) with
/// the key `newkey` asks `openssl req` for.
fn self_signed(newkey: &[&str], cert: &Path, key: &Path) -> anyhow::Result<()> {
    let output = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-nodes",
            "-days",
            "30",
            "-subj",
            "/CN=localhost",
        ])
        .args(["-addext", "subjectAltName=DNS:localhost"])
        .args(["-addext", "basicConstraints=critical,CA:FALSE"])
        .args(newkey)
        .arg("-keyout")
        .arg(key)
        .arg("-out")
        .arg(cert)
        .output()?;
    if !output.status.success() {
        bail!(
            "openssl req failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(())
}

/// One rotation: a new ECDSA certificate, put in place the way each server expects.
fn rotate(server: Server, dir: &Path, vault: &VaultHandle, _secret: &str) -> anyhow::Result<()> {
    let key = dir.join("rotate-key.pem");
    let cert = dir.join("rotate-cert.pem");
    self_signed(
        &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"],
        &cert,
        &key,
    )?;
    let (cert_pem, key_pem) = (
        std::fs::read_to_string(&cert)?,
        std::fs::read_to_string(&key)?,
    );
    match server {
        Server::Gateway => {
            vault
                .with(|h| {
                    h.import_certificate("bench", format!("{cert_pem}{key_pem}").as_bytes(), None)
                })
                .context("the emulator is gone")??;
            let (status, _) = http_post(ADMIN, "/listeners/bench/refresh")?;
            if status != 200 {
                bail!("refresh answered {status}");
            }
        }
        Server::Nginx => {
            std::fs::write(dir.join("ecdsa-cert.pem"), &cert_pem)?;
            std::fs::write(dir.join("ecdsa-key.pem"), &key_pem)?;
            let status = Command::new(which("nginx").expect("checked"))
                .args(["-s", "reload", "-c"])
                .arg(dir.join("nginx.conf"))
                .stderr(Stdio::null())
                .status()?;
            if !status.success() {
                bail!("nginx -s reload failed");
            }
        }
        Server::Haproxy => {
            let path = dir.join("ecdsa-combined.pem");
            let sock = dir.join("haproxy.sock");
            let send = |command: &str| -> anyhow::Result<String> {
                let mut stream = std::os::unix::net::UnixStream::connect(&sock)?;
                stream.write_all(command.as_bytes())?;
                let mut answer = String::new();
                stream.read_to_string(&mut answer)?;
                Ok(answer)
            };
            let answer = send(&format!(
                "set ssl cert {} <<\n{cert_pem}{key_pem}\n",
                path.display()
            ))?;
            if !answer.contains("Transaction created") && !answer.contains("Transaction updated") {
                bail!("haproxy set ssl cert: {answer}");
            }
            let answer = send(&format!("commit ssl cert {}\n", path.display()))?;
            if !answer.contains("Success") {
                bail!("haproxy commit ssl cert: {answer}");
            }
        }
    }
    Ok(())
}

fn http_post(addr: &str, path: &str) -> anyhow::Result<(u16, String)> {
    let mut stream = TcpStream::connect(addr)?;
    write!(
        stream,
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    Ok((status, response))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tool_summaries_are_read() {
        let wrk = "  98765 requests in 8.00s, 20.1MB read\nRequests/sec:  12345.67\nTransfer/sec: 1MB\n  Socket errors: connect 0, read 3, write 0, timeout 2\n  Non-2xx or 3xx responses: 4\n";
        assert_eq!(wrk_requests(wrk), Some(98765.0));
        assert_eq!(parse_after(wrk, "Requests/sec:"), vec![12345.67]);
        assert_eq!(wrk_errors(wrk), 9.0);
        let h2load = "finished in 10.00s, 2345.50 req/s, 1.2MB/s\nrequests: 2000 total, 2000 started, 2000 done, 1998 succeeded, 2 failed, 1 errored, 0 timeout\n";
        assert_eq!(h2load_rps(h2load), vec![2345.5]);
        assert_eq!(h2load_failed(h2load), 3.0);
        let tls = "TLS Protocol: TLSv1.3\nCipher: TLS_AES_128_GCM_SHA256\nServer Temp Key: X25519 253 bits\nApplication protocol: http/1.1\n";
        assert_eq!(h2load_tls(tls), "TLSv1.3 TLS_AES_128_GCM_SHA256 X25519");
        assert_eq!(h2load_tls(""), "? ? ?");
        assert_eq!(median(vec![3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(vec![]), None);
    }

    #[test]
    fn cpu_time_is_read_from_proc() {
        let me = std::process::id();
        let before = cpu_micros(Server::Gateway, me).expect("this process's /proc/PID/stat");
        let spin = std::time::Instant::now();
        while spin.elapsed() < std::time::Duration::from_millis(50) {
            std::hint::black_box(0u64);
        }
        let after = cpu_micros(Server::Gateway, me).unwrap();
        assert!(
            after > before,
            "50 ms of spinning shows up: {before} then {after}"
        );
        assert_eq!(server_pids(Server::Gateway, me), vec![me]);
    }
}
