//! `--set stage.param=value` overrides, applied to the raw stages before validation so an
//! overridden value is checked like one written in the file (and reported at the argument).

use super::diag::{suggest, Collector};
use super::raw::RawStage;
use super::yaml::{self, YKind};
use crate::stages::registry;

/// Apply every `--set` argument to `stages`; problems go to `diags`.
pub fn apply(args: &[String], stages: &mut [RawStage], diags: &mut Collector) {
    for (i, arg) in args.iter().enumerate() {
        apply_one(i, arg, stages, diags);
    }
}

fn at(i: usize, col: usize) -> yaml::Loc {
    yaml::Loc {
        set_arg: Some(i),
        line: i + 1,
        col,
    }
}

fn apply_one(i: usize, arg: &str, stages: &mut [RawStage], diags: &mut Collector) {
    let Some((target, text)) = arg.split_once('=') else {
        diags.add(
            at(i, 1),
            "",
            "missing `=`",
            Some("write `--set stage.param=value`".into()),
        );
        return;
    };
    let value_col = target.chars().count() + 2;
    let Some((stage_name, param)) = target.split_once('.') else {
        diags.add(
            at(i, 1),
            "",
            format!("`{target}` does not name a stage parameter"),
            Some("write `--set stage.param=value`".into()),
        );
        return;
    };
    let param_col = stage_name.chars().count() + 2;
    let Some(stage) = stages.iter_mut().find(|s| s.name.v == stage_name) else {
        let names: Vec<&str> = stages.iter().map(|s| s.name.v.as_str()).collect();
        diags.add(
            at(i, 1),
            "",
            format!("no stage named `{stage_name}`"),
            Some(suggest(stage_name, "stages", &names)),
        );
        return;
    };
    if let Some(kind) = stage.kind.as_ref().and_then(|k| registry::lookup(&k.v)) {
        let declared = kind.params().names();
        if !declared.contains(&param) {
            diags.add(
                at(i, param_col),
                "",
                format!("kind `{}` has no param `{param}`", kind.kind()),
                Some(suggest(param, "its params", &declared)),
            );
            return;
        }
    }
    let mut node = match yaml::parse(text) {
        Ok(Some(n)) => n,
        Ok(None) => yaml::YNode {
            loc: yaml::Loc::START,
            kind: YKind::Scalar {
                text: String::new(),
                plain: true,
                tag: None,
            },
        },
        Err(e) => {
            diags.add(
                at(i, value_col + e.loc.col.saturating_sub(1)),
                "",
                format!("cannot parse the value `{text}`: {}", e.message),
                Some(
                    "the value is YAML: quote strings with special characters, e.g. 'a: b'".into(),
                ),
            );
            return;
        }
    };
    // `--set s.cmd=echo a: b` parses as a block mapping; the user meant the text.
    let block = match &node.kind {
        YKind::Map(_) => !text.trim_start().starts_with('{'),
        YKind::Seq(_) => !text.trim_start().starts_with('['),
        YKind::Scalar { .. } => false,
    };
    if block {
        node.kind = YKind::Scalar {
            text: text.to_string(),
            plain: false,
            tag: None,
        };
        node.loc.col = 1;
    }
    node.relocate(i, value_col - 1);
    let path = format!("stages.{stage_name}.params.{param}");
    stage.locs.retain(|k, _| {
        !(k == &path || k.starts_with(&format!("{path}.")) || k.starts_with(&format!("{path}[")))
    });
    let value = match node.to_value_at(&path, &mut stage.locs) {
        Ok(v) => v,
        Err(e) => {
            diags.add(e.loc, &path, e.message, None);
            return;
        }
    };
    let key = super::raw::Sp {
        v: param.to_string(),
        loc: at(i, param_col),
    };
    match stage.params.iter_mut().find(|(k, _)| k.v == param) {
        Some(slot) => *slot = (key, value),
        None => stage.params.push((key, value)),
    }
}
