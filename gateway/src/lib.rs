//! The gateway binary's library: configuration, the actors, startup replay, the HTTP(S) servers and
//! the reverse proxy, and the commands of the `gateway` CLI. `main.rs` only parses arguments and
//! turns errors into exit codes.
#![forbid(unsafe_code)]

pub mod actors;
pub mod admin;
pub mod admin_client;
pub mod audit;
pub mod check;
pub mod config;
#[doc(hidden)]
pub mod fuzzing;
pub mod https;
pub mod keyvault;
pub mod metrics;
pub mod probes;
pub mod proxy;
pub mod refresh;
pub mod routing;
pub mod serve;
pub mod sources;
pub mod status_page;
