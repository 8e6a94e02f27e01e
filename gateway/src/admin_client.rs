//! The CLI's side of the admin API: a plain HTTP/1.1 request to the loopback admin address.
//! Hand-written because it is one request to our own server, with no TLS and no redirects.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::time::Duration;

use anyhow::{bail, Context as _};

use crate::admin::ListenerView;

/// What a refresh returned.
pub struct RefreshResult {
    /// The outcome in one line (`rotated A -> B (version v)`, `failed (transient): …`).
    pub summary: String,
    /// Rotated or unchanged.
    pub ok: bool,
}

/// An admin API bound to every address is reached on loopback.
fn reachable(bind: SocketAddr) -> SocketAddr {
    match bind.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::new(Ipv4Addr::LOCALHOST.into(), bind.port())
        }
        IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::new(Ipv6Addr::LOCALHOST.into(), bind.port())
        }
        _ => bind,
    }
}

/// `POST /listeners/{name}/refresh` on the admin API at `bind`.
pub fn refresh(bind: SocketAddr, listener: &str) -> anyhow::Result<RefreshResult> {
    let addr = reachable(bind);
    // A refresh waits for Key Vault, whose client retries for up to about a minute.
    let (status, body) = request(
        addr,
        "POST",
        &format!("/listeners/{listener}/refresh"),
        Duration::from_secs(300),
    )
    .with_context(|| format!("admin API at {addr} (is the gateway running?)"))?;
    let json: serde_json::Value = serde_json::from_str(&body).with_context(|| {
        format!("admin API at {addr}: answered {status} with a body that is not JSON")
    })?;
    if status != 200 {
        bail!(
            "admin API at {addr}: {}",
            json["error"].as_str().unwrap_or("unexpected answer")
        );
    }
    let outcome = json["outcome"].as_str().unwrap_or_default();
    Ok(RefreshResult {
        summary: json["summary"].as_str().unwrap_or(outcome).to_owned(),
        ok: matches!(outcome, "rotated" | "unchanged"),
    })
}

/// `GET /listeners` on the admin API at `bind`: every listener's state and serving certificate.
pub fn listeners(bind: SocketAddr) -> anyhow::Result<Vec<ListenerView>> {
    let addr = reachable(bind);
    let (status, body) = request(addr, "GET", "/listeners", Duration::from_secs(30))
        .with_context(|| format!("admin API at {addr} (is the gateway running?)"))?;
    if status != 200 {
        let json: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        bail!(
            "admin API at {addr}: answered {status}: {}",
            json["error"].as_str().unwrap_or("unexpected answer")
        );
    }
    serde_json::from_str(&body).with_context(|| {
        format!(
            "admin API at {addr}: GET /listeners answered with a body that is not a listener list"
        )
    })
}

/// One line per listener for `gateway status`: name, state, thumbprint, Key Vault version, days to
/// expiry and the last check's outcome (`-` where there is none).
pub fn status_lines(views: &[ListenerView]) -> Vec<String> {
    let width = views.iter().map(|v| v.name.len()).max().unwrap_or(0);
    views
        .iter()
        .map(|v| {
            let dash = || "-".to_owned();
            format!(
                "{:<width$}  state={} thumbprint={} version={} days_to_expiry={} last_check={}",
                v.name,
                v.state,
                v.thumbprint.clone().unwrap_or_else(dash),
                v.version.clone().unwrap_or_else(dash),
                v.days_to_expiry.map_or_else(dash, |d| d.to_string()),
                v.last_outcome
                    .as_ref()
                    .map_or_else(dash, crate::status_page::outcome_word),
            )
        })
        .collect()
}

/// One HTTP/1.1 request with an empty body: the status and the (de-chunked) body.
fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    timeout: Duration,
) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    stream.set_read_timeout(Some(timeout))?;
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let chunked = head.lines().any(|line| {
        line.split_once(':').is_some_and(|(name, value)| {
            name.trim().eq_ignore_ascii_case("transfer-encoding")
                && value.trim().eq_ignore_ascii_case("chunked")
        })
    });
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_owned()
    };
    Ok((status, body))
}

/// The payload of a `Transfer-Encoding: chunked` body.
fn dechunk(mut rest: &str) -> String {
    let mut out = String::new();
    while let Some((size_line, after)) = rest.split_once("\r\n") {
        let size = usize::from_str_radix(size_line.split(';').next().unwrap_or("").trim(), 16)
            .unwrap_or(0);
        if size == 0 || after.len() < size {
            break;
        }
        out.push_str(&after[..size]);
        rest = after[size..].trim_start_matches("\r\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunked_bodies_are_joined() {
        assert_eq!(
            dechunk("5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"),
            "hello world"
        );
    }
}
