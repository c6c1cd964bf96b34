//! Acceptance 4: EDA writes the 4 figure kinds (PNG + SVG) and stats; PNGs decode as images of
//! sane size; stats equal a straightforward recount.

use std::collections::BTreeMap;

use t2s::data::builtin;
use t2s::data::eda::{compute, KEYWORDS};
use t2s::data::load::LoadedRow;
use t2s::data::plots::render;
use t2s::data::tokenizer::train_bpe;

#[test]
fn eda_writes_figures_and_correct_stats() {
    let rows = builtin::generate(8, 1200);
    let tk = train_bpe(&rows, 700, 2).unwrap();
    let loaded: Vec<LoadedRow> = rows
        .iter()
        .map(|r| LoadedRow {
            split: "train".into(),
            row: r.clone(),
        })
        .collect();
    let (stats, series) = compute(&loaded, Some(&tk)).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let files = render(tmp.path(), &stats, &series).unwrap();
    assert_eq!(files.len(), 8);
    for kind in ["complexity", "lengths", "keywords", "tokens"] {
        let png = tmp.path().join(format!("{kind}.png"));
        let img = image::open(&png).unwrap_or_else(|e| panic!("{}: {e}", png.display()));
        assert!(
            img.width() >= 800 && img.height() >= 400,
            "{kind}: {}x{}",
            img.width(),
            img.height()
        );
        // Not a blank canvas: plenty of non-white pixels.
        let rgb = img.to_rgb8();
        let inked = rgb.pixels().filter(|p| p.0 != [255, 255, 255]).count();
        assert!(inked > 5_000, "{kind}: only {inked} non-white pixels");
        let svg = std::fs::read_to_string(tmp.path().join(format!("{kind}.svg"))).unwrap();
        assert!(
            svg.starts_with("<svg") && svg.contains("</svg>") && svg.len() > 2000,
            "{kind}.svg"
        );
    }
    let svg = std::fs::read_to_string(tmp.path().join("complexity.svg")).unwrap();
    assert!(svg.contains("window functions") && svg.contains("sql_complexity distribution"));

    // Recount.
    let mut complexity: BTreeMap<String, usize> = BTreeMap::new();
    let mut kw: BTreeMap<String, usize> = BTreeMap::new();
    let re = regex::Regex::new(&format!(r"(?i)\b({})\b", KEYWORDS.join("|"))).unwrap();
    let lit = regex::Regex::new(r"'[^']*'").unwrap();
    for r in &rows {
        *complexity.entry(r.sql_complexity.clone()).or_default() += 1;
        for m in re.find_iter(&lit.replace_all(&r.sql, " ")) {
            *kw.entry(m.as_str().to_ascii_uppercase()).or_default() += 1;
        }
    }
    assert_eq!(stats.sql_complexity, complexity);
    assert_eq!(stats.keywords, kw);
    assert_eq!(stats.rows, rows.len());
    let sql_max = rows.iter().map(|r| r.sql.chars().count()).max().unwrap();
    assert_eq!(stats.chars["sql"].max, sql_max);
    let mean_prompt = rows
        .iter()
        .map(|r| r.sql_prompt.chars().count())
        .sum::<usize>() as f64
        / rows.len() as f64;
    assert!((stats.chars["prompt"].mean - mean_prompt).abs() < 1e-9);
    let t = stats.tokens.as_ref().unwrap();
    let first = t2s::data::preprocess::encode_row(
        &tk,
        t2s::data::preprocess::Mode::Chat,
        &rows[0].sql_prompt,
        &rows[0].sql_context,
        &rows[0].sql,
    )
    .unwrap()
    .0
    .len();
    assert_eq!(series.tokens[0], first);
    assert_eq!(t.count, rows.len());
}
