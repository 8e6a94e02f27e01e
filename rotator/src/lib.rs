//! When to check which Key Vault listener, and what a check's outcome does: cron schedules with a
//! per-instance jitter (so a fleet of gateways does not poll Key Vault at the same second),
//! on-demand checks, backoff, and the failure policy.
//!
//! The crate knows nothing about HTTP or Key Vault. Its parts:
//!
//! - [`Schedule`] parses `[rotation] schedule` (a cron expression with a seconds field, the `cron`
//!   crate's dialect) and `jitter`, and says when the next check is due; [`parse_duration`] reads
//!   `30s`, `5m`, `12h`, `7d`.
//! - [`after_check`] is the failure policy as a pure function of a listener's [`PolicyState`], a
//!   check's [`CheckOutcome`] and the clock: it returns a [`Decision`] (record the first failure of
//!   a streak, take the listener out of service or put it back, retry a transient failure with
//!   capped backoff, warn once a day that the served certificate expires soon). [`Policy`] holds
//!   its settings, among them [`OnConfigError`] (`[rotation] on_config_error`).
//! - [`Rotator`] is the actix actor that runs it: one timer per [`ListenerPlan`], a [`CheckNow`]
//!   message for on-demand checks, [`ListenerStatus`] for the admin API. It asks a
//!   `Recipient<`[`RunCheck`]`>` to do each check and tells the other [`Recipients`] what the
//!   policy decided ([`RecordFetchFailure`], [`SetListenerServing`], [`WarnExpiry`]). The gateway
//!   implements those handlers; every message type lives in [`messages`].
//!
//! ```
//! use std::time::{Duration, SystemTime};
//! let schedule = rotator::Schedule::parse(rotator::DEFAULT_SCHEDULE, Duration::from_secs(300))?;
//! let next = schedule.next_after(SystemTime::now()).expect("a daily schedule always has a next tick");
//! assert!(next > SystemTime::now());
//!
//! // A transient failure is recorded once and retried after 30 s.
//! let mut state = rotator::PolicyState::default();
//! let failed = rotator::CheckOutcome::Failed {
//!     class: event_log::FailureClass::Transient,
//!     message: "503 Service Unavailable".into(),
//! };
//! let policy = rotator::Policy::default();
//! let decision = rotator::after_check(&mut state, &failed, None, SystemTime::now(), &policy);
//! assert!(decision.record_failure);
//! assert_eq!(decision.retry_in, Some(Duration::from_secs(30)));
//! # Ok::<(), rotator::ScheduleError>(())
//! ```
//!
//! `cargo run -p rotator --example next_checks -- "0 0 */4 * * *" 5m` prints a schedule's next
//! checks; `cargo run -p rotator --example rotate_demo` runs the actor against a stand-in gateway.
#![forbid(unsafe_code)]

mod actor;
mod error;
pub mod messages;
mod policy;
mod schedule;

pub use actor::{ListenerPlan, Recipients, Rotator};
pub use error::{RotatorError, ScheduleError, UnknownOnConfigError};
pub use messages::{
    CheckNow, CheckOutcome, CheckReport, ListenerCheckStatus, ListenerStatus, RecordFetchFailure,
    RunCheck, ServedCertificate, SetListenerServing, WarnExpiry,
};
pub use policy::{
    after_check, Decision, OnConfigError, Policy, PolicyState, EXPIRY_WARNING_INTERVAL,
};
pub use schedule::{parse_duration, Schedule, DEFAULT_JITTER, DEFAULT_SCHEDULE};
