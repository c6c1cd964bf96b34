//! `t2s status FILE`: which nodes are cached, which are on the remote cache, which are stale
//! and why (the changed key field, compared with the last committed key of the same node), and
//! the commit each hub revision resolved to (a moved branch shows as `fact.hub_commit: old → new`).

use std::process::ExitCode;

use serde_json::json;

use crate::cache::{key::short, Store};
use crate::cli::StatusArgs;
use crate::exec::plan::{self, Decision, PlanOptions};

pub fn status(root: &std::path::Path, args: StatusArgs) -> anyhow::Result<ExitCode> {
    let p = super::load_pipeline(&args.pipeline.file, &args.pipeline.set)?;
    let store = Store::open(root)?;
    let p = super::search_run::replay(&store, p, &args.pipeline.set)?;
    let opts = PlanOptions {
        verify: args.verify,
        remote: super::remote::choose(&p, &args.remote)?,
        ..Default::default()
    };
    let planned = plan::plan(&p, &store, &opts)?;
    let state = |d: &Decision| match d {
        Decision::Hit => "cached",
        Decision::Fetch => "remote",
        _ => "stale",
    };
    let count = |s: &str| planned.iter().filter(|n| state(&n.decision) == s).count();
    let (cached, on_remote, stale) = (count("cached"), count("remote"), count("stale"));
    if args.quiet {
        return Ok(if stale == 0 {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        });
    }
    // Each hub revision the keys were made with, and whether the hub or the cache said so.
    let pins = crate::data::hub::pin::pins_made();
    if args.json {
        let nodes: Vec<serde_json::Value> = planned
            .iter()
            .map(|n| {
                json!({
                    "node": n.node,
                    "state": state(&n.decision),
                    "key": n.key,
                    "reason": n.reason,
                })
            })
            .collect();
        let out = json!({
            "pipeline": p.name,
            "cached": cached,
            "remote": on_remote,
            "stale": stale,
            "nodes": nodes,
            "hub": pins
                .iter()
                .map(|p| json!({
                    "repo": p.repo,
                    "revision": p.revision,
                    "commit": p.commit,
                    "resolved": p.to_string(),
                }))
                .collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(ExitCode::SUCCESS);
    }
    let rows: Vec<Vec<String>> = planned
        .iter()
        .map(|n| {
            vec![
                n.node.clone(),
                state(&n.decision).to_string(),
                n.key.as_deref().map(short).unwrap_or("-").to_string(),
                n.reason.clone(),
            ]
        })
        .collect();
    print!("{}", super::table(&rows));
    for pin in &pins {
        println!("hub: {pin}");
    }
    if on_remote > 0 {
        println!(
            "{}: {cached} cached, {on_remote} on the remote (fetched by `t2s run` or `t2s pull`), {stale} stale",
            p.name
        );
    } else {
        println!("{}: {cached} cached, {stale} stale", p.name);
    }
    Ok(ExitCode::SUCCESS)
}
