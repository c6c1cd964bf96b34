//! Figures for EDA, drawn with plotters as PNG and SVG: horizontal bar charts (complexity
//! distribution, keyword frequencies) and histograms (character lengths, token counts).

use std::path::{Path, PathBuf};

use plotters::coord::Shift;
use plotters::prelude::*;

use super::eda::{Series, Stats};

const FONT: &str = "sans-serif";

fn err<E: std::fmt::Display>(e: E) -> anyhow::Error {
    anyhow::anyhow!("drawing a figure: {e}")
}

fn hbar<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    title: &str,
    xlabel: &str,
    items: &[(String, usize)],
) -> anyhow::Result<()> {
    root.fill(&WHITE).map_err(err)?;
    let n = items.len().max(1);
    let max = items.iter().map(|x| x.1).max().unwrap_or(1).max(1) as f64 * 1.12;
    let mut chart = ChartBuilder::on(root)
        .caption(title, (FONT, 26))
        .margin(18)
        .x_label_area_size(55)
        .y_label_area_size(175)
        .build_cartesian_2d(0f64..max, (0..n as i32 - 1).into_segmented())
        .map_err(err)?;
    let label = |v: &SegmentValue<i32>| match v {
        SegmentValue::CenterOf(i) => items
            .get(*i as usize)
            .map(|x| x.0.clone())
            .unwrap_or_default(),
        _ => String::new(),
    };
    chart
        .configure_mesh()
        .disable_y_mesh()
        .y_labels(n)
        .y_label_formatter(&label)
        .x_label_formatter(&|v| format!("{v:.0}"))
        .x_desc(xlabel)
        .label_style((FONT, 15))
        .axis_desc_style((FONT, 17))
        .draw()
        .map_err(err)?;
    chart
        .draw_series(items.iter().enumerate().map(|(i, (_, v))| {
            let mut r = Rectangle::new(
                [
                    (0.0, SegmentValue::Exact(i as i32)),
                    (*v as f64, SegmentValue::Exact(i as i32 + 1)),
                ],
                RGBColor(52, 101, 164).filled(),
            );
            r.set_margin(4, 4, 0, 0);
            r
        }))
        .map_err(err)?;
    chart
        .draw_series(items.iter().enumerate().map(|(i, (_, v))| {
            Text::new(
                format!(" {v}"),
                (*v as f64, SegmentValue::CenterOf(i as i32)),
                TextStyle::from((FONT, 13).into_font()).pos(
                    plotters::style::text_anchor::Pos::new(
                        plotters::style::text_anchor::HPos::Left,
                        plotters::style::text_anchor::VPos::Center,
                    ),
                ),
            )
        }))
        .map_err(err)?;
    Ok(())
}

fn histogram<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    title: &str,
    xlabel: &str,
    values: &[usize],
    color: RGBColor,
) -> anyhow::Result<()> {
    let max = values.iter().copied().max().unwrap_or(1).max(1);
    let bins = 30usize;
    let width = max.div_ceil(bins).max(1);
    let mut counts = vec![0usize; max / width + 1];
    for v in values {
        counts[v / width] += 1;
    }
    let ymax = (*counts.iter().max().unwrap_or(&1) as f64 * 1.1).ceil() as usize;
    let xmax = counts.len() * width;
    let mut chart = ChartBuilder::on(area)
        .caption(title, (FONT, 22))
        .margin(15)
        .x_label_area_size(50)
        .y_label_area_size(65)
        .build_cartesian_2d(0..xmax, 0..ymax.max(1))
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc(xlabel)
        .y_desc("rows")
        .x_labels(8)
        .y_labels(8)
        .label_style((FONT, 14))
        .axis_desc_style((FONT, 16))
        .draw()
        .map_err(err)?;
    chart
        .draw_series(
            counts.iter().enumerate().map(|(i, c)| {
                Rectangle::new([(i * width, 0), ((i + 1) * width, *c)], color.filled())
            }),
        )
        .map_err(err)?;
    Ok(())
}

fn lengths<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, s: &Series) -> anyhow::Result<()> {
    root.fill(&WHITE).map_err(err)?;
    let root = root.titled("Character lengths", (FONT, 26)).map_err(err)?;
    let panels = root.split_evenly((1, 3));
    histogram(
        &panels[0],
        "sql_prompt",
        "characters",
        &s.prompt_chars,
        RGBColor(52, 101, 164),
    )?;
    histogram(
        &panels[1],
        "sql_context",
        "characters",
        &s.context_chars,
        RGBColor(78, 154, 6),
    )?;
    histogram(
        &panels[2],
        "sql",
        "characters",
        &s.sql_chars,
        RGBColor(204, 0, 0),
    )?;
    Ok(())
}

/// Write all figures into `dir`; returns the files written.
pub fn render(dir: &Path, stats: &Stats, series: &Series) -> anyhow::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let mut files = Vec::new();
    let complexity: Vec<(String, usize)> = {
        let mut v: Vec<_> = stats
            .sql_complexity
            .iter()
            .map(|(k, n)| (k.clone(), *n))
            .collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        v
    };
    let keywords: Vec<(String, usize)> = {
        let mut v: Vec<_> = stats
            .keywords
            .iter()
            .map(|(k, n)| (k.clone(), *n))
            .collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        v.truncate(20);
        v
    };
    macro_rules! figure {
        ($name:expr, $size:expr, |$root:ident| $body:expr) => {{
            let png = dir.join(format!("{}.png", $name));
            let svg = dir.join(format!("{}.svg", $name));
            {
                let $root = BitMapBackend::new(&png, $size).into_drawing_area();
                $body?;
                $root.present().map_err(err)?;
            }
            {
                let $root = SVGBackend::new(&svg, $size).into_drawing_area();
                $body?;
                $root.present().map_err(err)?;
            }
            files.push(png);
            files.push(svg);
        }};
    }
    let n = stats.rows;
    figure!("complexity", (1000, 560), |root| hbar(
        &root,
        &format!("sql_complexity distribution ({n} rows)"),
        "rows",
        &complexity
    ));
    figure!("lengths", (1500, 520), |root| lengths(&root, series));
    figure!("keywords", (1000, 720), |root| hbar(
        &root,
        "SQL keyword frequency (top 20, gold queries)",
        "occurrences",
        &keywords
    ));
    if !series.tokens.is_empty() {
        figure!("tokens", (1000, 560), |root| {
            root.fill(&WHITE).map_err(err)?;
            histogram(
                &root,
                "Tokens per chat-formatted example",
                "tokens",
                &series.tokens,
                RGBColor(117, 80, 123),
            )
        });
    }
    Ok(files)
}
