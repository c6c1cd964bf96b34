//! The worker's protocol events on stdout (progress, metrics, log lines), which the
//! orchestrator reads line by line. The worker has no tracing subscriber: a warning from deep
//! in the model layer (a fused kernel's self-check failing, a CUDA graph falling back) is a
//! `log` event here, shown with the node's output.

use std::io::Write;

use t2s::worker::protocol::WorkerEvent;

/// Writes protocol events to stdout, one JSON object per line, flushed each time.
#[derive(Debug, Default)]
pub struct Events;

impl Events {
    pub fn emit(&self, ev: &WorkerEvent) {
        let mut out = std::io::stdout().lock();
        if let Ok(line) = serde_json::to_string(ev) {
            let _ = writeln!(out, "{line}");
            let _ = out.flush();
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
