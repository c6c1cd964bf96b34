//! Why a prediction failed, from its execution verdict: the categories a Text-to-SQL error
//! analysis sorts predictions into (right; runs but returns other rows; fails at run time;
//! the wrong kind of statement; does not prepare, by SQLite's reason; no SQL at all).

use serde::{Deserialize, Serialize};

/// The outcome of one scored prediction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Execution match with the gold.
    Correct,
    /// Runs, but returns other rows (a query) or leaves another database (a write).
    WrongResult,
    /// Prepares, then fails while running (a constraint, a resource limit, too many rows).
    RuntimeError,
    /// A query where the gold writes, or a write where the gold queries.
    WrongStatementKind,
    /// Names a table, column or function the schema does not have.
    UnknownName,
    /// Not valid SQL text (SQLite's syntax errors, incomplete input).
    SyntaxError,
    /// Nothing to run: no SQL was extracted from the generation.
    NoSql,
    /// Does not prepare for another reason (several statements, a forbidden statement kind,
    /// an ambiguous column...).
    OtherInvalid,
}

impl Outcome {
    /// Every outcome, in the order a report lists them.
    pub const ALL: [Outcome; 8] = [
        Outcome::Correct,
        Outcome::WrongResult,
        Outcome::RuntimeError,
        Outcome::WrongStatementKind,
        Outcome::UnknownName,
        Outcome::SyntaxError,
        Outcome::NoSql,
        Outcome::OtherInvalid,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Outcome::Correct => "Correct",
            Outcome::WrongResult => "Runs, wrong result",
            Outcome::RuntimeError => "Runtime error",
            Outcome::WrongStatementKind => "Wrong statement kind",
            Outcome::UnknownName => "Unknown table, column or function",
            Outcome::SyntaxError => "Syntax error",
            Outcome::NoSql => "No SQL",
            Outcome::OtherInvalid => "Other invalid SQL",
        }
    }

    /// The outcome of a scored prediction from its execution verdict (`exec::ExecResult`'s
    /// `correct`, `valid_sql` and `pred_error`).
    pub fn classify(correct: bool, valid_sql: bool, pred_error: Option<&str>) -> Outcome {
        if correct {
            return Outcome::Correct;
        }
        let error = pred_error.unwrap_or("").to_ascii_lowercase();
        if valid_sql {
            return if error.is_empty() {
                Outcome::WrongResult
            } else if error.starts_with("the prediction writes")
                || error.starts_with("the prediction does not write")
            {
                Outcome::WrongStatementKind
            } else {
                Outcome::RuntimeError
            };
        }
        if error.contains("the sql is empty") {
            Outcome::NoSql
        } else if ["no such table", "no such column", "no such function"]
            .iter()
            .any(|m| error.contains(m))
        {
            Outcome::UnknownName
        } else if ["syntax error", "incomplete input", "unrecognized token"]
            .iter()
            .any(|m| error.contains(m))
        {
            Outcome::SyntaxError
        } else {
            Outcome::OtherInvalid
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Outcome;
    use crate::eval::exec::execution_match;
    use crate::eval::sandbox::Limits;

    /// Each outcome from a real verdict of the scorer, so the categories follow its messages.
    #[test]
    fn verdicts_of_the_scorer_fall_into_their_outcomes() {
        let context = "CREATE TABLE t (id INT PRIMARY KEY, name TEXT); \
                       INSERT INTO t VALUES (1, 'a'), (2, 'b');";
        let gold = "SELECT name FROM t WHERE id = 1;";
        let cases = [
            ("SELECT name FROM t WHERE id = 1;", Outcome::Correct),
            ("SELECT name FROM t WHERE id = 2;", Outcome::WrongResult),
            ("DELETE FROM t WHERE id = 1;", Outcome::WrongStatementKind),
            ("SELECT nme FROM t;", Outcome::UnknownName),
            ("SELECT name FROM u;", Outcome::UnknownName),
            ("SELECT FROM WHERE;", Outcome::SyntaxError),
            ("SELECT name FROM t WHERE (id = 1", Outcome::SyntaxError),
            ("", Outcome::NoSql),
            ("SELECT 1; SELECT 2;", Outcome::OtherInvalid),
        ];
        for (pred, want) in cases {
            let r = execution_match(context, gold, pred, &Limits::default());
            let got = Outcome::classify(r.correct, r.valid_sql, r.pred_error.as_deref());
            assert_eq!(got, want, "{pred:?}: {r:?}");
        }
        // A write that breaks a constraint while running.
        let write_gold = "INSERT INTO t VALUES (3, 'c');";
        let r = execution_match(
            context,
            write_gold,
            "INSERT INTO t VALUES (1, 'x');",
            &Limits::default(),
        );
        assert_eq!(
            Outcome::classify(r.correct, r.valid_sql, r.pred_error.as_deref()),
            Outcome::RuntimeError,
            "{r:?}"
        );
    }
}
