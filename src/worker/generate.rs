//! The `generate` job's files, as the evaluate stage and `t2s infer --input` use them: the
//! prompts written as JSONL into a work directory that is also the job's partial area (so a
//! rerun continues after the last finished batch), and the generations read back by id.

use std::collections::HashMap;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use super::jobs::{GenerateJob, Generation, Job};
use super::JobSpec;

/// Generated text and new-token count per prompt id.
pub type Generations = HashMap<String, (String, u64)>;

/// Where one generation's files live, and what it runs on.
pub struct Batch<'a> {
    /// The work directory: prompts, generations and the job's resume state.
    pub dir: &'a Path,
    pub model: &'a Path,
    pub adapter: Option<&'a Path>,
    pub device: &'a str,
    pub batch_size: u64,
    pub generation: Generation,
}

impl Batch<'_> {
    /// The generations file the job appends to.
    pub fn out_file(&self) -> PathBuf {
        generations_file(self.dir)
    }

    /// Write the prompts (id, text) and return the job to run.
    pub fn job(
        &self,
        prompts: impl IntoIterator<Item = (String, String)>,
    ) -> anyhow::Result<JobSpec> {
        std::fs::create_dir_all(self.dir)?;
        let prompts_file = self.dir.join("prompts.jsonl");
        let mut w = std::io::BufWriter::new(std::fs::File::create(&prompts_file)?);
        for (id, text) in prompts {
            writeln!(w, "{}", json!({"id": id, "text": text}))?;
        }
        w.flush()?;
        let mut spec = JobSpec::of(&Job::Generate(GenerateJob {
            prompts_file,
            out_file: self.out_file(),
            batch_size: self.batch_size,
            generation: self.generation.clone(),
        }));
        spec.inputs.insert("model".into(), self.model.to_path_buf());
        if let Some(a) = self.adapter {
            spec.inputs.insert("adapter".into(), a.to_path_buf());
        }
        spec.partial_dir = Some(self.dir.to_path_buf());
        spec.device = self.device.to_string();
        Ok(spec)
    }
}

/// The generations file of the work directory `dir` (there once a batch has finished).
pub fn generations_file(dir: &Path) -> PathBuf {
    dir.join("generations.jsonl")
}

/// The generations the job wrote to `path` so far.
pub fn read_generations(path: &Path) -> anyhow::Result<Generations> {
    let mut out = HashMap::new();
    let f = std::fs::File::open(path)?;
    for (i, line) in std::io::BufReader::new(f).lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let v: Value = serde_json::from_str(&line)
            .map_err(|e| anyhow::anyhow!("{}:{}: {e}", path.display(), i + 1))?;
        let id = match &v["id"] {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        let text = v["text"].as_str().unwrap_or_default().to_string();
        out.insert(id, (text, v["new_tokens"].as_u64().unwrap_or(0)));
    }
    Ok(out)
}
