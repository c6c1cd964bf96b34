//! Uncertainty: bootstrap confidence intervals and paired tests between systems.
//!
//! - Resamples are index vectors drawn with replacement by a seeded ChaCha8 generator
//!   ([`resample_indices`]), so every number is reproducible and the same resamples can be
//!   replayed by a reference implementation.
//! - CIs use the percentile method with NumPy's default (`linear`) percentile interpolation.
//!   The default resample count is [`DEFAULT_RESAMPLES`] (1000, like rouge_score's
//!   BootstrapAggregator and sacrebleu's paired bootstrap).
//! - Paired comparisons on binary per-example scores (execution accuracy) use the exact
//!   McNemar test (= the two-sided sign test on discordant pairs) and a paired bootstrap of the
//!   difference of means over shared resamples.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

/// Bootstrap resamples used unless a caller asks otherwise.
pub const DEFAULT_RESAMPLES: usize = 1000;

/// A point estimate with its 95% interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Estimate {
    pub value: f64,
    pub ci_low: f64,
    pub ci_high: f64,
    /// Examples the value is computed over.
    pub n: usize,
}

impl Estimate {
    /// Half the width of the interval.
    pub fn half_width(&self) -> f64 {
        (self.ci_high - self.ci_low) / 2.0
    }
}

/// `resamples` index vectors of length `n`, drawn uniformly with replacement.
pub fn resample_indices(n: usize, resamples: usize, seed: u64) -> Vec<Vec<u32>> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..resamples)
        .map(|_| {
            (0..n)
                .map(|_| {
                    if n == 0 {
                        0
                    } else {
                        rng.random_range(0..n as u32)
                    }
                })
                .collect()
        })
        .collect()
}

/// NumPy `np.percentile(values, q)` with the default linear interpolation. `values` need not
/// be sorted. Empty input gives NaN.
pub fn percentile(values: &[f64], q: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    let mut s = values.to_vec();
    s.sort_by(f64::total_cmp);
    let pos = (s.len() - 1) as f64 * q / 100.0;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    s[lo] + (s[hi] - s[lo]) * (pos - lo as f64)
}

/// Plain mean (0 for an empty slice), summed in order.
pub fn mean(values: &[f64]) -> f64 {
    if values.is_empty() {
        0.0
    } else {
        values.iter().sum::<f64>() / values.len() as f64
    }
}

/// 95% percentile-bootstrap interval of any statistic computed from a resample's indices.
pub fn bootstrap_with(
    n: usize,
    indices: &[Vec<u32>],
    point: f64,
    stat: impl Fn(&[u32]) -> f64,
) -> Estimate {
    if n == 0 || indices.is_empty() {
        return Estimate {
            value: point,
            ci_low: point,
            ci_high: point,
            n,
        };
    }
    let stats: Vec<f64> = indices.iter().map(|ix| stat(ix)).collect();
    Estimate {
        value: point,
        ci_low: percentile(&stats, 2.5),
        ci_high: percentile(&stats, 97.5),
        n,
    }
}

/// Bootstrap CI of the mean of per-example values.
pub fn bootstrap_mean(values: &[f64], indices: &[Vec<u32>]) -> Estimate {
    bootstrap_with(values.len(), indices, mean(values), |ix| {
        ix.iter().map(|&i| values[i as usize]).sum::<f64>() / ix.len() as f64
    })
}

/// Exact two-sided McNemar p-value from the discordant counts `b` (only A right) and `c`
/// (only B right): `min(1, 2 * P[X <= min(b, c)])`, `X ~ Binomial(b + c, 1/2)`; 1 when there
/// are no discordant pairs.
pub fn mcnemar_exact(b: u64, c: u64) -> f64 {
    let n = b + c;
    if n == 0 {
        return 1.0;
    }
    let k = b.min(c);
    // pmf(0) = 2^-n; pmf(i+1) = pmf(i) * (n - i) / (i + 1), in log space.
    let mut log_pmf = -(n as f64) * std::f64::consts::LN_2;
    let mut cdf = 0.0;
    for i in 0..=k {
        cdf += log_pmf.exp();
        log_pmf += ((n - i) as f64).ln() - ((i + 1) as f64).ln();
    }
    (2.0 * cdf).min(1.0)
}

/// Result of comparing system A with system B on the same examples.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PairedComparison {
    pub n: usize,
    /// mean(A) - mean(B)
    pub diff: f64,
    pub diff_ci_low: f64,
    pub diff_ci_high: f64,
    /// Two-sided paired-bootstrap p-value: `min(1, 2 * min(P[d* <= 0], P[d* >= 0]))`.
    pub bootstrap_p: f64,
    /// Examples only A gets right / only B gets right (binary scores).
    pub only_a: u64,
    pub only_b: u64,
    /// Exact McNemar p-value (binary scores).
    pub mcnemar_p: f64,
}

/// Compare paired per-example scores (same examples, same order) of A and B.
pub fn paired_compare(a: &[f64], b: &[f64], indices: &[Vec<u32>]) -> PairedComparison {
    let n = a.len().min(b.len());
    let d: Vec<f64> = (0..n).map(|i| a[i] - b[i]).collect();
    let est = bootstrap_mean(&d, indices);
    let diffs: Vec<f64> = indices
        .iter()
        .map(|ix| ix.iter().map(|&i| d[i as usize]).sum::<f64>() / ix.len().max(1) as f64)
        .collect();
    let bootstrap_p = if diffs.is_empty() {
        1.0
    } else {
        let le = diffs.iter().filter(|&&x| x <= 0.0).count() as f64 / diffs.len() as f64;
        let ge = diffs.iter().filter(|&&x| x >= 0.0).count() as f64 / diffs.len() as f64;
        (2.0 * le.min(ge)).min(1.0)
    };
    let only_a = (0..n).filter(|&i| a[i] > b[i]).count() as u64;
    let only_b = (0..n).filter(|&i| a[i] < b[i]).count() as u64;
    PairedComparison {
        n,
        diff: est.value,
        diff_ci_low: est.ci_low,
        diff_ci_high: est.ci_high,
        bootstrap_p,
        only_a,
        only_b,
        mcnemar_p: mcnemar_exact(only_a, only_b),
    }
}

/// A warning when the data cannot rank A and B: the paired interval of the difference contains
/// 0, or either system's own CI half-width exceeds the observed difference.
pub fn ranking_warning(
    name_a: &str,
    a: &Estimate,
    name_b: &str,
    b: &Estimate,
    paired: &PairedComparison,
) -> Option<String> {
    let diff = paired.diff.abs();
    let hw = a.half_width().max(b.half_width());
    if paired.diff_ci_low <= 0.0 && paired.diff_ci_high >= 0.0 || hw > diff {
        Some(format!(
            "n={} is too small to rank {name_a} vs {name_b}: difference {:+.4}, paired 95% CI \
             [{:+.4}, {:+.4}], CI half-width {:.4}, McNemar p={:.3}",
            paired.n, paired.diff, paired.diff_ci_low, paired.diff_ci_high, hw, paired.mcnemar_p
        ))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_matches_numpy_linear() {
        // np.percentile([1, 2, 3, 4], [2.5, 50, 97.5]) == [1.075, 2.5, 3.925]
        let v = [4.0, 1.0, 3.0, 2.0];
        assert!((percentile(&v, 2.5) - 1.075).abs() < 1e-12);
        assert!((percentile(&v, 50.0) - 2.5).abs() < 1e-12);
        assert!((percentile(&v, 97.5) - 3.925).abs() < 1e-12);
    }

    #[test]
    fn all_ones_has_degenerate_interval() {
        let v = vec![1.0; 50];
        let ix = resample_indices(v.len(), 200, 7);
        let e = bootstrap_mean(&v, &ix);
        assert_eq!((e.value, e.ci_low, e.ci_high), (1.0, 1.0, 1.0));
    }

    #[test]
    fn mcnemar_known_values() {
        // b=0, c=5: 2 * 0.5^5 = 0.0625; b=3, c=3: 1; b=1, c=9: 2*(1+10)/1024.
        assert!((mcnemar_exact(0, 5) - 0.0625).abs() < 1e-12);
        assert_eq!(mcnemar_exact(3, 3), 1.0);
        assert!((mcnemar_exact(1, 9) - 22.0 / 1024.0).abs() < 1e-12);
        assert_eq!(mcnemar_exact(0, 0), 1.0);
    }

    #[test]
    fn resamples_are_seeded() {
        assert_eq!(resample_indices(10, 3, 1), resample_indices(10, 3, 1));
        assert_ne!(resample_indices(10, 3, 1), resample_indices(10, 3, 2));
    }
}
