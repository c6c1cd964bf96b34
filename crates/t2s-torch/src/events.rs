//! The worker's protocol events on stdout (progress, metrics, log lines), which the
//! orchestrator reads line by line. The worker has no tracing subscriber: a warning from deep
//! in the model layer (a fused kernel's self-check failing, a CUDA graph falling back) is a
//! `log` event here, shown with the node's output.

use std::io::Write;

use t2s::worker::protocol::WorkerEvent;

/// The worker's exit status when its event stream cannot be written.
pub const EXIT_ORPHANED: i32 = 3;

/// Writes protocol events to stdout, one JSON object per line, flushed each time.
#[derive(Debug, Default)]
pub struct Events;

impl Events {
    /// Write one event. If stdout cannot be written, nobody reads this job any more (t2s was
    /// killed, or closed the pipe): the worker exits at once rather than compute on unseen,
    /// and possibly race a rerun's worker in the same resume area.
    pub fn emit(&self, ev: &WorkerEvent) {
        let mut out = std::io::stdout().lock();
        if let Ok(line) = serde_json::to_string(ev) {
            if writeln!(out, "{line}").and_then(|()| out.flush()).is_err() {
                // SAFETY: _exit ends the process without running destructors or atexit
                // handlers (CUDA teardown may block); checkpoints are crash-safe by design.
                unsafe { libc::_exit(EXIT_ORPHANED) };
            }
        }
    }

    pub fn progress(&self, done: u64, total: Option<u64>, message: impl Into<String>) {
        self.emit(&WorkerEvent::Progress {
            done,
            total,
            message: message.into(),
        });
    }

    pub fn metric(&self, name: &str, step: Option<i64>, value: f64) {
        self.emit(&WorkerEvent::Metric {
            name: name.into(),
            step,
            value,
        });
    }

    pub fn log(&self, level: &str, message: impl Into<String>) {
        self.emit(&WorkerEvent::Log {
            level: level.into(),
            message: message.into(),
        });
    }
}
