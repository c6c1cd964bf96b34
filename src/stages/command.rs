//! The `command` stage kind: a user's shell command as a cached pipeline step (DVC `cmd` stages).
//!
//! The command runs with `sh -c` in the pipeline file's directory. Declared `deps` (files or
//! directories there) are hashed into the cache key; declared `outs` must exist in `$T2S_OUT`
//! afterwards. Inputs, params and matrix values reach the command as environment variables.
//! Dep directories are hashed recursively, skipping `__pycache__` (and `PYTHONDONTWRITEBYTECODE`
//! is set). The command runs in its own process group and carries a token in its environment
//! (`crate::child`): cancelling, the command's end, or the death of t2s itself (watched from
//! inside the group) kill everything it started, in the group or escaped from it (`setsid`, a
//! detached daemon). The node waits for the command itself, not for whatever still holds its
//! output pipes: after its end the pipes are drained briefly, then left. Output lines are cut
//! at `child::MAX_LINE_BYTES`.
//! Lines the command prints on stdout of the form `::metric NAME VALUE [STEP]`,
//! `::progress DONE [TOTAL] [MESSAGE]` and `::resumed` feed the tracking DB and progress display.

use std::collections::{BTreeMap, VecDeque};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Component, Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use super::params::{ParamSet, Params, Typed};
use super::{StageContext, StageError, StageKind, StageOutcome};

/// How many trailing stderr lines a failure message quotes.
const STDERR_TAIL: usize = 10;

/// After the command ends (and everything it started is killed), how long to keep reading
/// what its pipes still hold. Only a process that escaped every kill keeps them open longer.
const DRAIN: Duration = Duration::from_secs(2);

/// A line from the command (or the end of one of its streams).
enum Output {
    Stdout(Option<String>),
    Stderr(Option<String>),
}

pub struct CommandStage;

/// The `command` stage's params.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CommandParams {
    /// Shell command, run with `sh -c` in the pipeline's directory.
    pub cmd: String,
    /// Input files or directories (relative to the pipeline file); their content is part of
    /// the cache key.
    #[serde(default)]
    pub deps: Vec<String>,
    /// Paths under $T2S_OUT the command must create.
    #[serde(default)]
    pub outs: Vec<String>,
    /// Extra environment variables.
    #[serde(default, deserialize_with = "env_texts")]
    pub env: BTreeMap<String, String>,
}

/// Environment values as text: `PORT: 8080` is the string "8080".
fn env_texts<'de, D: serde::Deserializer<'de>>(d: D) -> Result<BTreeMap<String, String>, D::Error> {
    struct Text(String);
    impl<'de> Deserialize<'de> for Text {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            d.deserialize_any(TextVisitor).map(Text)
        }
    }
    struct TextVisitor;
    impl serde::de::Visitor<'_> for TextVisitor {
        type Value = String;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a string")
        }
        fn visit_str<E>(self, v: &str) -> Result<String, E> {
            Ok(v.to_string())
        }
        fn visit_bool<E>(self, v: bool) -> Result<String, E> {
            Ok(v.to_string())
        }
        fn visit_i64<E>(self, v: i64) -> Result<String, E> {
            Ok(v.to_string())
        }
        fn visit_u64<E>(self, v: u64) -> Result<String, E> {
            Ok(v.to_string())
        }
        fn visit_f64<E>(self, v: f64) -> Result<String, E> {
            Ok(serde_json::Number::from_f64(v).map_or_else(|| v.to_string(), |n| n.to_string()))
        }
    }
    let texts = BTreeMap::<String, Text>::deserialize(d)?;
    Ok(texts.into_iter().map(|(k, v)| (k, v.0)).collect())
}

impl Params for CommandParams {
    fn problems(&self) -> Vec<(String, String)> {
        let mut problems = Vec::new();
        if self.cmd.trim().is_empty() {
            problems.push(("cmd".into(), "the command is empty".into()));
        }
        for out in &self.outs {
            let p = Path::new(out);
            if out.is_empty()
                || p.is_absolute()
                || p.components().any(|c| matches!(c, Component::ParentDir))
            {
                problems.push((
                    "outs".into(),
                    format!("output `{out}` must be a relative path inside $T2S_OUT (no `..`, not absolute)"),
                ));
            }
        }
        if self.deps.iter().any(String::is_empty) {
            problems.push(("deps".into(), "a dep path is empty".into()));
        }
        for k in self.env.keys().filter(|k| !valid_env_key(k)) {
            problems.push((
                "env".into(),
                format!("`{k}` is not a valid environment variable name"),
            ));
        }
        problems
    }
}

static PARAMS: Typed<CommandParams> = Typed::new();

/// `train-v2` → `TRAIN_V2`: a name usable in an environment variable.
pub fn env_name(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect()
}

fn valid_env_key(k: &str) -> bool {
    let mut chars = k.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Every file under `path` (or `path` itself), relative to `base`, with `/` separators.
fn collect_files(
    base: &Path,
    path: &Path,
    depth: usize,
    out: &mut Vec<(String, PathBuf)>,
) -> anyhow::Result<()> {
    let meta =
        std::fs::metadata(path).with_context(|| format!("cannot read {}", path.display()))?;
    if meta.is_dir() {
        anyhow::ensure!(
            depth < 64,
            "directory nesting too deep at {}",
            path.display()
        );
        for entry in
            std::fs::read_dir(path).with_context(|| format!("cannot list {}", path.display()))?
        {
            let entry = entry?;
            // Python's bytecode caches appear when scripts run; they are not inputs.
            if entry.file_name() == "__pycache__" {
                continue;
            }
            collect_files(base, &entry.path(), depth + 1, out)?;
        }
    } else {
        let rel = path.strip_prefix(base).unwrap_or(path);
        let rel = rel
            .components()
            .map(|c| c.as_os_str().to_string_lossy())
            .collect::<Vec<_>>()
            .join("/");
        out.push((rel, path.to_path_buf()));
    }
    Ok(())
}

/// blake3 over the dep's name and, for every file under it in sorted order, its path relative
/// to the dep, its length and its bytes. Independent of where the project lives on disk.
pub fn dep_digest(pipeline_dir: &Path, dep: &str) -> anyhow::Result<String> {
    let root = pipeline_dir.join(dep);
    if std::fs::metadata(&root).is_err() {
        anyhow::bail!(
            "command dep `{dep}` does not exist (looked for {}); create it or fix `deps`",
            root.display()
        );
    }
    let mut files = Vec::new();
    collect_files(&root, &root, 0, &mut files)?;
    files.sort();
    let mut h = blake3::Hasher::new();
    h.update(dep.as_bytes());
    h.update(&[0]);
    for (rel, path) in files {
        let mut f = std::fs::File::open(&path)
            .with_context(|| format!("cannot read dep file {}", path.display()))?;
        let len = f.metadata()?.len();
        h.update(rel.as_bytes());
        h.update(&[0]);
        h.update(&len.to_le_bytes());
        std::io::copy(&mut f, &mut h)
            .with_context(|| format!("cannot read dep file {}", path.display()))?;
    }
    Ok(h.finalize().to_hex().to_string())
}

impl StageKind for CommandStage {
    fn kind(&self) -> &'static str {
        "command"
    }
    fn about(&self) -> &'static str {
        "Runs a shell command with declared `deps` (hashed into the key) and `outs` (must exist in `$T2S_OUT`); inputs in `$T2S_INPUT_<STAGE>`, params in `$T2S_PARAM_<NAME>`."
    }

    fn metrics(&self) -> Option<Vec<String>> {
        None // whatever its `::metric` lines name
    }
    fn version(&self) -> u32 {
        1
    }

    fn params(&self) -> &'static dyn ParamSet {
        &PARAMS
    }

    /// One fact per dep (`dep:PATH` → content digest), so `status` can say which dep changed.
    fn key_facts(
        &self,
        params: &Map<String, Value>,
        pipeline_dir: &Path,
    ) -> anyhow::Result<BTreeMap<String, String>> {
        let mut facts = BTreeMap::new();
        for dep in PARAMS.read(params)?.deps {
            let digest = dep_digest(pipeline_dir, &dep)?;
            facts.insert(format!("dep:{dep}"), digest);
        }
        Ok(facts)
    }

    fn run(&self, ctx: &StageContext<'_>) -> Result<StageOutcome, StageError> {
        let params = PARAMS.read(ctx.params)?;
        let cmd = params.cmd.as_str();
        for dep in &params.deps {
            if std::fs::metadata(ctx.pipeline_dir.join(dep)).is_err() {
                return Err(StageError::Failed(format!(
                    "node `{}`: dep `{dep}` does not exist in {}",
                    ctx.node_id,
                    ctx.pipeline_dir.display()
                )));
            }
        }
        let token = crate::child::new_token();
        let mut command = shell_command(cmd, std::process::id(), &token);
        command.current_dir(ctx.pipeline_dir);
        for (k, v) in environment(ctx, &params.env) {
            command.env(k, v);
        }
        let mut child = command.spawn().map_err(|e| {
            StageError::Failed(format!("node `{}`: cannot start `sh`: {e}", ctx.node_id))
        })?;
        let pgid = child.id();
        let (tx, rx) = mpsc::channel();
        if let Some(out) = child.stdout.take() {
            crate::child::forward_lines(out, tx.clone(), Output::Stdout);
        }
        if let Some(err) = child.stderr.take() {
            crate::child::forward_lines(err, tx, Output::Stderr);
        }
        let mut reader = Reader {
            ctx,
            outcome: StageOutcome::default(),
            tail: VecDeque::new(),
            open: 2,
        };
        let mut cancelled = false;
        let status = loop {
            // A bounded batch per turn, so a flood of output cannot starve the checks below.
            match rx.recv_timeout(Duration::from_millis(10)) {
                Ok(msg) => {
                    reader.take(msg);
                    rx.try_iter().take(1000).for_each(|m| reader.take(m));
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                // Both streams ended while the command runs on: nothing to wait on but it.
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    std::thread::sleep(Duration::from_millis(10))
                }
            }
            match child.try_wait() {
                Ok(Some(status)) => break Ok(status),
                Ok(None) => {}
                Err(e) => break Err(e),
            }
            if ctx.cancel.load(Ordering::Relaxed) && !cancelled {
                cancelled = true;
                crate::child::kill_group(pgid);
                let _ = child.kill();
            }
        };
        // The node is done: everything the command started goes, in its group or escaped
        // from it. Leftovers would hold the pipes open and outlive the node.
        crate::child::kill_group(pgid);
        crate::child::kill_tagged(&token);
        let deadline = Instant::now() + DRAIN;
        while reader.open > 0 {
            match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(msg) => reader.take(msg),
                Err(_) => {
                    tracing::warn!(
                        node = ctx.node_id,
                        "a process that escaped the node still holds its output open; no longer reading it"
                    );
                    break;
                }
            }
        }
        let Reader { outcome, tail, .. } = reader;
        let status = status.map_err(|e| {
            StageError::Failed(format!(
                "node `{}`: waiting for the command: {e}",
                ctx.node_id
            ))
        })?;
        if cancelled {
            return Err(StageError::Interrupted);
        }
        if !status.success() {
            let how = match (status.code(), status.signal()) {
                (Some(c), _) => format!("exit status {c}"),
                (None, Some(sig)) => format!("signal {sig}"),
                _ => "an unknown status".into(),
            };
            let t = tail;
            let lines = if t.is_empty() {
                String::from(" (no stderr output)")
            } else {
                format!("; last stderr lines:\n  {}", Vec::from(t).join("\n  "))
            };
            return Err(StageError::Failed(format!(
                "node `{}`: command failed with {how}{lines}",
                ctx.node_id
            )));
        }
        let missing: Vec<&String> = params
            .outs
            .iter()
            .filter(|o| std::fs::symlink_metadata(ctx.out_dir.join(o)).is_err())
            .collect();
        if !missing.is_empty() {
            return Err(StageError::Failed(format!(
                "node `{}`: the command succeeded but did not create its declared output{} {} in $T2S_OUT",
                ctx.node_id,
                if missing.len() > 1 { "s" } else { "" },
                missing.iter().map(|m| format!("`{m}`")).collect::<Vec<_>>().join(", ")
            )));
        }
        Ok(outcome)
    }
}

/// What the node gathers from the command's output as it arrives.
struct Reader<'c, 'a> {
    ctx: &'c StageContext<'a>,
    outcome: StageOutcome,
    tail: VecDeque<String>,
    /// Output streams not yet at their end.
    open: usize,
}

impl Reader<'_, '_> {
    fn take(&mut self, msg: Output) {
        match msg {
            Output::Stdout(Some(line)) => stdout_line(&line, self.ctx, &mut self.outcome),
            Output::Stderr(Some(line)) => {
                tracing::info!(node = self.ctx.node_id, "{line}");
                self.tail.push_back(line);
                if self.tail.len() > STDERR_TAIL {
                    self.tail.pop_front();
                }
            }
            Output::Stdout(None) | Output::Stderr(None) => self.open -= 1,
        }
    }
}

/// `sh -c CMD` in a new process group, tagged with `token`, with a watchdog in that group
/// that kills the group and every tagged process when process `watch_pid` (t2s) is gone: a
/// `kill -9` of t2s must not leave the command running on, writing into the partial area a
/// rerun is using. The watchdog runs without the token (`env -u`) so its own scan spares it
/// until its last `kill -KILL 0`.
fn shell_command(cmd: &str, watch_pid: u32, token: &str) -> Command {
    const WATCHDOG: &str = "while kill -0 \"$1\" 2>/dev/null; do sleep 1; done; \
        for f in /proc/[0-9]*/environ; do \
          if tr '\\0' '\\n' <\"$f\" 2>/dev/null | grep -qxF \"$2=$3\"; then \
            p=${f%/environ}; kill -KILL \"${p#/proc/}\" 2>/dev/null; \
          fi; \
        done; kill -KILL 0";
    const WRAPPER: &str = "env -u \"$3\" sh -c \"$5\" t2s-watchdog \"$1\" \"$3\" \"$4\" \
                           </dev/null >/dev/null 2>&1 &\nexec sh -c \"$2\"";
    let mut command = Command::new("sh");
    command
        .args(["-c", WRAPPER, "t2s-command"])
        .arg(watch_pid.to_string())
        .arg(cmd)
        .arg(crate::child::TOKEN_VAR)
        .arg(token)
        .arg(WATCHDOG)
        .env(crate::child::TOKEN_VAR, token)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    command
}

/// Log a stdout line, and act on `::metric`, `::progress` and `::resumed` lines.
fn stdout_line(line: &str, ctx: &StageContext<'_>, outcome: &mut StageOutcome) {
    let words: Vec<&str> = line.split_whitespace().collect();
    match words.as_slice() {
        ["::metric", name, value, rest @ ..] => {
            let (Ok(v), step) = (
                value.parse::<f64>(),
                rest.first().and_then(|s| s.parse::<i64>().ok()),
            ) else {
                tracing::warn!(node = ctx.node_id, "ignoring malformed metric line: {line}");
                return;
            };
            ctx.metrics.metric(name, step, v);
            if step.is_none() {
                outcome.metrics.insert(name.to_string(), v);
            }
        }
        ["::progress", done, rest @ ..] => {
            let total = rest.first().and_then(|t| t.parse::<u64>().ok());
            let skip = usize::from(total.is_some());
            let msg = rest.get(skip..).map(|m| m.join(" ")).unwrap_or_default();
            if let Ok(d) = done.parse::<u64>() {
                ctx.metrics.progress(d, total, &msg);
            }
        }
        ["::resumed", ..] => outcome.resumed = true,
        _ => tracing::debug!(node = ctx.node_id, "{line}"),
    }
}

/// The command runs in the pipeline's directory, so relative paths handed to it would point
/// elsewhere: make them absolute against our own working directory.
fn absolute(p: &Path) -> String {
    if p.is_absolute() {
        return p.display().to_string();
    }
    match std::env::current_dir() {
        Ok(cwd) => cwd.join(p).display().to_string(),
        Err(_) => p.display().to_string(),
    }
}

/// The command's environment (see the module docs).
fn environment(
    ctx: &StageContext<'_>,
    user_env: &BTreeMap<String, String>,
) -> Vec<(String, String)> {
    let mut env = vec![
        ("T2S_OUT".to_string(), absolute(ctx.out_dir)),
        ("T2S_PARTIAL".to_string(), absolute(ctx.partial_dir)),
        ("T2S_NODE".to_string(), ctx.node_id.to_string()),
        ("T2S_STAGE".to_string(), ctx.stage_name.to_string()),
    ];
    let mut per_stage: BTreeMap<&str, usize> = BTreeMap::new();
    for i in ctx.inputs {
        *per_stage.entry(&i.stage).or_default() += 1;
    }
    for i in ctx.inputs {
        if per_stage.get(i.stage.as_str()) == Some(&1) {
            env.push((
                format!("T2S_INPUT_{}", env_name(&i.stage)),
                absolute(&i.dir),
            ));
        }
    }
    let inputs: Vec<Value> = ctx
        .inputs
        .iter()
        .map(|i| json!({"stage": i.stage, "node": i.node, "matrix": i.matrix, "dir": absolute(&i.dir)}))
        .collect();
    env.push(("T2S_INPUTS".into(), Value::Array(inputs).to_string()));
    for (k, v) in ctx.params {
        env.push((
            format!("T2S_PARAM_{}", env_name(k)),
            crate::pipeline::plain(v),
        ));
    }
    let (_, matrix) = crate::pipeline::parse_node_id(ctx.node_id);
    for (k, v) in matrix {
        env.push((format!("T2S_MATRIX_{}", env_name(&k)), v));
    }
    env.extend(user_env.iter().map(|(k, v)| (k.clone(), v.clone())));
    env
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gone(pid: &str) -> bool {
        let alive = Command::new("sh")
            .args(["-c", &format!("kill -0 {pid} 2>/dev/null")])
            .status()
            .is_ok_and(|s| s.success());
        let zombie = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|st| st.contains(") Z "))
            .unwrap_or(true);
        !alive || zombie
    }

    /// When the watched process (t2s) dies, the command and its children are killed.
    #[test]
    fn command_dies_with_its_watched_parent() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("pid");
        let mut parent = Command::new("sleep").arg("600").spawn().unwrap();
        let script = format!("sleep 600 & echo $! > '{}'; wait", pidfile.display());
        let mut child = shell_command(&script, parent.id(), &crate::child::new_token())
            .spawn()
            .unwrap();
        while !pidfile.exists() || std::fs::read_to_string(&pidfile).unwrap().trim().is_empty() {
            std::thread::sleep(Duration::from_millis(10));
        }
        let grandchild = std::fs::read_to_string(&pidfile)
            .unwrap()
            .trim()
            .to_string();
        assert!(
            child.try_wait().unwrap().is_none(),
            "runs while the parent lives"
        );
        parent.kill().unwrap();
        parent.wait().unwrap();
        // The watchdog polls once a second; wait for it (bounded, not a timing assertion).
        let mut status = None;
        for _ in 0..1000 {
            status = child.try_wait().unwrap();
            if status.is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(status.is_some(), "command survived its parent");
        for _ in 0..500 {
            if gone(&grandchild) {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("background child {grandchild} survived");
    }
}
