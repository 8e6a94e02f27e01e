//! The `Rotator` actor against a stand-in gateway: an actor that records every message it receives
//! and answers `RunCheck` from a script.
//!
//! Timing is never asserted, only order and counts; each test waits at most a few seconds.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use actix::prelude::*;
use cert_bundle::Thumbprint;
use event_log::{FailureClass, Trigger};
use rotator::{
    CheckNow, CheckOutcome, CheckReport, ListenerPlan, ListenerStatus, OnConfigError, Policy,
    Recipients, RecordFetchFailure, Rotator, RotatorError, RunCheck, Schedule, ServedCertificate,
    SetListenerServing, WarnExpiry,
};

/// What the stand-in gateway received, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seen {
    Run(RunCheck),
    Failure(RecordFetchFailure),
    Serving(SetListenerServing),
    Expiry(WarnExpiry),
}

#[derive(Default)]
struct Journal {
    seen: Vec<Seen>,
    /// Checks running right now, and the most that ever ran at once.
    running: usize,
    most_running: usize,
}

type Shared = Arc<Mutex<Journal>>;

/// Stands in for the gateway: answers each `RunCheck` with the next scripted report (then
/// `otherwise` when the script is spent), after `delay`.
struct FakeGateway {
    journal: Shared,
    script: VecDeque<CheckReport>,
    otherwise: CheckReport,
    delay: Duration,
}

impl Actor for FakeGateway {
    type Context = Context<Self>;
}

impl FakeGateway {
    fn see(&self, seen: Seen) {
        self.journal.lock().unwrap().seen.push(seen);
    }
}

impl Handler<RunCheck> for FakeGateway {
    type Result = ResponseFuture<CheckReport>;

    fn handle(&mut self, msg: RunCheck, _: &mut Self::Context) -> Self::Result {
        self.see(Seen::Run(msg));
        let report = self
            .script
            .pop_front()
            .unwrap_or_else(|| self.otherwise.clone());
        let journal = self.journal.clone();
        let delay = self.delay;
        {
            let mut journal = journal.lock().unwrap();
            journal.running += 1;
            journal.most_running = journal.most_running.max(journal.running);
        }
        Box::pin(async move {
            if !delay.is_zero() {
                actix::clock::sleep(delay).await;
            }
            journal.lock().unwrap().running -= 1;
            report
        })
    }
}

impl Handler<RecordFetchFailure> for FakeGateway {
    type Result = ();
    fn handle(&mut self, msg: RecordFetchFailure, _: &mut Self::Context) {
        self.see(Seen::Failure(msg));
    }
}

impl Handler<SetListenerServing> for FakeGateway {
    type Result = ();
    fn handle(&mut self, msg: SetListenerServing, _: &mut Self::Context) {
        self.see(Seen::Serving(msg));
    }
}

impl Handler<WarnExpiry> for FakeGateway {
    type Result = ();
    fn handle(&mut self, msg: WarnExpiry, _: &mut Self::Context) {
        self.see(Seen::Expiry(msg));
    }
}

const LISTENER: &str = "site";

fn served(not_after: i64) -> Option<ServedCertificate> {
    Some(ServedCertificate {
        thumbprint: Thumbprint([1; 32]),
        not_after,
    })
}

fn far_future() -> i64 {
    now_secs() + 365 * 86_400
}

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn unchanged() -> CheckReport {
    CheckReport {
        outcome: CheckOutcome::Unchanged {
            thumbprint: Thumbprint([1; 32]),
            version: "v1".into(),
        },
        served: served(far_future()),
    }
}

fn failed(class: FailureClass) -> CheckReport {
    CheckReport {
        outcome: CheckOutcome::Failed {
            class,
            message: format!("a {class} failure"),
        },
        served: served(far_future()),
    }
}

/// A schedule that will not fire during a test (unless it runs across midnight UTC).
fn daily() -> Schedule {
    Schedule::parse("0 0 0 * * *", Duration::ZERO).unwrap()
}

fn every_second() -> Schedule {
    Schedule::parse("*/1 * * * * *", Duration::ZERO).unwrap()
}

struct Harness {
    rotator: Addr<Rotator>,
    journal: Shared,
}

impl Harness {
    fn start(
        schedule: Schedule,
        policy: Policy,
        script: Vec<CheckReport>,
        otherwise: CheckReport,
        delay: Duration,
    ) -> Harness {
        Harness::start_with(schedule, policy, script, otherwise, delay, |rotator| {
            rotator
        })
    }

    fn start_with(
        schedule: Schedule,
        policy: Policy,
        script: Vec<CheckReport>,
        otherwise: CheckReport,
        delay: Duration,
        prepare: impl FnOnce(Rotator) -> Rotator,
    ) -> Harness {
        let journal = Shared::default();
        let gateway = FakeGateway {
            journal: journal.clone(),
            script: script.into(),
            otherwise,
            delay,
        }
        .start();
        let recipients = Recipients {
            run_check: gateway.clone().recipient(),
            record_failure: gateway.clone().recipient(),
            set_serving: gateway.clone().recipient(),
            warn_expiry: gateway.recipient(),
        };
        let plans = vec![ListenerPlan {
            name: LISTENER.into(),
            schedule,
            pinned: false,
        }];
        let rotator = prepare(Rotator::new(plans, policy, recipients)).start();
        Harness { rotator, journal }
    }

    fn seen(&self) -> Vec<Seen> {
        self.journal.lock().unwrap().seen.clone()
    }

    fn runs(&self) -> Vec<Trigger> {
        self.seen()
            .into_iter()
            .filter_map(|seen| match seen {
                Seen::Run(run) => Some(run.trigger),
                _ => None,
            })
            .collect()
    }

    fn failures(&self) -> Vec<RecordFetchFailure> {
        self.seen()
            .into_iter()
            .filter_map(|seen| match seen {
                Seen::Failure(failure) => Some(failure),
                _ => None,
            })
            .collect()
    }

    async fn check_now(&self, listener: &str) -> Result<CheckOutcome, RotatorError> {
        self.rotator
            .send(CheckNow {
                listener: listener.into(),
                trigger: Trigger::Manual,
            })
            .await
            .expect("the rotator answers")
    }

    /// Waits (at most 5 s, reached only when a test fails) until `done` holds for what the gateway saw.
    async fn wait_until(&self, what: &str, done: impl Fn(&[Seen]) -> bool) {
        for _ in 0..500 {
            if done(&self.seen()) {
                return;
            }
            actix::clock::sleep(Duration::from_millis(10)).await;
        }
        panic!("waited 5 s for {what}; the gateway saw {:#?}", self.seen());
    }
}

fn runs_in(seen: &[Seen]) -> usize {
    seen.iter().filter(|s| matches!(s, Seen::Run(_))).count()
}

#[actix::test]
async fn scheduled_ticks_run_checks_with_the_schedule_trigger() {
    let harness = Harness::start(
        every_second(),
        Policy::default(),
        vec![],
        unchanged(),
        Duration::ZERO,
    );
    harness
        .wait_until("two scheduled checks", |seen| runs_in(seen) >= 2)
        .await;
    assert!(
        harness
            .runs()
            .iter()
            .all(|&trigger| trigger == Trigger::Schedule),
        "{:?}",
        harness.runs()
    );
    let status = harness.rotator.send(ListenerStatus).await.unwrap();
    assert_eq!(status.len(), 1);
    assert_eq!(status[0].listener, LISTENER);
    assert_eq!(status[0].last_outcome, Some(unchanged().outcome));
    assert!(status[0].last_check_ms.is_some());
    assert!(status[0].next_check_ms > status[0].last_check_ms);
    assert_eq!(status[0].failing_since_ms, None);
    assert!(!status[0].disabled && !status[0].pinned);
}

#[actix::test]
async fn check_now_answers_with_the_outcome_of_a_manual_check() {
    let harness = Harness::start(
        daily(),
        Policy::default(),
        vec![],
        unchanged(),
        Duration::ZERO,
    );
    assert_eq!(harness.check_now(LISTENER).await, Ok(unchanged().outcome));
    assert_eq!(harness.runs(), [Trigger::Manual]);
    assert!(harness.failures().is_empty());
}

#[actix::test]
async fn an_unknown_listener_is_an_error() {
    let harness = Harness::start(
        daily(),
        Policy::default(),
        vec![],
        unchanged(),
        Duration::ZERO,
    );
    let err = harness.check_now("elsewhere").await.unwrap_err();
    assert_eq!(
        err,
        RotatorError::UnknownListener {
            listener: "elsewhere".into()
        }
    );
    assert!(err.to_string().contains("`elsewhere`"), "{err}");
    assert!(harness.runs().is_empty());
}

#[actix::test]
async fn a_transient_streak_is_recorded_once_and_retried_before_the_schedule() {
    let policy = Policy {
        retry_initial: Duration::from_millis(20),
        retry_max: Duration::from_millis(80),
        ..Policy::default()
    };
    let transient = failed(FailureClass::Transient);
    let harness = Harness::start(
        daily(),
        policy,
        vec![transient.clone(); 4],
        unchanged(),
        Duration::ZERO,
    );

    assert_eq!(harness.check_now(LISTENER).await, Ok(transient.outcome));
    let status = harness.rotator.send(ListenerStatus).await.unwrap();
    assert_eq!(status[0].failure_class, Some(FailureClass::Transient));
    assert!(status[0].failing_since_ms.is_some());

    // Three more failures, then the success that ends the streak, all from retries.
    harness
        .wait_until("four retries", |seen| runs_in(seen) >= 5)
        .await;
    assert_eq!(
        harness.runs(),
        [
            Trigger::Manual,
            Trigger::Schedule,
            Trigger::Schedule,
            Trigger::Schedule,
            Trigger::Schedule
        ]
    );
    let failures = harness.failures();
    assert_eq!(failures.len(), 1, "one event per streak: {failures:?}");
    assert_eq!(failures[0].trigger, Trigger::Manual);
    assert_eq!(failures[0].class, FailureClass::Transient);
    assert_eq!(failures[0].listener, LISTENER);

    // After the success the next check is the daily one again.
    actix::clock::sleep(Duration::from_millis(200)).await;
    assert_eq!(harness.runs().len(), 5, "{:?}", harness.runs());
    let status = harness.rotator.send(ListenerStatus).await.unwrap();
    assert_eq!(status[0].failure_class, None);
    assert_eq!(status[0].failing_since_ms, None);
    assert_eq!(status[0].last_outcome, Some(unchanged().outcome));
}

#[actix::test]
async fn disable_listener_takes_it_out_of_service_until_a_check_succeeds() {
    let policy = Policy {
        on_config_error: OnConfigError::DisableListener,
        ..Policy::default()
    };
    let config = failed(FailureClass::Configuration);
    let harness = Harness::start(
        daily(),
        policy,
        vec![config.clone(), config.clone()],
        unchanged(),
        Duration::ZERO,
    );

    assert_eq!(
        harness.check_now(LISTENER).await,
        Ok(config.outcome.clone())
    );
    assert_eq!(harness.check_now(LISTENER).await, Ok(config.outcome));
    let status = harness.rotator.send(ListenerStatus).await.unwrap();
    assert!(status[0].disabled);
    assert_eq!(status[0].failure_class, Some(FailureClass::Configuration));
    assert_eq!(harness.check_now(LISTENER).await, Ok(unchanged().outcome));

    // The policy's messages are delivered before CheckNow answers, so the order is exact.
    let seen = harness.seen();
    let manual = || {
        Seen::Run(RunCheck {
            listener: LISTENER.into(),
            trigger: Trigger::Manual,
        })
    };
    assert_eq!(seen.len(), 6, "{seen:#?}");
    assert_eq!(seen[0], manual());
    assert!(
        matches!(&seen[1], Seen::Failure(f) if f.class == FailureClass::Configuration),
        "{seen:#?}"
    );
    assert!(
        matches!(&seen[2], Seen::Serving(s) if !s.serving && s.listener == LISTENER),
        "{seen:#?}"
    );
    assert_eq!(seen[3], manual(), "the second failure changes nothing");
    assert_eq!(seen[4], manual());
    assert!(
        matches!(&seen[5], Seen::Serving(s) if s.serving && s.listener == LISTENER),
        "{seen:#?}"
    );
    let status = harness.rotator.send(ListenerStatus).await.unwrap();
    assert!(!status[0].disabled);
}

#[actix::test]
async fn a_listener_disabled_before_a_restart_is_reenabled_by_its_next_success() {
    let harness = Harness::start_with(
        daily(),
        Policy::default(),
        vec![],
        unchanged(),
        Duration::ZERO,
        |rotator| rotator.with_disabled([LISTENER]),
    );
    let status = harness.rotator.send(ListenerStatus).await.unwrap();
    assert!(status[0].disabled);
    assert_eq!(harness.check_now(LISTENER).await, Ok(unchanged().outcome));
    let seen = harness.seen();
    assert_eq!(seen.len(), 2, "{seen:#?}");
    assert!(
        matches!(&seen[1], Seen::Serving(s) if s.serving),
        "{seen:#?}"
    );
}

#[actix::test]
async fn check_now_during_a_running_check_waits_for_a_run_of_its_own() {
    let harness = Harness::start(
        daily(),
        Policy::default(),
        vec![],
        unchanged(),
        Duration::from_millis(100),
    );
    let (first, second, third) = tokio::join!(
        harness.check_now(LISTENER),
        harness.check_now(LISTENER),
        harness.check_now(LISTENER),
    );
    for outcome in [first, second, third] {
        assert_eq!(outcome, Ok(unchanged().outcome));
    }
    // The first request runs at once; the two that arrived meanwhile share the next run.
    assert_eq!(harness.runs(), [Trigger::Manual, Trigger::Manual]);
    assert_eq!(harness.journal.lock().unwrap().most_running, 1);
}

#[actix::test]
async fn an_expiring_certificate_is_warned_about_once_a_day() {
    let soon = CheckReport {
        served: served(now_secs() + 86_400),
        ..unchanged()
    };
    let harness = Harness::start(
        daily(),
        Policy::default(),
        vec![],
        soon.clone(),
        Duration::ZERO,
    );
    harness.check_now(LISTENER).await.unwrap();
    harness.check_now(LISTENER).await.unwrap();
    let warnings: Vec<_> = harness
        .seen()
        .into_iter()
        .filter(|seen| matches!(seen, Seen::Expiry(_)))
        .collect();
    assert_eq!(
        warnings,
        [Seen::Expiry(WarnExpiry {
            listener: LISTENER.into(),
            thumbprint: Thumbprint([1; 32]),
            not_after: soon.served.unwrap().not_after,
        })]
    );
}
