//! `t2s gc`: remove objects no ref names and no live process leases, stale staging dirs of
//! killed runs, moved-aside corrupt objects and unused lock files (`--partial`: resume
//! checkpoints too). The retention rule is stated in `t2s gc --help` (`cli.rs`).

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use crate::cache::{GcOptions, Store};
use crate::cli::GcArgs;

pub fn gc(root: &Path, args: GcArgs) -> anyhow::Result<ExitCode> {
    let grace =
        parse_duration(&args.grace).map_err(|e| super::UsageError(format!("--grace: {e}")))?;
    let store = Store::open(root)?;
    let r = store.gc(&GcOptions {
        dry_run: args.dry_run,
        partial: args.partial,
        grace,
    })?;
    let verb = if args.dry_run {
        "would remove"
    } else {
        "removed"
    };
    for (key, size) in &r.objects {
        println!("{verb} object {key} ({size} bytes)");
    }
    for p in r.staging.iter().chain(&r.partial).chain(&r.corrupt) {
        println!("{verb} {}", p.display());
    }
    let bytes: u64 = r.objects.iter().map(|(_, s)| s).sum();
    println!(
        "gc: {verb} {} objects ({bytes} bytes), {} staging, {} partial, {} corrupt, {} lock files; kept {} objects ({} leased by running processes, {} within --grace)",
        r.objects.len(),
        r.staging.len(),
        r.partial.len(),
        r.corrupt.len(),
        r.locks,
        r.kept,
        r.leased,
        r.young
    );
    Ok(ExitCode::SUCCESS)
}

/// `0`, or a whole number with a unit: `s`, `m`, `h`, `d`.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    if t == "0" {
        return Ok(Duration::ZERO);
    }
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("`{text}` is not a duration (e.g. 30m, 2h, 7d, or 0)"))?;
    let secs = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86400,
        _ => {
            return Err(format!(
                "`{text}`: unknown unit `{unit}` (use s, m, h or d)"
            ))
        }
    };
    Ok(Duration::from_secs(n.saturating_mul(secs)))
}

#[cfg(test)]
mod tests {
    use super::parse_duration;
    use std::time::Duration;

    #[test]
    fn durations_take_a_unit() {
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(7 * 86400)));
        for bad in ["", "5", "m", "1.5h", "3w", "-1h"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }
}
