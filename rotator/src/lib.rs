//! When to check which Key Vault listener: cron schedules with jitter, on-demand checks, backoff and
//! the failure policy.
//!
//! Status: not built yet. This crate is filled by the rotation issue; until then it exports nothing.
#![forbid(unsafe_code)]
