#!/usr/bin/env python3
"""Memory traffic and matrix FLOPs of a profiled training step, op by op: an estimate of
where a GPU step's time goes, made from the ops the host issues (which are the same on any
device) rather than from GPU timings.

Input: Chrome traces written by `bench-train` with `profile` (libtorch's profiler records
every op's input shapes and dtypes). For each leaf op (one with no op nested inside it: the
ops that launch kernels) the bytes it reads and writes are estimated from its input shapes and
dtypes and its kind (a matrix product writes m×n, an elementwise op writes its broadcast
shape, an in-place op writes its first input, a reduction writes next to nothing, a gather
reads only the rows it takes); views move nothing. Matrix products and attention count FLOPs.

Given two traces of the same shape that differ by one layer (`layers: L` and `L + 1`), their
difference is one layer's share, and the rest (embedding, final norm, LM head, loss,
optimizer) is fixed: `per_layer × layers + fixed` then models any depth. The time model
divides bytes by a bandwidth and FLOPs by a matrix rate, bf16 or fp32 (assumptions, printed):

    bench/traffic.py --tokens 512 --depth 2 --layers 26 [--by-part] l2.json l3.json

On a CUDA trace (`bench/gpu/mfu.sh`), `--gpu` charges each kernel's measured time to the op
that launched it and prints GPU time by part of the step:

    bench/traffic.py --gpu --tokens 16384 trace_b32.json

This models the op-by-op (unfused) program that ran; composite ops whose children ran as
leaves (libtorch's CPU rms_norm: pow, mean, add, rsqrt, mul) count as their children, which is
what a GPU runs too unless a fused kernel replaces them.
"""
import argparse
import collections
import json
import sys

DTYPE_BYTES = {
    "c10::BFloat16": 2, "c10::Half": 2, "float": 4, "double": 8, "long int": 8, "int": 4,
    "short int": 2, "bool": 1, "unsigned char": 1, "signed char": 1,
}
# at::ScalarType codes (the dtype argument of _to_copy, as "Concrete Inputs" prints it).
SCALAR_TYPE_BYTES = {0: 1, 1: 1, 2: 2, 3: 4, 4: 8, 5: 2, 6: 4, 7: 8, 11: 1, 15: 2}
# Leaves that move no data: views, metadata, allocation.
NO_TRAFFIC = {
    "view", "as_strided", "reshape", "narrow", "slice", "t", "transpose", "expand",
    "unsqueeze", "squeeze", "detach", "detach_", "alias", "resolve_conj", "resolve_neg",
    "empty", "empty_strided", "empty_like", "result_type", "_unsafe_view", "unbind", "select",
    "permute", "_reshape_alias", "lift_fresh", "split_with_sizes", "split", "set_",
    "_local_scalar_dense", "item", "is_nonzero", "to", "contiguous", "numpy_T", "view_as",
    "requires_grad_", "_has_compatible_shallow_copy_type", "size", "stride", "record_stream",
    "_version",
}
MATMUL = {"mm", "bmm", "addmm", "baddbmm", "matmul", "_int_mm"}
REDUCE = {"sum", "mean", "max", "min", "amax", "amin", "norm", "linalg_vector_norm",
          "argmax", "argmin", "all", "any", "logsumexp", "std", "var", "count_nonzero"}
GATHER = {"embedding", "index_select", "gather", "index", "take"}
COMPARE = {"eq", "ne", "lt", "le", "gt", "ge", "isnan", "isinf", "isfinite", "logical_not"}


# Ops that only call other ops (their kernels are counted under those): descend into them.
COMPOSITE = {
    "linear", "matmul", "rms_norm", "dropout", "clone", "type_as", "scaled_dot_product_attention",
    "cross_entropy_loss", "nll_loss_nd", "log_softmax", "softmax", "flatten", "chunk", "einsum",
    "layer_norm", "zeros", "zeros_like", "ones", "ones_like", "full", "full_like", "new_zeros",
    "new_empty", "expand_as", "reshape_as", "stack", "addcmul_out", "sum_to_size", "arange",
}


def kernel_ops(events):
    """The ops that do the work: each `aten::` op that is not a view or a composite wrapper,
    outermost first (what it calls inside is its own business and not counted again).
    Autograd nodes (`MulBackward0`, ...) are wrappers: their aten ops count."""
    by_tid = collections.defaultdict(list)
    for e in events:
        by_tid[e.get("tid")].append(e)
    out = []
    for evs in by_tid.values():
        evs.sort(key=lambda e: (e["ts"], -e["dur"]))
        stack = []  # (end time, counted)
        for e in evs:
            while stack and stack[-1][0] <= e["ts"]:
                stack.pop()
            inside_counted = any(c for _, c in stack)
            op = e["name"].split("::", 1)[-1]
            counted = (not inside_counted and e["name"].startswith("aten::")
                       and op not in NO_TRAFFIC and op not in COMPOSITE)
            if counted:
                out.append(e)
            stack.append((e["ts"] + e["dur"], counted or inside_counted))
    return out


def numel(dims):
    n = 1
    for d in dims:
        n *= d
    return n


def broadcast(shapes):
    rank = max((len(s) for s in shapes), default=0)
    out = [1] * rank
    for s in shapes:
        for i, d in enumerate(s):
            j = rank - len(s) + i
            out[j] = max(out[j], d)
    return out


def tensors(args, list_bytes):
    """(dims, bytes per element) of each tensor input; tensor lists are flattened."""
    dims_l = args.get("Input Dims", [])
    types = args.get("Input type", [])
    out = []
    for dims, ty in zip(dims_l, types):
        if ty == "TensorList":
            out += [(d, list_bytes) for d in dims]
        elif ty in DTYPE_BYTES:
            out.append((dims, DTYPE_BYTES[ty]))
    return out


def op_cost(name, args, list_bytes):
    """(bytes read + written, matrix FLOPs, attention FLOPs) of one leaf op."""
    op = name.split("::", 1)[-1]
    if op in NO_TRAFFIC:
        return 0, 0, 0
    ts = tensors(args, list_bytes)
    if not ts:
        return 0, 0, 0
    read = sum(numel(d) * b for d, b in ts)
    (d0, b0) = ts[0]
    if op in MATMUL:
        a, b = (ts[1], ts[2]) if op in ("addmm", "baddbmm") else (ts[0], ts[1])
        (da, ba), (db, _) = a, b
        batch = numel(da[:-2])
        m, k, n = da[-2], da[-1], db[-1]
        return read + batch * m * n * ba, 2 * batch * m * k * n, 0
    if "scaled_dot_product" in op or "flash_attention" in op or "efficient_attention" in op:
        q, k = ts[0][0], ts[1][0]
        if len(q) == 4 and len(k) == 4:
            bsz, h, sq, d = q
            sk = k[2]
            flops = 4 * bsz * h * sq * sk * d
            if args.get("Concrete Inputs", [""] * 5)[4:5] == ["True"]:
                flops //= 2  # causal: half the score matrix
            if "backward" in op:
                flops = flops * 5 // 2
            return read + numel(q) * ts[0][1], 0, flops
        return read, 0, 0
    if op == "copy_":
        return read, 0, 0  # dst (written) and src (read) are both inputs
    if op == "_to_copy":
        conc = args.get("Concrete Inputs", [])
        code = int(conc[1]) if len(conc) > 1 and conc[1].lstrip("-").isdigit() else None
        return read + numel(d0) * SCALAR_TYPE_BYTES.get(code, b0), 0, 0
    if op in GATHER:
        if op == "embedding":
            w, idx = ts[0], ts[1]
            rows = numel(idx[0]) * w[0][-1] * w[1]
            return 2 * rows + numel(idx[0]) * idx[1], 0, 0
        if op in ("gather", "index_select", "index", "take") and len(ts) >= 2:
            idx = ts[-1] if op != "index_select" else ts[1]
            return 2 * numel(idx[0]) * b0 + numel(idx[0]) * idx[1], 0, 0
        return 2 * read, 0, 0
    if op in REDUCE:
        return read, 0, 0
    if op == "cat":
        return 2 * read, 0, 0
    if op in ("scatter_add_", "scatter_", "index_add_", "index_put_") and len(ts) >= 3:
        src, idx = ts[-1], ts[-2] if op != "index_put_" else ts[1]
        return 3 * numel(src[0]) * src[1] + numel(idx[0]) * idx[1], 0, 0  # read src, read and write the targets
    if op == "native_dropout":
        return read + numel(d0) * (b0 + 1), 0, 0
    if op.endswith("_"):
        return read + numel(d0) * b0, 0, 0  # in place: the first input is written back
    shape = broadcast([d for d, _ in ts])
    out_b = 1 if op in COMPARE else max(b for _, b in ts)
    return read + numel(shape) * out_b, 0, 0


def part_of(name, args, rank, vocab):
    """Which part of a LoRA training step an op belongs to, from its shapes (a heuristic for
    this model's ops: rank-`rank` adapters in fp32 on a bf16 base, a `vocab`-wide head). The
    adapters' input cast to fp32 looks like a norm's upcast and counts with the norms."""
    op = name.split("::", 1)[-1]
    dims = json.dumps(args.get("Input Dims", []))
    types = args.get("Input type", [])
    lora_dim = f", {rank}]" in dims or f"[{rank}," in dims
    if "scaled_dot_product" in op or "flash_attention" in op:
        return "attention"
    if op in MATMUL and not lora_dim and "float" not in types:
        return "bf16 GEMMs"
    if str(vocab) in dims:
        return "loss (CE over the vocab)"
    if op in ("mul_", "addcmul_", "lerp_", "sqrt", "sub_", "add_", "div_") and \
            len((args.get("Input Dims") or [[0, 0]])[0]) == 1:
        return "optimizer"
    fp32_mixed_add = op == "add_" and types[:2] == ["c10::BFloat16", "float"]
    if op in MATMUL or op in ("bernoulli_", "div_", "native_dropout") or lora_dim \
            or fp32_mixed_add or (dims.startswith("[[3, ") and "float" in types):
        return "LoRA fp32 side path"
    return "norms, RoPE, gate, residual"


def load(path, list_bytes, key=None):
    """Per op name: [bytes, matrix FLOPs, attention FLOPs, calls, modelled seconds] a step."""
    trace = json.load(open(path))
    events = [e for e in trace["traceEvents"] if e.get("ph") == "X" and e.get("cat") == "cpu_op"]
    steps = 2  # bench-train profiles two steps
    by_op = collections.defaultdict(lambda: [0.0, 0.0, 0.0, 0.0, 0.0])
    for e in kernel_ops(events):
        b, f, af = op_cost(e["name"], e.get("args", {}), list_bytes)
        t = by_op[key(e["name"], e.get("args", {})) if key else e["name"].split("::", 1)[-1]]
        for i, v in enumerate((b, f, af, 1)):
            t[i] += v / steps
        # Roofline per op: bound by its bytes or by its FLOPs, whichever takes longer. fp32
        # products (the LoRA side path, PEFT's numerics: no TF32) run on CUDA cores.
        fp32 = "float" in e.get("args", {}).get("Input type", [])
        rate = RATES["matmul_fp32"] if fp32 else RATES["matmul"]
        t[4] += max(b / RATES["bandwidth"], f / rate, af / RATES["attention"]) / steps
    return by_op


RATES = {}


def measured_parts(path, rank, vocab, steps=2):
    """GPU time by part of the step from a CUDA trace: each kernel is charged to the op that
    launched it (the kernel's `External id`, or its runtime call's through `correlation`),
    classified as `part_of` does; t2s's own fused kernels (`t2s_*`) are their own part."""
    events = json.load(open(path))["traceEvents"]
    xs = [e for e in events if e.get("ph") == "X"]
    ops = {e["args"]["External id"]: e for e in xs
           if e.get("cat") == "cpu_op" and "External id" in e.get("args", {})}
    runtime = {e["args"]["correlation"]: e["args"].get("External id") for e in xs
               if e.get("cat") in ("cuda_runtime", "cuda_driver") and "correlation" in e.get("args", {})}
    parts = collections.defaultdict(lambda: [0.0, 0.0])
    for k in (e for e in xs if e.get("cat") == "kernel"):
        args = k.get("args", {})
        if k["name"].startswith("t2s_"):
            part = "fused kernels (t2s_*)"
        else:
            op = ops.get(args.get("External id")) or ops.get(runtime.get(args.get("correlation")))
            part = part_of(op["name"], op.get("args", {}), rank, vocab) if op else "unattributed"
        parts[part][0] += k["dur"] / 1e3 / steps
        parts[part][1] += 1 / steps
    return parts


def report(title, table, tok):
    rows = sorted(table.items(), key=lambda kv: -kv[1][4])
    tb, tf, ta, tn, tt = (sum(v[i] for v in table.values()) for i in range(5))
    print(f"\n## {title}, per token: {tb / tok / 1e3:,.1f} KB moved, {tf / tok / 1e6:,.1f} MFLOP "
          f"matrix, {ta / tok / 1e6:,.2f} MFLOP attention, {tn:,.0f} kernel ops a step; "
          f"modelled {tt / tok * 1e6:.3f} µs/token")
    print(f"  {'op or part':36} {'µs/token':>9} {'share':>6} {'KB/token':>9} {'calls':>6} {'MFLOP/token':>12}")
    for name, (b, f, af, n, t) in rows:
        if t / tt < 0.002:
            continue
        print(f"  {name[:36]:36} {t / tok * 1e6:9.3f} {t / tt:6.1%} {b / tok / 1e3:9.1f} "
              f"{n:6.0f} {(f + af) / tok / 1e6:12.2f}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("traces", nargs="+", help="one trace, or two that differ by one layer")
    ap.add_argument("--tokens", type=int, required=True, help="tokens per step (batch × seq)")
    ap.add_argument("--depth", type=int, help="layers of the first trace (two traces)")
    ap.add_argument("--layers", type=int, default=26, help="depth to model (two traces)")
    ap.add_argument("--bandwidth", type=float, default=4.0e12,
                    help="achieved bytes/s of elementwise kernels (H200 HBM3e peak: 4.8e12)")
    ap.add_argument("--matmul-flops", type=float, default=6.0e14, help="achieved bf16 GEMM FLOP/s")
    ap.add_argument("--fp32-matmul-flops", type=float, default=4.0e13,
                    help="achieved fp32 GEMM FLOP/s on CUDA cores (H200 peak: ~6.7e13)")
    ap.add_argument("--attn-flops", type=float, default=3.0e14, help="achieved attention FLOP/s")
    ap.add_argument("--by-part", action="store_true",
                    help="group ops by part of the step (LoRA path, norms, loss, ...) not by name")
    ap.add_argument("--rank", type=int, default=16, help="LoRA rank (for --by-part)")
    ap.add_argument("--vocab", type=int, default=262144, help="vocabulary size (for --by-part)")
    ap.add_argument("--gpu", action="store_true",
                    help="one CUDA trace: measured GPU time by part, beside the model's bytes")
    ap.add_argument("--list-bytes", type=int, default=2,
                    help="bytes per element of tensor lists (cat), whose dtype the trace omits")
    a = ap.parse_args()
    RATES.update(bandwidth=a.bandwidth, matmul=a.matmul_flops, matmul_fp32=a.fp32_matmul_flops,
                 attention=a.attn_flops)
    if len(a.traces) > 2 or (len(a.traces) == 2 and a.depth is None):
        sys.exit("give one trace, or two that differ by one layer and --depth of the first")
    if a.gpu:
        if len(a.traces) != 1:
            sys.exit("--gpu takes one CUDA trace")
        measured = measured_parts(a.traces[0], a.rank, a.vocab)
        modelled = load(a.traces[0], a.list_bytes, lambda n, args: part_of(n, args, a.rank, a.vocab))
        total = sum(v[0] for v in measured.values())
        print(f"GPU kernel time by part, {a.traces[0]} ({a.tokens} tokens a step): "
              f"{total:.1f} ms a step, {total / a.tokens * 1e3:.2f} µs/token; beside it the "
              "bytes the model gives the aten ops of that part (fused kernels: not modelled)")
        print(f"  {'part':36} {'ms/step':>8} {'share':>6} {'kernels':>8} {'KB/token':>9}")
        for name, (ms, n) in sorted(measured.items(), key=lambda kv: -kv[1][0]):
            kb = modelled.get(name, [0.0])[0] / a.tokens / 1e3
            print(f"  {name[:36]:36} {ms:8.2f} {ms / total if total else 0:6.1%} {n:8.0f} {kb:9.1f}")
        return
    key = (lambda n, args: part_of(n, args, a.rank, a.vocab)) if a.by_part else None
    runs = [load(p, a.list_bytes, key) for p in a.traces]
    tok = a.tokens
    print(f"model: {a.bandwidth / 1e12:.1f} TB/s, {a.matmul_flops / 1e12:.0f} TF matrix "
          f"({a.fp32_matmul_flops / 1e12:.0f} TF in fp32), {a.attn_flops / 1e12:.0f} TF "
          "attention; each op bound by the slower of its bytes and FLOPs; no overlap between "
          "ops, no launch gaps")
    if len(runs) == 1:
        report("whole step", runs[0], tok)
        return
    lo, hi = runs
    zero = [0.0] * 5
    layer = {n: [h - l for h, l in zip(hi.get(n, zero), lo.get(n, zero))] for n in set(lo) | set(hi)}
    fixed = {n: [l - a.depth * x for l, x in zip(lo.get(n, zero), layer.get(n, zero))]
             for n in set(lo) | set(hi)}
    report("one layer", layer, tok)
    report("fixed part (embedding, final norm, LM head and loss, optimizer)", fixed, tok)
    total = [sum(v[i] for v in fixed.values()) + a.layers * sum(v[i] for v in layer.values())
             for i in range(5)]
    print(f"\n## {a.layers} layers, {tok} tokens a step: {total[0] / 1e9:,.1f} GB moved, "
          f"{total[1] / 1e12:,.2f} TFLOP matrix, {total[2] / 1e12:,.3f} TFLOP attention; "
          f"modelled {total[4] * 1e3:,.1f} ms a step, {total[4] / tok * 1e6:.2f} µs/token")


if __name__ == "__main__":
    main()
