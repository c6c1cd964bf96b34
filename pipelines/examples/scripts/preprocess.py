"""preprocess: turn rows into prompt/target pairs."""
from common import input_path, out_path, read_jsonl, write_jsonl

rows = read_jsonl(input_path("load", "rows.jsonl"))
pairs = [
    {
        "id": r["id"],
        "prompt": f"{r['context']}\n-- {' '.join(r['question'].split())}",
        "target": " ".join(r["sql"].split()),
    }
    for r in rows
]
write_jsonl(out_path("pairs.jsonl"), pairs)
