//! Prometheus metrics (`GET /metrics` on the admin API, text format 0.0.4).
//!
//! Hot-path counters (requests, handshakes) are atomics reached through an `Arc` the request path
//! already holds, so counting costs no lock and no lookup by name. Certificate facts are read at
//! scrape time from the same places `/listeners` reads them.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use actix_web::{web, HttpResponse};

use crate::admin::{listener_views, AdminState};

/// Upper bounds of the request duration histogram, in seconds.
const BUCKETS: [f64; 13] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Requests of one listener to one pool (or one redirecting listener).
#[derive(Debug)]
pub struct RequestStats {
    pub listener: String,
    pub pool: String,
    /// By status class: 1xx … 5xx.
    by_class: [AtomicU64; 5],
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl RequestStats {
    fn new(listener: &str, pool: &str) -> RequestStats {
        RequestStats {
            listener: listener.to_owned(),
            pool: pool.to_owned(),
            by_class: Default::default(),
            buckets: Default::default(),
            count: AtomicU64::new(0),
            sum_micros: AtomicU64::new(0),
        }
    }

    /// One answered request: its status and the time until its response headers.
    pub fn observe(&self, status: u16, elapsed: Duration) {
        let class = usize::from((status / 100).clamp(1, 5)) - 1;
        self.by_class[class].fetch_add(1, Ordering::Relaxed);
        let seconds = elapsed.as_secs_f64();
        if let Some(bucket) = BUCKETS.iter().position(|bound| seconds <= *bound) {
            self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_micros
            .fetch_add(elapsed.as_micros() as u64, Ordering::Relaxed);
    }
}

/// Completed TLS handshakes of one listener.
#[derive(Debug, Default)]
pub struct HandshakeStats {
    /// `[TLS 1.2, TLS 1.3] × [full, resumed]`.
    counts: [[AtomicU64; 2]; 2],
}

impl HandshakeStats {
    pub fn observe(&self, tls13: bool, resumed: bool) {
        self.counts[usize::from(tls13)][usize::from(resumed)].fetch_add(1, Ordering::Relaxed);
    }
}

/// The last known state of one backend member.
#[derive(Debug)]
pub struct BackendHealth {
    pub pool: String,
    pub member: String,
    up: AtomicBool,
    /// Whether anything was ever sent to it: a member never tried has no health yet.
    known: AtomicBool,
}

impl BackendHealth {
    pub fn new(pool: &str, member: &str) -> BackendHealth {
        BackendHealth {
            pool: pool.to_owned(),
            member: member.to_owned(),
            up: AtomicBool::new(false),
            known: AtomicBool::new(false),
        }
    }

    /// Called on every proxied request: it writes only on a change, because a store to a line that
    /// both workers read would bounce that cache line between them per request.
    pub fn set(&self, up: bool) {
        if self.up.load(Ordering::Relaxed) != up {
            self.up.store(up, Ordering::Relaxed);
        }
        if !self.known.load(Ordering::Relaxed) {
            self.known.store(true, Ordering::Relaxed);
        }
    }
}

/// Check and certificate-change facts of one listener.
#[derive(Debug, Default)]
struct CertificateStats {
    installs: BTreeMap<&'static str, u64>,
    rejections: BTreeMap<&'static str, u64>,
    failures: BTreeMap<&'static str, u64>,
    consecutive_failures: u64,
    last_success_s: Option<i64>,
}

/// Every metric of the process.
#[derive(Debug, Default)]
pub struct Metrics {
    requests: Mutex<Vec<Arc<RequestStats>>>,
    handshakes: Mutex<BTreeMap<String, Arc<HandshakeStats>>>,
    backends: Mutex<Vec<Arc<BackendHealth>>>,
    certificates: Mutex<BTreeMap<String, CertificateStats>>,
    started_s: AtomicI64,
}

impl Metrics {
    pub fn new() -> Arc<Metrics> {
        let metrics = Metrics::default();
        metrics.started_s.store(unix_now(), Ordering::Relaxed);
        Arc::new(metrics)
    }

    /// The request counters of a listener and pool, created once at startup.
    pub fn requests(&self, listener: &str, pool: &str) -> Arc<RequestStats> {
        let stats = Arc::new(RequestStats::new(listener, pool));
        lock(&self.requests).push(stats.clone());
        stats
    }

    /// The handshake counters of a listener, created once at startup.
    pub fn handshakes(&self, listener: &str) -> Arc<HandshakeStats> {
        lock(&self.handshakes)
            .entry(listener.to_owned())
            .or_default()
            .clone()
    }

    pub fn backend(&self, pool: &str, member: &str) -> Arc<BackendHealth> {
        let health = Arc::new(BackendHealth::new(pool, member));
        lock(&self.backends).push(health.clone());
        health
    }

    /// A certificate was installed on `listener` (`trigger`: startup, schedule, manual, config).
    pub fn installed(&self, listener: &str, trigger: &'static str) {
        *lock(&self.certificates)
            .entry(listener.to_owned())
            .or_default()
            .installs
            .entry(trigger)
            .or_default() += 1;
    }

    /// The gate refused a certificate for `listener` (`code`: expired, key_mismatch, …).
    pub fn rejected(&self, listener: &str, code: &'static str) {
        *lock(&self.certificates)
            .entry(listener.to_owned())
            .or_default()
            .rejections
            .entry(code)
            .or_default() += 1;
    }

    /// A Key Vault check of `listener` ended: `failure` is the class of a failed fetch.
    pub fn checked(&self, listener: &str, failure: Option<&'static str>) {
        let mut certificates = lock(&self.certificates);
        let stats = certificates.entry(listener.to_owned()).or_default();
        match failure {
            Some(class) => {
                *stats.failures.entry(class).or_default() += 1;
                stats.consecutive_failures += 1;
            }
            None => {
                stats.consecutive_failures = 0;
                stats.last_success_s = Some(unix_now());
            }
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding one of these locks leaves plain counters behind: still usable.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// `GET /metrics`.
pub async fn render(state: web::Data<AdminState>) -> HttpResponse {
    let views = match listener_views(&state).await {
        Ok(views) => views,
        Err(err) => {
            return HttpResponse::InternalServerError()
                .content_type("text/plain")
                .body(format!("cannot read the listeners: {err}\n"))
        }
    };
    let mut out = Text::default();
    let metrics = &state.metrics;
    let now = unix_now();

    out.family(
        "gateway_certificate_not_after_seconds",
        "gauge",
        "The served certificate's notAfter, in Unix seconds.",
    );
    out.family(
        "gateway_certificate_expiry_seconds",
        "gauge",
        "Seconds until the served certificate expires (negative once expired).",
    );
    out.family(
        "gateway_certificate_info",
        "gauge",
        "The served certificate: thumbprint, Key Vault version and source, as labels; always 1.",
    );
    out.family("gateway_certificate_latest", "gauge", "1 when the last check found the served version is Key Vault's latest, 0 when a newer version was refused (drift).");
    out.family(
        "gateway_listener_serving",
        "gauge",
        "1 when the listener has a certificate and is in service.",
    );
    for view in views.iter().filter(|v| v.protocol == "https") {
        let listener = [("listener", view.name.as_str())];
        if let (Some(current), Some(slot)) = (
            state.slots.get(&view.name).and_then(|s| s.current()),
            state.slots.get(&view.name),
        ) {
            out.sample(
                "gateway_certificate_not_after_seconds",
                &listener,
                current.not_after() as f64,
            );
            out.sample(
                "gateway_certificate_expiry_seconds",
                &listener,
                (current.not_after() - now) as f64,
            );
            let thumbprint = current.thumbprint().to_string();
            out.sample(
                "gateway_certificate_info",
                &[
                    ("listener", view.name.as_str()),
                    ("thumbprint", &thumbprint),
                    ("version", view.version.as_deref().unwrap_or("")),
                    ("source", view.source.as_deref().unwrap_or("")),
                ],
                1.0,
            );
            out.sample(
                "gateway_listener_serving",
                &listener,
                f64::from(u8::from(slot.is_serving())),
            );
        } else {
            out.sample("gateway_listener_serving", &listener, 0.0);
        }
        let latest = view
            .last_outcome
            .as_ref()
            .and_then(|o| o["outcome"].as_str())
            .and_then(|o| match o {
                "unchanged" | "rotated" => Some(1.0),
                "rejected" => Some(0.0),
                _ => None,
            });
        if let Some(latest) = latest {
            out.sample("gateway_certificate_latest", &listener, latest);
        }
    }

    {
        let certificates = lock(&metrics.certificates);
        out.family(
            "gateway_certificate_installs_total",
            "counter",
            "Certificates installed, by trigger.",
        );
        for (listener, stats) in certificates.iter() {
            for (trigger, n) in &stats.installs {
                out.sample(
                    "gateway_certificate_installs_total",
                    &[("listener", listener), ("trigger", trigger)],
                    *n as f64,
                );
            }
        }
        out.family(
            "gateway_certificate_rejections_total",
            "counter",
            "Certificates refused by the validation gate, by reason.",
        );
        for (listener, stats) in certificates.iter() {
            for (reason, n) in &stats.rejections {
                out.sample(
                    "gateway_certificate_rejections_total",
                    &[("listener", listener), ("reason", reason)],
                    *n as f64,
                );
            }
        }
        out.family(
            "gateway_keyvault_check_failures_total",
            "counter",
            "Key Vault checks that failed, by error class.",
        );
        for (listener, stats) in certificates.iter() {
            for (class, n) in &stats.failures {
                out.sample(
                    "gateway_keyvault_check_failures_total",
                    &[("listener", listener), ("class", class)],
                    *n as f64,
                );
            }
        }
        out.family(
            "gateway_keyvault_consecutive_failures",
            "gauge",
            "Key Vault checks failed in a row since the last success.",
        );
        out.family(
            "gateway_keyvault_last_success_timestamp_seconds",
            "gauge",
            "When a Key Vault check last succeeded, in Unix seconds.",
        );
        for (listener, stats) in certificates.iter() {
            out.sample(
                "gateway_keyvault_consecutive_failures",
                &[("listener", listener)],
                stats.consecutive_failures as f64,
            );
            if let Some(at) = stats.last_success_s {
                out.sample(
                    "gateway_keyvault_last_success_timestamp_seconds",
                    &[("listener", listener)],
                    at as f64,
                );
            }
        }
    }

    out.family(
        "gateway_tls_handshakes_total",
        "counter",
        "Completed TLS handshakes, by TLS version and whether the session was resumed.",
    );
    for (listener, stats) in lock(&metrics.handshakes).iter() {
        for (v, version) in ["TLSv1.2", "TLSv1.3"].into_iter().enumerate() {
            for (r, kind) in ["full", "resumed"].into_iter().enumerate() {
                let n = stats.counts[v][r].load(Ordering::Relaxed);
                out.sample(
                    "gateway_tls_handshakes_total",
                    &[("listener", listener), ("version", version), ("kind", kind)],
                    n as f64,
                );
            }
        }
    }

    let requests = lock(&metrics.requests).clone();
    out.family(
        "gateway_http_requests_total",
        "counter",
        "Requests answered, by listener, backend pool and status class.",
    );
    for stats in &requests {
        for (i, class) in ["1xx", "2xx", "3xx", "4xx", "5xx"].into_iter().enumerate() {
            let n = stats.by_class[i].load(Ordering::Relaxed);
            out.sample(
                "gateway_http_requests_total",
                &[
                    ("listener", &stats.listener),
                    ("pool", &stats.pool),
                    ("class", class),
                ],
                n as f64,
            );
        }
    }
    out.family(
        "gateway_http_request_duration_seconds",
        "histogram",
        "Time until the response headers, by listener and backend pool.",
    );
    for stats in &requests {
        let mut cumulative = 0;
        for (i, bound) in BUCKETS.iter().enumerate() {
            cumulative += stats.buckets[i].load(Ordering::Relaxed);
            let le = bound.to_string();
            out.sample(
                "gateway_http_request_duration_seconds_bucket",
                &[
                    ("listener", &stats.listener),
                    ("pool", &stats.pool),
                    ("le", &le),
                ],
                cumulative as f64,
            );
        }
        let count = stats.count.load(Ordering::Relaxed);
        let labels = [
            ("listener", stats.listener.as_str()),
            ("pool", stats.pool.as_str()),
        ];
        out.sample(
            "gateway_http_request_duration_seconds_bucket",
            &[labels[0], labels[1], ("le", "+Inf")],
            count as f64,
        );
        out.sample(
            "gateway_http_request_duration_seconds_sum",
            &labels,
            stats.sum_micros.load(Ordering::Relaxed) as f64 / 1e6,
        );
        out.sample(
            "gateway_http_request_duration_seconds_count",
            &labels,
            count as f64,
        );
    }

    out.family(
        "gateway_backend_up",
        "gauge",
        "1 when the backend member answered its last probe or request, 0 when it could not be reached.",
    );
    for health in lock(&metrics.backends).iter() {
        if health.known.load(Ordering::Relaxed) {
            let up = f64::from(u8::from(health.up.load(Ordering::Relaxed)));
            out.sample(
                "gateway_backend_up",
                &[("pool", &health.pool), ("member", &health.member)],
                up,
            );
        }
    }

    out.family(
        "gateway_start_time_seconds",
        "gauge",
        "When the gateway started, in Unix seconds.",
    );
    out.sample(
        "gateway_start_time_seconds",
        &[],
        metrics.started_s.load(Ordering::Relaxed) as f64,
    );

    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(out.0)
}

/// The Prometheus text exposition format.
#[derive(Default)]
struct Text(String);

impl Text {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.0.push_str(name);
        if !labels.is_empty() {
            self.0.push('{');
            for (i, (key, value)) in labels.iter().enumerate() {
                if i > 0 {
                    self.0.push(',');
                }
                let _ = write!(self.0, "{key}=\"{}\"", escape(value));
            }
            self.0.push('}');
        }
        let _ = writeln!(self.0, " {value}");
    }
}

fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        let mut text = Text::default();
        text.sample("m", &[("a", "x\"y\\z\nw")], 1.0);
        assert_eq!(text.0, "m{a=\"x\\\"y\\\\z\\nw\"} 1\n");
    }

    #[test]
    fn a_request_lands_in_its_class_and_every_bucket_from_its_duration_up() {
        let stats = RequestStats::new("web", "app");
        stats.observe(204, Duration::from_millis(3));
        stats.observe(502, Duration::from_secs(30));
        assert_eq!(stats.by_class[1].load(Ordering::Relaxed), 1);
        assert_eq!(stats.by_class[4].load(Ordering::Relaxed), 1);
        assert_eq!(
            stats.buckets[2].load(Ordering::Relaxed),
            1,
            "3 ms is in the 5 ms bucket"
        );
        assert_eq!(
            stats
                .buckets
                .iter()
                .map(|b| b.load(Ordering::Relaxed))
                .sum::<u64>(),
            1,
            "30 s is only in +Inf"
        );
        assert_eq!(stats.count.load(Ordering::Relaxed), 2);
    }
}
