#!/usr/bin/env python3
"""Reference statistics for tests/integration/eval_stats.rs: replays the Rust resamples.

Input JSON (argv[1]): {"indices": [[...], ...], "a": [...], "b": [...],
                       "preds": [...], "refs": [...]}
Output JSON: for the mean of `a`: value and 95% percentile CI (np.percentile, linear);
for the paired difference a-b: mean, CI, two-sided bootstrap p
(min(1, 2*min(P[d*<=0], P[d*>=0]))), exact McNemar p (math.comb, exact fractions);
for sacrebleu corpus BLEU of (preds, refs): value and CI over the same resamples.
"""
import json
import sys
from fractions import Fraction
from math import comb

import numpy as np
from sacrebleu.metrics import BLEU


def ci(stats):
    return [float(np.percentile(stats, 2.5)), float(np.percentile(stats, 97.5))]


def mcnemar(b, c):
    n = b + c
    if n == 0:
        return 1.0
    k = min(b, c)
    p = Fraction(2 * sum(comb(n, i) for i in range(k + 1)), 2 ** n)
    return float(min(Fraction(1), p))


def main():
    d = json.load(open(sys.argv[1]))
    idx = np.array(d["indices"], dtype=np.int64)
    a = np.array(d["a"], dtype=np.float64)
    b = np.array(d["b"], dtype=np.float64)
    diff = a - b
    mean_stats = [a[i].mean() for i in idx]
    diff_stats = np.array([diff[i].mean() for i in idx])
    le = float(np.mean(diff_stats <= 0))
    ge = float(np.mean(diff_stats >= 0))
    out = {
        "mean": float(a.mean()),
        "mean_ci": ci(mean_stats),
        "diff": float(diff.mean()),
        "diff_ci": ci(diff_stats),
        "bootstrap_p": min(1.0, 2 * min(le, ge)),
        "only_a": int(np.sum(a > b)),
        "only_b": int(np.sum(a < b)),
        "mcnemar_p": mcnemar(int(np.sum(a > b)), int(np.sum(a < b))),
    }
    preds, refs = d["preds"], d["refs"]
    if preds:
        bleu = BLEU()
        out["sacrebleu"] = bleu.corpus_score(preds, [refs]).score
        stats = []
        for i in idx[: d.get("bleu_resamples", len(idx))]:
            stats.append(bleu.corpus_score([preds[j] for j in i], [[refs[j] for j in i]]).score)
        out["sacrebleu_ci"] = ci(stats)
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
