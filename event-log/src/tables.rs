//! Every redb table of the event log, declared in one place, with the schema version that names
//! this layout.
//!
//! Changing a table's name, key or value type, or the meaning of a `META` entry, is a schema
//! change: bump [`SCHEMA_VERSION`] and teach `EventLog::open` to migrate or refuse.

use redb::TableDefinition;

/// The layout version of the tables below, stored under [`META_SCHEMA`].
pub(crate) const SCHEMA_VERSION: u64 = 1;

/// The log itself: sequence number (from 1, without gaps) → encoded envelope (see `codec`).
pub(crate) const EVENTS: TableDefinition<'static, u64, &[u8]> = TableDefinition::new("events");

/// Facts about the whole log, by name. Values are raw bytes; each key says how to read them.
pub(crate) const META: TableDefinition<'static, &str, &[u8]> = TableDefinition::new("meta");

/// Per-listener state after the last event (listener name → encoded `ListenerState`), updated in
/// the same transaction as each append so that startup reads O(listeners), not the whole log.
pub(crate) const SNAPSHOT: TableDefinition<'static, &str, &[u8]> = TableDefinition::new("snapshot");

/// `META` key of the schema version: a little-endian `u64`.
pub(crate) const META_SCHEMA: &str = "schema_version";

/// `META` key of the SHA-256 of the last envelope's stored bytes: 32 bytes. Absent while the log
/// is empty.
pub(crate) const META_HEAD: &str = "head_hash";
