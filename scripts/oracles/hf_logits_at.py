#!/usr/bin/env python3
"""Reference logits of a Gemma-3 checkpoint (transformers, eager attention, fp32) at chosen
positions only: for a real 262k-vocabulary model, logits of whole sequences would be
gigabytes.

Reads a JSON spec (argv[1]): {"model": DIR, "out": FILE, "cases": {NAME: {"ids": [[...]],
"mask": [[...]], "keep": [positions]}}}. Padding is the mask's zeros; left-padded rows get
position_ids = cumsum(mask) - 1 as HF generate does. Writes one safetensors file with
NAME_logits: [B, len(keep), V] fp32.
"""
import json
import sys

import torch
from safetensors.torch import save_file
from transformers import Gemma3ForCausalLM


def main():
    spec = json.load(open(sys.argv[1]))
    model = Gemma3ForCausalLM.from_pretrained(spec["model"], attn_implementation="eager",
                                              dtype=torch.float32).eval()
    out = {}
    with torch.no_grad():
        for name, case in spec["cases"].items():
            ids = torch.tensor(case["ids"], dtype=torch.long)
            mask = torch.tensor(case["mask"], dtype=torch.long)
            pos = (mask.cumsum(-1) - 1).clamp(min=0)
            keep = torch.tensor(case["keep"], dtype=torch.long)
            logits = model(input_ids=ids, attention_mask=mask, position_ids=pos,
                           logits_to_keep=keep).logits
            out[f"{name}_logits"] = logits.float().contiguous()
    save_file(out, spec["out"])


if __name__ == "__main__":
    main()
