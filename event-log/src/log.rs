//! The event log on disk: opening, appending, reading, verifying.

use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{PoisonError, RwLock, RwLockReadGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use aes_gcm::Aes256Gcm;
use cert_bundle::CertificateBundle;
use redb::{Database, Durability, ReadableTable, StorageError};
use rustls_pki_types::CertificateDer;
use sha2::{Digest, Sha256};

use crate::codec;
use crate::error::{ChainBreak, EventLogError};
use crate::event::{Envelope, Event, EventKind, SealedBundle, ENVELOPE_FORMAT};
use crate::seal;
use crate::state::{apply, InstalledCertificate, ListenerState, State};
use crate::tables::{EVENTS, META, META_HEAD, META_SCHEMA, SCHEMA_VERSION, SNAPSHOT};

/// The name of the database file inside the state directory.
pub const DATABASE_FILE: &str = "events.redb";
/// The name of the seal key file inside the state directory.
pub const SEAL_KEY_FILE: &str = "seal.key";

/// An open event log. Every method blocks on disk I/O: call it from `spawn_blocking` or a
/// `SyncArbiter`, never from an async task. Appends are serialized by redb's single writer.
///
/// An I/O error (a full disk gives [`EventLogError::StorageFull`]) fails that call only: the log
/// reopens the database, which rolls back to the last commit, and later calls work again once
/// the cause is gone.
pub struct EventLog {
    /// `None` only between an I/O failure and a successful reopen (see `with_db`).
    db: RwLock<Option<Database>>,
    /// The database file, named in every storage error.
    path: PathBuf,
    /// The seal key, used for `seal` and to open installed bundles.
    cipher: Aes256Gcm,
}

impl fmt::Debug for EventLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventLog")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// Which entries [`EventLog::query`] returns. The default returns every entry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Query {
    /// Only entries about this listener.
    pub listener: Option<String>,
    /// Only entries of this kind.
    pub kind: Option<EventKind>,
    /// Only entries appended at or after this time (Unix ms, inclusive).
    pub since_ms: Option<i64>,
    /// Only entries appended before this time (Unix ms, exclusive).
    pub until_ms: Option<i64>,
    /// Only the most recent `limit` matching entries (still returned oldest first).
    pub limit: Option<usize>,
}

impl Query {
    fn matches(&self, envelope: &Envelope) -> bool {
        self.listener
            .as_deref()
            .is_none_or(|l| l == envelope.listener)
            && self.kind.is_none_or(|k| k == envelope.kind())
            && self.since_ms.is_none_or(|s| envelope.at_ms >= s)
            && self.until_ms.is_none_or(|u| envelope.at_ms < u)
    }
}

/// The outcome of a successful [`EventLog::verify`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    /// How many entries were checked (all of them).
    pub entries: u64,
    /// The hash of the last entry (all zeros for an empty log).
    pub head: [u8; 32],
}

impl fmt::Display for VerifyReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} entries verified, head hash {}",
            self.entries,
            hex::encode(self.head)
        )
    }
}

/// A storage error mapper for the database at `path`. A full disk gets its own error.
fn storage<E: Into<redb::Error>>(path: &Path) -> impl FnOnce(E) -> EventLogError + '_ {
    move |e| match e.into() {
        redb::Error::Io(source) if is_storage_full(&source) => EventLogError::StorageFull {
            path: path.to_owned(),
            source,
        },
        other => EventLogError::Storage {
            path: path.to_owned(),
            source: Box::new(other),
        },
    }
}

/// `ENOSPC` or `EDQUOT`: there is no room left for the file.
fn is_storage_full(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
    )
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

impl EventLog {
    /// Opens the log in `dir`, creating the directory (mode 0700), the seal key and the database
    /// when they do not exist.
    ///
    /// A database file that is empty or shorter than its header says is refused as
    /// [`EventLogError::Truncated`], one that is longer as [`EventLogError::Overlong`], before
    /// anything in `dir` is created or written. Opening a log that is already set up writes
    /// nothing, so it works on a full disk.
    pub fn open(dir: &Path) -> Result<EventLog, EventLogError> {
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder
            .create(dir)
            .map_err(|source| EventLogError::CreateDir {
                path: dir.to_owned(),
                source,
            })?;
        Self::open_in(dir, true)
    }

    /// Opens the log in `dir` without creating anything: for tools that only read (`gateway
    /// audit`), so that a mistyped directory is an error rather than a new empty log.
    pub fn open_existing(dir: &Path) -> Result<EventLog, EventLogError> {
        let path = dir.join(DATABASE_FILE);
        if !path.is_file() {
            return Err(EventLogError::NotFound { path });
        }
        Self::open_in(dir, false)
    }

    fn open_in(dir: &Path, may_create: bool) -> Result<EventLog, EventLogError> {
        let path = dir.join(DATABASE_FILE);
        let key_path = dir.join(SEAL_KEY_FILE);
        // Nothing is created or changed before the existing file is known to be whole: a failed
        // open leaves the state directory exactly as it was.
        let existing = check_database_file(&path)?;
        if existing && !key_path.exists() {
            return Err(EventLogError::SealKeyMissing {
                key: key_path,
                db: path,
            });
        }
        let cipher = seal::load_or_create_key(&key_path, may_create)?;
        if existing {
            let db = open_database(&path)?;
            Self::init_tables(&db, &path)?;
            return Ok(EventLog::with_database(db, path, cipher));
        }
        if !may_create {
            return Err(EventLogError::NotFound { path });
        }
        // A new log. The history is for the gateway's owner only: the file is created private
        // before redb initializes it. If anything fails before the tables are committed (a full
        // disk), the file is removed again, so that it cannot later pass for a truncated log.
        create_private_file(&path)?;
        let created = catch_redb_panic(&path, || Database::create(&path))
            .and_then(|db| Self::init_tables(&db, &path).map(|()| db));
        if created.is_err() {
            if let Err(e) = std::fs::remove_file(&path) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    tracing::warn!(path = %path.display(), error = %e, "cannot remove the event log file of a failed first start");
                }
            }
        }
        Ok(EventLog::with_database(created?, path, cipher))
    }

    fn with_database(db: Database, path: PathBuf, cipher: Aes256Gcm) -> EventLog {
        EventLog {
            db: RwLock::new(Some(db)),
            path,
            cipher,
        }
    }

    /// Runs `f` on the open database.
    ///
    /// After an I/O error (a full disk, above all) redb refuses every further transaction of that
    /// handle ("previous I/O error"), so the handle is closed and the file opened again at once:
    /// redb rolls back to the last commit, and the next call works as soon as the cause is gone,
    /// without a restart. When the file cannot be opened again, the next call tries again.
    fn with_db<T>(
        &self,
        f: impl FnOnce(&Database) -> Result<T, EventLogError>,
    ) -> Result<T, EventLogError> {
        let result = {
            let guard = self.open_handle()?;
            match guard.as_ref() {
                Some(db) => f(db),
                None => Err(storage(&self.path)(redb::Error::PreviousIo)),
            }
        };
        if let Err(e) = &result {
            if e.is_io_failure() {
                tracing::warn!(path = %self.path.display(), error = %e, "event log I/O failed; reopening the database");
                self.reopen();
            }
        }
        result
    }

    /// The database handle (never `None`), opened again first if an I/O failure closed it.
    fn open_handle(&self) -> Result<RwLockReadGuard<'_, Option<Database>>, EventLogError> {
        loop {
            let guard = self.db.read().unwrap_or_else(PoisonError::into_inner);
            if guard.is_some() {
                return Ok(guard);
            }
            drop(guard);
            let mut slot = self.db.write().unwrap_or_else(PoisonError::into_inner);
            if slot.is_none() {
                *slot = Some(reopen_database(&self.path)?);
                tracing::info!(path = %self.path.display(), "event log reopened");
            }
        }
    }

    /// Closes the handle after an I/O failure and opens the file again; if that fails, the handle
    /// stays closed and the next call tries again.
    fn reopen(&self) {
        let mut slot = self.db.write().unwrap_or_else(PoisonError::into_inner);
        // redb holds a lock on the file while the handle is open: close it before opening again.
        drop(slot.take());
        match reopen_database(&self.path) {
            Ok(db) => *slot = Some(db),
            Err(e) => {
                tracing::error!(path = %self.path.display(), error = %e, "cannot reopen the event log; trying again on its next use");
            }
        }
    }

    /// Creates the tables on first start, and checks the schema version on later ones. Runs on
    /// the bare handle, before there is a log whose `with_db` would reopen it: a failed open just
    /// fails.
    fn init_tables(db: &Database, path: &Path) -> Result<(), EventLogError> {
        // Reading first: opening a log that is already set up writes nothing, so it works on a
        // full disk too.
        if Self::tables_ready(db, path)? {
            return Ok(());
        }
        let txn = db.begin_write().map_err(storage(path))?;
        {
            let mut meta = txn.open_table(META).map_err(|e| layout_error(path, e))?;
            let stored = meta
                .get(META_SCHEMA)
                .map_err(storage(path))?
                .map(|v| <[u8; 8]>::try_from(v.value()).map(u64::from_le_bytes));
            match stored {
                Some(Ok(SCHEMA_VERSION)) => {}
                Some(Ok(found)) => {
                    return Err(EventLogError::SchemaVersion {
                        path: path.to_owned(),
                        found,
                        supported: SCHEMA_VERSION,
                    })
                }
                Some(Err(_)) => {
                    return Err(EventLogError::SchemaVersion {
                        path: path.to_owned(),
                        found: 0,
                        supported: SCHEMA_VERSION,
                    })
                }
                None => {
                    meta.insert(META_SCHEMA, &SCHEMA_VERSION.to_le_bytes()[..])
                        .map_err(storage(path))?;
                }
            }
            txn.open_table(EVENTS).map_err(|e| layout_error(path, e))?;
            txn.open_table(SNAPSHOT)
                .map_err(|e| layout_error(path, e))?;
        }
        txn.commit().map_err(storage(path))?;
        Ok(())
    }

    /// Whether every table exists with the schema version this build writes. A table of another
    /// type or another schema version is an error.
    fn tables_ready(db: &Database, path: &Path) -> Result<bool, EventLogError> {
        use redb::TableError::TableDoesNotExist;
        let txn = db.begin_read().map_err(storage(path))?;
        let meta = match txn.open_table(META) {
            Ok(meta) => meta,
            Err(TableDoesNotExist(_)) => return Ok(false),
            Err(e) => return Err(layout_error(path, e)),
        };
        let stored = meta
            .get(META_SCHEMA)
            .map_err(storage(path))?
            .map(|v| <[u8; 8]>::try_from(v.value()).map_or(0, u64::from_le_bytes));
        match stored {
            None => return Ok(false),
            Some(SCHEMA_VERSION) => {}
            Some(found) => {
                return Err(EventLogError::SchemaVersion {
                    path: path.to_owned(),
                    found,
                    supported: SCHEMA_VERSION,
                })
            }
        }
        match txn.open_table(EVENTS) {
            Ok(_) => {}
            Err(TableDoesNotExist(_)) => return Ok(false),
            Err(e) => return Err(layout_error(path, e)),
        }
        match txn.open_table(SNAPSHOT) {
            Ok(_) => Ok(true),
            Err(TableDoesNotExist(_)) => Ok(false),
            Err(e) => Err(layout_error(path, e)),
        }
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Seals a bundle's private key for `listener`, for a [`Event::CertificateInstalled`] about
    /// that listener. The chain is kept in the clear.
    pub fn seal(
        &self,
        listener: &str,
        bundle: &CertificateBundle,
    ) -> Result<SealedBundle, EventLogError> {
        let thumbprint = bundle.thumbprint();
        let sealed_key = seal::seal_key(&self.cipher, listener, &thumbprint, bundle.private_key())?;
        Ok(SealedBundle {
            chain: bundle.chain().iter().map(|c| c.as_ref().to_vec()).collect(),
            sealed_key,
        })
    }

    /// Appends an event about `listener` and returns the stored envelope. The entry, the head
    /// hash and the listener's snapshot are written in one durable transaction.
    ///
    /// An install whose material was not sealed by this log for this listener and thumbprint is
    /// refused, so the log never holds an install it cannot restore.
    pub fn append(&self, listener: &str, event: Event) -> Result<Envelope, EventLogError> {
        if let Event::CertificateInstalled {
            thumbprint,
            material,
            ..
        } = &event
        {
            if seal::open_key(&self.cipher, listener, thumbprint, &material.sealed_key).is_none() {
                return Err(EventLogError::MaterialMismatch {
                    listener: listener.to_owned(),
                });
            }
        }

        self.with_db(|db| self.append_in(db, listener, event))
    }

    fn append_in(
        &self,
        db: &Database,
        listener: &str,
        event: Event,
    ) -> Result<Envelope, EventLogError> {
        let path = &self.path;
        let mut txn = db.begin_write().map_err(storage(path))?;
        txn.set_durability(Durability::Immediate);
        let envelope = {
            let mut events = txn.open_table(EVENTS).map_err(storage(path))?;
            let mut meta = txn.open_table(META).map_err(storage(path))?;
            let mut snapshot = txn.open_table(SNAPSHOT).map_err(storage(path))?;

            let seq = match events.last().map_err(storage(path))? {
                Some((k, _)) => k.value() + 1,
                None => 1,
            };
            let prev_hash = match meta.get(META_HEAD).map_err(storage(path))? {
                Some(v) => <[u8; 32]>::try_from(v.value()).map_err(|_| EventLogError::Storage {
                    path: path.clone(),
                    source: Box::new(
                        StorageError::Corrupted("the head hash is not 32 bytes".into()).into(),
                    ),
                })?,
                None => [0; 32],
            };
            let envelope = Envelope {
                format: ENVELOPE_FORMAT,
                seq,
                at_ms: now_ms(),
                listener: listener.to_owned(),
                event,
                prev_hash,
            };
            let bytes = codec::encode_envelope(&envelope)?;
            let hash: [u8; 32] = Sha256::digest(&bytes).into();
            events
                .insert(seq, bytes.as_slice())
                .map_err(storage(path))?;
            meta.insert(META_HEAD, &hash[..]).map_err(storage(path))?;

            let mut state = match snapshot.get(listener).map_err(storage(path))? {
                Some(v) => codec::decode_listener_state(listener, v.value())?,
                None => ListenerState::default(),
            };
            state.apply(&envelope);
            let encoded = codec::encode_listener_state(listener, &state)?;
            snapshot
                .insert(listener, encoded.as_slice())
                .map_err(storage(path))?;
            envelope
        };
        txn.commit().map_err(storage(path))?;
        tracing::debug!(seq = envelope.seq, listener, kind = %envelope.kind(), "appended event");
        Ok(envelope)
    }

    /// The state of every listener, read from the per-listener snapshot: its cost depends on the
    /// number of listeners, not on the length of the log.
    pub fn state(&self) -> Result<State, EventLogError> {
        self.with_db(|db| {
            let txn = db.begin_read().map_err(storage(&self.path))?;
            self.snapshot_in(&txn)
        })
    }

    /// The per-listener snapshot as `txn` sees it.
    fn snapshot_in(&self, txn: &redb::ReadTransaction) -> Result<State, EventLogError> {
        let path = &self.path;
        let snapshot = txn.open_table(SNAPSHOT).map_err(storage(path))?;
        let mut state = State::default();
        for row in snapshot.iter().map_err(storage(path))? {
            let (k, v) = row.map_err(storage(path))?;
            let listener = k.value().to_owned();
            let listener_state = codec::decode_listener_state(&listener, v.value())?;
            state.listeners.insert(listener, listener_state);
        }
        Ok(state)
    }

    /// The state of every listener, folded from the whole log. It equals [`EventLog::state`] on
    /// an intact log; `verify` and tests compare the two.
    pub fn replay_all(&self) -> Result<State, EventLogError> {
        let mut state = State::default();
        self.for_each(|envelope| {
            apply(&mut state, &envelope);
            Ok(())
        })?;
        Ok(state)
    }

    /// Replaces the per-listener snapshot with a replay of the whole log: the repair for a
    /// snapshot that cannot be decoded or disagrees with the log.
    pub fn rebuild_snapshot(&self) -> Result<State, EventLogError> {
        let state = self.replay_all()?;
        self.with_db(|db| {
            let path = &self.path;
            let mut txn = db.begin_write().map_err(storage(path))?;
            txn.set_durability(Durability::Immediate);
            {
                let mut snapshot = txn.open_table(SNAPSHOT).map_err(storage(path))?;
                snapshot.retain(|_, _| false).map_err(storage(path))?;
                for (listener, listener_state) in &state.listeners {
                    let encoded = codec::encode_listener_state(listener, listener_state)?;
                    snapshot
                        .insert(listener.as_str(), encoded.as_slice())
                        .map_err(storage(path))?;
                }
            }
            txn.commit().map_err(storage(path))?;
            Ok(state)
        })
    }

    /// Calls `f` with every envelope, oldest first.
    fn for_each(
        &self,
        mut f: impl FnMut(Envelope) -> Result<(), EventLogError>,
    ) -> Result<(), EventLogError> {
        self.with_db(|db| {
            let path = &self.path;
            let txn = db.begin_read().map_err(storage(path))?;
            let events = txn.open_table(EVENTS).map_err(storage(path))?;
            for row in events.iter().map_err(storage(path))? {
                let (k, v) = row.map_err(storage(path))?;
                f(codec::decode_envelope(k.value(), v.value())?)?;
            }
            Ok(())
        })
    }

    /// The listener's installed certificate and its bundle (chain and unsealed key), rebuilt from
    /// the install entry: what startup serves before it talks to Key Vault.
    pub fn installed_bundle(
        &self,
        listener: &str,
    ) -> Result<Option<(InstalledCertificate, CertificateBundle)>, EventLogError> {
        self.with_db(|db| {
            let path = &self.path;
            let txn = db.begin_read().map_err(storage(path))?;
            let snapshot = txn.open_table(SNAPSHOT).map_err(storage(path))?;
            let installed = match snapshot.get(listener).map_err(storage(path))? {
                Some(v) => codec::decode_listener_state(listener, v.value())?.installed,
                None => None,
            };
            let Some(installed) = installed else {
                return Ok(None);
            };
            let seq = installed.seq;
            let not_an_install = || EventLogError::NotAnInstall {
                seq,
                listener: listener.to_owned(),
            };
            let events = txn.open_table(EVENTS).map_err(storage(path))?;
            let bytes = events
                .get(seq)
                .map_err(storage(path))?
                .ok_or_else(not_an_install)?;
            let envelope = codec::decode_envelope(seq, bytes.value())?;
            let Event::CertificateInstalled {
                thumbprint,
                material,
                ..
            } = envelope.event
            else {
                return Err(not_an_install());
            };
            if envelope.listener != listener || thumbprint != installed.thumbprint {
                return Err(not_an_install());
            }
            let key = seal::open_key(&self.cipher, listener, &thumbprint, &material.sealed_key)
                .ok_or_else(|| EventLogError::Unseal {
                    seq,
                    listener: listener.to_owned(),
                })?;
            let chain = material
                .chain
                .into_iter()
                .map(CertificateDer::from)
                .collect();
            let bundle = CertificateBundle::new(chain, key)
                .map_err(|source| EventLogError::Bundle { seq, source })?;
            if bundle.thumbprint() != thumbprint {
                return Err(not_an_install());
            }
            Ok(Some((installed, bundle)))
        })
    }

    /// The entries that match `q`, oldest first. With a limit, the most recent `limit` matches.
    pub fn query(&self, q: &Query) -> Result<Vec<Envelope>, EventLogError> {
        if q.limit == Some(0) {
            return Ok(Vec::new());
        }
        self.with_db(|db| {
            let path = &self.path;
            let txn = db.begin_read().map_err(storage(path))?;
            let events = txn.open_table(EVENTS).map_err(storage(path))?;
            let rows = events.iter().map_err(storage(path))?;
            let mut out = Vec::new();
            let mut keep = |row: Result<_, redb::StorageError>| -> Result<bool, EventLogError> {
                let (k, v): (redb::AccessGuard<'_, u64>, redb::AccessGuard<'_, &[u8]>) =
                    row.map_err(storage(path))?;
                let envelope = codec::decode_envelope(k.value(), v.value())?;
                if q.matches(&envelope) {
                    out.push(envelope);
                }
                Ok(q.limit.is_some_and(|l| out.len() >= l))
            };
            match q.limit {
                None => {
                    for row in rows {
                        keep(row)?;
                    }
                }
                Some(_) => {
                    for row in rows.rev() {
                        if keep(row)? {
                            break;
                        }
                    }
                    out.reverse();
                }
            }
            Ok(out)
        })
    }

    /// Checks the whole log: sequence numbers without gaps, every entry decodable, every
    /// `prev_hash` equal to the hash of the entry before, the head hash equal to the hash of the
    /// last entry, and the snapshot equal to a replay.
    pub fn verify(&self) -> Result<VerifyReport, EventLogError> {
        self.with_db(|db| {
            let path = &self.path;
            let txn = db.begin_read().map_err(storage(path))?;
            let events = txn.open_table(EVENTS).map_err(storage(path))?;
            let meta = txn.open_table(META).map_err(storage(path))?;
            let head: Option<Vec<u8>> = meta
                .get(META_HEAD)
                .map_err(storage(path))?
                .map(|v| v.value().to_vec());

            let mut state = State::default();
            let mut expected = 1u64;
            let mut prev_hash = [0u8; 32];
            for row in events.iter().map_err(storage(path))? {
                let (k, v) = row.map_err(storage(path))?;
                let seq = k.value();
                if seq != expected {
                    return Err(ChainBreak::Gap {
                        expected,
                        found: seq,
                    }
                    .into());
                }
                let envelope = match codec::decode_envelope(seq, v.value()) {
                    Ok(envelope) => envelope,
                    Err(e) => {
                        return Err(ChainBreak::Undecodable {
                            seq,
                            reason: undecodable_reason(e),
                        }
                        .into())
                    }
                };
                if envelope.seq != seq {
                    return Err(ChainBreak::Misplaced {
                        seq,
                        claimed: envelope.seq,
                    }
                    .into());
                }
                if envelope.prev_hash != prev_hash {
                    return Err(if seq == 1 {
                        ChainBreak::BadStart { seq }
                    } else {
                        ChainBreak::Altered {
                            seq: seq - 1,
                            next: seq,
                        }
                    }
                    .into());
                }
                prev_hash = Sha256::digest(v.value()).into();
                apply(&mut state, &envelope);
                expected += 1;
            }
            let entries = expected - 1;
            match head {
                None if entries == 0 => {}
                Some(h) if entries == 0 => {
                    if h != [0; 32] {
                        return Err(ChainBreak::Truncated.into());
                    }
                }
                Some(h) if h == prev_hash => {}
                _ => return Err(ChainBreak::HeadMismatch { seq: entries }.into()),
            }
            // The snapshot as of the same transaction, so a concurrent append cannot look like a
            // divergence.
            let snapshot = self.snapshot_in(&txn)?;
            for (listener, replayed) in &state.listeners {
                if snapshot.listeners.get(listener) != Some(replayed) {
                    return Err(EventLogError::SnapshotDiverged {
                        listener: listener.clone(),
                    });
                }
            }
            if let Some(extra) = snapshot
                .listeners
                .keys()
                .find(|l| !state.listeners.contains_key(*l))
            {
                return Err(EventLogError::SnapshotDiverged {
                    listener: extra.clone(),
                });
            }
            Ok(VerifyReport {
                entries,
                head: prev_hash,
            })
        })
    }
}

/// The reason part of a decode error, without the "entry N" prefix the chain break adds again.
fn undecodable_reason(e: EventLogError) -> String {
    match e {
        EventLogError::Decode { reason, .. } => reason,
        other => other.to_string(),
    }
}

/// Turns a redb open error into one that names the file and says what to do.
fn open_error(path: &Path, e: redb::DatabaseError) -> EventLogError {
    use redb::DatabaseError as D;
    match e {
        D::DatabaseAlreadyOpen => EventLogError::Locked {
            path: path.to_owned(),
        },
        D::Storage(StorageError::Io(source)) if is_storage_full(&source) => {
            EventLogError::StorageFull {
                path: path.to_owned(),
                source,
            }
        }
        D::Storage(StorageError::Corrupted(_)) => EventLogError::Damaged {
            path: path.to_owned(),
            source: e,
        },
        D::Storage(StorageError::Io(ref io))
            if matches!(
                io.kind(),
                std::io::ErrorKind::InvalidData | std::io::ErrorKind::UnexpectedEof
            ) =>
        {
            EventLogError::Damaged {
                path: path.to_owned(),
                source: e,
            }
        }
        _ => EventLogError::OpenDatabase {
            path: path.to_owned(),
            source: e,
        },
    }
}

/// The length of redb's super-header, which holds the database layout.
const REDB_HEADER_LEN: usize = 320;
/// redb's magic number, the first bytes of every database file.
const REDB_MAGIC: [u8; 9] = [b'r', b'e', b'd', b'b', 0x1A, 0x0A, 0xA9, 0x0D, 0x0A];
/// The offset of redb's "god byte" of flags in the header.
const REDB_GOD_BYTE: usize = 9;
/// The flag of the god byte that says the file was not closed cleanly.
const REDB_RECOVERY_REQUIRED: u8 = 2;
/// The page size redb uses unless told otherwise (this crate never tells it otherwise).
const REDB_PAGE_SIZE: u64 = 4096;

/// Whether the database file exists, after checking that an existing one is whole: not empty,
/// and as long as its header says. redb 2 initializes an empty file as a new database, and
/// asserts the length (it panics); that would turn damage into a silently emptied history or a
/// crash. Nothing is written to the file.
fn check_database_file(path: &Path) -> Result<bool, EventLogError> {
    let unreadable = |source: std::io::Error| EventLogError::OpenDatabase {
        path: path.to_owned(),
        source: redb::DatabaseError::Storage(StorageError::Io(source)),
    };
    let mut file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(unreadable(e)),
    };
    let len = file.metadata().map_err(unreadable)?.len();
    let mut header = Vec::with_capacity(REDB_HEADER_LEN);
    file.by_ref()
        .take(REDB_HEADER_LEN as u64)
        .read_to_end(&mut header)
        .map_err(unreadable)?;
    let truncated = |expected| EventLogError::Truncated {
        path: path.to_owned(),
        len,
        expected,
    };
    if header.is_empty() {
        return Err(truncated(None));
    }
    let magic_len = header.len().min(REDB_MAGIC.len());
    if header[..magic_len] != REDB_MAGIC[..magic_len] {
        // Not a redb file at all: redb says so (`Damaged`).
        return Ok(true);
    }
    if header.len() < REDB_HEADER_LEN {
        return Err(truncated(None));
    }
    let field = |offset: usize| {
        let mut bytes = [0u8; 4];
        bytes.copy_from_slice(&header[offset..offset + 4]);
        u64::from(u32::from_le_bytes(bytes))
    };
    let (page_size, region_header_pages, region_pages, full_regions, trailing_pages) =
        (field(12), field(16), field(20), field(24), field(28));
    let damaged_header = || EventLogError::Damaged {
        path: path.to_owned(),
        source: redb::DatabaseError::Storage(StorageError::Corrupted(format!(
            "its header describes an impossible layout (page size {page_size}, \
             {full_regions} full regions of {region_pages} pages, {trailing_pages} trailing pages)"
        ))),
    };
    if page_size != REDB_PAGE_SIZE
        || region_pages == 0
        || (full_regions == 0 && trailing_pages == 0)
    {
        return Err(damaged_header());
    }
    // redb's `DatabaseLayout::len`: one page of super-header, then each region's header pages and
    // data pages.
    let region_len = |pages: u64| (region_header_pages + pages) * page_size;
    let trailing_len = if trailing_pages > 0 {
        region_len(trailing_pages)
    } else {
        0
    };
    let expected = full_regions
        .checked_mul(region_len(region_pages))
        .and_then(|full| full.checked_add(page_size + trailing_len))
        .ok_or_else(damaged_header)?;
    if len < expected {
        return Err(truncated(Some(expected)));
    }
    // A longer file is what a crash while the file grew leaves behind, which redb repairs; but
    // redb 2 repairs only files marked as not closed cleanly, and panics on a longer file that was.
    if len > expected && header[REDB_GOD_BYTE] & REDB_RECOVERY_REQUIRED == 0 {
        return Err(EventLogError::Overlong {
            path: path.to_owned(),
            len,
            expected,
        });
    }
    Ok(true)
}

/// Opens an existing database file, which `check_database_file` found whole.
fn open_database(path: &Path) -> Result<Database, EventLogError> {
    catch_redb_panic(path, || Database::open(path))
}

/// Opens the database again after an I/O failure closed it.
fn reopen_database(path: &Path) -> Result<Database, EventLogError> {
    if !check_database_file(path)? {
        return Err(EventLogError::NotFound {
            path: path.to_owned(),
        });
    }
    open_database(path)
}

/// Runs a redb open. redb 2 asserts some facts about the file instead of returning an error; a
/// damaged file that gets past `check_database_file` must still give an error, not a crash.
fn catch_redb_panic(
    path: &Path,
    open: impl FnOnce() -> Result<Database, redb::DatabaseError>,
) -> Result<Database, EventLogError> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(open)) {
        Ok(result) => result.map_err(|e| open_error(path, e)),
        Err(panic) => {
            let reason = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "redb gave up reading it".to_owned());
            Err(EventLogError::Damaged {
                path: path.to_owned(),
                source: redb::DatabaseError::Storage(StorageError::Corrupted(reason)),
            })
        }
    }
}

/// Creates the database file, empty and private to the owner. It must not exist yet.
fn create_private_file(path: &Path) -> Result<(), EventLogError> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path).map(drop).map_err(|source| {
        if source.kind() == std::io::ErrorKind::AlreadyExists {
            // Another gateway is creating the log in this directory right now.
            EventLogError::Locked {
                path: path.to_owned(),
            }
        } else {
            open_error(path, redb::DatabaseError::Storage(StorageError::Io(source)))
        }
    })
}

/// Turns a table error at open into a schema error (a table of another type) or a storage error.
fn layout_error(path: &Path, e: redb::TableError) -> EventLogError {
    match e {
        redb::TableError::TableTypeMismatch { .. }
        | redb::TableError::TableIsMultimap(_)
        | redb::TableError::TableIsNotMultimap(_)
        | redb::TableError::TypeDefinitionChanged { .. } => EventLogError::SchemaLayout {
            path: path.to_owned(),
            source: e,
        },
        other => storage(path)(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_can_be_shared_between_threads() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<EventLog>();
    }
}
