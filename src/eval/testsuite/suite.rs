//! Building a distilled test suite for one (context, gold) pair and checking predictions on it.
//!
//! Building: the gold runs on the original database, then on candidate instances
//! ([`super::instances`]): an instance where the gold errors, or (checked for the instances
//! kept, by loading their rows again in reverse order) where its result depends on the order
//! rows are stored in (ties under `ORDER BY`, `LIMIT` without an order...), is dropped and
//! counted. The gold's
//! near-miss neighbours ([`super::mutate`]) that run and are not already told apart by the
//! original database are run on each kept candidate; a candidate that tells at least one
//! remaining neighbour from the gold joins the suite (first fit, the greedy of the paper), the
//! others are spares that fill the suite up to its size. Candidates stop at
//! [`max_candidates`], or when its budget of SQLite instructions is spent.
//!
//! Checking: the prediction runs on every instance and must give what the gold gave there,
//! compared as execution accuracy compares (`exec::result_eq`, table snapshots for writes).

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use super::instances::{self, Instance};
use super::schema::{self, id_like, Table};
use super::{mutate, pools, SuiteConfig};
use crate::eval::exact::normalize_sql;
use crate::eval::exec::{result_eq, snapshot, Snapshot};
use crate::eval::sandbox::{Limits, Outcome, Sandbox, SandboxError};
use crate::eval::sqllex::{has_outer_order_by, lex, nondeterministic_token};

/// Candidate instances generated for a suite of `n`, at most: `n` and half as many again. The
/// paper distils offline from many more; here every example has its own database and its
/// suite is built while scoring, so candidates are what the cost budget allows.
pub fn max_candidates(n: usize) -> usize {
    n + n.div_ceil(2)
}

/// Candidates a neighbour is run on, at most: one that none of them tells from the gold is
/// most likely equivalent to it (`DISTINCT` on a key, an outer join that finds every row...),
/// and stops costing time.
pub const NEIGHBOUR_TRIES: usize = 3;

/// Words that can make a result depend on the order rows are stored in: an order or a limit
/// (ties, the first rows), window functions, concatenating aggregates, `GROUP BY` and
/// `MIN`/`MAX` (the row a bare column comes from), the rowid. A gold without any of them is
/// not loaded a second time to check (float sums in another order are not checked: generated
/// reals are quarters, exact in binary).
const ORDER_WORDS: &[&str] = &[
    "LIMIT",
    "OFFSET",
    "OVER",
    "ORDER",
    "GROUP",
    "MIN",
    "MAX",
    "GROUP_CONCAT",
    "STRING_AGG",
    "JSON_GROUP_ARRAY",
    "JSON_GROUP_OBJECT",
    "ROWID",
    "OID",
    "_ROWID_",
];

fn may_depend_on_order(sql: &str) -> bool {
    lex(sql)
        .iter()
        .any(|t| ORDER_WORDS.iter().any(|w| t.is_kw(w)))
}

/// What a statement left on one database: a query's rows, or the tables after a write.
#[derive(Debug, Clone)]
enum Effect {
    Rows(Outcome),
    Tables(Snapshot),
}

/// How a suite came to be (per example; summed in reports).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SuiteStats {
    /// Instances kept (the original database is checked besides them).
    pub instances: usize,
    /// Candidate instances generated.
    pub candidates: usize,
    /// Candidates dropped because the gold failed on them (a limit, a constraint...).
    pub gold_errors: usize,
    /// Candidates dropped because the gold's result depended on the rows' storage order.
    pub gold_order_dependent: usize,
    /// Near-miss neighbours of the gold that run (the distillation targets).
    pub neighbours: usize,
    /// Neighbours the suite (original database included) tells from the gold.
    pub distinguished: usize,
    /// The instruction budget ended candidate generation early.
    pub truncated: bool,
}

/// A built suite. Empty (no instances) when the gold cannot be scored; then the suite adds
/// nothing to execution accuracy.
#[derive(Debug, Clone, Default)]
pub struct Suite {
    readonly: bool,
    ordered: bool,
    /// Table names and the columns instances fill.
    layout: Vec<(String, Vec<String>)>,
    /// The schema has triggers (switched off while instance rows go in).
    triggers: bool,
    /// The gold as normalized exact match sees it (`eval::exact`).
    gold_normalized: String,
    instances: Vec<(Instance, Effect)>,
    pub stats: SuiteStats,
}

/// The verdict on one prediction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Check {
    Pass,
    /// The prediction differs from the gold on instance `instance` (0-based).
    Differs {
        instance: usize,
    },
    /// The prediction failed on instance `instance` (a limit, the instruction budget...).
    Fails {
        instance: usize,
        error: String,
    },
}

fn effect(db: &Sandbox, sql: &str, readonly: bool) -> Result<Effect, SandboxError> {
    if readonly {
        db.run(sql).map(Effect::Rows)
    } else {
        db.rolled_back(|db| {
            db.run(sql)?;
            snapshot(db)
        })
        .map(Effect::Tables)
    }
}

fn same(gold: &Effect, other: &Effect, ordered: bool) -> bool {
    match (gold, other) {
        (Effect::Rows(g), Effect::Rows(p)) => result_eq(g, p, ordered),
        (Effect::Tables(g), Effect::Tables(p)) => g == p,
        _ => false,
    }
}

/// Keep the alive neighbours (and their try counts) marked in `keep`.
fn retain_by(alive: &mut Vec<String>, tries: &mut Vec<usize>, keep: &[bool]) {
    let mut k = 0;
    alive.retain(|_| {
        k += 1;
        keep[k - 1]
    });
    let mut k = 0;
    tries.retain(|_| {
        k += 1;
        keep[k - 1]
    });
}

impl Suite {
    fn load(&self, db: &Sandbox, inst: &Instance) -> Result<(), SandboxError> {
        for ((table, cols), rows) in self.layout.iter().zip(&inst.tables) {
            db.replace_rows(table, cols, rows, self.triggers)?;
        }
        Ok(())
    }
}

/// Cap the next statements of `db` at what is left of a budget that ends when `db` has run
/// `end` instructions; false when nothing is left.
fn cap(db: &Sandbox, end: u64) -> bool {
    let left = end.saturating_sub(db.instructions_spent());
    db.cap_instructions(Some(left));
    left > 0
}

/// The generator state of one example: the seed and the example's own text, so a suite does
/// not depend on which other examples are scored with it.
fn rng(cfg: &SuiteConfig, context: &str, gold: &str) -> ChaCha8Rng {
    let mut h = blake3::Hasher::new();
    h.update(&cfg.seed.to_le_bytes());
    h.update(&(context.len() as u64).to_le_bytes());
    h.update(context.as_bytes());
    h.update(gold.as_bytes());
    ChaCha8Rng::from_seed(*h.finalize().as_bytes())
}

impl Suite {
    /// Build the suite of `gold` on the database of `context`.
    pub fn build(context: &str, gold: &str, cfg: &SuiteConfig, limits: &Limits) -> Suite {
        let mut suite = Suite::default();
        if cfg.instances == 0 || nondeterministic_token(gold).is_some() {
            return suite;
        }
        let Ok(db) = Sandbox::from_context(context, limits) else {
            return suite;
        };
        let (Ok(readonly), Ok(tables), Ok(triggers)) = (
            db.readonly(gold),
            schema::read(&db),
            schema::has_triggers(&db),
        ) else {
            return suite;
        };
        suite.triggers = triggers;
        let end = db.instructions_spent().saturating_add(cfg.max_instructions);
        cap(&db, end);
        let Ok(original) = effect(&db, gold, readonly) else {
            return suite;
        };
        suite.readonly = readonly;
        suite.gold_normalized = normalize_sql(gold);
        suite.ordered = readonly && has_outer_order_by(gold);
        suite.layout = tables
            .iter()
            .map(|t| (t.name.clone(), t.column_names()))
            .collect();
        let mut alive = suite.runnable_neighbours(&db, gold, &tables, &original, cfg, end);
        suite.distill(&db, gold, &tables, cfg, end, &mut alive, context);
        suite
    }

    /// Neighbours that run and give what the gold gives on the original database (the others
    /// are told apart already, and counted).
    fn runnable_neighbours(
        &mut self,
        db: &Sandbox,
        gold: &str,
        tables: &[Table],
        original: &Effect,
        cfg: &SuiteConfig,
        end: u64,
    ) -> Vec<String> {
        let mut keys: Vec<String> = tables
            .iter()
            .flat_map(|t| t.columns.iter().map(|c| c.name.clone()))
            .filter(|n| id_like(n))
            .collect();
        keys.sort();
        keys.dedup();
        let mut alive = Vec::new();
        for n in mutate::neighbours(gold, &keys, 2 * cfg.max_neighbours) {
            if self.stats.neighbours >= cfg.max_neighbours || !cap(db, end) {
                break;
            }
            if db.readonly(&n).ok() != Some(self.readonly) {
                continue;
            }
            let Ok(e) = effect(db, &n, self.readonly) else {
                continue;
            };
            self.stats.neighbours += 1;
            if same(original, &e, self.ordered) {
                alive.push(n);
            } else {
                self.stats.distinguished += 1;
            }
        }
        alive
    }

    #[allow(clippy::too_many_arguments)]
    fn distill(
        &mut self,
        db: &Sandbox,
        gold: &str,
        tables: &[Table],
        cfg: &SuiteConfig,
        end: u64,
        alive: &mut Vec<String>,
        context: &str,
    ) {
        let pools = pools::build(tables, gold);
        let mut rng = rng(cfg, context, gold);
        let order_check = may_depend_on_order(gold);
        let mut spares = Vec::new();
        // Candidates each alive neighbour has been run on.
        let mut tries = vec![0usize; alive.len()];
        for _ in 0..max_candidates(cfg.instances) {
            let have = self.instances.len();
            if have >= cfg.instances || (alive.is_empty() && have + spares.len() >= cfg.instances) {
                break;
            }
            if db.instructions_spent() >= end {
                self.stats.truncated = true;
                break;
            }
            let inst = instances::generate(tables, &pools, &mut rng);
            self.stats.candidates += 1;
            let gold_on = |inst: &Instance| {
                self.load(db, inst)?;
                cap(db, end);
                effect(db, gold, self.readonly)
            };
            let Ok(fwd) = gold_on(&inst) else {
                self.stats.gold_errors += 1;
                continue;
            };
            let kills: Vec<usize> = (0..alive.len())
                .filter(|&k| {
                    tries[k] += 1;
                    cap(db, end);
                    !matches!(effect(db, &alive[k], self.readonly), Ok(e) if same(&fwd, &e, self.ordered))
                })
                .collect();
            // Neighbours no candidate told apart in their tries are given up (not counted).
            let retired =
                |k: usize, kills: &[usize]| tries[k] >= NEIGHBOUR_TRIES && !kills.contains(&k);
            let keep: Vec<bool> = (0..alive.len()).map(|k| !retired(k, &kills)).collect();
            if kills.is_empty() && have + spares.len() >= cfg.instances {
                retain_by(alive, &mut tries, &keep);
                continue;
            }
            // Only an instance the suite would keep is checked for order dependence.
            let back = if order_check {
                gold_on(&inst.reversed()).map(Some)
            } else {
                Ok(None)
            };
            match back {
                Err(_) => {
                    self.stats.gold_errors += 1;
                    continue;
                }
                Ok(Some(back)) if !same(&fwd, &back, self.ordered) => {
                    self.stats.gold_order_dependent += 1;
                    continue;
                }
                Ok(_) => {}
            }
            let mut keep = keep;
            for &k in &kills {
                keep[k] = false;
            }
            retain_by(alive, &mut tries, &keep);
            if kills.is_empty() {
                spares.push((inst, fwd));
            } else {
                self.stats.distinguished += kills.len();
                self.instances.push((inst, fwd));
            }
        }
        let room = cfg.instances.saturating_sub(self.instances.len());
        self.instances.extend(spares.into_iter().take(room));
        self.stats.instances = self.instances.len();
        db.cap_instructions(None);
    }

    /// The instances, in the order predictions are checked on them.
    pub fn instances(&self) -> impl Iterator<Item = &Instance> {
        self.instances.iter().map(|(i, _)| i)
    }

    /// Check `pred` (already execution-correct on the original database of `context`) on
    /// every instance, within `budget` SQLite instructions in all.
    pub fn check(&self, context: &str, pred: &str, limits: &Limits, budget: u64) -> Check {
        // The gold's own tokens (case of keywords and names aside) give the gold's result on
        // every instance: nothing to run.
        if self.instances.is_empty() || normalize_sql(pred) == self.gold_normalized {
            return Check::Pass;
        }
        let fails = |instance: usize, e: SandboxError| Check::Fails {
            instance,
            error: e.to_string(),
        };
        let db = match Sandbox::from_context(context, limits) {
            Ok(db) => db,
            Err(e) => return fails(0, e),
        };
        let end = db.instructions_spent().saturating_add(budget);
        let spent = |instance: usize| Check::Fails {
            instance,
            error: format!("test-suite budget of {budget} SQLite instructions spent"),
        };
        for (i, (inst, gold)) in self.instances.iter().enumerate() {
            if let Err(e) = self.load(&db, inst) {
                return fails(i, e);
            }
            if !cap(&db, end) {
                return spent(i);
            }
            match effect(&db, pred, self.readonly) {
                Ok(e) if same(gold, &e, self.ordered) => {}
                Ok(_) => return Check::Differs { instance: i },
                Err(_) if db.instructions_spent() >= end => return spent(i),
                Err(e) => return fails(i, e),
            }
        }
        Check::Pass
    }
}
