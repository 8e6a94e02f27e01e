//! The access token and the parsing of token responses.
//!
//! Token endpoints disagree on types: IMDS sends every number as a JSON string
//! (`"expires_in": "3599"`), Entra's v2 endpoint sends numbers, and App Service's legacy 2017
//! protocol sends `expires_on` as a date (`"06/20/2019 02:57:58 +00:00"`). [`parse_token_response`]
//! accepts all of them.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Deserialize;

/// A bearer token and when it expires.
///
/// `Debug` and `Display` show only the expiry (`AccessToken(expires 2026-01-01T00:00:00Z)`);
/// [`AccessToken::secret`] is the one way to read the token itself.
#[derive(Clone)]
pub struct AccessToken {
    /// The bearer token. Private so that it cannot be printed by accident.
    secret: String,
    /// When the token stops being accepted, from the endpoint's `expires_on` or `expires_in`.
    expires_on: SystemTime,
}

impl AccessToken {
    /// A token that expires at `expires_on`.
    pub fn new(secret: impl Into<String>, expires_on: SystemTime) -> Self {
        AccessToken {
            secret: secret.into(),
            expires_on,
        }
    }

    /// The bearer token, for an `Authorization: Bearer …` header. Never log it.
    pub fn secret(&self) -> &str {
        &self.secret
    }

    /// When the token expires.
    pub fn expires_on(&self) -> SystemTime {
        self.expires_on
    }

    /// `true` if the token expires within `margin` from now (or has expired).
    pub fn expires_within(&self, margin: Duration) -> bool {
        match SystemTime::now().checked_add(margin) {
            Some(deadline) => self.expires_on <= deadline,
            None => true,
        }
    }
}

impl fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AccessToken(expires {})", format_time(self.expires_on))
    }
}

impl fmt::Display for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// RFC 3339 in UTC, or seconds since the epoch if the time is out of `time`'s range.
pub(crate) fn format_time(t: SystemTime) -> String {
    // Not `OffsetDateTime::from(SystemTime)`: it panics past year 9999.
    let formatted = t
        .duration_since(UNIX_EPOCH)
        .ok()
        .and_then(|d| i64::try_from(d.as_secs()).ok())
        .and_then(|secs| time::OffsetDateTime::from_unix_timestamp(secs).ok())
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        });
    match formatted {
        Some(s) => s,
        None => match t.duration_since(UNIX_EPOCH) {
            Ok(d) => format!("{} s after the epoch", d.as_secs()),
            Err(_) => "before the epoch".to_owned(),
        },
    }
}

/// A JSON value that some endpoints send as a number and others as a string.
#[derive(Deserialize)]
#[serde(untagged)]
enum NumberOrString {
    Number(serde_json::Number),
    String(String),
}

impl NumberOrString {
    /// The value as whole seconds, if it is a number or a string holding one.
    fn as_seconds(&self) -> Option<u64> {
        match self {
            NumberOrString::Number(n) => {
                n.as_u64().or_else(|| n.as_f64().and_then(seconds_from_f64))
            }
            NumberOrString::String(s) => {
                let s = s.trim();
                s.parse::<u64>()
                    .ok()
                    .or_else(|| s.parse::<f64>().ok().and_then(seconds_from_f64))
            }
        }
    }
}

/// The longest lifetime a token may claim. Entra tokens last hours; an `expires_on` further out is
/// a unit mistake (milliseconds for seconds) and is not believed, so that such a token is not
/// cached for ever.
const MAX_LIFETIME: Duration = Duration::from_secs(366 * 24 * 3600);

fn seconds_from_f64(f: f64) -> Option<u64> {
    (0.0..1e15).contains(&f).then_some(f as u64)
}

/// The fields of a token response that this crate reads. Unknown fields are ignored.
#[derive(Deserialize)]
struct RawTokenResponse {
    access_token: Option<String>,
    token_type: Option<String>,
    expires_in: Option<NumberOrString>,
    expires_on: Option<NumberOrString>,
}

/// Why a 2xx body is not a usable token response. Never contains the body.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct ParseError(pub(crate) String);

/// Reads a token response body (`access_token` plus `expires_on` or `expires_in`).
///
/// `expires_on` wins when it can be read: unix seconds as a number or a string, or the App Service
/// 2017 date (`MM/DD/YYYY hh:mm:ss +00:00`). Otherwise `expires_in` seconds are added to `now`.
pub(crate) fn parse_token_response(
    body: &[u8],
    now: SystemTime,
) -> Result<AccessToken, ParseError> {
    let raw: RawTokenResponse = serde_json::from_slice(body).map_err(|e| {
        // serde_json's message quotes no input beyond a type name, but keep only its category and
        // position to be sure no part of a token leaks.
        ParseError(format!(
            "the body is not the expected JSON ({:?} error at line {} column {})",
            e.classify(),
            e.line(),
            e.column()
        ))
    })?;
    let secret = match raw.access_token {
        Some(t) if !t.is_empty() => t,
        Some(_) => return Err(ParseError("`access_token` is empty".to_owned())),
        None => return Err(ParseError("`access_token` is missing".to_owned())),
    };
    if let Some(kind) = &raw.token_type {
        if !kind.eq_ignore_ascii_case("bearer") {
            // Named when it is short, as real token types are (`pop`, `mtls_pop`): a long value
            // could be anything the endpoint sent, a token among them.
            return Err(ParseError(if kind.len() <= 20 {
                format!("`token_type` is {kind:?}, not Bearer")
            } else {
                format!(
                    "`token_type` is not Bearer (a {}-character value)",
                    kind.len()
                )
            }));
        }
    }
    let latest = now + MAX_LIFETIME;
    let from_expires_on = raw
        .expires_on
        .as_ref()
        .and_then(expires_on_time)
        .filter(|t| *t <= latest);
    let from_expires_in = raw
        .expires_in
        .as_ref()
        .and_then(NumberOrString::as_seconds)
        .and_then(|s| now.checked_add(Duration::from_secs(s)))
        .filter(|t| *t <= latest);
    let expires_on = match (from_expires_on, from_expires_in) {
        (Some(t), _) | (None, Some(t)) => t,
        (None, None) => {
            let why = match (&raw.expires_on, &raw.expires_in) {
                (None, None) => "it has neither `expires_on` nor `expires_in`",
                _ => "its `expires_on`/`expires_in` is neither seconds nor a date within a year",
            };
            return Err(ParseError(format!(
                "cannot tell when the token expires: {why}"
            )));
        }
    };
    Ok(AccessToken::new(secret, expires_on))
}

fn expires_on_time(v: &NumberOrString) -> Option<SystemTime> {
    if let Some(secs) = v.as_seconds() {
        return UNIX_EPOCH.checked_add(Duration::from_secs(secs));
    }
    match v {
        NumberOrString::String(s) => parse_app_service_2017_date(s.trim()),
        NumberOrString::Number(_) => None,
    }
}

/// `06/20/2019 02:57:58 +00:00`, as App Service's 2017-09-01 protocol sends `expires_on`.
fn parse_app_service_2017_date(s: &str) -> Option<SystemTime> {
    let format = time::macros::format_description!(
        "[month padding:none]/[day padding:none]/[year] [hour padding:none]:[minute]:[second] [offset_hour sign:mandatory]:[offset_minute]"
    );
    let parsed = time::OffsetDateTime::parse(s, &format).ok()?;
    Some(SystemTime::from(parsed))
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_700_000_000;

    fn now() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(NOW)
    }

    /// Parses `body` and checks the expiry, in seconds since the epoch.
    #[track_caller]
    fn check(body: &str, expect_expires_on: u64) {
        let token = parse_token_response(body.as_bytes(), now()).expect("a token response");
        assert_eq!(token.secret(), "tok");
        let got = token
            .expires_on()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        assert_eq!(got, expect_expires_on, "expiry of {body}");
    }

    #[track_caller]
    fn check_err(body: &str, expect_in_message: &str) {
        let err = parse_token_response(body.as_bytes(), now()).expect_err("a parse error");
        assert!(
            err.0.contains(expect_in_message),
            "{:?} should mention {expect_in_message:?}",
            err.0
        );
        assert!(
            !err.0.contains("tok\""),
            "the message must not quote the body: {}",
            err.0
        );
    }

    #[test]
    fn imds_sends_numbers_as_strings() {
        check(
            r#"{"access_token":"tok","refresh_token":"","expires_in":"3599","expires_on":"1506484173",
               "not_before":"1506480273","resource":"https://vault.azure.net","token_type":"Bearer"}"#,
            1_506_484_173,
        );
    }

    #[test]
    fn numbers_may_be_numbers() {
        check(
            r#"{"access_token":"tok","expires_on":1506484173,"not_before":1506480273}"#,
            1_506_484_173,
        );
        check(
            r#"{"access_token":"tok","expires_on":1506484173.0}"#,
            1_506_484_173,
        );
    }

    #[test]
    fn expires_in_alone_counts_from_now() {
        check(
            r#"{"token_type":"Bearer","expires_in":3599,"ext_expires_in":3599,"access_token":"tok"}"#,
            NOW + 3599,
        );
        check(r#"{"access_token":"tok","expires_in":"60"}"#, NOW + 60);
    }

    #[test]
    fn expires_on_wins_over_expires_in() {
        check(
            r#"{"access_token":"tok","expires_in":"10","expires_on":"1506484173"}"#,
            1_506_484_173,
        );
    }

    #[test]
    fn unreadable_expires_on_falls_back_to_expires_in() {
        check(
            r#"{"access_token":"tok","expires_in":"10","expires_on":"soon"}"#,
            NOW + 10,
        );
    }

    #[test]
    fn app_service_2017_sends_a_date() {
        // 2019-06-20T02:57:58Z
        check(
            r#"{"access_token":"tok","expires_on":"06/20/2019 02:57:58 +00:00"}"#,
            1_560_999_478,
        );
        check(
            r#"{"access_token":"tok","expires_on":"6/20/2019 4:57:58 +02:00"}"#,
            1_560_999_478,
        );
    }

    #[test]
    fn a_long_token_type_is_not_echoed() {
        // Found by the `token_response` fuzz target: the token type was quoted in full.
        let long = "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.x";
        let body = format!(r#"{{"access_token":"{long}","token_type":"{long}","expires_in":1}}"#);
        let err = parse_token_response(body.as_bytes(), now()).unwrap_err();
        assert_eq!(err.0, "`token_type` is not Bearer (a 38-character value)");
    }

    #[test]
    fn token_type_other_than_bearer_is_refused() {
        check(
            r#"{"access_token":"tok","expires_in":1,"token_type":"bearer"}"#,
            NOW + 1,
        );
        check_err(
            r#"{"access_token":"tok","expires_in":1,"token_type":"pop"}"#,
            "not Bearer",
        );
    }

    #[test]
    fn an_expiry_more_than_a_year_away_is_not_believed() {
        // Found by the `token_response` fuzz target (fuzz/regressions/token_response/): an
        // `expires_on` in milliseconds is year 49,700, which `time` panicked on when the token was
        // printed. Now it is not believed: `expires_in` is used, or the response is refused.
        check(
            r#"{"access_token":"tok","expires_on":"1506484480273","expires_in":"3599"}"#,
            NOW + 3599,
        );
        check_err(
            r#"{"access_token":"tok","expires_on":"1506484480273"}"#,
            "neither seconds nor a date within a year",
        );
        check_err(
            r#"{"access_token":"tok","expires_in":99999999999}"#,
            "neither seconds nor a date within a year",
        );
    }

    #[test]
    fn any_time_prints_without_panicking() {
        let far = UNIX_EPOCH + Duration::from_secs(1_506_484_480_273);
        assert_eq!(format_time(far), "1506484480273 s after the epoch");
        assert_eq!(
            format!("{:?}", AccessToken::new("tok", far)),
            "AccessToken(expires 1506484480273 s after the epoch)"
        );
        assert_eq!(
            format_time(UNIX_EPOCH + Duration::from_secs(NOW)),
            "2023-11-14T22:13:20Z"
        );
    }

    #[test]
    fn missing_or_unreadable_fields_are_named() {
        check_err(r#"{"expires_in":1}"#, "`access_token` is missing");
        check_err(
            r#"{"access_token":"","expires_in":1}"#,
            "`access_token` is empty",
        );
        check_err(
            r#"{"access_token":"tok"}"#,
            "neither `expires_on` nor `expires_in`",
        );
        check_err(
            r#"{"access_token":"tok","expires_on":"tomorrow"}"#,
            "neither seconds nor a date",
        );
        check_err(
            r#"{"access_token":"tok","expires_on":-5}"#,
            "neither seconds nor a date",
        );
        check_err(r#"<html>proxy login</html>"#, "not the expected JSON");
        check_err(
            r#"{"access_token":"tok","expires_in":"#,
            "not the expected JSON",
        );
    }

    #[test]
    fn debug_and_display_show_the_expiry_but_never_the_token() {
        let token = AccessToken::new(
            "s3cr3t-token",
            UNIX_EPOCH + Duration::from_secs(1_767_225_600),
        );
        assert_eq!(
            format!("{token:?}"),
            "AccessToken(expires 2026-01-01T00:00:00Z)"
        );
        assert_eq!(
            token.to_string(),
            "AccessToken(expires 2026-01-01T00:00:00Z)"
        );
        assert_eq!(
            format!("{token:#?}"),
            "AccessToken(expires 2026-01-01T00:00:00Z)"
        );
        assert_eq!(token.secret(), "s3cr3t-token");
    }

    #[test]
    fn expires_within_compares_with_now() {
        let soon = AccessToken::new("t", SystemTime::now() + Duration::from_secs(240));
        assert!(soon.expires_within(Duration::from_secs(300)));
        assert!(!soon.expires_within(Duration::from_secs(60)));
    }
}
