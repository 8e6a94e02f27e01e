//! The event-log actor: the only writer of the redb log. It runs on its own `SyncArbiter` thread
//! because redb commits block (fsync), and nothing blocking may run on an HTTP worker.

use std::sync::Arc;

use actix::{Actor, Handler, SyncContext};
use event_log::{Event, EventLog};

use super::messages::{Append, LoadInstalled, QueryEvents, ReadState, RecordInstall};

pub struct EventLogActor {
    log: Arc<EventLog>,
}

impl EventLogActor {
    /// Starts the actor on one dedicated thread: one writer, appends in arrival order.
    pub fn start(log: Arc<EventLog>) -> actix::Addr<EventLogActor> {
        actix::SyncArbiter::start(1, move || EventLogActor { log: log.clone() })
    }
}

impl Actor for EventLogActor {
    type Context = SyncContext<Self>;
}

impl Handler<Append> for EventLogActor {
    type Result = <Append as actix::Message>::Result;

    fn handle(&mut self, msg: Append, _: &mut Self::Context) -> Self::Result {
        self.log.append(&msg.listener, msg.event)
    }
}

impl Handler<ReadState> for EventLogActor {
    type Result = <ReadState as actix::Message>::Result;

    fn handle(&mut self, _: ReadState, _: &mut Self::Context) -> Self::Result {
        self.log.state()
    }
}

impl Handler<LoadInstalled> for EventLogActor {
    type Result = <LoadInstalled as actix::Message>::Result;

    fn handle(&mut self, msg: LoadInstalled, _: &mut Self::Context) -> Self::Result {
        self.log.installed_bundle(&msg.listener)
    }
}

impl Handler<QueryEvents> for EventLogActor {
    type Result = <QueryEvents as actix::Message>::Result;

    fn handle(&mut self, msg: QueryEvents, _: &mut Self::Context) -> Self::Result {
        self.log.query(&msg.0)
    }
}

impl Handler<RecordInstall> for EventLogActor {
    type Result = <RecordInstall as actix::Message>::Result;

    fn handle(&mut self, msg: RecordInstall, _: &mut Self::Context) -> Self::Result {
        let material = self.log.seal(&msg.listener, &msg.bundle)?;
        let event = Event::CertificateInstalled {
            trigger: msg.trigger,
            previous: msg.previous,
            thumbprint: msg.bundle.thumbprint(),
            version: msg.version,
            source: msg.source,
            not_after: msg.not_after,
            material,
        };
        self.log.append(&msg.listener, event)
    }
}

/// The rotator's failure policy decided this failure starts a streak worth recording.
impl Handler<rotator::RecordFetchFailure> for EventLogActor {
    type Result = ();

    fn handle(&mut self, msg: rotator::RecordFetchFailure, _: &mut Self::Context) {
        let event = Event::FetchFailed {
            trigger: msg.trigger,
            class: msg.class,
            message: msg.message,
        };
        if let Err(err) = self.log.append(&msg.listener, event) {
            tracing::error!(listener = %msg.listener, error = %err, "cannot record a fetch failure");
        }
    }
}

impl Handler<rotator::WarnExpiry> for EventLogActor {
    type Result = ();

    fn handle(&mut self, msg: rotator::WarnExpiry, _: &mut Self::Context) {
        tracing::warn!(
            listener = %msg.listener,
            thumbprint = %msg.thumbprint,
            not_after = %event_log::format_secs(msg.not_after),
            "the served certificate expires soon and Key Vault has no newer version"
        );
        let event = Event::ExpiryWarning {
            thumbprint: msg.thumbprint,
            not_after: msg.not_after,
        };
        if let Err(err) = self.log.append(&msg.listener, event) {
            tracing::error!(listener = %msg.listener, error = %err, "cannot record an expiry warning");
        }
    }
}
