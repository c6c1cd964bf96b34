#!/usr/bin/env python3
"""PEFT's merge of a LoRA adapter into its base, the oracle of `t2s export`.

Loads the base in --dtype (optionally saving that copy with --save-base, for t2s to read),
applies the adapter with PeftModel.from_pretrained, merge_and_unload(), save_pretrained(--out).
With --t2s DIR it also loads t2s's export with transformers and prints, as JSON, the largest
logit difference to PEFT's merged model on a fixed batch (and whether the names match)."""
import argparse
import glob
import json

import torch
from peft import PeftModel
from safetensors.torch import load_file
from transformers import Gemma3ForCausalLM

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def load_all(directory):
    """Every tensor of a model directory, from one file or all its shards."""
    tensors = {}
    for f in sorted(glob.glob(f"{directory}/*.safetensors")):
        tensors.update(load_file(f))
    return tensors


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--model", required=True)
    p.add_argument("--adapter", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--dtype", default="float32", choices=sorted(DTYPES))
    p.add_argument("--save-base")
    p.add_argument("--t2s")
    a = p.parse_args()
    dtype = DTYPES[a.dtype]
    base = Gemma3ForCausalLM.from_pretrained(a.model, torch_dtype=dtype)
    if a.save_base:
        base.save_pretrained(a.save_base, safe_serialization=True)
    merged = PeftModel.from_pretrained(base, a.adapter).merge_and_unload()
    merged.save_pretrained(a.out, safe_serialization=True)
    report = {}
    if a.t2s:
        ours = Gemma3ForCausalLM.from_pretrained(a.t2s, torch_dtype=dtype)
        ids = torch.tensor([[2, 10, 20, 30, 40, 50, 60, 70], [2, 11, 21, 31, 41, 51, 61, 71]])
        with torch.no_grad():
            want = merged(input_ids=ids).logits.float()
            got = ours(input_ids=ids).logits.float()
        report["logits_max_diff"] = (want - got).abs().max().item()
        report["logits_max"] = want.abs().max().item()
        theirs = load_all(a.out)
        mine = load_all(a.t2s)
        report["same_names"] = sorted(theirs) == sorted(mine)
        report["same_dtypes"] = all(theirs[k].dtype == mine[k].dtype for k in theirs if k in mine)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
