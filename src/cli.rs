//! Command-line definitions (clap derive only). Doc comments are the `--help` text.

use std::path::PathBuf;

use clap::{ArgAction, Args, Parser, Subcommand};

use crate::worker::jobs::Generation;

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
    /// Compare two runs: the params, node cache keys and final metrics that differ
    Diff(DiffArgs),
    /// Remove artifacts no run uses any more, and leftovers of killed runs
    ///
    /// Retention rule: an object is kept when (1) a ref names it: the key each node of each
    /// pipeline used last, written whenever a run computes, fetches or finds it cached, so
    /// everything the latest run of each pipeline used stays; or (2) a live t2s process (a
    /// run, push or pull) has leased it; or (3) it was committed less than --grace ago.
    /// Every other object is removed, with staging dirs of killed attempts, objects moved
    /// aside as corrupt and unused lock files (--partial: resume checkpoints too).
    ///
    /// Safe while runs are active: runs lease each key before using it, and gc marks and
    /// removes under a store lock no lease is taken during; nothing a live run uses is touched.
    Gc(GcArgs),
    /// Copy a pipeline's cached node outputs to a remote cache directory (team share, NFS)
    Push(RemoteArgs),
    /// Fetch the node outputs a pipeline needs from a remote cache directory
    Pull(RemoteArgs),
    /// Check the installation: version, paths, the libtorch worker and CUDA devices
    Doctor,
    /// List the stage kinds and their params (name, type, default, meaning)
    Kinds(KindsArgs),
    /// Print a shell completion script, e.g. `t2s completions bash > ~/.local/share/bash-completion/completions/t2s`
    Completions(CompletionsArgs),
    /// Score predictions from any system (JSONL with context, gold and predicted SQL)
    Evaluate(crate::commands::evaluate::EvaluateArgs),
    /// Generate SQL for a request with a model and an optional LoRA adapter
    Infer(InferArgs),
    /// Merge a LoRA adapter into its base model and write a plain HF model directory
    Export(ExportArgs),
    /// Render the comparison report of a tracked run (Markdown + self-contained HTML)
    Report(ReportArgs),
    /// Run one node inside a Slurm job (written into job scripts by `run --executor slurm`)
    #[command(hide = true)]
    ExecNode(ExecNodeArgs),
}

#[derive(Debug, Args)]
pub struct ExecNodeArgs {
    /// The node spec written by the controller
    #[arg(long)]
    pub spec: PathBuf,
}

/// A train node of a tracked run, named instead of paths (`export`, `infer`).
#[derive(Debug, Args)]
pub struct NodeRef {
    /// A train node of a tracked run instead of paths, e.g. 'train[lora_r=8]' (its adapter on
    /// its base) or a full fine-tune such as the quickstart's 'base' (its model)
    #[arg(long)]
    pub node: Option<String>,
    /// The run --node is taken from: an id, `last` or `last~N`
    #[arg(long, default_value = "last", requires = "node")]
    pub run: String,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// The LoRA adapter directory in PEFT layout (adapter_config.json, adapter_model.safetensors)
    #[arg(long, required_unless_present = "node", conflicts_with = "node")]
    pub adapter: Option<PathBuf>,
    #[command(flatten)]
    pub from: NodeRef,
    /// The base model directory in Hugging Face layout (config.json, model.safetensors)
    /// [default: the adapter's base_model_name_or_path, when that is a local directory]
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Where to write the merged model (a new or empty directory)
    #[arg(long)]
    pub out: PathBuf,
    /// Weight dtype of the output: auto (as the base stores them), float32, bfloat16, float16
    #[arg(long, default_value = "auto", value_parser = ["auto", "float32", "bfloat16", "float16"])]
    pub dtype: String,
    /// Largest weight file; a larger model is written in shards with an index, as transformers
    /// does (e.g. 5GB, 500MB, 2GiB)
    #[arg(long, default_value = "5GB", value_parser = crate::commands::export::parse_size)]
    pub max_shard_size: u64,
}

#[derive(Debug, Args)]
pub struct InferArgs {
    /// Model directory in Hugging Face layout (config.json, model.safetensors, tokenizer.json)
    /// [with --node: the adapter's base_model_name_or_path]
    #[arg(long, required_unless_present = "node")]
    pub model: Option<PathBuf>,
    /// LoRA adapter directory in PEFT layout (adapter_config.json, adapter_model.safetensors)
    #[arg(long, conflicts_with = "node")]
    pub adapter: Option<PathBuf>,
    #[command(flatten)]
    pub from: NodeRef,
    /// The request in natural language (`@file` reads it from a file); omit for an interactive prompt
    #[arg(long)]
    pub prompt: Option<String>,
    /// The database context: CREATE TABLE / INSERT statements (`@file` reads a file)
    #[arg(long)]
    pub context: Option<String>,
    /// A JSONL file of requests, one per line (`sql_prompt`|`prompt`|`request`|`question`,
    /// optional `sql_context`|`context` and `id`): generate for all of them, in batches, into
    /// --out (rerun the same command to resume an interrupted file)
    #[arg(long, conflicts_with_all = ["prompt", "context"], requires = "out")]
    pub input: Option<PathBuf>,
    /// With --input: the JSONL file written, each input row with `prediction` (the extracted
    /// SQL), `generation` and `new_tokens` added (`t2s evaluate --predictions` reads it)
    #[arg(long, requires = "input")]
    pub out: Option<PathBuf>,
    /// With --input: requests generated together
    #[arg(long, default_value_t = crate::worker::jobs::DEFAULT_BATCH_SIZE)]
    pub batch_size: u64,
    /// Print the generated text verbatim instead of the extracted SQL
    #[arg(long)]
    pub raw: bool,
    /// Most new tokens to generate
    #[arg(long, default_value_t = Generation::default().max_new_tokens)]
    pub max_new_tokens: u64,
    /// Greedy decoding (the default)
    #[arg(long, conflicts_with = "sample")]
    pub greedy: bool,
    /// Sample instead of greedy decoding (see --temperature, --top-k, --top-p, --seed)
    #[arg(long)]
    pub sample: bool,
    #[arg(long, default_value_t = Generation::default().temperature)]
    pub temperature: f64,
    /// 0 disables top-k
    #[arg(long, default_value_t = Generation::default().top_k)]
    pub top_k: u64,
    #[arg(long, default_value_t = Generation::default().top_p)]
    pub top_p: f64,
    #[arg(long, default_value_t = Generation::default().seed)]
    pub seed: u64,
    /// auto, cpu, cuda or cuda:N
    #[arg(long, default_value = "auto")]
    pub device: String,
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// Run id (see `t2s runs`), `latest`, or `latest~N` (the N-th run before the latest)
    pub run: String,
    /// A second run to show side by side
    #[arg(long, value_name = "RUN")]
    pub compare: Option<String>,
    /// Output directory (default: experiments/<pipeline>/<run>/)
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// Which remote cache to use: `--remote`, `T2S_REMOTE`, else the pipeline's `settings.remote`.
#[derive(Debug, Args)]
pub struct RemoteChoice {
    /// A remote cache directory (a team share, NFS): nodes not cached here but there are
    /// fetched instead of computed [default: the pipeline's `settings.remote`]
    #[arg(
        long,
        env = "T2S_REMOTE",
        value_name = "DIR",
        conflicts_with = "no_remote"
    )]
    pub remote: Option<PathBuf>,

    /// Use no remote, even if the pipeline names one
    #[arg(long)]
    pub no_remote: bool,
}

#[derive(Debug, Args)]
pub struct RemoteArgs {
    #[command(flatten)]
    pub pipeline: PipelineArgs,

    #[command(flatten)]
    pub remote: RemoteChoice,

    /// Only NODE's output (node id or stage name; repeatable). Pulling a node needs none of its
    /// upstream outputs: its key is known from theirs on the remote
    #[arg(long, value_name = "NODE")]
    pub only: Vec<String>,

    /// Print what would be copied; copy nothing
    #[arg(long)]
    pub dry_run: bool,

    /// push: check the remote's copies against the blake3 of each file, and replace damaged
    /// ones (pull always checks what it fetches)
    #[arg(long)]
    pub verify: bool,
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

    /// Nodes to run at once [default: the pipeline's `settings.jobs`, else half the CPUs; with
    /// `--executor slurm`: every ready node, Slurm queues the jobs]
    #[arg(short, long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub jobs: Option<u32>,

    /// GPU-using nodes to run at once (with `--executor slurm`, Slurm allocates GPUs instead)
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    pub gpu_slots: u32,

    /// Check every cached artifact used against the blake3 of each file (not only sizes/mtimes)
    #[arg(long)]
    pub verify: bool,

    /// No progress display
    #[arg(short, long)]
    pub quiet: bool,

    /// Where nodes run: `local` (this machine) or `slurm` (one batch job per node; the project
    /// root must be on a filesystem the compute nodes share) [default: the pipeline's
    /// `settings.executor`, else local]. With `--dry-run`, slurm also prints the sbatch
    /// commands (Slurm need not be installed for that)
    #[arg(long, value_name = "EXECUTOR", value_enum)]
    pub executor: Option<crate::pipeline::ExecutorKind>,

    /// After a node fails, still run the nodes that do not depend on it (the default with
    /// `--executor slurm`)
    #[arg(long, conflicts_with = "fail_fast")]
    pub keep_going: bool,

    /// After a node fails, start nothing more (the default with `--executor local`)
    #[arg(long)]
    pub fail_fast: bool,

    #[command(flatten)]
    pub remote: RemoteChoice,

    /// Push each node's output the remote lacks as soon as the node is done (also
    /// `settings.push: true`)
    #[arg(long)]
    pub push: bool,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub pipeline: PipelineArgs,

    /// Check cached artifacts against the blake3 of each file
    #[arg(long)]
    pub verify: bool,

    /// Print the nodes as JSON
    #[arg(long, conflicts_with = "quiet")]
    pub json: bool,

    /// Print nothing; exit 1 when any node is stale (for scripts and CI, as `dvc status -q`)
    #[arg(short, long)]
    pub quiet: bool,

    #[command(flatten)]
    pub remote: RemoteChoice,
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
    /// Print the runs as JSON
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ShowArgs {
    /// Run id (from `t2s runs`), `last`, or `last~N` (the N-th run before the last)
    #[arg(default_value = "last")]
    pub run: String,
    /// Print the run as JSON (every metric point included)
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct DiffArgs {
    /// The run to compare from: an id (from `t2s runs`), `last`, or `last~N` (the N-th run
    /// before the last) [default: last~1]
    pub a: Option<String>,
    /// The run to compare with [default: last]
    pub b: Option<String>,
    /// List what is the same too
    #[arg(long)]
    pub all: bool,
    /// Print the comparison as JSON
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct KindsArgs {
    /// Only this kind (e.g. train)
    pub kind: Option<String>,

    /// Markdown tables, as docs/params.md holds them
    #[arg(long)]
    pub markdown: bool,
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// bash, zsh, fish, elvish or powershell
    pub shell: clap_complete::Shell,
}

#[derive(Debug, Args)]
pub struct GcArgs {
    /// List what would be removed, remove nothing
    #[arg(long)]
    pub dry_run: bool,

    /// Also remove resume checkpoints of interrupted nodes
    #[arg(long)]
    pub partial: bool,

    /// Keep unreferenced objects younger than this (e.g. 30m, 2h, 7d; 0 = none): a margin for
    /// processes the leases do not reach, such as runs on other machines over NFS
    #[arg(long, default_value = "0", value_name = "DURATION")]
    pub grace: String,
}
