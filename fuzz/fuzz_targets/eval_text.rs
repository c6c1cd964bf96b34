//! Model output and gold SQL through the text metrics: SQL extraction, the SQL lexer, exact
//! match, sacrebleu's and HF's BLEU, ROUGE. Never a panic; scores stay in range; a text
//! matches itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use t2s::eval::{bleu, exact, extract, rouge, sqllex, tokenize};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    // Generated text, then the gold after the first NUL (or the text itself).
    let (generated, gold) = text.split_once('\0').unwrap_or((&text, &text));
    let pred = extract::extract_sql(generated);
    let _ = sqllex::lex(&pred);
    let _ = sqllex::first_keyword(&pred);
    let _ = sqllex::has_outer_order_by(&pred);
    let _ = sqllex::nondeterministic_token(&pred);
    let _ = exact::normalize_sql(&pred);
    assert!(
        exact::exact_match(&pred, &pred),
        "{pred:?} does not match itself"
    );
    let _ = exact::exact_match(&pred, gold);
    let _ = tokenize::tokenize_13a(&pred);
    let sb = bleu::sacrebleu(&[pred.as_str()], &[vec![gold]]);
    assert!(
        (0.0..=100.0 + 1e-9).contains(&sb.score),
        "sacrebleu {} of {pred:?} vs {gold:?}",
        sb.score
    );
    let hf = bleu::hf_bleu(&[pred.as_str()], &[vec![gold]], 4, false);
    assert!(hf.bleu.is_finite() && hf.bleu >= 0.0, "HF BLEU {}", hf.bleu);
    let r = rouge::rouge_f(gold, &pred);
    for v in [r.rouge1, r.rouge2, r.rouge_l] {
        assert!(
            (0.0..=1.0 + 1e-12).contains(&v),
            "ROUGE {v} of {pred:?} vs {gold:?}"
        );
    }
    if !tokenize::tokenize_rouge(&pred).is_empty() {
        let same = rouge::rouge_f(&pred, &pred);
        assert!(
            (same.rouge1 - 1.0).abs() < 1e-12,
            "ROUGE-1 of {pred:?} with itself"
        );
    }
});
