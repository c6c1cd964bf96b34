//! Spawning the worker binary and reading its event stream.
//!
//! The worker dies with the thread that spawned it (`child::die_with_parent`): after a `kill -9`
//! of t2s it must not compete with a rerun's worker in the same resume area. Its job spec is
//! an anonymous file (no name on disk, gone with the last descriptor) handed over as
//! `/dev/fd/N`, so a killed t2s leaves no spec file behind. Lines of its output are bounded
//! (`child::MAX_LINE_BYTES`).

use std::collections::VecDeque;
use std::io::{Seek, Write};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::protocol::{JobSpec, WorkerEvent};

/// Why a worker job did not produce a result.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error("cannot find the worker binary `t2s-worker` (looked at {looked}); build it with `cargo build --release --workspace` or set T2S_WORKER")]
    NotFound { looked: String },
    #[error("cannot start the worker {exe}: {source}")]
    Spawn {
        exe: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("worker job `{job}` failed: {message}")]
    JobFailed { job: String, message: String },
    #[error("worker for job `{job}` exited with {status} without a result{stderr_tail}")]
    Crashed {
        job: String,
        status: String,
        stderr_tail: String,
    },
    #[error("worker job `{job}` was interrupted")]
    Interrupted { job: String },
    #[error("worker i/o: {0}")]
    Io(#[from] std::io::Error),
}

/// Knows where the worker binary is and runs jobs on it.
#[derive(Debug, Clone)]
pub struct WorkerLauncher {
    pub exe: PathBuf,
}

impl WorkerLauncher {
    /// `T2S_WORKER` if set, else `t2s-worker` next to the running executable (or its parent,
    /// for test binaries under `target/*/deps`).
    pub fn locate() -> Result<Self, WorkerError> {
        if let Some(p) = std::env::var_os("T2S_WORKER") {
            return Ok(Self {
                exe: PathBuf::from(p),
            });
        }
        let mut looked = Vec::new();
        if let Ok(me) = std::env::current_exe() {
            let mut dir = me.parent().map(|p| p.to_path_buf());
            for _ in 0..2 {
                let Some(d) = dir else { break };
                let cand = d.join("t2s-worker");
                if cand.is_file() {
                    return Ok(Self { exe: cand });
                }
                looked.push(cand.display().to_string());
                dir = d.parent().map(|p| p.to_path_buf());
            }
        }
        Err(WorkerError::NotFound {
            looked: looked.join(", "),
        })
    }

    /// Run one job. `on_event` sees every non-result event as it arrives. Returns the job's
    /// result value. Setting `cancel` kills the worker.
    pub fn run(
        &self,
        spec: &JobSpec,
        mut on_event: impl FnMut(&WorkerEvent),
        cancel: &AtomicBool,
    ) -> Result<serde_json::Value, WorkerError> {
        let mut spec_file = tempfile::tempfile()?;
        serde_json::to_writer(&spec_file, spec).map_err(std::io::Error::other)?;
        spec_file.flush()?;
        spec_file.rewind()?;
        let fd = spec_file.as_raw_fd();
        let mut command = Command::new(&self.exe);
        command
            .arg(format!("/dev/fd/{fd}"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        crate::child::die_with_parent(&mut command);
        // SAFETY: runs in the forked child before exec; fcntl is async-signal-safe. Only this
        // child inherits the spec's descriptor (std opens every file close-on-exec).
        unsafe {
            command.pre_exec(move || {
                if libc::fcntl(fd, libc::F_SETFD, 0) == -1 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = command.spawn().map_err(|source| WorkerError::Spawn {
            exe: self.exe.clone(),
            source,
        })?;
        drop(spec_file);

        // stderr is drained on its own thread so a chatty worker can never block on a full
        // pipe; only its last lines are kept, for the error message.
        let stderr = child.stderr.take().expect("stderr is piped");
        let stderr_thread = std::thread::spawn(move || {
            let mut last = VecDeque::new();
            for line in crate::child::lines(stderr) {
                if line.trim().is_empty() {
                    continue;
                }
                last.push_back(line);
                if last.len() > STDERR_TAIL {
                    last.pop_front();
                }
            }
            last
        });

        // Watch for cancellation on another thread: killing the child ends the stdout loop.
        let child_id = child.id();
        let done = std::sync::Arc::new(AtomicBool::new(false));
        let cancelled = std::sync::Arc::new(AtomicBool::new(false));
        let stdout = child.stdout.take().expect("stdout is piped");
        let (result, error) = std::thread::scope(|s| {
            let done2 = done.clone();
            let cancelled2 = cancelled.clone();
            s.spawn(move || {
                while !done2.load(Ordering::Relaxed) {
                    if cancel.load(Ordering::Relaxed) {
                        cancelled2.store(true, Ordering::Relaxed);
                        kill_pid(child_id);
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
            });
            let mut result = None;
            let mut error = None;
            for line in crate::child::lines(stdout) {
                match serde_json::from_str::<WorkerEvent>(&line) {
                    Ok(WorkerEvent::Result { value }) => result = Some(value),
                    Ok(WorkerEvent::Error { message }) => error = Some(message),
                    Ok(ev) => on_event(&ev),
                    Err(_) => on_event(&WorkerEvent::Log {
                        level: "info".into(),
                        message: line,
                    }),
                }
            }
            done.store(true, Ordering::Relaxed);
            (result, error)
        });
        let status = child.wait()?;
        let stderr_lines = stderr_thread.join().unwrap_or_default();
        if cancelled.load(Ordering::Relaxed) {
            return Err(WorkerError::Interrupted {
                job: spec.job.clone(),
            });
        }
        if let Some(message) = error {
            return Err(WorkerError::JobFailed {
                job: spec.job.clone(),
                message,
            });
        }
        match (status.success(), result) {
            (true, Some(v)) => Ok(v),
            _ => Err(WorkerError::Crashed {
                job: spec.job.clone(),
                status: describe_status(&status),
                stderr_tail: tail(stderr_lines),
            }),
        }
    }
}

/// Lines of the worker's stderr a crash message quotes.
const STDERR_TAIL: usize = 5;

fn tail(lines: VecDeque<String>) -> String {
    if lines.is_empty() {
        return String::new();
    }
    format!("; last stderr lines:\n  {}", Vec::from(lines).join("\n  "))
}

fn describe_status(status: &std::process::ExitStatus) -> String {
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(sig) = status.signal() {
            return format!(
                "signal {sig}{}",
                if sig == 9 {
                    " (SIGKILL: killed, possibly out of memory)"
                } else {
                    ""
                }
            );
        }
    }
    match status.code() {
        Some(c) => format!("exit status {c}"),
        None => "an unknown status".to_string(),
    }
}

fn kill_pid(pid: u32) {
    // SIGTERM first would let libtorch linger in CUDA teardown; the worker keeps its own state
    // crash-safe, so a hard kill is correct here.
    let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
}
