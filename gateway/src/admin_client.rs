//! The CLI's side of the admin API: a plain HTTP/1.1 request to the loopback admin address.
//! Hand-written because it is one request to our own server, with no TLS and no redirects.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::time::Duration;

use anyhow::{bail, Context as _};

/// What a refresh returned.
pub struct RefreshResult {
    /// The outcome in one line (`rotated A -> B (version v)`, `failed (transient): …`).
    pub summary: String,
    /// Rotated or unchanged.
    pub ok: bool,
}

/// `POST /listeners/{name}/refresh` on the admin API at `bind`.
pub fn refresh(bind: SocketAddr, listener: &str) -> anyhow::Result<RefreshResult> {
    // An admin API bound to every address is reached on loopback.
    let addr = match bind.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::new(Ipv4Addr::LOCALHOST.into(), bind.port())
        }
        IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::new(Ipv6Addr::LOCALHOST.into(), bind.port())
        }
        _ => bind,
    };
    let (status, body) = post(addr, &format!("/listeners/{listener}/refresh"))
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

fn post(addr: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    // A refresh waits for Key Vault, whose client retries for up to about a minute.
    stream.set_read_timeout(Some(Duration::from_secs(300)))?;
    write!(
        stream,
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Ok((status, body))
}
