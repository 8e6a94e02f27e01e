//! Errors of the rotator: its configuration (schedule, durations, failure policy) and its messages.

/// A schedule or duration in the config could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ScheduleError {
    #[error("schedule `{expression}` is not a cron expression (sec min hour day-of-month month day-of-week [year]): {reason}")]
    Cron { expression: String, reason: String },
    #[error("schedule `{expression}` never fires")]
    NeverFires { expression: String },
    #[error(
        "duration `{text}`: expected a whole number followed by s, m, h or d (for example 5m)"
    )]
    Duration { text: String },
}

/// `[rotation] on_config_error` is not one of the known policies.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("on_config_error `{given}`: expected `keep-serving` or `disable-listener`")]
pub struct UnknownOnConfigError {
    /// The value as configured.
    pub given: String,
}

/// A [`crate::CheckNow`] could not produce an outcome.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RotatorError {
    /// No listener of that name has a Key Vault certificate to check.
    #[error("listener `{listener}` is not checked by the rotator (no such listener, or its certificate is not in Key Vault)")]
    UnknownListener { listener: String },
    /// The recipient of [`crate::RunCheck`] did not answer (it stopped, or its mailbox is closed).
    #[error("the check of listener `{listener}` got no answer: {reason}")]
    NoAnswer { listener: String, reason: String },
    /// The rotator stopped before the check finished.
    #[error("the rotator stopped before the check of listener `{listener}` finished")]
    Stopped { listener: String },
}
