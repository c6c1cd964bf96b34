//! A YAML document as a tree that remembers where every key and value sits in the file.
//!
//! serde_yaml throws positions away, so the pipeline loader builds this tree from yaml-rust2's
//! marked events instead, and converts values to JSON itself with the same scalar rules
//! (YAML 1.2 core schema: `null`/`~`, `true`/`false`, ints incl. `0x`/`0o`, floats, strings).

use std::collections::HashMap;

use serde_json::{Map, Number, Value};
use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// A position: 1-based line and column. `set_arg` is `Some(i)` for text that came from the
/// i-th `--set` argument instead of the pipeline file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Loc {
    pub set_arg: Option<usize>,
    pub line: usize,
    pub col: usize,
}

impl Loc {
    /// The start of the file.
    pub const START: Loc = Loc {
        set_arg: None,
        line: 1,
        col: 1,
    };

    fn from_marker(m: Marker) -> Self {
        Loc {
            set_arg: None,
            line: m.line(),
            col: m.col() + 1,
        }
    }
}

/// One node of the document.
#[derive(Debug, Clone)]
pub struct YNode {
    pub loc: Loc,
    pub kind: YKind,
}

#[derive(Debug, Clone)]
pub enum YKind {
    Scalar {
        text: String,
        /// Quoted or block scalars are always strings.
        plain: bool,
        /// `!!str` and friends (suffix only).
        tag: Option<String>,
    },
    Seq(Vec<YNode>),
    /// Keys in file order.
    Map(Vec<(YNode, YNode)>),
}

/// A parse failure: where and what the parser said.
#[derive(Debug, Clone)]
pub struct ParseError {
    pub loc: Loc,
    pub message: String,
}

/// Aliases are expanded by copying; this bounds the copies so a "billion laughs" file fails
/// cleanly instead of eating the memory.
const MAX_NODES: usize = 1_000_000;

/// Deepest nesting of lists and mappings. The tree is walked recursively (conversion, clone,
/// drop), so a file nested tens of thousands deep would overflow the stack; no pipeline comes
/// near this (serde_json's own default limit is 128 as well).
pub const MAX_DEPTH: usize = 128;

struct Builder {
    stack: Vec<(YNode, usize, Option<YNode>)>, // (container, anchor, pending map key)
    anchors: HashMap<usize, YNode>,
    root: Option<YNode>,
    nodes: usize,
    error: Option<ParseError>,
    docs: usize,
}

fn count(n: &YNode) -> usize {
    match &n.kind {
        YKind::Scalar { .. } => 1,
        YKind::Seq(v) => 1 + v.iter().map(count).sum::<usize>(),
        YKind::Map(v) => 1 + v.iter().map(|(k, x)| count(k) + count(x)).sum::<usize>(),
    }
}

impl Builder {
    fn fail(&mut self, loc: Loc, message: impl Into<String>) {
        if self.error.is_none() {
            self.error = Some(ParseError {
                loc,
                message: message.into(),
            });
        }
    }

    /// Attach a finished node to its parent (or make it the root).
    fn push_value(&mut self, node: YNode, anchor: usize) {
        if anchor > 0 {
            self.anchors.insert(anchor, node.clone());
        }
        match self.stack.last_mut() {
            None => {
                if self.root.is_none() {
                    self.root = Some(node);
                }
            }
            Some((parent, _, pending)) => match &mut parent.kind {
                YKind::Seq(items) => items.push(node),
                YKind::Map(entries) => match pending.take() {
                    None => *pending = Some(node),
                    Some(key) => entries.push((key, node)),
                },
                YKind::Scalar { .. } => {}
            },
        }
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        if self.error.is_some() {
            return;
        }
        let loc = Loc::from_marker(mark);
        match ev {
            Event::DocumentStart => {
                self.docs += 1;
                if self.docs > 1 {
                    self.fail(
                        loc,
                        "a pipeline file holds one YAML document, found a second",
                    );
                }
            }
            Event::Scalar(text, style, anchor, tag) => {
                self.nodes += 1;
                let node = YNode {
                    loc,
                    kind: YKind::Scalar {
                        text,
                        plain: style == TScalarStyle::Plain,
                        tag: tag.map(|t| t.suffix),
                    },
                };
                self.push_value(node, anchor);
            }
            Event::SequenceStart(..) | Event::MappingStart(..) if self.stack.len() >= MAX_DEPTH => {
                self.fail(
                    loc,
                    format!("nested more than {MAX_DEPTH} lists or mappings deep; flatten the structure"),
                );
            }
            Event::SequenceStart(anchor, _) => {
                self.nodes += 1;
                let node = YNode {
                    loc,
                    kind: YKind::Seq(Vec::new()),
                };
                self.stack.push((node, anchor, None));
            }
            Event::MappingStart(anchor, _) => {
                self.nodes += 1;
                let node = YNode {
                    loc,
                    kind: YKind::Map(Vec::new()),
                };
                self.stack.push((node, anchor, None));
            }
            Event::SequenceEnd | Event::MappingEnd => {
                if let Some((node, anchor, _)) = self.stack.pop() {
                    self.push_value(node, anchor);
                }
            }
            Event::Alias(id) => match self.anchors.get(&id).cloned() {
                Some(mut node) => {
                    self.nodes += count(&node);
                    if self.nodes > MAX_NODES {
                        self.fail(
                            loc,
                            "too many alias expansions (more than a million values)",
                        );
                        return;
                    }
                    node.loc = loc;
                    self.push_value(node, 0);
                }
                None => self.fail(loc, "alias to an anchor that is not complete yet"),
            },
            _ => {}
        }
        if self.nodes > MAX_NODES {
            self.fail(loc, "document too large (more than a million values)");
        }
    }
}

/// Parse one YAML document. `Ok(None)` for an empty document.
pub fn parse(src: &str) -> Result<Option<YNode>, ParseError> {
    let mut builder = Builder {
        stack: Vec::new(),
        anchors: HashMap::new(),
        root: None,
        nodes: 0,
        error: None,
        docs: 0,
    };
    let mut parser = Parser::new_from_str(src);
    // Events one by one instead of `Parser::load`, which recurses once per nesting level (and
    // overflows the stack on a deep file before any limit of ours could see it); stop at the
    // first problem instead of parsing the rest.
    while builder.error.is_none() {
        let (ev, mark) = parser.next_token().map_err(|e| ParseError {
            loc: Loc::from_marker(*e.marker()),
            message: e.info().to_string(),
        })?;
        if ev == Event::StreamEnd {
            break;
        }
        builder.on_event(ev, mark);
    }
    if let Some(e) = builder.error {
        return Err(e);
    }
    Ok(builder.root)
}

impl YNode {
    /// The scalar's text, if this is a scalar.
    pub fn scalar(&self) -> Option<&str> {
        match &self.kind {
            YKind::Scalar { text, .. } => Some(text),
            _ => None,
        }
    }

    /// The entry of `key` in a mapping node (the key node and its value).
    pub fn entry<'n>(&'n self, key: &str) -> Option<(&'n YNode, &'n YNode)> {
        match &self.kind {
            YKind::Map(entries) => entries
                .iter()
                .find(|(k, _)| k.scalar() == Some(key))
                .map(|(k, v)| (k, v)),
            _ => None,
        }
    }

    /// Move every position into the `i`-th `--set` argument, `col_offset` columns in.
    pub fn relocate(&mut self, set_arg: usize, col_offset: usize) {
        self.loc = Loc {
            set_arg: Some(set_arg),
            line: set_arg + 1,
            col: self.loc.col + col_offset,
        };
        match &mut self.kind {
            YKind::Scalar { .. } => {}
            YKind::Seq(items) => items
                .iter_mut()
                .for_each(|n| n.relocate(set_arg, col_offset)),
            YKind::Map(entries) => entries.iter_mut().for_each(|(k, v)| {
                k.relocate(set_arg, col_offset);
                v.relocate(set_arg, col_offset);
            }),
        }
    }

    /// A short description of what this node is, for "expected X, found Y" messages.
    pub fn describe(&self) -> String {
        match &self.kind {
            YKind::Scalar { .. } => match self.to_value() {
                Ok(v) => describe_value(&v),
                Err(_) => "a value".into(),
            },
            YKind::Seq(_) => "a list".into(),
            YKind::Map(_) => "a mapping".into(),
        }
    }

    /// Convert to JSON with the YAML core schema, recording the position of every value under
    /// `path` (e.g. `stages.train.params.deps[1]`) into `locs`.
    pub fn to_value_at(
        &self,
        path: &str,
        locs: &mut HashMap<String, Loc>,
    ) -> Result<Value, ParseError> {
        locs.insert(path.to_string(), self.loc);
        match &self.kind {
            YKind::Scalar { text, plain, tag } => scalar_value(text, *plain, tag.as_deref())
                .ok_or_else(|| ParseError {
                    loc: self.loc,
                    message: format!("`{text}` is not a finite number"),
                }),
            YKind::Seq(items) => {
                let mut out = Vec::with_capacity(items.len());
                for (i, item) in items.iter().enumerate() {
                    out.push(item.to_value_at(&format!("{path}[{i}]"), locs)?);
                }
                Ok(Value::Array(out))
            }
            YKind::Map(entries) => {
                let mut out = Map::new();
                for (k, v) in entries {
                    let Some(key) = k.scalar() else {
                        return Err(ParseError {
                            loc: k.loc,
                            message: "mapping keys must be plain strings".into(),
                        });
                    };
                    if out.contains_key(key) {
                        return Err(ParseError {
                            loc: k.loc,
                            message: format!("key `{key}` appears twice"),
                        });
                    }
                    let child = format!("{path}.{key}");
                    out.insert(key.to_string(), v.to_value_at(&child, locs)?);
                }
                Ok(Value::Object(out))
            }
        }
    }

    /// Convert to JSON without recording positions.
    pub fn to_value(&self) -> Result<Value, ParseError> {
        self.to_value_at("", &mut HashMap::new())
    }
}

/// After a syntax error at `at`: the position of a `[` or `{` opened before it and never
/// closed, if any. An unclosed flow collection makes the parser complain lines later (often
/// about indentation), so this points the user at the real cause. Heuristic: quotes count only
/// where a quoted scalar may start, `#` only after a space.
pub fn unclosed_bracket(src: &str, at: Loc) -> Option<(Loc, char)> {
    let mut open: Vec<(Loc, char)> = Vec::new();
    let (mut line, mut col) = (1, 0);
    let mut quote: Option<char> = None;
    let mut prev = ' ';
    let mut comment = false;
    let mut chars = src.chars().peekable();
    while let Some(c) = chars.next() {
        // Line breaks as the parser counts them: `\r\n`, `\n` and a lone `\r` (YAML 1.2).
        let c = match c {
            '\r' if chars.peek() == Some(&'\n') => continue,
            '\r' => '\n',
            c => c,
        };
        if c == '\n' {
            line += 1;
            col = 0;
            comment = false;
            prev = ' ';
            if line > at.line {
                break;
            }
            continue;
        }
        col += 1;
        if line == at.line && col >= at.col {
            break;
        }
        if comment {
            continue;
        }
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None => match c {
                '\'' | '"' if matches!(prev, ' ' | '[' | '{' | ',' | ':') => quote = Some(c),
                '#' if prev == ' ' => comment = true,
                '[' | '{' => open.push((
                    Loc {
                        set_arg: None,
                        line,
                        col,
                    },
                    c,
                )),
                ']' | '}' => {
                    open.pop();
                }
                _ => {}
            },
        }
        prev = c;
    }
    open.pop()
}

/// Resolve a plain scalar by serde_yaml's rules (the YAML 1.2 core schema: `~`/`null`,
/// `true`/`False`, `0x1F`, `1e-3`; `yes` stays text). `None` for numbers JSON cannot hold
/// (inf, nan). Quoted or `!!str` scalars are text.
fn scalar_value(text: &str, plain: bool, tag: Option<&str>) -> Option<Value> {
    if !plain || tag == Some("str") {
        return Some(Value::String(text.to_string()));
    }
    if text.is_empty() {
        return Some(Value::Null);
    }
    match serde_yaml::from_str::<serde_yaml::Value>(text) {
        Ok(serde_yaml::Value::Null) => Some(Value::Null),
        Ok(serde_yaml::Value::Bool(b)) => Some(Value::Bool(b)),
        Ok(serde_yaml::Value::Number(n)) => match (n.as_u64(), n.as_i64()) {
            (Some(u), _) => Some(Value::from(u)),
            (None, Some(i)) => Some(Value::from(i)),
            _ => n.as_f64().and_then(Number::from_f64).map(Value::Number),
        },
        // Text, or text that would read as something else on its own (`a: b`, `- x`).
        _ => Some(Value::String(text.to_string())),
    }
}

/// A short description of a JSON value, for messages.
pub fn describe_value(v: &Value) -> String {
    match v {
        Value::Null => "nothing (null)".into(),
        Value::Bool(b) => format!("the boolean {b}"),
        Value::Number(n) => format!("the number {n}"),
        Value::String(s) => format!("the string {s:?}"),
        Value::Array(_) => "a list".into(),
        Value::Object(_) => "a mapping".into(),
    }
}

/// Render a scalar plainly (strings without quotes), for ids and environment variables.
pub fn plain(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "null".into(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn val(src: &str) -> Value {
        parse(src).unwrap().unwrap().to_value().unwrap()
    }

    #[test]
    fn scalars_follow_the_core_schema() {
        assert_eq!(
            val("[~, null, '', true, False, 12, -3, 0x1f, 0o17, 1.5, 1e3, '7', abc, 1.2.3]"),
            json!([null, null, "", true, false, 12, -3, 31, 15, 1.5, 1000.0, "7", "abc", "1.2.3"])
        );
        assert_eq!(val("a: !!str 12"), json!({"a": "12"}));
        assert!(parse("a: .inf").unwrap().unwrap().to_value().is_err());
    }

    #[test]
    fn positions_are_one_based() {
        let root = parse("a:\n  b: [1, 2]\n").unwrap().unwrap();
        let mut locs = HashMap::new();
        root.to_value_at("x", &mut locs).unwrap();
        assert_eq!((locs["x.a.b"].line, locs["x.a.b"].col), (2, 6));
        assert_eq!((locs["x.a.b[1]"].line, locs["x.a.b[1]"].col), (2, 10));
    }

    #[test]
    fn finds_the_unclosed_bracket() {
        let src = "a: [1, 2\nb: {c: '[', d: x} # [\n";
        let at = Loc {
            set_arg: None,
            line: 2,
            col: 1,
        };
        let (loc, c) = unclosed_bracket(src, at).unwrap();
        assert_eq!((loc.line, loc.col, c), (1, 4, '['));
        // Lines end as the parser ends them: `\r\n`, or a lone `\r` (old Mac files).
        for eol in ["\r\n", "\r"] {
            let (loc, _) = unclosed_bracket(&src.replace('\n', eol), at).unwrap();
            assert_eq!((loc.line, loc.col), (1, 4), "{eol:?}");
            let err = parse(&format!("x: 1{eol}a: [1, 2{eol}b: c: d{eol}")).unwrap_err();
            let (loc, _) = unclosed_bracket(&format!("x: 1{eol}a: [1, 2{eol}"), err.loc).unwrap();
            assert_eq!(
                (loc.line, loc.col),
                (2, 4),
                "{eol:?} (parser error at {:?})",
                err.loc
            );
        }
        let closed = "a: [1, 2]\nb: {c: '[', d: x} # [\nzz";
        assert!(unclosed_bracket(
            closed,
            Loc {
                set_arg: None,
                line: 3,
                col: 2
            }
        )
        .is_none());
    }

    #[test]
    fn aliases_expand_and_bombs_fail() {
        assert_eq!(val("a: &x [1]\nb: *x"), json!({"a": [1], "b": [1]}));
        let mut bomb = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..10 {
            bomb.push_str(&format!("a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n", p = i - 1));
        }
        assert!(parse(&bomb).is_err());
    }

    /// Regression: a file nested ~30k deep overflowed the stack (SIGABRT) in the recursive
    /// walks of the tree; it is now a located error at the first level too deep.
    #[test]
    fn deep_nesting_is_a_located_error_not_a_stack_overflow() {
        // Flow style: the scanner reads ahead and stops first ("recursion limit exceeded").
        for (open, close) in [("[", "]"), ("{a: ", "}")] {
            let src = format!("x: {}1{}\n", open.repeat(30_000), close.repeat(30_000));
            let e = parse(&src).map(|_| ()).unwrap_err();
            assert_eq!(e.loc.line, 1, "{}", e.message);
        }
        let mut block = String::new();
        for i in 0..30_000 {
            block.push_str(&format!("{}-\n", " ".repeat(i)));
        }
        let e = parse(&block).map(|_| ()).unwrap_err();
        assert!(e.message.contains("nested more than"), "{}", e.message);
        assert_eq!(e.loc.line, MAX_DEPTH + 1);
        // At the limit itself it still loads.
        let ok = format!("{}1{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        assert!(parse(&ok).unwrap().unwrap().to_value().is_ok());
    }
}
