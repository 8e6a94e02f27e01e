//! A local Azure Key Vault and managed-identity endpoint speaking the real wire protocol, for the
//! demo and for tests.
//!
//! Status: not built yet. This crate is filled by the Key Vault issue; until then it exports nothing.
#![forbid(unsafe_code)]
