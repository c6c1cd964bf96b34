#!/usr/bin/env python3
"""transformers' greedy `generate` on one already rendered prompt (tokenized without special
tokens: the text carries its own <bos>), decoded with skip_special_tokens. Prints JSON
{"ids": [...new ids], "text": ...}."""
import argparse
import json

import torch
from transformers import AutoTokenizer, Gemma3ForCausalLM


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--model", required=True)
    p.add_argument("--text", required=True)
    p.add_argument("--max-new", type=int, default=32)
    p.add_argument("--eos", default="1,106")
    a = p.parse_args()
    tok = AutoTokenizer.from_pretrained(a.model)
    model = Gemma3ForCausalLM.from_pretrained(a.model, attn_implementation="eager",
                                              torch_dtype=torch.float32).eval()
    ids = tok(a.text, add_special_tokens=False, return_tensors="pt").input_ids
    eos = [int(x) for x in a.eos.split(",") if x]
    with torch.no_grad():
        out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=False,
                             max_new_tokens=a.max_new, eos_token_id=eos, pad_token_id=0)
    new = out[0, ids.shape[1]:].tolist()
    print(json.dumps({"ids": new, "text": tok.decode(new, skip_special_tokens=True)}))


if __name__ == "__main__":
    main()
