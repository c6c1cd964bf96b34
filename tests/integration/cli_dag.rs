//! `t2s dag` prints the expanded graph as text, DOT or Mermaid, without touching the store.

use crate::common;

use common::Project;

fn dag(p: &Project, flag: Option<&str>) -> String {
    let out = p
        .t2s()
        .arg("dag")
        .arg(p.pipeline())
        .args(flag)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn dag_renders_all_eleven_nodes_in_each_format() {
    let p = Project::new();
    let text = dag(&p, None);
    let dot = dag(&p, Some("--dot"));
    let mermaid = dag(&p, Some("--mermaid"));
    assert!(dot.trim_start().starts_with("digraph"), "{dot}");
    assert!(
        mermaid.trim_start().starts_with("flowchart") || mermaid.trim_start().starts_with("graph"),
        "{mermaid}"
    );
    for node in common::NODES {
        assert!(text.contains(node), "text lacks {node}:\n{text}");
        assert!(dot.contains(node), "dot lacks {node}:\n{dot}");
    }
    assert!(
        !p.root().join("artifacts").exists(),
        "dag reads only the file"
    );
    let both = p
        .t2s()
        .arg("dag")
        .arg(p.pipeline())
        .args(["--dot", "--mermaid"])
        .output()
        .unwrap();
    assert_eq!(both.status.code(), Some(2));
}
