//! The gateway's actors (DESIGN §3). Started once, before any HTTP server, under the actix system.

pub mod messages;

mod event_log;
mod listeners;
mod vault;

pub use event_log::EventLogActor;
pub use listeners::ListenersActor;
pub use vault::VaultActor;
