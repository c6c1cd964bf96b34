#!/usr/bin/env python3
"""Peer: the seed's own code path for one LoRA rank, on the rows of a t2s split.

What a user of the seed notebook runs, on the same model and the same rows as t2s:
  * format_and_prepare: the seed's Gemma chat prompt (no <bos>, as the seed writes it; the
    same text as ../shared/bench/peer_preprocess.py), prompt and answer tokenized separately,
    prompt labels masked with -100, rows longer than --max-length dropped;
  * LoraConfig(r, lora_alpha=16, lora_dropout=0.05, target_modules=[q, k, v, o]);
  * transformers.Trainer with the seed's TrainingArguments: AdamW (adamw_torch), lr 2e-5,
    cosine schedule, warmup_ratio 0.1, weight_decay 0.01, batch 1 x 8 accumulation; the number
    of optimizer steps is --max-steps (scaled so that it sees as many rows as t2s's node);
  * greedy generation (left-padded batches, --max-new tokens) on the test rows, each row
    written back with its `generation` for `t2s evaluate --predictions` to extract and score.

Prints one JSON line: train wall seconds, trained tokens (real, unpadded) per second, peak
RSS of this process, the final training loss, and where the predictions are.

  peer_seed_recipe.py --model DIR --split DIR --rank 8 --max-steps 60 --out DIR [--threads 2]
"""
import argparse
import json
import os
import resource
import time

import torch
from peft import LoraConfig, get_peft_model
from transformers import (AutoTokenizer, DataCollatorForSeq2Seq, Gemma3ForCausalLM, Trainer,
                          TrainingArguments)

TEMPLATE = ("<start_of_turn>user\nGenerate the SQL query for the following request based on "
            "the provided context.\n\nRequest: {p}\n\nDatabase Context:\n{c}<end_of_turn>\n"
            "<start_of_turn>model\n")


def rows(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def format_and_prepare(tok, row, max_length):
    prompt = tok(TEMPLATE.format(p=row["sql_prompt"], c=row["sql_context"]),
                 add_special_tokens=False)["input_ids"]
    answer = tok(f"SQL: {row['sql']}{tok.eos_token}", add_special_tokens=False)["input_ids"]
    if len(prompt) + len(answer) > max_length:
        return None
    return {"input_ids": prompt + answer, "attention_mask": [1] * (len(prompt) + len(answer)),
            "labels": [-100] * len(prompt) + answer}


class Rows(torch.utils.data.Dataset):
    def __init__(self, items):
        self.items = items

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]


class CountingCollator(DataCollatorForSeq2Seq):
    """The seed's collator (pads input ids, pads labels with -100), counting the real
    (unpadded) tokens it hands to training."""

    def __init__(self, tok):
        super().__init__(tok, padding=True, label_pad_token_id=-100)
        self.tokens = 0

    def __call__(self, features, return_tensors=None):
        self.tokens += sum(len(f["input_ids"]) for f in features)
        return super().__call__(features, return_tensors)


def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def generate(model, tok, test, max_new, batch, out_path):
    tok.padding_side = "left"
    stop = [tok.eos_token_id, tok.convert_tokens_to_ids("<end_of_turn>")]
    model.eval()
    with open(out_path, "w", encoding="utf-8") as out, torch.no_grad():
        for i in range(0, len(test), batch):
            chunk = test[i:i + batch]
            prompts = [TEMPLATE.format(p=r["sql_prompt"], c=r["sql_context"]) for r in chunk]
            enc = tok(prompts, add_special_tokens=False, return_tensors="pt", padding=True)
            gen = model.generate(**enc, max_new_tokens=max_new, do_sample=False,
                                 eos_token_id=stop, pad_token_id=tok.pad_token_id)
            for r, ids in zip(chunk, gen[:, enc["input_ids"].shape[1]:]):
                text = tok.decode(ids, skip_special_tokens=False)
                out.write(json.dumps({"id": r.get("id"), "sql_prompt": r["sql_prompt"],
                                      "sql_context": r["sql_context"], "sql": r["sql"],
                                      "generation": text}) + "\n")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True, help="HF model directory")
    ap.add_argument("--split", required=True, help="a t2s split artifact (train/, test/)")
    ap.add_argument("--rank", type=int, required=True)
    ap.add_argument("--max-steps", type=int, required=True)
    ap.add_argument("--max-length", type=int, default=320)
    ap.add_argument("--max-new", type=int, default=96)
    ap.add_argument("--gen-batch", type=int, default=16)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--test-rows", type=int, default=0, help="only the first N test rows (smoke)")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    os.makedirs(a.out, exist_ok=True)

    tok = AutoTokenizer.from_pretrained(a.model)
    train = [x for x in (format_and_prepare(tok, r, a.max_length)
                         for r in rows(os.path.join(a.split, "train", "rows.jsonl"))) if x]
    test = rows(os.path.join(a.split, "test", "rows.jsonl"))
    if a.test_rows:
        test = test[:a.test_rows]

    model = Gemma3ForCausalLM.from_pretrained(a.model, torch_dtype=torch.float32,
                                              attn_implementation="eager")
    model = get_peft_model(model, LoraConfig(
        r=a.rank, lora_alpha=16, lora_dropout=0.05, bias="none", task_type="CAUSAL_LM",
        target_modules=["q_proj", "k_proj", "v_proj", "o_proj"]))
    args = TrainingArguments(
        output_dir=os.path.join(a.out, "trainer"), per_device_train_batch_size=1,
        gradient_accumulation_steps=8, learning_rate=2e-5, lr_scheduler_type="cosine",
        warmup_steps=0.1, weight_decay=0.01, optim="adamw_torch", max_steps=a.max_steps,
        logging_steps=10, save_strategy="no", eval_strategy="no", report_to=[], seed=42,
        use_cpu=not torch.cuda.is_available(), dataloader_num_workers=0)
    collator = CountingCollator(tok)
    trainer = Trainer(model=model, args=args, train_dataset=Rows(train),
                      data_collator=collator)
    seen = a.max_steps * 8
    t0 = time.perf_counter()
    result = trainer.train()
    train_s = time.perf_counter() - t0
    tokens = collator.tokens

    preds = os.path.join(a.out, "predictions.jsonl")
    t1 = time.perf_counter()
    generate(model, tok, test, a.max_new, a.gen_batch, preds)
    gen_s = time.perf_counter() - t1
    print(json.dumps({"system": "seed recipe (transformers Trainer + PEFT)", "rank": a.rank,
                      "optimizer_steps": a.max_steps, "rows_seen": seen, "train_s": train_s,
                      "tokens": tokens, "tokens_per_s": tokens / train_s,
                      "final_loss": result.training_loss, "generate_s": gen_s,
                      "peak_rss_mb": peak_rss_mb(), "predictions": preds,
                      "threads": torch.get_num_threads()}))


if __name__ == "__main__":
    main()
