//! Every message the gateway's actors answer, each with its typed reply. Other crates and modules
//! talk to the actors through `Recipient<M>` of these types, never through a concrete actor.

use actix::Message;
use cert_bundle::{CertificateBundle, Thumbprint};
use event_log::{Envelope, Event, EventLogError, InstalledCertificate, Query, State, Trigger};
use vault_client::{FetchedCertificate, SecretId, VaultError};

/// Fetch a certificate (its secret) from Key Vault, with the client's retries.
#[derive(Message)]
#[rtype(result = "Result<FetchedCertificate, VaultError>")]
pub struct FetchCertificate {
    pub id: SecretId,
}

/// Append one event to the log for a listener; the reply is the stored envelope.
#[derive(Message)]
#[rtype(result = "Result<Envelope, EventLogError>")]
pub struct Append {
    pub listener: String,
    pub event: Event,
}

/// Record that a certificate is now served. The event-log actor seals the private key under the
/// state directory's key before the event is written, so key material never travels in an `Event`.
#[derive(Message)]
#[rtype(result = "Result<Envelope, EventLogError>")]
pub struct RecordInstall {
    pub listener: String,
    pub bundle: CertificateBundle,
    pub trigger: Trigger,
    pub previous: Option<Thumbprint>,
    pub version: Option<String>,
    pub source: String,
    pub not_after: i64,
}

/// The folded per-listener state as of the last append (cheap: read from the snapshot table).
#[derive(Message)]
#[rtype(result = "Result<State, EventLogError>")]
pub struct ReadState;

/// The certificate last installed on a listener, unsealed, for restoring it at startup.
#[derive(Message)]
#[rtype(result = "Result<Option<(InstalledCertificate, CertificateBundle)>, EventLogError>")]
pub struct LoadInstalled {
    pub listener: String,
}

/// Events matching a query, oldest first.
#[derive(Message)]
#[rtype(result = "Result<Vec<Envelope>, EventLogError>")]
pub struct QueryEvents(pub Query);

/// Validate a bundle through the listener's gate and, if it passes, record and serve it.
#[derive(Message)]
#[rtype(result = "Result<InstallOutcome, InstallError>")]
pub struct Install {
    pub listener: String,
    pub bundle: CertificateBundle,
    /// Where the bundle came from, as recorded in the log (`pem_file:/path`, a Key Vault URI…).
    pub source: String,
    /// The Key Vault version, when the bundle came from Key Vault.
    pub version: Option<String>,
    pub trigger: Trigger,
    /// The bundle was just fetched from a remote source: unless it turns out to be the one already
    /// served, a `certificate_fetched` event is recorded before the install or rejection.
    pub fetched: bool,
}

/// Serve the listener's last installed certificate from the log again, recording a "restored"
/// event. Used once per listener at startup, before the listener binds.
#[derive(Message)]
#[rtype(result = "Result<Option<Thumbprint>, InstallError>")]
pub struct Restore {
    pub listener: String,
    /// The log says the failure policy took this listener out of service: it stays out until a
    /// check succeeds.
    pub disabled: bool,
}

/// What an `Install` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InstallOutcome {
    /// The bundle passed the gate and is now served.
    Installed {
        previous: Option<Thumbprint>,
        thumbprint: Thumbprint,
    },
    /// The same certificate is already served; nothing was recorded.
    Unchanged { thumbprint: Thumbprint },
    /// The gate refused the bundle; the previous certificate (if any) is still served.
    Rejected {
        thumbprint: Thumbprint,
        reason: String,
    },
}

/// An install or restore that could not be carried out at all (as opposed to a rejection).
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    #[error("no listener named `{0}` is configured")]
    UnknownListener(String),
    #[error("event log: {0}")]
    EventLog(#[from] EventLogError),
    #[error("the event log actor is gone: {0}")]
    Mailbox(#[from] actix::MailboxError),
}
