//! testssl.sh (the Debian package) against running https listeners: one with an ECDSA P-256
//! certificate and one with an RSA 2048 certificate. The scan covers protocols, each cipher suite,
//! cipher categories, forward secrecy, the server defaults (certificate) and every vulnerability
//! check, and the test asserts on its JSON findings: TLS 1.2 and 1.3 only, only (EC)DHE suites,
//! every vulnerability check `OK`, nothing rated HIGH, CRITICAL or FATAL.
//!
//! Where testssl.sh is missing the test fails under CI (`.ci/run` installs it) and is skipped with
//! a loud line otherwise.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime};

use common::*;
use rcgen::{
    BasicConstraints, CertificateParams, CrlDistributionPoint, DnType, ExtendedKeyUsagePurpose,
    IsCa, KeyPair, KeyUsagePurpose,
};
use serde_json::Value;

/// A hang guard only: the scan normally takes well under three minutes.
const SCAN_HANG_GUARD: Duration = Duration::from_secs(15 * 60);

/// The testssl.sh executable (`testssl` in Debian, `testssl.sh` upstream), if installed.
fn testssl() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|dir| [dir.join("testssl"), dir.join("testssl.sh")])
        .find(|candidate| candidate.is_file())
}

/// The scanner, or `None` after a loud skip line; under CI a missing scanner fails the test.
fn testssl_or_skip() -> Option<PathBuf> {
    let found = testssl();
    if found.is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "testssl.sh is missing and CI is set: .ci/run installs the Debian `testssl.sh` package"
        );
        eprintln!(
            "\n==== SKIPPED: the TLS scan: neither `testssl` nor `testssl.sh` is on PATH \
             (apt-get install testssl.sh; under CI this fails) ====\n"
        );
    }
    found
}

/// A CA of its own (testssl.sh is told to trust it with `--add-ca`) issuing leaves that pass the
/// certificate checks of a scan, so that a HIGH or CRITICAL finding is about the gateway and not
/// the test certificate: 90 days of validity (rcgen's default runs to 4096, rated HIGH), a CRL
/// location (neither CRL nor OCSP is rated HIGH), server-auth usage, and a trusted chain (an
/// untrusted one is rated CRITICAL).
struct ScanPki {
    ca_pem: String,
    ca_cert: rcgen::Certificate,
    ca_key: KeyPair,
}

impl ScanPki {
    fn new() -> ScanPki {
        let ca_key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "gateway TLS scan CA");
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca_cert = params.self_signed(&ca_key).unwrap();
        ScanPki {
            ca_pem: ca_cert.pem(),
            ca_cert,
            ca_key,
        }
    }

    /// A `pem_file` bundle (leaf, CA, key) for `localhost` with `key`.
    fn localhost_bundle(&self, key: &KeyPair) -> String {
        let mut params = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, "localhost");
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap();
        let epoch = rcgen::date_time_ymd(1970, 1, 1);
        let day = Duration::from_secs(24 * 3600);
        params.not_before = epoch + (now - day);
        params.not_after = epoch + (now + 90 * day);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.crl_distribution_points = vec![CrlDistributionPoint {
            uris: vec!["http://crl.invalid/gateway-tls-scan-ca.crl".to_owned()],
        }];
        let cert = params.signed_by(key, &self.ca_cert, &self.ca_key).unwrap();
        format!("{}{}{}", cert.pem(), self.ca_pem, key.serialize_pem())
    }
}

/// The RSA 2048 key of the cert-bundle fixtures (ring cannot generate RSA keys).
fn rsa_2048_key() -> KeyPair {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../cert-bundle/tests/data/leaf-rsa.key.pem");
    KeyPair::from_pem(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// One https listener per certificate, all proxying to an echo backend.
fn start_gateway(dir: &Path, pki: &ScanPki, backend: &EchoBackend) -> Gateway {
    let mut text = String::from("[state]\ndir = \"state\"\n\n[admin]\nbind = \"127.0.0.1:0\"\n");
    for (name, key) in [
        ("ecdsa", KeyPair::generate().unwrap()),
        ("rsa", rsa_2048_key()),
    ] {
        std::fs::write(dir.join(format!("{name}.pem")), pki.localhost_bundle(&key)).unwrap();
        text.push_str(&format!(
            "\n[[listener]]\nname = \"{name}\"\nbind = \"127.0.0.1:0\"\nprotocol = \"https\"\n\
             hostnames = [\"localhost\"]\ncertificate = {{ pem_file = \"{name}.pem\" }}\n\
             \n[[rule]]\nname = \"{name}-to-app\"\nlistener = \"{name}\"\nbackend_pool = \"app\"\n"
        ));
    }
    text.push_str(&format!(
        "\n[[backend_pool]]\nname = \"app\"\naddresses = [\"{}\"]\n",
        backend.addr
    ));
    let config = dir.join("gateway.toml");
    std::fs::write(&config, text).unwrap();
    Gateway::start(&config, &[])
}

/// Runs testssl.sh against `localhost:port` on 127.0.0.1 and returns its flat JSON findings.
fn scan(testssl: &Path, dir: &Path, label: &str, port: u16, ca: &Path) -> Vec<Value> {
    let json = dir.join(format!("{label}.json"));
    let log = dir.join(format!("{label}.out"));
    let mut child = Command::new(testssl)
        .args([
            "--quiet",
            "--color",
            "0",
            "--warnings",
            "off",
            "--nodns",
            "none",
        ])
        .args(["--connect-timeout", "10", "--openssl-timeout", "10"])
        .args(["--ip", "127.0.0.1", "--add-ca"])
        .arg(ca)
        .arg("--jsonfile")
        .arg(&json)
        // Protocols, each cipher, cipher categories, forward secrecy, server defaults (the
        // certificate), every vulnerability.
        .args(["-p", "-e", "-s", "-f", "-S", "-U"])
        .arg(format!("localhost:{port}"))
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if started.elapsed() > SCAN_HANG_GUARD {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let output = std::fs::read_to_string(&log).unwrap_or_default();
    println!("==== testssl.sh, {label} listener on port {port} ====\n{output}");
    assert!(status.is_some(), "testssl.sh hung (killed):\n{output}");
    let text = std::fs::read_to_string(&json)
        .unwrap_or_else(|e| panic!("no JSON from testssl.sh ({status:?}, {e}):\n{output}"));
    serde_json::from_str::<Vec<Value>>(&text)
        .unwrap_or_else(|e| panic!("testssl.sh JSON does not parse ({e}):\n{text}"))
}

/// The vulnerability checks of `-U`, each of which must be present with severity `OK`.
///
/// BREACH is HTTP compression of secrets in responses: testssl.sh asks for `/` with
/// `Accept-Encoding: gzip, deflate, compress, br`. The gateway compresses nothing itself and passes
/// the backend's `Content-Encoding` through, so the result is the gateway's own; it is not
/// exempted here (the echo backend never compresses), and a site whose backend compresses
/// responses that reflect secrets would be flagged by testssl.sh for that backend's choice.
const VULNERABILITY_CHECKS: &[&str] = &[
    "heartbleed",
    "CCS",
    "ticketbleed",
    "ROBOT",
    "secure_renego",
    "secure_client_renego",
    "CRIME_TLS",
    "BREACH",
    "POODLE_SSL",
    "fallback_SCSV",
    "SWEET32",
    "FREAK",
    "DROWN",
    "LOGJAM",
    "LOGJAM-common_primes",
    "BEAST",
    "LUCKY13",
    "RC4",
];

/// Cipher categories (`-s`) that must be reported as not offered: NULL, anonymous, export, LOW,
/// 3DES/IDEA and the CBC ("AVERAGE") suites.
const WEAK_CIPHER_CATEGORIES: &[&str] = &[
    "cipherlist_NULL",
    "cipherlist_aNULL",
    "cipherlist_EXPORT",
    "cipherlist_LOW",
    "cipherlist_3DES_IDEA",
    "cipherlist_AVERAGE",
];

fn field<'a>(finding: &'a Value, key: &str) -> &'a str {
    finding[key].as_str().unwrap_or_default()
}

/// Everything wrong with one scan's findings, as lines for the failure message.
fn problems(findings: &[Value]) -> Vec<String> {
    let by_id = |id: &str| findings.iter().find(|f| field(f, "id") == id);
    let mut problems = Vec::new();
    let expect = |problems: &mut Vec<String>, id: &str, what: &str, ok: &dyn Fn(&Value) -> bool| {
        match by_id(id) {
            None => problems.push(format!("{id}: missing from the scan (expected {what})")),
            Some(f) if !ok(f) => problems.push(format!(
                "{id}: expected {what}, got [{}] {}",
                field(f, "severity"),
                field(f, "finding")
            )),
            Some(_) => {}
        }
    };

    // Protocols: TLS 1.2 and 1.3 only.
    for id in ["SSLv2", "SSLv3", "TLS1", "TLS1_1"] {
        expect(&mut problems, id, "not offered", &|f| {
            field(f, "finding").starts_with("not offered")
        });
    }
    for id in ["TLS1_2", "TLS1_3"] {
        expect(&mut problems, id, "offered", &|f| {
            field(f, "finding").starts_with("offered")
        });
    }

    // Cipher categories: only strong (AEAD) suites.
    for id in WEAK_CIPHER_CATEGORIES {
        expect(&mut problems, id, "not offered", &|f| {
            field(f, "finding") == "not offered"
        });
    }
    expect(&mut problems, "cipherlist_STRONG", "offered", &|f| {
        field(f, "finding") == "offered"
    });

    // Forward secrecy: offered, and every suite the server accepts (`-e`) is an (EC)DHE one.
    expect(&mut problems, "PFS", "offered with severity OK", &|f| {
        field(f, "severity") == "OK" && field(f, "finding") == "offered"
    });
    let fs_ciphers: Vec<&str> = by_id("PFS_ciphers")
        .map(|f| field(f, "finding").split_whitespace().collect())
        .unwrap_or_default();
    // `cipher_x1302`: "x1302   TLS_AES_256_GCM_SHA384   ECDH 253   AESGCM   256   TLS_AES_…".
    let offered: Vec<&Value> = findings
        .iter()
        .filter(|f| field(f, "id").starts_with("cipher_x"))
        .collect();
    if offered.is_empty() {
        problems.push("no cipher_x… finding: the per-cipher scan (-e) found nothing".to_owned());
    }
    for f in offered {
        let columns: Vec<&str> = field(f, "finding").split_whitespace().collect();
        let (name, kx) = (
            columns.get(1).copied().unwrap_or(""),
            columns.get(2).copied().unwrap_or(""),
        );
        if !matches!(kx, "ECDH" | "DH") || !fs_ciphers.contains(&name) {
            problems.push(format!(
                "{}: a suite without forward secrecy is offered: {}",
                field(f, "id"),
                field(f, "finding")
            ));
        }
    }

    // Every vulnerability check ran and passed.
    for id in VULNERABILITY_CHECKS {
        expect(&mut problems, id, "severity OK (not vulnerable)", &|f| {
            field(f, "severity") == "OK"
        });
    }

    // Nothing rated HIGH or CRITICAL anywhere, certificate checks included; no scan aborted
    // (FATAL).
    for f in findings {
        if matches!(field(f, "severity"), "HIGH" | "CRITICAL" | "FATAL") {
            problems.push(format!(
                "{} [{}]: {}",
                field(f, "id"),
                field(f, "severity"),
                field(f, "finding")
            ));
        }
    }
    problems
}

#[test]
fn testssl_finds_only_tls_1_2_and_1_3_forward_secret_ciphers_and_no_vulnerability() {
    let Some(testssl) = testssl_or_skip() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let pki = ScanPki::new();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &pki.ca_pem).unwrap();
    let backend = EchoBackend::start();
    let gateway = start_gateway(dir.path(), &pki, &backend);

    let mut failures = Vec::new();
    for label in ["ecdsa", "rsa"] {
        let findings = scan(&testssl, dir.path(), label, gateway.addr(label).port(), &ca);
        failures.extend(
            problems(&findings)
                .into_iter()
                .map(|p| format!("{label} listener: {p}")),
        );
    }
    assert!(
        failures.is_empty(),
        "testssl.sh found {} problem(s) (its full output is above):\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// Findings as a clean scan reports them, for checking the checks without testssl.sh.
fn clean_findings() -> Vec<Value> {
    let finding = |id: &str, severity: &str, text: &str| serde_json::json!({ "id": id, "severity": severity, "finding": text });
    let mut findings = vec![
        finding("SSLv2", "OK", "not offered"),
        finding("SSLv3", "OK", "not offered"),
        finding("TLS1", "INFO", "not offered"),
        finding("TLS1_1", "INFO", "not offered"),
        finding("TLS1_2", "OK", "offered"),
        finding("TLS1_3", "OK", "offered with final"),
        finding("cipherlist_STRONG", "OK", "offered"),
        finding("PFS", "OK", "offered"),
        finding(
            "PFS_ciphers",
            "INFO",
            "TLS_AES_128_GCM_SHA256 ECDHE-RSA-AES128-GCM-SHA256",
        ),
        finding(
            "cipher_x1301",
            "INFO",
            "x1301   TLS_AES_128_GCM_SHA256   ECDH 253   AESGCM   128   TLS_AES_128_GCM_SHA256",
        ),
        finding(
            "cipher_xc02f",
            "INFO",
            "xc02f   ECDHE-RSA-AES128-GCM-SHA256   ECDH 253   AESGCM   128   \
             TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
        ),
    ];
    findings.extend(
        WEAK_CIPHER_CATEGORIES
            .iter()
            .map(|id| finding(id, "OK", "not offered")),
    );
    findings.extend(
        VULNERABILITY_CHECKS
            .iter()
            .map(|id| finding(id, "OK", "not vulnerable")),
    );
    findings
}

#[test]
fn the_scan_checks_flag_old_protocols_non_forward_secret_suites_and_high_findings() {
    assert_eq!(problems(&clean_findings()), Vec::<String>::new());

    let flagged = |change: &dyn Fn(&mut Vec<Value>)| {
        let mut findings = clean_findings();
        change(&mut findings);
        problems(&findings)
    };
    let set = |findings: &mut Vec<Value>, id: &str, severity: &str, text: &str| {
        let f = findings.iter_mut().find(|f| f["id"] == id).unwrap();
        f["severity"] = severity.into();
        f["finding"] = text.into();
    };

    let tls1 = flagged(&|f| set(f, "TLS1", "INFO", "offered"));
    assert!(tls1.iter().any(|p| p.starts_with("TLS1:")), "{tls1:?}");

    let rsa_kx = flagged(&|f| {
        f.push(serde_json::json!({
            "id": "cipher_x9c",
            "severity": "INFO",
            "finding": "x9c   AES128-GCM-SHA256   RSA   AESGCM   128   TLS_RSA_WITH_AES_128_GCM_SHA256",
        }))
    });
    assert!(
        rsa_kx.iter().any(|p| p.contains("without forward secrecy")),
        "{rsa_kx:?}"
    );

    let breach = flagged(&|f| set(f, "BREACH", "MEDIUM", "potentially VULNERABLE, gzip"));
    assert!(
        breach.iter().any(|p| p.starts_with("BREACH:")),
        "{breach:?}"
    );

    let missing = flagged(&|f| f.retain(|f| f["id"] != "heartbleed"));
    assert!(
        missing.iter().any(|p| p.starts_with("heartbleed: missing")),
        "{missing:?}"
    );

    let high = flagged(&|f| {
        f.push(serde_json::json!({
            "id": "cert_chain_of_trust",
            "severity": "CRITICAL",
            "finding": "failed (self signed).",
        }))
    });
    assert!(
        high.iter()
            .any(|p| p.starts_with("cert_chain_of_trust [CRITICAL]")),
        "{high:?}"
    );
}
