//! The `slurm:` blocks of a pipeline file (`settings.slurm` for every stage, `stages.X.slurm`
//! per stage) and `settings.executor`: read from the located YAML tree, every problem reported
//! with its position. What they mean at run time (sbatch arguments) lives in `exec::slurm`.
//!
//! ```yaml
//! settings:
//!   executor: slurm            # or local (the default); `t2s run --executor` wins
//!   slurm: {partition: gpu, time: "02:00:00"}   # defaults of every stage
//! stages:
//!   train:
//!     slurm: {gpus: 1, cpus: 8, mem: 32G, time: "1-00:00:00", account: nlp,
//!             extra_args: ["--constraint=a100"]}
//! ```

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::diag::{suggest, Collector};
use super::yaml::{Loc, YKind, YNode};

/// Where nodes run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ExecutorKind {
    /// In this process (stages that need libtorch spawn the worker).
    #[default]
    Local,
    /// Each node as a Slurm batch job.
    Slurm,
}

impl ExecutorKind {
    pub const NAMES: &'static [&'static str] = &["local", "slurm"];

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "local" => Some(Self::Local),
            "slurm" => Some(Self::Slurm),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Local => "local",
            Self::Slurm => "slurm",
        }
    }
}

/// Slurm resources of one stage: `settings.slurm` with the stage's own `slurm:` fields on top.
/// Not part of the cache key: where a node runs does not change what it computes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlurmResources {
    /// `--partition`.
    pub partition: Option<String>,
    /// `--gres` (`gpus: N` is written as `gpu:N`).
    pub gres: Option<String>,
    /// `--cpus-per-task`.
    pub cpus: Option<u32>,
    /// `--mem`, e.g. `16G`.
    pub mem: Option<String>,
    /// `--time`, e.g. `02:00:00` or `1-00:00:00`.
    pub time: Option<String>,
    /// `--account`.
    pub account: Option<String>,
    /// More sbatch arguments, passed as given (after the ones above).
    pub extra_args: Vec<String>,
}

impl SlurmResources {
    /// `self` (pipeline defaults) with the fields `stage` sets replacing them; extra arguments
    /// of both, the stage's last.
    pub fn merged(&self, stage: &SlurmResources) -> SlurmResources {
        let pick = |a: &Option<String>, b: &Option<String>| b.clone().or_else(|| a.clone());
        SlurmResources {
            partition: pick(&self.partition, &stage.partition),
            gres: pick(&self.gres, &stage.gres),
            cpus: stage.cpus.or(self.cpus),
            mem: pick(&self.mem, &stage.mem),
            time: pick(&self.time, &stage.time),
            account: pick(&self.account, &stage.account),
            extra_args: self
                .extra_args
                .iter()
                .chain(&stage.extra_args)
                .cloned()
                .collect(),
        }
    }
}

/// What reading a block builds: the resources, and where `gpus` and `gres` were given.
#[derive(Default)]
struct Block {
    out: SlurmResources,
    gpus_at: Option<Loc>,
    gres_at: Option<Loc>,
}

/// A field's reader: the block so far, the field's value node and path. A wrong value is
/// reported at the node, and the field left unset.
type FieldReader = fn(&mut Block, &YNode, &str, &mut Collector);

/// The fields of a `slurm:` block, each with its reader: the one list of them.
const FIELDS: &[(&str, FieldReader)] = &[
    ("partition", |b, v, path, d| {
        if let Some(s) = name(v, path, d) {
            b.out.partition = Some(s)
        }
    }),
    ("gpus", |b, v, path, d| match count(v, 0) {
        Some(n) => {
            b.gpus_at = Some(v.loc);
            if n > 0 {
                b.out.gres = Some(format!("gpu:{n}"));
            }
        }
        None => bad(
            v,
            path,
            d,
            format!(
                "expected a number of GPUs (0 or more), found {}",
                v.describe()
            ),
            "",
        ),
    }),
    ("gres", |b, v, path, d| {
        if let Some(s) = name(v, path, d) {
            b.gres_at = Some(v.loc);
            b.out.gres = Some(s)
        }
    }),
    ("cpus", |b, v, path, d| {
        match count(v, 1).filter(|n| *n <= u32::MAX as u64) {
            Some(n) => b.out.cpus = Some(n as u32),
            None => bad(
                v,
                path,
                d,
                format!(
                    "expected a number of CPUs (1 or more), found {}",
                    v.describe()
                ),
                "",
            ),
        }
    }),
    ("mem", |b, v, path, d| {
        match text(v).filter(|s| valid_mem(s)) {
        Some(s) => b.out.mem = Some(s),
        None => bad(
            v,
            path,
            d,
            format!("expected a memory size, found {}", v.describe()),
            "write a whole number with an optional unit K, M, G or T, e.g. `16G` or `500M` (no unit: megabytes)",
        ),
    }
    }),
    ("time", |b, v, path, d| {
        match text(v).filter(|s| valid_time(s)) {
        Some(s) => b.out.time = Some(s),
        None => bad(
            v,
            path,
            d,
            format!("expected a Slurm time limit, found {}", v.describe()),
            "use a Slurm time: minutes, MM:SS, HH:MM:SS, D-HH, D-HH:MM or D-HH:MM:SS (quote it, e.g. `time: \"02:00:00\"`)",
        ),
    }
    }),
    ("account", |b, v, path, d| {
        if let Some(s) = name(v, path, d) {
            b.out.account = Some(s)
        }
    }),
    ("extra_args", |b, v, path, d| {
        b.out.extra_args = read_extra_args(v, path, d)
    }),
];

fn bad(v: &YNode, path: &str, diags: &mut Collector, msg: String, hint: &str) {
    diags.add(
        v.loc,
        path,
        msg,
        (!hint.is_empty()).then(|| hint.to_string()),
    );
}

/// A name without spaces (`partition`, `account`, `gres`).
fn name(v: &YNode, path: &str, diags: &mut Collector) -> Option<String> {
    match v.to_value() {
        Ok(Value::String(s)) if !s.is_empty() && !s.contains(char::is_whitespace) => Some(s),
        _ => {
            let msg = format!("expected a name without spaces, found {}", v.describe());
            bad(v, path, diags, msg, "");
            None
        }
    }
}

/// A whole number of at least `min`.
fn count(v: &YNode, min: u64) -> Option<u64> {
    v.to_value().ok()?.as_u64().filter(|n| *n >= min)
}

/// A string, or a number written without quotes (`mem: 500`, `time: 90`), as text.
fn text(v: &YNode) -> Option<String> {
    match v.to_value().ok()? {
        Value::String(s) => Some(s),
        Value::Number(n) if n.is_u64() => Some(n.to_string()),
        _ => None,
    }
}

/// sbatch options t2s sets itself: giving them in `extra_args` would break the job.
const OWNED_OPTIONS: &[(&str, &str)] = &[
    ("--parsable", "t2s reads the job id from it"),
    ("--output", "t2s chooses the log path"),
    ("-o", "t2s chooses the log path"),
    ("--error", "the job log holds stdout and stderr"),
    ("-e", "the job log holds stdout and stderr"),
    ("--job-name", "t2s names jobs t2s:<pipeline>:<node>"),
    ("-J", "t2s names jobs t2s:<pipeline>:<node>"),
    ("--chdir", "jobs run in the project root"),
    ("-D", "jobs run in the project root"),
    ("--dependency", "t2s orders jobs from the DAG"),
    ("-d", "t2s orders jobs from the DAG"),
    ("--array", "one job runs one node"),
    ("-a", "one job runs one node"),
    ("--wrap", "t2s writes the job script"),
    ("--wait", "t2s polls the job itself"),
    ("-W", "t2s polls the job itself"),
    (
        "--export",
        "the job needs this environment (libtorch, T2S_WORKER)",
    ),
];

/// Read `settings.executor`.
pub fn read_executor(node: &YNode, path: &str, diags: &mut Collector) -> Option<ExecutorKind> {
    let text = match node.to_value() {
        Ok(Value::String(s)) => s,
        _ => {
            diags.add(
                node.loc,
                path,
                format!("expected `local` or `slurm`, found {}", node.describe()),
                None,
            );
            return None;
        }
    };
    let kind = ExecutorKind::parse(&text);
    if kind.is_none() {
        diags.add(
            node.loc,
            path,
            format!("unknown executor `{text}`"),
            Some(suggest(&text, "executors", ExecutorKind::NAMES)),
        );
    }
    kind
}

/// Read a `slurm:` block at `path` (`settings.slurm` or `stages.X.slurm`).
pub fn read_block(node: &YNode, path: &str, diags: &mut Collector) -> SlurmResources {
    let names: Vec<&str> = FIELDS.iter().map(|(n, _)| *n).collect();
    let YKind::Map(pairs) = &node.kind else {
        diags.add(
            node.loc,
            path,
            format!(
                "expected a mapping of Slurm resources, found {}",
                node.describe()
            ),
            Some(format!("allowed fields: {}", names.join(", "))),
        );
        return SlurmResources::default();
    };
    let mut block = Block::default();
    for (k, v) in pairs {
        let Some(key) = k.scalar() else {
            diags.add(k.loc, path, "keys must be plain names", None);
            continue;
        };
        let fpath = format!("{path}.{key}");
        match FIELDS.iter().find(|(n, _)| *n == key) {
            Some((_, read)) => read(&mut block, v, &fpath, diags),
            None => diags.add(
                k.loc,
                &fpath,
                format!("unknown field `{key}`"),
                Some(suggest(key, "allowed fields", &names)),
            ),
        }
    }
    if let (Some(_), Some(at)) = (block.gpus_at, block.gres_at) {
        diags.add(
            at,
            &format!("{path}.gres"),
            "both `gpus` and `gres` are given",
            Some("give one: `gpus: N` means `gres: gpu:N`".into()),
        );
    }
    block.out
}

fn read_extra_args(v: &YNode, path: &str, diags: &mut Collector) -> Vec<String> {
    let YKind::Seq(items) = &v.kind else {
        diags.add(
            v.loc,
            path,
            format!(
                "expected a list of sbatch arguments, found {}",
                v.describe()
            ),
            Some("write e.g. `extra_args: [\"--constraint=a100\", \"--exclusive\"]`".into()),
        );
        return Vec::new();
    };
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let ipath = format!("{path}[{i}]");
        let Ok(Value::String(arg)) = item.to_value() else {
            diags.add(
                item.loc,
                &ipath,
                format!("expected a string, found {}", item.describe()),
                None,
            );
            continue;
        };
        if !arg.starts_with('-') {
            diags.add(
                item.loc,
                &ipath,
                format!("`{arg}` is not an sbatch option"),
                Some("each element is one option starting with `-`, e.g. `--qos=high`".into()),
            );
            continue;
        }
        if let Some((opt, why)) = owned_option(&arg) {
            diags.add(
                item.loc,
                &ipath,
                format!("`{opt}` cannot be given here: {why}"),
                Some("remove it".into()),
            );
            continue;
        }
        out.push(arg);
    }
    out
}

/// The t2s-owned option `arg` sets, if any (`--output=x`, `-o`, `-ox`).
fn owned_option(arg: &str) -> Option<(&'static str, &'static str)> {
    OWNED_OPTIONS.iter().copied().find(|(opt, _)| {
        if opt.starts_with("--") {
            arg == *opt || arg.starts_with(&format!("{opt}="))
        } else {
            arg.starts_with(opt)
        }
    })
}

/// Slurm's `--mem`: a whole number with an optional K/M/G/T unit.
pub fn valid_mem(s: &str) -> bool {
    let digits = s.trim_end_matches(['K', 'M', 'G', 'T', 'k', 'm', 'g', 't']);
    s.len() - digits.len() <= 1
        && !digits.is_empty()
        && digits.chars().all(|c| c.is_ascii_digit())
        && digits.parse::<u64>().is_ok_and(|n| n > 0)
}

/// Slurm's `--time` formats: `M`, `M:S`, `H:M:S`, `D-H`, `D-H:M`, `D-H:M:S`, or
/// `UNLIMITED`/`INFINITE`.
pub fn valid_time(s: &str) -> bool {
    if s == "UNLIMITED" || s == "INFINITE" {
        return true;
    }
    let num = |p: &str| !p.is_empty() && p.len() <= 6 && p.chars().all(|c| c.is_ascii_digit());
    let below60 = |p: &str| num(p) && p.parse::<u32>().is_ok_and(|n| n < 60);
    match s.split_once('-') {
        Some((days, rest)) => {
            let parts: Vec<&str> = rest.split(':').collect();
            num(days) && num(parts[0]) && parts.len() <= 3 && parts[1..].iter().all(|p| below60(p))
        }
        None => {
            let parts: Vec<&str> = s.split(':').collect();
            match parts.as_slice() {
                [m] => num(m),
                [m, sec] => num(m) && below60(sec),
                [h, m, sec] => num(h) && below60(m) && below60(sec),
                _ => false,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_sizes() {
        for ok in ["16G", "500M", "1T", "2048", "64k"] {
            assert!(valid_mem(ok), "{ok}");
        }
        for bad in ["", "G", "16GB", "1.5G", "-1G", "0", "16 G"] {
            assert!(!valid_mem(bad), "{bad}");
        }
    }

    #[test]
    fn time_limits() {
        for ok in [
            "90",
            "30:00",
            "02:00:00",
            "1-00",
            "1-12:30",
            "2-00:00:00",
            "0",
            "UNLIMITED",
        ] {
            assert!(valid_time(ok), "{ok}");
        }
        for bad in [
            "",
            "1h",
            "2:60",
            "1:2:3:4",
            "1-",
            "-1",
            "1-2:3:4:5",
            "02:00:0a",
            "1-24:61",
        ] {
            assert!(!valid_time(bad), "{bad}");
        }
    }

    #[test]
    fn stage_fields_win_and_extra_args_add_up() {
        let defaults = SlurmResources {
            partition: Some("cpu".into()),
            time: Some("10".into()),
            extra_args: vec!["--qos=low".into()],
            ..Default::default()
        };
        let stage = SlurmResources {
            partition: Some("gpu".into()),
            gres: Some("gpu:1".into()),
            extra_args: vec!["--exclusive".into()],
            ..Default::default()
        };
        let m = defaults.merged(&stage);
        assert_eq!(m.partition.as_deref(), Some("gpu"));
        assert_eq!(m.time.as_deref(), Some("10"));
        assert_eq!(m.gres.as_deref(), Some("gpu:1"));
        assert_eq!(m.extra_args, ["--qos=low", "--exclusive"]);
    }

    #[test]
    fn owned_options_are_recognised_in_every_spelling() {
        assert!(owned_option("--output=x.log").is_some());
        assert!(owned_option("-ox.log").is_some());
        assert!(owned_option("--export=NONE").is_some());
        assert!(owned_option("--exclusive").is_none());
        assert!(owned_option("--outputs").is_none());
    }
}
