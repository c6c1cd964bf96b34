//! Valid pipelines: matrix expansion, inherited fan-out, gather, substitution, overrides,
//! topological order, and the `t2s dag` renderings.

use std::path::Path;

use serde_json::json;
use t2s::pipeline::{load, render, Pipeline};

fn sweep(sets: &[&str]) -> Pipeline {
    let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
    load(Path::new("tests/fixtures/pipelines/sweep.yaml"), &sets).unwrap_or_else(|d| panic!("{d}"))
}

fn ids(p: &Pipeline) -> Vec<&str> {
    p.nodes.iter().map(|n| n.id.as_str()).collect()
}

#[test]
fn matrix_expansion_and_inherited_fan_out() {
    let p = sweep(&[]);
    assert_eq!(p.name, "sweep");
    assert_eq!(p.description.as_deref(), Some("positive test pipeline"));
    assert_eq!(p.settings.jobs, Some(3));
    assert_eq!(p.settings.device.as_deref(), Some("cuda:0"));
    assert_eq!(
        ids(&p),
        [
            "load",
            "split",
            "train[lora_r=4]",
            "train[lora_r=8]",
            "train[lora_r=16]",
            "decode[temperature=0.0]",
            "decode[temperature=0.7]",
            // evaluate needs train (lora_r) and decode (temperature): all combinations.
            "evaluate[lora_r=4,temperature=0.0]",
            "evaluate[lora_r=4,temperature=0.7]",
            "evaluate[lora_r=8,temperature=0.0]",
            "evaluate[lora_r=8,temperature=0.7]",
            "evaluate[lora_r=16,temperature=0.0]",
            "evaluate[lora_r=16,temperature=0.7]",
            "report",
        ]
    );
    let e = p.node("evaluate[lora_r=8,temperature=0.7]").unwrap();
    assert_eq!(
        e.needs,
        ["train[lora_r=8]", "split", "decode[temperature=0.7]"]
    );
    assert_eq!(e.matrix.get("lora_r"), Some(&json!(8)));
    assert_eq!(
        e.params["cmd"],
        json!("evaluate --rank 8 --temperature 0.7")
    );
    assert_eq!(e.stage, "evaluate");
    assert_eq!(e.kind, "command");
}

#[test]
fn gather_receives_every_instance_in_order() {
    let p = sweep(&[]);
    let r = p.node("report").unwrap();
    assert!(r.gather);
    assert!(r.matrix.is_empty());
    assert_eq!(r.needs.len(), 6);
    assert_eq!(r.needs[0], "evaluate[lora_r=4,temperature=0.0]");
    assert_eq!(r.needs[5], "evaluate[lora_r=16,temperature=0.7]");
}

#[test]
fn substitution_keeps_types_and_fills_defaults() {
    let p = sweep(&[]);
    let t = p.node("train[lora_r=16]").unwrap();
    assert_eq!(t.params["cmd"], json!("train --rank 16"));
    // StrMap values are text; the typed value 16 becomes "16".
    assert_eq!(t.params["env"], json!({"RANK": "16", "LABEL": "r16"}));
    assert_eq!(t.params["deps"], json!([]));
    assert_eq!(t.params["outs"], json!([]));
    assert!(t.gpu, "gpu: true on the stage");
    assert!(!p.node("load").unwrap().gpu);
}

#[test]
fn override_applies_to_every_instance() {
    let p = sweep(&[
        "train.cmd=fit ${matrix.lora_r}",
        "train.outs=[a.bin, b.bin]",
        "load.env={SEED: 7}",
    ]);
    for r in [4, 8, 16] {
        let t = p.node(&format!("train[lora_r={r}]")).unwrap();
        assert_eq!(t.params["cmd"], json!(format!("fit {r}")));
        assert_eq!(t.params["outs"], json!(["a.bin", "b.bin"]));
    }
    assert_eq!(p.node("load").unwrap().params["env"], json!({"SEED": "7"}));
}

#[test]
fn override_text_with_a_colon_is_a_string() {
    let p = sweep(&["load.cmd=echo a: b"]);
    assert_eq!(p.node("load").unwrap().params["cmd"], json!("echo a: b"));
}

#[test]
fn nodes_are_in_topological_order_and_graph_matches() {
    let p = sweep(&[]);
    for (i, n) in p.nodes.iter().enumerate() {
        for need in &n.needs {
            let j = p
                .index_of(need)
                .unwrap_or_else(|| panic!("{need} is not a node"));
            assert!(j < i, "{} comes before its need {need}", n.id);
        }
    }
    let g = p.graph();
    assert_eq!(g.node_count(), p.nodes.len());
    assert_eq!(
        g.edge_count(),
        p.nodes.iter().map(|n| n.needs.len()).sum::<usize>()
    );
    let topo = petgraph::algo::toposort(&g, None).expect("acyclic");
    assert_eq!(topo.len(), p.nodes.len());
    let deps: Vec<&str> = p
        .dependents("train[lora_r=4]")
        .iter()
        .map(|n| n.id.as_str())
        .collect();
    assert_eq!(
        deps,
        [
            "evaluate[lora_r=4,temperature=0.0]",
            "evaluate[lora_r=4,temperature=0.7]",
            "report"
        ]
    );
    let up: Vec<&str> = p
        .ancestors_and_self("evaluate[lora_r=4,temperature=0.0]")
        .iter()
        .map(|n| n.id.as_str())
        .collect();
    assert_eq!(
        up,
        [
            "load",
            "split",
            "train[lora_r=4]",
            "decode[temperature=0.0]",
            "evaluate[lora_r=4,temperature=0.0]"
        ]
    );
}

#[test]
fn file_digest_and_name_default() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("tiny.yaml");
    std::fs::write(
        &f,
        "stages:\n  only:\n    kind: command\n    params: {cmd: 'true'}\n",
    )
    .unwrap();
    let p = load(&f, &[]).unwrap();
    assert_eq!(p.name, "tiny");
    assert_eq!(
        p.file_digest,
        blake3::hash(&std::fs::read(&f).unwrap())
            .to_hex()
            .to_string()
    );
    assert_eq!(p.dir(), dir.path());
    std::fs::write(
        &f,
        "stages:\n  only:\n    kind: command\n    params: {cmd: 'false'}\n",
    )
    .unwrap();
    assert_ne!(load(&f, &[]).unwrap().file_digest, p.file_digest);
}

#[test]
fn example_commands_pipeline_has_the_rank_sweep_shape() {
    let p =
        load(Path::new("pipelines/examples/commands.yaml"), &[]).unwrap_or_else(|d| panic!("{d}"));
    assert_eq!(p.nodes.len(), 11);
    assert_eq!(ids(&p), crate::common::NODES);
    assert_eq!(
        p.node("evaluate[lora_r=8]").unwrap().needs,
        ["train[lora_r=8]", "split"]
    );
    insta::assert_snapshot!("commands_text", render::text(&p));
}

#[test]
fn render_outputs() {
    let p = sweep(&[]);
    insta::assert_snapshot!("sweep_text", render::text(&p));
    insta::assert_snapshot!("sweep_dot", render::dot(&p));
    insta::assert_snapshot!("sweep_mermaid", render::mermaid(&p));
}
