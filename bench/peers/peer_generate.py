#!/usr/bin/env python3
"""Peer baseline: batched greedy generation with Hugging Face transformers `generate`.

The same work t2s's evaluate stage does: N prompts of gretel-like length (token ids drawn
from a seeded generator, lengths between --min-len and --max-len), left-padded batches,
greedy decoding, up to --new-tokens new tokens, on a Gemma-3 model with random weights
(shape from --shape, bf16 + SDPA on CUDA, fp32 on CPU). EOS is disabled so every row
decodes exactly --new-tokens tokens and the two systems do identical work.

Writes the prompts it used to --prompts-out (JSON: list of id lists) so t2s can be fed the
same ones. Prints one JSON line with tokens/s.
"""Peer baseline: batched greedy generation with HF transformers `generate`.
Reads the same prompts JSONL as the t2s `generate` job ({"id", "text"} with rendered chat
prompts), tokenizes without special tokens, sorts by length (as t2s does), left-pads batches
of --batch, generates greedily up to --max-new tokens (stop on --eos), and prints one JSON line
{"tokens_per_s", "new_tokens", "seconds", ...}. New tokens are counted up to and including
the stop token, as t2s counts them.
"""
import argparse
import json
import time

import torch
from transformers import Gemma3ForCausalLM, Gemma3TextConfig

from peer_lora_train import SHAPES
from transformers import AutoTokenizer, Gemma3ForCausalLM


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--shape", choices=sorted(SHAPES), default="tiny")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--prompts", type=int, default=1000)
    p.add_argument("--min-len", type=int, default=150)
    p.add_argument("--max-len", type=int, default=400)
    p.add_argument("--new-tokens", type=int, default=128)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--prompts-out", default=None)
    p.add_argument("--save-model", default=None, help="save the random model here (HF layout)")
    a = p.parse_args()

    torch.manual_seed(0)
    dtype = torch.bfloat16 if a.device.startswith("cuda") else torch.float32
    cfg = Gemma3TextConfig(**SHAPES[a.shape])
    cfg._attn_implementation = "sdpa"
    model = Gemma3ForCausalLM(cfg).to(device=a.device, dtype=dtype).eval()
    if a.save_model:
        model.save_pretrained(a.save_model)

    g = torch.Generator().manual_seed(2)
    lens = torch.randint(a.min_len, a.max_len + 1, (a.prompts,), generator=g).tolist()
    prompts = [[2] + torch.randint(7, cfg.vocab_size, (n - 1,), generator=g).tolist() for n in lens]
    if a.prompts_out:
        with open(a.prompts_out, "w") as f:
            json.dump(prompts, f)

    sync = torch.cuda.synchronize if a.device.startswith("cuda") else (lambda: None)
    # Sort by length like any sensible batched evaluator (t2s does the same).
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    new_tokens = 0
    sync()
    t0 = time.perf_counter()
    for s in range(0, len(order), a.batch):
        batch = [prompts[i] for i in order[s:s + a.batch]]
        width = max(len(x) for x in batch)
        ids = torch.zeros((len(batch), width), dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for r, x in enumerate(batch):
            ids[r, width - len(x):] = torch.tensor(x)
            mask[r, width - len(x):] = 1
        with torch.no_grad():
            out = model.generate(input_ids=ids.to(a.device), attention_mask=mask.to(a.device),
                                 do_sample=False, max_new_tokens=a.new_tokens,
                                 min_new_tokens=a.new_tokens, pad_token_id=0, eos_token_id=None)
        new_tokens += (out.shape[1] - width) * len(batch)
    sync()
    dt = time.perf_counter() - t0
    print(json.dumps({"system": "transformers.generate", "shape": a.shape, "device": a.device,
                      "prompts": a.prompts, "batch": a.batch, "new_tokens": new_tokens,
                      "seconds": dt, "tokens_per_s": new_tokens / dt}))
    p.add_argument("--model", required=True)
    p.add_argument("--prompts", required=True)
    p.add_argument("--max-new", type=int, default=128)
    p.add_argument("--eos", default="1,106")
    tok = AutoTokenizer.from_pretrained(a.model)
    model = Gemma3ForCausalLM.from_pretrained(a.model, torch_dtype=dtype,
                                              attn_implementation="sdpa").to(a.device).eval()
    eos = [int(x) for x in a.eos.split(",") if x]
    rows = [json.loads(l) for l in open(a.prompts) if l.strip()]
    enc = sorted((tok(r["text"], add_special_tokens=False).input_ids for r in rows),
                 key=len, reverse=True)
    with torch.no_grad():
        for i in range(0, len(enc), a.batch):
            chunk = enc[i:i + a.batch]
            L = max(map(len, chunk))
            ids = torch.zeros(len(chunk), L, dtype=torch.long)
            mask = torch.zeros_like(ids)
            for j, x in enumerate(chunk):
                ids[j, L - len(x):] = torch.tensor(x)
                mask[j, L - len(x):] = 1
                                 do_sample=False, max_new_tokens=a.max_new, eos_token_id=eos,
                                 pad_token_id=0)
            for row in out[:, L:].tolist():
                n = len(row)
                for k, t in enumerate(row):
                    if t in eos:
                        n = k + 1
                        break
                new_tokens += n
    print(json.dumps({"system": "transformers generate", "device": a.device, "rows": len(enc),
                      "batch": a.batch, "new_tokens": new_tokens, "seconds": dt,
                      "tokens_per_s": new_tokens / dt}))


if __name__ == "__main__":
    main()
