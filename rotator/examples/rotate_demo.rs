//! The rotator against a stand-in gateway that fails once, then finds a new version:
//! `cargo run -p rotator --example rotate_demo`
//!
//! A real gateway implements the same four handlers with Key Vault and the listeners' gates.

use std::time::Duration;

use actix::prelude::*;
use cert_bundle::Thumbprint;
use event_log::{FailureClass, Trigger};
use rotator::{
    CheckNow, CheckOutcome, CheckReport, ListenerPlan, ListenerStatus, Policy, Recipients,
    RecordFetchFailure, Rotator, RunCheck, Schedule, ServedCertificate, SetListenerServing,
    WarnExpiry,
};

/// Answers the first check with a transient failure and every later one with a rotation.
#[derive(Default)]
struct StandIn {
    checks: u32,
}

impl Actor for StandIn {
    type Context = Context<Self>;
}

impl Handler<RunCheck> for StandIn {
    type Result = CheckReport;
    fn handle(&mut self, msg: RunCheck, _: &mut Context<Self>) -> CheckReport {
        self.checks += 1;
        println!(
            "gateway: check #{} of {} ({})",
            self.checks, msg.listener, msg.trigger
        );
        let served = |byte| ServedCertificate {
            thumbprint: Thumbprint([byte; 32]),
            not_after: 4_000_000_000,
        };
        match self.checks {
            1 => CheckReport {
                outcome: CheckOutcome::Failed {
                    class: FailureClass::Transient,
                    message: "503 Service Unavailable".into(),
                },
                served: Some(served(1)),
            },
            n => CheckReport {
                outcome: CheckOutcome::Rotated {
                    from: Some(Thumbprint([1; 32])),
                    to: Thumbprint([2; 32]),
                    version: format!("v{n}"),
                },
                served: Some(served(2)),
            },
        }
    }
}

impl Handler<RecordFetchFailure> for StandIn {
    type Result = ();
    fn handle(&mut self, msg: RecordFetchFailure, _: &mut Context<Self>) {
        println!(
            "gateway: record fetch_failed ({}): {}",
            msg.class, msg.message
        );
    }
}

impl Handler<SetListenerServing> for StandIn {
    type Result = ();
    fn handle(&mut self, msg: SetListenerServing, _: &mut Context<Self>) {
        println!(
            "gateway: {} serving = {}: {}",
            msg.listener, msg.serving, msg.reason
        );
    }
}

impl Handler<WarnExpiry> for StandIn {
    type Result = ();
    fn handle(&mut self, msg: WarnExpiry, _: &mut Context<Self>) {
        println!("gateway: {} expires at {}", msg.thumbprint, msg.not_after);
    }
}

#[actix::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let gateway = StandIn::default().start();
    let recipients = Recipients {
        run_check: gateway.clone().recipient(),
        record_failure: gateway.clone().recipient(),
        set_serving: gateway.clone().recipient(),
        warn_expiry: gateway.recipient(),
    };
    let policy = Policy {
        retry_initial: Duration::from_millis(200),
        ..Policy::default()
    };
    let plans = vec![ListenerPlan {
        name: "site".into(),
        schedule: Schedule::parse(rotator::DEFAULT_SCHEDULE, rotator::DEFAULT_JITTER)?,
        pinned: false,
    }];
    let rotator = Rotator::new(plans, policy, recipients).start();

    let outcome = rotator
        .send(CheckNow {
            listener: "site".into(),
            trigger: Trigger::Manual,
        })
        .await??;
    println!("refresh: {outcome}");
    // The transient failure is retried after 200 ms, well before the daily schedule.
    actix::clock::sleep(Duration::from_millis(400)).await;
    let status = rotator.send(ListenerStatus).await?;
    println!("status: {}", serde_json::to_string_pretty(&status)?);
    Ok(())
}
