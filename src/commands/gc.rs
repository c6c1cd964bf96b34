//! `t2s gc`: remove objects no node's latest key points to, stale staging dirs of killed runs,
//! moved-aside corrupt objects and unused lock files (`--partial`: resume checkpoints too).

use std::path::Path;
use std::process::ExitCode;

use crate::cache::Store;
use crate::cli::GcArgs;

pub fn gc(root: &Path, args: GcArgs) -> anyhow::Result<ExitCode> {
    let store = Store::open(root)?;
    let r = store.gc(args.dry_run, args.partial)?;
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
        "gc: {verb} {} objects ({bytes} bytes), {} staging, {} partial, {} corrupt, {} lock files; kept {} objects",
        r.objects.len(),
        r.staging.len(),
        r.partial.len(),
        r.corrupt.len(),
        r.locks,
        r.kept
    );
    Ok(ExitCode::SUCCESS)
}
