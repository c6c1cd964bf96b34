//! Near-miss neighbours of a gold statement, the distillation targets of Zhong, Yu and Klein
//! (2020): each is the gold with one small edit that usually changes its meaning: a predicate
//! dropped, negated or its connective flipped, a comparison swapped, `DISTINCT` dropped or
//! added, an aggregate changed, an inner join made outer (or back) or its key changed, an
//! `ORDER BY` direction flipped or dropped, a `LIMIT` moved, a number moved by one, `UNION`
//! made `UNION ALL`. Edits are made on the lexer's tokens, so literals and quoted names are
//! never split; the rest of the text stays as written. Some neighbours are equivalent to the
//! gold or do not run: the suite finds that out, this module does not guess.

use std::ops::Range;

use crate::eval::sqllex::{lex_spanned, Tok};

/// Replace each range by its text (ranges do not overlap).
fn apply(sql: &str, mut edits: Vec<(Range<usize>, String)>) -> String {
    edits.sort_by_key(|(r, _)| std::cmp::Reverse(r.start));
    let mut out = sql.to_string();
    for (r, s) in edits {
        out.replace_range(r, &s);
    }
    out
}

/// Words that end a `WHERE` / `HAVING` / `ON` condition at its own depth.
const CONDITION_END: &[&str] = &[
    "GROUP",
    "ORDER",
    "LIMIT",
    "HAVING",
    "WINDOW",
    "UNION",
    "INTERSECT",
    "EXCEPT",
    "JOIN",
    "INNER",
    "LEFT",
    "RIGHT",
    "FULL",
    "CROSS",
    "NATURAL",
    "WHERE",
    "RETURNING",
    "ON",
];
const FLIPS: &[(&str, &str)] = &[
    ("=", "<>"),
    ("==", "<>"),
    ("!=", "="),
    ("<>", "="),
    ("<", "<="),
    ("<=", "<"),
    (">", ">="),
    (">=", ">"),
];
const SWAPS: &[(&str, &str)] = &[("<", ">"), (">", "<"), ("<=", ">="), (">=", "<=")];
const AGGREGATES: &[(&str, &str)] = &[
    ("MAX", "MIN"),
    ("MIN", "MAX"),
    ("SUM", "AVG"),
    ("AVG", "SUM"),
];

struct Toks<'a> {
    sql: &'a str,
    t: Vec<(Tok, Range<usize>)>,
    /// Parenthesis depth of each token (of the token itself; `(` counts outside).
    depth: Vec<i32>,
}

impl Toks<'_> {
    fn kw(&self, i: usize, k: &str) -> bool {
        self.t.get(i).is_some_and(|(t, _)| t.is_kw(k))
    }
    fn punct(&self, i: usize, p: &str) -> bool {
        matches!(self.t.get(i), Some((Tok::Punct(x), _)) if x == p)
    }
    fn span(&self, from: usize, to_incl: usize) -> Range<usize> {
        self.t[from].1.start..self.t[to_incl].1.end
    }
    /// The text of tokens `from..=to` with the space before them, to delete cleanly.
    fn drop_span(&self, from: usize, to_incl: usize) -> Range<usize> {
        if from > 0 {
            self.t[from - 1].1.end..self.t[to_incl].1.end
        } else {
            let end = self
                .t
                .get(to_incl + 1)
                .map_or(self.sql.len(), |(_, r)| r.start);
            self.t[from].1.start..end
        }
    }
    /// Index one past the clause starting after `start`, at `start`'s depth.
    fn clause_end(&self, start: usize, enders: &[&str]) -> usize {
        let d = self.depth[start];
        let mut i = start + 1;
        while i < self.t.len() {
            let (t, _) = &self.t[i];
            if self.depth[i] < d
                || (self.depth[i] == d
                    && (enders.iter().any(|k| t.is_kw(k))
                        || matches!(t, Tok::Punct(p) if p == ";" || p == ")")))
            {
                break;
            }
            i += 1;
        }
        i
    }
}

/// The conjuncts of the condition in tokens `from..to` (depth-`d` `AND`/`OR`, `BETWEEN`'s
/// own `AND` excepted), as token ranges, and the connectives between them.
fn conjuncts(tk: &Toks<'_>, from: usize, to: usize) -> (Vec<(usize, usize)>, Vec<usize>) {
    let d = tk.depth[from];
    let (mut parts, mut conns) = (Vec::new(), Vec::new());
    let mut start = from;
    let mut between = false;
    for i in from..to {
        if tk.depth[i] != d {
            continue;
        }
        if tk.kw(i, "BETWEEN") {
            between = true;
        } else if tk.kw(i, "AND") && between {
            between = false;
        } else if tk.kw(i, "AND") || tk.kw(i, "OR") {
            if i > start {
                parts.push((start, i - 1));
            }
            conns.push(i);
            start = i + 1;
        }
    }
    if to > start {
        parts.push((start, to - 1));
    }
    (parts, conns)
}

fn predicate_edits(tk: &Toks<'_>, out: &mut Vec<Vec<(Range<usize>, String)>>) {
    for i in 0..tk.t.len() {
        if !(tk.kw(i, "WHERE") || tk.kw(i, "HAVING") || tk.kw(i, "ON")) {
            continue;
        }
        let end = tk.clause_end(i, CONDITION_END);
        if end <= i + 1 {
            continue;
        }
        let cond = tk.span(i + 1, end - 1);
        if !tk.kw(i, "ON") {
            // The whole filter dropped.
            out.push(vec![(tk.drop_span(i, end - 1), String::new())]);
        }
        out.push(vec![(cond.clone(), format!("NOT ({})", &tk.sql[cond]))]);
        let (parts, conns) = conjuncts(tk, i + 1, end);
        if parts.len() >= 2 && parts.len() == conns.len() + 1 {
            for (k, &(a, b)) in parts.iter().enumerate() {
                // Drop conjunct k and the connective before it (after it, for the first).
                let r = if k == 0 {
                    tk.t[a].1.start..tk.t[conns[0] + 1].1.start
                } else {
                    tk.drop_span(conns[k - 1], b)
                };
                out.push(vec![(r, String::new())]);
            }
            for &c in &conns {
                let to = if tk.kw(c, "AND") { "OR" } else { "AND" };
                out.push(vec![(tk.t[c].1.clone(), to.to_string())]);
            }
        }
    }
}

fn order_limit_edits(tk: &Toks<'_>, out: &mut Vec<Vec<(Range<usize>, String)>>) {
    for i in 0..tk.t.len() {
        if tk.kw(i, "ORDER") && tk.kw(i + 1, "BY") {
            let end = tk.clause_end(i + 1, &["LIMIT", "UNION", "INTERSECT", "EXCEPT"]);
            if end <= i + 2 {
                continue;
            }
            out.push(vec![(tk.drop_span(i, end - 1), String::new())]);
            let d = tk.depth[i];
            let mut key_end = Vec::new();
            for j in i + 2..end {
                if tk.depth[j] == d && tk.punct(j, ",") {
                    key_end.push(j - 1);
                }
            }
            key_end.push(end - 1);
            for &k in &key_end {
                let e = if tk.kw(k, "ASC") {
                    (tk.t[k].1.clone(), "DESC".to_string())
                } else if tk.kw(k, "DESC") {
                    (tk.t[k].1.clone(), "ASC".to_string())
                } else {
                    let at = tk.t[k].1.end;
                    (at..at, " DESC".to_string())
                };
                out.push(vec![e]);
            }
        }
        if tk.kw(i, "LIMIT") {
            if let Some((Tok::Number(n), r)) = tk.t.get(i + 1) {
                if let Ok(n) = n.parse::<i64>() {
                    out.push(vec![(r.clone(), (n + 1).to_string())]);
                    if n > 1 {
                        out.push(vec![(r.clone(), (n - 1).to_string())]);
                    }
                    let end = tk.clause_end(i, &[]);
                    out.push(vec![(tk.drop_span(i, end - 1), String::new())]);
                }
            }
        }
    }
}

fn token_edits(tk: &Toks<'_>, join_keys: &[String], out: &mut Vec<Vec<(Range<usize>, String)>>) {
    for (i, (t, r)) in tk.t.iter().enumerate() {
        let one = |s: &str| vec![(r.clone(), s.to_string())];
        match t {
            Tok::Punct(p) => {
                for (from, to) in FLIPS.iter().chain(SWAPS) {
                    if p == from {
                        out.push(one(to));
                    }
                }
            }
            Tok::Number(n) if !(i > 0 && (tk.kw(i - 1, "LIMIT") || tk.kw(i - 1, "OFFSET"))) => {
                if let Ok(v) = n.parse::<i64>() {
                    out.push(one(&(v + 1).to_string()));
                    out.push(one(&(v - 1).to_string()));
                }
            }
            Tok::Word(_) if t.is_kw("DISTINCT") => {
                let end = tk.t.get(i + 1).map_or(r.end, |(_, n)| n.start);
                out.push(vec![(r.start..end, String::new())]);
            }
            Tok::Word(_) if t.is_kw("SELECT") && !tk.kw(i + 1, "DISTINCT") => {
                out.push(vec![(r.end..r.end, " DISTINCT".into())]);
            }
            Tok::Word(_) if tk.punct(i + 1, "(") => {
                for (from, to) in AGGREGATES {
                    if t.is_kw(from) {
                        out.push(one(to));
                    }
                }
                if t.is_kw("COUNT") && !tk.punct(i + 2, "*") && !tk.kw(i + 2, "DISTINCT") {
                    let at = tk.t[i + 1].1.end;
                    out.push(vec![(at..at, "DISTINCT ".into())]);
                }
            }
            Tok::Word(_) if t.is_kw("JOIN") => {
                let prev = |k: &str| i > 0 && tk.kw(i - 1, k);
                if prev("LEFT") {
                    out.push(vec![(tk.t[i - 1].1.clone(), "INNER".into())]);
                } else if prev("OUTER") && i > 1 && tk.kw(i - 2, "LEFT") {
                    out.push(vec![(tk.span(i - 2, i - 1), "INNER".into())]);
                } else if prev("INNER") {
                    out.push(vec![(tk.t[i - 1].1.clone(), "LEFT".into())]);
                } else if !(prev("CROSS") || prev("NATURAL") || prev("RIGHT") || prev("FULL")) {
                    out.push(vec![(r.start..r.start, "LEFT ".into())]);
                }
            }
            Tok::Word(_) if t.is_kw("UNION") => {
                if tk.kw(i + 1, "ALL") {
                    out.push(vec![(r.end..tk.t[i + 1].1.end, String::new())]);
                } else {
                    out.push(vec![(r.end..r.end, " ALL".into())]);
                }
            }
            Tok::Word(_) if t.is_kw("INTERSECT") => out.push(one("EXCEPT")),
            Tok::Word(_) if t.is_kw("EXCEPT") => out.push(one("INTERSECT")),
            _ => {}
        }
    }
    // Join keys: `ON a.x = b.y` with `y` replaced by another id-like column of the schema.
    for i in 0..tk.t.len() {
        if !tk.kw(i, "ON") {
            continue;
        }
        let end = tk.clause_end(i, CONDITION_END);
        for j in i + 1..end {
            if tk.punct(j, "=") {
                let k = if tk.punct(j + 2, ".") { j + 3 } else { j + 1 };
                if let Some((Tok::Word(w), r)) = tk.t.get(k) {
                    for other in join_keys.iter().filter(|o| !o.eq_ignore_ascii_case(w)) {
                        out.push(vec![(r.clone(), other.clone())]);
                    }
                }
            }
        }
    }
}

/// The distinct neighbours of `gold` (never `gold` itself), at most `max`, in a fixed order.
/// `join_keys`: the schema's id-like column names, the candidates of a changed join key.
pub fn neighbours(gold: &str, join_keys: &[String], max: usize) -> Vec<String> {
    let t = lex_spanned(gold);
    let mut depth = Vec::with_capacity(t.len());
    let mut d = 0;
    for (tok, _) in &t {
        if matches!(tok, Tok::Punct(p) if p == ")") {
            d -= 1;
        }
        depth.push(d);
        if matches!(tok, Tok::Punct(p) if p == "(") {
            d += 1;
        }
    }
    let tk = Toks {
        sql: gold,
        t,
        depth,
    };
    let mut edits = Vec::new();
    predicate_edits(&tk, &mut edits);
    order_limit_edits(&tk, &mut edits);
    token_edits(&tk, join_keys, &mut edits);
    let mut out: Vec<String> = Vec::new();
    for e in edits {
        let n = apply(gold, e);
        if n != gold && !out.contains(&n) {
            out.push(n);
        }
        if out.len() >= max {
            break;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_named_mutations_are_made() {
        let g = "SELECT DISTINCT a.name FROM t a JOIN u b ON a.id = b.t_id \
                 WHERE a.x > 5 AND a.y BETWEEN 1 AND 3 AND a.s = 'x > 5' ORDER BY a.name LIMIT 3";
        let n = neighbours(g, &["t_id".into(), "u_id".into()], 200);
        let has = |s: &str| n.iter().any(|x| x == s);
        let base = |from: &str, to: &str| g.replacen(from, to, 1);
        assert!(has(&base("DISTINCT ", "")));
        assert!(has(&base("a.x > 5", "a.x >= 5")));
        assert!(has(&base("a.x > 5", "a.x < 5")));
        assert!(has(&base("a.x > 5 AND ", "")));
        assert!(has(&base(" AND a.s = 'x > 5'", "")));
        assert!(has(&base("5 AND a.y", "5 OR a.y")));
        assert!(has(&base("JOIN", "LEFT JOIN")));
        assert!(has(&base("b.t_id", "b.u_id")));
        assert!(has(&base("a.name LIMIT", "a.name DESC LIMIT")));
        assert!(has(&base(" ORDER BY a.name", "")));
        assert!(has(&base("LIMIT 3", "LIMIT 4")));
        assert!(has(&base("LIMIT 3", "LIMIT 2")));
        // BETWEEN's AND is not a connective; the literal's `>` is not an operator.
        assert!(!has(&base("1 AND 3", "1 OR 3")));
        assert!(!n.iter().any(|x| x.contains("'x >= 5'")));
        assert!(!has(g));
        let agg = neighbours("SELECT COUNT(v), MAX(w) FROM t UNION SELECT 1, 2", &[], 200);
        assert!(agg.contains(&"SELECT COUNT(DISTINCT v), MAX(w) FROM t UNION SELECT 1, 2".into()));
        assert!(agg.contains(&"SELECT COUNT(v), MIN(w) FROM t UNION SELECT 1, 2".into()));
        assert!(agg.contains(&"SELECT COUNT(v), MAX(w) FROM t UNION ALL SELECT 1, 2".into()));
        assert_eq!(neighbours(g, &[], 3).len(), 3);
    }
}
