#!/usr/bin/env bash
# Issue 29, acceptance 2: t2s's LoRA rank sweep of the real Gemma-3-270m
# (pipelines/gemma3_270m.yaml) side by side with the seed's own recipe (transformers Trainer +
# PEFT, bench/peers/peer_seed_recipe.py) on the same model, the same train split and the same
# test rows, in one script run. Prints per rank: wall time of the training, trained tokens/s,
# peak RSS and execution accuracy with its 95% CI for both systems, and the paired comparison.
#
#   bench/seed_recipe.sh [RANKS]          (default "4 8 16")
#
# T2S_ROOT: the project directory of the t2s run (default: a fresh one, so the run is cold).
#   When it already holds the run, the t2s numbers come from the run that computed each node
#   (the tracking DB), and only the peer runs.
# PEER_STEPS: the peer's optimizer steps (default: as many rows as t2s's train node saw,
#   batch 1 x 8 accumulation = the seed's). THREADS: torch threads of the peer (default nproc,
#   as t2s's worker uses).
# WORK: a directory to keep the peer's outputs in (default: a temp dir, removed at the end); a
#   rank whose peer run is already there is scored again, not rerun.
# Needs the release binaries and the real model (`python scripts/fetch_gemma.py model`).
set -euo pipefail
ranks="${1:-4 8 16}"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"
target="${CARGO_TARGET_DIR:-$here/target}"
t2s="${T2S:-$target/release/t2s}"
export T2S_WORKER="${T2S_WORKER:-$target/release/t2s-worker}"
py="${PYTHON:-python3}"
# WORK: keep the peer's adapters, predictions and logs there (default: a temp dir, removed).
if [ -n "${WORK:-}" ]; then
    work="$WORK"; mkdir -p "$work"
else
    work="$(mktemp -d)"; trap 'rm -rf "$work"' EXIT
fi
export T2S_ROOT="${T2S_ROOT:-$work/t2s}"
mkdir -p "$T2S_ROOT"
pipeline="$here/pipelines/gemma3_270m.yaml"

echo "seed recipe vs t2s: pipelines/gemma3_270m.yaml, ranks $ranks, $(nproc) cores, $(date -u +%F)"
t0=$(date +%s)
/usr/bin/time -v -o "$work/t2s.time" "$t2s" run "$pipeline" --quiet > "$work/t2s.log" 2>&1 \
    || { cat "$work/t2s.log"; exit 1; }
echo "t2s run: $(( $(date +%s) - t0 )) s (0 when everything was cached), peak RSS of the orchestrator $(awk -F': ' '/Maximum resident/ {print int($2/1024)}' "$work/t2s.time") MiB"

# Per node of the pipeline: the record of the run that computed it (status `ran`), its final
# metrics and its artifact, newest run first.
"$t2s" runs -n 200 --json > "$work/runs.json"
for id in $("$py" -c 'import json,sys; print(" ".join(str(r["id"]) for r in json.load(open(sys.argv[1])) if r.get("pipeline") == "gemma3_270m"))' "$work/runs.json"); do
    "$t2s" show "$id" --json > "$work/show-$id.json"
done
"$py" - "$work" > "$work/t2s.json" <<'PY'
import glob, json, os, sys
nodes, artifacts = {}, {}
for path in sorted(glob.glob(os.path.join(sys.argv[1], "show-*.json")),
                   key=lambda p: -int(p.rsplit("-", 1)[1].split(".")[0])):
    show = json.load(open(path))
    finals = {}
    for m in show["metrics"]:
        finals.setdefault(m["node"], {})[m["name"]] = m["value"]
    for n in show["nodes"]:
        if n.get("artifact") and n["node"] not in artifacts:
            artifacts[n["node"]] = n["artifact"]
        if n["status"] == "ran" and n["node"] not in nodes:
            nodes[n["node"]] = {"duration_s": n["duration_s"], **finals.get(n["node"], {})}
print(json.dumps({"nodes": nodes, "artifacts": artifacts}))
PY
art() { "$py" -c 'import json,sys; print(json.load(open(sys.argv[1]))["artifacts"][sys.argv[2]])' "$work/t2s.json" "$1"; }
split_dir="$(art split)"
model_dir="$(art base)"

printf '\n%-5s %-6s %9s %9s %10s %10s  %s\n' rank system train_s tok/s rss_MiB loss "exec accuracy [95% CI]"
for r in $ranks; do
    node="train[lora_r=$r]"
    t2s_preds="$(art "evaluate[lora_r=$r]")/predictions.jsonl"
    steps="${PEER_STEPS:-$("$py" -c 'import json,sys; n=json.load(open(sys.argv[1]))["nodes"][sys.argv[2]]; print(max(1, round(n["global_step"] * 4 / 8)))' "$work/t2s.json" "$node")}"
    # A peer run WORK already holds (a bench stopped between ranks) is kept, not redone.
    if ! grep -q '"train_s"' "$work/peer-$r.json" 2>/dev/null; then
        "$py" bench/peers/peer_seed_recipe.py --model "$model_dir" --split "$split_dir" --rank "$r" \
            --max-steps "$steps" --threads "${THREADS:-$(nproc)}" --out "$work/peer-$r" \
            > "$work/peer-$r.json" 2> "$work/peer-$r.log" || { tail -30 "$work/peer-$r.log"; exit 1; }
    fi
    "$t2s" evaluate --predictions "$t2s_preds" --predictions "$work/peer-$r/predictions.jsonl" --json \
        > "$work/eval-$r.json" 2> "$work/eval-$r.log" || true
    "$py" - "$work" "$r" "$node" <<'PY'
import json, os, sys
work, r, node = sys.argv[1:4]
t = json.load(open(os.path.join(work, "t2s.json")))["nodes"][node]
p = json.loads(open(os.path.join(work, f"peer-{r}.json")).read().strip().splitlines()[-1])
ev = json.load(open(os.path.join(work, f"eval-{r}.json")))
systems = list(ev["systems"].values())
def acc(s):
    e = s["execution_accuracy"]
    return f"{100*e['value']:.1f}% [{100*e['ci_low']:.1f}, {100*e['ci_high']:.1f}] (n={e['n']})"
t_tps = t["train_tokens"] / t["duration_s"]
rows = [("t2s", t["duration_s"], t_tps, t.get("peak_rss_mb"), t.get("train_loss"), systems[0]),
        ("peer", p["train_s"], p["tokens_per_s"], p["peak_rss_mb"], p["final_loss"], systems[1])]
for name, s, tps, rss, loss, sysm in rows:
    rss = f"{rss:10.0f}" if rss is not None else f"{'-':>10}"
    print(f"{r:<5} {name:<6} {s:9.0f} {tps:9.1f} {rss} {loss:10.4f}  {acc(sysm)}")
print(f"{r:<5} ratio  {p['train_s'] / t['duration_s']:9.2f}x faster (t2s node wall vs peer train()),"
      f" {t_tps / p['tokens_per_s']:.2f}x tokens/s")
for c in ev.get("comparisons", []):
    print(f"      paired: {json.dumps(c)}")
PY
done
