//! Worker jobs: read the job spec, dispatch on `job`, report events.

pub mod bench;
pub mod doctor;
pub mod export;
pub mod generate;
pub mod infer;
pub mod model;

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use serde_json::Value;
use t2s::worker::protocol::{JobSpec, WorkerEvent, PROTOCOL_VERSION};

pub use crate::events::Events;

/// Run the job named in `spec` and return its result value.
pub fn run(spec: &JobSpec, ev: &Events) -> anyhow::Result<Value> {
    if spec.protocol != PROTOCOL_VERSION {
        bail!(
            "job spec protocol {} but this worker speaks {PROTOCOL_VERSION}; rebuild t2s and t2s-worker together",
            spec.protocol
        );
    }
    crate::shim::apply_sdpa_env()?;
    // `threads`: libtorch intra-op threads for this job (default: libtorch's choice).
    if let Some(n) = spec.params.get("threads").and_then(|v| v.as_u64()) {
        if n > 0 {
            tch::set_num_threads(n as i32);
        }
    }
    match spec.job.as_str() {
        "doctor" => doctor::run(spec),
        "generate" => generate::run(spec, ev),
        "infer" => infer::run(spec, ev),
        "bench-train" => bench::run(spec, ev),
        "export" => export::run(spec, ev),
        "train" => crate::trainer::job::run(spec, ev),
        other => {
            bail!("unknown job `{other}` (this worker knows doctor, generate, infer, bench-train, export, train)")
        }
    }
}

/// Entry point of the binary: returns the process exit code.
pub fn main_entry(args: &[OsString]) -> i32 {
    let ev = Events;
    let [path] = args else {
        eprintln!("usage: t2s-worker <job-spec.json>");
        return 2;
    };
    let spec = match read_spec(Path::new(path)) {
        Ok(s) => s,
        Err(e) => {
            ev.emit(&WorkerEvent::Error {
                message: format!("{e:#}"),
            });
            return 2;
        }
    };
    let outcome = t2s::panics::catch(|| run(&spec, &ev));
    match outcome {
        Ok(Ok(value)) => {
            ev.emit(&WorkerEvent::Result { value });
            0
        }
        Ok(Err(e)) => {
            ev.emit(&WorkerEvent::Error {
                message: format!("{e:#}"),
            });
            1
        }
        Err(msg) => {
            ev.emit(&WorkerEvent::Error {
                message: format!("internal error in job `{}`: {msg}", spec.job),
            });
            1
        }
    }
}

fn read_spec(path: &Path) -> anyhow::Result<JobSpec> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read job spec {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("job spec {} is not valid", path.display()))
}

/// Typed access to `spec.params` with messages naming the parameter.
pub struct Params<'a> {
    pub job: &'a str,
    pub v: &'a Value,
}

impl<'a> Params<'a> {
    pub fn new(spec: &'a JobSpec) -> Self {
        Self {
            job: &spec.job,
            v: &spec.params,
        }
    }

    fn get(&self, k: &str) -> Option<&'a Value> {
        self.v.get(k).filter(|v| !v.is_null())
    }

    pub fn str(&self, k: &str) -> anyhow::Result<Option<&'a str>> {
        match self.get(k) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(o) => bail!("job `{}`: param `{k}` must be a string, got {o}", self.job),
        }
    }

    pub fn req_str(&self, k: &str) -> anyhow::Result<&'a str> {
        self.str(k)?
            .with_context(|| format!("job `{}`: param `{k}` is required", self.job))
    }

    pub fn u64(&self, k: &str, default: u64) -> anyhow::Result<u64> {
        match self.get(k) {
            None => Ok(default),
            Some(v) => v.as_u64().with_context(|| {
                format!(
                    "job `{}`: param `{k}` must be a non-negative integer, got {v}",
                    self.job
                )
            }),
        }
    }

    pub fn f64(&self, k: &str, default: f64) -> anyhow::Result<f64> {
        match self.get(k) {
            None => Ok(default),
            Some(v) => v.as_f64().with_context(|| {
                format!("job `{}`: param `{k}` must be a number, got {v}", self.job)
            }),
        }
    }

    pub fn bool(&self, k: &str, default: bool) -> anyhow::Result<bool> {
        match self.get(k) {
            None => Ok(default),
            Some(v) => v.as_bool().with_context(|| {
                format!(
                    "job `{}`: param `{k}` must be true or false, got {v}",
                    self.job
                )
            }),
        }
    }
}

/// The input directory of `role` (e.g. `model`), which must exist.
pub fn input_dir(spec: &JobSpec, role: &str) -> anyhow::Result<Option<PathBuf>> {
    match spec.inputs.get(role) {
        None => Ok(None),
        Some(p) if p.is_dir() => Ok(Some(p.clone())),
        Some(p) => bail!(
            "job `{}`: input `{role}` is {}, which is not a directory",
            spec.job,
            p.display()
        ),
    }
}

/// Peak resident memory of this process (Linux `VmHWM`), MiB.
pub fn peak_rss_mb() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let l = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = l.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}
