#!/usr/bin/env python3
"""Registers, spills and shared memory per fused kernel, from NVRTC's ptxas report, and the
blocks of 256 threads a multiprocessor can hold (65,536 registers and 2,048 threads; shared
memory 228 KB on sm_90, 164 KB on sm_80): what limits each kernel's occupancy. Needs no GPU, only the libnvrtc
that PyPI's torch ships.

    bench/kernel_registers.py [sm_90 sm_80 ...]     (run with the project venv's python)
"""
import ctypes
import glob
import os
import re
import sys

import torch  # noqa: F401  (locates site-packages)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SOURCE = os.path.join(ROOT, "crates/t2s-torch/csrc/fused_kernels.cu")


def nvrtc():
    site = os.path.dirname(os.path.dirname(torch.__file__))
    for pattern in ("nvidia/cu13/lib/libnvrtc.so.13*", "nvidia/cuda_nvrtc/lib/libnvrtc.so.12*"):
        found = sorted(glob.glob(os.path.join(site, pattern)))
        if found:
            return ctypes.CDLL(found[0])
    sys.exit("libnvrtc not found next to torch")


def ptxas_report(lib, arch):
    prog = ctypes.c_void_p()
    src = open(SOURCE, "rb").read()
    if lib.nvrtcCreateProgram(ctypes.byref(prog), src, b"t2s_fused.cu", 0, None, None) != 0:
        sys.exit("nvrtcCreateProgram failed")
    opts = [f"--gpu-architecture={arch}".encode(), b"--std=c++17", b"--ptxas-options=-v"]
    rc = lib.nvrtcCompileProgram(prog, len(opts), (ctypes.c_char_p * len(opts))(*opts))
    size = ctypes.c_size_t()
    lib.nvrtcGetProgramLogSize(prog, ctypes.byref(size))
    log = ctypes.create_string_buffer(size.value)
    lib.nvrtcGetProgramLog(prog, log)
    lib.nvrtcDestroyProgram(ctypes.byref(prog))
    if rc != 0:
        sys.exit(f"{arch}: compile failed\n{log.value.decode()}")
    return log.value.decode()


def main():
    lib = nvrtc()
    for arch in sys.argv[1:] or ["sm_90"]:
        kernel, spill = None, ""
        print(f"{arch}: kernel, registers, shared memory, spills (bytes stored/loaded), blocks of 256 per SM")
        for line in ptxas_report(lib, arch).splitlines():
            if m := re.search(r"entry function '(\w+)'", line):
                kernel = m.group(1)
            elif m := re.search(r"(\d+) bytes spill stores, (\d+) bytes spill loads", line):
                spill = f"{m.group(1)}/{m.group(2)}"
            elif (m := re.search(r"Used (\d+) registers", line)) and kernel:
                regs = int(m.group(1))
                smem = int(s.group(1)) if (s := re.search(r"(\d+) bytes smem", line)) else 0
                per_warp = (regs * 32 + 255) // 256 * 256  # allocated per warp, 256 at a time
                by_regs = 65536 // (per_warp * 8)
                smem_per_sm = (228 if arch >= "sm_90" else 164) * 1024
                by_smem = smem_per_sm // smem if smem else 8
                print(f"  {kernel:22s} {regs:4d} {smem:7d} B  {spill:>7s}  {min(by_regs, by_smem, 8)}")
                kernel = None


if __name__ == "__main__":
    main()
