//! Command-line definitions (clap derive only). Doc comments are the `--help` text.

use std::path::PathBuf;

use clap::{ArgAction, Args, Parser, Subcommand};

/// Reproducible, cached LLM fine-tuning experiments from a YAML pipeline.
#[derive(Debug, Parser)]
#[command(name = "t2s", version, propagate_version = true)]
pub struct Cli {
    /// Project root holding `artifacts/` and `experiments/` [default: the current directory]
    #[arg(long, global = true, env = "T2S_ROOT", value_name = "DIR")]
    pub root: Option<PathBuf>,

    /// More log output: -v info, -vv debug (RUST_LOG overrides)
    #[arg(short, long, global = true, action = ArgAction::Count)]
    pub verbose: u8,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a pipeline: reuse what is cached, run what is stale
    Run(RunArgs),
    /// Show which nodes are cached and which are stale, and why
    Status(StatusArgs),
    /// Print the expanded graph of a pipeline
    Dag(DagArgs),
    /// List tracked runs, newest first
    Runs(RunsArgs),
    /// Show one run: its nodes, params and metrics
    Show(ShowArgs),
    /// Remove artifacts no node points to any more, and leftovers of killed runs
    Gc(GcArgs),
    /// Check the installation: version, paths, the libtorch worker and CUDA devices
    Doctor,
}

/// Options shared by commands that load a pipeline file.
#[derive(Debug, Args)]
pub struct PipelineArgs {
    /// The pipeline file (YAML)
    pub file: PathBuf,

    /// Override a parameter: `--set stage.param=value` (value is YAML; repeatable)
    #[arg(long = "set", value_name = "STAGE.PARAM=VALUE")]
    pub set: Vec<String>,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub pipeline: PipelineArgs,

    /// Print the plan (each node, its key, hit / run / resume and why) and run nothing
    #[arg(long)]
    pub dry_run: bool,

    /// Recompute NODE even if cached (node id or stage name; repeatable)
    #[arg(long, value_name = "NODE")]
    pub force: Vec<String>,

    /// Run only NODE; its inputs must be cached (node id or stage name; repeatable)
    #[arg(long, value_name = "NODE")]
    pub only: Vec<String>,

    /// Run NODE and what it needs, nothing downstream (node id or stage name; repeatable)
    #[arg(long, value_name = "NODE")]
    pub until: Vec<String>,

    /// Nodes to run at once [default: the pipeline's `settings.jobs`, else half the CPUs]
    #[arg(short, long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub jobs: Option<u32>,

    /// GPU-using nodes to run at once
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    pub gpu_slots: u32,

    /// Check every cached artifact used against the blake3 of each file (not only sizes/mtimes)
    #[arg(long)]
    pub verify: bool,

    /// No progress display
    #[arg(short, long)]
    pub quiet: bool,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub pipeline: PipelineArgs,

    /// Check cached artifacts against the blake3 of each file
    #[arg(long)]
    pub verify: bool,
}

#[derive(Debug, Args)]
pub struct DagArgs {
    #[command(flatten)]
    pub pipeline: PipelineArgs,

    /// Graphviz DOT output
    #[arg(long, conflicts_with = "mermaid")]
    pub dot: bool,

    /// Mermaid flowchart output
    #[arg(long)]
    pub mermaid: bool,
}

#[derive(Debug, Args)]
pub struct RunsArgs {
    /// How many runs to list
    #[arg(short = 'n', long, default_value_t = 20)]
    pub limit: usize,
}

#[derive(Debug, Args)]
pub struct ShowArgs {
    /// Run id (from `t2s runs`), or `last`
    #[arg(default_value = "last")]
    pub run: String,
}

#[derive(Debug, Args)]
pub struct GcArgs {
    /// List what would be removed, remove nothing
    #[arg(long)]
    pub dry_run: bool,

    /// Also remove resume checkpoints of interrupted nodes
    #[arg(long)]
    pub partial: bool,
}
