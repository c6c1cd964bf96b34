"""split: every TEST_EVERY-th pair goes to the test set, the rest to training."""
import os

from common import input_path, metric, out_path, read_jsonl, write_jsonl

every = int(os.environ.get("TEST_EVERY", "5"))
pairs = read_jsonl(input_path("preprocess", "pairs.jsonl"))
test = [p for p in pairs if p["id"] % every == 0]
train = [p for p in pairs if p["id"] % every != 0]
write_jsonl(out_path("train.jsonl"), train)
write_jsonl(out_path("test.jsonl"), test)
metric("train_rows", len(train))
metric("test_rows", len(test))
