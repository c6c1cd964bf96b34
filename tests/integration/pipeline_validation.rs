//! User-facing text of pipeline validation errors (snapshot-tested) and its guarantees:
//! every problem listed, sorted, with file:line:column, field path and a hint.

use std::path::{Path, PathBuf};

use t2s::pipeline::{load, Diagnostics};

fn fixture(name: &str) -> PathBuf {
    Path::new("tests/fixtures/pipelines").join(name)
}

fn problems(name: &str, sets: &[&str]) -> Diagnostics {
    let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
    match load(&fixture(name), &sets) {
        Ok(p) => panic!("{name} loaded but should not have: {} nodes", p.nodes.len()),
        Err(d) => d,
    }
}

fn text(name: &str, sets: &[&str]) -> String {
    let d = problems(name, sets);
    // Every problem carries a position and a message; positions are sorted.
    for x in d.iter() {
        assert!(x.line >= 1 && x.column >= 1, "{x}");
        assert!(!x.message.is_empty());
    }
    let keys: Vec<(bool, usize, usize)> = d
        .iter()
        .map(|x| (x.file.as_os_str() == "<--set>", x.line, x.column))
        .collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(keys, sorted, "diagnostics are not sorted");
    d.to_string()
}

#[test]
fn malformed_yaml_is_one_problem_at_the_parser_position() {
    let d = problems("malformed.yaml", &[]);
    assert_eq!(d.len(), 1);
    insta::assert_snapshot!("malformed", d.to_string());
}

#[test]
fn unknown_kind() {
    insta::assert_snapshot!("unknown_kind", text("unknown_kind.yaml", &[]));
}

#[test]
fn unknown_fields_top_level_stage_and_settings() {
    let t = text("unknown_field.yaml", &[]);
    assert!(t.contains("did you mean `description`?"), "{t}");
    assert!(t.contains("did you mean `needs`?"), "{t}");
    assert!(t.contains("did you mean `device`?"), "{t}");
    insta::assert_snapshot!("unknown_field", t);
}

#[test]
fn unknown_params() {
    let t = text("unknown_param.yaml", &[]);
    assert!(t.contains("did you mean `outs`?"), "{t}");
    insta::assert_snapshot!("unknown_param", t);
}

#[test]
fn wrong_types() {
    let d = problems("wrong_type.yaml", &[]);
    let paths: Vec<&str> = d.iter().map(|x| x.path.as_str()).collect();
    assert!(paths.contains(&"stages.load.params.cmd"), "{paths:?}");
    assert!(paths.contains(&"stages.load.params.deps"), "{paths:?}");
    assert!(paths.contains(&"stages.load.params.outs[1]"), "{paths:?}");
    assert!(paths.contains(&"stages.load.params.env.SEED"), "{paths:?}");
    assert!(paths.contains(&"stages.eda.gather"), "{paths:?}");
    insta::assert_snapshot!("wrong_type", text("wrong_type.yaml", &[]));
}

#[test]
fn cycle_names_its_members_and_self_need() {
    let t = text("cycle.yaml", &[]);
    assert!(t.contains("a -> c -> b -> a"), "{t}");
    assert!(t.contains("stage `d` needs itself"), "{t}");
    insta::assert_snapshot!("cycle", t);
}

/// Several cycles through the same stages are one problem, naming the shortest cycle through
/// the knot's first stage: `a -> b -> a` here, not the longer `a -> b -> c -> a`.
#[test]
fn a_knot_of_cycles_is_one_problem_naming_its_shortest_cycle() {
    let src = "stages:\n  a: {kind: command, needs: [b], params: {cmd: x}}\n  \
               b: {kind: command, needs: [c, a], params: {cmd: x}}\n  \
               c: {kind: command, needs: [a], params: {cmd: x}}\n";
    let d = t2s::pipeline::load_source(Path::new("knot.yaml"), src, &[]).unwrap_err();
    let t = d.to_string();
    assert_eq!(d.iter().count(), 1, "{t}");
    assert!(
        t.contains("knot.yaml:2:30: stages.a.needs[0]: stages form a cycle: a -> b -> a"),
        "{t}"
    );
}

#[test]
fn missing_needs() {
    let t = text("missing_needs.yaml", &[]);
    assert!(t.contains("did you mean `preprocess`?"), "{t}");
    insta::assert_snapshot!("missing_needs", t);
}

#[test]
fn unused_matrix_key_and_unknown_reference() {
    insta::assert_snapshot!("unused_matrix", text("unused_matrix.yaml", &[]));
}

#[test]
fn empty_matrix() {
    insta::assert_snapshot!("empty_matrix", text("empty_matrix.yaml", &[]));
}

#[test]
fn matrix_scope_problems() {
    insta::assert_snapshot!("matrix_scope", text("matrix_scope.yaml", &[]));
}

#[test]
fn several_problems_are_all_listed() {
    let d = problems("many_problems.yaml", &[]);
    assert!(d.len() >= 6, "{d}");
    insta::assert_snapshot!("many_problems", text("many_problems.yaml", &[]));
}

#[test]
fn bad_set_arguments() {
    let sets = [
        "trian.cmd=echo",
        "train.cmdd=echo",
        "load.deps=[a, b",
        "load.cmd",
        "load",
        "split.deps=5",
    ];
    let d = problems("sweep.yaml", &sets);
    assert!(d.iter().all(|x| x.file == Path::new("<--set>")), "{d}");
    assert_eq!(d.len(), sets.len(), "{d}");
    insta::assert_snapshot!("bad_set", text("sweep.yaml", &sets));
}

#[test]
fn set_problems_come_after_file_problems() {
    let t = text("unknown_param.yaml", &["load.cmd=[1"]);
    let file_at = t.find("unknown_param.yaml:").unwrap();
    let set_at = t.find("<--set>:").unwrap();
    assert!(file_at < set_at, "{t}");
}

#[test]
fn missing_file_is_a_diagnostic() {
    let d = problems("does_not_exist.yaml", &[]);
    assert_eq!(d.len(), 1);
    assert!(
        d.to_string().contains("cannot read the pipeline file"),
        "{d}"
    );
}

#[test]
fn diagnostics_is_an_error_with_every_problem_in_its_text() {
    let d = problems("many_problems.yaml", &[]);
    let e: Box<dyn std::error::Error> = Box::new(d.clone());
    assert_eq!(
        e.to_string()
            .lines()
            .filter(|l| !l.starts_with("  hint:"))
            .count(),
        d.len()
    );
}

/// Odd inputs never panic: each either loads or gives diagnostics.
#[test]
fn odd_inputs_never_panic() {
    let cases = [
        "",
        "---\n",
        "[]",
        "42",
        "stages:",
        "stages: []",
        "stages: {}",
        "stages: {a: 1}",
        "stages: {a: {kind: [1]}}",
        "stages: {a: {kind: command, params: 5}}",
        "stages: {a: {kind: command, params: {cmd: x}, matrix: 3}}",
        "stages: {a: {kind: command, params: {cmd: x}, matrix: {k: [[1]]}}}",
        "stages: {a: {kind: command, params: {cmd: x}, needs: {b: 1}}}",
        "stages: {? [a] : b}",
        "a: &x [*x]",
        "a: &a [1]\nb: *a\nstages: {s: {kind: command, params: {cmd: *a}}}",
        "stages: {a: {kind: command, params: {cmd: .inf}}}",
        "stages: {a: {kind: command, params: {cmd: x}}}\n---\nstages: {}",
        "stages: {\"a b\": {kind: command, params: {cmd: x}}}",
        "stages: {a: {kind: command, params: {cmd: x, cmd: y}}}",
        "\u{feff}stages: {a: {kind: command, params: {cmd: x}}}",
        "\t\tstages:",
        "stages: {a: {kind: command, params: {cmd: '${matrix.'}}}",
    ];
    let dir = tempfile::tempdir().unwrap();
    for (i, src) in cases.iter().enumerate() {
        let f = dir.path().join(format!("case{i}.yaml"));
        std::fs::write(&f, src).unwrap();
        for sets in [
            vec![],
            vec!["a.cmd={".to_string()],
            vec!["=".to_string(), ".=".to_string()],
        ] {
            let r = std::panic::catch_unwind(|| load(&f, &sets));
            assert!(r.is_ok(), "panicked on case {i}: {src:?}");
            if let Ok(Err(d)) = r {
                assert!(!d.is_empty(), "case {i}: error without diagnostics");
            }
        }
    }
}

/// Random small edits of a valid file (deleted, inserted or replaced YAML-significant
/// characters) never panic and never fail without a diagnostic.
#[test]
fn mutated_files_never_panic() {
    use rand::{Rng, SeedableRng};
    let src = std::fs::read_to_string(fixture("sweep.yaml")).unwrap();
    let chars: Vec<char> = src.chars().collect();
    let alphabet = [
        ':', '[', ']', '{', '}', '-', ' ', '\n', '"', '\'', '$', '#', '&', '*', '!', 'a', '1',
        '\t', ',', '?', '|',
    ];
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("mutant.yaml");
    let (mut ok, mut failed) = (0, 0);
    for _ in 0..500 {
        let mut c = chars.clone();
        for _ in 0..rng.random_range(1..4) {
            let pos = rng.random_range(0..c.len());
            let new = alphabet[rng.random_range(0..alphabet.len())];
            match rng.random_range(0..3) {
                0 => {
                    c.remove(pos);
                }
                1 => c.insert(pos, new),
                _ => c[pos] = new,
            }
        }
        let text: String = c.into_iter().collect();
        std::fs::write(&f, &text).unwrap();
        match std::panic::catch_unwind(|| load(&f, &[])) {
            Err(_) => panic!("panicked on:\n{text}"),
            Ok(Ok(_)) => ok += 1,
            Ok(Err(d)) => {
                assert!(!d.is_empty(), "error without diagnostics on:\n{text}");
                failed += 1;
            }
        }
    }
    // The mutations exercise both paths.
    assert!(ok > 0 && failed > 0, "ok {ok}, failed {failed}");
}

#[test]
fn oversized_matrix_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("big.yaml");
    let values: Vec<String> = (0..30).map(|i| i.to_string()).collect();
    let list = values.join(", ");
    std::fs::write(
        &f,
        format!(
            "stages:\n  s:\n    kind: command\n    matrix: {{a: [{list}], b: [{list}], c: [{list}]}}\n    params:\n      cmd: echo ${{matrix.a}} ${{matrix.b}} ${{matrix.c}}\n"
        ),
    )
    .unwrap();
    let d = load(&f, &[]).unwrap_err();
    assert!(d.to_string().contains("more than 10000 instances"), "{d}");
}

#[test]
fn oversized_combination_of_needs_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("big2.yaml");
    let list = (0..200)
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join(", ");
    std::fs::write(
        &f,
        format!(
            "stages:\n  a:\n    kind: command\n    matrix: {{x: [{list}]}}\n    params: {{cmd: 'a ${{matrix.x}}'}}\n  \
             b:\n    kind: command\n    matrix: {{y: [{list}]}}\n    params: {{cmd: 'b ${{matrix.y}}'}}\n  \
             c:\n    kind: command\n    needs: [a, b]\n    params: {{cmd: c}}\n"
        ),
    )
    .unwrap();
    let d = load(&f, &[]).unwrap_err();
    assert_eq!(d.len(), 1, "{d}");
    assert!(
        d.to_string()
            .contains("combining its needs gives stage `c` more than 10000 instances"),
        "{d}"
    );
}

#[test]
fn slurm_blocks_and_executor() {
    let d = problems("slurm_block.yaml", &[]);
    let paths: Vec<&str> = d.iter().map(|x| x.path.as_str()).collect();
    for p in [
        "settings.executor",
        "settings.slurm.tme",
        "stages.train.slurm.gres",
        "stages.train.slurm.cpus",
        "stages.train.slurm.mem",
        "stages.train.slurm.time",
        "stages.train.slurm.account",
        "stages.train.slurm.extra_args[1]",
        "stages.report.slurm.extra_args[0]",
        "stages.eval.slurm",
    ] {
        assert!(paths.contains(&p), "{p} not in {paths:?}");
    }
    insta::assert_snapshot!("slurm_block", text("slurm_block.yaml", &[]));
}

#[test]
fn x_prefixed_top_level_fields_hold_yaml_anchors_and_are_otherwise_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("p.yaml");
    std::fs::write(
        &file,
        "name: anchors\n\
         x-domains: &domains [banking, music]\n\
         stages:\n  \
           a:\n    kind: load\n    params: {source: \"builtin:10\", domains: *domains}\n  \
           b:\n    kind: load\n    params: {source: \"builtin:20\", domains: *domains}\n",
    )
    .unwrap();
    let p = load(&file, &[]).unwrap_or_else(|d| panic!("{d}"));
    assert_eq!(p.nodes.len(), 2);
    for n in &p.nodes {
        assert_eq!(n.params["domains"], serde_json::json!(["banking", "music"]));
    }
    // Only `x-` is free-form: another unknown top-level field is still an error.
    std::fs::write(
        &file,
        "name: p\ny-domains: []\nstages:\n  a: {kind: load}\n",
    )
    .unwrap();
    let d = load(&file, &[]).unwrap_err().to_string();
    assert!(d.contains("unknown field `y-domains`"), "{d}");
}

#[test]
fn model_config_is_checked_when_the_pipeline_is_read() {
    let d = problems("bad_model_config.yaml", &[]);
    let found: Vec<(&str, usize)> = d.iter().map(|x| (x.path.as_str(), x.line)).collect();
    assert_eq!(
        found,
        [
            ("stages.tiny.params.model_config.num_layers", 19),
            ("stages.heads.params.model_config.num_attention_heads", 26),
            ("stages.scale.params.model_config.query_pre_attn_scalar", 34),
            ("stages.pretrained.params.model_config", 40),
        ]
    );
    insta::assert_snapshot!("bad_model_config", text("bad_model_config.yaml", &[]));
}

/// The smoke pipeline loaded with `sets`; with `device`, `settings.device` is set and the
/// train stages' own `device: auto` lines are dropped (its evaluate stages keep theirs).
fn smoke_on(device: Option<&str>, sets: &[&str]) -> Result<t2s::pipeline::Pipeline, String> {
    let text = std::fs::read_to_string("pipelines/smoke.yaml").unwrap();
    let text = match device {
        Some(d) => text
            .replace(
                "settings: {jobs: 1}",
                &format!("settings: {{jobs: 1, device: {d}}}"),
            )
            .replace("      device: auto\n", ""),
        None => text,
    };
    let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
    t2s::pipeline::load_source(Path::new("smoke.yaml"), &text, &sets).map_err(|d| d.to_string())
}

/// Regression: `settings.device` was parsed, stored and documented, and nothing read it.
#[test]
fn settings_device_is_the_default_device_of_every_stage_that_takes_one() {
    let p = smoke_on(Some("cpu"), &[]).unwrap();
    let node = |id: &str| p.nodes.iter().find(|n| n.id.starts_with(id)).unwrap();
    assert_eq!(node("train").params["device"], "cpu");
    assert_eq!(node("base").params["device"], "cpu");
    assert!(!node("train").gpu);
    assert_eq!(
        node("evaluate_base").params["device"],
        "auto",
        "a stage's own device wins"
    );
    assert!(
        !node("split").params.contains_key("device"),
        "split takes no device"
    );

    let e = smoke_on(Some("gpu0"), &[]).unwrap_err();
    assert!(
        e.contains("settings.device") && e.contains("`gpu0` is not a device"),
        "{e}"
    );
    assert!(e.contains("one of auto, cpu, cuda, cuda:N"), "{e}");
}

/// Regression: with `device: auto`, `train` asked whether a GPU is present but `evaluate`
/// claimed a GPU slot for anything but `cpu`, so on a CPU-only host evaluate nodes queued for
/// a GPU slot. Both now decide the same way, on any host.
#[test]
fn train_and_evaluate_decide_gpu_use_the_same_way() {
    let p = smoke_on(None, &[]).unwrap();
    let gpu = |id: &str| p.nodes.iter().find(|n| n.id.starts_with(id)).unwrap().gpu;
    assert_eq!(gpu("train"), gpu("evaluate_base"));
}

/// Regression: `--set preprocess.max_length=-5` was accepted and ran with 512 (a negative
/// integer passed the type check, then the stage fell back to its default); the same for
/// counts, sizes and seeds of other kinds.
#[test]
fn negative_counts_sizes_and_seeds_are_refused_with_their_field() {
    let sets = [
        "preprocess.max_length=-5",
        "tokenizer.vocab_size=-1",
        "split.seed=-3",
        "load.limit=-2",
        "train.batch_size=-4",
    ];
    let e = smoke_on(None, &sets).unwrap_err();
    for set in sets {
        let value = set.split('=').nth(1).unwrap();
        let want = format!("{set}: expected a non-negative integer, found the number {value}");
        assert!(e.contains(&want), "{set}:\n{e}");
    }
    assert!(e.contains("cannot be negative"), "{e}");
}

/// A param whose type has no words of its own (`betas`: a list of numbers) keeps serde's
/// words for what it expected, and what is inside it is reported at its element.
#[test]
fn wrong_values_in_a_list_param_are_reported_in_plain_words() {
    let e = smoke_on(None, &["train.betas=0.9", "train.lr=fast"]).unwrap_err();
    let want = "train.betas=0.9: expected a list, found the number 0.9\n  hint: write a list";
    assert!(e.contains(want), "{e}");
    let want = "train.lr=fast: expected a number, found the string \"fast\"";
    assert!(e.contains(want), "{e}");
    let e = smoke_on(None, &["train.betas=[0.9, high]"]).unwrap_err();
    assert!(
        e.contains("train.betas=[0.9, high]: expected a number, found the string \"high\""),
        "{e}"
    );
}
