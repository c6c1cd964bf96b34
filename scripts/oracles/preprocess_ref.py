#!/usr/bin/env python3
"""Reference preprocessing for t2s's parity test.

The logic of ../shared/bench/peer_preprocess.py (the seed's format_and_prepare step) with HF
`tokenizers`: build the Gemma chat prompt, tokenize prompt and response separately with
add_special_tokens=False, concatenate, and mask the prompt part of the labels with -100.
Unlike the peer benchmark it starts the prompt with the one <bos> of Gemma's chat template and
trims the user content (the template's `| trim`), as the real Gemma template does.

Modes: chat (above), raw (`<bos>{context}\\n{sql}<eos>`, every token a label) and commented
(`<bos>-- {request}\\n{context}\\n{sql}<eos>`, one `-- ` per request line, every token a label).
With --max-length, longer examples are dropped (t2s's `truncation: drop`).

Input: JSONL rows with id, sql_prompt, sql_context, sql. Output: JSONL {id, input_ids, labels}
for each kept row, in input order.
"""
import argparse
import json
import sys

from tokenizers import Tokenizer

INSTRUCTION = ("Generate the SQL query for the following request based on the provided context."
               "\n\nRequest: {p}\n\nDatabase Context:\n{c}")


def chat_prompt(p, c):
    content = INSTRUCTION.format(p=p, c=c).strip()
    return f"<bos><start_of_turn>user\n{content}<end_of_turn>\n<start_of_turn>model\n"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("rows_jsonl")
    ap.add_argument("tokenizer_json")
    ap.add_argument("--mode", choices=["chat", "raw", "commented"], default="chat")
    ap.add_argument("--max-length", type=int, default=0)
    a = ap.parse_args()
    tok = Tokenizer.from_file(a.tokenizer_json)
    rows = [json.loads(l) for l in open(a.rows_jsonl, encoding="utf-8") if l.strip()]
    out = sys.stdout
    if a.mode == "chat":
        pe = tok.encode_batch([chat_prompt(r["sql_prompt"], r["sql_context"]) for r in rows],
                              add_special_tokens=False)
        ae = tok.encode_batch([f"SQL: {r['sql']}<eos>" for r in rows], add_special_tokens=False)
        encoded = [(p.ids + r.ids, [-100] * len(p.ids) + r.ids) for p, r in zip(pe, ae)]
    elif a.mode == "commented":
        def comment(p):
            # Rust's str::lines: split on \n, drop one trailing \r per line.
            lines = [l[:-1] if l.endswith("\r") else l for l in p.strip().split("\n")]
            return "\n".join(f"-- {line}" for line in lines)
        te = tok.encode_batch(
            [f"<bos>{comment(r['sql_prompt'])}\n{r['sql_context']}\n{r['sql']}<eos>" for r in rows],
            add_special_tokens=False)
        encoded = [(t.ids, list(t.ids)) for t in te]
    else:
        te = tok.encode_batch([f"<bos>{r['sql_context']}\n{r['sql']}<eos>" for r in rows],
                              add_special_tokens=False)
        encoded = [(t.ids, list(t.ids)) for t in te]
    for r, (ids, labels) in zip(rows, encoded):
        if a.max_length and len(ids) > a.max_length:
            continue
        out.write(json.dumps({"id": r["id"], "input_ids": ids, "labels": labels}) + "\n")


if __name__ == "__main__":
    main()
