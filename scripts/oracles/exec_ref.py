#!/usr/bin/env python3
"""Reference and peer for tests/integration/eval_exec.rs and bench/eval_exec.sh: execution accuracy the
way Python evaluators do it (Spider test-suite `result_eq` on sqlite3, DISTINCT kept, single
process), with writes compared by table snapshots. Usage: exec_ref.py ROWS.jsonl VERDICTS_OUT;
prints rows/s as JSON and writes one 0/1/- verdict per line."""
import itertools
import json
import sqlite3
import sys
import time
from collections import Counter

NONDET = {"CURRENT_DATE", "CURRENT_TIME", "CURRENT_TIMESTAMP", "NOW", "RANDOM", "RANDOMBLOB", "UUID"}


def db(ctx):
    c = sqlite3.connect(":memory:")
    c.text_factory = lambda b: b.decode(errors="ignore")
    c.executescript(ctx)
    return c


def snapshot(c):
    tabs = [r[0] for r in c.execute("SELECT name FROM sqlite_master WHERE type='table' ORDER BY name")]
    return {t: sorted(map(repr, c.execute(f'SELECT * FROM "{t}"').fetchall())) for t in tabs}


def result_eq(r1, r2, order_matters):
    if len(r1) == 0 and len(r2) == 0:
        return True
    if len(r1) != len(r2) or len(r1[0]) != len(r2[0]):
        return False
    n = len(r1[0])
    for perm in itertools.permutations(range(n)):
        p2 = [tuple(row[i] for i in perm) for row in r2]
        if order_matters:
            if r1 == p2:
                return True
        elif Counter(r1) == Counter(p2):
            return True
    return False


def verdict(row):
    ctx, gold, pred = row["sql_context"], row["sql"], row["prediction"]
    if any(w in NONDET for w in gold.upper().replace("(", " ").split()):
        return "-"
    try:
        g = db(ctx)
        before = snapshot(g)
        cur = g.execute(gold)
        grows = cur.fetchall()
        is_query = cur.description is not None
        gafter = snapshot(g)
    except Exception:
        return "-"
    try:
        p = db(ctx)
        cur = p.execute(pred)
        prows = cur.fetchall()
        if is_query:
            ok = cur.description is not None and result_eq(grows, prows, "order by" in gold.lower())
        else:
            ok = cur.description is None and snapshot(p) == gafter
        return "1" if ok else "0"
    except Exception:
        return "0"


def main():
    rows = [json.loads(l) for l in open(sys.argv[1])]
    t = time.perf_counter()
    out = [verdict(r) for r in rows]
    dt = time.perf_counter() - t
    with open(sys.argv[2], "w") as f:
        f.write("\n".join(out) + "\n")
    print(json.dumps({"rows": len(rows), "seconds": dt, "rows_per_s": len(rows) / dt}))


if __name__ == "__main__":
    main()
