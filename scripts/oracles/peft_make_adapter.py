#!/usr/bin/env python3
"""Write a PEFT LoRA adapter for a (tiny) Gemma-3 checkpoint with non-zero random A and B
(init_lora_weights=False), saved with PEFT's own save_pretrained (adapter_config.json +
adapter_model.safetensors)."""
import argparse

import torch
from peft import LoraConfig, get_peft_model
from transformers import Gemma3ForCausalLM


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--model", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--r", type=int, default=4)
    p.add_argument("--alpha", type=float, default=8)
    p.add_argument("--rslora", action="store_true")
    p.add_argument("--targets", default="q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj")
    p.add_argument("--seed", type=int, default=3)
    a = p.parse_args()
    torch.manual_seed(a.seed)
    model = Gemma3ForCausalLM.from_pretrained(a.model, torch_dtype=torch.float32)
    cfg = LoraConfig(r=a.r, lora_alpha=a.alpha, lora_dropout=0.0, use_rslora=a.rslora,
                     target_modules=a.targets.split(","), init_lora_weights=False,
                     task_type="CAUSAL_LM")
    model = get_peft_model(model, cfg)
    with torch.no_grad():
        for n, t in model.named_parameters():
            if "lora_B" in n:
                t.copy_(torch.randn_like(t) * 0.2)
    model.save_pretrained(a.out)


if __name__ == "__main__":
    main()
