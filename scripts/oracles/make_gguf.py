#!/usr/bin/env python3
"""A tiny GGUF file for the refusal tests of scripts/fetch_gemma.py: one architecture
(`--arch`, e.g. llama where gemma3 is expected) and one tensor of a given GGML type
(`--tensor-type`, e.g. IQ2_XXS, a type fetch_gemma.py does not dequantize), written by the
`gguf` package's own writer."""
import argparse

import numpy as np
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType, GGUFWriter


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--arch", default="gemma3")
    p.add_argument("--tensor-type", default="F32")
    p.add_argument("--out", required=True)
    a = p.parse_args()
    qtype = GGMLQuantizationType[a.tensor_type]
    w = GGUFWriter(a.out, a.arch)
    block, size = GGML_QUANT_SIZES[qtype]
    cols = 256 if block > 1 else 4
    raw = np.zeros((2, cols // block * size), dtype=np.uint8)
    if qtype == GGMLQuantizationType.F32:
        w.add_tensor("token_embd.weight", np.zeros((2, cols), dtype=np.float32))
    else:
        w.add_tensor("token_embd.weight", raw, raw_dtype=qtype)  # shape given in bytes
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


if __name__ == "__main__":
    main()
