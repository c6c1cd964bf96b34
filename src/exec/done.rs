//! A finished node as the scheduler keeps it: the report shown to the user, the artifact digest
//! downstream keys need, and the record written to the tracking DB.

use std::path::PathBuf;
use std::time::Duration;

use crate::cache::Manifest;
use crate::pipeline::Node;
use crate::runs::{now_rfc3339, NodeRecord, NodeStatus};

use super::scheduler::NodeReport;

/// A node that ended (ran, cached, failed, skipped...). `digest` is `None` unless it has a
/// committed artifact.
pub(super) struct Done {
    pub(super) report: NodeReport,
    pub(super) digest: Option<String>,
    pub(super) record: NodeRecord,
}

/// Longest error text kept for a node, in bytes. A stage's error may quote a child's output;
/// beyond this it is cut (with a marker), so the tracking DB never refuses it ("string or blob
/// too big") and the failure is always recorded and shown.
pub(super) const MAX_ERROR_BYTES: usize = 256 * 1024;

/// `text` cut at [`MAX_ERROR_BYTES`] (on a character boundary), saying how much was cut.
fn bounded(mut text: String) -> String {
    if text.len() <= MAX_ERROR_BYTES {
        return text;
    }
    let mut end = MAX_ERROR_BYTES;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let cut = text.len() - end;
    text.truncate(end);
    text.push_str(&format!(" [... error truncated: {cut} more bytes]"));
    text
}

fn params_of(node: &Node) -> Vec<(String, serde_json::Value)> {
    node.params
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

pub(super) fn skipped(node: &Node, why: String) -> Done {
    finished(
        node,
        NodeStatus::Skipped,
        None,
        None,
        None,
        Duration::ZERO,
        None,
        why,
        Vec::new(),
    )
}

#[allow(clippy::too_many_arguments)]
pub(super) fn finished(
    node: &Node,
    status: NodeStatus,
    key: Option<String>,
    manifest: Option<(&Manifest, PathBuf)>,
    started: Option<String>,
    duration: Duration,
    error: Option<String>,
    detail: String,
    final_metrics: Vec<(String, f64)>,
) -> Done {
    let error = error.map(bounded);
    let digest = manifest.as_ref().map(|(m, _)| m.digest());
    let dir = manifest.as_ref().map(|(_, d)| d.clone());
    let artifact = manifest.as_ref().map(|(m, d)| {
        (
            d.display().to_string(),
            m.digest(),
            m.files.len() as i64,
            m.total_size() as i64,
        )
    });
    // Every final metric of the output (those a stage streamed are left out of
    // `final_metrics`, which the DB records, but not of the manifest).
    let metrics = match &manifest {
        Some((m, _)) => m.metrics.clone(),
        None => final_metrics.iter().cloned().collect(),
    };
    Done {
        digest,
        record: NodeRecord {
            node: node.id.clone(),
            stage: node.stage.clone(),
            kind: node.kind.clone(),
            key: key.clone(),
            status,
            started,
            ended: Some(now_rfc3339()),
            duration_s: Some(duration.as_secs_f64()),
            error: error.clone(),
            params: params_of(node),
            final_metrics,
            artifact,
            exec: None,
        },
        report: NodeReport {
            node: node.id.clone(),
            status,
            key,
            duration,
            detail: error.unwrap_or(detail),
            dir,
            fetched: false,
            pushed: None,
            metrics,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_errors_are_cut_on_a_char_boundary_with_a_marker() {
        assert_eq!(bounded("short".into()), "short");
        let long = "é".repeat(MAX_ERROR_BYTES);
        let cut = bounded(long.clone());
        assert!(cut.len() < MAX_ERROR_BYTES + 100);
        assert!(cut.ends_with(&format!(
            "[... error truncated: {} more bytes]",
            long.len() - MAX_ERROR_BYTES
        )));
    }
}
