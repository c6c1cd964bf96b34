//! Validation problems: each names a file position, the field path and what to do.
//!
//! Loading collects every problem it can find before giving up, so users fix a file in one go.

use std::collections::HashSet;
use std::fmt;
use std::path::{Path, PathBuf};

use super::yaml::Loc;

/// The pseudo file name of problems in `--set` arguments.
pub const SET_FILE: &str = "<--set>";

/// One problem in a pipeline file or a `--set` argument.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Diagnostic {
    /// The pipeline file, or `<--set>` for a problem in an override.
    pub file: PathBuf,
    /// 1-based line (for `--set`: the argument's position among the `--set` arguments).
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// The field path (`stages.train.params.lr`), or the argument text for `--set` problems.
    pub path: String,
    pub message: String,
    pub hint: Option<String>,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: ", self.file.display(), self.line, self.column)?;
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        write!(f, "{}", self.message)?;
        if let Some(h) = &self.hint {
            write!(f, "\n  hint: {h}")?;
        }
        Ok(())
    }
}

/// Every problem found while loading a pipeline, sorted by position.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl Diagnostics {
    pub fn iter(&self) -> std::slice::Iter<'_, Diagnostic> {
        self.0.iter()
    }
    pub fn len(&self) -> usize {
        self.0.len()
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Diagnostics {}

/// Collects problems while loading; knows how to turn a `Loc` into a file position.
pub struct Collector<'a> {
    file: &'a Path,
    set_args: &'a [String],
    items: Vec<Diagnostic>,
    seen: HashSet<Diagnostic>,
}

impl<'a> Collector<'a> {
    pub fn new(file: &'a Path, set_args: &'a [String]) -> Self {
        Collector {
            file,
            set_args,
            items: Vec::new(),
            seen: HashSet::new(),
        }
    }

    /// Record a problem at `loc`. For positions inside a `--set` argument the path shown is the
    /// argument text, since that is what the user typed.
    pub fn add(&mut self, loc: Loc, path: &str, message: impl Into<String>, hint: Option<String>) {
        let (file, path) = match loc.set_arg {
            Some(i) => (
                PathBuf::from(SET_FILE),
                self.set_args.get(i).cloned().unwrap_or_default(),
            ),
            None => (self.file.to_path_buf(), path.to_string()),
        };
        let d = Diagnostic {
            file,
            line: loc.line.max(1),
            column: loc.col.max(1),
            path,
            message: message.into(),
            hint,
        };
        // Matrix instances of one stage repeat the same problem: report it once.
        if self.seen.insert(d.clone()) {
            self.items.push(d);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Problems in the file first (by line, column), then those of `--set` arguments.
    pub fn finish(mut self) -> Diagnostics {
        self.items.sort_by(|a, b| {
            let ka = (a.file.as_os_str() == SET_FILE, a.line, a.column);
            let kb = (b.file.as_os_str() == SET_FILE, b.line, b.column);
            ka.cmp(&kb)
        });
        Diagnostics(self.items)
    }
}

/// The closest candidate to a misspelt name, if any is close enough to be a likely typo.
pub fn closest<'c>(name: &str, candidates: impl IntoIterator<Item = &'c str>) -> Option<&'c str> {
    let limit = (name.chars().count() / 3).max(1) + 1;
    candidates
        .into_iter()
        .map(|c| {
            (
                strsim::levenshtein(&name.to_lowercase(), &c.to_lowercase()),
                c,
            )
        })
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// "did you mean `x`?" when a candidate is close, else the list of valid names.
pub fn suggest(name: &str, what: &str, candidates: &[&str]) -> String {
    match closest(name, candidates.iter().copied()) {
        Some(c) => format!("did you mean `{c}`?"),
        None if candidates.is_empty() => format!("there are no {what}"),
        None => format!(
            "{what}: {}",
            candidates
                .iter()
                .map(|c| format!("`{c}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closest_finds_typos_only() {
        assert_eq!(closest("neds", ["needs", "kind"]), Some("needs"));
        assert_eq!(closest("zzzzzz", ["needs", "kind"]), None);
    }
}
