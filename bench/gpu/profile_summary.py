#!/usr/bin/env python3
"""Print a t2s-worker `bench-train` result line (JSON event) briefly: throughput, MFU (4.2 GFLOP
per token against 790 TFLOP/s), phases, and, when it ran with `profile`, GPU time by kernel."""
import json
import sys

ev = json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])
v = ev.get("value")
if not v:
    sys.exit(f"t2s bench-train failed: {ev}")
print(f"t2s {v['shape']} b{v['batch']}x{v['seq']}: {v['tokens_per_s']:.0f} tok/s, step {v['step_ms']:.1f} ms, "
      f"MFU {v['tokens_per_s'] * 4.2e9 / 790e12 * 100:.1f}%, peak {v.get('peak_mem_mb')} MiB, "
      f"fused kernels {v.get('fused_kernels')}, "
      f"phases {v['phase_ms']}")
p = v.get("profile") or {}
if p:
    print(f"  profiled: wall {p['wall_ms_per_step']:.1f} ms/step, GPU busy {p['gpu_busy_ms_per_step']:.1f} ms, "
          f"{p['kernels_per_step']:.0f} kernels and {p['cpu_ops_per_step']:.0f} CPU ops per step")
    for k in p["top_kernels"][:15]:
        print(f"  {k['ms_per_step']:7.2f} ms {k['calls_per_step']:6.0f}x {k['share'] * 100:5.1f}%  {k['name'][:100]}")
