//! `t2s completions SHELL` prints a completion script that knows every command and its flags.

use assert_cmd::Command;

#[test]
fn completion_scripts_name_the_commands_and_their_flags() {
    for (shell, marker) in [
        ("bash", "_t2s()"),
        ("zsh", "#compdef t2s"),
        ("fish", "complete -c t2s"),
    ] {
        let out = Command::cargo_bin("t2s")
            .unwrap()
            .args(["completions", shell])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{shell}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let script = String::from_utf8(out.stdout).unwrap();
        assert!(script.contains(marker), "{shell}: no `{marker}`");
        for word in ["run", "status", "diff", "export", "adapter", "dry-run"] {
            assert!(script.contains(word), "{shell}: `{word}` missing");
        }
    }
    let bad = Command::cargo_bin("t2s")
        .unwrap()
        .args(["completions", "cmd.exe"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("possible values"));
}
