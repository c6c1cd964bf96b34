"""evaluate: score an "adapter" on the test split (deterministic stand-in for exact match)."""
import json

from common import input_path, metric, out_path, read_jsonl, write_json

with open(input_path("train", "adapter.json"), encoding="utf-8") as f:
    adapter = json.load(f)
test = read_jsonl(input_path("split", "test.jsonl"))
# An example counts as solved when its id falls under the adapter's weight.
solved = sum(1 for r in test if (r["id"] * 37 % 100) / 100 < adapter["weight"])
score = round(solved / max(len(test), 1), 4)
write_json(out_path("metrics.json"), {"rank": adapter["rank"], "exact_match": score, "examples": len(test)})
metric("exact_match", score)
