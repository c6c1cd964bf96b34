#!/usr/bin/env python3
"""Write N rendered Text-to-SQL chat prompts (gretel-like lengths: a request plus a schema
context of a few CREATE TABLE / INSERT lines) as the `generate` job's JSONL input."""
import json
import random
import sys

TEMPLATE = ("<bos><start_of_turn>user\nGenerate the SQL query for the following request based on the "
            "provided context.\n\nRequest: {p}\n\nDatabase Context:\n{c}<end_of_turn>\n"
            "<start_of_turn>model\n")


def main():
    n, out = int(sys.argv[1]), sys.argv[2]
    rnd = random.Random(0)
    words = "users orders region amount total price customer name year month city sales id".split()
    with open(out, "w") as f:
        for i in range(n):
            req = "What is the " + " ".join(rnd.choice(words) for _ in range(rnd.randint(6, 20))) + "?"
            tables = []
            for t in range(rnd.randint(1, 3)):
                cols = ", ".join(f"{rnd.choice(words)}_{k} INT" for k in range(rnd.randint(3, 8)))
                tables.append(f"CREATE TABLE t{t} ({cols}); INSERT INTO t{t} VALUES (1, 2, 3);")
            f.write(json.dumps({"id": i, "text": TEMPLATE.format(p=req, c="\n".join(tables))}) + "\n")


if __name__ == "__main__":
    main()
