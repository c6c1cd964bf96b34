#!/usr/bin/env python3
"""Write a tiny random Gemma-3 text checkpoint with transformers' own classes.

Output directory (HF layout): config.json, model.safetensors (or shards), generation_config.json,
tokenizer.json (+ tokenizer_config.json). Weights are random with a large scale so logits are
peaked (greedy generation has clear winners); RMSNorm weights are random too (HF inits them to 0).

The tokenizer is a byte-level BPE trained here with Gemma's special-token ids:
<pad>=0 <eos>=1 <bos>=2 <unk>=3 ... <start_of_turn>=105 <end_of_turn>=106.
"""
import argparse
import json
import os

import torch
from transformers import Gemma3ForCausalLM, Gemma3TextConfig

CORPUS = [
    "SELECT name FROM users WHERE age > 30;",
    "SELECT COUNT(*) FROM orders GROUP BY customer_id;",
    "CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT, age INTEGER);",
    "INSERT INTO orders (id, customer_id, total) VALUES (1, 2, 9.5);",
    "Generate the SQL query for the following request based on the provided context.",
    "Request: How many customers placed an order last year?",
    "Database Context: the table sales has columns region, amount, year.",
    "The quick brown fox jumps over the lazy dog. A list of colors: red, blue, green.",
]


def special_tokens():
    toks = ["<pad>", "<eos>", "<bos>", "<unk>", "<mask>", "[multimodal]"]
    toks += [f"<unused{i}>" for i in range(105 - len(toks))]
    toks += ["<start_of_turn>", "<end_of_turn>"]
    assert toks.index("<start_of_turn>") == 105 and toks.index("<end_of_turn>") == 106
    return toks


def make_tokenizer(vocab_size, out):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=special_tokens(),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(CORPUS * 20, trainer=trainer)
    assert tok.get_vocab_size() <= vocab_size
    tok.save(os.path.join(out, "tokenizer.json"))
    with open(os.path.join(out, "tokenizer_config.json"), "w") as f:
        json.dump({"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": "<bos>",
                   "eos_token": "<eos>", "pad_token": "<pad>", "unk_token": "<unk>",
                   "padding_side": "left"}, f)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--out", required=True)
    p.add_argument("--vocab", type=int, default=512)
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--intermediate", type=int, default=128)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--kv-heads", type=int, default=1)
    p.add_argument("--head-dim", type=int, default=16)
    p.add_argument("--window", type=int, default=8)
    p.add_argument("--pattern", type=int, default=2)
    p.add_argument("--max-pos", type=int, default=512)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--std", type=float, default=0.15)
    p.add_argument("--shard-size", default=None, help="e.g. 50KB: write a sharded checkpoint")
    p.add_argument("--hf-init", action="store_true",
                   help="keep transformers' own init (std 0.02, zero norms): for benchmark shapes")
    p.add_argument("--dtype", default="fp32", choices=["fp32", "bf16"])
    a = p.parse_args()
    os.makedirs(a.out, exist_ok=True)
    torch.manual_seed(a.seed)
    cfg = Gemma3TextConfig(
        vocab_size=a.vocab, hidden_size=a.hidden, intermediate_size=a.intermediate,
        num_hidden_layers=a.layers, num_attention_heads=a.heads, num_key_value_heads=a.kv_heads,
        head_dim=a.head_dim, sliding_window=a.window, sliding_window_pattern=a.pattern,
        query_pre_attn_scalar=a.head_dim, max_position_embeddings=a.max_pos,
        layer_types=["full_attention" if (i + 1) % a.pattern == 0 else "sliding_attention"
                     for i in range(a.layers)],
    )
    cfg._attn_implementation = "eager"
    model = Gemma3ForCausalLM(cfg).to(torch.float32).eval()
    if not a.hf_init:
        with torch.no_grad():
            for name, t in model.named_parameters():
                if name.endswith("norm.weight"):
                    t.copy_(torch.randn_like(t) * 0.3)
                elif "embed_tokens" in name:
                    t.copy_(torch.randn_like(t) * 0.1)
                else:
                    t.copy_(torch.randn_like(t) * a.std)
    if a.dtype == "bf16":
        model = model.to(torch.bfloat16)
    kw = {"max_shard_size": a.shard_size} if a.shard_size else {}
    model.save_pretrained(a.out, safe_serialization=True, **kw)
    make_tokenizer(a.vocab, a.out)
    print(json.dumps({"out": a.out, "layer_types": cfg.layer_types}))


if __name__ == "__main__":
    main()
