//! The `MetricsSink` handed to a running stage: metrics go to the tracking DB in batches,
//! progress goes to a callback (the progress display).

use std::collections::BTreeSet;
use std::sync::Mutex;

use crate::stages::MetricsSink;

use super::db::{MetricPoint, Tracker};

/// Metrics are flushed once this many are buffered (and when the node ends).
const BATCH: usize = 256;

type ProgressFn<'a> = dyn Fn(u64, Option<u64>, &str) + Sync + 'a;

/// Metrics sink of one node of one run.
pub struct NodeSink<'a> {
    tracker: Option<&'a Tracker>,
    run: i64,
    node: String,
    buf: Mutex<Vec<MetricPoint>>,
    finals: Mutex<BTreeSet<String>>,
    on_progress: &'a ProgressFn<'a>,
}

impl<'a> NodeSink<'a> {
    /// `tracker` is `None` when nothing should be recorded (tests, dry runs).
    pub fn new(
        tracker: Option<&'a Tracker>,
        run: i64,
        node: &str,
        on_progress: &'a ProgressFn<'a>,
    ) -> Self {
        Self {
            tracker,
            run,
            node: node.to_string(),
            buf: Mutex::new(Vec::new()),
            finals: Mutex::new(BTreeSet::new()),
            on_progress,
        }
    }

    /// Write buffered metrics. Errors are logged, not fatal: losing a metric must not fail a
    /// training run that took hours.
    pub fn flush(&self) {
        let batch = std::mem::take(&mut *self.buf.lock().unwrap_or_else(|p| p.into_inner()));
        if let Some(t) = self.tracker {
            if let Err(e) = t.record_metrics(self.run, &self.node, &batch) {
                tracing::warn!(node = %self.node, "could not record metrics: {e}");
            }
        }
    }

    /// Names of final metrics (step `None`) the stage already reported.
    pub fn final_names(&self) -> BTreeSet<String> {
        self.finals
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

impl MetricsSink for NodeSink<'_> {
    fn metric(&self, name: &str, step: Option<i64>, value: f64) {
        if step.is_none() {
            self.finals
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(name.to_string());
        }
        let full = {
            let mut buf = self.buf.lock().unwrap_or_else(|p| p.into_inner());
            buf.push((name.to_string(), step, value, super::now_rfc3339()));
            buf.len() >= BATCH
        };
        if full {
            self.flush();
        }
    }

    fn progress(&self, done: u64, total: Option<u64>, message: &str) {
        (self.on_progress)(done, total, message);
    }
}

impl Drop for NodeSink<'_> {
    fn drop(&mut self) {
        self.flush();
    }
}
