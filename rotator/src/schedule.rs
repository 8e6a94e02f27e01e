//! The check schedule: a cron expression plus a fixed per-instance offset drawn once from
//! `[0, jitter)`.

use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chrono::{DateTime, Utc};

use crate::ScheduleError;

/// Once a day at 00:00:00 UTC, spread over the jitter window by each instance's offset.
pub const DEFAULT_SCHEDULE: &str = "0 0 0 * * *";

/// Five minutes: wide enough that a fleet's polls do not arrive at Key Vault in the same second.
pub const DEFAULT_JITTER: Duration = Duration::from_secs(300);

/// When checks are due.
#[derive(Debug, Clone)]
pub struct Schedule {
    cron: cron::Schedule,
    /// Drawn once per instance so that one gateway's checks stay evenly spaced while a fleet's
    /// are spread out.
    offset: Duration,
    jitter: Duration,
}

impl Schedule {
    /// Parses a cron expression and draws this instance's offset within `jitter`.
    pub fn parse(expression: &str, jitter: Duration) -> Result<Schedule, ScheduleError> {
        let cron = cron::Schedule::from_str(expression).map_err(|err| ScheduleError::Cron {
            expression: expression.to_owned(),
            reason: err.to_string(),
        })?;
        if cron.upcoming(Utc).next().is_none() {
            return Err(ScheduleError::NeverFires {
                expression: expression.to_owned(),
            });
        }
        Ok(Schedule {
            cron,
            offset: random_below(jitter),
            jitter,
        })
    }

    /// The same schedule with a chosen offset (tests, or an operator pinning an instance).
    pub fn with_offset(mut self, offset: Duration) -> Schedule {
        self.offset = offset.min(self.jitter);
        self
    }

    /// This instance's offset from each cron tick.
    pub fn offset(&self) -> Duration {
        self.offset
    }

    /// The cron expression as configured.
    pub fn expression(&self) -> &str {
        self.cron.source()
    }

    /// The first check strictly after `after`: the next cron tick whose offset time is later than
    /// `after`.
    pub fn next_after(&self, after: SystemTime) -> Option<SystemTime> {
        // Ticks are searched from `after - offset`, so a tick that already passed but whose
        // offset time is still ahead is not skipped.
        let search_from = after.checked_sub(self.offset).unwrap_or(UNIX_EPOCH);
        let from: DateTime<Utc> = search_from.into();
        let tick = self.cron.after(&from).next()?;
        let tick = SystemTime::from(tick);
        Some(tick + self.offset)
    }
}

/// `30s`, `5m`, `12h`, `7d` as a duration.
pub fn parse_duration(text: &str) -> Result<Duration, ScheduleError> {
    let error = || ScheduleError::Duration {
        text: text.to_owned(),
    };
    let (digits, unit) = text.split_at(text.len().saturating_sub(1));
    let amount: u64 = digits.parse().map_err(|_| error())?;
    let unit_seconds = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(error()),
    };
    amount
        .checked_mul(unit_seconds)
        .map(Duration::from_secs)
        .ok_or_else(error)
}

fn random_below(limit: Duration) -> Duration {
    let millis = limit.as_millis() as u64;
    if millis == 0 {
        return Duration::ZERO;
    }
    let mut bytes = [0u8; 8];
    // Without randomness the offset is zero: checks are still correct, only less spread out.
    if getrandom::getrandom(&mut bytes).is_err() {
        return Duration::ZERO;
    }
    Duration::from_millis(u64::from_le_bytes(bytes) % millis)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(rfc3339: &str) -> SystemTime {
        DateTime::parse_from_rfc3339(rfc3339)
            .unwrap()
            .with_timezone(&Utc)
            .into()
    }

    #[test]
    fn the_default_checks_once_a_day_at_midnight_utc_plus_the_offset() {
        let schedule = Schedule::parse(DEFAULT_SCHEDULE, DEFAULT_JITTER)
            .unwrap()
            .with_offset(Duration::from_secs(90));
        assert_eq!(
            schedule.next_after(at("2026-12-04T13:00:00Z")),
            Some(at("2026-12-05T00:01:30Z"))
        );
        // Between the tick and its offset time, the check of that tick is still ahead.
        assert_eq!(
            schedule.next_after(at("2026-12-05T00:01:00Z")),
            Some(at("2026-12-05T00:01:30Z"))
        );
        assert_eq!(
            schedule.next_after(at("2026-12-05T00:01:30Z")),
            Some(at("2026-12-06T00:01:30Z"))
        );
    }

    #[test]
    fn the_offset_stays_within_the_jitter() {
        for _ in 0..100 {
            let schedule = Schedule::parse("*/10 * * * * *", Duration::from_secs(3)).unwrap();
            assert!(schedule.offset() < Duration::from_secs(3));
        }
        let pinned = Schedule::parse("*/10 * * * * *", Duration::from_secs(3))
            .unwrap()
            .with_offset(Duration::from_secs(60));
        assert_eq!(
            pinned.offset(),
            Duration::from_secs(3),
            "an offset never exceeds the jitter"
        );
        let none = Schedule::parse("*/10 * * * * *", Duration::ZERO).unwrap();
        assert_eq!(none.offset(), Duration::ZERO);
    }

    #[test]
    fn a_bad_expression_is_named() {
        let err = Schedule::parse("every day", DEFAULT_JITTER)
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("schedule `every day` is not a cron expression"),
            "{err}"
        );
        let err = Schedule::parse("0 0 0 30 2 * 2020", DEFAULT_JITTER)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("never fires") || err.contains("not a cron expression"),
            "{err}"
        );
    }

    #[test]
    fn durations_have_a_unit() {
        assert_eq!(parse_duration("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_duration("0s").unwrap(), Duration::ZERO);
        assert_eq!(parse_duration("2d").unwrap(), Duration::from_secs(172_800));
        for bad in ["5", "m", "5 m", "-5m", "5w", ""] {
            let err = parse_duration(bad).unwrap_err().to_string();
            assert!(err.contains(&format!("`{bad}`")), "{err}");
        }
    }
}
