#!/usr/bin/env bash
# Build the release binaries here and put what the GPU run needs into .gpu/ (git-ignored),
# then call the device tool with carry [".gpu"] and `bash bench/gpu/run.sh`.
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/env.sh
cargo build --release --workspace --bins
rm -rf .gpu/tests && mkdir -p .gpu/tests   # no stale test binaries from an earlier build
cp "$CARGO_TARGET_DIR/release/t2s" "$CARGO_TARGET_DIR/release/t2s-worker" .gpu/
# The model crate's parity tests, run there with T2S_TEST_DEVICE=cuda.
if [ "${WITH_TESTS:-1}" = 1 ]; then
  cargo test --release -p t2s-torch --no-run --message-format=json 2>/dev/null \
    | python3 -c 'import json,sys
for l in sys.stdin:
    m = json.loads(l)
    if m.get("executable") and m.get("target", {}).get("kind") == ["test"]:
        print(m["executable"])' \
    | while read -r exe; do
        case "$(basename "$exe")" in parity-*|generate-*|lora-*|train_parity-*|fused-*) cp "$exe" .gpu/tests/ ;; esac
      done
fi
strip .gpu/t2s .gpu/t2s-worker .gpu/tests/* 2>/dev/null || true
# The orchestrator draws the report's charts with fontconfig/freetype, which the GPU image may
# lack: bundle the shared libraries it links (glibc's own excepted) and one font family.
mkdir -p .gpu/lib .gpu/fonts
ldd .gpu/t2s | awk '/=> \// {print $3}' \
  | grep -v -E '/(libc|libm|libgcc_s|libpthread|libdl|librt|ld-linux[^/]*)\.so' \
  | xargs -r -I{} cp -L {} .gpu/lib/
cp -r /usr/share/fonts/truetype/dejavu .gpu/fonts/ 2>/dev/null || echo "no DejaVu fonts here: charts on the GPU machine may lack text" >&2
ldd .gpu/t2s-worker | grep -q torch_cuda || { echo "t2s-worker does not link libtorch_cuda: CUDA would not register" >&2; exit 1; }
du -sh .gpu
