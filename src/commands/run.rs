//! `t2s run FILE`: plan (`--dry-run`) or run a pipeline, tracked in the DB, on the local or
//! the Slurm executor.

use std::path::Path;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use crate::cache::{key::short, Store};
use crate::cli::RunArgs;
use crate::exec::plan::{self, Decision, PlanOptions};
use crate::exec::slurm::{self, SlurmExecutor};
use crate::exec::{progress, scheduler, Executor, LocalExecutor, RunOptions};
use crate::pipeline::{ExecutorKind, Pipeline};
use crate::runs::{RunInfo, RunStatus, Tracker};

/// Set by Ctrl-C / SIGTERM; stages and the scheduler watch it.
static CANCEL: AtomicBool = AtomicBool::new(false);

pub fn run(root: &Path, args: RunArgs) -> anyhow::Result<ExitCode> {
    let p = super::load_pipeline(&args.pipeline.file, &args.pipeline.set)?;
    let remote = super::remote::choose(&p, &args.remote)?;
    let push = args.push || p.settings.push;
    if push && remote.is_none() {
        return Err(super::UsageError(
            "--push (or settings.push) needs a remote: pass --remote DIR, set T2S_REMOTE, or \
             add `remote: DIR` to the pipeline's settings"
                .to_string(),
        )
        .into());
    }
    let opts = PlanOptions {
        force: args.force.clone(),
        only: args.only.clone(),
        until: args.until.clone(),
        verify: args.verify,
        remote: remote.clone(),
    };
    // (A search checks these against its last pipeline, which holds every trial.)
    let (selection, force) = match &p.search {
        None => (
            plan::select(&p, &opts)?,
            plan::matching(&p, &opts.force, "--force")?,
        ),
        Some(_) => Default::default(),
    };
    // Leased: `gc` leaves every object this run looks up or commits alone while it lives.
    let store = Store::open(root)?.leased()?;
    let executor_kind = args.executor.or(p.settings.executor).unwrap_or_default();
    let slurm = executor_kind == ExecutorKind::Slurm;
    if args.dry_run {
        let p = super::search_run::replay(&store, p, &args.pipeline.set)?;
        print_plan(root, &p, &store, &opts, slurm)?;
        return Ok(ExitCode::SUCCESS);
    }
    if slurm {
        // Before anything runs or is recorded: a missing Slurm is a setup problem, said at once.
        slurm::preflight().map_err(|e| super::UsageError(e.to_string()))?;
    }
    let t0 = Instant::now();
    let tracker = Tracker::open(root)?;
    install_cancel_handler();
    if slurm {
        for line in slurm::cancel_orphans(&tracker) {
            progress::say(format_args!("t2s: {line}"));
        }
    }
    let base = RunOptions {
        remote: remote.clone(),
        push,
        ..run_options(&args, &p, slurm)
    };
    let run_id = tracker.start_run(&RunInfo {
        pipeline: p.name.clone(),
        file: p.file.display().to_string(),
        file_digest: p.file_digest.clone(),
        git_rev: git_rev(&plan::pipeline_dir(&p)),
        argv: std::env::args().collect(),
    })?;
    let executor: Box<dyn Executor> = if slurm {
        Box::new(SlurmExecutor::new(root, run_id, &p.name)?)
    } else {
        Box::new(LocalExecutor::new())
    };
    let display = progress::for_stderr(args.quiet);
    let session = Session {
        store: &store,
        tracker: &tracker,
        run_id,
        executor: executor.as_ref(),
        display: display.as_ref(),
        base,
        overrides: args.pipeline.set.clone(),
    };
    let (p, outcome) = if p.search.is_none() {
        let outcome = session.run(&p, selection, force);
        (p, outcome)
    } else {
        let r = super::search_run::run(&session, p, &opts);
        (r.pipeline, r.outcome)
    };
    let pushed_to = remote.as_ref().filter(|_| push);
    Ok(conclude(
        root, &tracker, &p, run_id, &outcome, t0, pushed_to,
    ))
}

/// After the run: record its end, print the summary and node errors, publish the report, and
/// choose the exit status (a failed push to `pushed_to` fails it). A DB that refuses the run's end must not hide what happened: the
/// table and the node errors are still printed, and the exit status says the run was not
/// recorded.
fn conclude(
    root: &Path,
    tracker: &Tracker,
    p: &Pipeline,
    run_id: i64,
    outcome: &scheduler::RunOutcome,
    t0: Instant,
    pushed_to: Option<&crate::cache::Remote>,
) -> ExitCode {
    let unrecorded = tracker
        .finish_run(run_id, outcome.status, run_error(outcome).as_deref())
        .err();
    print_summary(run_id, outcome, t0);
    if outcome.status == RunStatus::Succeeded && p.nodes.iter().any(|n| n.kind == "report") {
        publish_report(root, tracker, p, run_id, outcome);
    }
    for n in failed_nodes(outcome) {
        if n.detail.contains(&format!("`{}`", n.node)) {
            progress::say(format_args!("error: {}", n.detail));
        } else {
            progress::say(format_args!("error: node {} failed: {}", n.node, n.detail));
        }
    }
    let push_failed = pushed_to.is_some_and(|remote| !report_pushes(remote, outcome));
    if let Some(e) = unrecorded {
        progress::say(format_args!(
            "error: the tracking DB did not record the end of run {run_id}: {e}"
        ));
        return ExitCode::FAILURE;
    }
    match outcome.status {
        RunStatus::Succeeded if push_failed => ExitCode::FAILURE,
        RunStatus::Succeeded => ExitCode::SUCCESS,
        RunStatus::Interrupted => {
            progress::say(format_args!(
                "t2s: run {run_id} interrupted; nothing partial was committed, rerun to continue"
            ));
            ExitCode::FAILURE
        }
        _ => ExitCode::FAILURE,
    }
}

/// What every pass of one run shares (a search runs its pipeline in rounds, one run).
pub struct Session<'a> {
    pub store: &'a Store,
    pub tracker: &'a Tracker,
    pub run_id: i64,
    pub executor: &'a dyn Executor,
    pub display: &'a dyn progress::Progress,
    /// Options of every pass but which nodes take part and which are forced.
    pub base: RunOptions,
    /// `--set` arguments.
    pub overrides: Vec<String>,
}

impl Session<'_> {
    /// Run `p` with `selection` and the node indices in `force`.
    pub fn run(
        &self,
        p: &Pipeline,
        selection: Vec<plan::Selection>,
        force: std::collections::BTreeSet<usize>,
    ) -> scheduler::RunOutcome {
        let opts = RunOptions {
            selection,
            force,
            ..self.base.clone()
        };
        scheduler::run(
            p,
            self.store,
            Some(self.tracker),
            self.run_id,
            self.executor,
            &opts,
            &CANCEL,
            self.display,
        )
    }
}

fn failed_nodes(outcome: &scheduler::RunOutcome) -> impl Iterator<Item = &scheduler::NodeReport> {
    outcome
        .nodes
        .iter()
        .filter(|n| n.status == crate::runs::NodeStatus::Failed)
}

/// The run's error as the tracking DB records it.
fn run_error(outcome: &scheduler::RunOutcome) -> Option<String> {
    match outcome.status {
        RunStatus::Interrupted => Some("interrupted".to_string()),
        RunStatus::Failed => Some(
            failed_nodes(outcome)
                .map(|n| format!("{}: {}", n.node, n.detail))
                .collect::<Vec<_>>()
                .join("\n"),
        ),
        _ => None,
    }
}

/// `--dry-run`: each node's decision, key and reason (and, on Slurm, its sbatch command).
fn print_plan(
    root: &Path,
    p: &Pipeline,
    store: &Store,
    opts: &PlanOptions,
    slurm: bool,
) -> anyhow::Result<()> {
    let planned = plan::plan(p, store, opts)?;
    let rows: Vec<Vec<String>> = planned
        .iter()
        .filter(|n| n.decision != Decision::Excluded)
        .map(|n| {
            let what = match n.decision {
                Decision::Hit => "hit",
                Decision::Fetch => "fetch",
                Decision::Run => "run",
                Decision::Resume => "resume",
                Decision::Missing => "missing",
                Decision::Excluded => "-",
            };
            vec![
                n.node.clone(),
                what.to_string(),
                n.key.as_deref().map(short).unwrap_or("-").to_string(),
                if n.decision == Decision::Hit {
                    "cached".to_string()
                } else {
                    n.reason.clone()
                },
            ]
        })
        .collect();
    print!("{}", super::table(&rows));
    if slurm {
        print_sbatch_commands(root, p, &planned);
    }
    Ok(())
}

/// Ctrl-C or SIGTERM: stop starting nodes, let stages stop cleanly, commit nothing partial.
/// Setting the handler fails only if one is already set (tests calling `run` twice).
/// No `eprintln!` here: with stderr unwritable it would panic the handler thread, and every
/// later Ctrl-C or SIGTERM would go unheard.
fn install_cancel_handler() {
    let _ = ctrlc::set_handler(|| {
        if CANCEL.swap(true, Ordering::SeqCst) {
            // Second Ctrl-C: quit now. Safe: only staging dirs (never promoted) are left.
            progress::say(format_args!(
                "t2s: quitting now; nothing partial is committed"
            ));
            std::process::exit(130);
        }
        progress::say(format_args!(
            "t2s: interrupting: waiting for running nodes to stop (Ctrl-C again to quit now)"
        ));
    });
}

/// Parallelism and failure handling. On Slurm, `--jobs` bounds the jobs submitted at once; by
/// default every ready node is submitted and Slurm queues them (`settings.jobs` sizes the
/// local machine, not a cluster), and GPUs are Slurm's to allocate (`slurm.gpus`), not device
/// slots here.
fn run_options(args: &RunArgs, p: &Pipeline, slurm: bool) -> RunOptions {
    let jobs = match (args.jobs, slurm) {
        (Some(j), _) => j as usize,
        (None, true) => p.nodes.len().max(1),
        (None, false) => p.settings.jobs.unwrap_or_else(default_jobs),
    };
    RunOptions {
        jobs,
        gpu_slots: if slurm { jobs } else { args.gpu_slots as usize },
        selection: Vec::new(),
        force: Default::default(),
        verify: args.verify,
        remote: None,
        push: false,
        keep_going: args.keep_going || (slurm && !args.fail_fast),
    }
}

/// The table of nodes and the run's one-line summary.
fn print_summary(run_id: i64, outcome: &scheduler::RunOutcome, t0: Instant) {
    let rows: Vec<Vec<String>> = outcome
        .nodes
        .iter()
        .map(|n| {
            vec![
                n.status.to_string(),
                n.node.clone(),
                n.key.as_deref().map(short).unwrap_or("-").to_string(),
                progress::human_duration(n.duration),
                n.detail.lines().next().unwrap_or_default().to_string(),
            ]
        })
        .collect();
    print!("{}", super::table(&rows));
    let count = |s: NodeStatus| outcome.nodes.iter().filter(|n| n.status == s).count();
    use crate::runs::NodeStatus;
    // An interrupted node did not fail: it says so (and resumes on the next run).
    let interrupted = match count(NodeStatus::Interrupted) {
        0 => String::new(),
        n => format!(", {n} interrupted"),
    };
    println!(
        "run {run_id} {}: {} ran, {} resumed, {} cached, {} failed{interrupted}, {} skipped in {}",
        outcome.status,
        count(NodeStatus::Ran),
        count(NodeStatus::Resumed),
        count(NodeStatus::Cached),
        count(NodeStatus::Failed),
        count(NodeStatus::Skipped),
        progress::human_duration(t0.elapsed())
    );
}

/// Render the run's report when something in it is new; else say where the standing one is.
fn publish_report(
    root: &Path,
    tracker: &Tracker,
    p: &Pipeline,
    run_id: i64,
    outcome: &scheduler::RunOutcome,
) {
    use crate::runs::NodeStatus;
    // Fetched nodes count as new here: this project has no report of them yet.
    let fresh = outcome
        .nodes
        .iter()
        .any(|n| n.status == NodeStatus::Ran || n.status == NodeStatus::Resumed || n.fetched);
    if fresh {
        match super::report::publish(root, tracker, run_id) {
            Ok(Some(path)) => println!("report: {}", path.display()),
            Ok(None) => {}
            Err(e) => progress::say(format_args!(
                "warning: could not render the run's report: {e:#}"
            )),
        }
        return;
    }
    // Nothing ran: the artifacts are those of an earlier run, whose report stands.
    let latest = super::report::default_dir(
        root,
        &crate::report::RunInfo {
            id: run_id,
            pipeline: p.name.clone(),
            started: String::new(),
            ended: None,
            status: String::new(),
            host: String::new(),
            t2s_version: String::new(),
            facts: Default::default(),
        },
    );
    println!(
        "report: unchanged; render it for this run with `t2s report {run_id}` (output: {})",
        latest.display()
    );
}

/// What pushing each node's output did; false when a push failed.
fn report_pushes(remote: &crate::cache::Remote, outcome: &scheduler::RunOutcome) -> bool {
    let mut summary = super::remote::PushSummary::default();
    for n in &outcome.nodes {
        if let (Some(pushed), Some(key)) = (&n.pushed, &n.key) {
            summary.add(&n.node, key, pushed.clone(), false);
        }
    }
    for row in summary.rows.iter().filter(|r| r[2].starts_with("failed")) {
        progress::say(format_args!(
            "error: push of {} ({}) {}",
            row[0], row[1], row[2]
        ));
    }
    println!(
        "push to {}: {}",
        remote.root().display(),
        summary.line(false)
    );
    summary.failed == 0
}

/// `--dry-run --executor slurm`: the sbatch command of every node that would run. Paths hold
/// `<run>` for the run id, which exists only once the run starts.
fn print_sbatch_commands(root: &Path, p: &Pipeline, planned: &[plan::Planned]) {
    let run_dir = slurm::sbatch::run_dir(root, "<run>");
    let lines: Vec<String> = p
        .nodes
        .iter()
        .zip(planned)
        .filter(|(_, n)| matches!(n.decision, Decision::Run | Decision::Resume))
        .map(|(node, _)| {
            let files = slurm::sbatch::JobFiles::new(&run_dir, &node.id);
            slurm::sbatch::command_line(&slurm::sbatch::args(&p.name, node, &files, root))
        })
        .collect();
    if lines.is_empty() {
        println!("\nslurm: nothing to submit (every node is cached)");
        return;
    }
    println!(
        "\nslurm: the run would submit these jobs, each once its inputs are committed \
         (nothing was submitted; each job script runs `t2s exec-node` on its node):"
    );
    for l in lines {
        println!("{l}");
    }
}

fn default_jobs() -> usize {
    std::thread::available_parallelism()
        .map(|n| (n.get() / 2).max(1))
        .unwrap_or(1)
}

/// The commit checked out in the repository containing `dir`, read from `.git` directly
/// (spawning `git` would cost more than a whole cached run).
fn git_rev(dir: &Path) -> Option<String> {
    let dir = std::fs::canonicalize(dir).ok()?;
    let git = dir
        .ancestors()
        .map(|d| d.join(".git"))
        .find(|g| g.exists())?;
    let git = if git.is_file() {
        // A worktree: `.git` is a file `gitdir: <path>`.
        let text = std::fs::read_to_string(&git).ok()?;
        let p = text.strip_prefix("gitdir:")?.trim();
        git.parent()?.join(p)
    } else {
        git
    };
    let head = std::fs::read_to_string(git.join("HEAD")).ok()?;
    let head = head.trim();
    let Some(reference) = head.strip_prefix("ref:") else {
        return Some(head.to_string());
    };
    let reference = reference.trim();
    let common = std::fs::read_to_string(git.join("commondir"))
        .ok()
        .map(|c| git.join(c.trim()))
        .unwrap_or_else(|| git.clone());
    for base in [&git, &common] {
        if let Ok(rev) = std::fs::read_to_string(base.join(reference)) {
            return Some(rev.trim().to_string());
        }
        if let Ok(packed) = std::fs::read_to_string(base.join("packed-refs")) {
            if let Some(line) = packed.lines().find(|l| l.ends_with(reference)) {
                return line.split_whitespace().next().map(str::to_string);
            }
        }
    }
    None
}
