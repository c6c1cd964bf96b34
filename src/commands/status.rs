//! `t2s status FILE`: which nodes are cached, which are stale and why (the changed key field,
//! compared with the last committed key of the same node).

use std::process::ExitCode;

use crate::cache::{key::short, Store};
use crate::cli::StatusArgs;
use crate::exec::plan::{self, Decision, PlanOptions};

pub fn status(root: &std::path::Path, args: StatusArgs) -> anyhow::Result<ExitCode> {
    let p = super::load_pipeline(&args.pipeline.file, &args.pipeline.set)?;
    let store = Store::open(root)?;
    let opts = PlanOptions {
        verify: args.verify,
        ..Default::default()
    };
    let planned = plan::plan(&p, &store, &opts)?;
    let mut rows = Vec::new();
    let (mut cached, mut stale) = (0, 0);
    for n in &planned {
        let state = match n.decision {
            Decision::Hit => {
                cached += 1;
                "cached"
            }
            _ => {
                stale += 1;
                "stale"
            }
        };
        rows.push(vec![
            n.node.clone(),
            state.to_string(),
            n.key.as_deref().map(short).unwrap_or("-").to_string(),
            n.reason.clone(),
        ]);
    }
    print!("{}", super::table(&rows));
    println!("{}: {cached} cached, {stale} stale", p.name);
    Ok(ExitCode::SUCCESS)
}
