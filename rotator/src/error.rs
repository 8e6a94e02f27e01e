//! Errors of the rotation schedule.

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
