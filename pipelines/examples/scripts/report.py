"""report: gather every evaluate instance ($T2S_INPUTS) into one Markdown table."""
import json
import os

from common import metric, out_path

inputs = json.loads(os.environ["T2S_INPUTS"])
results = []
for inp in inputs:
    if inp["stage"] != "evaluate":
        continue
    with open(os.path.join(inp["dir"], "metrics.json"), encoding="utf-8") as f:
        results.append(json.load(f))
results.sort(key=lambda r: r["rank"])
lines = ["# Rank sweep", "", "| LoRA rank | exact match | examples |", "|---:|---:|---:|"]
lines += [f"| {r['rank']} | {r['exact_match']:.4f} | {r['examples']} |" for r in results]
with open(out_path("report.md"), "w", encoding="utf-8") as f:
    f.write("\n".join(lines) + "\n")
best = max(results, key=lambda r: r["exact_match"])
metric("best_exact_match", best["exact_match"])
metric("best_rank", best["rank"])
