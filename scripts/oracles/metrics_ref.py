#!/usr/bin/env python3
"""Reference text metrics for the t2s metric parity test (tests/integration/eval_metrics_parity.rs).

Input: a JSONL file of {"pred": str, "ref": str} and optional slices given as
"start:stop:step" arguments. Output (stdout): one JSON object per slice with
  hf_bleu, hf_bleu_smooth   HF `evaluate` "bleu" (bleu.py + nmt_bleu.py), 0..1
  sacrebleu                 sacrebleu.metrics.BLEU() corpus score, 0..100
  rouge                     per-example [rouge1, rouge2, rougeL] F1 (rouge_score, no stemmer)
  rouge_mean                their means

HF `evaluate` cannot load its metric scripts offline, so its bleu is reproduced here:
  - the tokenizer is `evaluate/metrics/bleu/tokenizer_13a.py`, a verbatim copy of sacrebleu's
    Tokenizer13a (same replacements, same four regexes), so sacrebleu's class is used;
  - `compute_bleu` is TensorFlow NMT's `nmt/scripts/bleu.py` as vendored by
    `evaluate/metrics/bleu/nmt_bleu.py`, ported line for line below;
  - `Bleu._compute` wraps flat references as one reference each and tokenizes with
    `tokenizer(r)` for references and predictions (no rstrip).
"""
import collections
import json
import math
import sys

from rouge_score import rouge_scorer
from sacrebleu.metrics import BLEU
from sacrebleu.tokenizers.tokenizer_13a import Tokenizer13a


def _get_ngrams(segment, max_order):
    ngram_counts = collections.Counter()
    for order in range(1, max_order + 1):
        for i in range(0, len(segment) - order + 1):
            ngram = tuple(segment[i:i + order])
            ngram_counts[ngram] += 1
    return ngram_counts


def compute_bleu(reference_corpus, translation_corpus, max_order=4, smooth=False):
    matches_by_order = [0] * max_order
    possible_matches_by_order = [0] * max_order
    reference_length = 0
    translation_length = 0
    for (references, translation) in zip(reference_corpus, translation_corpus):
        reference_length += min(len(r) for r in references)
        translation_length += len(translation)

        merged_ref_ngram_counts = collections.Counter()
        for reference in references:
            merged_ref_ngram_counts |= _get_ngrams(reference, max_order)
        translation_ngram_counts = _get_ngrams(translation, max_order)
        overlap = translation_ngram_counts & merged_ref_ngram_counts
        for ngram in overlap:
            matches_by_order[len(ngram) - 1] += overlap[ngram]
        for order in range(1, max_order + 1):
            possible_matches = len(translation) - order + 1
            if possible_matches > 0:
                possible_matches_by_order[order - 1] += possible_matches

    precisions = [0] * max_order
    for i in range(0, max_order):
        if smooth:
            precisions[i] = ((matches_by_order[i] + 1.) / (possible_matches_by_order[i] + 1.))
        else:
            if possible_matches_by_order[i] > 0:
                precisions[i] = (float(matches_by_order[i]) / possible_matches_by_order[i])
            else:
                precisions[i] = 0.0

    if min(precisions) > 0:
        p_log_sum = sum((1. / max_order) * math.log(p) for p in precisions)
        geo_mean = math.exp(p_log_sum)
    else:
        geo_mean = 0

    ratio = float(translation_length) / reference_length
    if ratio > 1.0:
        bp = 1.
    else:
        bp = math.exp(1 - 1. / ratio)
    bleu = geo_mean * bp
    return (bleu, precisions, bp, ratio, translation_length, reference_length)


def hf_bleu(predictions, references, smooth=False):
    tok = Tokenizer13a()
    references = [[r] for r in references]
    references = [[tok(r).split() for r in ref] for ref in references]
    predictions = [tok(p).split() for p in predictions]
    return compute_bleu(references, predictions, 4, smooth)[0]


def main():
    rows = [json.loads(l) for l in open(sys.argv[1], encoding="utf-8") if l.strip()]
    slices = sys.argv[2:] or ["::"]
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=False)
    out = []
    for sl in slices:
        a, b, c = [int(x) if x else None for x in sl.split(":")]
        part = rows[slice(a, b, c)]
        preds = [r["pred"] for r in part]
        refs = [r["ref"] for r in part]
        rouge = []
        for p, r in zip(preds, refs):
            s = scorer.score(r, p)
            rouge.append([s["rouge1"].fmeasure, s["rouge2"].fmeasure, s["rougeL"].fmeasure])
        n = max(len(rouge), 1)
        out.append({
            "slice": sl,
            "n": len(part),
            "hf_bleu": hf_bleu(preds, refs, False),
            "hf_bleu_smooth": hf_bleu(preds, refs, True),
            "sacrebleu": BLEU().corpus_score(preds, [refs]).score,
            "rouge": rouge,
            "rouge_mean": [sum(x[k] for x in rouge) / n for k in range(3)],
        })
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
