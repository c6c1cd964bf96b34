//! A finished node as the scheduler keeps it: the report shown to the user, the artifact digest
//! downstream keys need, and the record written to the tracking DB.

use std::path::PathBuf;
use std::time::Duration;

use crate::cache::Manifest;
use crate::pipeline::Node;
use crate::runs::{node_status, now_rfc3339, NodeRecord};

use super::scheduler::NodeReport;

/// A node that ended (ran, cached, failed, skipped...). `digest` is `None` unless it has a
/// committed artifact.
pub(super) struct Done {
    pub(super) report: NodeReport,
    pub(super) digest: Option<String>,
    pub(super) record: NodeRecord,
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
        node_status::SKIPPED,
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
    status: &'static str,
    key: Option<String>,
    manifest: Option<(&Manifest, PathBuf)>,
    started: Option<String>,
    duration: Duration,
    error: Option<String>,
    detail: String,
    final_metrics: Vec<(String, f64)>,
) -> Done {
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
        },
    }
}
