//! One file per verb. Each command returns an exit code or an error; `dispatch` prints errors
//! and maps them: usage and configuration errors (invalid pipeline, unknown node name) exit 2,
//! everything else 1.

pub mod dag;
pub mod diff;
pub mod doctor;
pub mod evaluate;
pub mod exec_node;
pub mod export;
pub mod gc;
pub mod infer;
pub mod infer_batch;
pub mod kinds;
pub mod lookup;
pub mod remote;
pub mod report;
pub mod run;
pub mod runs;
pub mod search_run;
pub mod show;
pub mod status;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::cli::{Cli, Command};
use crate::pipeline::{Diagnostics, Pipeline};

/// A usage or configuration error: printed as is, exit code 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// Run the parsed command line.
pub fn dispatch(cli: Cli) -> ExitCode {
    let root = match project_root(cli.root.as_deref()) {
        Ok(r) => r,
        Err(e) => return report(e),
    };
    let result = match cli.command {
        Command::Run(args) => run::run(&root, args),
        Command::Status(args) => status::status(&root, args),
        Command::Dag(args) => dag::dag(&root, args),
        Command::Runs(args) => runs::runs(&root, args),
        Command::Show(args) => show::show(&root, args),
        Command::Diff(args) => diff::diff(&root, args),
        Command::Gc(args) => gc::gc(&root, args),
        Command::Push(args) => remote::push(&root, args),
        Command::Pull(args) => remote::pull(&root, args),
        Command::Doctor => doctor::doctor(&root),
        Command::Kinds(args) => kinds::kinds(args),
        Command::Completions(args) => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(args.shell, &mut cmd, "t2s", &mut std::io::stdout());
            Ok(ExitCode::SUCCESS)
        }
        Command::Evaluate(args) => {
            evaluate::run(&args).map(|c| ExitCode::from(c.clamp(0, 255) as u8))
        }
        Command::Infer(args) => infer::infer(&root, args),
        Command::Export(args) => export::export(&root, args),
        Command::Report(args) => report::report(&root, args),
        Command::ExecNode(args) => exec_node::exec_node(&args),
    };
    match result {
        Ok(code) => code,
        Err(e) => report(e),
    }
}

fn report(e: anyhow::Error) -> ExitCode {
    if let Some(d) = e.downcast_ref::<Diagnostics>() {
        eprint!("{d}");
        if !d.to_string().ends_with('\n') {
            eprintln!();
        }
        return ExitCode::from(2);
    }
    if e.is::<UsageError>() || e.is::<crate::exec::plan::UnknownNode>() {
        eprintln!("error: {e}");
        return ExitCode::from(2);
    }
    eprintln!("error: {e:#}");
    ExitCode::from(1)
}

/// `--root` / `T2S_ROOT`, else the current directory; made absolute so stage paths stay valid.
fn project_root(given: Option<&Path>) -> anyhow::Result<PathBuf> {
    let cwd = std::env::current_dir()?;
    let root = match given {
        Some(p) if p.is_absolute() => p.to_path_buf(),
        Some(p) => cwd.join(p),
        None => cwd,
    };
    if !root.is_dir() {
        return Err(UsageError(format!(
            "project root {} is not a directory; create it or fix --root / T2S_ROOT",
            root.display()
        ))
        .into());
    }
    Ok(root)
}

/// Load and validate a pipeline file; diagnostics become an exit-2 error.
pub fn load_pipeline(file: &Path, overrides: &[String]) -> anyhow::Result<Pipeline> {
    Ok(crate::pipeline::load(file, overrides)?)
}

/// Left-aligned columns, two spaces apart; the last column is not padded.
pub fn table(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let mut width = vec![0; cols];
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            width[i] = width[i].max(c.chars().count());
        }
    }
    let mut out = String::new();
    for r in rows {
        let mut line = String::new();
        for (i, c) in r.iter().enumerate() {
            if i + 1 == r.len() {
                line.push_str(c);
            } else {
                line.push_str(c);
                line.push_str(&" ".repeat(width[i] - c.chars().count() + 2));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// A metric value for a table: integers without a fraction, others to 6 decimals without
/// trailing zeros.
pub fn format_value(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.0}")
    } else {
        format!("{v:.6}")
            .trim_end_matches('0')
            .trim_end_matches('.')
            .to_string()
    }
}

/// A usage error unless `dir` is a directory holding each of `files` (`flag` names the option).
pub fn check_dir(dir: &Path, flag: &str, files: &[&str]) -> anyhow::Result<()> {
    if !dir.is_dir() {
        return Err(UsageError(format!("{flag} {}: no such directory", dir.display())).into());
    }
    for f in files {
        if !dir.join(f).is_file() {
            return Err(UsageError(format!(
                "{flag} {}: missing {f} (expected a Hugging Face layout directory)",
                dir.display()
            ))
            .into());
        }
    }
    Ok(())
}
