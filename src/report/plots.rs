//! Report figures drawn with plotters: metric bars with CI whiskers, loss curves, and
//! per-class breakdowns. Each figure is drawn once per backend: SVG (inlined in the HTML) and
//! PNG (beside the Markdown).

use std::path::Path;

use anyhow::{anyhow, Context};
use plotters::coord::Shift;
use plotters::prelude::*;

use super::model::{ReportData, MAIN_METRICS};

const W: u32 = 900;
const H: u32 = 420;

/// A drawn figure.
pub struct Figure {
    /// File stem, e.g. `metrics` → `metrics.png`.
    pub name: String,
    pub title: String,
    pub svg: String,
    pub png: Vec<u8>,
}

/// All figures of a report.
pub struct Figures {
    pub list: Vec<Figure>,
}

#[derive(Clone, Copy)]
enum Kind {
    Metrics,
    Loss,
    Complexity,
    Search,
}

fn draw_kind<DB: DrawingBackend>(
    kind: Kind,
    data: &ReportData,
    root: &DrawingArea<DB, Shift>,
) -> anyhow::Result<()> {
    match kind {
        Kind::Metrics => draw_metrics(data, root),
        Kind::Loss => draw_loss(data, root),
        Kind::Complexity => draw_complexity(data, root),
        Kind::Search => draw_search(data, root),
    }
}

impl Figures {
    /// Draw every figure that the data supports (no loss curves → no loss figure).
    pub fn draw(data: &ReportData) -> anyhow::Result<Self> {
        let mut list = Vec::new();
        let specs = [
            (
                "metrics",
                "Metrics by variant (95% CI)",
                !data.variants.is_empty(),
                Kind::Metrics,
            ),
            (
                "loss",
                "Train and eval loss",
                data.loss_curves
                    .iter()
                    .any(|c| !c.train.is_empty() || !c.eval.is_empty()),
                Kind::Loss,
            ),
            (
                "by_complexity",
                "Execution accuracy by SQL complexity",
                data.variants
                    .iter()
                    .any(|v| v.breakdowns.contains_key("sql_complexity")),
                Kind::Complexity,
            ),
            (
                "search",
                "Search: each trial's params against the objective",
                data.search
                    .as_ref()
                    .is_some_and(|s| s.trials.iter().any(|t| t.value.is_some())),
                Kind::Search,
            ),
        ];
        for (name, title, wanted, kind) in specs {
            if !wanted {
                continue;
            }
            let mut svg = String::new();
            {
                let root = SVGBackend::with_string(&mut svg, (W, H)).into_drawing_area();
                draw_kind(kind, data, &root)?;
                root.present()
                    .map_err(|e| anyhow!("drawing {name}.svg: {e}"))?;
            }
            let png = render_png(|root| draw_kind(kind, data, root))
                .with_context(|| format!("drawing {name}.png"))?;
            list.push(Figure {
                name: name.to_string(),
                title: title.to_string(),
                svg,
                png,
            });
        }
        Ok(Self { list })
    }

    /// (file name, PNG bytes) for every figure.
    pub fn pngs(&self) -> impl Iterator<Item = (String, &[u8])> {
        self.list
            .iter()
            .map(|f| (format!("{}.png", f.name), f.png.as_slice()))
    }
}

fn render_png(
    draw: impl Fn(&DrawingArea<BitMapBackend, Shift>) -> anyhow::Result<()>,
) -> anyhow::Result<Vec<u8>> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("figure.png");
    {
        let root = BitMapBackend::new(&path, (W, H)).into_drawing_area();
        draw(&root)?;
        root.present().map_err(|e| anyhow!("{e}"))?;
    }
    Ok(std::fs::read(&path)?)
}

fn err<E: std::fmt::Display>(e: E) -> anyhow::Error {
    anyhow!("plot: {e}")
}

fn palette(i: usize) -> RGBColor {
    const COLORS: [RGBColor; 8] = [
        RGBColor(0x4c, 0x72, 0xb0),
        RGBColor(0xdd, 0x84, 0x52),
        RGBColor(0x55, 0xa8, 0x68),
        RGBColor(0xc4, 0x4e, 0x52),
        RGBColor(0x81, 0x72, 0xb3),
        RGBColor(0x93, 0x78, 0x60),
        RGBColor(0xda, 0x8b, 0xc3),
        RGBColor(0x8c, 0x8c, 0x8c),
    ];
    COLORS[i % COLORS.len()]
}

/// Metrics on x, one bar per variant, whiskers for the CI. Scores in [0, 1] (sacreBLEU's
/// 0–100 is scaled down to share the axis).
fn draw_metrics<DB: DrawingBackend>(
    data: &ReportData,
    root: &DrawingArea<DB, Shift>,
) -> anyhow::Result<()> {
    let metrics: Vec<(&str, &str)> = MAIN_METRICS
        .iter()
        .copied()
        .filter(|(k, _)| data.variants.iter().any(|v| v.metrics.contains_key(*k)))
        .collect();
    let series = data
        .variants
        .iter()
        .map(|v| {
            let bars = metrics
                .iter()
                .map(|(key, _)| {
                    let scale = if *key == "sacrebleu" { 0.01 } else { 1.0 };
                    v.metrics.get(*key).map(|m| Bar {
                        value: m.value * scale,
                        ci: m.lo.zip(m.hi).map(|(lo, hi)| (lo * scale, hi * scale)),
                    })
                })
                .collect();
            (v.name.clone(), bars)
        })
        .collect::<Vec<_>>();
    let groups: Vec<String> = metrics.iter().map(|m| m.1.to_string()).collect();
    let style = GroupedBars {
        caption: "Metrics by variant (95% CI)",
        y_desc: "score (0–1)",
        label_size: 14,
    };
    grouped_bars(root, &style, &groups, &series)
}

fn draw_loss<DB: DrawingBackend>(
    data: &ReportData,
    root: &DrawingArea<DB, Shift>,
) -> anyhow::Result<()> {
    root.fill(&WHITE).map_err(err)?;
    let all = data
        .loss_curves
        .iter()
        .flat_map(|c| c.train.iter().chain(c.eval.iter()));
    let (mut max_step, mut max_loss, mut min_loss) = (1i64, 0f64, f64::INFINITY);
    for &(s, l) in all {
        if l.is_finite() {
            max_step = max_step.max(s);
            max_loss = max_loss.max(l);
            min_loss = min_loss.min(l);
        }
    }
    if !min_loss.is_finite() {
        min_loss = 0.0;
    }
    let pad = ((max_loss - min_loss) * 0.05).max(1e-3);
    let mut chart = ChartBuilder::on(root)
        .caption("Train (solid) and eval (dashed) loss", ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(55)
        .build_cartesian_2d(0i64..max_step, (min_loss - pad).max(0.0)..(max_loss + pad))
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("optimizer step")
        .y_desc("loss")
        .label_style(("sans-serif", 14))
        .draw()
        .map_err(err)?;
    for (i, c) in data.loss_curves.iter().enumerate() {
        let color = palette(i);
        chart
            .draw_series(LineSeries::new(
                c.train.iter().copied(),
                color.stroke_width(2),
            ))
            .map_err(err)?
            .label(c.name.clone())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 14, y)], color.stroke_width(2))
            });
        if !c.eval.is_empty() {
            chart
                .draw_series(DashedLineSeries::new(
                    c.eval.iter().copied(),
                    6,
                    4,
                    color.stroke_width(2),
                ))
                .map_err(err)?;
            chart
                .draw_series(c.eval.iter().map(|&p| Circle::new(p, 3, color.filled())))
                .map_err(err)?;
        }
    }
    legend(&mut chart, 14)
}

/// SQL complexity classes on x, one bar per variant: execution accuracy.
fn draw_complexity<DB: DrawingBackend>(
    data: &ReportData,
    root: &DrawingArea<DB, Shift>,
) -> anyhow::Result<()> {
    let mut classes: Vec<String> = data
        .variants
        .iter()
        .flat_map(|v| {
            v.breakdowns
                .get("sql_complexity")
                .into_iter()
                .flatten()
                .map(|b| b.class.clone())
        })
        .collect();
    classes.sort();
    classes.dedup();
    let series = data
        .variants
        .iter()
        .map(|v| {
            let rows = v.breakdowns.get("sql_complexity");
            let bars = classes
                .iter()
                .map(|c| {
                    let b = rows?.iter().find(|b| b.class == *c)?;
                    Some(Bar {
                        value: b.value,
                        ci: None,
                    })
                })
                .collect();
            (v.name.clone(), bars)
        })
        .collect::<Vec<_>>();
    let style = GroupedBars {
        caption: "Execution accuracy by SQL complexity",
        y_desc: "execution accuracy",
        label_size: 12,
    };
    grouped_bars(root, &style, &classes, &series)
}

/// One bar of a grouped bar chart: a value in [0, 1] and its confidence interval.
struct Bar {
    value: f64,
    ci: Option<(f64, f64)>,
}

/// Titles and label size of a grouped bar chart.
struct GroupedBars<'a> {
    caption: &'a str,
    y_desc: &'a str,
    label_size: u32,
}

/// Groups on x (a tick and label under the centre of each), one coloured bar per series in
/// each group, CI whiskers where a bar has them; y in [0, 1].
fn grouped_bars<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    style: &GroupedBars<'_>,
    groups: &[String],
    series: &[(String, Vec<Option<Bar>>)],
) -> anyhow::Result<()> {
    root.fill(&WHITE).map_err(err)?;
    // Group g is centred on x = g, so the mesh's integer key points fall under the groups;
    // its bars share the middle 80% of [g - 0.5, g + 0.5].
    let nv = series.len().max(1);
    let bar_w = 0.8 / nv as f64;
    let last = groups.len().max(1) as f64 - 0.5;
    let mut chart = ChartBuilder::on(root)
        .caption(style.caption, ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(50)
        // Headroom above 1.0 for the legend, so it never covers a bar.
        .build_cartesian_2d(-0.5f64..last, 0f64..1.35f64)
        .map_err(err)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(groups.len().max(1))
        .x_label_formatter(&|x| {
            let g = x.round();
            ((x - g).abs() < 1e-6 && g >= 0.0)
                .then(|| groups.get(g as usize).cloned())
                .flatten()
                .unwrap_or_default()
        })
        .y_desc(style.y_desc)
        .y_label_formatter(&|y| {
            if *y <= 1.0 + 1e-9 {
                format!("{y:.1}")
            } else {
                String::new()
            }
        })
        .label_style(("sans-serif", style.label_size))
        .draw()
        .map_err(err)?;
    for (vi, (name, bars)) in series.iter().enumerate() {
        let color = palette(vi);
        let mut rects = Vec::new();
        let mut whiskers = Vec::new();
        for (g, bar) in bars.iter().enumerate() {
            let Some(bar) = bar else { continue };
            let x0 = g as f64 - 0.4 + vi as f64 * bar_w;
            rects.push(Rectangle::new(
                [(x0, 0.0), (x0 + 0.9 * bar_w, bar.value)],
                color.filled(),
            ));
            if let Some((lo, hi)) = bar.ci {
                let xc = x0 + 0.45 * bar_w;
                whiskers.push(PathElement::new(
                    vec![(xc, lo), (xc, hi)],
                    BLACK.stroke_width(2),
                ));
                for y in [lo, hi] {
                    whiskers.push(PathElement::new(
                        vec![(xc - 0.2 * bar_w, y), (xc + 0.2 * bar_w, y)],
                        BLACK.stroke_width(2),
                    ));
                }
            }
        }
        chart
            .draw_series(rects)
            .map_err(err)?
            .label(name.clone())
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], color.filled()));
        chart.draw_series(whiskers).map_err(err)?;
    }
    legend(&mut chart, style.label_size)
}

/// Read a PNG for embedding; errors name the file.
pub fn read_png(path: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading figure {}", path.display()))
}

/// The legend every report figure draws: upper right, boxed, on a light background.
fn legend<'a, DB: DrawingBackend + 'a, CT: plotters::coord::CoordTranslate>(
    chart: &mut ChartContext<'a, DB, CT>,
    font_size: u32,
) -> anyhow::Result<()> {
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", font_size))
        .draw()
        .map_err(err)
}

/// Where a param value sits on its panel's axis: numbers as they are (log10 when they span a
/// decade or more and are positive), anything else by its rank among the values seen.
fn axis_positions(values: &[&serde_json::Value]) -> (Vec<f64>, bool) {
    let nums: Option<Vec<f64>> = values.iter().map(|v| v.as_f64()).collect();
    match nums {
        Some(xs) if !xs.is_empty() => {
            let (lo, hi) = xs
                .iter()
                .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &x| {
                    (a.min(x), b.max(x))
                });
            let log = lo > 0.0 && hi / lo >= 10.0;
            (
                xs.iter()
                    .map(|&x| if log { x.log10() } else { x })
                    .collect(),
                log,
            )
        }
        _ => {
            let mut seen: Vec<String> = values.iter().map(|v| v.to_string()).collect();
            seen.sort();
            seen.dedup();
            let at = |v: &serde_json::Value| {
                let text = v.to_string();
                seen.iter().position(|s| *s == text).unwrap_or(0) as f64
            };
            (values.iter().map(|v| at(v)).collect(), false)
        }
    }
}

/// One panel per searched param: each fully trained trial's value of it (x) against its
/// objective (y); the best trial in red.
fn draw_search<DB: DrawingBackend>(
    data: &ReportData,
    root: &DrawingArea<DB, Shift>,
) -> anyhow::Result<()> {
    root.fill(&WHITE).map_err(err)?;
    let Some(search) = &data.search else {
        return Ok(());
    };
    let scored: Vec<(usize, &crate::search::driver::TrialResult)> = search
        .trials
        .iter()
        .enumerate()
        .filter(|(_, t)| t.value.is_some_and(f64::is_finite))
        .collect();
    let dims: Vec<&String> = {
        let mut d: Vec<&String> = scored.iter().flat_map(|(_, t)| t.params.keys()).collect();
        d.sort();
        d.dedup();
        d
    };
    let ys: Vec<f64> = scored.iter().filter_map(|(_, t)| t.value).collect();
    let (lo, hi) = ys
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &y| {
            (a.min(y), b.max(y))
        });
    let pad = ((hi - lo) * 0.1).max(1e-3);
    let panels = root.split_evenly((1, dims.len().max(1)));
    for (dim, area) in dims.iter().zip(&panels) {
        let values: Vec<&serde_json::Value> = scored
            .iter()
            .map(|(_, t)| t.params.get(*dim).unwrap_or(&serde_json::Value::Null))
            .collect();
        let (xs, log) = axis_positions(&values);
        let (xl, xh) = xs
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &x| {
                (a.min(x), b.max(x))
            });
        let xpad = ((xh - xl) * 0.1).max(0.5);
        let mut chart = ChartBuilder::on(area)
            .caption(
                if log {
                    format!("log10 {dim}")
                } else {
                    dim.to_string()
                },
                ("sans-serif", 16),
            )
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(50)
            .build_cartesian_2d((xl - xpad)..(xh + xpad), (lo - pad)..(hi + pad))
            .map_err(err)?;
        chart
            .configure_mesh()
            .y_desc(search.metric.as_str())
            .label_style(("sans-serif", 12))
            .draw()
            .map_err(err)?;
        chart
            .draw_series(scored.iter().zip(&xs).map(|((i, t), &x)| {
                let color = if search.best == Some(*i) {
                    palette(3)
                } else {
                    palette(0)
                };
                Circle::new((x, t.value.unwrap_or(lo)), 5, color.filled())
            }))
            .map_err(err)?;
    }
    Ok(())
}
