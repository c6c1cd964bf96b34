//! Building a distilled test suite for one (context, gold) pair and checking predictions on it.
//!
//! Building: the gold runs on the original database, then on candidate instances
//! ([`super::instances`]), each loaded twice, rows in reverse order and in order: an instance
//! where the gold errors, or where its result depends on the order rows are stored in (ties
//! under `ORDER BY`, `LIMIT` without an order...), is dropped and counted. The gold's
//! near-miss neighbours ([`super::mutate`]) that run and are not already told apart by the
//! original database are run on each kept candidate; a candidate that tells at least one
//! remaining neighbour from the gold joins the suite (first fit, the greedy of the paper), the
//! others are spares that fill the suite up to its size. Candidates stop at the suite's size
//! times [`CANDIDATES_PER_INSTANCE`], or at the time budget.
//!
//! Checking: the prediction runs on every instance and must give what the gold gave there,
//! compared as execution accuracy compares (`exec::result_eq`, table snapshots for writes).

use std::time::{Duration, Instant};

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use super::instances::{self, Instance};
use super::schema::{self, id_like, Table};
use super::{mutate, pools, SuiteConfig};
use crate::eval::exec::{result_eq, snapshot, Snapshot};
use crate::eval::sandbox::{Limits, Outcome, Sandbox, SandboxError};
use crate::eval::sqllex::{has_outer_order_by, nondeterministic_token};

/// Candidate instances generated per instance the suite keeps, at most.
pub const CANDIDATES_PER_INSTANCE: usize = 4;

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
    /// The time budget ended candidate generation early.
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
    /// The prediction failed on instance `instance` (a limit, the time budget...).
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

fn load(
    db: &Sandbox,
    layout: &[(String, Vec<String>)],
    inst: &Instance,
) -> Result<(), SandboxError> {
    for ((table, cols), rows) in layout.iter().zip(&inst.tables) {
        db.replace_rows(table, cols, rows)?;
    }
    Ok(())
}

/// Cap the next statements of `db` at what is left until `deadline`.
fn cap(db: &Sandbox, deadline: Instant) -> bool {
    let left = deadline.saturating_duration_since(Instant::now());
    db.cap_wall(Some(left));
    !left.is_zero()
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
        let (Ok(readonly), Ok(tables)) = (db.readonly(gold), schema::read(&db)) else {
            return suite;
        };
        let deadline = Instant::now() + cfg.budget;
        cap(&db, deadline);
        let Ok(original) = effect(&db, gold, readonly) else {
            return suite;
        };
        suite.readonly = readonly;
        suite.ordered = readonly && has_outer_order_by(gold);
        suite.layout = tables
            .iter()
            .map(|t| (t.name.clone(), t.column_names()))
            .collect();
        let mut alive = suite.runnable_neighbours(&db, gold, &tables, &original, cfg, deadline);
        suite.distill(&db, gold, &tables, cfg, deadline, &mut alive, context);
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
        deadline: Instant,
    ) -> Vec<String> {
        let mut keys: Vec<String> = tables
            .iter()
            .flat_map(|t| t.columns.iter().map(|c| c.name.clone()))
            .filter(|n| id_like(n))
            .collect();
        keys.sort();
        keys.dedup();
        let mut alive = Vec::new();
        for n in mutate::neighbours(gold, &keys, 4 * cfg.max_neighbours) {
            if self.stats.neighbours >= cfg.max_neighbours || !cap(db, deadline) {
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
        deadline: Instant,
        alive: &mut Vec<String>,
        context: &str,
    ) {
        let pools = pools::build(tables, gold);
        let mut rng = rng(cfg, context, gold);
        let mut spares = Vec::new();
        for _ in 0..cfg.instances * CANDIDATES_PER_INSTANCE {
            let have = self.instances.len();
            if have >= cfg.instances || (alive.is_empty() && have + spares.len() >= cfg.instances) {
                break;
            }
            if Instant::now() >= deadline {
                self.stats.truncated = true;
                break;
            }
            let inst = instances::generate(tables, &pools, &mut rng);
            self.stats.candidates += 1;
            let gold_on = |inst: &Instance| {
                load(db, &self.layout, inst)?;
                cap(db, deadline);
                effect(db, gold, self.readonly)
            };
            let (Ok(back), Ok(fwd)) = (gold_on(&inst.reversed()), gold_on(&inst)) else {
                self.stats.gold_errors += 1;
                continue;
            };
            if !same(&fwd, &back, self.ordered) {
                self.stats.gold_order_dependent += 1;
                continue;
            }
            // The forward load is in place: run the remaining neighbours on it.
            let before = alive.len();
            alive.retain(|n| {
                cap(db, deadline);
                matches!(effect(db, n, self.readonly), Ok(e) if same(&fwd, &e, self.ordered))
            });
            let told = before - alive.len();
            if told > 0 {
                self.stats.distinguished += told;
                self.instances.push((inst, fwd));
            } else if spares.len() < cfg.instances {
                spares.push((inst, fwd));
            }
        }
        let room = cfg.instances.saturating_sub(self.instances.len());
        self.instances.extend(spares.into_iter().take(room));
        self.stats.instances = self.instances.len();
        db.cap_wall(None);
    }

    /// The instances, in the order predictions are checked on them.
    pub fn instances(&self) -> impl Iterator<Item = &Instance> {
        self.instances.iter().map(|(i, _)| i)
    }

    /// Check `pred` (already execution-correct on the original database of `context`) on
    /// every instance, within `budget` in all.
    pub fn check(&self, context: &str, pred: &str, limits: &Limits, budget: Duration) -> Check {
        if self.instances.is_empty() {
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
        let deadline = Instant::now() + budget;
        for (i, (inst, gold)) in self.instances.iter().enumerate() {
            if let Err(e) = load(&db, &self.layout, inst) {
                return fails(i, e);
            }
            if !cap(&db, deadline) {
                return Check::Fails {
                    instance: i,
                    error: format!("test-suite time budget of {budget:?} spent"),
                };
            }
            match effect(&db, pred, self.readonly) {
                Ok(e) if same(gold, &e, self.ordered) => {}
                Ok(_) => return Check::Differs { instance: i },
                Err(e) => return fails(i, e),
            }
        }
        Check::Pass
    }
}
