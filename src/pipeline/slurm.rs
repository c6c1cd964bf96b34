//! The `slurm:` blocks of a pipeline file (`settings.slurm` for every stage, `stages.X.slurm`
//! per stage) and `settings.executor`: typed, and read by the located deserializer, so every
//! problem is reported with its position and field. What they mean at run time (sbatch arguments) lives in `exec::slurm`.
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

use super::diag::Collector;
use super::located::{checked, hinted, Sp};
use super::yaml::describe_value;

/// Where nodes run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ExecutorKind {
    /// In this process (stages that need libtorch spawn the worker).
    #[default]
    Local,
    /// Each node as a Slurm batch job.
    Slurm,
}

impl ExecutorKind {
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

/// A `slurm:` block as written: the one list of its fields, each with the type that checks
/// it.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping of Slurm resources")]
pub struct SlurmBlock {
    partition: Option<Name>,
    /// `gpus: N` is `gres: gpu:N` (0: none).
    gpus: Option<u64>,
    gres: Option<Sp<Name>>,
    cpus: Option<Cpus>,
    mem: Option<Mem>,
    time: Option<Time>,
    account: Option<Name>,
    #[serde(default)]
    extra_args: Vec<SbatchArg>,
}

impl SlurmBlock {
    /// The resources the block at `path` asks for; `gpus` with `gres` is a problem.
    pub fn resources(self, path: &str, diags: &mut Collector) -> SlurmResources {
        let gres = match (self.gpus, self.gres) {
            (Some(_), Some(g)) => {
                diags.add(
                    g.loc,
                    &format!("{path}.gres"),
                    "both `gpus` and `gres` are given",
                    Some("give one: `gpus: N` means `gres: gpu:N`".into()),
                );
                None
            }
            (Some(n), None) => (n > 0).then(|| format!("gpu:{n}")),
            (None, g) => g.map(|g| g.v.0),
        };
        SlurmResources {
            partition: self.partition.map(|n| n.0),
            gres,
            cpus: self.cpus.map(|c| c.0),
            mem: self.mem.map(|m| m.0),
            time: self.time.map(|t| t.0),
            account: self.account.map(|n| n.0),
            extra_args: self.extra_args.into_iter().map(|a| a.0).collect(),
        }
    }
}

checked!(
    /// A name without spaces (`partition`, `account`, `gres`).
    Name(String),
    |v| match v {
        Value::String(s) if !s.is_empty() && !s.contains(char::is_whitespace) => Ok(s.clone()),
        _ => Err(format!("expected a name without spaces, found {}", describe_value(v))),
    }
);

checked!(
    /// `--cpus-per-task`: 1 or more.
    Cpus(u32),
    |v| {
        v.as_u64()
            .filter(|n| *n >= 1)
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(|| format!("expected a number of CPUs (1 or more), found {}", describe_value(v)))
    }
);

checked!(
    /// `--mem`, e.g. `16G`.
    Mem(String),
    |v| text(v).filter(|s| valid_mem(s)).ok_or_else(|| hinted(
        format!("expected a memory size, found {}", describe_value(v)),
        "write a whole number with an optional unit K, M, G or T, e.g. `16G` or `500M` (no unit: megabytes)",
    ))
);

checked!(
    /// `--time`, e.g. `02:00:00` or `1-00:00:00`.
    Time(String),
    |v| text(v).filter(|s| valid_time(s)).ok_or_else(|| hinted(
        format!("expected a Slurm time limit, found {}", describe_value(v)),
        "use a Slurm time: minutes, MM:SS, HH:MM:SS, D-HH, D-HH:MM or D-HH:MM:SS (quote it, e.g. `time: \"02:00:00\"`)",
    ))
);

checked!(
    /// One more sbatch option, not one t2s sets itself.
    SbatchArg(String),
    |v| match v {
        Value::String(arg) if !arg.starts_with('-') => Err(hinted(
            format!("`{arg}` is not an sbatch option"),
            "each element is one option starting with `-`, e.g. `--qos=high`",
        )),
        Value::String(arg) => match owned_option(arg) {
            Some((opt, why)) => Err(hinted(format!("`{opt}` cannot be given here: {why}"), "remove it")),
            None => Ok(arg.clone()),
        },
        _ => Err(format!("expected a string, found {}", describe_value(v))),
    }
);

/// A string, or a number written without quotes (`mem: 500`, `time: 90`), as text.
fn text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
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
