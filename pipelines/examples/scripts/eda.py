"""eda: simple statistics of the loaded rows."""
from common import input_path, metric, out_path, read_jsonl, write_json

rows = read_jsonl(input_path("load", "rows.jsonl"))
first_words = {}
for r in rows:
    word = r["sql"].split()[0].upper()
    first_words[word] = first_words.get(word, 0) + 1
stats = {
    "rows": len(rows),
    "mean_question_chars": round(sum(len(r["question"]) for r in rows) / max(len(rows), 1), 2),
    "mean_sql_chars": round(sum(len(r["sql"]) for r in rows) / max(len(rows), 1), 2),
    "sql_first_word": first_words,
}
write_json(out_path("eda.json"), stats)
metric("mean_sql_chars", stats["mean_sql_chars"])
