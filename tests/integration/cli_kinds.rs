//! `t2s kinds`: the params reference comes from the params structs, and docs/params.md is it.

use assert_cmd::Command;

fn t2s() -> Command {
    Command::cargo_bin("t2s").unwrap()
}

#[test]
fn docs_params_md_is_the_generated_reference() {
    let out = t2s().args(["kinds", "--markdown"]).output().unwrap();
    assert!(out.status.success());
    let generated = String::from_utf8(out.stdout).unwrap();
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/params.md");
    let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        generated == on_disk,
        "docs/params.md is not what `t2s kinds --markdown` prints: regenerate it with \
         `t2s kinds --markdown > docs/params.md`"
    );
    for kind in [
        "load",
        "eda",
        "tokenizer",
        "preprocess",
        "split",
        "model",
        "train",
        "evaluate",
        "report",
        "command",
    ] {
        assert!(generated.contains(&format!("\n## {kind}\n")), "{kind}");
    }
}

#[test]
fn one_kind_lists_its_params_with_types_and_defaults() {
    let out = t2s().args(["kinds", "train"]).output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.starts_with("train (version "), "{text}");
    assert!(
        text.contains("  lora_r: a non-negative integer; default 8\n      LoRA rank."),
        "{text}"
    );
    assert!(
        text.contains("  scheduler: one of `linear`, `cosine`, `constant`; default linear"),
        "{text}"
    );
    assert!(!text.contains("\nload ("), "only the kind asked for");
}

#[test]
fn an_unknown_kind_is_a_usage_error_with_a_suggestion() {
    let out = t2s().args(["kinds", "trian"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("no stage kind `trian`") && err.contains("did you mean `train`?"),
        "{err}"
    );
}
