"""The 11-node example pipeline (pipelines/examples/commands.yaml) as an equivalent DVC 3.x
dvc.yaml: the same scripts and DAG, outputs in out/<stage>/. Peers for bench/dvc_noop.sh and
bench/remote.sh.

    python3 bench/peers/examples_dvc_yaml.py OUT/dvc.yaml
"""
import json, sys

def stage(name, cmd, deps, needs, env=""):
    inputs = " ".join(f"T2S_INPUT_{n.split('_')[0].upper()}=out/{n}" for n in needs)
    return name, {
        "cmd": f"mkdir -p out/{name} partial/{name} && T2S_OUT=out/{name} T2S_PARTIAL=partial/{name} "
               f"{inputs} {env} {cmd}",
        "deps": deps + [f"out/{n}" for n in needs],
        "outs": [f"out/{name}"],
    }

common = ["scripts/common.py"]
stages = [
    stage("load", "python3 scripts/load.py data/questions.csv", ["scripts/load.py", "data/questions.csv"] + common, []),
    stage("eda", "python3 scripts/eda.py", ["scripts/eda.py"] + common, ["load"]),
    stage("preprocess", "python3 scripts/preprocess.py", ["scripts/preprocess.py"] + common, ["load"]),
    stage("split", "python3 scripts/split.py", ["scripts/split.py"] + common, ["preprocess"], "TEST_EVERY=5"),
]
for r in (4, 8, 16):
    stages.append(stage(f"train_{r}", f"python3 scripts/train.py --rank {r}", ["scripts/train.py"] + common,
                        ["split"], "STEPS=5 STEP_SECONDS=0.3"))
for r in (4, 8, 16):
    stages.append(stage(f"evaluate_{r}", "python3 scripts/evaluate.py", ["scripts/evaluate.py"] + common,
                        [f"train_{r}", "split"]))
inputs = json.dumps([{"stage": "evaluate", "dir": f"out/evaluate_{r}"} for r in (4, 8, 16)])
name, rep = stage("report", "python3 scripts/report.py", ["scripts/report.py"] + common,
                  [f"evaluate_{r}" for r in (4, 8, 16)])
rep["cmd"] = rep["cmd"].replace("T2S_INPUT_EVALUATE=out/evaluate_4 T2S_INPUT_EVALUATE=out/evaluate_8 "
                                "T2S_INPUT_EVALUATE=out/evaluate_16", f"T2S_INPUTS='{inputs}'")
stages.append((name, rep))
assert len(stages) == 11
with open(sys.argv[1], "w") as f:
    json.dump({"stages": dict(stages)}, f, indent=2)  # JSON is YAML
