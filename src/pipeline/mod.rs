//! Pipeline files: raw YAML → validated, matrix-expanded graph of nodes.
//!
//! The types below are the contract the executor consumes; parsing, validation, matrix expansion
//! and graph rendering live in the submodules.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde_json::{Map, Value};

/// A validated pipeline with its matrix expanded.
#[derive(Debug, Clone)]
pub struct Pipeline {
    /// `name:` from the file (defaults to the file stem).
    pub name: String,
    /// The pipeline file.
    pub file: PathBuf,
    /// blake3 of the file bytes.
    pub file_digest: String,
    /// Nodes in a topological order (every node after all its needs).
    pub nodes: Vec<Node>,
}

/// One executable node: a stage instance (one matrix combination of a fanned-out stage).
#[derive(Debug, Clone)]
pub struct Node {
    /// Stable id: the stage name, plus `[k=v,...]` for matrix instances (keys sorted).
    pub id: String,
    /// Stage name in the file.
    pub stage: String,
    /// Stage kind (a registry name).
    pub kind: String,
    /// Resolved params: defaults filled, overrides applied, `${matrix.x}` substituted.
    pub params: Map<String, Value>,
    /// Matrix values of this instance, inherited from fanned-out needs included.
    pub matrix: BTreeMap<String, Value>,
    /// Ids of upstream nodes, in `needs` order.
    pub needs: Vec<String>,
}
