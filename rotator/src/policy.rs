//! The failure policy, as a pure function: what to do after one check of one listener.
//!
//! [`after_check`] folds a check's outcome into the listener's [`PolicyState`] and returns a
//! [`Decision`]: whether to record a fetch failure, whether to change the listener's serving state,
//! when to retry, whether to warn that the served certificate expires soon. The actor carries the
//! decision out; nothing here does I/O or reads the clock.
//!
//! - A *streak* is a run of consecutive failed checks of the same [`FailureClass`]. Its first
//!   failure is recorded; the rest are not. A success ends it; a failure of the other class starts
//!   a new one. A rejected version is not a failure of the fetch and neither ends nor extends it.
//! - Transient failures never change what is served and are retried with capped exponential
//!   backoff (`retry_initial`, doubled per failure, at most `retry_max`).
//! - Configuration failures (403, 404, disabled secret) are retried on the normal schedule. With
//!   [`OnConfigError::DisableListener`] the listener is taken out of service until a check
//!   succeeds.
//! - When the served certificate is within `expiry_window` of its `notAfter` and the check did not
//!   install a newer one, warn, at most once a day per listener.

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use event_log::FailureClass;

use crate::{CheckOutcome, ServedCertificate, UnknownOnConfigError};

/// How often, at most, a listener's expiry warning repeats.
pub const EXPIRY_WARNING_INTERVAL: Duration = Duration::from_secs(24 * 3600);

/// What a listener does when its secret cannot be read for a configuration reason (403, 404,
/// disabled secret): `[rotation] on_config_error`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum OnConfigError {
    /// Keep serving the last good certificate (the default).
    #[default]
    KeepServing,
    /// Take the listener out of service until a check succeeds, as Application Gateway does.
    DisableListener,
}

impl OnConfigError {
    /// The name used in the configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            OnConfigError::KeepServing => "keep-serving",
            OnConfigError::DisableListener => "disable-listener",
        }
    }
}

impl fmt::Display for OnConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for OnConfigError {
    type Err = UnknownOnConfigError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [OnConfigError::KeepServing, OnConfigError::DisableListener]
            .into_iter()
            .find(|policy| policy.as_str() == s)
            .ok_or_else(|| UnknownOnConfigError {
                given: s.to_owned(),
            })
    }
}

/// The failure policy, shared by every listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// What a configuration failure does to the listener.
    pub on_config_error: OnConfigError,
    /// Warn when the served certificate's `notAfter` is closer than this (default 14 days).
    pub expiry_window: Duration,
    /// The first retry after a transient failure (default 30 s). Keep it above zero.
    pub retry_initial: Duration,
    /// The longest wait between retries of a transient streak (default 15 min).
    pub retry_max: Duration,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            on_config_error: OnConfigError::KeepServing,
            expiry_window: Duration::from_secs(14 * 86_400),
            retry_initial: Duration::from_secs(30),
            retry_max: Duration::from_secs(15 * 60),
        }
    }
}

impl Policy {
    /// The wait before the retry that follows the `failures`-th transient failure of a streak
    /// (1-based): `retry_initial * 2^(failures - 1)`, at most `retry_max`.
    pub fn backoff(&self, failures: u32) -> Duration {
        let doublings = failures.saturating_sub(1).min(31);
        self.retry_initial
            .checked_mul(1u32 << doublings)
            .unwrap_or(self.retry_max)
            .min(self.retry_max)
    }
}

/// What the policy remembers of one listener between checks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PolicyState {
    /// The current run of consecutive failures of one class.
    streak: Option<Streak>,
    /// When the current run of failed checks began, whatever their classes: what an operator asks.
    failing_since: Option<SystemTime>,
    /// Whether the policy took the listener out of service.
    disabled: bool,
    /// When the last expiry warning went out, so that it repeats at most once a day.
    last_expiry_warning: Option<SystemTime>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Streak {
    class: FailureClass,
    failures: u32,
}

impl PolicyState {
    /// The state of a listener that the log says was taken out of service before a restart, so
    /// that its next successful check puts it back.
    pub fn restored(disabled: bool) -> PolicyState {
        PolicyState {
            disabled,
            ..PolicyState::default()
        }
    }

    /// The class of the current failure streak, if the last fetch failed.
    pub fn failure_class(&self) -> Option<FailureClass> {
        self.streak.map(|streak| streak.class)
    }

    /// How many checks the current streak counts (0 without one).
    pub fn consecutive_failures(&self) -> u32 {
        self.streak.map_or(0, |streak| streak.failures)
    }

    /// When the current run of failed checks began.
    pub fn failing_since(&self) -> Option<SystemTime> {
        self.failing_since
    }

    /// Whether the policy took the listener out of service.
    pub fn disabled(&self) -> bool {
        self.disabled
    }
}

/// What to do after a check. [`Decision::default`] is "nothing".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Decision {
    /// Record a `fetch_failed` event (the first failure of a streak).
    pub record_failure: bool,
    /// Take the listener out of service (`Some(false)`) or put it back (`Some(true)`).
    pub set_serving: Option<bool>,
    /// Check again after this long, when sooner than the schedule (a transient streak).
    pub retry_in: Option<Duration>,
    /// Warn that the served certificate expires soon.
    pub warn_expiry: bool,
}

/// Folds one check's outcome into `state` and decides what to do. `served` is what the listener
/// serves after the check; `now` is when the check finished.
pub fn after_check(
    state: &mut PolicyState,
    outcome: &CheckOutcome,
    served: Option<&ServedCertificate>,
    now: SystemTime,
    policy: &Policy,
) -> Decision {
    let mut decision = Decision::default();
    match outcome {
        CheckOutcome::Rotated { .. } | CheckOutcome::Unchanged { .. } => {
            state.streak = None;
            state.failing_since = None;
            if state.disabled {
                state.disabled = false;
                decision.set_serving = Some(true);
            }
        }
        CheckOutcome::Rejected { .. } => {}
        CheckOutcome::Failed { class, .. } => {
            let failures = match state.streak {
                Some(streak) if streak.class == *class => streak.failures.saturating_add(1),
                _ => 1,
            };
            state.streak = Some(Streak {
                class: *class,
                failures,
            });
            state.failing_since.get_or_insert(now);
            decision.record_failure = failures == 1;
            match class {
                FailureClass::Transient => decision.retry_in = Some(policy.backoff(failures)),
                FailureClass::Configuration => {
                    if policy.on_config_error == OnConfigError::DisableListener && !state.disabled {
                        state.disabled = true;
                        decision.set_serving = Some(false);
                    }
                    // A listener that has never had a certificate serves nothing until one
                    // arrives: a fixed permission or a created secret should not wait a day.
                    if served.is_none() {
                        decision.retry_in = Some(policy.backoff(failures));
                    }
                }
            }
        }
    }
    let rotated = matches!(outcome, CheckOutcome::Rotated { .. });
    if let Some(served) = served {
        let warned_recently = state.last_expiry_warning.is_some_and(|at| {
            now.duration_since(at)
                .is_ok_and(|since| since < EXPIRY_WARNING_INTERVAL)
        });
        if !rotated
            && expires_within(served.not_after, now, policy.expiry_window)
            && !warned_recently
        {
            state.last_expiry_warning = Some(now);
            decision.warn_expiry = true;
        }
    }
    decision
}

/// Whether `not_after` (Unix seconds) is less than `window` after `now` (or already past).
fn expires_within(not_after: i64, now: SystemTime, window: Duration) -> bool {
    let now_secs = match now.duration_since(UNIX_EPOCH) {
        Ok(since) => i64::try_from(since.as_secs()).unwrap_or(i64::MAX),
        Err(before) => -i64::try_from(before.duration().as_secs()).unwrap_or(i64::MAX),
    };
    let window_secs = i64::try_from(window.as_secs()).unwrap_or(i64::MAX);
    i128::from(not_after) - i128::from(now_secs) < i128::from(window_secs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use cert_bundle::Thumbprint;

    const DAY: u64 = 86_400;
    const T0: u64 = 1_800_000_000;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn thumb(byte: u8) -> Thumbprint {
        Thumbprint([byte; 32])
    }

    fn unchanged() -> CheckOutcome {
        CheckOutcome::Unchanged {
            thumbprint: thumb(1),
            version: "v1".into(),
        }
    }

    fn rotated() -> CheckOutcome {
        CheckOutcome::Rotated {
            from: Some(thumb(1)),
            to: thumb(2),
            version: "v2".into(),
        }
    }

    fn rejected() -> CheckOutcome {
        CheckOutcome::Rejected {
            version: "v3".into(),
            reason: "the key does not match".into(),
        }
    }

    fn transient() -> CheckOutcome {
        CheckOutcome::Failed {
            class: FailureClass::Transient,
            message: "503 Service Unavailable".into(),
        }
    }

    fn config() -> CheckOutcome {
        CheckOutcome::Failed {
            class: FailureClass::Configuration,
            message: "403 Forbidden".into(),
        }
    }

    /// A certificate that expires `days` days after T0.
    fn expiring_in(days: i64) -> ServedCertificate {
        ServedCertificate {
            thumbprint: thumb(1),
            not_after: T0 as i64 + days * DAY as i64,
        }
    }

    const NOTHING: Decision = Decision {
        record_failure: false,
        set_serving: None,
        retry_in: None,
        warn_expiry: false,
    };

    fn record() -> Decision {
        Decision {
            record_failure: true,
            ..NOTHING
        }
    }

    fn retry(secs: u64) -> Decision {
        Decision {
            retry_in: Some(Duration::from_secs(secs)),
            ..NOTHING
        }
    }

    fn record_and_retry(secs: u64) -> Decision {
        Decision {
            record_failure: true,
            ..retry(secs)
        }
    }

    fn serving(on: bool) -> Decision {
        Decision {
            set_serving: Some(on),
            ..NOTHING
        }
    }

    fn warn() -> Decision {
        Decision {
            warn_expiry: true,
            ..NOTHING
        }
    }

    /// One check in a scenario: `secs` after T0 the check reports `outcome` with `served` served,
    /// and the policy must decide `then`.
    struct Step {
        secs: u64,
        outcome: CheckOutcome,
        served: Option<ServedCertificate>,
        then: Decision,
    }

    fn step(secs: u64, outcome: CheckOutcome, then: Decision) -> Step {
        Step {
            secs,
            outcome,
            served: Some(expiring_in(90)),
            then,
        }
    }

    fn step_served(
        secs: u64,
        outcome: CheckOutcome,
        served: ServedCertificate,
        then: Decision,
    ) -> Step {
        Step {
            secs,
            outcome,
            served: Some(served),
            then,
        }
    }

    /// Given a fresh listener state and `policy`, when each step's check finishes, then the policy
    /// decides what the step says.
    #[track_caller]
    fn check(name: &str, policy: Policy, steps: Vec<Step>) -> PolicyState {
        let mut state = PolicyState::default();
        for (i, step) in steps.into_iter().enumerate() {
            let decision = after_check(
                &mut state,
                &step.outcome,
                step.served.as_ref(),
                at(T0 + step.secs),
                &policy,
            );
            assert_eq!(
                decision, step.then,
                "scenario `{name}`, step {i} ({}): state {state:?}",
                step.outcome
            );
        }
        state
    }

    fn keep_serving() -> Policy {
        Policy::default()
    }

    fn disable_listener() -> Policy {
        Policy {
            on_config_error: OnConfigError::DisableListener,
            ..Policy::default()
        }
    }

    #[test]
    fn scenarios() {
        check(
            "successes do nothing",
            keep_serving(),
            vec![step(0, unchanged(), NOTHING), step(60, rotated(), NOTHING)],
        );
        check(
            "a transient streak is recorded once and backs off",
            keep_serving(),
            vec![
                step(0, transient(), record_and_retry(30)),
                step(30, transient(), retry(60)),
                step(90, transient(), retry(120)),
                step(210, transient(), retry(240)),
            ],
        );
        check(
            "transient, success, transient records again and restarts the backoff",
            keep_serving(),
            vec![
                step(0, transient(), record_and_retry(30)),
                step(30, transient(), retry(60)),
                step(90, unchanged(), NOTHING),
                step(200, transient(), record_and_retry(30)),
            ],
        );
        check(
            "transient then configuration records the configuration failure",
            keep_serving(),
            vec![
                step(0, transient(), record_and_retry(30)),
                step(30, config(), record()),
                step(90, config(), NOTHING),
                step(150, transient(), record_and_retry(30)),
            ],
        );
        check(
            "a rejected version neither ends nor extends a streak",
            keep_serving(),
            vec![
                step(0, transient(), record_and_retry(30)),
                step(30, rejected(), NOTHING),
                step(60, transient(), retry(60)),
                step(120, rejected(), NOTHING),
            ],
        );
        check(
            "keep-serving never changes serving on configuration failures",
            keep_serving(),
            vec![
                step(0, config(), record()),
                step(60, config(), NOTHING),
                step(120, unchanged(), NOTHING),
            ],
        );
        check(
            "disable-listener disables once and re-enables after a success",
            disable_listener(),
            vec![
                step(
                    0,
                    config(),
                    Decision {
                        record_failure: true,
                        ..serving(false)
                    },
                ),
                step(60, config(), NOTHING),
                step(90, transient(), record_and_retry(30)),
                step(120, rejected(), NOTHING),
                step(180, unchanged(), serving(true)),
                step(240, unchanged(), NOTHING),
                step(
                    300,
                    config(),
                    Decision {
                        record_failure: true,
                        ..serving(false)
                    },
                ),
                step(360, rotated(), serving(true)),
            ],
        );
        check(
            "transient failures never disable",
            disable_listener(),
            vec![
                step(0, transient(), record_and_retry(30)),
                step(30, transient(), retry(60)),
            ],
        );
    }

    #[test]
    fn a_listener_that_never_had_a_certificate_retries_configuration_errors_too() {
        let nothing_served = |secs, outcome, then| Step {
            secs,
            outcome,
            served: None,
            then,
        };
        let steps = vec![
            nothing_served(0, config(), record_and_retry(30)),
            nothing_served(30, config(), retry(60)),
            nothing_served(90, unchanged(), NOTHING),
            // Once it serves, a configuration error waits for the schedule again.
            step(200, config(), record()),
        ];
        check("first certificate", keep_serving(), steps);
    }

    #[test]
    fn the_backoff_is_capped() {
        let policy = keep_serving();
        let mut steps = vec![step(0, transient(), record_and_retry(30))];
        for (i, expected) in [60, 120, 240, 480, 900, 900, 900].into_iter().enumerate() {
            steps.push(step(i as u64 + 1, transient(), retry(expected)));
        }
        let state = check("capped backoff", policy, steps);
        assert_eq!(state.consecutive_failures(), 8);
        assert_eq!(policy.backoff(1_000), Duration::from_secs(900));
        assert_eq!(policy.backoff(u32::MAX), Duration::from_secs(900));
        assert_eq!(policy.backoff(0), Duration::from_secs(30));
    }

    #[test]
    fn expiry_warns_at_most_once_a_day() {
        let soon = expiring_in(3);
        let steps = vec![
            step_served(0, unchanged(), soon, warn()),
            step_served(3600, unchanged(), soon, NOTHING),
            step_served(DAY - 1, rejected(), soon, NOTHING),
            step_served(DAY, rejected(), soon, warn()),
            step_served(DAY + 60, transient(), soon, record_and_retry(30)),
            step_served(
                2 * DAY,
                transient(),
                soon,
                Decision {
                    warn_expiry: true,
                    ..retry(60)
                },
            ),
        ];
        check("expiry once a day", keep_serving(), steps);
    }

    #[test]
    fn expiry_is_not_warned_outside_the_window_or_after_a_rotation() {
        check(
            "outside the window",
            keep_serving(),
            vec![
                step_served(0, unchanged(), expiring_in(15), NOTHING),
                step_served(DAY + 1, unchanged(), expiring_in(15), warn()),
            ],
        );
        check(
            "a rotation installed a newer version",
            keep_serving(),
            vec![step_served(0, rotated(), expiring_in(3), NOTHING)],
        );
        check(
            "an expired certificate is within the window",
            keep_serving(),
            vec![step_served(0, unchanged(), expiring_in(-2), warn())],
        );
        check(
            "nothing served, nothing to warn about",
            keep_serving(),
            vec![Step {
                secs: 0,
                outcome: transient(),
                served: None,
                then: record_and_retry(30),
            }],
        );
    }

    #[test]
    fn a_listener_disabled_before_a_restart_is_reenabled_by_a_success() {
        for policy in [keep_serving(), disable_listener()] {
            let mut state = PolicyState::restored(true);
            let transient = after_check(&mut state, &transient(), None, at(T0), &policy);
            assert_eq!(transient, record_and_retry(30));
            let success = after_check(&mut state, &unchanged(), None, at(T0 + 30), &policy);
            assert_eq!(success, serving(true), "{policy:?}");
            assert!(!state.disabled());
        }
    }

    #[test]
    fn the_state_tells_since_when_and_how_it_fails() {
        let mut state = PolicyState::default();
        let policy = disable_listener();
        after_check(&mut state, &transient(), None, at(T0), &policy);
        after_check(&mut state, &config(), None, at(T0 + 30), &policy);
        assert_eq!(state.failing_since(), Some(at(T0)));
        assert_eq!(state.failure_class(), Some(FailureClass::Configuration));
        assert_eq!(state.consecutive_failures(), 1);
        assert!(state.disabled());
        after_check(&mut state, &unchanged(), None, at(T0 + 60), &policy);
        assert_eq!(state, PolicyState::default());
    }

    #[test]
    fn on_config_error_parses_its_config_names() {
        assert_eq!(
            "keep-serving".parse::<OnConfigError>(),
            Ok(OnConfigError::KeepServing)
        );
        assert_eq!(
            "disable-listener".parse::<OnConfigError>(),
            Ok(OnConfigError::DisableListener)
        );
        let err = "disable".parse::<OnConfigError>().unwrap_err().to_string();
        assert!(err.contains("`disable`"), "{err}");
        assert_eq!(OnConfigError::default().to_string(), "keep-serving");
    }
}
