//! The built-in data generator: deterministic gretel-schema rows (all 11 fields) over many small
//! domains, the 8 complexity classes and 4 task types. Each row is a tiny world (1–3 tables with
//! 2–6 rows each) rendered as CREATE TABLE + INSERT statements, a natural-language request in
//! one of several phrasings, and a gold statement that runs in SQLite against that context.
//!
//! Row `i` depends only on `(seed, i)` (a ChaCha stream per row), so output is byte-identical
//! for the same seed and a prefix of a larger run equals a smaller run.

pub mod domains;
mod templates_adv;
mod templates_join;
mod templates_select;
mod templates_sets;
mod templates_write;
mod world;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use crate::data::Row;
pub use world::{Tables, World, YEARS};

/// Bump when generated output changes (part of the load stage's cache key).
pub const GENERATOR_VERSION: u32 = 2;

/// The 8 sql_complexity classes, with gretel's labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Class {
    Basic,
    Aggregation,
    SingleJoin,
    MultipleJoins,
    Subqueries,
    Window,
    SetOps,
    Ctes,
}

impl Class {
    pub const ALL: [Class; 8] = [
        Class::Basic,
        Class::Aggregation,
        Class::SingleJoin,
        Class::MultipleJoins,
        Class::Subqueries,
        Class::Window,
        Class::SetOps,
        Class::Ctes,
    ];
    pub fn label(self) -> &'static str {
        match self {
            Class::Basic => "basic SQL",
            Class::Aggregation => "aggregation",
            Class::SingleJoin => "single join",
            Class::MultipleJoins => "multiple_joins",
            Class::Subqueries => "subqueries",
            Class::Window => "window functions",
            Class::SetOps => "set operations",
            Class::Ctes => "CTEs",
        }
    }
    pub fn description(self) -> &'static str {
        match self {
            Class::Basic => "basic SQL with a simple select statement",
            Class::Aggregation => {
                "aggregation functions (COUNT, SUM, AVG, MIN, MAX, etc.), and HAVING clause"
            }
            Class::SingleJoin => "only one join (specify inner, outer, cross)",
            Class::MultipleJoins => "two or more joins (specify inner, outer, cross)",
            Class::Subqueries => "subqueries, including correlated and nested subqueries",
            Class::Window => {
                "window functions (e.g., ROW_NUMBER, LEAD, LAG, RANK, NTILE, PERCENT_RANK, etc.) \
                 with partitioning and ordering"
            }
            Class::SetOps => "set operations such as UNION, INTERSECT, and EXCEPT",
            Class::Ctes => "common table expressions",
        }
    }
}

/// The 4 sql_task_type values, with gretel's labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Task {
    Analytics,
    Retrieval,
    Manipulation,
    Definition,
}

impl Task {
    pub const ALL: [Task; 4] = [
        Task::Analytics,
        Task::Retrieval,
        Task::Manipulation,
        Task::Definition,
    ];
    pub fn label(self) -> &'static str {
        match self {
            Task::Analytics => "analytics and reporting",
            Task::Retrieval => "data retrieval",
            Task::Manipulation => "data manipulation",
            Task::Definition => "data definition",
        }
    }
    pub fn description(self) -> &'static str {
        match self {
            Task::Analytics => "generating reports, dashboards, and analytical insights",
            Task::Retrieval => "basic data fetching queries",
            Task::Manipulation => "inserting, updating, or deleting records",
            Task::Definition => "creating, altering, or dropping tables and other database objects",
        }
    }
}

/// One generated request: its labels, the tables its context needs, and its texts.
#[derive(Debug, Clone)]
pub struct Query {
    pub class: Class,
    pub task: Task,
    pub tables: Tables,
    pub prompt: String,
    pub sql: String,
    pub explanation: String,
}

/// A template turns a world (and the row's RNG) into a query.
pub type Template = fn(&mut Gen<'_>) -> Query;

/// What a template works with: the world and the row's random stream.
pub struct Gen<'a> {
    pub w: &'a World,
    pub rng: &'a mut ChaCha8Rng,
}

impl Gen<'_> {
    pub fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        use rand::seq::IndexedRandom;
        *xs.choose(self.rng).expect("pick from an empty list")
    }
    /// Inclusive integer range.
    pub fn int(&mut self, lo: i64, hi: i64) -> i64 {
        use rand::Rng;
        self.rng.random_range(lo..=hi)
    }
    pub fn chance(&mut self, p: f64) -> bool {
        use rand::Rng;
        self.rng.random_bool(p)
    }
}

fn templates(class: Class) -> &'static [Template] {
    match class {
        Class::Basic => templates_write::BASIC_ALL,
        Class::Aggregation => templates_select::AGGREGATION,
        Class::SingleJoin => templates_join::SINGLE_JOIN,
        Class::MultipleJoins => templates_join::MULTIPLE_JOINS,
        Class::Subqueries => templates_adv::SUBQUERIES,
        Class::Window => templates_adv::WINDOW,
        Class::SetOps => templates_sets::SET_OPS,
        Class::Ctes => templates_sets::CTES,
    }
}

/// The random stream of row `index` under `seed`.
fn row_rng(seed: u64, index: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(index);
    rng
}

/// Generate row `index` (0-based) of the corpus for `seed`. Its id is `index + 1`.
pub fn generate_row(seed: u64, index: u64) -> Row {
    generate_row_in(seed, index, &domains::domains().iter().collect::<Vec<_>>())
}

/// The domains named, in the order given; an unknown name is an error that lists the known ones.
pub fn domains_named(names: &[String]) -> Result<Vec<&'static domains::Domain>, String> {
    let all = domains::domains();
    names
        .iter()
        .map(|n| {
            all.iter().find(|d| d.name == n.as_str()).ok_or_else(|| {
                let known: Vec<&str> = all.iter().map(|d| d.name).collect();
                format!(
                    "unknown built-in domain `{n}`; known domains: {}",
                    known.join(", ")
                )
            })
        })
        .collect()
}

/// [`generate_row`] drawing the domain from `ds` only (all rows of a corpus share `ds`).
pub fn generate_row_in(seed: u64, index: u64, ds: &[&'static domains::Domain]) -> Row {
    let mut rng = row_rng(seed, index);
    let d = {
        use rand::Rng;
        ds[rng.random_range(0..ds.len())]
    };
    let world = World::build(d, &mut rng);
    let mut g = Gen {
        w: &world,
        rng: &mut rng,
    };
    let class = g.pick(&Class::ALL);
    let t = g.pick(templates(class));
    let q = t(&mut g);
    debug_assert_eq!(q.class, class);
    Row {
        id: index as i64 + 1,
        domain: d.name.to_string(),
        domain_description: d.description.to_string(),
        sql_complexity: q.class.label().to_string(),
        sql_complexity_description: q.class.description().to_string(),
        sql_task_type: q.task.label().to_string(),
        sql_task_type_description: q.task.description().to_string(),
        sql_prompt: q.prompt,
        sql_context: world.context(q.tables),
        sql: q.sql,
        sql_explanation: q.explanation,
    }
}

/// Generate `n` rows for `seed`, in parallel; identical output for identical arguments.
pub fn generate(seed: u64, n: usize) -> Vec<Row> {
    let all: Vec<&'static domains::Domain> = domains::domains().iter().collect();
    generate_in(seed, n, &all)
}

/// [`generate`] over the domains `ds` only (non-empty).
pub fn generate_in(seed: u64, n: usize, ds: &[&'static domains::Domain]) -> Vec<Row> {
    (0..n as u64)
        .into_par_iter()
        .map(|i| generate_row_in(seed, i, ds))
        .collect()
}
