//! The Azure Key Vault data plane over HTTPS: identifier parsing, challenge-based auth, retries, error
//! classes, and turning a certificate's secret into a certificate bundle.
//!
//! Status: not built yet. This crate is filled by the Key Vault issue; until then it exports nothing,
//! so nothing can mistake it for a working Key Vault client.
#![forbid(unsafe_code)]
