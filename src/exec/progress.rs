//! The per-node progress display: one bar per running node on a terminal, plain log lines on
//! stderr otherwise (CI logs, pipes). Cached nodes make no noise here; the run summary lists
//! them. Nothing here panics when stderr cannot be written (`2>/dev/full`, a closed pipe):
//! progress is a courtesy, and `eprintln!` would panic a node thread mid-run.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

use crate::runs::NodeStatus;

/// Receives node events from the scheduler (from several threads).
pub trait Progress: Sync {
    /// A node starts running (not for cache hits); `why` says what made it stale.
    fn start(&self, node: &str, why: &str);
    /// Progress reported by the stage.
    fn update(&self, node: &str, done: u64, total: Option<u64>, message: &str);
    /// Something worth telling while it runs (e.g. waiting for another run's lock).
    fn note(&self, node: &str, message: &str);
    /// A node that started has ended with `status`.
    fn finish(&self, node: &str, status: NodeStatus, elapsed: Duration, detail: &str);
}

/// Bars on a terminal, lines otherwise; `quiet` shows nothing.
pub fn for_stderr(quiet: bool) -> Box<dyn Progress> {
    if quiet {
        Box::new(Silent)
    } else if std::io::stderr().is_terminal() {
        Box::new(Bars::new())
    } else {
        Box::new(Lines::every(LINE_EVERY))
    }
}

/// How often a running node's progress is written as a line when stderr is not a terminal
/// (a log file, CI, Slurm): often enough to see a 10-minute training move, rarely enough
/// that a log stays readable.
pub const LINE_EVERY: Duration = Duration::from_secs(60);

/// Shows nothing.
pub struct Silent;

impl Progress for Silent {
    fn start(&self, _: &str, _: &str) {}
    fn update(&self, _: &str, _: u64, _: Option<u64>, _: &str) {}
    fn note(&self, _: &str, _: &str) {}
    fn finish(&self, _: &str, _: NodeStatus, _: Duration, _: &str) {}
}

/// Write one line to stderr, ignoring failure (unlike `eprintln!`, which panics).
pub fn say(args: std::fmt::Arguments<'_>) {
    let _ = writeln!(std::io::stderr().lock(), "{args}");
}

/// Plain lines on stderr: start, notes and end of each node, and its progress at most once per
/// interval.
pub struct Lines {
    every: Duration,
    /// When each running node last wrote a line.
    last: Mutex<HashMap<String, Instant>>,
}

impl Lines {
    pub fn every(every: Duration) -> Self {
        Lines {
            every,
            last: Mutex::new(HashMap::new()),
        }
    }

    /// The progress line to write now for `node`, if its interval has passed.
    fn due(&self, node: &str, done: u64, total: Option<u64>, message: &str) -> Option<String> {
        let now = Instant::now();
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        let since = last.entry(node.to_string()).or_insert(now);
        if now.duration_since(*since) < self.every {
            return None;
        }
        *since = now;
        let of = total.map(|t| format!("/{t}")).unwrap_or_default();
        let sep = if message.is_empty() { "" } else { " " };
        Some(format!("t2s: {node}: {done}{of}{sep}{message}"))
    }
}

impl Progress for Lines {
    fn start(&self, node: &str, why: &str) {
        self.last
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(node.to_string(), Instant::now());
        say(format_args!("t2s: {node}: running ({why})"));
    }
    fn update(&self, node: &str, done: u64, total: Option<u64>, message: &str) {
        tracing::debug!(node, done, total, "{message}");
        if let Some(line) = self.due(node, done, total, message) {
            say(format_args!("{line}"));
        }
    }
    fn note(&self, node: &str, message: &str) {
        say(format_args!("t2s: {node}: {message}"));
    }
    fn finish(&self, node: &str, status: NodeStatus, elapsed: Duration, detail: &str) {
        self.last
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(node);
        let sep = if detail.is_empty() { "" } else { ": " };
        say(format_args!(
            "t2s: {node}: {status} in {}{sep}{detail}",
            human_duration(elapsed)
        ));
    }
}

/// indicatif bars, one per running node.
pub struct Bars {
    multi: MultiProgress,
    bars: Mutex<HashMap<String, ProgressBar>>,
}

impl Bars {
    fn new() -> Self {
        Self {
            multi: MultiProgress::new(),
            bars: Mutex::new(HashMap::new()),
        }
    }

    fn bar(&self, node: &str) -> Option<ProgressBar> {
        self.bars
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(node)
            .cloned()
    }
}

impl Progress for Bars {
    fn start(&self, node: &str, why: &str) {
        let bar = self.multi.add(ProgressBar::new_spinner());
        bar.set_style(
            ProgressStyle::with_template("{spinner} {prefix:.bold} {elapsed:>4} {wide_msg}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        bar.set_prefix(node.to_string());
        bar.set_message(why.to_string());
        bar.enable_steady_tick(Duration::from_millis(120));
        self.bars
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(node.to_string(), bar);
    }

    fn update(&self, node: &str, done: u64, total: Option<u64>, message: &str) {
        if let Some(bar) = self.bar(node) {
            if let Some(t) = total {
                if bar.length() != Some(t) {
                    bar.set_length(t);
                    bar.set_style(
                        ProgressStyle::with_template(
                            "  {prefix:.bold} [{bar:30}] {pos}/{len} {eta:>4} {wide_msg}",
                        )
                        .unwrap_or_else(|_| ProgressStyle::default_bar())
                        .progress_chars("=> "),
                    );
                }
            }
            bar.set_position(done);
            bar.set_message(message.to_string());
        }
    }

    fn note(&self, node: &str, message: &str) {
        let _ = self.multi.println(format!("t2s: {node}: {message}"));
    }

    fn finish(&self, node: &str, status: NodeStatus, elapsed: Duration, detail: &str) {
        let bar = self
            .bars
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(node);
        if let Some(bar) = bar {
            bar.finish_and_clear();
            self.multi.remove(&bar);
        }
        let sep = if detail.is_empty() { "" } else { ": " };
        let _ = self.multi.println(format!(
            "t2s: {node}: {status} in {}{sep}{detail}",
            human_duration(elapsed)
        ));
    }
}

/// `850ms`, `12.3s`, `4m05s`, `1h02m`.
pub fn human_duration(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s < 1.0 {
        format!("{}ms", d.as_millis())
    } else if s < 60.0 {
        format!("{s:.1}s")
    } else if s < 3600.0 {
        format!("{}m{:02}s", (s / 60.0) as u64, (s % 60.0) as u64)
    } else {
        format!(
            "{}h{:02}m",
            (s / 3600.0) as u64,
            ((s % 3600.0) / 60.0) as u64
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_show_a_running_node_s_progress_once_per_interval() {
        let quiet = Lines::every(Duration::from_secs(3600));
        quiet.start("train", "never computed");
        assert_eq!(quiet.due("train", 1, Some(10), "loss 2.0"), None);

        let chatty = Lines::every(Duration::ZERO);
        chatty.start("train", "never computed");
        assert_eq!(
            chatty
                .due("train", 30, Some(120), "loss 0.81 lr 1.0e-3 35 tok/s")
                .as_deref(),
            Some("t2s: train: 30/120 loss 0.81 lr 1.0e-3 35 tok/s")
        );
        assert_eq!(
            chatty.due("load", 5, None, "").as_deref(),
            Some("t2s: load: 5")
        );
    }
}
