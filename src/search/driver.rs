//! The search loop: rounds of proposals, each run as ordinary pipeline nodes by a [`Runner`]
//! (the run command's scheduler; a fake in tests), until the trial budget is spent.
//!
//! Everything is a function of the spec and the results so far: round `k`'s RNG comes from
//! (seed, k), proposals from that RNG and the finished trials, halving decisions from the
//! rung results. Cached trials give the same results, so a killed search rerun proposes the
//! same trials again and finds the finished ones in the cache: none runs twice.
//!
//! Without halving a round proposes `batch` trials and runs each to its objective. With
//! halving a round is one bracket of `batch` trials: all train to the first rung (the train
//! node stopped at that step of its full schedule), the best 1/eta go on to the next rung,
//! resuming from their checkpoint, and so on; trials that reach the last rung train fully and
//! are scored by the objective.

use std::collections::BTreeMap;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::spec::{SearchSpec, Strategy};
use super::{tpe, Mode, Observation, Params};

/// The matrix key that marks a trial's node stopped at a rung: its value is the step.
pub const RUNG_KEY: &str = "rung_steps";

/// A trial as the pipeline holds it: its params and, for a rung of halving, the step its
/// training stops at (`None`: it trains fully and downstream stages score it).
#[derive(Debug, Clone, PartialEq)]
pub struct Trial {
    pub params: Params,
    pub stop_at: Option<u64>,
}

impl Trial {
    /// The matrix values of the trial's node of the searched stage.
    pub fn matrix(&self) -> BTreeMap<String, Value> {
        let mut m = self.params.clone();
        if let Some(s) = self.stop_at {
            m.insert(RUNG_KEY.to_string(), Value::from(s));
        }
        m
    }
}

/// Runs trials as pipeline nodes.
pub trait Runner {
    /// Make the pipeline hold `instances` (every trial so far, in order) as the searched
    /// stage's instances, run what `wanted` needs, and return each wanted trial's final
    /// metrics: a stopped trial's from its node of the searched stage, a full one's from its
    /// node of the objective stage.
    fn run(
        &mut self,
        instances: &[Trial],
        wanted: &[Trial],
    ) -> anyhow::Result<Vec<BTreeMap<String, f64>>>;
}

/// One trial's result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrialResult {
    pub params: Params,
    /// The objective (trials stopped by halving have none).
    pub value: Option<f64>,
    /// Halving: each rung it reached below the last, with the rung metric.
    pub rungs: Vec<(u64, f64)>,
    /// Optimizer steps it trained (when the searched stage is a train stage).
    pub steps: Option<u64>,
}

/// A finished search.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Outcome {
    pub stage: String,
    pub metric: String,
    pub mode: Mode,
    pub strategy: Strategy,
    pub trials: Vec<TrialResult>,
    /// Index into `trials` of the best one.
    pub best: Option<usize>,
    /// Optimizer steps all trials trained, and what the full grid of the space would (a
    /// space of choices only).
    pub steps_spent: Option<u64>,
    pub grid_steps: Option<u64>,
    pub grid_trials: Option<usize>,
}

/// The trials a pipeline holds before anything ran: the first round's (what `t2s dag` shows).
pub fn first_round(spec: &SearchSpec) -> Vec<Trial> {
    let proposals = propose(spec, &[], &[], spec.batch, &mut round_rng(spec.seed, 0));
    let stop_at = spec.halving.as_ref().map(|(h, _)| h.rungs()[0].steps);
    proposals
        .into_iter()
        .map(|params| Trial { params, stop_at })
        .collect()
}

/// Run the search to its budget.
pub fn drive(spec: &SearchSpec, runner: &mut dyn Runner) -> anyhow::Result<Outcome> {
    let mut instances: Vec<Trial> = Vec::new();
    let mut results: Vec<TrialResult> = Vec::new();
    let mut history: Vec<Observation> = Vec::new();
    let mut round = 0u64;
    while results.len() < spec.trials {
        let n = spec.batch.min(spec.trials - results.len());
        let seen: Vec<Params> = results.iter().map(|r| r.params.clone()).collect();
        let new = propose(spec, &history, &seen, n, &mut round_rng(spec.seed, round));
        if new.is_empty() {
            break; // every point of a space of choices was tried
        }
        let done = match &spec.halving {
            None => full_trials(spec, runner, &mut instances, new)?,
            Some(_) => bracket(spec, runner, &mut instances, new)?,
        };
        history.extend(done.iter().filter_map(|r| {
            Some(Observation {
                params: r.params.clone(),
                value: model_value(spec, r)?,
            })
        }));
        results.extend(done);
        round += 1;
    }
    Ok(outcome(spec, results))
}

/// Train and score `new` fully.
fn full_trials(
    spec: &SearchSpec,
    runner: &mut dyn Runner,
    instances: &mut Vec<Trial>,
    new: Vec<Params>,
) -> anyhow::Result<Vec<TrialResult>> {
    let wanted: Vec<Trial> = new
        .into_iter()
        .map(|params| Trial {
            params,
            stop_at: None,
        })
        .collect();
    instances.extend(wanted.iter().cloned());
    let got = runner.run(instances, &wanted)?;
    wanted
        .into_iter()
        .zip(got)
        .map(|(t, m)| {
            Ok(TrialResult {
                value: Some(metric(&m, &spec.objective.metric, &spec.objective.stage)?),
                params: t.params,
                rungs: Vec::new(),
                steps: spec.full_steps,
            })
        })
        .collect()
}

/// One bracket of successive halving over `new`.
fn bracket(
    spec: &SearchSpec,
    runner: &mut dyn Runner,
    instances: &mut Vec<Trial>,
    new: Vec<Params>,
) -> anyhow::Result<Vec<TrialResult>> {
    let (h, hb) = spec.halving.as_ref().expect("bracket without halving");
    let mut out: Vec<TrialResult> = new
        .iter()
        .map(|p| TrialResult {
            params: p.clone(),
            value: None,
            rungs: Vec::new(),
            steps: None,
        })
        .collect();
    let mut alive: Vec<usize> = (0..new.len()).collect();
    for rung in h.rungs() {
        let last = rung.steps == h.max_steps;
        let wanted: Vec<Trial> = alive
            .iter()
            .map(|&i| Trial {
                params: new[i].clone(),
                stop_at: (!last).then_some(rung.steps),
            })
            .collect();
        instances.extend(wanted.iter().cloned());
        let got = runner.run(instances, &wanted)?;
        for (&i, m) in alive.iter().zip(&got) {
            out[i].steps = Some(rung.steps);
            if last {
                out[i].value = Some(metric(m, &spec.objective.metric, &spec.objective.stage)?);
            } else {
                out[i]
                    .rungs
                    .push((rung.steps, metric(m, &hb.metric, &spec.stage)?));
            }
        }
        if last {
            break;
        }
        let ranked: Vec<(usize, f64)> = alive
            .iter()
            .map(|&i| (i, out[i].rungs.last().map_or(f64::NAN, |r| r.1)))
            .collect();
        alive = h.promote(&ranked, hb.mode());
    }
    Ok(out)
}

/// What the strategy learns from a trial: its objective, or with halving its first rung's
/// metric, which every trial of a bracket has (as BOHB models the budget with the most
/// observations), so TPE sees every trial, not only the few that trained fully.
fn model_value(spec: &SearchSpec, r: &TrialResult) -> Option<f64> {
    match &spec.halving {
        None => r.value,
        Some(_) => r.rungs.first().map(|(_, v)| *v),
    }
}

/// The direction of [`model_value`].
fn model_mode(spec: &SearchSpec) -> Mode {
    match &spec.halving {
        None => spec.objective.mode(),
        Some((_, hb)) => hb.mode(),
    }
}

fn metric(m: &BTreeMap<String, f64>, name: &str, stage: &str) -> anyhow::Result<f64> {
    m.get(name).copied().ok_or_else(|| {
        anyhow::anyhow!(
            "search: a node of stage `{stage}` reports no metric `{name}` (it reports: {})",
            if m.is_empty() {
                "none".to_string()
            } else {
                m.keys().cloned().collect::<Vec<_>>().join(", ")
            }
        )
    })
}

/// `n` new trials, none equal to a trial in `seen` or to another of them (a draw that repeats
/// one is drawn again; a space of choices may run out).
///
/// A batch is proposed before any of it runs, so TPE would propose the same good region n
/// times (every choice dimension takes the argmax of l/g: nine trials of one configuration).
/// The "constant liar" of parallel TPE (Optuna's `constant_liar`, after Ginsbourger et al.)
/// keeps the batch apart: each proposal joins the history at once with the worst value seen,
/// so the next one of the batch finds its region less promising.
fn propose(
    spec: &SearchSpec,
    history: &[Observation],
    seen: &[Params],
    n: usize,
    rng: &mut ChaCha8Rng,
) -> Vec<Params> {
    const REDRAWS: usize = 64;
    let mode = model_mode(spec);
    let mut lied: Vec<Observation> = history.to_vec();
    // (Random draws ignore the history: no liar.)
    let worst = history
        .iter()
        .map(|o| o.value)
        .max_by(|a, b| mode.as_loss(*a).total_cmp(&mode.as_loss(*b)))
        .filter(|_| spec.strategy == Strategy::Tpe);
    let mut out: Vec<Params> = Vec::new();
    for _ in 0..n {
        let fresh = (0..REDRAWS).find_map(|_| {
            let p = match spec.strategy {
                Strategy::Random => spec.space.sample(rng),
                Strategy::Tpe => tpe::propose(&spec.space, &lied, mode, &spec.tpe, rng),
            };
            (!seen.contains(&p) && !out.contains(&p)).then_some(p)
        });
        let Some(p) = fresh else { break };
        if let Some(value) = worst {
            lied.push(Observation {
                params: p.clone(),
                value,
            });
        }
        out.push(p);
    }
    out
}

/// Round `round`'s RNG: a function of the seed and the round only.
fn round_rng(seed: u64, round: u64) -> ChaCha8Rng {
    let mut h = blake3::Hasher::new();
    h.update(b"t2s search round");
    h.update(&seed.to_le_bytes());
    h.update(&round.to_le_bytes());
    ChaCha8Rng::from_seed(*h.finalize().as_bytes())
}

fn outcome(spec: &SearchSpec, trials: Vec<TrialResult>) -> Outcome {
    let mode = spec.objective.mode();
    let mut best: Option<usize> = None;
    for (i, t) in trials.iter().enumerate() {
        if let Some(v) = t.value.filter(|v| v.is_finite()) {
            if best.is_none_or(|b| mode.better(v, trials[b].value.unwrap_or(f64::NAN))) {
                best = Some(i);
            }
        }
    }
    let steps_spent = spec
        .full_steps
        .map(|_| trials.iter().filter_map(|t| t.steps).sum());
    let grid_trials = spec.space.grid().map(|g| g.len());
    Outcome {
        stage: spec.stage.clone(),
        metric: spec.objective.metric.clone(),
        mode,
        strategy: spec.strategy,
        best,
        steps_spent,
        grid_steps: grid_trials.zip(spec.full_steps).map(|(n, s)| n as u64 * s),
        grid_trials,
        trials,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::search::spec::{parse, StageFacts};
    use serde_json::json;

    /// Scores a trial by a fixed function of its params; the rung metric improves with steps.
    struct Fake {
        calls: Vec<Vec<Trial>>,
        fail_after: Option<usize>,
    }

    fn score(p: &Params) -> f64 {
        let x = p["x"].as_f64().unwrap();
        let r = p["r"].as_f64().unwrap();
        -(x.log10() + 2.5).powi(2) + r / 100.0
    }

    impl Runner for Fake {
        fn run(
            &mut self,
            _: &[Trial],
            wanted: &[Trial],
        ) -> anyhow::Result<Vec<BTreeMap<String, f64>>> {
            if self.fail_after.is_some_and(|n| self.calls.len() >= n) {
                anyhow::bail!("killed");
            }
            self.calls.push(wanted.to_vec());
            Ok(wanted
                .iter()
                .map(|t| {
                    let s = score(&t.params);
                    match t.stop_at {
                        Some(step) => {
                            BTreeMap::from([("eval_loss".into(), -s + 10.0 / step as f64)])
                        }
                        None => BTreeMap::from([("acc".into(), s)]),
                    }
                })
                .collect())
        }
    }

    fn spec(extra: Value) -> SearchSpec {
        let mut v = json!({"space": {"r": {"values": [4, 8, 16]}, "x": {"low": 1e-4, "high": 1e-1, "log": true}},
            "trials": 9, "batch": 3, "seed": 5, "objective": {"stage": "evaluate", "metric": "acc"}});
        for (k, x) in extra.as_object().unwrap() {
            v[k.as_str()] = x.clone();
        }
        parse(
            &v,
            &StageFacts {
                name: "train".into(),
                train_steps: Some((90, 10)),
            },
        )
        .unwrap()
    }

    fn fake() -> Fake {
        Fake {
            calls: Vec::new(),
            fail_after: None,
        }
    }

    #[test]
    fn a_killed_search_proposes_the_same_trials_again() {
        for extra in [
            json!({}),
            json!({"strategy": "random"}),
            json!({"halving": {"min_steps": 10}}),
        ] {
            let s = spec(extra);
            let mut whole = fake();
            let a = drive(&s, &mut whole).unwrap();
            let mut killed = Fake {
                fail_after: Some(2),
                ..fake()
            };
            assert!(drive(&s, &mut killed).is_err());
            assert_eq!(killed.calls[..], whole.calls[..2], "the same first rounds");
            let mut again = fake();
            assert_eq!(drive(&s, &mut again).unwrap(), a);
            assert_eq!(again.calls, whole.calls);
        }
    }

    #[test]
    fn halving_trains_a_fraction_of_the_steps_and_scores_only_full_trials() {
        let s = spec(json!({"halving": {"min_steps": 10}, "batch": 9}));
        let out = drive(&s, &mut fake()).unwrap();
        assert_eq!(out.trials.len(), 9);
        // 9 trials to step 10, 3 to 30, 1 to 90.
        assert_eq!(out.steps_spent, Some(6 * 10 + 2 * 30 + 90));
        assert_eq!(out.trials.iter().filter(|t| t.value.is_some()).count(), 1);
        let best = &out.trials[out.best.unwrap()];
        assert_eq!(best.steps, Some(90));
        assert_eq!(best.rungs.len(), 2);
    }

    #[test]
    fn a_space_of_choices_runs_out_instead_of_repeating() {
        let mut s = spec(
            json!({"space": {"r": {"values": [4, 8]}, "x": {"values": [0.01]}},
            "trials": 5, "strategy": "random"}),
        );
        s.batch = 5;
        let out = drive(&s, &mut fake()).unwrap();
        assert_eq!(out.trials.len(), 2);
        assert_eq!(out.grid_trials, Some(2));
    }

    #[test]
    fn a_tpe_batch_spreads_over_the_choices_instead_of_repeating_one() {
        // The history of the benchmark's collapse: three choices, the one that occurs least
        // among the bad trials wins l/g, and (before the liar) every trial of the batch took it.
        let s = spec(json!({})); // r in {4, 8, 16}, x in a log range
        let obs = |r: u64, x: f64, value: f64| Observation {
            params: BTreeMap::from([("r".to_string(), json!(r)), ("x".to_string(), json!(x))]),
            value,
        };
        let history = vec![
            obs(4, 1e-3, 0.9),
            obs(8, 2e-3, 0.8),
            obs(16, 3e-3, 0.7),
            obs(4, 1e-4, 0.1),
            obs(4, 2e-4, 0.2),
            obs(16, 3e-4, 0.3),
            obs(16, 4e-4, 0.1),
            obs(4, 5e-4, 0.2),
        ];
        let batch = propose(&s, &history, &[], 9, &mut round_rng(0, 1));
        let mut rs: Vec<u64> = batch.iter().map(|p| p["r"].as_u64().unwrap()).collect();
        rs.sort();
        rs.dedup();
        assert!(rs.len() >= 2, "one choice for the whole batch: {batch:?}");
    }

    #[test]
    fn a_missing_objective_metric_is_named() {
        let s = spec(json!({"objective": {"stage": "evaluate", "metric": "bleu"}}));
        let e = drive(&s, &mut fake()).unwrap_err().to_string();
        assert!(e.contains("no metric `bleu`") && e.contains("acc"), "{e}");
    }
}
