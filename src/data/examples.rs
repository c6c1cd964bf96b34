//! Tokenized examples and their on-disk form, shared by preprocess, split, the trainer and
//! evaluation. A directory holds `rows.jsonl` (the rows, with their source split), `tokens.bin`
//! (all token ids, little-endian u32) and `index.bin` (per example: u64 offset, u32 length,
//! u32 number of prompt tokens, all little-endian). Labels are the ids with the prompt part
//! set to -100.

use std::io::{BufRead, BufWriter, Write};
use std::path::Path;

use anyhow::Context;

use super::load::LoadedRow;
use super::Row;

pub const TOKENS_FILE: &str = "tokens.bin";
pub const INDEX_FILE: &str = "index.bin";
pub const ROWS_FILE: &str = "rows.jsonl";

/// One training/evaluation example.
#[derive(Debug, Clone, PartialEq)]
pub struct Example {
    pub row: Row,
    pub input_ids: Vec<u32>,
    /// -100 on the prompt part, else the token id.
    pub labels: Vec<i64>,
}

/// An example as stored: its row (with source split), ids and prompt length.
#[derive(Debug, Clone, PartialEq)]
pub struct Stored {
    pub row: LoadedRow,
    pub ids: Vec<u32>,
    pub prompt_len: u32,
}

impl Stored {
    pub fn labels(&self) -> Vec<i64> {
        labels_of(&self.ids, self.prompt_len as usize)
    }
    pub fn into_example(self) -> Example {
        let labels = self.labels();
        Example {
            row: self.row.row,
            input_ids: self.ids,
            labels,
        }
    }
}

pub fn labels_of(ids: &[u32], prompt_len: usize) -> Vec<i64> {
    ids.iter()
        .enumerate()
        .map(|(i, &t)| if i < prompt_len { -100 } else { t as i64 })
        .collect()
}

/// Write examples into `dir` (created if needed).
pub fn write_stored(dir: &Path, items: &[Stored]) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut rows = BufWriter::new(std::fs::File::create(dir.join(ROWS_FILE))?);
    let mut tokens = BufWriter::new(std::fs::File::create(dir.join(TOKENS_FILE))?);
    let mut index = BufWriter::new(std::fs::File::create(dir.join(INDEX_FILE))?);
    let mut offset = 0u64;
    for s in items {
        serde_json::to_writer(&mut rows, &s.row)?;
        rows.write_all(b"\n")?;
        let mut buf = Vec::with_capacity(s.ids.len() * 4);
        for t in &s.ids {
            buf.extend_from_slice(&t.to_le_bytes());
        }
        tokens.write_all(&buf)?;
        index.write_all(&offset.to_le_bytes())?;
        index.write_all(&(s.ids.len() as u32).to_le_bytes())?;
        index.write_all(&s.prompt_len.to_le_bytes())?;
        offset += s.ids.len() as u64;
    }
    rows.flush()?;
    tokens.flush()?;
    index.flush()?;
    Ok(())
}

/// Read the stored examples of `dir`.
pub fn read_stored(dir: &Path) -> anyhow::Result<Vec<Stored>> {
    let hint = || format!("{}: not a preprocessed examples directory", dir.display());
    let tokens = std::fs::read(dir.join(TOKENS_FILE)).with_context(hint)?;
    let index = std::fs::read(dir.join(INDEX_FILE)).with_context(hint)?;
    let rows_f = std::fs::File::open(dir.join(ROWS_FILE)).with_context(hint)?;
    anyhow::ensure!(
        tokens.len() % 4 == 0 && index.len() % 16 == 0,
        "{}: truncated files",
        dir.display()
    );
    let mut rows = Vec::new();
    for (i, line) in std::io::BufReader::new(rows_f).lines().enumerate() {
        let line = line?;
        if !line.is_empty() {
            rows.push(
                serde_json::from_str::<LoadedRow>(&line)
                    .with_context(|| format!("{}/{ROWS_FILE}:{}", dir.display(), i + 1))?,
            );
        }
    }
    anyhow::ensure!(
        rows.len() == index.len() / 16,
        "{}: {} rows but {} index entries",
        dir.display(),
        rows.len(),
        index.len() / 16
    );
    let n_tok = tokens.len() / 4;
    let mut out = Vec::with_capacity(rows.len());
    for (k, row) in rows.into_iter().enumerate() {
        let e = &index[k * 16..k * 16 + 16];
        let off = u64::from_le_bytes(e[0..8].try_into().expect("8 bytes")) as usize;
        let len = u32::from_le_bytes(e[8..12].try_into().expect("4 bytes")) as usize;
        let prompt_len = u32::from_le_bytes(e[12..16].try_into().expect("4 bytes"));
        anyhow::ensure!(
            off + len <= n_tok,
            "{}: index entry {k} out of range",
            dir.display()
        );
        let ids = tokens[off * 4..(off + len) * 4]
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes(c.try_into().expect("4 bytes")))
            .collect();
        out.push(Stored {
            row,
            ids,
            prompt_len,
        });
    }
    Ok(out)
}

/// Read the examples of a preprocess (or split subset) directory.
pub fn read_examples(dir: &Path) -> anyhow::Result<Vec<Example>> {
    Ok(read_stored(dir)?
        .into_iter()
        .map(Stored::into_example)
        .collect())
}

/// Load one subset (`train`, `validation`, `test`) of a `split` artifact.
pub fn load_split(dir: &Path, name: &str) -> anyhow::Result<Vec<Example>> {
    let sub = dir.join(name);
    anyhow::ensure!(
        sub.is_dir(),
        "{}: no `{name}` subset here; a split artifact holds train/, validation/ and test/",
        dir.display()
    );
    read_examples(&sub)
}
