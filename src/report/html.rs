//! The self-contained HTML report: the Markdown report rendered with pulldown-cmark, every
//! figure embedded as a data URI (SVG for report plots, PNG for EDA figures), one CSS block.
//! No external resources, so the file opens anywhere and can be mailed around.

use base64::Engine;
use pulldown_cmark::{html, CowStr, Event, Options, Parser, Tag};

use super::markdown;
use super::model::ReportData;
use super::plots::{read_png, Figures};

const CSS: &str = "body{font-family:system-ui,-apple-system,'DejaVu Sans',sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222;line-height:1.45}\
table{border-collapse:collapse;margin:1em 0;font-size:0.85em;display:block;max-width:100%;overflow-x:auto}th,td{border:1px solid #ccc;padding:4px 6px}\
th{background:#f3f3f3}td{text-align:right;white-space:nowrap}td:first-child{text-align:left}img{max-width:100%;height:auto;border:1px solid #eee}\
code{background:#f5f5f5;padding:0 3px}h1{border-bottom:2px solid #4c72b0}h2{margin-top:1.8em;border-bottom:1px solid #ddd}";

pub fn render(data: &ReportData, figures: &Figures) -> String {
    let md = markdown::render(data, figures);
    let b64 = base64::engine::general_purpose::STANDARD;
    let parser = Parser::new_ext(&md, Options::ENABLE_TABLES).map(|ev| match ev {
        Event::Start(Tag::Image {
            link_type,
            dest_url,
            title,
            id,
        }) => {
            let url = embed(&dest_url, figures, data, &b64)
                .map(CowStr::from)
                .unwrap_or(dest_url);
            Event::Start(Tag::Image {
                link_type,
                dest_url: url,
                title,
                id,
            })
        }
        // Nothing in the report is markup of its own: HTML in the text (a dataset's class
        // names, a model's output, the pipeline's notes) is shown as written, never run.
        Event::Html(raw) | Event::InlineHtml(raw) => Event::Text(raw),
        other => other,
    });
    let mut body = String::new();
    html::push_html(&mut body, parser);
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title><style>{CSS}</style></head>\n<body>\n{body}</body></html>\n",
        escape(&data.title)
    )
}

fn embed(
    url: &str,
    figures: &Figures,
    data: &ReportData,
    b64: &base64::engine::GeneralPurpose,
) -> Option<String> {
    if let Some(f) = figures
        .list
        .iter()
        .find(|f| format!("{}.png", f.name) == url)
    {
        return Some(format!(
            "data:image/svg+xml;base64,{}",
            b64.encode(f.svg.as_bytes())
        ));
    }
    let (eda, _) = data
        .eda_figures
        .iter()
        .zip(super::eda_links(&data.eda_figures))
        .find(|(_, link)| link == url)?;
    let bytes = read_png(eda).ok()?;
    Some(format!("data:image/png;base64,{}", b64.encode(bytes)))
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
