//! Batching of tokenized examples: by example count or by a padded-token budget, with length
//! bucketing, a seeded per-epoch order and right padding. Deterministic given the seed and the
//! epoch, so a resumed run sees exactly the batches an uninterrupted run would.

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// How micro-batches are sized.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum BatchBy {
    /// At most this many examples per batch.
    Examples(usize),
    /// At most this many tokens per batch counting padding (rows × longest row).
    Tokens(usize),
}

/// Why no batch plan could be made; the message says what to change.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum BatchError {
    #[error("the train split is empty: there is nothing to train on; check the split stage's output and its `train` fraction")]
    Empty,
    #[error("all {count} training examples are longer than max_length {max_length} tokens (the shortest has {shortest}); raise `max_length` or shorten the prompts")]
    AllTooLong {
        count: usize,
        max_length: usize,
        shortest: usize,
    },
    #[error("`{name}` must be at least 1")]
    Zero { name: &'static str },
}

/// The fixed batching of one dataset.
#[derive(Debug, Clone)]
pub struct BatchPlan {
    by: BatchBy,
    shuffle: bool,
    seed: u64,
    /// Examples kept (length ≤ max_length), by index into the caller's list.
    kept: Vec<usize>,
    /// Length-bucketed batches (`None` when batches are drawn from a fresh permutation).
    fixed: Option<Vec<Vec<usize>>>,
    /// Examples dropped for being longer than max_length.
    pub dropped_too_long: usize,
}

/// splitmix64: a well-mixed 64-bit hash used to derive independent seeds.
pub fn mix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A seed derived from the run seed and a counter (epoch, step, ...) under a purpose tag, so
/// random streams never need to be serialized for resume.
pub fn derive_seed(seed: u64, tag: u64, counter: u64) -> u64 {
    mix64(mix64(seed ^ mix64(tag)) ^ counter)
}

const TAG_EPOCH_ORDER: u64 = 1;

impl BatchPlan {
    /// `lengths[i]` is the token count of example `i`. Examples longer than `max_length` are
    /// left out (counted in `dropped_too_long`). With `group_by_length` (always for a token
    /// budget) batches are chunks of the examples sorted by length, so padding is small; each
    /// epoch visits them in a seeded order. Without it, each epoch draws a seeded permutation.
    /// `shuffle = false` keeps the data order (grouped: longest batch first).
    pub fn new(
        lengths: &[usize],
        max_length: usize,
        by: BatchBy,
        group_by_length: bool,
        shuffle: bool,
        seed: u64,
    ) -> Result<Self, BatchError> {
        match by {
            BatchBy::Examples(0) => return Err(BatchError::Zero { name: "batch_size" }),
            BatchBy::Tokens(0) => {
                return Err(BatchError::Zero {
                    name: "token_budget",
                })
            }
            _ => {}
        }
        if lengths.is_empty() {
            return Err(BatchError::Empty);
        }
        let kept: Vec<usize> = (0..lengths.len())
            .filter(|&i| lengths[i] <= max_length && lengths[i] > 0)
            .collect();
        if kept.is_empty() {
            return Err(BatchError::AllTooLong {
                count: lengths.len(),
                max_length,
                shortest: lengths.iter().copied().min().unwrap_or(0),
            });
        }
        let dropped_too_long = lengths.len() - kept.len();
        let grouped = group_by_length || matches!(by, BatchBy::Tokens(_));
        let fixed = grouped.then(|| {
            let mut order = kept.clone();
            // Longest first; ties keep data order, so the plan depends only on the data.
            order.sort_by_key(|&i| (std::cmp::Reverse(lengths[i]), i));
            chunk(&order, lengths, by)
        });
        Ok(Self {
            by,
            shuffle,
            seed,
            kept,
            fixed,
            dropped_too_long,
        })
    }

    /// Micro-batches per epoch (the same every epoch).
    pub fn batches_per_epoch(&self) -> usize {
        match (&self.fixed, self.by) {
            (Some(f), _) => f.len(),
            (None, BatchBy::Examples(n)) => self.kept.len().div_ceil(n),
            (None, BatchBy::Tokens(_)) => unreachable!("token budgets are always grouped"),
        }
    }

    /// Number of examples trained on per epoch.
    pub fn examples(&self) -> usize {
        self.kept.len()
    }

    /// The batches of `epoch`, in visiting order, as example indices.
    pub fn epoch(&self, epoch: u64) -> Vec<Vec<usize>> {
        let mut rng = ChaCha8Rng::seed_from_u64(derive_seed(self.seed, TAG_EPOCH_ORDER, epoch));
        match &self.fixed {
            Some(fixed) => {
                let mut batches = fixed.clone();
                if self.shuffle {
                    batches.shuffle(&mut rng);
                }
                batches
            }
            None => {
                let mut order = self.kept.clone();
                if self.shuffle {
                    order.shuffle(&mut rng);
                }
                let BatchBy::Examples(n) = self.by else {
                    unreachable!("token budgets are always grouped")
                };
                order.chunks(n).map(|c| c.to_vec()).collect()
            }
        }
    }
}

fn chunk(sorted: &[usize], lengths: &[usize], by: BatchBy) -> Vec<Vec<usize>> {
    match by {
        BatchBy::Examples(n) => sorted.chunks(n).map(|c| c.to_vec()).collect(),
        BatchBy::Tokens(budget) => {
            let mut out: Vec<Vec<usize>> = Vec::new();
            let mut cur: Vec<usize> = Vec::new();
            let mut longest = 0usize;
            for &i in sorted {
                let l = longest.max(lengths[i]);
                // An example over the budget on its own still gets a batch of one.
                if !cur.is_empty() && l * (cur.len() + 1) > budget {
                    out.push(std::mem::take(&mut cur));
                    longest = 0;
                }
                longest = longest.max(lengths[i]);
                cur.push(i);
            }
            if !cur.is_empty() {
                out.push(cur);
            }
            out
        }
    }
}

/// A right-padded batch, row-major `[rows, cols]`, ready to become tensors.
#[derive(Debug, Clone, PartialEq)]
pub struct PaddedBatch {
    pub rows: usize,
    pub cols: usize,
    pub input_ids: Vec<i64>,
    /// -100 on masked and padded positions.
    pub labels: Vec<i64>,
    /// Label tokens that count in the loss: positions 1.. whose label is not -100 (the first
    /// label is never predicted, as in HF's shifted causal-LM loss).
    pub loss_tokens: usize,
    /// Real (non-pad) tokens.
    pub real_tokens: usize,
}

/// Right-pad `(input_ids, labels)` pairs with `pad_id` / -100 to the longest row rounded up
/// to a multiple of `multiple`, but not past `limit` (a longer row still sets the length).
pub fn pad_right(
    examples: &[(&[u32], &[i64])],
    pad_id: u32,
    multiple: usize,
    limit: usize,
) -> PaddedBatch {
    let rows = examples.len();
    let longest = examples.iter().map(|(ids, _)| ids.len()).max().unwrap_or(0);
    let cols = longest
        .next_multiple_of(multiple.max(1))
        .min(limit)
        .max(longest);
    let mut input_ids = vec![pad_id as i64; rows * cols];
    let mut labels = vec![-100i64; rows * cols];
    let mut loss_tokens = 0;
    let mut real_tokens = 0;
    for (r, (ids, labs)) in examples.iter().enumerate() {
        real_tokens += ids.len();
        for (c, &t) in ids.iter().enumerate() {
            input_ids[r * cols + c] = t as i64;
        }
        for (c, &l) in labs.iter().enumerate().take(ids.len()) {
            labels[r * cols + c] = l;
            if c > 0 && l != -100 {
                loss_tokens += 1;
            }
        }
    }
    PaddedBatch {
        rows,
        cols,
        input_ids,
        labels,
        loss_tokens,
        real_tokens,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_budget_buckets_by_length_and_respects_the_budget() {
        let lengths = [5, 30, 6, 29, 7, 31, 100];
        let p = BatchPlan::new(&lengths, 64, BatchBy::Tokens(64), false, true, 1).unwrap();
        assert_eq!(p.dropped_too_long, 1);
        let e0 = p.epoch(0);
        for b in &e0 {
            let longest = b.iter().map(|&i| lengths[i]).max().unwrap();
            assert!(longest * b.len() <= 64, "{b:?}");
        }
        let mut all: Vec<usize> = e0.concat();
        all.sort();
        assert_eq!(all, vec![0, 1, 2, 3, 4, 5]);
        // Long examples are batched together, short ones together.
        assert!(e0.iter().any(|b| {
            let mut b = b.clone();
            b.sort();
            b == vec![1, 5]
        }));
    }

    #[test]
    fn epochs_are_deterministic_and_differ() {
        let lengths: Vec<usize> = (0..40).map(|i| 3 + (i * 7) % 20).collect();
        let p = BatchPlan::new(&lengths, 64, BatchBy::Examples(4), false, true, 7).unwrap();
        let q = BatchPlan::new(&lengths, 64, BatchBy::Examples(4), false, true, 7).unwrap();
        assert_eq!(p.epoch(3), q.epoch(3));
        assert_ne!(p.epoch(0), p.epoch(1));
        assert_eq!(p.batches_per_epoch(), 10);
        let r = BatchPlan::new(&lengths, 64, BatchBy::Examples(4), false, true, 8).unwrap();
        assert_ne!(p.epoch(0), r.epoch(0));
        // Grouped batches keep their composition, only the order changes.
        let g = BatchPlan::new(&lengths, 64, BatchBy::Examples(4), true, true, 7).unwrap();
        let mut a = g.epoch(0);
        let mut b = g.epoch(1);
        assert_ne!(a, b);
        a.sort();
        b.sort();
        assert_eq!(a, b);
    }

    #[test]
    fn no_shuffle_keeps_data_order() {
        let p =
            BatchPlan::new(&[3, 4, 5, 6, 7], 64, BatchBy::Examples(2), false, false, 0).unwrap();
        assert_eq!(p.epoch(5), vec![vec![0, 1], vec![2, 3], vec![4]]);
    }

    #[test]
    fn bad_inputs_are_clear_errors() {
        let e = BatchPlan::new(&[], 8, BatchBy::Examples(2), true, true, 0).unwrap_err();
        assert_eq!(e, BatchError::Empty);
        let e = BatchPlan::new(&[9, 12], 8, BatchBy::Examples(2), true, true, 0).unwrap_err();
        assert!(e.to_string().contains("max_length 8"), "{e}");
        assert!(e.to_string().contains("shortest has 9"), "{e}");
        let e = BatchPlan::new(&[3], 8, BatchBy::Tokens(0), true, true, 0).unwrap_err();
        assert!(e.to_string().contains("token_budget"));
    }

    #[test]
    fn right_padding_masks_pads_and_counts_loss_tokens() {
        let a: (&[u32], &[i64]) = (&[2, 10, 11, 12], &[-100, -100, 11, 12]);
        let b: (&[u32], &[i64]) = (&[2, 20], &[-100, 20]);
        let p = pad_right(&[a, b], 0, 1, 512);
        assert_eq!((p.rows, p.cols), (2, 4));
        assert_eq!(p.input_ids, vec![2, 10, 11, 12, 2, 20, 0, 0]);
        assert_eq!(p.labels, vec![-100, -100, 11, 12, -100, 20, -100, -100]);
        assert_eq!(p.loss_tokens, 3);
        assert_eq!(p.real_tokens, 6);
    }

    #[test]
    fn padding_to_a_multiple_adds_only_pads_and_stops_at_the_limit() {
        let a: (&[u32], &[i64]) = (&[2, 10, 11], &[-100, 10, 11]);
        let plain = pad_right(&[a], 0, 1, 512);
        let p = pad_right(&[a], 0, 8, 512);
        assert_eq!(p.cols, 8);
        assert_eq!(p.input_ids, vec![2, 10, 11, 0, 0, 0, 0, 0]);
        assert_eq!(&p.labels[..3], &plain.labels[..]);
        assert!(p.labels[3..].iter().all(|&l| l == -100));
        assert_eq!(
            (p.loss_tokens, p.real_tokens),
            (plain.loss_tokens, plain.real_tokens)
        );
        assert_eq!(pad_right(&[a], 0, 8, 5).cols, 5, "never past the limit");
        assert_eq!(
            pad_right(&[a], 0, 8, 2).cols,
            3,
            "a longer row still sets the length"
        );
        assert_eq!(pad_right(&[a], 0, 0, 512).cols, 3, "0 means no rounding");
    }
}
