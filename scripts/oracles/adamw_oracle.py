#!/usr/bin/env python3
"""torch.optim.AdamW reference: reads params and per-step grads from a safetensors file
(`p{i}`, `g{i}_{step}`), runs the steps, writes the final params (`p{i}`) and state
(`p{i}.exp_avg`, `p{i}.exp_avg_sq`)."""
import argparse

import torch
from safetensors.torch import load_file, save_file


def main():
    a = argparse.ArgumentParser()
    a.add_argument("--inp", required=True)
    a.add_argument("--out", required=True)
    a.add_argument("--lr", type=float, required=True)
    a.add_argument("--wd", type=float, required=True)
    a.add_argument("--steps", type=int, required=True)
    a = a.parse_args()
    t = load_file(a.inp)
    n = len([k for k in t if k.startswith("p")])
    params = [torch.nn.Parameter(t[f"p{i}"].clone()) for i in range(n)]
    opt = torch.optim.AdamW(params, lr=a.lr, weight_decay=a.wd)
    for s in range(a.steps):
        for i, p in enumerate(params):
            p.grad = t[f"g{i}_{s}"].clone()
        opt.step()
    out = {}
    for i, p in enumerate(params):
        out[f"p{i}"] = p.detach().contiguous()
        st = opt.state[p]
        out[f"p{i}.exp_avg"] = st["exp_avg"].contiguous()
        out[f"p{i}.exp_avg_sq"] = st["exp_avg_sq"].contiguous()
    save_file(out, a.out)


if __name__ == "__main__":
    main()
