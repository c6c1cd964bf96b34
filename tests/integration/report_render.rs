//! The report renders every section, embeds every figure, and writes complete files.

use std::collections::BTreeMap;

use t2s::report::{
    self, Breakdown, FailureExample, LossCurve, MetricValue, NodeInfo, Outcome, PairedComparison,
    ReportData, RunInfo, Variant,
};

fn variant(name: &str, ex: f64) -> Variant {
    let mut metrics = BTreeMap::new();
    metrics.insert(
        "execution_accuracy".into(),
        MetricValue::with_ci(ex, ex - 0.05, ex + 0.05),
    );
    metrics.insert(
        "bleu".into(),
        MetricValue::with_ci(ex / 2.0, ex / 2.0 - 0.02, ex / 2.0 + 0.02),
    );
    metrics.insert("sacrebleu".into(), MetricValue::point(ex * 50.0));
    let mut breakdowns = BTreeMap::new();
    breakdowns.insert(
        "sql_complexity".into(),
        vec![
            Breakdown {
                class: "aggregation".into(),
                n: 40,
                value: ex,
            },
            Breakdown {
                class: "basic SQL".into(),
                n: 60,
                value: ex + 0.1,
            },
        ],
    );
    let right = (200.0 * ex) as usize;
    Variant {
        name: name.into(),
        node: format!("evaluate[{name}]"),
        n: 200,
        metrics,
        breakdowns,
        outcomes: BTreeMap::from([
            (Outcome::Correct, right),
            (Outcome::WrongResult, 200 - right - 10),
            (Outcome::SyntaxError, 10),
        ]),
        failures: vec![
            FailureExample {
                outcome: Outcome::WrongResult,
                request: format!("Show <b>{name}</b>'s rows in 2018"),
                gold: "SELECT * FROM t WHERE year = 2018;".into(),
                prediction: "SELECT * FROM t WHERE year = 2010;".into(),
                error: None,
            },
            FailureExample {
                outcome: Outcome::SyntaxError,
                request: "Count the rows".into(),
                gold: "SELECT COUNT(*) FROM t;".into(),
                prediction: "SELECT COUNT(* FROM `t`".into(),
                error: Some("sqlite: near \"FROM\": syntax error".into()),
            },
        ],
        suite_caught: None,
        suite_caught_examples: Vec::new(),
    }
}

fn sample() -> ReportData {
    ReportData {
        title: "rank sweep".into(),
        run: RunInfo {
            id: 3,
            pipeline: "quickstart".into(),
            started: "2026-11-26 10:00:00".into(),
            ended: Some("2026-11-26 10:15:00".into()),
            status: "succeeded".into(),
            host: "ci".into(),
            t2s_version: "0.1.0".into(),
            facts: BTreeMap::from([("device".to_string(), "cpu".to_string())]),
        },
        compare: None,
        variants: vec![
            variant("base", 0.1),
            variant("lora_r=4", 0.4),
            variant("lora_r=8", 0.45),
        ],
        paired: vec![PairedComparison {
            a: "lora_r=4".into(),
            b: "base".into(),
            metric: "execution_accuracy".into(),
            diff: 0.3,
            lo: 0.22,
            hi: 0.38,
            p_value: 0.00001,
            n: 200,
        }],
        loss_curves: vec![LossCurve {
            name: "lora_r=4".into(),
            train: (1..50).map(|s| (s, 3.0 / s as f64 + 0.5)).collect(),
            eval: vec![(10, 1.0), (20, 0.8), (30, 0.85)],
        }],
        nodes: vec![NodeInfo {
            id: "train[lora_r=4]".into(),
            kind: "train".into(),
            status: "ran".into(),
            key: "0123456789abcdef".into(),
            duration_s: Some(12.5),
        }],
        eda_figures: vec![],
        search: None,
        notes: vec!["alpha fixed at 16 changes the LoRA scale with r".into()],
    }
}

#[test]
fn writes_markdown_html_and_figures_with_every_section() {
    let dir = tempfile::tempdir().unwrap();
    report::write(&sample(), dir.path()).unwrap();
    let md = std::fs::read_to_string(dir.path().join("report.md")).unwrap();
    let html = std::fs::read_to_string(dir.path().join("report.html")).unwrap();
    for section in report::markdown::SECTIONS {
        assert!(
            md.contains(&format!("## {section}")),
            "markdown lacks {section}"
        );
        assert!(
            html.contains(&format!(">{section}</h2>")),
            "html lacks {section}"
        );
    }
    assert!(md.contains("lora_r=4 beats base on execution accuracy by +30.0 points"));
    assert!(
        md.contains("| lora_r=8 | 200 | 45.0 [40.0, 50.0] |"),
        "{md}"
    );
    // Outcomes per variant, then how the best variant (lora_r=8) fails.
    assert!(
        md.contains("| Runs, wrong result | 170 (85.0%) | 110 (55.0%) | 100 (50.0%) |"),
        "{md}"
    );
    assert!(md.contains("| Syntax error | 10 (5.0%) |"), "{md}");
    assert!(
        !md.contains("| No SQL |"),
        "outcomes nobody has are left out"
    );
    assert!(md.contains("### How lora_r=8 fails: examples"), "{md}");
    assert!(
        md.contains("  - predicted: `SELECT COUNT(* FROM 't'`"),
        "{md}"
    );
    // Request text is text, never markup: the <b> shows as written.
    assert!(html.contains("Show &lt;b&gt;lora_r=8&lt;/b&gt;"), "{html}");
    assert!(!html.contains("<b>lora_r=8</b>"));
    for fig in ["metrics.png", "loss.png", "by_complexity.png"] {
        let bytes = std::fs::read(dir.path().join(fig)).unwrap();
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "{fig} is not a PNG");
        assert!(md.contains(&format!("]({fig})")));
    }
    // Self-contained: every image is a data URI, nothing points at a file.
    assert_eq!(html.matches("<img").count(), 3);
    assert_eq!(html.matches("src=\"data:image/svg+xml;base64,").count(), 3);
    assert!(!html.contains(".png\""));
    // No temp files left behind.
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty());
}

#[test]
fn a_search_gets_its_section_table_and_figure() {
    let trial = |r: i64, lr: f64, value: Option<f64>, steps: u64| {
        serde_json::json!({"params": {"lora_r": r, "lr": lr}, "value": value,
            "rungs": if value.is_some() { vec![] } else { vec![(steps, 1.25)] }, "steps": steps})
    };
    let outcome: t2s::search::Outcome = serde_json::from_value(serde_json::json!({
        "stage": "train", "metric": "execution_accuracy", "mode": "max", "strategy": "tpe",
        "trials": [trial(4, 0.001, Some(0.25), 400), trial(8, 0.0042, Some(0.31), 400),
                   trial(16, 0.0005, None, 50)],
        "best": 1, "steps_spent": 850, "grid_steps": 10800, "grid_trials": 27}))
    .unwrap();
    let data = ReportData {
        search: Some(outcome),
        ..sample()
    };
    let dir = tempfile::tempdir().unwrap();
    report::write(&data, dir.path()).unwrap();
    let md = std::fs::read_to_string(dir.path().join("report.md")).unwrap();
    assert!(md.contains("## Search"), "{md}");
    assert!(
        md.contains(
            "TPE search of stage `train` for `execution_accuracy` (higher is better): 3 trials."
        ),
        "{md}"
    );
    assert!(
        md.contains("| **2 (best)** | 8 | 0.0042 | 400 |  | **0.3100** |"),
        "{md}"
    );
    assert!(
        md.contains("| 3 | 16 | 0.0005 | 50 | 1.2500 @ 50 | stopped |"),
        "{md}"
    );
    assert!(md.contains("850 optimizer steps, 8% of the 10800"), "{md}");
    assert!(md.contains("](search.png)"), "{md}");
    let png = std::fs::read(dir.path().join("search.png")).unwrap();
    assert_eq!(&png[..4], b"\x89PNG");
}

#[test]
fn eda_figures_travel_with_the_report_and_are_linked_relatively() {
    // Two EDA nodes' figures, one name shared: both kept, numbered.
    let store = tempfile::tempdir().unwrap();
    let png = |dir: &str, name: &str, shade: u8| {
        let path = store.path().join(dir).join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let img = image::RgbImage::from_pixel(4, 3, image::Rgb([shade, 0, 0]));
        img.save(&path).unwrap();
        path
    };
    let mut data = sample();
    data.eda_figures = vec![
        png("eda1/figures", "complexity.png", 10),
        png("eda2/figures", "complexity.png", 200),
        png("eda2/figures", "tokens.png", 90),
    ];
    let dir = tempfile::tempdir().unwrap();
    report::write(&data, dir.path()).unwrap();
    let md = std::fs::read_to_string(dir.path().join("report.md")).unwrap();
    for (link, source) in [
        ("eda/1-complexity.png", &data.eda_figures[0]),
        ("eda/2-complexity.png", &data.eda_figures[1]),
        ("eda/tokens.png", &data.eda_figures[2]),
    ] {
        assert!(md.contains(&format!("]({link})")), "{link} in\n{md}");
        assert_eq!(
            std::fs::read(dir.path().join(link)).unwrap(),
            std::fs::read(source).unwrap()
        );
    }
    let store_path = store.path().display().to_string();
    assert!(
        !md.contains(&store_path),
        "no absolute path in the Markdown"
    );
    let html = std::fs::read_to_string(dir.path().join("report.html")).unwrap();
    assert!(!html.contains("src=\"eda/"), "the HTML embeds every figure");
    assert!(!html.contains(&store_path));
}

#[test]
fn text_from_the_data_is_never_markup_in_the_html() {
    // Class names come from the dataset and notes from the pipeline file: neither may run as
    // HTML in the report or break its tables.
    let mut data = sample();
    for v in &mut data.variants {
        v.breakdowns.insert(
            "domain".into(),
            vec![
                Breakdown {
                    class: "<script>alert(1)</script>".into(),
                    n: 10,
                    value: 0.5,
                },
                Breakdown {
                    class: "a|b".into(),
                    n: 5,
                    value: 0.2,
                },
            ],
        );
    }
    data.notes
        .push("<img src=x onerror=alert(2)> and <div>raw</div>".into());
    let dir = tempfile::tempdir().unwrap();
    report::write(&data, dir.path()).unwrap();
    let html = std::fs::read_to_string(dir.path().join("report.html")).unwrap();
    assert!(!html.contains("<script"), "{html}");
    assert!(!html.contains("<img src=x"), "{html}");
    assert!(!html.contains("<div>"), "{html}");
    assert!(
        html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "{html}"
    );
    assert!(
        html.contains("&lt;img src=x onerror=alert(2)&gt;"),
        "{html}"
    );
    // `a|b` is one cell: its row has the class cell and one per variant.
    let row = html
        .split("<tr>")
        .find(|r| r.contains("a|b"))
        .unwrap_or_else(|| panic!("no row for a|b: {html}"));
    assert_eq!(row.matches("<td").count(), 1 + data.variants.len(), "{row}");
}

#[test]
fn empty_run_still_renders_all_sections() {
    let mut data = sample();
    data.variants.clear();
    data.paired.clear();
    data.loss_curves.clear();
    let dir = tempfile::tempdir().unwrap();
    report::write(&data, dir.path()).unwrap();
    let md = std::fs::read_to_string(dir.path().join("report.md")).unwrap();
    assert!(md.contains("fewer than two evaluated variants"));
    assert!(!dir.path().join("metrics.png").exists());
}

#[test]
#[ignore = "writes a sample report to $T2S_REPORT_SAMPLE for a person to look at"]
fn sample_report_for_eyes() {
    let dir =
        std::env::var("T2S_REPORT_SAMPLE").unwrap_or_else(|_| "/tmp/t2s-report-sample".into());
    report::write(&sample(), std::path::Path::new(&dir)).unwrap();
}
