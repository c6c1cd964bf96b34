#!/usr/bin/env python3
"""Greedy generation reference from transformers' `generate(do_sample=False)`.

Prompts are random token ids (seeded) of the given lengths, each starting with <bos>=2, or
the id lists of a JSON file (--prompts-json: real tokenized chat prompts).
Writes JSON: {"prompts": [[...]], "alone": [[new ids]], "batch": [[new ids]]} where `alone`
runs each prompt by itself and `batch` runs them together, left-padded. With --eos, generation
stops on those ids (finished rows are cut at the stop token, which is kept); without, exactly
--max-new tokens are generated.
"""
import argparse
import json

import torch
from transformers import Gemma3ForCausalLM


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--model", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--lengths", default="20,13,30")
    p.add_argument("--max-new", type=int, default=64)
    p.add_argument("--eos", default="", help="comma-separated stop ids; empty = none")
    p.add_argument("--seed", type=int, default=2)
    p.add_argument("--prompts-json", default=None, help="a JSON list of prompt id lists")
    p.add_argument("--no-alone", action="store_true", help="only the batch, no prompt alone")
    a = p.parse_args()
    model = Gemma3ForCausalLM.from_pretrained(a.model, attn_implementation="eager",
                                              torch_dtype=torch.float32).eval()
    eos = [int(x) for x in a.eos.split(",") if x]
    model.generation_config.eos_token_id = eos or None
    model.generation_config.pad_token_id = 0
    g = torch.Generator().manual_seed(a.seed)
    vocab = model.config.vocab_size
    prompts = []
    if a.prompts_json:
        with open(a.prompts_json) as f:
            prompts = json.load(f)
    for n in [] if a.prompts_json else [int(x) for x in a.lengths.split(",")]:
        ids = torch.randint(3, vocab, (n,), generator=g)
        ids = ids[(ids != 1) & (ids != 106)][: n - 1]
        prompts.append([2] + ids.tolist())

    def cut(row):
        row = row.tolist()
        for i, t in enumerate(row):
            if t in eos:
                return row[: i + 1]
        return row

    kw = dict(do_sample=False, max_new_tokens=a.max_new, min_new_tokens=0)
    alone = []
    with torch.no_grad():
        for pr in [] if a.no_alone else prompts:
            ids = torch.tensor([pr])
            out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), **kw)
            alone.append(cut(out[0, len(pr):]))
        L = max(len(x) for x in prompts)
        ids = torch.zeros(len(prompts), L, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for i, pr in enumerate(prompts):
            ids[i, L - len(pr):] = torch.tensor(pr)
            mask[i, L - len(pr):] = 1
        out = model.generate(input_ids=ids, attention_mask=mask, **kw)
        batch = [cut(out[i, L:]) for i in range(len(prompts))]
    with open(a.out, "w") as f:
        json.dump({"prompts": prompts, "alone": alone, "batch": batch}, f)


if __name__ == "__main__":
    main()
