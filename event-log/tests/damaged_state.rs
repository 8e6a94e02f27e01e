//! Damaged state (issue 8): a truncated database file and a full disk. Each gives an
//! `EventLogError` that names the file and says what to do, never a panic, and leaves the rest of
//! the state directory as it was.
//!
//! The full-disk tests mount a small tmpfs, which needs root (CAP_SYS_ADMIN); where that is not
//! permitted they print `skipped: …` and pass; under `CI=true` they fail instead.

mod common;
mod small_disk;

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::Path;

use cert_bundle::CertificateBundle;
use common::{bundle, bundle_for, configured, install, key_der, try_install};
use event_log::{
    Envelope, Event, EventLog, EventLogError, FailureClass, Query, Trigger, DATABASE_FILE,
    SEAL_KEY_FILE,
};
use small_disk::SmallDisk;

/// redb's page size: the unit the database file grows by.
const PAGE: usize = 4096;

// ---- Certificates and events ----------------------------------------------------------------

/// A certificate with 400 names, so that its chain (about 10 KiB) needs fresh pages in the
/// database file. A small event can fit in pages that earlier commits freed, which a full disk
/// does not stop; this one cannot.
fn big_bundle(name: &str) -> CertificateBundle {
    let mut names = vec![name.to_owned()];
    names.extend((0..400).map(|i| format!("alt-{i:03}.{name}")));
    bundle_for(names)
}

/// Writes a history about two listeners into the log in `dir`: configured, installed, a fetch
/// failure, a rotation. Returns the certificate `web` serves at the end and every entry.
fn write_history(log: &EventLog) -> (CertificateBundle, Vec<Envelope>) {
    let (first, second) = (bundle("web.example"), bundle("web.example"));
    log.append("web", configured("kv://web")).expect("append");
    log.append("api", configured("kv://api")).expect("append");
    install(log, "web", &first, None);
    install(log, "api", &bundle("api.example"), None);
    log.append(
        "web",
        Event::FetchFailed {
            trigger: Trigger::Schedule,
            class: FailureClass::Transient,
            message: "timeout".into(),
        },
    )
    .expect("append");
    install(log, "web", &second, Some(first.thumbprint()));
    let entries = log.query(&Query::default()).expect("query");
    (second, entries)
}

// ---- The state directory as bytes -----------------------------------------------------------

/// Every file in `dir` with its bytes and permission bits: what "left as it was" compares.
fn files_in(dir: &Path) -> BTreeMap<String, (Vec<u8>, u32)> {
    use std::os::unix::fs::PermissionsExt;
    fs::read_dir(dir)
        .expect("read state dir")
        .map(|entry| {
            let entry = entry.expect("dir entry");
            let meta = entry.metadata().expect("metadata");
            (
                entry.file_name().to_string_lossy().into_owned(),
                (
                    fs::read(entry.path()).expect("read file"),
                    meta.permissions().mode() & 0o7777,
                ),
            )
        })
        .collect()
}

/// A message must never carry the seal key or a private key, in any spelling.
#[track_caller]
fn assert_no_secrets(message: &str, secrets: &[&[u8]]) {
    for secret in secrets {
        let middle = &secret[secret.len() / 2 - 8..secret.len() / 2 + 8];
        assert!(
            !message.contains(&hex::encode(middle))
                && !message.contains(&hex::encode_upper(middle)),
            "secret bytes in hex in: {message}"
        );
        let as_numbers = format!("{middle:?}");
        assert!(
            !message.contains(as_numbers.trim_matches(['[', ']'])),
            "secret bytes as numbers in: {message}"
        );
    }
}

// ---- Truncated database file ----------------------------------------------------------------

/// A log cut short at any point (to nothing, inside redb's header, to half, one page short, a few
/// KiB short, one byte short) is refused with `Truncated`: the message names the file, says how
/// long it is and (once the header is whole) how long it should be, and says to restore it from
/// a backup or move it aside to start a new log. Opening for reading (`gateway audit`) refuses it
/// the same way. A refusal changes nothing in the state directory: the seal key, the damaged file
/// and any other file keep their bytes and modes, and no file is created.
#[test]
fn a_truncated_log_is_refused_with_advice_and_the_state_directory_is_left_as_it_was() {
    let original = tempfile::tempdir().expect("tempdir");
    let secret_key = {
        let log = EventLog::open(original.path()).expect("open");
        let (serving, _) = write_history(&log);
        key_der(&serving)
    };
    let whole = fs::read(original.path().join(DATABASE_FILE)).expect("read db");
    let seal_key = fs::read(original.path().join(SEAL_KEY_FILE)).expect("read key");
    let len = whole.len();
    assert!(len > 4 * PAGE, "the log spans several pages ({len} bytes)");

    let cuts = [
        ("to nothing", 0),
        ("inside the magic number", 5),
        ("inside the header", 100),
        ("right after the header", 320),
        ("to half", len / 2),
        ("to all but the last page", len - PAGE),
        ("by a few KiB", len - 3 * 1024),
        ("by one byte", len - 1),
    ];
    for (how, cut) in cuts {
        let dir = tempfile::tempdir().expect("tempdir");
        let db_path = dir.path().join(DATABASE_FILE);
        fs::copy(
            original.path().join(SEAL_KEY_FILE),
            dir.path().join(SEAL_KEY_FILE),
        )
        .expect("copy key");
        fs::write(&db_path, &whole[..cut]).expect("write truncated db");
        fs::write(dir.path().join("NOTES"), "an operator's file").expect("write notes");
        let before = files_in(dir.path());

        for (opener, result) in [
            ("open", EventLog::open(dir.path())),
            ("open_existing", EventLog::open_existing(dir.path())),
        ] {
            let err = result.expect_err(&format!("{opener} of a log cut {how}"));
            let EventLogError::Truncated {
                ref path,
                len: found,
                expected,
            } = err
            else {
                panic!("{opener} of a log cut {how}: expected Truncated, got {err:?}");
            };
            assert_eq!(path, &db_path, "cut {how}");
            assert_eq!(found, cut as u64, "cut {how}");
            let message = err.to_string();
            assert!(
                message.contains(&format!("{} is truncated", db_path.display())),
                "cut {how}: {message}"
            );
            match cut {
                0 => assert!(message.contains("is empty (0 bytes)"), "{message}"),
                _ if cut < 320 => assert_eq!(expected, None, "cut {how}"),
                _ => {
                    assert_eq!(expected, Some(len as u64), "cut {how}: the header's length");
                    assert!(
                        message.contains(&format!(
                            "holds {cut} bytes, but its header says it holds {len}"
                        )),
                        "{message}"
                    );
                }
            }
            assert!(message.contains("Restore it from a backup"), "{message}");
            assert!(
                message.contains(&format!(
                    "`mv {} {}.damaged`",
                    db_path.display(),
                    db_path.display()
                )),
                "{message}"
            );
            assert_no_secrets(&message, &[&seal_key, &secret_key]);
            assert_eq!(
                files_in(dir.path()),
                before,
                "{opener} of a log cut {how} changed the state directory"
            );
        }
    }
}

/// What the advice leads to: with the damaged file moved aside, the gateway starts a new, empty
/// log with the same seal key, and the damaged file is still there for whoever wants to look.
#[test]
fn a_truncated_log_moved_aside_gives_way_to_a_new_log() {
    let dir = tempfile::tempdir().expect("tempdir");
    drop(write_history(&EventLog::open(dir.path()).expect("open")));
    let db_path = dir.path().join(DATABASE_FILE);
    let whole = fs::read(&db_path).expect("read db");
    fs::write(&db_path, &whole[..whole.len() / 2]).expect("truncate");
    let seal_key = fs::read(dir.path().join(SEAL_KEY_FILE)).expect("read key");
    assert!(matches!(
        EventLog::open(dir.path()),
        Err(EventLogError::Truncated { .. })
    ));

    let aside = dir.path().join(format!("{DATABASE_FILE}.damaged"));
    fs::rename(&db_path, &aside).expect("move aside");
    let log = EventLog::open(dir.path()).expect("a new log");
    assert_eq!(log.verify().expect("verify").entries, 0);
    log.append("web", configured("kv://web")).expect("append");
    assert_eq!(
        fs::read(dir.path().join(SEAL_KEY_FILE)).expect("read key"),
        seal_key
    );
    assert_eq!(fs::read(&aside).expect("read aside").len(), whole.len() / 2);
}

/// Bytes written past the end of a cleanly closed log (a copy onto a preallocated file, say) are
/// refused with `Overlong`, which gives both lengths and says how to give the file its length
/// back, without touching the file (redb 2 would panic on it). Doing what the message says brings
/// the whole history back.
#[test]
fn bytes_written_past_the_end_of_the_log_are_refused_with_the_repair() {
    let dir = tempfile::tempdir().expect("tempdir");
    let entries = {
        let log = EventLog::open(dir.path()).expect("open");
        write_history(&log).1
    };
    let db_path = dir.path().join(DATABASE_FILE);
    let len = fs::metadata(&db_path).expect("db").len();
    let mut file = fs::OpenOptions::new()
        .append(true)
        .open(&db_path)
        .expect("open db file");
    file.write_all(&[0; 3 * PAGE]).expect("grow");
    drop(file);
    let before = files_in(dir.path());

    let err = EventLog::open(dir.path()).expect_err("overlong");
    assert!(
        matches!(err, EventLogError::Overlong { len: l, expected, .. }
            if l == len + 3 * PAGE as u64 && expected == len),
        "{err:?}"
    );
    let message = err.to_string();
    let repair = format!("truncate -s {len} {}", db_path.display());
    assert!(message.contains(&repair), "{message}");
    assert_eq!(
        files_in(dir.path()),
        before,
        "the refusal changed the state directory"
    );

    fs::OpenOptions::new()
        .write(true)
        .open(&db_path)
        .and_then(|f| f.set_len(len))
        .expect("truncate as advised");
    let log = EventLog::open(dir.path()).expect("open the repaired log");
    assert_eq!(log.query(&Query::default()).expect("query"), entries);
    assert_eq!(log.verify().expect("verify").entries, entries.len() as u64);
}

// ---- Full disk ------------------------------------------------------------------------------

/// On a full disk an append fails with `StorageFull`: the message names the file, says there is
/// no space left and to free some, and carries no key material. Nothing of the event is in the
/// log; the entries before it read back, verify, and still give the installed certificate; the
/// seal key is untouched. Once space is freed the same `EventLog` appends again (it reopened the
/// database by itself: no restart), and the result survives a reopen.
#[test]
fn a_full_disk_refuses_the_append_keeps_the_log_whole_and_appends_resume_when_space_is_freed() {
    let Some(disk) = SmallDisk::mount("4m") else {
        return;
    };
    let state = disk.path().join("state");
    let db_path = state.join(DATABASE_FILE);
    let log = EventLog::open(&state).expect("open");
    let (serving, before) = write_history(&log);
    let seal_key = fs::read(state.join(SEAL_KEY_FILE)).expect("read key");
    let next = big_bundle("web.example");

    let filler = disk.fill();
    let err =
        try_install(&log, "web", &next, Some(serving.thumbprint())).expect_err("the disk is full");
    let EventLogError::StorageFull { ref path, .. } = err else {
        panic!("expected StorageFull, got {err:?}");
    };
    assert_eq!(path, &db_path);
    let message = err.to_string();
    for needle in [
        &format!("no space left for the event log {}", db_path.display()),
        "No space left on device",
        "the file system that holds it is full",
        "this change was not recorded",
        "the entries already in the log are intact",
        "Free space on that file system",
    ] {
        assert!(message.contains(needle), "`{needle}` missing in: {message}");
    }
    assert_no_secrets(&message, &[&seal_key, &key_der(&next)]);

    // Still full: everything written before reads back and verifies, and the last installed
    // certificate is still the one to serve.
    assert_eq!(log.query(&Query::default()).expect("query"), before);
    assert_eq!(log.verify().expect("verify").entries, before.len() as u64);
    assert_eq!(
        log.state().expect("state"),
        log.replay_all().expect("replay")
    );
    let (installed, restored) = log
        .installed_bundle("web")
        .expect("installed bundle")
        .expect("web has one");
    assert_eq!(installed.thumbprint, serving.thumbprint());
    assert_eq!(restored.private_key(), serving.private_key());

    fs::remove_file(filler).expect("free the space");
    let envelope =
        try_install(&log, "web", &next, Some(serving.thumbprint())).expect("space again");
    assert_eq!(envelope.seq, before.len() as u64 + 1);
    assert_eq!(log.verify().expect("verify").entries, envelope.seq);
    assert_eq!(
        log.installed_bundle("web")
            .expect("lookup")
            .expect("some")
            .0
            .thumbprint,
        next.thumbprint()
    );
    drop(log);

    let log = EventLog::open(&state).expect("reopen");
    assert_eq!(log.verify().expect("verify").entries, envelope.seq);
    assert_eq!(
        fs::read(state.join(SEAL_KEY_FILE)).expect("read key"),
        seal_key
    );
}

/// An existing log opens on a full disk: opening writes nothing when the tables are there, so
/// the history (and the certificates to restore) can still be read.
#[test]
fn an_existing_log_opens_and_reads_on_a_full_disk() {
    let Some(disk) = SmallDisk::mount("4m") else {
        return;
    };
    let state = disk.path().join("state");
    let (serving, before) = write_history(&EventLog::open(&state).expect("open"));
    let _filler = disk.fill();

    let log = EventLog::open(&state).expect("open on a full disk");
    assert_eq!(log.query(&Query::default()).expect("query"), before);
    assert_eq!(log.verify().expect("verify").entries, before.len() as u64);
    let (installed, _) = log.installed_bundle("web").expect("lookup").expect("some");
    assert_eq!(installed.thumbprint, serving.thumbprint());
}

/// A first start on a full disk fails with an error that says so, and leaves nothing
/// half-written behind: neither a short seal key nor an uninitialized database file, either of
/// which would later read as damage. Once space is freed, the log is created normally (with the
/// seal key that was already there, if one was).
#[test]
fn a_first_start_on_a_full_disk_leaves_nothing_half_written() {
    let Some(disk) = SmallDisk::mount("1m") else {
        return;
    };
    let state = disk.path().join("state");
    let key_path = state.join(SEAL_KEY_FILE);
    let db_path = state.join(DATABASE_FILE);

    // Nothing there yet: the seal key cannot be written.
    let filler = disk.fill();
    let err = EventLog::open(&state).expect_err("no space for the seal key");
    let message = err.to_string();
    assert!(message.contains("No space left on device"), "{message}");
    assert!(
        !key_path.exists(),
        "a short seal key was left behind: {message}"
    );
    assert!(!db_path.exists(), "{message}");
    fs::remove_file(filler).expect("free the space");

    // A seal key but no database: the database cannot be initialized.
    {
        use std::os::unix::fs::OpenOptionsExt;
        let mut key = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&key_path)
            .expect("create key");
        key.write_all(&[7; 32]).expect("write key");
    }
    let filler = disk.fill();
    let err = EventLog::open(&state).expect_err("no space for the database");
    assert!(
        matches!(&err, EventLogError::StorageFull { path, .. } if path == &db_path),
        "{err:?}"
    );
    assert!(
        !db_path.exists(),
        "an uninitialized database file was left behind"
    );
    assert_eq!(fs::read(&key_path).expect("read key"), [7; 32]);
    fs::remove_file(filler).expect("free the space");

    let log = EventLog::open(&state).expect("open once there is space");
    log.append("web", configured("kv://web")).expect("append");
    assert_eq!(log.verify().expect("verify").entries, 1);
    assert_eq!(fs::read(&key_path).expect("read key"), [7; 32]);
}
