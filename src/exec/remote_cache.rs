//! The scheduler's side of a remote cache: fetching a node's output instead of computing it,
//! and pushing what a node finished (`run --remote DIR [--push]`).

use std::sync::atomic::{AtomicBool, Ordering};

use crate::cache::{Lookup, Manifest, Pushed, Remote, Store, StoreError};

use super::scheduler::NodeReport;

/// The detail of a node fetched from the remote, before the remote's path.
pub(super) const FETCHED: &str = "fetched from the remote";

/// Where a fetched object goes.
pub(super) struct Destination<'a> {
    pub store: &'a Store,
    pub pipeline: &'a str,
    pub node: &'a str,
    pub cancel: &'a AtomicBool,
}

pub(super) enum Fetched {
    Yes(Manifest),
    /// Another run committed the key while this one waited for its lock.
    Concurrent(Manifest),
    /// Not fetched; with the reason when the remote had the object but it was unusable.
    No(Option<String>),
    Interrupted(StoreError),
}

/// Fetch `key` from the remote into the store, under the key's lock (`note` tells the user
/// what it waits for and does). A remote that cannot be read or holds a damaged object is not
/// fatal: the node is computed here instead.
pub(super) fn fetch(
    to: &Destination<'_>,
    remote: &Remote,
    key: &str,
    note: impl Fn(&str),
) -> Fetched {
    let manifest = match remote.manifest(key) {
        Ok(Some(m)) => m,
        Ok(None) => return Fetched::No(None),
        Err(e) => return Fetched::No(Some(e.to_string())),
    };
    let lock = match to.store.lock(key, to.cancel, || {
        note("waiting: another t2s run is computing this node")
    }) {
        Ok(l) => l,
        Err(e) if to.cancel.load(Ordering::Relaxed) => return Fetched::Interrupted(e),
        Err(e) => return Fetched::No(Some(format!("not fetched: {e}"))),
    };
    if let Ok(Lookup::Hit(m)) = to.store.lookup(key, false) {
        return Fetched::Concurrent(m);
    }
    note("fetching from the remote");
    match remote.fetch(to.store, manifest, to.pipeline, to.node, &lock) {
        Ok(m) => Fetched::Yes(m),
        Err(e) => Fetched::No(Some(format!("not fetched: {e}"))),
    }
}

/// Copy a finished node's output to the remote unless it came from there, recording what
/// happened in its report. Called before the node counts as finished, so a run killed later
/// has pushed what it finished.
pub(super) fn push(store: &Store, remote: &Remote, report: &mut NodeReport) {
    let Some(key) = report.key.as_deref() else {
        return;
    };
    if !report.status.succeeded() {
        return;
    }
    report.pushed = Some(if report.fetched {
        Ok(Pushed::Present)
    } else {
        remote.push(store, key, false).map_err(|e| e.to_string())
    });
}
