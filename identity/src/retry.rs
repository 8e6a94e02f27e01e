//! Sending one token request with timeouts and retries, and decoding error bodies.
//!
//! IMDS guidance: retry 404, 429 and 5xx; 410 means "IMDS is updating, back within 70 s"; a timeout
//! is retried; other 4xx are final. [`RetryPolicy::default`] waits 2, 4, 8, 16, 32 and 32 s between
//! attempts (94 s in all, which covers the 70 s window) unless the endpoint says `Retry-After`.

use std::time::{Duration, Instant};

use reqwest::header::HeaderMap;
use reqwest::StatusCode;

use crate::error::IdentityError;

/// How often and how patiently a token request is retried.
///
/// The default suits IMDS; tests use millisecond delays.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// The waits between attempts: `delays.len() + 1` requests at most. A `Retry-After` from the
    /// endpoint replaces the wait it falls on.
    pub delays: Vec<Duration>,
    /// The time limit of each request, from connecting to the end of the body.
    pub request_timeout: Duration,
    /// The longest `Retry-After` that is honoured; longer ones are cut to this.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    /// Delays of 2, 4, 8, 16, 32 and 32 s (94 s in all, covering IMDS's 70 s update window), a 10 s
    /// timeout per request and `Retry-After` honoured up to 60 s.
    fn default() -> Self {
        RetryPolicy {
            delays: [2, 4, 8, 16, 32, 32]
                .into_iter()
                .map(Duration::from_secs)
                .collect(),
            request_timeout: Duration::from_secs(10),
            max_retry_after: Duration::from_secs(60),
        }
    }
}

impl RetryPolicy {
    /// One attempt, no retry, with the given timeout.
    pub fn no_retry(request_timeout: Duration) -> Self {
        RetryPolicy {
            delays: Vec::new(),
            request_timeout,
            max_retry_after: Duration::ZERO,
        }
    }

    /// The sum of the scheduled delays (without `Retry-After` and request time).
    pub fn total_delay(&self) -> Duration {
        self.delays.iter().sum()
    }
}

/// Which statuses are worth another try at a given kind of endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RetryOn {
    /// IMDS and App Service: 404, 408, 410, 429 and 5xx.
    ManagedIdentity,
    /// Entra's token endpoint: 408, 429 and 5xx (a 404 there is a wrong authority or tenant).
    Entra,
}

impl RetryOn {
    fn retries(self, status: StatusCode) -> bool {
        let code = status.as_u16();
        let common = code == 408 || code == 429 || status.is_server_error();
        match self {
            RetryOn::ManagedIdentity => common || code == 404 || code == 410,
            RetryOn::Entra => common,
        }
    }
}

/// A final answer from the endpoint: a success, or a status that retrying would not change.
pub(crate) struct Answer {
    pub(crate) status: StatusCode,
    pub(crate) body: Vec<u8>,
}

/// Who is asking whom, for messages and log lines.
pub(crate) struct Context<'a> {
    /// The endpoint without its query string.
    pub(crate) endpoint: &'a str,
    /// e.g. `client_id 1234…`.
    pub(crate) identity: &'a str,
    /// Strings that must never appear in a message (client secret, assertion).
    pub(crate) secrets: &'a [&'a str],
}

/// The most of a body that is read; token responses are a few kilobytes.
const MAX_BODY: usize = 256 * 1024;

/// Sends the request that `make` builds until it gets a final answer or the policy runs out.
pub(crate) async fn send(
    policy: &RetryPolicy,
    retry_on: RetryOn,
    ctx: &Context<'_>,
    mut make: impl FnMut() -> reqwest::RequestBuilder,
) -> Result<Answer, IdentityError> {
    let started = Instant::now();
    let mut attempts: u32 = 0;
    let mut delays = policy.delays.iter();
    loop {
        attempts += 1;
        let outcome = attempt(
            make().timeout(policy.request_timeout),
            policy.request_timeout,
        )
        .await;
        let (failure, retry_after) = match outcome {
            Ok((status, _, body)) if !retry_on.retries(status) => {
                return Ok(Answer { status, body })
            }
            Ok((status, headers, body)) => (
                describe_status(status, &body, ctx.secrets),
                retry_after(&headers),
            ),
            Err(failure) => (redact(&failure, ctx.secrets), None),
        };
        let Some(&scheduled) = delays.next() else {
            return Err(IdentityError::Unavailable {
                endpoint: ctx.endpoint.to_owned(),
                identity: ctx.identity.to_owned(),
                attempts,
                elapsed_secs: started.elapsed().as_secs_f64(),
                last_failure: failure,
            });
        };
        let wait = match retry_after {
            Some(asked) => asked.min(policy.max_retry_after),
            None => scheduled,
        };
        tracing::warn!(
            endpoint = ctx.endpoint,
            identity = ctx.identity,
            attempt = attempts,
            retry_in_ms = wait.as_millis() as u64,
            "token request failed, will retry: {failure}"
        );
        tokio::time::sleep(wait).await;
    }
}

/// One request: its status, headers and (bounded) body, or why there is none.
async fn attempt(
    request: reqwest::RequestBuilder,
    timeout: Duration,
) -> Result<(StatusCode, HeaderMap, Vec<u8>), String> {
    let mut response = request
        .send()
        .await
        .map_err(|e| describe_transport_error(&e, timeout))?;
    let status = response.status();
    let headers = response.headers().clone();
    let mut body = Vec::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                let room = MAX_BODY.saturating_sub(body.len());
                body.extend_from_slice(&chunk[..chunk.len().min(room)]);
                if body.len() >= MAX_BODY {
                    break;
                }
            }
            Ok(None) => break,
            Err(e) => return Err(describe_transport_error(&e, timeout)),
        }
    }
    Ok((status, headers, body))
}

/// A transport error in words, with its causes but without the URL (which is named elsewhere).
fn describe_transport_error(e: &reqwest::Error, timeout: Duration) -> String {
    if e.is_timeout() {
        return format!("timed out after {:.1} s", timeout.as_secs_f64());
    }
    let what = if e.is_connect() {
        "cannot connect"
    } else if e.is_body() || e.is_decode() {
        "the response broke off"
    } else {
        "the request failed"
    };
    let mut text = what.to_owned();
    let mut cause: Option<&dyn std::error::Error> = std::error::Error::source(e);
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

/// `Retry-After` (seconds), or Azure's `retry-after-ms` / `x-ms-retry-after-ms`.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    for name in ["retry-after-ms", "x-ms-retry-after-ms"] {
        if let Some(ms) = header(name).and_then(|v| v.parse::<u64>().ok()) {
            return Some(Duration::from_millis(ms));
        }
    }
    let secs = header("retry-after")?.parse::<f64>().ok()?;
    (0.0..1e9)
        .contains(&secs)
        .then(|| Duration::from_secs_f64(secs))
}

/// `HTTP 400 invalid_request: Identity not found`, from an OAuth-style error body (or the start of a
/// body that is not one).
pub(crate) fn describe_status(status: StatusCode, body: &[u8], secrets: &[&str]) -> String {
    let mut text = format!("HTTP {}", status.as_u16());
    match decode_error(body) {
        Some((error, description)) => {
            let parts: Vec<String> = [error, description].into_iter().flatten().collect();
            text.push_str(": ");
            text.push_str(&parts.join(" "));
        }
        None => {
            let body = String::from_utf8_lossy(body);
            let body = body.trim();
            if !body.is_empty() {
                text.push_str(": ");
                text.push_str(&truncate(
                    &body.split_whitespace().collect::<Vec<_>>().join(" "),
                    200,
                ));
            }
        }
    }
    redact(&text, secrets)
}

/// The `error` and `error_description` of an error body: `{"error":"…","error_description":"…"}`,
/// or `{"error":{"code":"…","message":"…"}}` as some Azure services send.
pub(crate) fn decode_error(body: &[u8]) -> Option<(Option<String>, Option<String>)> {
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    let text =
        |v: Option<&serde_json::Value>| v.and_then(|v| v.as_str()).map(|s| truncate(s.trim(), 500));
    let (error, description) = match value.get("error") {
        Some(serde_json::Value::Object(inner)) => {
            (text(inner.get("code")), text(inner.get("message")))
        }
        other => (
            text(other),
            text(value.get("error_description")).or_else(|| text(value.get("message"))),
        ),
    };
    (error.is_some() || description.is_some()).then_some((error, description))
}

fn truncate(s: &str, max_chars: usize) -> String {
    match s.char_indices().nth(max_chars) {
        Some((cut, _)) => format!("{}…", &s[..cut]),
        None => s.to_owned(),
    }
}

/// Replaces every occurrence of a secret with `[redacted]`: an endpoint that echoes a client
/// secret or assertion back in its error must not put it into our messages.
pub(crate) fn redact(text: &str, secrets: &[&str]) -> String {
    let mut text = text.to_owned();
    for secret in secrets.iter().filter(|s| s.len() >= 4) {
        text = text.replace(secret, "[redacted]");
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_schedule_outlasts_the_70_second_imds_update_window() {
        let policy = RetryPolicy::default();
        assert!(
            policy.total_delay() >= Duration::from_secs(70),
            "{:?}",
            policy.total_delay()
        );
        assert!(
            policy.delays.windows(2).all(|w| w[0] <= w[1]),
            "delays grow: {:?}",
            policy.delays
        );
        assert!(policy.request_timeout > Duration::ZERO);
    }

    #[test]
    fn imds_retries_what_its_guidance_says_and_entra_does_not_retry_404() {
        for code in [404, 408, 410, 429, 500, 503, 511] {
            assert!(
                RetryOn::ManagedIdentity.retries(StatusCode::from_u16(code).unwrap()),
                "{code}"
            );
        }
        for code in [200, 400, 401, 403, 405] {
            assert!(
                !RetryOn::ManagedIdentity.retries(StatusCode::from_u16(code).unwrap()),
                "{code}"
            );
        }
        assert!(!RetryOn::Entra.retries(StatusCode::NOT_FOUND));
        assert!(!RetryOn::Entra.retries(StatusCode::GONE));
        assert!(RetryOn::Entra.retries(StatusCode::TOO_MANY_REQUESTS));
        assert!(RetryOn::Entra.retries(StatusCode::BAD_GATEWAY));
    }

    #[track_caller]
    fn check_status(code: u16, body: &str, expect: &str) {
        assert_eq!(
            describe_status(
                StatusCode::from_u16(code).unwrap(),
                body.as_bytes(),
                &["hunter22"]
            ),
            expect
        );
    }

    #[test]
    fn error_bodies_are_decoded() {
        check_status(
            400,
            r#"{"error":"invalid_request","error_description":"Identity not found"}"#,
            "HTTP 400: invalid_request Identity not found",
        );
        check_status(
            401,
            r#"{"error":{"code":"Unauthorized","message":"no"}}"#,
            "HTTP 401: Unauthorized no",
        );
        check_status(500, "", "HTTP 500");
        check_status(
            502,
            "<html>\n bad   gateway</html>",
            "HTTP 502: <html> bad gateway</html>",
        );
        check_status(
            401,
            r#"{"error":"invalid_client","error_description":"secret hunter22 is wrong"}"#,
            "HTTP 401: invalid_client secret [redacted] is wrong",
        );
    }

    #[test]
    fn retry_after_accepts_seconds_and_azure_milliseconds() {
        let mut headers = HeaderMap::new();
        assert_eq!(retry_after(&headers), None);
        headers.insert("retry-after", "3".parse().unwrap());
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(3)));
        headers.insert("retry-after-ms", "250".parse().unwrap());
        assert_eq!(retry_after(&headers), Some(Duration::from_millis(250)));
        let mut dated = HeaderMap::new();
        dated.insert(
            "retry-after",
            "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap(),
        );
        assert_eq!(
            retry_after(&dated),
            None,
            "a date falls back to the schedule"
        );
    }
}
