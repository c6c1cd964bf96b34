"""load: read the CSV of questions into rows.jsonl."""
import csv
import sys

from common import metric, out_path, write_jsonl

with open(sys.argv[1], newline="", encoding="utf-8") as f:
    rows = [
        {"id": int(r["id"]), "question": r["question"], "context": r["context"], "sql": r["sql"]}
        for r in csv.DictReader(f)
    ]
write_jsonl(out_path("rows.jsonl"), rows)
metric("rows", len(rows))
