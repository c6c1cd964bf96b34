//! Comparison reports: Markdown plus one self-contained HTML file, rendered from a
//! `ReportData` (which `load` fills from the tracking DB and the run's artifacts).
//!
//! Rendering is pure (data in, text out) so it is tested without a run; plots are drawn with
//! plotters (SVG inlined in the HTML, PNG files beside the Markdown).

pub mod gather;
pub mod html;
pub mod load;
pub mod markdown;
pub mod model;
pub mod plots;
pub mod verdict;

pub use model::{
    Breakdown, FailureExample, LossCurve, MetricValue, NodeInfo, Outcome, PairedComparison,
    ReportData, RunInfo, Variant,
};

use std::path::Path;

use anyhow::Context;

/// Write `report.md`, `report.html` and the PNG figures into `dir` (created if needed), the EDA
/// figures copied under `eda/` so the Markdown's links are relative and the folder stands alone
/// (moved, fetched by another machine). Files are written through temp names and renamed, so a
/// crash never leaves a half report.
pub fn write(data: &ReportData, dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let figures = plots::Figures::draw(data)?;
    for (name, png) in figures.pngs() {
        write_atomic(&dir.join(name), png)?;
    }
    for (figure, link) in data.eda_figures.iter().zip(eda_links(&data.eda_figures)) {
        let bytes =
            std::fs::read(figure).with_context(|| format!("reading {}", figure.display()))?;
        let target = dir.join(&link);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        write_atomic(&target, &bytes)?;
    }
    let md = markdown::render(data, &figures);
    write_atomic(&dir.join("report.md"), md.as_bytes())?;
    let html = html::render(data, &figures);
    write_atomic(&dir.join("report.html"), html.as_bytes())?;
    Ok(())
}

/// Where each EDA figure is linked from the report's folder: `eda/<file name>`, numbered when
/// two figures (of two EDA nodes) share a name.
pub fn eda_links(figures: &[std::path::PathBuf]) -> Vec<String> {
    let name = |f: &std::path::PathBuf| {
        f.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "figure.png".to_string())
    };
    figures
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let shared = figures.iter().filter(|g| name(g) == name(f)).count() > 1;
            if shared {
                format!("eda/{}-{}", i + 1, name(f))
            } else {
                format!("eda/{}", name(f))
            }
        })
        .collect()
}

fn write_atomic(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let tmp = path.with_extension(format!(
        "{}.tmp",
        path.extension().and_then(|e| e.to_str()).unwrap_or("")
    ));
    std::fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming {}", path.display()))?;
    Ok(())
}
