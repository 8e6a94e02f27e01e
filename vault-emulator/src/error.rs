//! Typed errors of the emulator's library API.

use std::net::SocketAddr;
use std::path::PathBuf;

/// Why the emulator could not start or an operation on a running emulator failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EmulatorError {
    /// A file in the state directory could not be read or written.
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// A listening socket could not be bound.
    #[error("cannot bind {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },

    /// The vault contents file exists but is not what this emulator writes.
    #[error("the emulator state file {path} is not valid: {detail}; move it away to start from an empty vault")]
    State { path: PathBuf, detail: String },

    /// The emulator's CA or https certificate could not be made or loaded.
    #[error("TLS setup failed: {0}")]
    Tls(String),

    /// The HTTP servers did not start.
    #[error("the emulator's servers did not start: {0}")]
    Start(String),

    /// Key Vault rejected the operation (the same answer the REST API would give).
    #[error("Key Vault answered {status} {code}: {message}")]
    Rejected {
        status: u16,
        code: String,
        message: String,
    },
}
