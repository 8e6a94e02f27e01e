//! Prints an event log, one audit line per entry, then checks its hash chain.
//!
//! ```text
//! cargo run -p event-log --example audit -- STATE_DIR [--json]
//! ```

use std::path::PathBuf;
use std::process::ExitCode;

use event_log::{EventLog, Query};

fn main() -> ExitCode {
    let mut args = std::env::args_os().skip(1);
    let Some(dir) = args.next().map(PathBuf::from) else {
        eprintln!("usage: audit STATE_DIR [--json]");
        return ExitCode::from(2);
    };
    let json = args.next().is_some_and(|a| a == "--json");

    let log = match EventLog::open_existing(&dir) {
        Ok(log) => log,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    match log.query(&Query::default()) {
        Ok(entries) => {
            for envelope in entries {
                if json {
                    match serde_json::to_string(&envelope) {
                        Ok(line) => println!("{line}"),
                        Err(e) => eprintln!("error: entry {}: {e}", envelope.seq),
                    }
                } else {
                    println!("{envelope}");
                }
            }
        }
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    }
    match log.verify() {
        Ok(report) => {
            eprintln!("{report}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("verify failed: {e}");
            ExitCode::FAILURE
        }
    }
}
