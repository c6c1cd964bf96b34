"""train: a stand-in for LoRA training that checkpoints and resumes like the real one.

Each step sleeps STEP_SECONDS and writes a checkpoint into $T2S_PARTIAL (atomically, via a
rename); a rerun after a kill continues from the newest checkpoint. The result depends only on
the rank and the training data, so an interrupted-then-resumed run equals an uninterrupted one.
"""
import json
import os
import sys
import time

from common import input_path, metric, out_path, read_jsonl, write_json

rank = int(sys.argv[sys.argv.index("--rank") + 1])
steps = int(os.environ.get("STEPS", "5"))
pause = float(os.environ.get("STEP_SECONDS", "0.3"))
partial = os.environ["T2S_PARTIAL"]
rows = read_jsonl(input_path("split", "train.jsonl"))
chars = sum(len(r["target"]) for r in rows)

state = {"step": 0, "weight": 0.0}
ckpts = sorted(
    (int(n[len("ckpt-"):-len(".json")]), n)
    for n in os.listdir(partial)
    if n.startswith("ckpt-") and n.endswith(".json")
)
if ckpts:
    with open(os.path.join(partial, ckpts[-1][1]), encoding="utf-8") as f:
        state = json.load(f)
    print("::resumed", flush=True)
    print(f"resuming from step {state['step']}", file=sys.stderr, flush=True)

while state["step"] < steps:
    time.sleep(pause)
    state["step"] += 1
    # Deterministic "learning": the weight approaches a rank-dependent optimum.
    state["weight"] = round(state["weight"] + (rank / 16 - state["weight"]) * 0.5 + chars % 7 * 1e-4, 10)
    loss = round(1.0 / (1 + state["step"] * rank / 4), 6)
    # A per-process temp name: a command orphaned by a killed run may still be finishing.
    tmp = os.path.join(partial, f".ckpt-{state['step']}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(state, f)
    os.replace(tmp, os.path.join(partial, f"ckpt-{state['step']}.json"))
    metric("loss", loss, state["step"])
    print(f"::progress {state['step']} {steps} training rank {rank}", flush=True)

write_json(out_path("adapter.json"), {"rank": rank, "steps": steps, "weight": state["weight"]})
metric("final_loss", round(1.0 / (1 + steps * rank / 4), 6))
