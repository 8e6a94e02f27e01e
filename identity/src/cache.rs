//! [`TokenCache`]: one token per scope, refreshed before it expires, one request at a time.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use crate::error::IdentityError;
use crate::source::{BoxFuture, TokenSource};
use crate::token::AccessToken;

/// A cached token is refreshed once it has less than this left, as the Azure SDKs do.
pub const DEFAULT_REFRESH_MARGIN: Duration = Duration::from_secs(5 * 60);

/// A token with less than this left is not handed out even when refreshing it failed: a request
/// sent with it would likely arrive after it expired.
const MIN_USABLE: Duration = Duration::from_secs(30);

/// Caches the tokens of a [`TokenSource`] per scope.
///
/// - A token is reused until less than the refresh margin (5 minutes by default) remains.
/// - Single flight: however many callers want a scope at once, one request is in flight for it;
///   those who waited share its outcome, success or error.
/// - Errors are not cached: the next call after a failure asks again.
/// - While a refresh is in flight or has just failed, callers still get the old token if it has
///   more than 30 s left, so an identity endpoint that is briefly down delays nobody.
///
/// Cloning is cheap and clones share the cache.
#[derive(Clone)]
pub struct TokenCache {
    inner: Arc<Inner>,
}

struct Inner {
    source: Arc<dyn TokenSource>,
    refresh_margin: Duration,
    /// One slot per scope ever asked for; scopes are few (one per Key Vault cloud).
    slots: Mutex<HashMap<String, Arc<Slot>>>,
}

#[derive(Default)]
struct Slot {
    /// The last token fetched for the scope, read without waiting on `fetching`.
    current: Mutex<Option<AccessToken>>,
    /// The outcome of the last fetch if it failed, for the callers that waited on it.
    last_error: Mutex<Option<IdentityError>>,
    /// Counts finished fetches, so that a caller can tell whether one ended while it waited.
    completed: AtomicU64,
    /// Held for the whole of a fetch: the single-flight lock.
    fetching: tokio::sync::Mutex<()>,
}

impl Slot {
    fn current(&self) -> Option<AccessToken> {
        self.current
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn set_current(&self, token: Option<AccessToken>) {
        *self.current.lock().unwrap_or_else(PoisonError::into_inner) = token;
    }

    fn set_last_error(&self, error: Option<IdentityError>) {
        *self
            .last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = error;
    }

    fn last_error(&self) -> Option<IdentityError> {
        self.last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl std::fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenCache")
            .field("source", &self.inner.source.describe())
            .field("refresh_margin", &self.inner.refresh_margin)
            .finish_non_exhaustive()
    }
}

impl TokenCache {
    /// A cache in front of `source`, refreshing [`DEFAULT_REFRESH_MARGIN`] before expiry.
    pub fn new(source: Arc<dyn TokenSource>) -> Self {
        Self::with_refresh_margin(source, DEFAULT_REFRESH_MARGIN)
    }

    /// A cache that refreshes a token once less than `refresh_margin` remains.
    pub fn with_refresh_margin(source: Arc<dyn TokenSource>, refresh_margin: Duration) -> Self {
        TokenCache {
            inner: Arc::new(Inner {
                source,
                refresh_margin,
                slots: Mutex::default(),
            }),
        }
    }

    /// The source behind the cache.
    pub fn source(&self) -> &Arc<dyn TokenSource> {
        &self.inner.source
    }

    /// A token for `scope`: the cached one while more than the refresh margin remains, otherwise a
    /// new one from the source (one request for all concurrent callers).
    pub async fn token(&self, scope: &str) -> Result<AccessToken, IdentityError> {
        let margin = self.inner.refresh_margin;
        let slot = self.slot(scope);
        let cached = slot.current();
        if let Some(token) = cached.as_ref().filter(|t| !t.expires_within(margin)) {
            return Ok(token.clone());
        }
        let seen = slot.completed.load(Ordering::Acquire);
        let usable = cached.filter(|t| !t.expires_within(MIN_USABLE));
        let _guard = match (slot.fetching.try_lock(), usable) {
            (Ok(guard), _) => guard,
            // Someone is refreshing and the old token still works: don't wait for them.
            (Err(_), Some(token)) => return Ok(token),
            (Err(_), None) => slot.fetching.lock().await,
        };
        // Another caller may have finished a fetch while this one waited for the lock.
        let cached = slot.current();
        if let Some(token) = cached.as_ref().filter(|t| !t.expires_within(margin)) {
            return Ok(token.clone());
        }
        let usable = cached.filter(|t| !t.expires_within(MIN_USABLE));
        if slot.completed.load(Ordering::Acquire) != seen {
            // It failed: share its outcome rather than send another request right away.
            if let Some(token) = usable {
                return Ok(token);
            }
            if let Some(error) = slot.last_error() {
                return Err(error);
            }
        }
        let result = self.inner.source.fetch(scope).await;
        let outcome = match result {
            Ok(token) => {
                slot.set_current(Some(token.clone()));
                slot.set_last_error(None);
                Ok(token)
            }
            Err(error) => {
                slot.set_last_error(Some(error.clone()));
                match usable {
                    Some(token) => {
                        tracing::warn!(
                            scope,
                            source = %self.inner.source.describe(),
                            "refreshing the token failed, still using the current one ({token}): {error}"
                        );
                        Ok(token)
                    }
                    None => Err(error),
                }
            }
        };
        slot.completed.fetch_add(1, Ordering::Release);
        outcome
    }

    /// Forgets the cached token of `scope`, e.g. after a server refused it with 401: the next
    /// [`token`](Self::token) asks the source again.
    pub fn invalidate(&self, scope: &str) {
        self.slot(scope).set_current(None);
    }

    fn slot(&self, scope: &str) -> Arc<Slot> {
        let mut slots = self
            .inner
            .slots
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        slots.entry(scope.to_owned()).or_default().clone()
    }
}

/// A cache is itself a source: its `fetch` is [`TokenCache::token`].
impl TokenSource for TokenCache {
    fn fetch<'a>(&'a self, scope: &'a str) -> BoxFuture<'a, Result<AccessToken, IdentityError>> {
        Box::pin(self.token(scope))
    }

    fn describe(&self) -> String {
        format!("cached {}", self.inner.source.describe())
    }
}
