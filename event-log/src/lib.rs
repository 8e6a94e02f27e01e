//! The gateway's certificate event log: an append-only, hash-chained log of everything that
//! happened to each listener's certificate, stored in an embedded [redb] database, and the serving
//! state that log folds into.
//!
//! - Every entry is a versioned [`Envelope`] under a `u64` sequence number; each records the
//!   SHA-256 of the previous entry's stored bytes, so [`EventLog::verify`] finds an altered,
//!   removed or inserted entry and names it.
//! - Installs carry the certificate chain and the private key sealed with AES-256-GCM under a
//!   local key file (`seal.key`, mode 0600), so a restart can serve the last good certificate
//!   without Key Vault. Key material never appears in `Debug`, `Display`, JSON or errors.
//! - [`apply`] is a pure fold from envelopes to [`State`]; a per-listener snapshot is updated in
//!   the same transaction as each append, so [`EventLog::state`] costs O(listeners) however long
//!   the log grows.
//!
//! The API is blocking: call it from `spawn_blocking` or a `SyncArbiter`.
//!
//! ```no_run
//! use event_log::{Event, EventLog, Query};
//!
//! let log = EventLog::open(std::path::Path::new("/var/lib/gateway"))?;
//! log.append("web", Event::ListenerConfigured { source: "site.pem".into() })?;
//! for envelope in log.query(&Query { listener: Some("web".into()), ..Query::default() })? {
//!     println!("{envelope}");
//! }
//! println!("{}", log.verify()?);
//! # Ok::<(), event_log::EventLogError>(())
//! ```
//!
//! [redb]: https://docs.rs/redb/2
#![forbid(unsafe_code)]

mod codec;
mod error;
mod event;
#[doc(hidden)]
pub mod fuzzing;
mod log;
mod seal;
mod state;
mod tables;

pub use error::{ChainBreak, EventLogError, UnknownEventKind, UnknownTrigger};
pub use event::{
    format_ms, format_secs, Envelope, Event, EventKind, FailureClass, SealedBundle, Trigger,
    ENVELOPE_FORMAT,
};
pub use log::{EventLog, Query, VerifyReport, DATABASE_FILE, SEAL_KEY_FILE};
pub use state::{apply, InstalledCertificate, ListenerState, State};
