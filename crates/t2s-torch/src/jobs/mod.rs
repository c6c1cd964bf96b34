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
use t2s::worker::Job;

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
    let job = spec.typed().map_err(anyhow::Error::msg)?;
    if job.threads() > 0 {
        tch::set_num_threads(job.threads() as i32);
    }
    match &job {
        Job::Doctor(_) => doctor::run(spec),
        Job::Generate(g) => generate::run(spec, g, ev),
        Job::Infer(i) => infer::run(spec, i, ev),
        Job::BenchTrain(b) => bench::run(spec, b, ev),
        Job::Export(e) => export::run(spec, e, ev),
        Job::Train(t) => crate::trainer::job::run(spec, t, ev),
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
