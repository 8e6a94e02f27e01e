//! The event log against real redb files in temporary directories.

mod common;

use std::fs;
use std::path::Path;
use std::time::Duration;

use cert_bundle::Thumbprint;
use common::{bundle, configured, install, key_der};
use event_log::{
    ChainBreak, Envelope, Event, EventKind, EventLog, EventLogError, FailureClass, Query, Trigger,
    DATABASE_FILE, SEAL_KEY_FILE,
};
use redb::{Database, ReadableTable, TableDefinition};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

// The on-disk layout, restated here on purpose: these tests edit the file the way an attacker or a
// damaged disk would, and fail if the layout changes without a schema version bump.
const EVENTS: TableDefinition<'static, u64, &[u8]> = TableDefinition::new("events");
const META: TableDefinition<'static, &str, &[u8]> = TableDefinition::new("meta");

fn failed(message: &str) -> Event {
    Event::FetchFailed {
        trigger: Trigger::Schedule,
        class: FailureClass::Transient,
        message: message.into(),
    }
}

fn seqs(envelopes: &[Envelope]) -> Vec<u64> {
    envelopes.iter().map(|e| e.seq).collect()
}

/// Overwrites the stored bytes of entry `seq` with `edit` applied, as someone with write access
/// to the file could.
fn edit_entry(dir: &Path, seq: u64, edit: impl FnOnce(&mut Vec<u8>)) {
    let db = Database::open(dir.join(DATABASE_FILE)).expect("open db directly");
    let txn = db.begin_write().expect("write txn");
    {
        let mut events = txn.open_table(EVENTS).expect("events table");
        let mut bytes = events
            .get(seq)
            .expect("get")
            .expect("entry exists")
            .value()
            .to_vec();
        edit(&mut bytes);
        events.insert(seq, bytes.as_slice()).expect("insert");
    }
    txn.commit().expect("commit");
}

fn replace_first(bytes: &mut [u8], from: &[u8], to: &[u8]) {
    let at = bytes
        .windows(from.len())
        .position(|w| w == from)
        .expect("pattern present");
    bytes[at..at + to.len()].copy_from_slice(to);
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn query_filters_by_listener_kind_time_and_limit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = EventLog::open(dir.path()).expect("open");
    let web = bundle("web.example");

    let e1 = log.append("web", configured("web.pem")).expect("append");
    std::thread::sleep(Duration::from_millis(3));
    let e2 = log.append("api", configured("api.pem")).expect("append");
    std::thread::sleep(Duration::from_millis(3));
    let e3 = install(&log, "web", &web, None);
    std::thread::sleep(Duration::from_millis(3));
    let e4 = log.append("web", failed("timeout")).expect("append");
    std::thread::sleep(Duration::from_millis(3));
    let e5 = log.append("api", failed("403")).expect("append");

    assert_eq!(seqs(&[e1, e2.clone(), e3, e4.clone(), e5]), [1, 2, 3, 4, 5]);

    let all = log.query(&Query::default()).expect("query");
    assert_eq!(seqs(&all), [1, 2, 3, 4, 5]);

    let web_only = Query {
        listener: Some("web".into()),
        ..Query::default()
    };
    assert_eq!(seqs(&log.query(&web_only).expect("query")), [1, 3, 4]);

    let failures = Query {
        kind: Some(EventKind::FetchFailed),
        ..Query::default()
    };
    assert_eq!(seqs(&log.query(&failures).expect("query")), [4, 5]);

    let both = Query {
        listener: Some("api".into()),
        kind: Some(EventKind::FetchFailed),
        ..Query::default()
    };
    assert_eq!(seqs(&log.query(&both).expect("query")), [5]);

    // `since` is inclusive and `until` exclusive.
    let window = Query {
        since_ms: Some(e2.at_ms),
        until_ms: Some(e4.at_ms),
        ..Query::default()
    };
    assert_eq!(seqs(&log.query(&window).expect("query")), [2, 3]);

    // A limit keeps the most recent matches, still oldest first.
    let last_two = Query {
        limit: Some(2),
        ..Query::default()
    };
    assert_eq!(seqs(&log.query(&last_two).expect("query")), [4, 5]);
    let last_two_web = Query {
        limit: Some(2),
        ..web_only.clone()
    };
    assert_eq!(seqs(&log.query(&last_two_web).expect("query")), [3, 4]);
    let none = Query {
        limit: Some(0),
        ..Query::default()
    };
    assert!(log.query(&none).expect("query").is_empty());
}

#[test]
fn the_first_entry_starts_the_chain_and_each_names_the_previous() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = EventLog::open(dir.path()).expect("open");
    let first = log.append("web", configured("a")).expect("append");
    let second = log.append("web", configured("b")).expect("append");
    assert_eq!(first.prev_hash, [0; 32]);
    assert_ne!(second.prev_hash, [0; 32]);
    assert_eq!(log.verify().expect("verify").head.len(), 32);
    assert_eq!(first.format, event_log::ENVELOPE_FORMAT);
}

#[test]
fn the_snapshot_state_equals_a_replay_of_the_whole_log() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = EventLog::open(dir.path()).expect("open");
    let (a, b) = (bundle("web.example"), bundle("web.example"));

    log.append("web", configured("kv://web")).expect("append");
    log.append("api", configured("kv://api")).expect("append");
    install(&log, "web", &a, None);
    log.append("api", failed("timeout")).expect("append");
    log.append(
        "api",
        Event::ListenerDisabled {
            reason: "secret deleted".into(),
        },
    )
    .expect("append");
    log.append(
        "web",
        Event::CertificateRejected {
            trigger: Trigger::Manual,
            thumbprint: Some(b.thumbprint()),
            version: Some("v2".into()),
            reason: "name mismatch".into(),
        },
    )
    .expect("append");
    install(&log, "web", &b, Some(a.thumbprint()));
    log.append(
        "web",
        Event::CertificateRestored {
            thumbprint: b.thumbprint(),
            version: Some("0123abcd".into()),
        },
    )
    .expect("append");
    log.append("api", Event::ListenerReenabled).expect("append");
    log.append(
        "web",
        Event::ExpiryWarning {
            thumbprint: b.thumbprint(),
            not_after: 1_900_000_000,
        },
    )
    .expect("append");

    let state = log.state().expect("state");
    assert_eq!(state, log.replay_all().expect("replay"));

    let web = &state.listeners["web"];
    let installed = web.installed.as_ref().expect("web has a certificate");
    assert_eq!(installed.thumbprint, b.thumbprint());
    assert_eq!(
        installed.seq, 7,
        "the restore at 8 does not move the install"
    );
    assert_eq!(web.last_seq, 10);
    let api = &state.listeners["api"];
    assert!(!api.disabled);
    assert!(api.installed.is_none());
    assert_eq!(
        api.last_failure.as_ref().map(|f| (f.1, f.2.as_str())),
        Some((FailureClass::Transient, "timeout"))
    );

    // A rebuilt snapshot is the same.
    assert_eq!(log.rebuild_snapshot().expect("rebuild"), state);
    assert_eq!(log.state().expect("state"), state);
}

#[test]
fn a_restart_keeps_the_log_the_state_and_the_certificates() {
    let dir = tempfile::tempdir().expect("tempdir");
    let web = bundle("web.example");
    let (before, state_before) = {
        let log = EventLog::open(dir.path()).expect("open");
        log.append("web", configured("kv://web")).expect("append");
        install(&log, "web", &web, None);
        (
            log.query(&Query::default()).expect("query"),
            log.state().expect("state"),
        )
    };

    let log = EventLog::open(dir.path()).expect("reopen");
    assert_eq!(log.query(&Query::default()).expect("query"), before);
    assert_eq!(log.state().expect("state"), state_before);
    let (installed, restored) = log
        .installed_bundle("web")
        .expect("installed bundle")
        .expect("web has one");
    assert_eq!(installed.thumbprint, web.thumbprint());
    assert_eq!(restored.thumbprint(), web.thumbprint());

    let next = log.append("web", Event::ListenerReenabled).expect("append");
    assert_eq!(next.seq, 3);
    assert_eq!(log.verify().expect("verify").entries, 3);
}

#[test]
fn installed_bundle_returns_the_exact_chain_and_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = EventLog::open(dir.path()).expect("open");
    let web = bundle("web.example");
    assert!(log.installed_bundle("web").expect("lookup").is_none());

    let envelope = install(&log, "web", &web, None);
    let (installed, restored) = log
        .installed_bundle("web")
        .expect("lookup")
        .expect("installed");
    assert_eq!(installed.seq, envelope.seq);
    assert_eq!(installed.trigger, Trigger::Schedule);
    assert_eq!(installed.version.as_deref(), Some("0123abcd"));
    assert_eq!(installed.installed_at_ms, envelope.at_ms);
    assert_eq!(restored.chain(), web.chain());
    assert_eq!(restored.chain().len(), 2);
    assert_eq!(restored.private_key(), web.private_key());
    assert!(log.installed_bundle("api").expect("lookup").is_none());
}

#[test]
fn material_sealed_for_another_listener_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = EventLog::open(dir.path()).expect("open");
    let web = bundle("web.example");
    let event = Event::CertificateInstalled {
        trigger: Trigger::Config,
        previous: None,
        thumbprint: web.thumbprint(),
        version: None,
        source: "web.pem".into(),
        not_after: 0,
        material: log.seal("api", &web).expect("seal"),
    };
    let err = log.append("web", event).expect_err("sealed for api");
    assert!(
        matches!(err, EventLogError::MaterialMismatch { .. }),
        "{err}"
    );
    assert!(log.query(&Query::default()).expect("query").is_empty());
}

#[cfg(unix)]
#[test]
fn the_seal_key_is_created_private_and_a_readable_one_is_refused() {
    use std::os::unix::fs::PermissionsExt;

    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("state");
    drop(EventLog::open(&state).expect("open"));
    let key_path = state.join(SEAL_KEY_FILE);
    let meta = fs::metadata(&key_path).expect("seal.key exists");
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    assert_eq!(meta.len(), 32);
    let db_mode = fs::metadata(state.join(DATABASE_FILE))
        .expect("db")
        .permissions()
        .mode();
    assert_eq!(db_mode & 0o077, 0, "the database is private too");
    assert_eq!(
        fs::metadata(&state).expect("dir").permissions().mode() & 0o077,
        0
    );

    fs::set_permissions(&key_path, fs::Permissions::from_mode(0o644)).expect("chmod");
    let err = EventLog::open(&state).expect_err("world-readable key");
    assert!(
        matches!(err, EventLogError::SealKeyPermissions { .. }),
        "{err}"
    );
    let message = err.to_string();
    assert!(
        message.contains(&key_path.display().to_string()),
        "{message}"
    );
    assert!(message.contains("chmod 600"), "{message}");

    fs::set_permissions(&key_path, fs::Permissions::from_mode(0o600)).expect("chmod");
    EventLog::open(&state).expect("private again");
}

#[test]
fn a_seal_key_of_the_wrong_length_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    drop(EventLog::open(dir.path()).expect("open"));
    let key_path = dir.path().join(SEAL_KEY_FILE);
    let mut key = fs::read(&key_path).expect("read key");
    key.push(0);
    fs::write(&key_path, key).expect("write key");
    let err = EventLog::open(dir.path()).expect_err("33-byte key");
    assert!(
        matches!(err, EventLogError::SealKeyLength { len: 33, .. }),
        "{err}"
    );
    assert!(err.to_string().contains(&key_path.display().to_string()));
}

#[test]
fn a_missing_seal_key_next_to_an_existing_log_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let log = EventLog::open(dir.path()).expect("open");
        install(&log, "web", &bundle("web.example"), None);
    }
    fs::remove_file(dir.path().join(SEAL_KEY_FILE)).expect("remove key");
    let err = EventLog::open(dir.path()).expect_err("key missing");
    assert!(matches!(err, EventLogError::SealKeyMissing { .. }), "{err}");
    assert!(
        !dir.path().join(SEAL_KEY_FILE).exists(),
        "no new key was made"
    );
}

#[test]
fn the_database_file_never_holds_the_private_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let web = bundle("web.example");
    {
        let log = EventLog::open(dir.path()).expect("open");
        install(&log, "web", &web, None);
        install(&log, "web", &web, Some(web.thumbprint()));
        log.rebuild_snapshot().expect("rebuild");
    }
    let raw = fs::read(dir.path().join(DATABASE_FILE)).expect("read db");
    let key = key_der(&web);
    assert!(!contains(&raw, &key), "the whole key DER is in the file");
    let middle = key.len() / 2;
    assert!(
        !contains(&raw, &key[middle..middle + 16]),
        "16 bytes of the key are in the file"
    );
    // The chain is public and stored in the clear, which shows the search itself works.
    assert!(contains(&raw, web.chain()[0].as_ref()));
}

#[test]
fn debug_display_and_json_never_show_key_material() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = EventLog::open(dir.path()).expect("open");
    let web = bundle("web.example");
    let envelope = install(&log, "web", &web, Some(Thumbprint([0xAB; 32])));
    let key = key_der(&web);
    let middle = &key[key.len() / 2..key.len() / 2 + 8];
    let as_numbers = format!("{middle:?}");
    let as_numbers = as_numbers.trim_matches(['[', ']']);

    let debug = format!("{envelope:?}");
    let display = envelope.to_string();
    let json = serde_json::to_string(&envelope).expect("json");
    for (name, text) in [("Debug", &debug), ("Display", &display), ("JSON", &json)] {
        assert!(
            !text.contains(&hex::encode(middle)) && !text.contains(&hex::encode_upper(middle)),
            "{name} shows the key in hex: {text}"
        );
        assert!(
            !text.contains(as_numbers),
            "{name} shows the key as numbers: {text}"
        );
        // No byte arrays at all: the sealed key and the chain appear as lengths only.
        assert!(!text.contains("sealed_key: ["), "{name}: {text}");
        assert!(!text.contains("chain: ["), "{name}: {text}");
    }

    // What the audit line does show.
    assert!(
        display.contains(" #1 web certificate_installed trigger=schedule "),
        "{display}"
    );
    assert!(
        display.contains(&format!(
            "{} -> {}",
            Thumbprint([0xAB; 32]),
            web.thumbprint()
        )),
        "{display}"
    );
    assert!(display.contains("version=0123abcd"), "{display}");
    assert!(
        display.contains("not_after=2030-03-17T17:46:40Z"),
        "{display}"
    );
    assert!(debug.contains("sealed_key_bytes"), "{debug}");

    let value: serde_json::Value = serde_json::from_str(&json).expect("parse json");
    assert_eq!(value["kind"], "certificate_installed");
    assert_eq!(value["seq"], 1);
    assert_eq!(value["listener"], "web");
    assert_eq!(value["trigger"], "schedule");
    assert_eq!(value["thumbprint"], web.thumbprint().to_string());
    assert!(value.get("material").is_none());
}

#[test]
fn verify_passes_on_a_clean_log() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = EventLog::open(dir.path()).expect("open");
    let empty = log.verify().expect("empty log verifies");
    assert_eq!(empty.entries, 0);
    for i in 0..5 {
        log.append("web", configured(&format!("s{i}")))
            .expect("append");
    }
    let report = log.verify().expect("verify");
    assert_eq!(report.entries, 5);
    assert!(report.to_string().starts_with("5 entries verified"));
}

/// Given a log of `n` entries about `web`, closed.
fn closed_log(n: u64) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = EventLog::open(dir.path()).expect("open");
    for i in 0..n {
        log.append("web", configured(&format!("s{i}")))
            .expect("append");
    }
    dir
}

#[test]
fn verify_names_an_entry_that_was_altered_in_place() {
    let dir = closed_log(6);
    edit_entry(dir.path(), 3, |bytes| replace_first(bytes, b"web", b"wex"));

    let log = EventLog::open(dir.path()).expect("open");
    // The altered entry still decodes: only the chain shows the change.
    assert_eq!(
        log.query(&Query::default()).expect("query")[2].listener,
        "wex"
    );
    let err = log.verify().expect_err("altered");
    let EventLogError::ChainBroken(ref brk) = err else {
        panic!("expected a chain break, got {err}");
    };
    assert_eq!(brk, &ChainBreak::Altered { seq: 3, next: 4 });
    assert_eq!(brk.seq(), Some(3));
    assert!(
        err.to_string()
            .contains("entry 3 was altered: its hash no longer matches entry 4's prev_hash"),
        "{err}"
    );
}

#[test]
fn verify_names_the_last_entry_when_it_was_altered() {
    let dir = closed_log(4);
    edit_entry(dir.path(), 4, |bytes| replace_first(bytes, b"s3", b"s9"));
    let log = EventLog::open(dir.path()).expect("open");
    let err = log.verify().expect_err("altered");
    assert!(
        matches!(
            err,
            EventLogError::ChainBroken(ChainBreak::HeadMismatch { seq: 4 })
        ),
        "{err}"
    );
}

#[test]
fn verify_names_an_entry_that_cannot_be_decoded() {
    let dir = closed_log(4);
    edit_entry(dir.path(), 2, |bytes| bytes.truncate(bytes.len() / 2));
    let log = EventLog::open(dir.path()).expect("open");
    let err = log.verify().expect_err("undecodable");
    assert!(
        matches!(
            err,
            EventLogError::ChainBroken(ChainBreak::Undecodable { seq: 2, .. })
        ),
        "{err}"
    );
    assert!(
        err.to_string().contains("entry 2 cannot be decoded"),
        "{err}"
    );

    // Reading the log names the entry too, and never panics.
    let err = log.query(&Query::default()).expect_err("undecodable");
    assert!(matches!(err, EventLogError::Decode { seq: 2, .. }), "{err}");
    assert!(matches!(
        log.replay_all(),
        Err(EventLogError::Decode { seq: 2, .. })
    ));
}

#[test]
fn an_entry_of_an_unknown_format_is_named() {
    let dir = closed_log(2);
    edit_entry(dir.path(), 1, |bytes| bytes[0] = 9);
    let log = EventLog::open(dir.path()).expect("open");
    let err = log.query(&Query::default()).expect_err("format 9");
    assert!(
        matches!(
            err,
            EventLogError::UnknownFormat {
                seq: 1,
                format: 9,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn verify_finds_a_removed_entry() {
    let dir = closed_log(5);
    {
        let db = Database::open(dir.path().join(DATABASE_FILE)).expect("open db");
        let txn = db.begin_write().expect("txn");
        txn.open_table(EVENTS)
            .expect("events")
            .remove(3)
            .expect("remove");
        txn.commit().expect("commit");
    }
    let log = EventLog::open(dir.path()).expect("open");
    let err = log.verify().expect_err("gap");
    assert!(
        matches!(
            err,
            EventLogError::ChainBroken(ChainBreak::Gap {
                expected: 3,
                found: 4
            })
        ),
        "{err}"
    );
}

#[test]
fn a_file_that_is_not_a_database_is_named_as_damaged() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join(DATABASE_FILE);
    drop(EventLog::open(dir.path()).expect("open"));
    fs::write(
        &path,
        b"this is not a redb file, just some garbage bytes\n".repeat(100),
    )
    .expect("write garbage");
    let err = EventLog::open(dir.path()).expect_err("garbage");
    assert!(matches!(err, EventLogError::Damaged { .. }), "{err:?}");
    let message = err.to_string();
    assert!(message.contains(&path.display().to_string()), "{message}");
    assert!(message.contains("damaged"), "{message}");
}

#[test]
fn a_newer_schema_version_is_refused_with_advice() {
    let dir = closed_log(1);
    {
        let db = Database::open(dir.path().join(DATABASE_FILE)).expect("open db");
        let txn = db.begin_write().expect("txn");
        txn.open_table(META)
            .expect("meta")
            .insert("schema_version", &2u64.to_le_bytes()[..])
            .expect("insert");
        txn.commit().expect("commit");
    }
    let err = EventLog::open(dir.path()).expect_err("schema 2");
    assert!(
        matches!(
            err,
            EventLogError::SchemaVersion {
                found: 2,
                supported: 1,
                ..
            }
        ),
        "{err}"
    );
    let message = err.to_string();
    assert!(message.contains("schema version 2"), "{message}");
    assert!(
        message.contains("gateway release that supports schema 2"),
        "{message}"
    );
    assert!(message.contains(DATABASE_FILE), "{message}");
}

#[test]
fn a_second_open_of_the_same_log_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let _log = EventLog::open(dir.path()).expect("open");
    let err = EventLog::open(dir.path()).expect_err("already open");
    assert!(matches!(err, EventLogError::Locked { .. }), "{err}");
}

#[test]
fn open_existing_does_not_create_a_log() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("nope");
    let err = EventLog::open_existing(&missing).expect_err("no log");
    assert!(matches!(err, EventLogError::NotFound { .. }), "{err}");
    assert!(!missing.exists());

    drop(EventLog::open(dir.path()).expect("open"));
    EventLog::open_existing(dir.path()).expect("exists now");
}

#[test]
fn kinds_and_triggers_have_stable_names() {
    for kind in EventKind::ALL {
        assert_eq!(kind.to_string().parse::<EventKind>(), Ok(kind));
    }
    assert_eq!("fetch_failed".parse(), Ok(EventKind::FetchFailed));
    let err = "installed".parse::<EventKind>().expect_err("not a kind");
    assert!(
        err.to_string()
            .contains("certificate_installed, certificate_rejected"),
        "{err}"
    );

    for (name, trigger) in [
        ("startup", Trigger::Startup),
        ("schedule", Trigger::Schedule),
        ("manual", Trigger::Manual),
        ("config", Trigger::Config),
    ] {
        assert_eq!(name.parse(), Ok(trigger));
        assert_eq!(trigger.to_string(), name);
    }
    assert!("cron".parse::<Trigger>().is_err());
}

#[test]
fn the_log_can_be_used_from_several_threads() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = std::sync::Arc::new(EventLog::open(dir.path()).expect("open"));
    let handles: Vec<_> = (0..4)
        .map(|t| {
            let log = log.clone();
            std::thread::spawn(move || {
                for i in 0..10 {
                    log.append(&format!("l{t}"), configured(&format!("s{i}")))
                        .expect("append");
                }
            })
        })
        .collect();
    for h in handles {
        h.join().expect("thread");
    }
    assert_eq!(log.verify().expect("verify").entries, 40);
    assert_eq!(
        log.state().expect("state"),
        log.replay_all().expect("replay")
    );
}

#[test]
fn a_certificate_bundle_from_the_log_still_has_its_type() {
    // The crate stores the key-type tag; a PKCS#8 key comes back as PKCS#8.
    let dir = tempfile::tempdir().expect("tempdir");
    let log = EventLog::open(dir.path()).expect("open");
    let web = bundle("web.example");
    install(&log, "web", &web, None);
    let (_, restored) = log.installed_bundle("web").expect("lookup").expect("some");
    assert!(matches!(restored.private_key(), PrivateKeyDer::Pkcs8(_)));
    let _: &[CertificateDer<'static>] = restored.chain();
}
