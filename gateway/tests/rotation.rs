//! Rotation of Key Vault certificates end to end: the vault emulator, the gateway binary with its
//! admin API, a real TLS client and the event log read back with `gateway audit --json`.
//!
//! Each test states what a client is served (by a real handshake) and what the log records.

mod common;

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use cert_bundle::Thumbprint;
use common::*;
use serde_json::Value;
use vault_emulator::{Fault, FaultKind};

/// The identity the gateway reads Key Vault as: `get` on secrets, nothing else.
const READER: &str = "gateway-reader";

/// No scheduled check fires during a test (once a year, no jitter): only the refreshes a test
/// asks for run.
const NO_SCHEDULE: &str = "schedule = \"0 0 0 1 1 *\"\njitter = \"0s\"";

/// A vault, a CA, a backend and a directory for one gateway.
struct Scene {
    vault: TestVault,
    pki: Pki,
    dir: tempfile::TempDir,
    backend: EchoBackend,
}

impl Scene {
    fn new() -> Scene {
        let vault = TestVault::start();
        vault.emulator().add_identity(READER, &["get"], &[]);
        Scene {
            vault,
            pki: Pki::new(),
            dir: tempfile::tempdir().unwrap(),
            backend: EchoBackend::start(),
        }
    }

    fn leaf(&self) -> Leaf {
        self.pki.leaf(&["localhost"])
    }

    /// Imports `leaf` as a new version of `secret`; returns the version.
    fn import(&self, secret: &str, leaf: &Leaf) -> String {
        self.vault.import(secret, leaf, &self.pki)
    }

    fn uri(&self, secret: &str) -> String {
        self.vault.secret_uri(secret)
    }

    /// A config reading Key Vault as [`READER`], with its admin API on a fixed loopback port.
    fn config(&self, rotation: &str, listeners: &[ListenerSpec]) -> (PathBuf, SocketAddr) {
        let admin = free_loopback_addr();
        let config = rotation_config(
            self.dir.path(),
            &self.vault,
            READER,
            rotation,
            admin,
            listeners,
            self.backend.addr,
        );
        (config, admin)
    }

    fn state(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    /// The events of `listener`, oldest first.
    fn events(&self, listener: &str) -> Vec<Value> {
        audit_json(&self.state(), &["--listener", listener])
    }

    /// What a client is served on `listener`, by a real handshake.
    fn served(&self, gateway: &Gateway, listener: &str) -> Thumbprint {
        served_leaf(gateway.addr(listener), "localhost", &self.pki.ca_pem)
    }

    /// A full request through `listener`: the certificate seen, and the backend answered.
    #[track_caller]
    fn served_with_request(&self, gateway: &Gateway, listener: &str) -> Thumbprint {
        let exchange = https_get(
            gateway.addr(listener),
            "localhost",
            &self.pki.ca_pem,
            "/probe",
        );
        assert_eq!(exchange.status(), 200, "{}", exchange.text());
        exchange.leaf
    }
}

fn hex(leaf: &Leaf) -> String {
    leaf.thumbprint.to_string()
}

fn of_kind<'a>(events: &'a [Value], kind: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["kind"] == kind).collect()
}

/// The admin API's view of one listener (`GET /listeners`).
fn listener_view(admin: SocketAddr, listener: &str) -> Value {
    let (status, body) = admin_request(admin, "GET", "/listeners");
    assert_eq!(status, 200, "{body}");
    body.as_array()
        .unwrap()
        .iter()
        .find(|l| l["name"] == listener)
        .unwrap_or_else(|| panic!("no listener {listener} in {body}"))
        .clone()
}

#[track_caller]
fn assert_failed(outcome: &Value, class: &str, message_contains: &[&str]) {
    assert_eq!(outcome["outcome"], "failed", "{outcome}");
    assert_eq!(outcome["class"], class, "{outcome}");
    let message = outcome["message"].as_str().unwrap();
    for needle in message_contains {
        assert!(
            message.contains(needle),
            "`{message}` should contain `{needle}`"
        );
    }
}

// ---- On demand ------------------------------------------------------------------------------

#[test]
fn a_new_version_is_served_after_a_refresh_and_a_second_refresh_records_nothing() {
    let scene = Scene::new();
    let first = scene.leaf();
    scene.import("site", &first);
    let (config, admin) = scene.config(
        NO_SCHEDULE,
        &[ListenerSpec::key_vault("web", &scene.uri("site"))],
    );
    let gateway = Gateway::start(&config, &[]);
    assert_eq!(gateway.admin, Some(admin));
    assert_eq!(scene.served(&gateway, "web"), first.thumbprint);

    // Given a new version in Key Vault, a refresh over the admin API rotates to it.
    let second = scene.leaf();
    let second_version = scene.import("site", &second);
    let outcome = admin_refresh(admin, "web");
    assert_eq!(outcome["outcome"], "rotated", "{outcome}");
    assert_eq!(outcome["listener"], "web");
    assert_eq!(outcome["from"], hex(&first));
    assert_eq!(outcome["to"], hex(&second));
    assert_eq!(outcome["version"], second_version.as_str());
    assert_eq!(
        outcome["summary"],
        format!(
            "rotated {} -> {} (version {second_version})",
            hex(&first),
            hex(&second)
        )
    );
    assert_eq!(
        scene.served_with_request(&gateway, "web"),
        second.thumbprint
    );

    let events = scene.events("web");
    assert_eq!(
        kinds(&events),
        [
            "listener_configured",
            "certificate_fetched",
            "certificate_installed",
            "certificate_fetched",
            "certificate_installed"
        ]
    );
    assert_eq!(events[3]["version"], second_version.as_str());
    assert_eq!(events[3]["thumbprint"], hex(&second));
    assert_eq!(events[4]["trigger"], "manual");
    assert_eq!(events[4]["previous"], hex(&first));
    assert_eq!(events[4]["thumbprint"], hex(&second));
    assert_eq!(events[4]["version"], second_version.as_str());
    assert_eq!(events[4]["source"], scene.uri("site"));

    // `gateway refresh` does the same through the admin API named in the config, and says so.
    let third = scene.leaf();
    let third_version = scene.import("site", &third);
    let config_arg = config.to_str().unwrap();
    let (ok, stdout, stderr) = gateway_cli(
        &["refresh", "--config", config_arg, "--listener", "web"],
        &[],
    );
    assert!(ok, "{stdout}{stderr}");
    assert_eq!(
        stdout.trim(),
        format!(
            "web: rotated {} -> {} (version {third_version})",
            hex(&second),
            hex(&third)
        )
    );
    assert_eq!(scene.served_with_request(&gateway, "web"), third.thumbprint);
    let events = scene.events("web");
    assert_eq!(events.len(), 7, "{:?}", kinds(&events));
    assert_eq!(events[6]["kind"], "certificate_installed");
    assert_eq!(events[6]["trigger"], "manual");
    assert_eq!(events[6]["thumbprint"], hex(&third));

    // Refreshing again finds what is served: unchanged, and the log does not grow.
    let outcome = admin_refresh(admin, "web");
    assert_eq!(outcome["outcome"], "unchanged", "{outcome}");
    assert_eq!(outcome["thumbprint"], hex(&third));
    assert_eq!(outcome["version"], third_version.as_str());
    let (ok, stdout, stderr) = gateway_cli(&["refresh", "--config", config_arg], &[]);
    assert!(ok, "{stdout}{stderr}");
    assert_eq!(
        stdout.trim(),
        format!("web: unchanged {} (version {third_version})", hex(&third))
    );
    assert_eq!(
        scene.events("web").len(),
        7,
        "unchanged checks record nothing"
    );
    assert_eq!(scene.served(&gateway, "web"), third.thumbprint);

    // The admin API shows what is served and what the last check did.
    let view = listener_view(admin, "web");
    assert_eq!(view["state"], "serving", "{view}");
    assert_eq!(view["thumbprint"], hex(&third), "{view}");
    assert_eq!(view["version"], third_version.as_str(), "{view}");
    assert_eq!(view["last_outcome"]["outcome"], "unchanged", "{view}");
    assert!(view["last_check"].is_string(), "{view}");
}

// ---- On a schedule --------------------------------------------------------------------------

#[test]
fn a_scheduled_check_serves_a_new_version_and_unchanged_checks_do_not_fill_the_log() {
    let scene = Scene::new();
    let first = scene.leaf();
    scene.import("site", &first);
    let other_first = scene.leaf();
    scene.import("other", &other_first);
    let (config, admin) = scene.config(
        "schedule = \"*/1 * * * * *\"\njitter = \"0s\"",
        &[
            ListenerSpec::key_vault("web", &scene.uri("site")),
            // Its own schedule: once a year, so the global every-second schedule does not apply.
            ListenerSpec::key_vault("yearly", &scene.uri("other"))
                .with("rotation_schedule = \"0 0 0 1 1 *\""),
        ],
    );
    let gateway = Gateway::start(&config, &[]);
    assert_eq!(scene.served(&gateway, "web"), first.thumbprint);
    assert_eq!(scene.served(&gateway, "yearly"), other_first.thumbprint);
    let yearly_checked = listener_view(admin, "yearly")["last_check"].clone();

    let second = scene.leaf();
    let second_version = scene.import("site", &second);
    let other_second = scene.leaf();
    scene.import("other", &other_second);

    // No request: the schedule finds the new version.
    wait_for(
        "the scheduled check to serve the new version",
        Duration::from_secs(20),
        || {
            (try_served_leaf(gateway.addr("web"), "localhost", &scene.pki.ca_pem)
                == Ok(second.thumbprint))
            .then_some(())
        },
    );
    assert_eq!(
        scene.served_with_request(&gateway, "web"),
        second.thumbprint
    );
    let events = scene.events("web");
    let installed = of_kind(&events, "certificate_installed");
    let last = installed.last().unwrap();
    assert_eq!(last["trigger"], "schedule", "{last}");
    assert_eq!(last["previous"], hex(&first));
    assert_eq!(last["thumbprint"], hex(&second));
    assert_eq!(last["version"], second_version.as_str());

    // Unchanged checks keep coming, and update the last-check time without filling the log.
    let count = events.len();
    let mut seen = BTreeSet::new();
    seen.insert(listener_view(admin, "web")["last_check"].to_string());
    wait_for("two more scheduled checks", Duration::from_secs(20), || {
        seen.insert(listener_view(admin, "web")["last_check"].to_string());
        (seen.len() >= 3).then_some(())
    });
    let view = listener_view(admin, "web");
    assert_eq!(view["last_outcome"]["outcome"], "unchanged", "{view}");
    assert_eq!(
        scene.events("web").len(),
        count,
        "unchanged checks record nothing"
    );

    // The listener with its own yearly schedule was not checked meanwhile.
    let yearly = listener_view(admin, "yearly");
    assert_eq!(yearly["last_check"], yearly_checked, "{yearly}");
    assert!(
        yearly["next_check"]
            .as_str()
            .is_some_and(|t| t.contains("-01-01T00:00:00")),
        "{yearly}"
    );
    assert_eq!(scene.served(&gateway, "yearly"), other_first.thumbprint);
}

// ---- Pinned versions ------------------------------------------------------------------------

#[test]
fn a_versioned_reference_stays_on_its_version() {
    let scene = Scene::new();
    let first = scene.leaf();
    let first_version = scene.import("site", &first);
    let pinned_uri = format!("{}/{first_version}", scene.uri("site"));
    let (config, admin) = scene.config(
        NO_SCHEDULE,
        &[
            ListenerSpec::key_vault("pinned", &pinned_uri),
            ListenerSpec::key_vault("follows", &scene.uri("site")),
        ],
    );

    // check-config warns that the pinned listener will never rotate.
    let (ok, stdout, stderr) =
        gateway_cli(&["check-config", "--config", config.to_str().unwrap()], &[]);
    assert!(ok, "{stderr}");
    let pinned_line = stdout
        .lines()
        .find(|l| l.contains("`pinned`"))
        .unwrap_or_else(|| panic!("{stdout}"));
    assert!(pinned_line.contains("never rotate"), "{pinned_line}");
    let follows_line = stdout.lines().find(|l| l.contains("`follows`")).unwrap();
    assert!(!follows_line.contains("never rotate"), "{follows_line}");

    let gateway = Gateway::start(&config, &[]);
    assert_eq!(scene.served(&gateway, "pinned"), first.thumbprint);
    let pinned_events = scene.events("pinned").len();

    // A newer version and a refresh: the pinned listener stays, the versionless one follows.
    let second = scene.leaf();
    scene.import("site", &second);
    let outcome = admin_refresh(admin, "pinned");
    assert_eq!(outcome["outcome"], "unchanged", "{outcome}");
    assert_eq!(outcome["thumbprint"], hex(&first));
    assert_eq!(outcome["version"], first_version.as_str());
    assert_eq!(admin_refresh(admin, "follows")["outcome"], "rotated");
    assert_eq!(
        scene.served_with_request(&gateway, "pinned"),
        first.thumbprint
    );
    assert_eq!(scene.served(&gateway, "follows"), second.thumbprint);
    assert_eq!(scene.events("pinned").len(), pinned_events);
    assert_eq!(
        listener_view(admin, "pinned")["version"],
        first_version.as_str()
    );

    // The pinned version is still checked: disabled, it is a configuration failure, and the
    // listener keeps serving it.
    scene
        .vault
        .emulator()
        .set_secret_enabled("site", Some(&first_version), false);
    let outcome = admin_refresh(admin, "pinned");
    assert_failed(&outcome, "configuration", &["disabled"]);
    assert_eq!(scene.served(&gateway, "pinned"), first.thumbprint);
    let events = scene.events("pinned");
    let failed = of_kind(&events, "fetch_failed");
    assert_eq!(failed.len(), 1, "{events:?}");
    assert_eq!(failed[0]["class"], "configuration");
    assert_eq!(failed[0]["trigger"], "manual");
}

// ---- Failure policy -------------------------------------------------------------------------

#[test]
fn with_key_vault_down_the_old_certificate_stays_and_a_refresh_after_it_returns_rotates() {
    let mut scene = Scene::new();
    let first = scene.leaf();
    scene.import("site", &first);
    let (config, admin) = scene.config(
        NO_SCHEDULE,
        &[ListenerSpec::key_vault("web", &scene.uri("site"))],
    );
    let gateway = Gateway::start(&config, &[]);
    let second = scene.leaf();
    scene.import("site", &second);

    // Key Vault (and its token endpoint) stop answering: connections are refused. The client
    // retries for about half a minute, then the check fails as transient.
    scene.vault.stop();
    let outcome = admin_refresh(admin, "web");
    assert_failed(&outcome, "transient", &[]);
    assert_eq!(scene.served_with_request(&gateway, "web"), first.thumbprint);
    let (status, ready) = admin_request(admin, "GET", "/readyz");
    assert_eq!(
        status, 200,
        "a transient failure keeps the listener ready: {ready}"
    );
    let events = scene.events("web");
    let failed = of_kind(&events, "fetch_failed");
    assert_eq!(failed.len(), 1, "{:?}", kinds(&events));
    assert_eq!(failed[0]["class"], "transient");
    assert_eq!(failed[0]["trigger"], "manual");
    assert!(listener_view(admin, "web")["failing_since"].is_string());

    // Key Vault is back: the next refresh installs the new version and ends the streak.
    scene.vault.restart();
    let outcome = admin_refresh(admin, "web");
    assert_eq!(outcome["outcome"], "rotated", "{outcome}");
    assert_eq!(outcome["to"], hex(&second));
    assert_eq!(
        scene.served_with_request(&gateway, "web"),
        second.thumbprint
    );
    let events = scene.events("web");
    assert_eq!(of_kind(&events, "fetch_failed").len(), 1);
    assert_eq!(events.last().unwrap()["kind"], "certificate_installed");
    assert!(listener_view(admin, "web")["failing_since"].is_null());
}

#[test]
fn a_throttling_storm_is_recorded_once_per_streak_and_the_old_certificate_stays() {
    let scene = Scene::new();
    let first = scene.leaf();
    scene.import("site", &first);
    let (config, admin) = scene.config(
        NO_SCHEDULE,
        &[ListenerSpec::key_vault("web", &scene.uri("site"))],
    );
    let gateway = Gateway::start(&config, &[]);
    let second = scene.leaf();
    scene.import("site", &second);

    // Every secret read is throttled (429, Retry-After: 1): each refresh fails as transient after
    // the client's own retries, and the streak is recorded once.
    let storm = || Fault {
        path_prefix: "/secrets/".into(),
        kind: FaultKind::Status(429),
        count: None,
    };
    scene.vault.emulator().inject_fault(storm());
    for _ in 0..3 {
        let outcome = admin_refresh(admin, "web");
        assert_failed(&outcome, "transient", &["429"]);
        assert_eq!(scene.served(&gateway, "web"), first.thumbprint);
    }
    assert_eq!(scene.served_with_request(&gateway, "web"), first.thumbprint);
    let events = scene.events("web");
    let failed = of_kind(&events, "fetch_failed");
    assert_eq!(
        failed.len(),
        1,
        "one event per streak: {:?}",
        kinds(&events)
    );
    assert_eq!(failed[0]["class"], "transient");
    assert_eq!(
        of_kind(&events, "certificate_fetched").len(),
        1,
        "nothing new was fetched"
    );

    // The storm ends: the new version is installed.
    scene.vault.emulator().clear_faults();
    let outcome = admin_refresh(admin, "web");
    assert_eq!(outcome["outcome"], "rotated", "{outcome}");
    assert_eq!(scene.served(&gateway, "web"), second.thumbprint);

    // A later storm is a new streak, recorded again.
    scene.vault.emulator().inject_fault(storm());
    assert_failed(&admin_refresh(admin, "web"), "transient", &["429"]);
    assert_eq!(scene.served(&gateway, "web"), second.thumbprint);
    let events = scene.events("web");
    assert_eq!(
        of_kind(&events, "fetch_failed").len(),
        2,
        "{:?}",
        kinds(&events)
    );
    scene.vault.emulator().clear_faults();
}

#[test]
fn short_bursts_of_throttling_server_errors_and_dropped_connections_are_retried_by_the_client() {
    let scene = Scene::new();
    let first = scene.leaf();
    scene.import("site", &first);
    let (config, admin) = scene.config(
        NO_SCHEDULE,
        &[ListenerSpec::key_vault("web", &scene.uri("site"))],
    );
    let gateway = Gateway::start(&config, &[]);
    let burst = |kind: FaultKind, count: u32| {
        scene.vault.emulator().inject_fault(Fault {
            path_prefix: "/secrets/".into(),
            kind,
            count: Some(count),
        })
    };

    let second = scene.leaf();
    scene.import("site", &second);
    burst(FaultKind::Status(429), 2);
    let outcome = admin_refresh(admin, "web");
    assert_eq!(
        outcome["outcome"], "rotated",
        "two 429s are retried: {outcome}"
    );
    assert_eq!(scene.served(&gateway, "web"), second.thumbprint);

    let third = scene.leaf();
    scene.import("site", &third);
    burst(FaultKind::Status(500), 2);
    let outcome = admin_refresh(admin, "web");
    assert_eq!(
        outcome["outcome"], "rotated",
        "two 500s are retried: {outcome}"
    );
    assert_eq!(scene.served(&gateway, "web"), third.thumbprint);

    burst(FaultKind::Status(503), 1);
    let outcome = admin_refresh(admin, "web");
    assert_eq!(
        outcome["outcome"], "unchanged",
        "a 503 is retried: {outcome}"
    );

    burst(FaultKind::DropConnection, 1);
    let outcome = admin_refresh(admin, "web");
    assert_eq!(
        outcome["outcome"], "unchanged",
        "a dropped connection is retried: {outcome}"
    );

    assert_eq!(scene.served_with_request(&gateway, "web"), third.thumbprint);
    let events = scene.events("web");
    assert!(
        of_kind(&events, "fetch_failed").is_empty(),
        "{:?}",
        kinds(&events)
    );
    assert_eq!(of_kind(&events, "certificate_installed").len(), 3);
}

#[test]
fn when_the_identity_endpoint_refuses_the_restored_certificate_stays_until_a_token_can_be_had() {
    let scene = Scene::new();
    let first = scene.leaf();
    scene.import("site", &first);
    let (config, admin) = scene.config(
        NO_SCHEDULE,
        &[ListenerSpec::key_vault("web", &scene.uri("site"))],
    );
    let gateway = Gateway::start(&config, &[]);
    assert_eq!(scene.served(&gateway, "web"), first.thumbprint);
    gateway.kill();

    // The token endpoint no longer knows the identity (400 "Identity not found"), and a restarted
    // gateway has no token cached: it serves from its log and its checks fail.
    scene.vault.emulator().remove_identity(READER);
    let second = scene.leaf();
    scene.import("site", &second);
    let before = scene.events("web").len();
    let gateway = Gateway::start(&config, &[]);
    assert_eq!(scene.served(&gateway, "web"), first.thumbprint);
    let outcome = admin_refresh(admin, "web");
    assert_failed(&outcome, "configuration", &[READER]);
    assert_eq!(scene.served_with_request(&gateway, "web"), first.thumbprint);
    let events = scene.events("web");
    let since_restart = &events[before..];
    assert_eq!(
        kinds(since_restart),
        ["certificate_restored", "fetch_failed"],
        "the startup check's failure is recorded; the refresh's, of the same streak, is not"
    );
    assert_eq!(since_restart[1]["class"], "configuration");
    assert_eq!(since_restart[1]["trigger"], "startup");

    // The identity is back, and the token endpoint fails once (500), which the identity client
    // retries: the new version is installed.
    scene.vault.emulator().add_identity(READER, &["get"], &[]);
    scene.vault.emulator().inject_fault(Fault {
        path_prefix: "/metadata/identity/oauth2/token".into(),
        kind: FaultKind::Status(500),
        count: Some(1),
    });
    let outcome = admin_refresh(admin, "web");
    assert_eq!(outcome["outcome"], "rotated", "{outcome}");
    assert_eq!(outcome["from"], hex(&first));
    assert_eq!(outcome["to"], hex(&second));
    assert_eq!(
        scene.served_with_request(&gateway, "web"),
        second.thumbprint
    );
    let events = scene.events("web");
    assert_eq!(of_kind(&events, "fetch_failed").len(), 1);
}

#[test]
fn after_access_is_revoked_the_listener_keeps_serving_by_default() {
    let scene = Scene::new();
    let first = scene.leaf();
    scene.import("site", &first);
    let (config, admin) = scene.config(
        NO_SCHEDULE,
        &[ListenerSpec::key_vault("web", &scene.uri("site"))],
    );
    let gateway = Gateway::start(&config, &[]);
    let second = scene.leaf();
    scene.import("site", &second);

    scene.vault.emulator().revoke_identity(READER);
    for _ in 0..2 {
        let outcome = admin_refresh(admin, "web");
        assert_failed(&outcome, "configuration", &[READER]);
        assert_eq!(scene.served_with_request(&gateway, "web"), first.thumbprint);
    }
    let (status, ready) = admin_request(admin, "GET", "/readyz");
    assert_eq!(status, 200, "keep-serving stays ready: {ready}");
    assert_eq!(listener_view(admin, "web")["state"], "serving");
    let events = scene.events("web");
    let failed = of_kind(&events, "fetch_failed");
    assert_eq!(failed.len(), 1, "{:?}", kinds(&events));
    assert_eq!(failed[0]["class"], "configuration");
    assert!(of_kind(&events, "listener_disabled").is_empty());

    scene.vault.emulator().add_identity(READER, &["get"], &[]);
    let outcome = admin_refresh(admin, "web");
    assert_eq!(outcome["outcome"], "rotated", "{outcome}");
    assert_eq!(
        scene.served_with_request(&gateway, "web"),
        second.thumbprint
    );
}

#[test]
fn with_disable_listener_a_revoked_listener_is_out_of_service_until_a_check_succeeds() {
    let scene = Scene::new();
    let first = scene.leaf();
    scene.import("site", &first);
    let file_leaf = scene.leaf();
    let pem = scene.dir.path().join("files.pem");
    std::fs::write(&pem, file_leaf.bundle_pem(&scene.pki)).unwrap();
    let (config, admin) = scene.config(
        "on_config_error = \"disable-listener\"\nschedule = \"0 0 0 1 1 *\"\njitter = \"0s\"",
        &[
            ListenerSpec::key_vault("web", &scene.uri("site")),
            ListenerSpec::pem_file("files", &pem),
        ],
    );
    let gateway = Gateway::start(&config, &[]);
    assert_eq!(scene.served(&gateway, "web"), first.thumbprint);

    scene.vault.emulator().revoke_identity(READER);
    let outcome = admin_refresh(admin, "web");
    assert_failed(&outcome, "configuration", &[READER]);
    let refused = |gateway: &Gateway| {
        let result = try_served_leaf(gateway.addr("web"), "localhost", &scene.pki.ca_pem);
        let err = result.expect_err("a disabled listener completes no handshake");
        assert!(
            err.contains("UnrecognisedName"),
            "the handshake ends with an unrecognized_name alert: {err}"
        );
        err
    };
    refused(&gateway);
    assert_eq!(
        scene.served_with_request(&gateway, "files"),
        file_leaf.thumbprint,
        "the other listener keeps serving"
    );
    // The admin API shows it out of service. Readiness does not wait for it: it is out on
    // purpose, and the gateway's other listeners serve (gateway/src/admin.rs `readyz`).
    assert_eq!(listener_view(admin, "web")["state"], "disabled");
    let (status, ready) = admin_request(admin, "GET", "/readyz");
    assert_eq!(status, 200, "{ready}");
    let events = scene.events("web");
    let tail: Vec<String> = kinds(&events).split_off(events.len() - 2);
    assert_eq!(tail, ["fetch_failed", "listener_disabled"]);
    assert_eq!(events[events.len() - 2]["class"], "configuration");
    assert!(
        events[events.len() - 1]["reason"]
            .as_str()
            .unwrap()
            .contains("disable-listener"),
        "{}",
        events[events.len() - 1]
    );

    // A restart while access is still denied keeps it out of service.
    gateway.kill();
    let before = scene.events("web").len();
    let gateway = Gateway::start(&config, &[]);
    refused(&gateway);
    assert_eq!(scene.served(&gateway, "files"), file_leaf.thumbprint);
    wait_for("the startup check to fail", Duration::from_secs(20), || {
        let events = scene.events("web");
        (of_kind(&events[before..], "fetch_failed").len() == 1).then_some(())
    });
    refused(&gateway);

    // Access is restored: the next check succeeds and puts the listener back.
    scene.vault.emulator().add_identity(READER, &["get"], &[]);
    let outcome = admin_refresh(admin, "web");
    assert_eq!(outcome["outcome"], "unchanged", "{outcome}");
    assert_eq!(scene.served_with_request(&gateway, "web"), first.thumbprint);
    let (status, ready) = admin_request(admin, "GET", "/readyz");
    assert_eq!(status, 200, "{ready}");
    assert_eq!(listener_view(admin, "web")["state"], "serving");
    let events = scene.events("web");
    assert_eq!(
        kinds(&events[before..]),
        ["certificate_restored", "fetch_failed", "listener_reenabled"]
    );
    assert_eq!(of_kind(&events, "listener_disabled").len(), 1);
}

#[test]
fn a_disabled_or_deleted_secret_is_a_configuration_failure_and_the_old_certificate_stays() {
    let scene = Scene::new();
    let first = scene.leaf();
    scene.import("site", &first);
    let (config, admin) = scene.config(
        NO_SCHEDULE,
        &[ListenerSpec::key_vault("web", &scene.uri("site"))],
    );
    let gateway = Gateway::start(&config, &[]);

    scene
        .vault
        .emulator()
        .set_secret_enabled("site", None, false);
    assert_failed(&admin_refresh(admin, "web"), "configuration", &["disabled"]);
    assert_eq!(scene.served_with_request(&gateway, "web"), first.thumbprint);
    let events = scene.events("web");
    let failed = of_kind(&events, "fetch_failed");
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0]["class"], "configuration");

    // Enabled again: the check succeeds, which ends the streak.
    scene
        .vault
        .emulator()
        .set_secret_enabled("site", None, true);
    assert_eq!(admin_refresh(admin, "web")["outcome"], "unchanged");

    scene.vault.emulator().delete_secret("site");
    assert_failed(
        &admin_refresh(admin, "web"),
        "configuration",
        &["not found"],
    );
    assert_eq!(scene.served_with_request(&gateway, "web"), first.thumbprint);
    let (status, ready) = admin_request(admin, "GET", "/readyz");
    assert_eq!(status, 200, "{ready}");
    let events = scene.events("web");
    let failed = of_kind(&events, "fetch_failed");
    assert_eq!(failed.len(), 2, "{:?}", kinds(&events));
    assert_eq!(failed[1]["class"], "configuration");
    assert_eq!(of_kind(&events, "certificate_installed").len(), 1);
}

#[test]
fn a_bad_new_version_is_rejected_and_only_its_own_listener_is_concerned() {
    let scene = Scene::new();
    let first = scene.leaf();
    scene.import("site", &first);
    let api_leaf = scene.leaf();
    scene.import("api", &api_leaf);
    let (config, admin) = scene.config(
        NO_SCHEDULE,
        &[
            ListenerSpec::key_vault("web", &scene.uri("site")),
            ListenerSpec::key_vault("api", &scene.uri("api")),
        ],
    );
    let gateway = Gateway::start(&config, &[]);
    let api_events = scene.events("api").len();

    let mismatched = scene.leaf();
    let other_key = scene.leaf();
    let expired = scene.pki.expired_leaf(&["localhost"]);
    let elsewhere = scene.pki.leaf(&["www.example.test"]);
    let cases: [(&str, String, Thumbprint, &str); 3] = [
        (
            "the wrong key",
            format!(
                "{}{}{}",
                mismatched.cert_pem, scene.pki.ca_pem, other_key.key_pem
            ),
            mismatched.thumbprint,
            "does not match",
        ),
        (
            "expired",
            expired.bundle_pem(&scene.pki),
            expired.thumbprint,
            "expired",
        ),
        (
            "not covering the hostname",
            elsewhere.bundle_pem(&scene.pki),
            elsewhere.thumbprint,
            "does not cover hostname localhost",
        ),
    ];
    for (what, bundle, thumbprint, reason) in cases {
        let version = scene
            .vault
            .emulator()
            .import_certificate("site", bundle.as_bytes(), None)
            .unwrap_or_else(|e| panic!("{what}: the emulator refused the import: {e}"));
        let outcome = admin_refresh(admin, "web");
        assert_eq!(outcome["outcome"], "rejected", "{what}: {outcome}");
        assert_eq!(outcome["version"], version.as_str(), "{what}");
        assert!(
            outcome["reason"].as_str().unwrap().contains(reason),
            "{what}: {outcome}"
        );
        assert_eq!(
            scene.served_with_request(&gateway, "web"),
            first.thumbprint,
            "{what}"
        );
        let events = scene.events("web");
        let last = events.last().unwrap();
        assert_eq!(last["kind"], "certificate_rejected", "{what}: {last}");
        assert_eq!(last["trigger"], "manual");
        assert_eq!(last["version"], version.as_str());
        assert_eq!(last["thumbprint"], thumbprint.to_string());
        assert!(last["reason"].as_str().unwrap().contains(reason), "{last}");

        // The other listener is not concerned.
        assert_eq!(scene.served(&gateway, "api"), api_leaf.thumbprint, "{what}");
        assert_eq!(
            admin_refresh(admin, "api")["outcome"],
            "unchanged",
            "{what}"
        );
    }
    assert_eq!(scene.events("api").len(), api_events);
    let (status, ready) = admin_request(admin, "GET", "/readyz");
    assert_eq!(status, 200, "{ready}");

    // A good version after the bad ones is installed.
    let good = scene.leaf();
    scene.import("site", &good);
    let outcome = admin_refresh(admin, "web");
    assert_eq!(outcome["outcome"], "rotated", "{outcome}");
    assert_eq!(outcome["from"], hex(&first));
    assert_eq!(scene.served(&gateway, "web"), good.thumbprint);
    let events = scene.events("web");
    assert!(of_kind(&events, "fetch_failed").is_empty());
    assert_eq!(of_kind(&events, "certificate_rejected").len(), 3);
}

// ---- Crash safety ---------------------------------------------------------------------------

/// Sends `POST /listeners/{listener}/refresh` and ignores whatever happens: the gateway may die
/// while it runs.
fn refresh_ignoring_the_answer(admin: SocketAddr, listener: &str) {
    let Ok(mut sock) = TcpStream::connect(admin) else {
        return;
    };
    let _ = sock.set_read_timeout(Some(Duration::from_secs(60)));
    let _ = write!(
        sock,
        "POST /listeners/{listener}/refresh HTTP/1.1\r\nHost: {admin}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    let _ = sock.read_to_end(&mut Vec::new());
}

fn audit_verify(state: &Path) {
    let (ok, stdout, stderr) = gateway_cli(
        &["audit", "--state", state.to_str().unwrap(), "--verify"],
        &[],
    );
    assert!(ok, "the log verifies: {stdout}{stderr}");
}

#[test]
fn killed_during_a_rotation_the_gateway_restarts_from_its_log_without_key_vault() {
    let mut scene = Scene::new();
    let first = scene.leaf();
    scene.import("site", &first);
    let (config, admin) = scene.config(
        NO_SCHEDULE,
        &[ListenerSpec::key_vault("web", &scene.uri("site"))],
    );
    let mut imported = BTreeSet::from([first.thumbprint]);

    // Each round kills the gateway at another point of a rotation slowed down by a delayed
    // answer from Key Vault.
    for kill_after_ms in [60, 180, 260, 400] {
        let gateway = Gateway::start(&config, &[]);
        let next = scene.leaf();
        imported.insert(next.thumbprint);
        scene.import("site", &next);
        scene.vault.emulator().inject_fault(Fault {
            path_prefix: "/secrets/".into(),
            kind: FaultKind::Delay(Duration::from_millis(200)),
            count: Some(1),
        });
        let refresh = std::thread::spawn(move || refresh_ignoring_the_answer(admin, "web"));
        std::thread::sleep(Duration::from_millis(kill_after_ms));
        gateway.kill();
        refresh.join().unwrap();

        // Key Vault is down: the restarted gateway serves what its log says it last installed.
        scene.vault.stop();
        let gateway = Gateway::start(&config, &[]);
        let served = scene.served(&gateway, "web");
        let events = scene.events("web");
        let installed = of_kind(&events, "certificate_installed");
        let last_installed = installed.last().unwrap();
        assert_eq!(
            last_installed["thumbprint"],
            served.to_string(),
            "killed after {kill_after_ms} ms: the last installed certificate is served"
        );
        assert!(imported.contains(&served));
        let restored = events.last().unwrap();
        assert_eq!(restored["kind"], "certificate_restored", "{restored}");
        assert_eq!(restored["thumbprint"], served.to_string());
        assert_eq!(scene.served_with_request(&gateway, "web"), served);
        eprintln!(
            "killed after {kill_after_ms} ms: restarted serving {}",
            if served == next.thumbprint {
                "the new certificate"
            } else {
                "the old certificate"
            }
        );
        gateway.kill();
        audit_verify(&scene.state());
        scene.vault.restart();
    }
}
