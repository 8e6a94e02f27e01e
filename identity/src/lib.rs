//! Access tokens for a scope from Azure identities: IMDS managed identity, App Service, AKS workload
//! identity, client secret and a static development token, with a per-scope cache that refreshes
//! before expiry.
//!
//! Status: not built yet. This crate is filled by the Key Vault issue; until then it exports nothing,
//! so nothing can mistake it for a working credential source.
#![forbid(unsafe_code)]
