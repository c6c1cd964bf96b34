"""Helpers shared by the example command scripts: t2s passes paths in environment variables."""
import json
import os


def out_path(name):
    """A path inside this node's output directory ($T2S_OUT)."""
    return os.path.join(os.environ["T2S_OUT"], name)


def input_path(stage, name):
    """A file in the artifact of the upstream stage `stage` ($T2S_INPUT_<STAGE>)."""
    return os.path.join(os.environ["T2S_INPUT_" + stage.upper()], name)


def read_jsonl(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def write_jsonl(path, rows):
    with open(path, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, sort_keys=True) + "\n")


def write_json(path, value):
    with open(path, "w", encoding="utf-8") as f:
        json.dump(value, f, sort_keys=True, indent=2)
        f.write("\n")


def metric(name, value, step=None):
    """Report a metric to t2s (a `::metric` line on stdout)."""
    print(f"::metric {name} {value}" + ("" if step is None else f" {step}"), flush=True)
