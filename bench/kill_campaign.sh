#!/usr/bin/env bash
# Issue 30, acceptance 2: N random kill -9 points over a pipeline (default: the smoke pipeline),
# each aimed at the orchestrator (`t2s`) or at the worker (`t2s-worker`) at a random moment of
# a run, with a `t2s gc` racing the run half of the time. After each kill:
#   1. `t2s run --verify` must succeed (every cached object re-hashed: nothing reused wrongly);
#   2. `t2s gc` must succeed, then `t2s run` must be all cache hits (nothing in use deleted);
#   3. every node's output must equal an uninterrupted reference run's (same key, same files).
# One project is kept across all kills, so later kills land on resumed and cached states.
#
#   bench/kill_campaign.sh [N] [PIPELINE]        (defaults: 50, pipelines/smoke.yaml)
#
# Needs the release binaries (`cargo build --release --workspace`); T2S and T2S_WORKER
# override their paths. Prints one line per kill and a summary; exits 1 on the first failure.
set -euo pipefail
n="${1:-50}"
pipeline="${2:-pipelines/smoke.yaml}"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"
target="${CARGO_TARGET_DIR:-$here/target}"
t2s="${T2S:-$target/release/t2s}"
export T2S_WORKER="${T2S_WORKER:-$target/release/t2s-worker}"
pipeline="$(realpath "$pipeline")"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

now_ms() { date +%s%3N; }

# node -> key and file digests of every committed object, one sorted line per object.
outputs() {
    python3 - "$1/artifacts/v1/objects" <<'PY'
import json, os, sys
rows = []
for key in os.listdir(sys.argv[1]):
    m = json.load(open(os.path.join(sys.argv[1], key, "MANIFEST.json")))
    files = ",".join(f"{p}={e['blake3'][:16]}" for p, e in sorted(m["files"].items()))
    rows.append(f"{m['node']} {key[:16]} {files}")
print("\n".join(sorted(rows)))
PY
}

# No node of a `t2s run` output (lines "<status> <node> ...") did anything but hit the cache.
all_cached() { ! grep -qE '^(ran|resumed|failed|skipped|interrupted) ' "$1"; }

echo "kill campaign: $n kills over $pipeline ($(nproc) cores)"
t0=$(now_ms)
mkdir -p "$work/ref"
T2S_ROOT="$work/ref" "$t2s" run "$pipeline" --quiet > "$work/ref.log" 2>&1 \
    || { echo "the reference run failed"; cat "$work/ref.log"; exit 1; }
full_ms=$(( $(now_ms) - t0 ))
outputs "$work/ref" > "$work/ref.outputs"
echo "reference run: ${full_ms} ms, $(wc -l < "$work/ref.outputs") objects"

export T2S_ROOT="$work/camp"
mkdir -p "$T2S_ROOT"
declare -A count=([orchestrator]=0 [worker]=0 [finished]=0 [gc_raced]=0 [resumed]=0)
for i in $(seq 1 "$n"); do
    # Start from a clean slate now and then, so early stages get killed too.
    if (( i % 10 == 1 )); then rm -rf "$work/camp"; mkdir -p "$work/camp"; fi
    aim=$([ $((RANDOM % 2)) = 0 ] && echo orchestrator || echo worker)
    delay=$(( RANDOM * full_ms / 32768 ))
    setsid "$t2s" run "$pipeline" --quiet > "$work/run.log" 2>&1 &
    pid=$!
    raced=""
    if (( RANDOM % 2 )); then
        sleep "$(printf '0.%03d' $(( RANDOM % 1000 )))"
        "$t2s" gc > "$work/gc-race.log" 2>&1 || { echo "kill $i: gc during the run failed"; cat "$work/gc-race.log"; exit 1; }
        raced=" +gc"; count[gc_raced]=$(( count[gc_raced] + 1 ))
    fi
    sleep "$(printf '%d.%03d' $(( delay / 1000 )) $(( delay % 1000 )))"
    victim=""
    if [ "$aim" = worker ]; then
        victim="$(pgrep -g "$pid" -f t2s-worker | head -n1 || true)"
    fi
    [ -z "$victim" ] && aim=orchestrator && victim=$pid
    if kill -0 "$victim" 2>/dev/null; then
        kill -9 "$victim" 2>/dev/null || true
        count[$aim]=$(( count[$aim] + 1 ))
        what="kill -9 $aim at ${delay} ms$raced"
    else
        count[finished]=$(( count[finished] + 1 ))
        what="finished before ${delay} ms$raced"
    fi
    wait "$pid" 2>/dev/null || true
    # A machine crash takes the whole group; a worker that outlived its t2s goes the same way.
    pkill -9 -g "$pid" 2>/dev/null || true

    "$t2s" run "$pipeline" --verify > "$work/verify.log" 2>&1 \
        || { echo "kill $i ($what): run --verify failed"; cat "$work/verify.log"; exit 1; }
    grep -qE '^resumed ' "$work/verify.log" && count[resumed]=$(( count[resumed] + 1 ))
    "$t2s" gc > "$work/gc.log" 2>&1 || { echo "kill $i: gc failed"; cat "$work/gc.log"; exit 1; }
    "$t2s" run "$pipeline" > "$work/again.log" 2>&1 \
        || { echo "kill $i ($what): run after gc failed"; cat "$work/again.log"; exit 1; }
    all_cached "$work/again.log" \
        || { echo "kill $i ($what): gc removed what the latest run used"; cat "$work/again.log"; exit 1; }
    outputs "$work/camp" > "$work/camp.outputs"
    diff -u "$work/ref.outputs" "$work/camp.outputs" > "$work/diff" \
        || { echo "kill $i ($what): outputs differ from the reference run"; cat "$work/diff"; exit 1; }
    echo "kill $i: $what: verify ok, gc ok, all cached after gc, outputs equal"
done
echo "summary: $n kill points: ${count[orchestrator]} orchestrator, ${count[worker]} worker," \
     "${count[finished]} finished first; gc raced $((count[gc_raced])) runs;" \
     "${count[resumed]} reruns resumed a training; every check held"
