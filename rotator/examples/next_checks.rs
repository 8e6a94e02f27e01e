//! Prints the next five checks of a schedule:
//! `cargo run -p rotator --example next_checks -- "0 0 */4 * * *" 5m`

use std::time::SystemTime;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let expression = args
        .next()
        .unwrap_or_else(|| rotator::DEFAULT_SCHEDULE.to_owned());
    let jitter = match args.next() {
        Some(text) => rotator::parse_duration(&text)?,
        None => rotator::DEFAULT_JITTER,
    };
    let schedule = rotator::Schedule::parse(&expression, jitter)?;
    println!(
        "schedule `{}`, this instance's offset {:?}",
        schedule.expression(),
        schedule.offset()
    );
    let mut at = SystemTime::now();
    for _ in 0..5 {
        let Some(next) = schedule.next_after(at) else {
            break;
        };
        let secs = next.duration_since(SystemTime::UNIX_EPOCH)?.as_secs();
        println!("next check at unix {secs}");
        at = next;
    }
    Ok(())
}
