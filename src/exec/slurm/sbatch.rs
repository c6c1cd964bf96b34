//! Building and submitting a node's batch job: its files under
//! `<root>/experiments/slurm/<run>/<node>/` (`spec.json`, `job.sh`, `job.log`, `events.jsonl`,
//! `result.json`), the sbatch command line from the stage's resources, the job script, and
//! `sbatch --parsable`. Pure functions except [`submit`], so `--dry-run` prints exactly what a
//! run would submit.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::pipeline::Node;

/// The files of one node's job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobFiles {
    pub dir: PathBuf,
    pub spec: PathBuf,
    pub script: PathBuf,
    pub log: PathBuf,
    pub events: PathBuf,
    pub result: PathBuf,
}

/// Where the job files of run `run` go (`run` is a run id, or `<run>` in a dry run).
pub fn run_dir(root: &Path, run: &str) -> PathBuf {
    root.join("experiments").join("slurm").join(run)
}

impl JobFiles {
    pub fn new(run_dir: &Path, node_id: &str) -> Self {
        let dir = run_dir.join(dir_name(node_id));
        JobFiles {
            spec: dir.join("spec.json"),
            script: dir.join("job.sh"),
            log: dir.join("job.log"),
            events: dir.join("events.jsonl"),
            result: dir.join("result.json"),
            dir,
        }
    }
}

/// A node id as a directory name a shell user can type: `train[lora_r=4]` → `train.lora_r=4`.
/// Stage names are `[A-Za-z0-9_-]` and matrix values have no `[`, `]`, `,`, `=`, so only other
/// characters replaced by `_` could make two ids meet: then a short hash of the id is added.
fn dir_name(id: &str) -> String {
    let mut replaced = false;
    let mut name: String = id
        .strip_suffix(']')
        .unwrap_or(id)
        .chars()
        .map(|c| match c {
            '[' => '.',
            c if c.is_ascii_alphanumeric() || "-_=,.".contains(c) => c,
            _ => {
                replaced = true;
                '_'
            }
        })
        .collect();
    if replaced {
        name.push('-');
        name.push_str(&blake3::hash(id.as_bytes()).to_hex()[..8]);
    }
    name
}

/// The sbatch arguments (without `sbatch`) that submit `node`'s job.
pub fn args(pipeline: &str, node: &Node, files: &JobFiles, root: &Path) -> Vec<String> {
    let r = &node.slurm;
    let mut a = vec![
        "--parsable".to_string(),
        format!("--job-name=t2s:{pipeline}:{}", node.id),
        format!("--output={}", files.log.display()),
        format!("--chdir={}", root.display()),
        // The job needs the environment of `t2s run` (libtorch's LD_LIBRARY_PATH, HF_HOME...)
        // even where a site makes `--export=NONE` the default.
        "--export=ALL".to_string(),
    ];
    let opt = |name: &str, v: &Option<String>| v.as_ref().map(|v| format!("--{name}={v}"));
    a.extend(opt("partition", &r.partition));
    a.extend(opt("account", &r.account));
    a.extend(opt("gres", &r.gres));
    a.extend(r.cpus.map(|c| format!("--cpus-per-task={c}")));
    a.extend(opt("mem", &r.mem));
    a.extend(opt("time", &r.time));
    a.extend(r.extra_args.iter().cloned());
    a.push(files.script.display().to_string());
    a
}

/// The batch script: run `t2s exec-node` on the spec, with the worker the controller uses.
pub fn script(t2s: &Path, worker: Option<&Path>, files: &JobFiles, what: &str) -> String {
    let mut s = format!("#!/bin/sh\n# {what}\n# Written by t2s; the job runs exactly this node.\n");
    if let Some(w) = worker {
        s.push_str(&format!(
            "export T2S_WORKER={}\n",
            quote(&w.display().to_string())
        ));
    }
    s.push_str(&format!(
        "exec {} -v exec-node --spec {}\n",
        quote(&t2s.display().to_string()),
        quote(&files.spec.display().to_string())
    ));
    s
}

/// A word as the shell reads it back unchanged (quoted only when it needs to be).
pub fn quote(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_=,.:/+@%".contains(c));
    if plain {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// `sbatch ARGS` as a line to paste into a shell.
pub fn command_line(args: &[String]) -> String {
    std::iter::once("sbatch".to_string())
        .chain(args.iter().map(|a| quote(a)))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Submit; returns the job id.
pub fn submit(args: &[String]) -> Result<String, String> {
    let out = Command::new("sbatch")
        // Own process group: a Ctrl-C at the terminal is for t2s, which cancels its jobs
        // itself; it must not kill an sbatch half-way (a job submitted, its id lost).
        .process_group(0)
        .args(args)
        .output()
        .map_err(|e| format!("cannot run sbatch: {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(format!(
            "sbatch refused the job ({}): {}\n  command: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim(),
            command_line(args)
        ));
    }
    // `--parsable` prints `ID` or `ID;CLUSTER`.
    let id = stdout
        .trim()
        .split(';')
        .next()
        .unwrap_or_default()
        .to_string();
    if id.is_empty() || !id.chars().all(|c| c.is_ascii_digit() || c == '_') {
        return Err(format!(
            "sbatch printed no job id (output: {:?})",
            stdout.trim()
        ));
    }
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::SlurmResources;

    fn node(slurm: SlurmResources) -> Node {
        Node {
            id: "train[lora_r=4]".into(),
            stage: "train".into(),
            kind: "train".into(),
            params: Default::default(),
            matrix: Default::default(),
            needs: vec![],
            gpu: true,
            gather: false,
            slurm,
        }
    }

    #[test]
    fn node_ids_become_typable_distinct_dir_names() {
        assert_eq!(dir_name("train[lora_r=4]"), "train.lora_r=4");
        assert_eq!(dir_name("load"), "load");
        assert!(dir_name("eval[a=1,b=x y]").starts_with("eval.a=1,b=x_y-"));
        assert_ne!(dir_name("t[k=x y]"), dir_name("t[k=x_y]"));
    }

    #[test]
    fn arguments_carry_every_resource_and_the_paths() {
        let files = JobFiles::new(Path::new("/p/experiments/slurm/3"), "train[lora_r=4]");
        let n = node(SlurmResources {
            partition: Some("gpu".into()),
            gres: Some("gpu:1".into()),
            cpus: Some(8),
            mem: Some("32G".into()),
            time: Some("1-00:00:00".into()),
            account: Some("nlp".into()),
            extra_args: vec!["--constraint=a100".into(), "--exclusive".into()],
        });
        let a = args("smoke", &n, &files, Path::new("/p"));
        assert_eq!(
            a,
            [
                "--parsable",
                "--job-name=t2s:smoke:train[lora_r=4]",
                "--output=/p/experiments/slurm/3/train.lora_r=4/job.log",
                "--chdir=/p",
                "--export=ALL",
                "--partition=gpu",
                "--account=nlp",
                "--gres=gpu:1",
                "--cpus-per-task=8",
                "--mem=32G",
                "--time=1-00:00:00",
                "--constraint=a100",
                "--exclusive",
                "/p/experiments/slurm/3/train.lora_r=4/job.sh",
            ]
        );
        assert_eq!(
            command_line(&a[..2]),
            "sbatch --parsable '--job-name=t2s:smoke:train[lora_r=4]'"
        );
        // No resources: only what t2s needs.
        assert_eq!(
            args(
                "smoke",
                &node(SlurmResources::default()),
                &files,
                Path::new("/p")
            )
            .len(),
            6
        );
    }

    #[test]
    fn the_script_runs_exec_node_with_the_worker() {
        let files = JobFiles::new(Path::new("/p/x y"), "load");
        let s = script(
            Path::new("/bin/t2s"),
            Some(Path::new("/bin/t2s-worker")),
            &files,
            "node load",
        );
        assert!(s.starts_with("#!/bin/sh\n"), "{s}");
        assert!(s.contains("export T2S_WORKER=/bin/t2s-worker\n"), "{s}");
        assert!(
            s.contains("exec /bin/t2s -v exec-node --spec '/p/x y/load/spec.json'\n"),
            "{s}"
        );
    }

    #[test]
    fn quoting_round_trips_through_sh() {
        for w in ["plain", "a b", "it's", "t[1]", "$HOME", ""] {
            let out = Command::new("sh")
                .arg("-c")
                .arg(format!("printf %s {}", quote(w)))
                .output()
                .unwrap();
            assert_eq!(String::from_utf8_lossy(&out.stdout), w);
        }
    }
}
