//! `t2s dag FILE [--dot|--mermaid]`: the expanded graph.

use std::process::ExitCode;

use crate::cli::DagArgs;
use crate::pipeline::render;

pub fn dag(args: DagArgs) -> anyhow::Result<ExitCode> {
    let p = super::load_pipeline(&args.pipeline.file, &args.pipeline.set)?;
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
