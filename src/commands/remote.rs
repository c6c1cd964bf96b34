//! `t2s push FILE` and `t2s pull FILE`: a pipeline's node outputs to and from a remote cache
//! directory (see `cache::remote`), the summary of pushes `run --push` prints, and [`choose`]:
//! which remote a command uses (`--remote` / `T2S_REMOTE`, else the pipeline's `settings.remote`).

use std::path::Path;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;

use crate::cache::{key::short, Lookup, Pushed, Remote, Store};
use crate::cli::{RemoteArgs, RemoteChoice};
use crate::exec::plan::{self, Decision, PlanOptions};
use crate::pipeline::Pipeline;

use super::UsageError;

/// The remote a command uses, opened (it must be an existing directory), or `None`.
pub fn choose(p: &Pipeline, choice: &RemoteChoice) -> anyhow::Result<Option<Remote>> {
    if choice.no_remote {
        return Ok(None);
    }
    let given = choice.remote.as_ref().filter(|d| !d.as_os_str().is_empty());
    let (dir, from) = match (given, &p.settings.remote) {
        (Some(dir), _) => (dir.clone(), "--remote / T2S_REMOTE".to_string()),
        (None, Some(dir)) => (
            p.dir().join(dir),
            format!("settings.remote in {}", p.file.display()),
        ),
        (None, None) => return Ok(None),
    };
    Remote::open(&dir).map(Some).map_err(|e| {
        UsageError(format!(
            "{from}: {e}; create the directory (or mount the share), or pass --no-remote"
        ))
        .into()
    })
}

fn required(p: &Pipeline, choice: &RemoteChoice) -> anyhow::Result<Remote> {
    choose(p, choice)?.ok_or_else(|| {
        UsageError(
            "no remote: pass --remote DIR, set T2S_REMOTE, or add `remote: DIR` to the \
             pipeline's settings"
                .to_string(),
        )
        .into()
    })
}

/// Sizes as people read them (powers of 1024).
fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

/// What a push of several nodes did.
#[derive(Debug, Default)]
pub struct PushSummary {
    pub rows: Vec<Vec<String>>,
    pub pushed: usize,
    pub bytes: u64,
    pub present: usize,
    pub failed: usize,
}

impl PushSummary {
    /// Count one node's push and add its row.
    pub fn add(&mut self, node: &str, key: &str, outcome: Result<Pushed, String>, dry_run: bool) {
        let what = match outcome {
            Ok(Pushed::Uploaded { files, bytes }) => {
                self.pushed += 1;
                self.bytes += bytes;
                let verb = if dry_run { "would push" } else { "pushed" };
                format!("{verb} {files} files, {}", human_bytes(bytes))
            }
            Ok(Pushed::Present) => {
                self.present += 1;
                "already on the remote".to_string()
            }
            Err(e) => {
                self.failed += 1;
                format!("failed: {e}")
            }
        };
        self.rows
            .push(vec![node.to_string(), short(key).to_string(), what]);
    }

    pub fn line(&self, dry_run: bool) -> String {
        let verb = if dry_run { "would push" } else { "pushed" };
        format!(
            "{verb} {} objects ({}), {} already on the remote, {} failed",
            self.pushed,
            human_bytes(self.bytes),
            self.present,
            self.failed
        )
    }
}

/// Push the objects of `nodes` (node id, key) that the remote lacks (with `verify`: or holds
/// damaged).
fn push_nodes(
    store: &Store,
    remote: &Remote,
    nodes: &[(String, String)],
    dry_run: bool,
    verify: bool,
) -> PushSummary {
    let mut s = PushSummary::default();
    for (node, key) in nodes {
        let outcome = if dry_run {
            match remote.present(key, verify) {
                Ok(true) => Ok(Pushed::Present),
                Err(e) => Err(e.to_string()),
                Ok(false) => match store.lookup(key, false) {
                    Ok(Lookup::Hit(m)) => Ok(Pushed::Uploaded {
                        files: m.files.len(),
                        bytes: m.total_size(),
                    }),
                    Ok(_) => Err("not in the local store".to_string()),
                    Err(e) => Err(e.to_string()),
                },
            }
        } else {
            remote.push(store, key, verify).map_err(|e| e.to_string())
        };
        s.add(node, key, outcome, dry_run);
    }
    s
}

/// The planned nodes `--only` names (all of them without `--only`).
fn selected(
    p: &Pipeline,
    planned: Vec<plan::Planned>,
    only: &[String],
) -> anyhow::Result<Vec<plan::Planned>> {
    if only.is_empty() {
        return Ok(planned);
    }
    let keep = plan::matching(p, only, "--only")?;
    Ok(planned
        .into_iter()
        .enumerate()
        .filter(|(i, _)| keep.contains(i))
        .map(|(_, n)| n)
        .collect())
}

/// `t2s push FILE`: every node of the pipeline cached here goes to the remote.
pub fn push(root: &Path, args: RemoteArgs) -> anyhow::Result<ExitCode> {
    let p = super::load_pipeline(&args.pipeline.file, &args.pipeline.set)?;
    let remote = required(&p, &args.remote)?;
    // Leased: `gc` leaves the objects this command reads or installs alone meanwhile.
    let store = Store::open(root)?.leased()?;
    let planned = selected(
        &p,
        plan::plan(&p, &store, &PlanOptions::default())?,
        &args.only,
    )?;
    let cached: Vec<(String, String)> = planned
        .iter()
        .filter(|n| n.decision == Decision::Hit)
        .filter_map(|n| Some((n.node.clone(), n.key.clone()?)))
        .collect();
    let summary = push_nodes(&store, &remote, &cached, args.dry_run, args.verify);
    let mut rows = summary.rows.clone();
    let not_cached: Vec<Vec<String>> = planned
        .iter()
        .filter(|n| n.decision != Decision::Hit)
        .map(|n| {
            vec![
                n.node.clone(),
                n.key.as_deref().map(short).unwrap_or("-").to_string(),
                format!("not cached here ({})", n.reason),
            ]
        })
        .collect();
    rows.extend(not_cached.iter().cloned());
    print!("{}", super::table(&rows));
    println!(
        "push to {}: {}; {} nodes not cached here",
        remote.root().display(),
        summary.line(args.dry_run),
        not_cached.len()
    );
    Ok(if summary.failed > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// `t2s pull FILE`: every node not cached here whose output the remote has is fetched, in
/// pipeline order (a fetched output gives its dependents their keys).
pub fn pull(root: &Path, args: RemoteArgs) -> anyhow::Result<ExitCode> {
    let p = super::load_pipeline(&args.pipeline.file, &args.pipeline.set)?;
    let remote = required(&p, &args.remote)?;
    // Leased: `gc` leaves the objects this command reads or installs alone meanwhile.
    let store = Store::open(root)?.leased()?;
    let opts = PlanOptions {
        remote: Some(remote.clone()),
        ..Default::default()
    };
    let planned = selected(&p, plan::plan(&p, &store, &opts)?, &args.only)?;
    let never = AtomicBool::new(false);
    let (mut fetched, mut bytes, mut cached, mut absent, mut failed) = (0, 0u64, 0, 0, 0);
    let mut rows = Vec::new();
    for n in &planned {
        let key = n.key.as_deref();
        let what = match (&n.decision, key) {
            (Decision::Hit, _) => {
                cached += 1;
                "cached here".to_string()
            }
            (Decision::Fetch, Some(_)) if args.dry_run => {
                fetched += 1;
                "would fetch".to_string()
            }
            (Decision::Fetch, Some(key)) => {
                let fetch = store
                    .lock(key, &never, || {
                        eprintln!("t2s: {}: waiting: another t2s run holds it", n.node)
                    })
                    .map_err(|e| e.to_string())
                    .and_then(|lock| match store.lookup(key, false) {
                        Ok(Lookup::Hit(m)) => Ok(Some((m, false))),
                        _ => match remote.manifest(key) {
                            Ok(Some(m)) => remote
                                .fetch(&store, m, &p.name, &n.node, &lock)
                                .map(|m| Some((m, true)))
                                .map_err(|e| e.to_string()),
                            Ok(None) => Ok(None),
                            Err(e) => Err(e.to_string()),
                        },
                    });
                match fetch {
                    Ok(Some((m, true))) => {
                        fetched += 1;
                        bytes += m.total_size();
                        format!(
                            "fetched {} files, {}",
                            m.files.len(),
                            human_bytes(m.total_size())
                        )
                    }
                    Ok(Some((_, false))) => {
                        cached += 1;
                        "cached here (by a concurrent run)".to_string()
                    }
                    Ok(None) => {
                        absent += 1;
                        "gone from the remote".to_string()
                    }
                    Err(e) => {
                        failed += 1;
                        format!("failed: {e}")
                    }
                }
            }
            (Decision::Excluded, _) => continue,
            _ => {
                absent += 1;
                format!("not on the remote ({})", n.reason)
            }
        };
        rows.push(vec![
            n.node.clone(),
            key.map(short).unwrap_or("-").to_string(),
            what,
        ]);
    }
    print!("{}", super::table(&rows));
    let verb = if args.dry_run {
        "would fetch"
    } else {
        "fetched"
    };
    println!(
        "pull from {}: {verb} {fetched} objects ({}), {cached} cached here, {absent} not on the \
         remote (`t2s run` computes them), {failed} failed",
        remote.root().display(),
        human_bytes(bytes)
    );
    Ok(if failed > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

#[cfg(test)]
mod tests {
    use super::human_bytes;

    #[test]
    fn sizes_read_in_powers_of_1024() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(5 << 30), "5.0 GiB");
    }
}
