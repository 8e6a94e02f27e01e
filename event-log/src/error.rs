//! Errors of the event log. Every message names the file, entry or listener it is about and never
//! contains key material.

use std::io;
use std::path::PathBuf;

/// What went wrong opening, reading, writing or checking an event log.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EventLogError {
    /// The state directory could not be created.
    #[error("cannot create the event log directory {path}: {source}")]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },

    /// `open_existing` was asked to open a directory without an event log.
    #[error("there is no event log at {path}; check the state directory")]
    NotFound {
        /// The database file that does not exist.
        path: PathBuf,
    },

    /// The seal key file could not be read or created.
    #[error("cannot read or create the seal key file {path}: {source}")]
    SealKeyIo {
        /// The key file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },

    /// The seal key file does not hold exactly 32 bytes.
    #[error(
        "the seal key file {path} holds {len} bytes instead of 32: it is damaged; restore it from a \
         backup (without it the private keys in the log cannot be opened)"
    )]
    SealKeyLength {
        /// The key file.
        path: PathBuf,
        /// How many bytes it holds.
        len: u64,
    },

    /// The seal key file may be read by users other than its owner.
    #[error(
        "the seal key file {path} has mode {mode:o}, so group or other users may read it; \
         run `chmod 600 {path}` and check nobody copied it"
    )]
    SealKeyPermissions {
        /// The key file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },

    /// The database exists but its seal key does not: creating a new key would make every stored
    /// private key unreadable.
    #[error(
        "the seal key file {key} is missing but the event log {db} exists; restore {key} from a \
         backup, or move the state directory aside to start a new, empty log"
    )]
    SealKeyMissing {
        /// The missing key file.
        key: PathBuf,
        /// The database that needs it.
        db: PathBuf,
    },

    /// The database file is not a redb database, or its contents are damaged.
    #[error(
        "the event log file {path} is damaged or is not a redb database ({source}); move it aside \
         and restore it from a backup, or start with an empty state directory"
    )]
    Damaged {
        /// The database file.
        path: PathBuf,
        /// What redb reported.
        #[source]
        source: redb::DatabaseError,
    },

    /// The database file is shorter than its own header says, or empty: it was cut short. It is
    /// refused before anything in the state directory is created or written.
    #[error(
        "the event log file {path} is truncated: {}; it was cut short (a full or failing disk, \
         an interrupted copy or restore). Restore it from a backup; or move it aside (`mv {path} \
         {path}.damaged`) and start again with a new, empty log: the gateway then installs its \
         certificates from their configured sources (Key Vault, files) again, but the audit \
         history and the last-known-good certificates of the old log are not used",
        truncated_detail(*.len, *.expected)
    )]
    Truncated {
        /// The database file.
        path: PathBuf,
        /// Its length in bytes.
        len: u64,
        /// The length its header gives, when the header is whole.
        expected: Option<u64>,
    },

    /// The database file is longer than its header says, although it was closed cleanly: bytes
    /// were written past its end. The entries are all within the length the header gives.
    #[error(
        "the event log file {path} is {len} bytes long, but its header says {expected}: something \
         wrote past its end. The entries lie within the first {expected} bytes: keep a copy of \
         the file, then `truncate -s {expected} {path}` gives it back its length"
    )]
    Overlong {
        /// The database file.
        path: PathBuf,
        /// Its length in bytes.
        len: u64,
        /// The length its header gives.
        expected: u64,
    },

    /// The file system that holds the database has no space left (or the owner's quota is
    /// used up). What was being written is not in the log; the entries before it are intact.
    #[error(
        "no space left for the event log {path} ({source}): the file system that holds it is \
         full, so this change was not recorded; the entries already in the log are intact. Free \
         space on that file system (or raise the quota), then try again; a running gateway picks \
         the log up again by itself"
    )]
    StorageFull {
        /// The database file.
        path: PathBuf,
        /// What the operating system reported (`ENOSPC`, `EDQUOT`).
        #[source]
        source: io::Error,
    },

    /// Another process (or another `EventLog` in this one) has the database open.
    #[error("the event log file {path} is already open in another process or gateway instance")]
    Locked {
        /// The database file.
        path: PathBuf,
    },

    /// The database could not be opened for another reason (I/O, old redb file format).
    #[error("cannot open the event log file {path}: {source}")]
    OpenDatabase {
        /// The database file.
        path: PathBuf,
        /// What redb reported.
        #[source]
        source: redb::DatabaseError,
    },

    /// The stored schema version is not the one this build understands.
    #[error(
        "the event log {path} has schema version {found}, but this gateway understands only \
         version {supported}; run a gateway release that supports schema {found} (a newer one if \
         {found} > {supported}), or move the state directory aside to start a new log (that loses \
         the audit history and the last-known-good certificates)"
    )]
    SchemaVersion {
        /// The database file.
        path: PathBuf,
        /// The version stored in the file (0 when it was missing or unreadable).
        found: u64,
        /// The version this build writes.
        supported: u64,
    },

    /// A table of the database has a layout this build does not understand.
    #[error(
        "the event log {path} has tables this gateway does not understand ({source}); it was \
         probably written by another release: run that release, or move the state directory aside"
    )]
    SchemaLayout {
        /// The database file.
        path: PathBuf,
        /// What redb reported.
        #[source]
        source: redb::TableError,
    },

    /// A redb operation failed after the database was opened.
    #[error("event log {path}: storage error: {source}")]
    Storage {
        /// The database file.
        path: PathBuf,
        /// What redb reported.
        #[source]
        source: Box<redb::Error>,
    },

    /// A stored envelope could not be decoded.
    #[error("entry {seq} cannot be decoded: {reason}")]
    Decode {
        /// The sequence number of the entry.
        seq: u64,
        /// What the decoder reported.
        reason: String,
    },

    /// A stored envelope uses a format this build does not know.
    #[error(
        "entry {seq} uses envelope format {format}, which this gateway does not know (it knows \
         formats up to {known}); run a newer gateway release"
    )]
    UnknownFormat {
        /// The sequence number of the entry.
        seq: u64,
        /// The format stored in the entry.
        format: u16,
        /// The newest format this build knows.
        known: u16,
    },

    /// The stored per-listener snapshot could not be decoded.
    #[error(
        "the snapshot of listener {listener:?} cannot be decoded ({reason}); \
         `EventLog::rebuild_snapshot` rebuilds it from the log"
    )]
    SnapshotDecode {
        /// The listener.
        listener: String,
        /// What the decoder reported.
        reason: String,
    },

    /// An envelope could not be encoded (it should always be possible).
    #[error("cannot encode an event for listener {listener:?}: {reason}")]
    Encode {
        /// The listener the event is for.
        listener: String,
        /// What the encoder reported.
        reason: String,
    },

    /// A private key of a kind the log cannot store.
    #[error("the private key of listener {listener:?} is of a kind the event log cannot store")]
    UnsupportedKey {
        /// The listener.
        listener: String,
    },

    /// Sealing a private key failed.
    #[error("cannot seal the private key of listener {listener:?}")]
    Seal {
        /// The listener.
        listener: String,
    },

    /// An install event's sealed key does not open for the listener and thumbprint it is appended
    /// with (it was sealed for another listener or certificate, or with another seal key).
    #[error(
        "the sealed key material of the install for listener {listener:?} was not sealed for this \
         listener and thumbprint by this log; seal it with `EventLog::seal` for the same listener"
    )]
    MaterialMismatch {
        /// The listener.
        listener: String,
    },

    /// A stored sealed key could not be opened.
    #[error(
        "the sealed private key in entry {seq} (listener {listener:?}) cannot be opened: the seal \
         key file differs from the one it was sealed with, or the entry was altered"
    )]
    Unseal {
        /// The sequence number of the install entry.
        seq: u64,
        /// The listener.
        listener: String,
    },

    /// The snapshot points at an entry that is not the listener's install event.
    #[error(
        "the snapshot of listener {listener:?} points at entry {seq}, which is not an install of \
         that listener; `EventLog::rebuild_snapshot` rebuilds the snapshot from the log"
    )]
    NotAnInstall {
        /// The sequence number the snapshot names.
        seq: u64,
        /// The listener.
        listener: String,
    },

    /// The unsealed material did not make a valid bundle again.
    #[error("the certificate stored in entry {seq} cannot be rebuilt: {source}")]
    Bundle {
        /// The sequence number of the install entry.
        seq: u64,
        /// Why.
        #[source]
        source: cert_bundle::BundleError,
    },

    /// The hash chain is broken: an entry was altered, removed or inserted.
    #[error("the event log's hash chain is broken: {0}")]
    ChainBroken(#[from] ChainBreak),

    /// The stored per-listener snapshot disagrees with a replay of the log.
    #[error(
        "the snapshot of listener {listener:?} disagrees with a replay of the log; \
         `EventLog::rebuild_snapshot` rebuilds it from the log"
    )]
    SnapshotDiverged {
        /// The listener.
        listener: String,
    },
}

impl EventLogError {
    /// An I/O error of the open database: redb refuses the handle from then on, so the log
    /// reopens the file (see `EventLog::with_db`).
    pub(crate) fn is_io_failure(&self) -> bool {
        match self {
            EventLogError::StorageFull { .. } => true,
            EventLogError::Storage { source, .. } => {
                matches!(**source, redb::Error::Io(_) | redb::Error::PreviousIo)
            }
            _ => false,
        }
    }
}

/// The middle of a [`EventLogError::Truncated`] message.
fn truncated_detail(len: u64, expected: Option<u64>) -> String {
    match (len, expected) {
        (0, _) => "it is empty (0 bytes)".to_owned(),
        (len, Some(expected)) => {
            format!("it holds {len} bytes, but its header says it holds {expected}")
        }
        (len, None) => format!("it holds only {len} bytes, less than its header"),
    }
}

/// Where and how the hash chain of the log is broken, found by `EventLog::verify`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ChainBreak {
    /// The hash of entry `seq` is not the `prev_hash` that entry `next` recorded.
    #[error("entry {seq} was altered: its hash no longer matches entry {next}'s prev_hash")]
    Altered {
        /// The altered entry.
        seq: u64,
        /// The entry that follows it.
        next: u64,
    },
    /// The hash of the last entry is not the head hash recorded with the last append.
    #[error("entry {seq} was altered: its hash no longer matches the head hash of the log")]
    HeadMismatch {
        /// The last entry.
        seq: u64,
    },
    /// The first entry does not start the chain.
    #[error("entry {seq} was altered: as the first entry its prev_hash must be all zeros")]
    BadStart {
        /// The first entry.
        seq: u64,
    },
    /// Entries are missing.
    #[error("entries are missing: expected entry {expected}, found entry {found}")]
    Gap {
        /// The sequence number that should come next.
        expected: u64,
        /// The one that does.
        found: u64,
    },
    /// An entry is stored under another sequence number than the one inside it.
    #[error("entry {seq} was altered: it claims to be entry {claimed}")]
    Misplaced {
        /// The key it is stored under.
        seq: u64,
        /// The sequence number inside it.
        claimed: u64,
    },
    /// The log is empty but a head hash is recorded: entries were removed.
    #[error("the log is empty but its head hash shows entries were written: they were removed")]
    Truncated,
    /// An entry cannot be decoded.
    #[error("entry {seq} cannot be decoded: {reason}")]
    Undecodable {
        /// The entry.
        seq: u64,
        /// What the decoder reported.
        reason: String,
    },
}

impl ChainBreak {
    /// The sequence number of the entry at fault, when one entry is.
    pub fn seq(&self) -> Option<u64> {
        match self {
            ChainBreak::Altered { seq, .. }
            | ChainBreak::HeadMismatch { seq }
            | ChainBreak::BadStart { seq }
            | ChainBreak::Misplaced { seq, .. }
            | ChainBreak::Undecodable { seq, .. } => Some(*seq),
            ChainBreak::Gap { expected, .. } => Some(*expected),
            ChainBreak::Truncated => None,
        }
    }
}

/// A string that is not the name of an event kind.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown event kind {given:?}; expected one of: {}",
    crate::EventKind::names()
)]
pub struct UnknownEventKind {
    /// What was given.
    pub given: String,
}

/// A string that is not the name of a trigger.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown trigger {given:?}; expected one of: startup, schedule, manual, config")]
pub struct UnknownTrigger {
    /// What was given.
    pub given: String,
}
