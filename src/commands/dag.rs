//! `t2s dag FILE [--dot|--mermaid]`: the expanded graph (of a search: every trial proposed so
//! far, replayed from the project's cache, as `status` shows them).

use std::process::ExitCode;

use crate::cli::DagArgs;
use crate::pipeline::render;

pub fn dag(root: &std::path::Path, args: DagArgs) -> anyhow::Result<ExitCode> {
    let p = super::load_pipeline(&args.pipeline.file, &args.pipeline.set)?;
    // Read-only: a project without a store shows the first round (nothing to replay).
    let p = if p.search.is_some() && root.join("artifacts").is_dir() {
        super::search_run::replay(&crate::cache::Store::open(root)?, p, &args.pipeline.set)?
    } else {
        p
    };
    let text = if args.dot {
        render::dot(&p)
    } else if args.mermaid {
        render::mermaid(&p)
    } else {
        render::text(&p)
    };
    print!("{text}");
    if !text.ends_with('\n') {
        println!();
    }
    Ok(ExitCode::SUCCESS)
}
