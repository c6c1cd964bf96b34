#!/usr/bin/env python3
"""Issue 34, acceptance 1: a search over the quickstart's LoRA stage against the full grid of
the same space, in one script run, both through `t2s run` in one project (the shared upstream
nodes, base model included, are computed once).

The space: r in {4, 8, 16} x lr x lora_alpha in {8, 16, 32}. The grid takes lr in GRID_LR; the
search samples lr from the log range spanning them (TPE, successive halving on the eval loss;
by default 40 trials in brackets of 8 with rungs at 50 and 400 steps: reduction factor 8).
Both pipelines are generated from pipelines/quickstart.yaml (its train stage's matrix replaced),
so the quickstart stays the one description of the experiment; both evaluate every 50 steps
(halving's rungs are ranked by an evaluation at their last step).

Prints the best grid configuration and its execution accuracy, the search's best and its
accuracy, and the training steps each spent (the search's from its outcome: each trial counts
the steps up to the last rung it reached, since a promotion resumes).

    python3 bench/search_vs_grid.py [--trials 40] [--batch 8] [--seed 0] [--min-steps 50]
                                  [--reduction-factor 8] [--root DIR]
Needs the release binaries (T2S, T2S_WORKER or CARGO_TARGET_DIR/release).
"""
import argparse
import glob
import json
import os
import subprocess
import sys
import tempfile
import time

import yaml

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GRID_R = [4, 8, 16]
GRID_LR = [5.0e-4, 1.4e-3, 4.0e-3]
GRID_ALPHA = [8, 16, 32]
EVAL_STEPS = 50


def quickstart():
    with open(os.path.join(HERE, "pipelines/quickstart.yaml")) as f:
        return yaml.safe_load(f)


def lora_params(p):
    t = p["stages"]["train"]
    t.pop("matrix", None)
    t["params"].update(
        lora_r="${matrix.lora_r}",
        lr="${matrix.lr}",
        lora_alpha="${matrix.lora_alpha}",
        eval_steps=EVAL_STEPS,
    )
    return t


def grid_pipeline():
    p = quickstart()
    p["name"] = "quickstart_grid"
    lora_params(p)["matrix"] = {"lora_r": GRID_R, "lr": GRID_LR, "lora_alpha": GRID_ALPHA}
    return p


def search_pipeline(trials, batch, seed, min_steps, reduction_factor):
    p = quickstart()
    p["name"] = "quickstart_search"
    lora_params(p)["search"] = {
        "space": {
            "lora_r": {"values": GRID_R},
            "lr": {"low": min(GRID_LR), "high": max(GRID_LR), "log": True},
            "lora_alpha": {"values": GRID_ALPHA},
        },
        "strategy": "tpe",
        "trials": trials,
        "batch": batch,
        "seed": seed,
        "objective": {"stage": "evaluate", "metric": "execution_accuracy", "mode": "max"},
        "halving": {"min_steps": min_steps, "reduction_factor": reduction_factor},
    }
    return p


def t2s():
    target = os.environ.get("CARGO_TARGET_DIR", os.path.join(HERE, "target"))
    return os.environ.get("T2S", os.path.join(target, "release/t2s"))


def run(pipeline, work, root):
    path = os.path.join(work, pipeline["name"] + ".yaml")
    with open(path, "w") as f:
        yaml.safe_dump(pipeline, f, sort_keys=False)
    t0 = time.time()
    out = subprocess.run([t2s(), "--root", root, "run", path, "--quiet"],
                         capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"t2s run {path} failed:\n{out.stdout}\n{out.stderr}")
    return time.time() - t0, out


def report_json(root, name):
    """The report.json of pipeline `name`'s latest run (its report node's artifact)."""
    def js(*args):
        out = subprocess.run([t2s(), "--root", root, *args, "--json"], capture_output=True,
                             text=True, check=True)
        return json.loads(out.stdout)
    run_id = next(r["id"] for r in js("runs", "-n", "50") if r.get("pipeline") == name)
    node = next(n for n in js("show", str(run_id))["nodes"] if n["node"] == "report")
    with open(os.path.join(node["artifact"], "report.json")) as f:
        return json.load(f)


def grid_results(root):
    """(params, execution accuracy) of every grid point, from the grid run's report."""
    rep = report_json(root, "quickstart_grid")  # the latest run of the grid
    out = []
    for v in rep["variants"]:
        acc = v["metrics"].get("execution_accuracy")
        if acc is not None and v["name"] != "base":
            out.append((v["name"], acc["value"]))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=40)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--min-steps", type=int, default=50)
    ap.add_argument("--reduction-factor", type=int, default=8)
    ap.add_argument("--root", default=None)
    a = ap.parse_args()
    work = tempfile.mkdtemp(prefix="search-vs-grid-")
    root = a.root or os.path.join(work, "root")
    os.makedirs(root, exist_ok=True)
    print(f"search vs grid: quickstart LoRA stage, {os.cpu_count()} cores, root {root}")

    grid = grid_pipeline()
    grid_s, _ = run(grid, work, root)
    points = grid_results(root)
    steps = grid["stages"]["train"]["params"]["max_steps"]
    best_name, best_acc = max(points, key=lambda x: x[1])
    print(f"grid: {len(points)} configurations, {len(points) * steps} training steps, "
          f"{grid_s:.0f} s; best {best_name}: execution accuracy {100 * best_acc:.1f}")

    search = search_pipeline(a.trials, a.batch, a.seed, a.min_steps, a.reduction_factor)
    search_s, out = run(search, work, root)
    s = report_json(root, "quickstart_search")["search"]
    best = s["trials"][s["best"]]
    spent, grid_steps = s["steps_spent"], len(points) * steps
    print(f"search: {len(s['trials'])} trials, {spent} training steps "
          f"({100 * spent / grid_steps:.0f}% of the grid's {grid_steps}), {search_s:.0f} s "
          f"(upstream cached); best {json.dumps(best['params'])}: execution accuracy "
          f"{100 * best['value']:.1f}")
    gap = 100 * (best["value"] - best_acc)
    side = "above" if gap >= 0 else "below"
    print(f"verdict: the search's best is {abs(gap):.1f} points {side} the grid's best "
          f"(acceptance: at most 1 below), spending {100 * spent / grid_steps:.0f}% of its "
          f"steps (acceptance: <= 40%)")


if __name__ == "__main__":
    main()
