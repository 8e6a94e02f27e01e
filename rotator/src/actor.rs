//! The `Rotator` actor: runs each listener's checks on its schedule and on demand, and carries out
//! the failure policy's decisions.
//!
//! One check of a listener goes through three steps, all on the actor's context:
//!
//! 1. send [`RunCheck`] to the gateway and await its [`CheckReport`];
//! 2. back on the actor, fold the report into the listener's [`PolicyState`] ([`after_check`]);
//! 3. deliver what the policy decided ([`RecordFetchFailure`], [`SetListenerServing`],
//!    [`WarnExpiry`], in that order), then answer the [`CheckNow`] requests this run serves and arm
//!    the listener's next check.
//!
//! A listener never has two checks running at once. A scheduled tick that fires while one runs is
//! skipped (the running check re-arms the timer when it finishes). A [`CheckNow`] that arrives
//! while one runs is queued; when the running check finishes, one more check runs for all the
//! queued requests, so every reply describes a check that started after the request. Policy state
//! is therefore updated in the order checks finish, which is the order they started.
//!
//! Checks of different listeners interleave freely: the steps run as futures spawned on the
//! context ([`ActorFutureExt::map`] gives them the actor back after each await), not as an
//! `AtomicResponse`, which would stop every other listener's checks and the status queries while
//! one listener waits on Key Vault.

use std::future::Future;
use std::mem;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use actix::fut::wrap_future;
use actix::prelude::*;
use event_log::Trigger;
use tokio::sync::oneshot;
use tracing::{debug, info, warn};

use crate::messages::{
    CheckNow, CheckOutcome, CheckReport, ListenerCheckStatus, ListenerStatus, RecordFetchFailure,
    RunCheck, SetListenerServing, WarnExpiry,
};
use crate::policy::{after_check, Policy, PolicyState};
use crate::{RotatorError, Schedule};

/// One listener the rotator checks.
#[derive(Debug, Clone)]
pub struct ListenerPlan {
    /// The listener's configured name, as sent in [`RunCheck`].
    pub name: String,
    /// When its scheduled checks are due.
    pub schedule: Schedule,
    /// Whether it references one Key Vault version. A pinned listener is checked the same way (the
    /// gateway confirms the version still exists and is enabled); this only shows in its status.
    pub pinned: bool,
}

/// Where the rotator's outgoing messages go: the gateway, in production.
#[derive(Clone)]
pub struct Recipients {
    /// Runs one check.
    pub run_check: Recipient<RunCheck>,
    /// Records a fetch failure (once per streak).
    pub record_failure: Recipient<RecordFetchFailure>,
    /// Takes a listener out of service or puts it back.
    pub set_serving: Recipient<SetListenerServing>,
    /// Records an expiry warning.
    pub warn_expiry: Recipient<WarnExpiry>,
}

/// Decides when each Key Vault listener is checked, and what a check's outcome does.
///
/// Start it once, after the listeners are bound (`Rotator::new(..).start()`, or on an `Arbiter` of
/// its own so that a busy system does not delay its timers).
pub struct Rotator {
    /// In configuration order; a listener's index is how timers and running checks refer to it.
    listeners: Vec<Slot>,
    policy: Policy,
    recipients: Recipients,
}

/// A [`CheckNow`] waiting for the outcome of a check.
type Waiter = oneshot::Sender<Result<CheckOutcome, RotatorError>>;

/// Everything the rotator knows of one listener.
struct Slot {
    plan: ListenerPlan,
    /// What the failure policy remembers between checks.
    policy: PolicyState,
    /// `Some` while a check runs, holding the [`CheckNow`] requests it will answer.
    running: Option<Vec<Waiter>>,
    /// [`CheckNow`] requests that arrived while a check ran; the next check answers them.
    queued: Vec<Waiter>,
    /// The armed timer of the next check, cancelled when a check re-arms it.
    timer: Option<SpawnHandle>,
    /// When the armed timer is due.
    next_check: Option<SystemTime>,
    /// When the last timer that fired was due, so that a timer firing a hair early (the monotonic
    /// and the wall clock drift apart) does not arm the same tick again.
    last_due: Option<SystemTime>,
    /// When the last check finished, and what it did.
    last_check: Option<(SystemTime, CheckOutcome)>,
}

impl Rotator {
    /// A rotator for `listeners` (a name that appears twice is checked once, with its first plan).
    pub fn new(listeners: Vec<ListenerPlan>, policy: Policy, recipients: Recipients) -> Rotator {
        let mut slots: Vec<Slot> = Vec::with_capacity(listeners.len());
        for plan in listeners {
            if slots.iter().any(|slot| slot.plan.name == plan.name) {
                warn!(
                    listener = plan.name,
                    "listener planned twice; checking it once"
                );
                continue;
            }
            slots.push(Slot {
                plan,
                policy: PolicyState::default(),
                running: None,
                queued: Vec::new(),
                timer: None,
                next_check: None,
                last_due: None,
                last_check: None,
            });
        }
        Rotator {
            listeners: slots,
            policy,
            recipients,
        }
    }

    /// Marks `listeners` as out of service, as the event log's replay found them (the
    /// `disable-listener` policy took them out before a restart): their next successful check
    /// sends [`SetListenerServing`] `true`. Unknown names are ignored.
    pub fn with_disabled<I, S>(mut self, listeners: I) -> Rotator
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        for name in listeners {
            if let Some(i) = self.index_of(name.as_ref()) {
                self.listeners[i].policy = PolicyState::restored(true);
            }
        }
        self
    }

    fn index_of(&self, listener: &str) -> Option<usize> {
        self.listeners
            .iter()
            .position(|slot| slot.plan.name == listener)
    }

    /// Arms listener `i`'s next check: its next scheduled tick, or `retry_in` from now when that
    /// is sooner. Cancels the timer armed before.
    fn arm(&mut self, i: usize, retry_in: Option<Duration>, ctx: &mut Context<Self>) {
        let now = SystemTime::now();
        let slot = &mut self.listeners[i];
        if let Some(timer) = slot.timer.take() {
            ctx.cancel_future(timer);
        }
        let from = slot.last_due.map_or(now, |due| due.max(now));
        let scheduled = slot.plan.schedule.next_after(from);
        let retry = retry_in.map(|delay| now + delay);
        let next = match (scheduled, retry) {
            (Some(scheduled), Some(retry)) => Some(scheduled.min(retry)),
            (scheduled, retry) => scheduled.or(retry),
        };
        slot.next_check = next;
        let Some(next) = next else {
            warn!(
                listener = slot.plan.name,
                schedule = slot.plan.schedule.expression(),
                "the schedule has no further tick; only on-demand checks will run"
            );
            return;
        };
        let delay = next.duration_since(now).unwrap_or(Duration::ZERO);
        debug!(
            listener = slot.plan.name,
            ?delay,
            retry = retry_in.is_some(),
            "next check armed"
        );
        slot.timer = Some(ctx.run_later(delay, move |act, ctx| act.tick(i, ctx)));
    }

    /// Listener `i`'s timer fired.
    fn tick(&mut self, i: usize, ctx: &mut Context<Self>) {
        let slot = &mut self.listeners[i];
        slot.timer = None;
        slot.last_due = slot.next_check;
        if slot.running.is_some() {
            debug!(
                listener = slot.plan.name,
                "a check is running; skipping this scheduled one"
            );
            self.arm(i, None, ctx);
            return;
        }
        self.start_check(i, Trigger::Schedule, Vec::new(), ctx);
    }

    /// Starts a check of listener `i` that will answer `waiters`. The caller has made sure no
    /// check of it runs.
    fn start_check(
        &mut self,
        i: usize,
        trigger: Trigger,
        waiters: Vec<Waiter>,
        ctx: &mut Context<Self>,
    ) {
        let slot = &mut self.listeners[i];
        debug_assert!(slot.running.is_none(), "two checks of one listener");
        slot.running = Some(waiters);
        debug!(listener = slot.plan.name, %trigger, "check started");
        let request = self.recipients.run_check.send(RunCheck {
            listener: slot.plan.name.clone(),
            trigger,
        });
        let check = wrap_future::<_, Self>(request)
            .map(move |answer, act, _ctx| act.apply(i, trigger, answer))
            .then(|(reply, retry_in, effects), _act, _ctx| {
                wrap_future(async move {
                    effects.await;
                    (reply, retry_in)
                })
            })
            .map(move |(reply, retry_in), act, ctx| act.finish(i, reply, retry_in, ctx));
        ctx.spawn(check);
    }

    /// Folds a check's answer into listener `i`'s state. Returns the reply for the waiters, when
    /// to retry, and the delivery of the policy's messages.
    fn apply(
        &mut self,
        i: usize,
        trigger: Trigger,
        answer: Result<CheckReport, MailboxError>,
    ) -> (
        Result<CheckOutcome, RotatorError>,
        Option<Duration>,
        impl Future<Output = ()> + 'static,
    ) {
        let now = SystemTime::now();
        let slot = &mut self.listeners[i];
        let listener = slot.plan.name.clone();
        let mut record = None;
        let mut serving = None;
        let mut expiry = None;
        let (reply, retry_in) = match answer {
            Err(err) => {
                // Not a Key Vault failure: the gateway itself did not answer. Nothing to record;
                // the next scheduled check tries again.
                warn!(listener, error = %err, "the check got no answer");
                (
                    Err(RotatorError::NoAnswer {
                        listener: listener.clone(),
                        reason: err.to_string(),
                    }),
                    None,
                )
            }
            Ok(CheckReport { outcome, served }) => {
                let decision = after_check(
                    &mut slot.policy,
                    &outcome,
                    served.as_ref(),
                    now,
                    &self.policy,
                );
                log_outcome(&listener, trigger, &outcome, &decision);
                if let CheckOutcome::Failed { class, message } = &outcome {
                    if decision.record_failure {
                        record = Some(RecordFetchFailure {
                            listener: listener.clone(),
                            trigger,
                            class: *class,
                            message: message.clone(),
                        });
                    }
                }
                serving = decision.set_serving.map(|on| SetListenerServing {
                    listener: listener.clone(),
                    serving: on,
                    reason: if on {
                        format!("a {trigger} check succeeded: {outcome}")
                    } else {
                        format!(
                            "on_config_error = \"{}\" and a {trigger} check {outcome}",
                            self.policy.on_config_error
                        )
                    },
                });
                if decision.warn_expiry {
                    expiry = served.map(|served| WarnExpiry {
                        listener: listener.clone(),
                        thumbprint: served.thumbprint,
                        not_after: served.not_after,
                    });
                }
                slot.last_check = Some((now, outcome.clone()));
                (Ok(outcome), decision.retry_in)
            }
        };
        let recipients = self.recipients.clone();
        let effects = async move {
            if let Some(message) = record {
                if let Err(err) = recipients.record_failure.send(message).await {
                    warn!(listener, error = %err, "recording the fetch failure failed");
                }
            }
            if let Some(message) = serving {
                let on = message.serving;
                if let Err(err) = recipients.set_serving.send(message).await {
                    warn!(listener, serving = on, error = %err, "changing whether the listener serves failed");
                }
            }
            if let Some(message) = expiry {
                if let Err(err) = recipients.warn_expiry.send(message).await {
                    warn!(listener, error = %err, "recording the expiry warning failed");
                }
            }
        };
        (reply, retry_in, effects)
    }

    /// Listener `i`'s check is over: answer its waiters, arm the next check, and start the one the
    /// queued requests wait for.
    fn finish(
        &mut self,
        i: usize,
        reply: Result<CheckOutcome, RotatorError>,
        retry_in: Option<Duration>,
        ctx: &mut Context<Self>,
    ) {
        let slot = &mut self.listeners[i];
        for waiter in slot.running.take().unwrap_or_default() {
            // A requester that went away no longer needs the answer.
            let _ = waiter.send(reply.clone());
        }
        let queued = mem::take(&mut slot.queued);
        self.arm(i, retry_in, ctx);
        if !queued.is_empty() {
            self.start_check(i, Trigger::Manual, queued, ctx);
        }
    }
}

fn log_outcome(
    listener: &str,
    trigger: Trigger,
    outcome: &CheckOutcome,
    decision: &crate::Decision,
) {
    match outcome {
        CheckOutcome::Rotated { .. } => info!(listener, %trigger, %outcome, "check done"),
        CheckOutcome::Unchanged { .. } => debug!(listener, %trigger, %outcome, "check done"),
        CheckOutcome::Rejected { .. } => warn!(listener, %trigger, %outcome, "check done"),
        CheckOutcome::Failed { .. } => warn!(
            listener,
            %trigger,
            %outcome,
            first_of_streak = decision.record_failure,
            retry_in = ?decision.retry_in,
            "check done"
        ),
    }
}

fn unix_ms(at: SystemTime) -> i64 {
    match at.duration_since(UNIX_EPOCH) {
        Ok(since) => i64::try_from(since.as_millis()).unwrap_or(i64::MAX),
        Err(before) => -i64::try_from(before.duration().as_millis()).unwrap_or(i64::MAX),
    }
}

impl Actor for Rotator {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        info!(
            listeners = self.listeners.len(),
            on_config_error = %self.policy.on_config_error,
            "rotator started"
        );
        for i in 0..self.listeners.len() {
            self.arm(i, None, ctx);
        }
    }
}

impl Handler<CheckNow> for Rotator {
    type Result = ResponseFuture<Result<CheckOutcome, RotatorError>>;

    fn handle(&mut self, msg: CheckNow, ctx: &mut Self::Context) -> Self::Result {
        let CheckNow { listener, trigger } = msg;
        let Some(i) = self.index_of(&listener) else {
            return Box::pin(std::future::ready(Err(RotatorError::UnknownListener {
                listener,
            })));
        };
        let (waiter, answer) = oneshot::channel();
        let slot = &mut self.listeners[i];
        if slot.running.is_some() {
            debug!(
                listener,
                "a check is running; this one runs when it finishes"
            );
            slot.queued.push(waiter);
        } else {
            self.start_check(i, trigger, vec![waiter], ctx);
        }
        Box::pin(async move {
            answer
                .await
                .unwrap_or(Err(RotatorError::Stopped { listener }))
        })
    }
}

impl Handler<ListenerStatus> for Rotator {
    type Result = Vec<ListenerCheckStatus>;

    fn handle(&mut self, _: ListenerStatus, _: &mut Self::Context) -> Self::Result {
        self.listeners
            .iter()
            .map(|slot| ListenerCheckStatus {
                listener: slot.plan.name.clone(),
                last_check_ms: slot.last_check.as_ref().map(|(at, _)| unix_ms(*at)),
                last_outcome: slot.last_check.as_ref().map(|(_, outcome)| outcome.clone()),
                next_check_ms: slot.next_check.map(unix_ms),
                failing_since_ms: slot.policy.failing_since().map(unix_ms),
                failure_class: slot.policy.failure_class(),
                disabled: slot.policy.disabled(),
                pinned: slot.plan.pinned,
            })
            .collect()
    }
}
