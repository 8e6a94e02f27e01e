//! When to check which Key Vault listener: cron schedules with a per-instance jitter (so a fleet of
//! gateways does not poll Key Vault at the same second), and later on-demand checks, backoff and
//! the failure policy.
//!
//! What exists today is the schedule: parsing `[rotation] schedule` (a cron expression with a
//! seconds field, the `cron` crate's dialect) and `jitter`, and computing when the next check is
//! due. The rotator actor that acts on it arrives with the rotation issue.
//!
//! ```
//! use std::time::{Duration, SystemTime};
//! let schedule = rotator::Schedule::parse(rotator::DEFAULT_SCHEDULE, Duration::from_secs(300))?;
//! let next = schedule.next_after(SystemTime::now()).expect("a daily schedule always has a next tick");
//! assert!(next > SystemTime::now());
//! # Ok::<(), rotator::ScheduleError>(())
//! ```
#![forbid(unsafe_code)]

mod error;
mod schedule;

pub use error::ScheduleError;
pub use schedule::{parse_duration, Schedule, DEFAULT_JITTER, DEFAULT_SCHEDULE};
