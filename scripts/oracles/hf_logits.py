#!/usr/bin/env python3
"""Reference logits of a (tiny) Gemma-3 checkpoint from transformers, eager attention, fp32.

Writes one safetensors file with, for each case, the inputs and HF's logits:
  full_*   : 2 unpadded rows (longer than the sliding window)
  short_*  : 2 unpadded rows no longer than the window
  right_*  : 3 right-padded rows (attention_mask), default position ids
  left_*   : 3 left-padded rows, position_ids = cumsum(mask) - 1 (HF generate's recipe)
Keys: {case}_ids, {case}_mask, {case}_pos, {case}_logits. Optionally loads a PEFT adapter
(--adapter) or writes logits in bf16 (--dtype bf16).
"""
import argparse

import torch
from safetensors.torch import save_file
from transformers import Gemma3ForCausalLM


def load(model_dir, adapter, dtype):
    model = Gemma3ForCausalLM.from_pretrained(model_dir, attn_implementation="eager",
                                              torch_dtype=dtype).eval()
    if adapter:
        from peft import PeftModel
        model = PeftModel.from_pretrained(model, adapter).eval()
    return model


def cases(vocab, window, seed):
    g = torch.Generator().manual_seed(seed)
    rnd = lambda b, s: torch.randint(3, vocab, (b, s), generator=g)
    out = {}
    s = 3 * window
    out["full"] = (rnd(2, s), torch.ones(2, s, dtype=torch.long))
    out["short"] = (rnd(2, window), torch.ones(2, window, dtype=torch.long))
    lens = [s, s - 5, window - 3]
    for side in ["right", "left"]:
        ids = rnd(3, s)
        mask = torch.zeros(3, s, dtype=torch.long)
        for i, n in enumerate(lens):
            if side == "right":
                mask[i, :n] = 1
            else:
                mask[i, s - n:] = 1
        ids = ids * mask  # pad id 0
        out[side] = (ids, mask)
    return out


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--model", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--adapter", default=None)
    p.add_argument("--dtype", default="fp32", choices=["fp32", "bf16"])
    p.add_argument("--seed", type=int, default=1)
    a = p.parse_args()
    dtype = torch.float32 if a.dtype == "fp32" else torch.bfloat16
    model = load(a.model, a.adapter, dtype)
    cfg = model.config
    tensors = {}
    with torch.no_grad():
        for name, (ids, mask) in cases(cfg.vocab_size, cfg.sliding_window, a.seed).items():
            if name == "left":
                pos = (mask.cumsum(-1) - 1).masked_fill(mask == 0, 0)
            else:
                pos = torch.arange(ids.shape[1]).unsqueeze(0).expand_as(ids)
            am = None if name in ("full", "short") else mask
            logits = model(input_ids=ids, attention_mask=am, position_ids=pos).logits
            tensors[f"{name}_ids"] = ids.contiguous()
            tensors[f"{name}_mask"] = mask.contiguous()
            tensors[f"{name}_pos"] = pos.contiguous()
            tensors[f"{name}_logits"] = logits.float().contiguous()
    save_file(tensors, a.out)


if __name__ == "__main__":
    main()
