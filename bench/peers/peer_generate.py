#!/usr/bin/env python3
"""Peer baseline: batched greedy generation with HF transformers `generate`.

Reads the same prompts JSONL as the t2s `generate` job ({"id", "text"} with rendered chat
prompts), tokenizes without special tokens, sorts by length (as t2s does), left-pads batches
of --batch, generates greedily up to --max-new tokens (stop on --eos), and prints one JSON line
{"tokens_per_s", "new_tokens", "seconds", ...}. New tokens are counted up to and including
the stop token, as t2s counts them.
"""
import argparse
import json
import os
import time

import torch
from transformers import AutoTokenizer, Gemma3ForCausalLM


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--model", required=True)
    p.add_argument("--prompts", required=True)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--max-new", type=int, default=128)
    p.add_argument("--eos", default="1,106")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--threads", type=int, default=0)
    a = p.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    # T2S_SDPA_CUDNN=0|1 switches SDPA's cuDNN attention as it does for t2s-worker (unset: torch's choice).
    if os.environ.get("T2S_SDPA_CUDNN", "").strip() in ("0", "1"):
        torch.backends.cuda.enable_cudnn_sdp(os.environ["T2S_SDPA_CUDNN"].strip() == "1")
    dtype = torch.bfloat16 if a.device.startswith("cuda") else torch.float32
    tok = AutoTokenizer.from_pretrained(a.model)
    model = Gemma3ForCausalLM.from_pretrained(a.model, torch_dtype=dtype,
                                              attn_implementation="sdpa").to(a.device).eval()
    eos = [int(x) for x in a.eos.split(",") if x]
    rows = [json.loads(l) for l in open(a.prompts) if l.strip()]
    enc = sorted((tok(r["text"], add_special_tokens=False).input_ids for r in rows),
                 key=len, reverse=True)
    sync = torch.cuda.synchronize if a.device.startswith("cuda") else (lambda: None)
    new_tokens = 0
    sync()
    t0 = time.perf_counter()
    with torch.no_grad():
        for i in range(0, len(enc), a.batch):
            chunk = enc[i:i + a.batch]
            L = max(map(len, chunk))
            ids = torch.zeros(len(chunk), L, dtype=torch.long)
            mask = torch.zeros_like(ids)
            for j, x in enumerate(chunk):
                ids[j, L - len(x):] = torch.tensor(x)
                mask[j, L - len(x):] = 1
            out = model.generate(input_ids=ids.to(a.device), attention_mask=mask.to(a.device),
                                 do_sample=False, max_new_tokens=a.max_new, eos_token_id=eos,
                                 pad_token_id=0)
            for row in out[:, L:].tolist():
                n = len(row)
                for k, t in enumerate(row):
                    if t in eos:
                        n = k + 1
                        break
                new_tokens += n
    sync()
    dt = time.perf_counter() - t0
    print(json.dumps({"system": "transformers generate", "device": a.device, "rows": len(enc),
                      "batch": a.batch, "new_tokens": new_tokens, "seconds": dt,
                      "tokens_per_s": new_tokens / dt}))


if __name__ == "__main__":
    main()
