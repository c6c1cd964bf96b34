#!/usr/bin/env bash
# Issue 30, acceptance 2: N random kill -9 points over a pipeline (default: the smoke pipeline),
# each aimed at the orchestrator (`t2s`) or at the worker (`t2s-worker`) at a random moment of
# a run, with a `t2s gc` racing the run half of the time. After each kill:
#   1. `t2s run --verify` must succeed (every cached object re-hashed: nothing reused wrongly);
#   2. `t2s gc` must succeed, then `t2s run` must be all cache hits (nothing in use deleted);
#   3. every node's output must equal an uninterrupted reference run's (same key, same files).
# Every kill lands on a run with work left: the campaign goes in blocks of ten runs over one
# project, each run a variant of the pipeline (`--set`) the block has not run yet: the first
# from a clean slate, then ones that change the base's corpus seed (base training and all below
# it rerun) or the adapters' seed (LoRA training, evaluation and report rerun), over the
# resumed, cached and gc'd state the earlier kills left. The kill moment is uniform over the
# variant's uninterrupted run time on the same state (measured by a reference project that runs
# the same variants in the same order without kills); a run that ends first does not count as
# a kill point, and the campaign goes on until N kill points have landed.
#
#   bench/kill_campaign.sh [N] [PIPELINE]        (defaults: 50, pipelines/smoke.yaml)
#
# "Equal to an uninterrupted run": after each kill's rerun and gc, every object in the project
# is one the reference project holds under the same key with the same file digests, and the
# variant's rerun after gc is all cache hits.
#
# Needs the release binaries (`cargo build --release --workspace`); T2S and T2S_WORKER
# override their paths. Prints one line per kill and a summary; exits 1 on the first failure.
set -euo pipefail
n="${1:-50}"
pipeline="${2:-pipelines/smoke.yaml}"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"
target="${CARGO_TARGET_DIR:-$here/target}"
pipeline="$(realpath "$pipeline")"
work="$(mktemp -d)"
trap '[ -n "${KEEP_WORK:-}" ] && echo "work dir kept: $work" || rm -rf "$work"' EXIT
# Copies of the binaries: a rebuild during the campaign must not change the code under test.
mkdir -p "$work/bin"
cp "${T2S:-$target/release/t2s}" "$work/bin/t2s"
cp "${T2S_WORKER:-$target/release/t2s-worker}" "$work/bin/t2s-worker"
t2s="$work/bin/t2s"
export T2S_WORKER="$work/bin/t2s-worker"

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

# The block's variants: `--set` arguments of position 0..9 (0: the pipeline as written).
variant() {
    local p=$1
    if (( p == 0 )); then echo ""
    elif (( p % 2 )); then echo "--set corpus.seed=$((2000 + p))"
    else echo "--set train.seed=$((100 + p))"; fi
}

echo "kill campaign: $n kill points over $pipeline ($(nproc) cores)"
mkdir -p "$work/ref"
declare -a ref_ms
for p in $(seq 0 9); do
    t0=$(now_ms)
    # shellcheck disable=SC2046
    T2S_ROOT="$work/ref" "$t2s" run "$pipeline" $(variant "$p") --quiet > "$work/ref.log" 2>&1 \
        || { echo "the reference run of variant $p failed"; cat "$work/ref.log"; exit 1; }
    ref_ms[$p]=$(( $(now_ms) - t0 ))
    outputs "$work/ref" > "$work/ref.$p.outputs"
done
echo "reference runs (ms, on the state the block's earlier runs leave): ${ref_ms[*]};" \
     "$(wc -l < "$work/ref.9.outputs") objects"

export T2S_ROOT="$work/camp"
declare -A count=([orchestrator]=0 [worker]=0 [finished]=0 [gc_raced]=0 [resumed]=0)
landed=0 i=0
while (( landed < n && i < 3 * n )); do
    p=$(( i % 10 )); i=$(( i + 1 ))
    (( p == 0 )) && { rm -rf "$work/camp"; mkdir -p "$work/camp"; }
    args="$(variant "$p")"
    aim=$([ $((RANDOM % 2)) = 0 ] && echo orchestrator || echo worker)
    delay=$(( RANDOM * ref_ms[p] / 32768 ))
    # shellcheck disable=SC2086
    setsid "$t2s" run "$pipeline" $args --quiet > "$work/run.log" 2>&1 &
    pid=$!
    raced=""
    if (( RANDOM % 2 )); then
        sleep "$(printf '0.%03d' $(( RANDOM % 1000 )))"
        "$t2s" gc > "$work/gc-race.log" 2>&1 || { echo "run $i: gc during the run failed"; cat "$work/gc-race.log"; exit 1; }
        raced=" +gc"; count[gc_raced]=$(( count[gc_raced] + 1 ))
    fi
    sleep "$(printf '%d.%03d' $(( delay / 1000 )) $(( delay % 1000 )))"
    victim=""
    if [ "$aim" = worker ]; then
        victim="$(pgrep -g "$pid" -f t2s-worker | head -n1 || true)"
    fi
    [ -z "$victim" ] && aim=orchestrator && victim=$pid
    if kill -0 "$victim" 2>/dev/null && kill -9 "$victim" 2>/dev/null; then
        count[$aim]=$(( count[$aim] + 1 )); landed=$(( landed + 1 ))
        what="kill $landed: -9 $aim at ${delay} ms$raced"
    else
        count[finished]=$(( count[finished] + 1 ))
        what="no kill: finished before ${delay} ms$raced"
    fi
    wait "$pid" 2>/dev/null || true
    # A machine crash takes the whole group; a worker that outlived its t2s goes the same way.
    pkill -9 -g "$pid" 2>/dev/null || true

    where="run $i (variant $p${args:+: $args}), $what"
    # shellcheck disable=SC2086
    "$t2s" run "$pipeline" $args --verify > "$work/verify.log" 2>&1 \
        || { echo "$where: run --verify failed"; cat "$work/verify.log"; exit 1; }
    grep -qE '^resumed ' "$work/verify.log" && count[resumed]=$(( count[resumed] + 1 ))
    "$t2s" gc > "$work/gc.log" 2>&1 || { echo "$where: gc failed"; cat "$work/gc.log"; exit 1; }
    # shellcheck disable=SC2086
    "$t2s" run "$pipeline" $args > "$work/again.log" 2>&1 \
        || { echo "$where: run after gc failed"; cat "$work/again.log"; exit 1; }
    all_cached "$work/again.log" \
        || { echo "$where: gc removed what the latest run used"; cat "$work/again.log"; exit 1; }
    outputs "$work/camp" > "$work/camp.outputs"
    LC_ALL=C comm -13 "$work/ref.$p.outputs" "$work/camp.outputs" > "$work/wrong"
    [ ! -s "$work/wrong" ] \
        || { echo "$where: objects no uninterrupted run produced:"; cat "$work/wrong"; exit 1; }
    echo "$where: verify ok, gc ok, all cached after gc, $(wc -l < "$work/camp.outputs") objects as the reference's"
done
(( landed == n )) || { echo "only $landed of $n kill points landed in $i runs"; exit 1; }
echo "summary: $n kill points in $i runs: ${count[orchestrator]} orchestrator, ${count[worker]} worker" \
     "(${count[finished]} runs ended before their kill moment); gc raced $((count[gc_raced])) runs;" \
     "${count[resumed]} reruns resumed a training; every check held"
