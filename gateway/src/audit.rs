//! `gateway audit`: the event log as a table or JSON lines, newest first, filtered, or its hash
//! chain verified.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context as _};
use event_log::{EventKind, EventLog, EventLogError, Query};

#[derive(Debug, clap::Args)]
pub struct AuditArgs {
    /// The gateway's state directory (`[state] dir`).
    #[arg(long)]
    pub state: PathBuf,
    /// Only events of this listener.
    #[arg(long)]
    pub listener: Option<String>,
    /// Only events of this kind (for example `certificate_installed`).
    #[arg(long)]
    pub kind: Option<String>,
    /// Only events at or after this time: RFC 3339 (`2026-12-01T00:00:00Z`) or an age (`90m`, `12h`, `7d`).
    #[arg(long)]
    pub since: Option<String>,
    /// Only events before this time: RFC 3339 or an age, as for `--since`.
    #[arg(long)]
    pub until: Option<String>,
    /// Only the most recent N matching events.
    #[arg(long)]
    pub limit: Option<usize>,
    /// One JSON object per line instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Check the hash chain of the whole log; exits non-zero naming the first bad entry.
    #[arg(long)]
    pub verify: bool,
}

pub fn run(args: &AuditArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let (log, _copy) = open_for_reading(&args.state)?;
    if args.verify {
        let report = log.verify().context("verification failed")?;
        writeln!(out, "{report}")?;
        return Ok(());
    }
    let kind = args
        .kind
        .as_deref()
        .map(str::parse::<EventKind>)
        .transpose()
        .context("--kind")?;
    let now = SystemTime::now();
    let since_ms = args
        .since
        .as_deref()
        .map(|s| parse_time("--since", s, now))
        .transpose()?;
    let until_ms = args
        .until
        .as_deref()
        .map(|s| parse_time("--until", s, now))
        .transpose()?;
    let mut events = log.query(&Query {
        listener: args.listener.clone(),
        kind,
        since_ms,
        until_ms,
        limit: args.limit,
    })?;
    // The log answers oldest first; people and tools both want the latest change on top.
    events.reverse();
    if args.json {
        for envelope in &events {
            writeln!(out, "{}", serde_json::to_string(envelope)?)?;
        }
    } else {
        writeln!(
            out,
            "{:>6}  {:<24}  {:<16}  {:<22}  DETAILS",
            "SEQ", "TIME", "LISTENER", "KIND"
        )?;
        for envelope in &events {
            writeln!(
                out,
                "{:>6}  {:<24}  {:<16}  {:<22}  {}",
                envelope.seq,
                event_log::format_ms(envelope.at_ms),
                envelope.listener,
                envelope.kind().to_string(),
                envelope.event
            )?;
        }
    }
    Ok(())
}

/// Opens the log in `state`. A running gateway holds the database's lock, so in that case the log is
/// read from a private copy taken while no commit was in progress (two identical reads in a row);
/// the copy lives as long as the returned `TempDir`.
fn open_for_reading(state: &Path) -> anyhow::Result<(EventLog, Option<tempfile::TempDir>)> {
    let context = || format!("event log in {}", state.display());
    match EventLog::open_existing(state) {
        Err(EventLogError::Locked { .. }) => {}
        other => return Ok((other.with_context(context)?, None)),
    }
    let copy = tempfile::Builder::new()
        .prefix("gateway-audit-")
        .tempdir()
        .context("temporary copy of the event log")?;
    let key = std::fs::read(state.join(event_log::SEAL_KEY_FILE)).with_context(context)?;
    write_private(&copy.path().join(event_log::SEAL_KEY_FILE), &key)?;
    let database = state.join(event_log::DATABASE_FILE);
    for _ in 0..20 {
        let first = std::fs::read(&database).with_context(context)?;
        let second = std::fs::read(&database).with_context(context)?;
        if first == second {
            write_private(&copy.path().join(event_log::DATABASE_FILE), &first)?;
            tracing::debug!("the gateway is running; reading a consistent copy of its event log");
            let log = EventLog::open_existing(copy.path()).with_context(context)?;
            return Ok((log, Some(copy)));
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    bail!(
        "{}: the event log kept changing while it was read; try again",
        context()
    )
}

fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    file.write_all(bytes)?;
    Ok(())
}

/// Unix seconds as RFC 3339, for messages and reports.
pub fn format_time_s(secs: i64) -> String {
    event_log::format_secs(secs)
}

/// `--since`: an RFC 3339 time, or an age before `now` in `s`, `m`, `h` or `d`.
pub fn parse_since(text: &str, now: SystemTime) -> anyhow::Result<i64> {
    parse_time("--since", text, now)
}

/// A time bound given as an RFC 3339 time or an age before `now` in `s`, `m`, `h` or `d`, as Unix
/// milliseconds; errors name `flag`.
pub fn parse_time(flag: &str, text: &str, now: SystemTime) -> anyhow::Result<i64> {
    if let Ok(at) =
        time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
    {
        return Ok((at.unix_timestamp_nanos() / 1_000_000) as i64);
    }
    let (digits, unit) = text.split_at(text.len().saturating_sub(1));
    let seconds_per_unit = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => bail!("{flag} `{text}`: expected an RFC 3339 time such as 2026-12-01T00:00:00Z or an age such as 90m, 12h, 7d"),
    };
    let amount: i64 = digits
        .parse()
        .with_context(|| format!("{flag} `{text}`: `{digits}` is not a whole number"))?;
    let now_ms = now
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    Ok(now_ms - amount.saturating_mul(seconds_per_unit * 1000))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn since_accepts_rfc3339_and_ages() {
        let now = UNIX_EPOCH + Duration::from_secs(1_000_000);
        assert_eq!(parse_since("1970-01-01T00:00:10Z", now).unwrap(), 10_000);
        assert_eq!(parse_since("90m", now).unwrap(), (1_000_000 - 5400) * 1000);
        assert_eq!(
            parse_since("2d", now).unwrap(),
            (1_000_000 - 172_800) * 1000
        );
        let err = parse_since("yesterday", now).unwrap_err().to_string();
        assert!(err.contains("--since `yesterday`"), "{err}");
        let err = parse_time("--until", "soon", now).unwrap_err().to_string();
        assert!(err.contains("--until `soon`"), "{err}");
        assert_eq!(
            parse_time("--until", "1h", now).unwrap(),
            (1_000_000 - 3600) * 1000
        );
    }
}
