//! A fixed token, for development against the vault emulator or a test.

use std::fmt;
use std::time::{Duration, SystemTime};

use crate::error::IdentityError;
use crate::source::{BoxFuture, TokenSource};
use crate::token::AccessToken;

/// How far ahead a [`StaticToken`] says it expires unless told otherwise: a year, so that no cache
/// ever refreshes it.
pub const STATIC_TOKEN_LIFETIME: Duration = Duration::from_secs(365 * 24 * 3600);

/// Hands out the same token for every scope. For development only: nothing refreshes it.
#[derive(Clone)]
pub struct StaticToken {
    token: AccessToken,
}

impl fmt::Debug for StaticToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("StaticToken").field(&self.token).finish()
    }
}

impl StaticToken {
    /// `secret`, said to expire [`STATIC_TOKEN_LIFETIME`] from now.
    pub fn new(secret: impl Into<String>) -> Self {
        let expires_on = SystemTime::now() + STATIC_TOKEN_LIFETIME;
        StaticToken {
            token: AccessToken::new(secret, expires_on),
        }
    }

    /// `secret`, said to expire at `expires_on`.
    pub fn with_expiry(secret: impl Into<String>, expires_on: SystemTime) -> Self {
        StaticToken {
            token: AccessToken::new(secret, expires_on),
        }
    }
}

impl TokenSource for StaticToken {
    fn fetch<'a>(&'a self, _scope: &'a str) -> BoxFuture<'a, Result<AccessToken, IdentityError>> {
        let token = self.token.clone();
        Box::pin(async move { Ok(token) })
    }

    fn describe(&self) -> String {
        format!("static token ({})", self.token)
    }
}
