//! Entry points for the fuzz targets in `fuzz/` and their corpus replay test. Not an API: each
//! function takes raw bytes, runs one parser the gateway exposes to untrusted input, and checks the
//! properties that must hold for every input. A panic here is a bug the fuzzer found.

use reqwest::StatusCode;

use crate::managed::token_from_answer;
use crate::retry::Answer;

/// The statuses an IMDS or App Service answer may carry, chosen by the first input byte.
const STATUSES: [u16; 10] = [200, 201, 400, 401, 403, 404, 410, 429, 500, 503];

/// Token response parsing (IMDS, App Service, Entra): a success yields the token the body holds,
/// and no error or `Debug` output ever contains that token.
pub fn token_response(data: &[u8]) {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let status = StatusCode::from_u16(STATUSES[usize::from(selector) % STATUSES.len()])
        .expect("every listed status is valid");
    let answer = Answer {
        status,
        body: body.to_vec(),
    };
    let result = token_from_answer(answer, "http://169.254.169.254", "system-assigned", "scope");
    let Some(secret) = access_token_in(body) else {
        return;
    };
    match result {
        Ok(token) => {
            assert_eq!(token.secret(), secret, "the token read is not the body's");
            assert!(
                !format!("{token:?} {token}").contains(&secret),
                "an AccessToken printed its secret"
            );
        }
        Err(error) if status.is_success() => {
            let printed = format!("{error} {error:?}");
            assert!(
                !printed.contains(&secret),
                "a token parse error printed the token: {printed}"
            );
        }
        Err(_) => {}
    }
}

/// The body's `access_token` string, when it is long enough that finding it elsewhere is no
/// coincidence (real tokens are JWTs of a thousand characters or more).
fn access_token_in(body: &[u8]) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    let token = value.get("access_token")?.as_str()?;
    (token.len() >= 32).then(|| token.to_owned())
}
