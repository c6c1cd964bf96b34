#!/usr/bin/env python3
"""Oracle for the t2s train loop: the same LoRA training in transformers + PEFT + torch.

Reads one JSON file (argv[1]) written by crates/t2s-torch/tests/train_parity.rs:
  model          tiny HF model directory
  init_adapter   PEFT adapter holding t2s's initial LoRA weights
  examples       [{input_ids, labels}]  (labels -100 on the prompt)
  steps          per optimizer step, its micro-batches as example-index lists
  pad_id, lr, betas, eps, weight_decay, max_grad_norm, warmup_steps, total_steps, scheduler
  trained_adapter, probe_ids   an adapter trained by t2s and ids to score with it
  probe_out      optional: write the probe's logits to this safetensors file (key `logits`)
                 instead of the JSON (a 262k-vocabulary model's logits are too big for JSON)

Trains with torch.optim.AdamW, the transformers schedule, clip_grad_norm_ and HF's loss with
num_items_in_batch (sum over the step's answer tokens / their count), then loads the t2s
adapter in PEFT. Prints JSON: losses, grad_norms, lrs, probe_logits, adapter_keys (missing / unexpected keys of
the trained adapter against what PEFT expects).

`train_ref.py logits DIR IDS_JSON` instead prints the logits transformers computes for a full
model directory written by t2s (`method: full`).
"""
import json
import sys

import torch
from peft import PeftModel
from transformers import (Gemma3ForCausalLM, get_constant_schedule_with_warmup,
                          get_cosine_schedule_with_warmup, get_linear_schedule_with_warmup)


def pad(examples, idxs, pad_id):
    rows = [examples[i] for i in idxs]
    s = max(len(r["input_ids"]) for r in rows)
    ids = torch.full((len(rows), s), pad_id, dtype=torch.long)
    labels = torch.full((len(rows), s), -100, dtype=torch.long)
    for k, r in enumerate(rows):
        n = len(r["input_ids"])
        ids[k, :n] = torch.tensor(r["input_ids"])
        labels[k, :n] = torch.tensor(r["labels"])
    return ids, labels


def base(path):
    return Gemma3ForCausalLM.from_pretrained(path, torch_dtype=torch.float32,
                                             attn_implementation="eager")


def logits_of_full_model(model_dir, ids):
    """`train_ref.py logits DIR IDS_JSON`: logits of a full model t2s wrote (HF layout)."""
    m = base(model_dir).eval()
    with torch.no_grad():
        out = m(input_ids=torch.tensor(json.loads(ids), dtype=torch.long)).logits
    print(json.dumps({"logits": out.flatten().tolist()}))


def main():
    if sys.argv[1] == "logits":
        return logits_of_full_model(sys.argv[2], sys.argv[3])
    cfg = json.load(open(sys.argv[1]))
    torch.manual_seed(0)
    model = PeftModel.from_pretrained(base(cfg["model"]), cfg["init_adapter"], is_trainable=True)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg["lr"], betas=tuple(cfg["betas"]), eps=cfg["eps"],
                            weight_decay=cfg["weight_decay"])
    make = {"cosine": get_cosine_schedule_with_warmup, "linear": get_linear_schedule_with_warmup}
    if cfg["scheduler"] == "constant":
        sched = get_constant_schedule_with_warmup(opt, cfg["warmup_steps"])
    else:
        sched = make[cfg["scheduler"]](opt, cfg["warmup_steps"], cfg["total_steps"])
    losses, norms, lrs = [], [], []
    for step in cfg["steps"]:
        micro = [pad(cfg["examples"], idxs, cfg["pad_id"]) for idxs in step]
        n_items = sum((lab[:, 1:] != -100).sum() for _, lab in micro)
        total = 0.0
        for ids, lab in micro:
            out = model(input_ids=ids, labels=lab, num_items_in_batch=n_items)
            out.loss.backward()
            total += out.loss.item()
        gn = torch.nn.utils.clip_grad_norm_(params, cfg["max_grad_norm"])
        lrs.append(sched.get_last_lr()[0])
        opt.step()
        sched.step()
        opt.zero_grad()
        losses.append(total)
        norms.append(float(gn))
    probe, key_check = None, None
    if cfg.get("trained_adapter"):
        m2 = PeftModel.from_pretrained(base(cfg["model"]), cfg["trained_adapter"]).eval()
        # The adapter's keys against those PEFT expects for its config: a missing key would
        # leave that LoRA weight at its init without an error.
        from peft import get_peft_model_state_dict
        from safetensors import safe_open
        with safe_open(f"{cfg['trained_adapter']}/adapter_model.safetensors", "pt") as f:
            have = set(f.keys())
        expected = set(get_peft_model_state_dict(m2).keys())
        key_check = {"missing": sorted(expected - have), "unexpected": sorted(have - expected)}
        with torch.no_grad():
            ids = torch.tensor(cfg["probe_ids"], dtype=torch.long)
            logits = m2(input_ids=ids).logits
            if cfg.get("probe_out"):
                from safetensors.torch import save_file
                save_file({"logits": logits.float().contiguous()}, cfg["probe_out"])
            else:
                probe = logits.flatten().tolist()
    print(json.dumps({"losses": losses, "grad_norms": norms, "lrs": lrs, "probe_logits": probe,
                      "adapter_keys": key_check}))


if __name__ == "__main__":
    main()
