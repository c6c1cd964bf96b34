// The fused kernels (see fused.cpp), compiled at run time by NVRTC: bf16 stored as raw
// 16-bit values, all math in fp32, every rounding of libtorch's unfused bf16 program kept.
// Plain CUDA C++ with no includes, so a host emulation (tests/fused_emu/emulate.cpp) can run
// the same source on the CPU.
typedef unsigned short bf16_t;

__device__ __forceinline__ float bf2f(bf16_t v) {
  return __uint_as_float(((unsigned int)v) << 16);
}

// Round to nearest even, NaN to the canonical quiet NaN: c10::BFloat16's conversion.
__device__ __forceinline__ bf16_t f2bf(float f) {
  unsigned int u = __float_as_uint(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return (bf16_t)0x7fc0u;
  u += 0x7fffu + ((u >> 16) & 1u);
  return (bf16_t)(u >> 16);
}

// The sum of `v` over the block, returned to every thread (blockDim.x a multiple of 32).
__device__ __forceinline__ float block_sum(float v, float* smem) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  if (lane == 0) smem[warp] = v;
  __syncthreads();
  const int warps = blockDim.x >> 5;
  float t = lane < warps ? smem[lane] : 0.0f;
  for (int o = 16; o > 0; o >>= 1) t += __shfl_xor_sync(0xffffffffu, t, o);
  return t;
}

// libtorch's tanh-GELU (GeluCUDAKernelImpl / GeluBackwardCUDAKernelImpl, opmath float).
#define T2S_BETA ((float)(1.41421356237309504880 * 1.12837916709551257390 * 0.5))
#define T2S_KAPPA 0.044715f

__device__ __forceinline__ float gelu_tanh(float x) {
  const float x_cube = x * x * x;
  const float inner = T2S_BETA * (x + T2S_KAPPA * x_cube);
  return 0.5f * x * (1.0f + tanhf(inner));
}

__device__ __forceinline__ float gelu_tanh_backward(float dy, float x) {
  const float x_sq = x * x;
  const float x_cube = x_sq * x;
  const float inner = T2S_BETA * (x + T2S_KAPPA * x_cube);
  const float tanh_inner = tanhf(inner);
  const float left = 0.5f * x;
  const float right = 1.0f + tanh_inner;
  const float left_derivative = 0.5f * right;
  const float right_derivative =
      left * (1.0f - tanh_inner * tanh_inner) * T2S_BETA * (1.0f + 3.0f * T2S_KAPPA * x_sq);
  return dy * (left_derivative + right_derivative);
}

// One (token, head) row of a norm kernel: block `blockIdx.x` = token * heads + head; x rows
// live at x + token * x_tok + head * D, w is [w_heads, D] (w_heads 1 or heads).
struct Row {
  long long row, tok;
  const bf16_t* x;
  const float* w;
};

__device__ __forceinline__ Row row_of(const bf16_t* x, long long x_tok, const float* w,
                                      int w_heads, int heads, int D) {
  Row r;
  r.row = blockIdx.x;
  r.tok = r.row / heads;
  const int head = (int)(r.row - r.tok * heads);
  r.x = x + r.tok * x_tok + (long long)head * D;
  r.w = w + (w_heads > 1 ? (long long)head * D : 0LL);
  return r;
}

// rsqrt(mean(x^2) + eps) of one row, in fp32, returned to every thread of the block.
__device__ __forceinline__ float row_rstd(const bf16_t* xr, int D, float eps, float* smem) {
  float ss = 0.0f;
  for (int i = threadIdx.x; i < D; i += blockDim.x) {
    const float v = bf2f(xr[i]);
    ss += v * v;
  }
  return rsqrtf(block_sum(ss, smem) / (float)D + eps);
}

// RMSNorm (+ residual), one row per block (see Row); y, res and rstd are contiguous
// [rows, D] / [rows].
extern "C" __global__ void t2s_rms_fwd(const bf16_t* __restrict__ x, long long x_tok,
                                       const float* __restrict__ w, int w_heads,
                                       const bf16_t* __restrict__ res, bf16_t* __restrict__ y,
                                       float* __restrict__ rstd, int heads, int D, float eps) {
  __shared__ float smem[32];
  const Row rw = row_of(x, x_tok, w, w_heads, heads, D);
  const long long row = rw.row;
  const bf16_t* xr = rw.x;
  const float* wr = rw.w;
  const float r = row_rstd(xr, D, eps, smem);
  if (threadIdx.x == 0) rstd[row] = r;
  bf16_t* yr = y + row * D;
  const bf16_t* rr = res ? res + row * D : 0;
  for (int i = threadIdx.x; i < D; i += blockDim.x) {
    bf16_t v = f2bf((bf2f(xr[i]) * r) * wr[i]);
    if (rr) v = f2bf(bf2f(rr[i]) + bf2f(v));
    yr[i] = v;
  }
}

// dx = r * g * w - x * r^3 * sum(g * w * x) / D, per row; g and dx contiguous [rows, D].
extern "C" __global__ void t2s_rms_bwd(const bf16_t* __restrict__ g,
                                       const bf16_t* __restrict__ x, long long x_tok,
                                       const float* __restrict__ w, int w_heads,
                                       const float* __restrict__ rstd, bf16_t* __restrict__ dx,
                                       int heads, int D) {
  __shared__ float smem[32];
  const Row rw = row_of(x, x_tok, w, w_heads, heads, D);
  const long long row = rw.row;
  const bf16_t* xr = rw.x;
  const float* wr = rw.w;
  const bf16_t* gr = g + row * D;
  float dot = 0.0f;
  for (int i = threadIdx.x; i < D; i += blockDim.x) dot += bf2f(gr[i]) * wr[i] * bf2f(xr[i]);
  const float r = rstd[row];
  const float c = block_sum(dot, smem) * r * r * r / (float)D;
  bf16_t* dr = dx + row * D;
  for (int i = threadIdx.x; i < D; i += blockDim.x)
    dr[i] = f2bf(bf2f(gr[i]) * wr[i] * r - bf2f(xr[i]) * c);
}

// 8 bf16 values from one 16-byte load at p (16-byte aligned), as floats; and 8 stored back.
__device__ __forceinline__ void load8(const bf16_t* p, float* v) {
  const uint4 u = *(const uint4*)p;
  const unsigned int w[4] = {u.x, u.y, u.z, u.w};
  for (int k = 0; k < 4; ++k) {
    v[2 * k] = bf2f((bf16_t)(w[k] & 0xffffu));
    v[2 * k + 1] = bf2f((bf16_t)(w[k] >> 16));
  }
}

__device__ __forceinline__ void store8(bf16_t* p, const bf16_t* b) {
  uint4 u;
  u.x = (unsigned int)b[0] | ((unsigned int)b[1] << 16);
  u.y = (unsigned int)b[2] | ((unsigned int)b[3] << 16);
  u.z = (unsigned int)b[4] | ((unsigned int)b[5] << 16);
  u.w = (unsigned int)b[6] | ((unsigned int)b[7] << 16);
  *(uint4*)p = u;
}

// bf16(bf16(gelu(gate)) * up).
__device__ __forceinline__ bf16_t gate_out(float gate, float up) {
  return f2bf(bf2f(f2bf(gelu_tanh(gate))) * up);
}

// The gradient of one gate/up pair from gg = d out, with the unfused program's roundings:
// d up = bf16(gg * a), d a = bf16(gg * up), d gate = bf16(gelu'(gate) * d a).
__device__ __forceinline__ void gate_grad(float gg, float gate, float up, bf16_t* d_gate,
                                          bf16_t* d_up) {
  const float a = bf2f(f2bf(gelu_tanh(gate)));
  const float da = bf2f(f2bf(gg * up));
  *d_up = f2bf(gg * a);
  *d_gate = f2bf(gelu_tanh_backward(da, gate));
}

// out[t, j] = gate_out(gu[t, j], gu[t, I + j]); blockIdx.y strides over rows. With `vec`
// (I % 8 == 0, 16-byte aligned rows) each thread takes 8 columns with 16-byte accesses.
extern "C" __global__ void t2s_gelu_gate_fwd(const bf16_t* __restrict__ gu, long long rows,
                                             int I, bf16_t* __restrict__ out, int vec) {
  const int j = (blockIdx.x * blockDim.x + threadIdx.x) * (vec ? 8 : 1);
  if (j >= I) return;
  for (long long t = blockIdx.y; t < rows; t += gridDim.y) {
    const bf16_t* r = gu + t * 2LL * I;
    bf16_t* o = out + t * I;
    if (vec) {
      float gv[8], uv[8];
      bf16_t ov[8];
      load8(r + j, gv);
      load8(r + I + j, uv);
      for (int e = 0; e < 8; ++e) ov[e] = gate_out(gv[e], uv[e]);
      store8(o + j, ov);
    } else {
      o[j] = gate_out(bf2f(r[j]), bf2f(r[I + j]));
    }
  }
}

// The gradient of both halves of gu from g = d out (see gate_grad); `vec` as in the forward.
extern "C" __global__ void t2s_gelu_gate_bwd(const bf16_t* __restrict__ g,
                                             const bf16_t* __restrict__ gu, long long rows,
                                             int I, bf16_t* __restrict__ dgu, int vec) {
  const int j = (blockIdx.x * blockDim.x + threadIdx.x) * (vec ? 8 : 1);
  if (j >= I) return;
  for (long long t = blockIdx.y; t < rows; t += gridDim.y) {
    const bf16_t* r = gu + t * 2LL * I;
    bf16_t* d = dgu + t * 2LL * I;
    if (vec) {
      float gg[8], gv[8], uv[8];
      bf16_t dg[8], du[8];
      load8(g + t * I + j, gg);
      load8(r + j, gv);
      load8(r + I + j, uv);
      for (int e = 0; e < 8; ++e) gate_grad(gg[e], gv[e], uv[e], &dg[e], &du[e]);
      store8(d + j, dg);
      store8(d + I + j, du);
    } else {
      gate_grad(bf2f(g[t * I + j]), bf2f(r[j]), bf2f(r[I + j]), &d[j], &d[I + j]);
    }
  }
}

// The q/k norms followed by split-half RoPE, one row (token, head) per block: y = the bf16
// norm output as in t2s_rms_fwd, out[i] = bf16(bf16(y[i] cos[i]) + y[i ± D/2] sin[i]) (the
// model's `x·cos` then `addcmul(roll(x, D/2), sin_signed)`), cos and sin (bf16, the sign of
// rotate_half folded into sin) one row of D per token.
__device__ __forceinline__ float normed(const bf16_t* xr, const float* wr, float r, int i) {
  return bf2f(f2bf((bf2f(xr[i]) * r) * wr[i]));
}

extern "C" __global__ void t2s_qk_rope_fwd(const bf16_t* __restrict__ x, long long x_tok,
                                           const float* __restrict__ w, int w_heads,
                                           const bf16_t* __restrict__ cos,
                                           const bf16_t* __restrict__ sin,
                                           bf16_t* __restrict__ y, float* __restrict__ rstd,
                                           int heads, int D, float eps) {
  __shared__ float smem[32];
  const Row rw = row_of(x, x_tok, w, w_heads, heads, D);
  const long long row = rw.row;
  const bf16_t* xr = rw.x;
  const float* wr = rw.w;
  const bf16_t* cr = cos + rw.tok * D;
  const bf16_t* sr = sin + rw.tok * D;
  const int half = D / 2;
  const float r = row_rstd(xr, D, eps, smem);
  if (threadIdx.x == 0) rstd[row] = r;
  bf16_t* yr = y + row * D;
  for (int i = threadIdx.x; i < D; i += blockDim.x) {
    const int p = i < half ? i + half : i - half;
    const float a = bf2f(f2bf(normed(xr, wr, r, i) * bf2f(cr[i])));
    yr[i] = f2bf(a + normed(xr, wr, r, p) * bf2f(sr[i]));
  }
}

// Its backward: the gradient of the norm output, gy[j] = bf16(bf16(g[j] cos[j]) +
// bf16(g[q] sin[q])) with q = j + D/2 (mod D), the position whose rotation reads j; then the
// norm's backward as in t2s_rms_bwd.
__device__ __forceinline__ float rope_grad(const bf16_t* gr, const bf16_t* cr, const bf16_t* sr,
                                           int j, int half) {
  const int q = j < half ? j + half : j - half;
  return bf2f(f2bf(bf2f(f2bf(bf2f(gr[j]) * bf2f(cr[j]))) + bf2f(f2bf(bf2f(gr[q]) * bf2f(sr[q])))));
}

extern "C" __global__ void t2s_qk_rope_bwd(const bf16_t* __restrict__ g,
                                           const bf16_t* __restrict__ x, long long x_tok,
                                           const float* __restrict__ w, int w_heads,
                                           const bf16_t* __restrict__ cos,
                                           const bf16_t* __restrict__ sin,
                                           const float* __restrict__ rstd,
                                           bf16_t* __restrict__ dx, int heads, int D) {
  __shared__ float smem[32];
  const Row rw = row_of(x, x_tok, w, w_heads, heads, D);
  const long long row = rw.row;
  const bf16_t* xr = rw.x;
  const float* wr = rw.w;
  const bf16_t* cr = cos + rw.tok * D;
  const bf16_t* sr = sin + rw.tok * D;
  const bf16_t* gr = g + row * D;
  const int half = D / 2;
  float dot = 0.0f;
  for (int i = threadIdx.x; i < D; i += blockDim.x)
    dot += rope_grad(gr, cr, sr, i, half) * wr[i] * bf2f(xr[i]);
  const float r = rstd[row];
  const float c = block_sum(dot, smem) * r * r * r / (float)D;
  bf16_t* dr = dx + row * D;
  for (int i = threadIdx.x; i < D; i += blockDim.x)
    dr[i] = f2bf(rope_grad(gr, cr, sr, i, half) * wr[i] * r - bf2f(xr[i]) * c);
}

// Cross-entropy of a chunk of logits z [rows, V] (bf16), one row per block, forward and
// backward in two passes over the row: the log-sum-exp in fp32 by an online max and sum,
// nll[row] = lse - z[target]; then z is overwritten in place with the gradient of the summed
// NLL, bf16(softmax(z)) minus one at the target (what softmax in bf16 then a scatter-add of
// -1 compute). The targets are valid indices (ignored positions were left out).
#define T2S_LOWEST (-3.402823466e+38f)

__device__ __forceinline__ void max_sum_merge(float& m, float& s, float m2, float s2) {
  const float mm = fmaxf(m, m2);
  s = s * expf(m - mm) + s2 * expf(m2 - mm);
  m = mm;
}

// One logit into the online (max m, sum s of exp(z - m)).
__device__ __forceinline__ void online(float v, float& m, float& s) {
  if (v > m) {
    s = s * expf(m - v) + 1.0f;
    m = v;
  } else {
    s += expf(v - m);
  }
}

// bf16(exp(z - lse)), minus one at the target column.
__device__ __forceinline__ bf16_t ce_grad(float z, float lse, bool target) {
  const bf16_t p = f2bf(expf(z - lse));
  return target ? f2bf(bf2f(p) - 1.0f) : p;
}

// With `vec` (V % 8 == 0, 16-byte aligned rows) each thread reads and writes 8 logits at once.
extern "C" __global__ void t2s_ce_rows(bf16_t* __restrict__ z,
                                       const long long* __restrict__ targets, int V,
                                       float* __restrict__ nll, int vec) {
  __shared__ float sm_m[32];
  __shared__ float sm_s[32];
  const long long row = blockIdx.x;
  bf16_t* zr = z + row * (long long)V;
  float m = T2S_LOWEST, s = 0.0f;
  if (vec) {
    for (int k = threadIdx.x * 8; k < V; k += blockDim.x * 8) {
      float v[8];
      load8(zr + k, v);
      for (int e = 0; e < 8; ++e) online(v[e], m, s);
    }
  } else {
    for (int i = threadIdx.x; i < V; i += blockDim.x) online(bf2f(zr[i]), m, s);
  }
  for (int o = 16; o > 0; o >>= 1) {
    const float m2 = __shfl_xor_sync(0xffffffffu, m, o);
    const float s2 = __shfl_xor_sync(0xffffffffu, s, o);
    max_sum_merge(m, s, m2, s2);
  }
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  if (lane == 0) {
    sm_m[warp] = m;
    sm_s[warp] = s;
  }
  __syncthreads();
  const int warps = blockDim.x >> 5;
  m = lane < warps ? sm_m[lane] : T2S_LOWEST;
  s = lane < warps ? sm_s[lane] : 0.0f;
  for (int o = 16; o > 0; o >>= 1) {
    const float m2 = __shfl_xor_sync(0xffffffffu, m, o);
    const float s2 = __shfl_xor_sync(0xffffffffu, s, o);
    max_sum_merge(m, s, m2, s2);
  }
  const float lse = m + logf(s);
  const long long t = targets[row];
  if (threadIdx.x == 0) nll[row] = lse - bf2f(zr[t]);
  __syncthreads();  // zr[t] is read before any thread overwrites the row
  if (vec) {
    for (int k = threadIdx.x * 8; k < V; k += blockDim.x * 8) {
      float v[8];
      bf16_t p[8];
      load8(zr + k, v);
      for (int e = 0; e < 8; ++e) p[e] = ce_grad(v[e], lse, k + e == t);
      store8(zr + k, p);
    }
  } else {
    for (int i = threadIdx.x; i < V; i += blockDim.x) zr[i] = ce_grad(bf2f(zr[i]), lse, i == t);
  }
}

// lowbias32 (C. Wellons): a 32-bit integer mixer with low bias, ~8 instructions.
__device__ __forceinline__ unsigned int lora_mix32(unsigned int x) {
  x ^= x >> 16;
  x *= 0x7feb352du;
  x ^= x >> 15;
  x *= 0x846ca68bu;
  x ^= x >> 16;
  return x;
}

// LoRA dropout over `copies` fp32 copies of a bf16 input [rows, D] (each adapter sharing the
// input draws its own mask, as PEFT's separate Dropout modules do): element (t, d) of copy c
// is kept when a hash of (seed, c, d, t) is at least p. Counter-based, so the backward
// regenerates the masks instead of storing them. The hash is a key per copy and column (loop
// invariant where a thread keeps its column, hoisted by the compiler) and one 32-bit mix per
// element: the per-element cost counts (the LoRA projections draw their masks once a step as
// bits, t2s_lora_mask, which their forward and backward read).
// 24 bits make the uniform draw.
__device__ __forceinline__ bool lora_keep(unsigned long long seed, int c, long long t, int d,
                                          float p) {
  const unsigned int copy =
      lora_mix32((unsigned int)seed ^ lora_mix32((unsigned int)(seed >> 32) + (unsigned int)c));
  const unsigned int column = lora_mix32((unsigned int)d ^ copy);
  const unsigned int h = lora_mix32(column + (unsigned int)t * 0x9E3779B9u);
  return (float)(h >> 8) * (1.0f / 16777216.0f) >= p;
}

// out[c][t][d] = kept ? float(x[t][d]) * scale : 0, scale = 1 / (1 - p): one read of the bf16
// input for every copy (unfused: a cast to fp32, then a dropout kernel over the expanded copies
// that also writes a mask). Blocks stride over the rows, threads over the columns.
extern "C" __global__ void t2s_lora_drop_fwd(const bf16_t* __restrict__ x, long long rows, int D,
                                             int copies, unsigned long long seed, float p,
                                             float scale, float* __restrict__ out) {
  const long long numel = rows * D;
  for (long long t = blockIdx.x; t < rows; t += gridDim.x) {
    for (int d = threadIdx.x; d < D; d += blockDim.x) {
      const float v = bf2f(x[t * D + d]);
      for (int c = 0; c < copies; ++c)
        out[c * numel + t * D + d] = lora_keep(seed, c, t, d, p) ? v * scale : 0.0f;
    }
  }
}

// dx[t][d] = bf16(sum over c of (kept ? g[c][t][d] * scale : 0)), the masks regenerated from
// the seed (unfused: the dropout backward, a sum over the copies and a cast, three kernels).
extern "C" __global__ void t2s_lora_drop_bwd(const float* __restrict__ g, long long rows, int D,
                                             int copies, unsigned long long seed, float p,
                                             float scale, bf16_t* __restrict__ dx) {
  const long long numel = rows * D;
  for (long long t = blockIdx.x; t < rows; t += gridDim.x) {
    for (int d = threadIdx.x; d < D; d += blockDim.x) {
      float s = 0.0f;
      for (int c = 0; c < copies; ++c)
        s += lora_keep(seed, c, t, d, p) ? g[c * numel + t * D + d] * scale : 0.0f;
      dx[t * D + d] = f2bf(s);
    }
  }
}

// --- LoRA projections straight from and into bf16 ------------------------------------------
// The adapters' fp32 side path (PEFT: x cast to fp32, dropout, A, B, the sum cast back) without
// its fp32 copies of width D or O. Down: u[c] = (keep_c ⊙ fp32(x) · scale) · A[c]ᵀ for the n
// adapters sharing the input x [T, D], each with its own mask (those of t2s_lora_drop_fwd for
// the same seed: element (t, d) of copy c kept by lora_keep(seed, c, t, d, p); p = 0:
// no dropout, no hash, scale 1) and its A[c] [r, D] (A contiguous [n, r, D]). Up: out =
// bf16(fp32(y) + u[c] · B[c]ᵀ) over adapter c's columns [off[c], off[c + 1]) of the output y
// [T, O] (B the adapters' [out_c, r] stacked [O, r]). With dropout, t2s_lora_mask draws the
// masks once a step as bits [n, T, ceil(D / 32)] (lora_keep, the same as t2s_lora_drop_fwd's),
// which the three down kernels read. Unfused, the dropped copies [n, T, D] are
// written, read by a GEMM, kept, read again and their gradient written and read, and the fp32
// deltas [T, O] written, concatenated and read, their gradient an fp32 copy read twice.
//
// These are small GEMMs (r ≤ 128 columns) on fp32 CUDA cores, so each thread keeps a 4 × 4
// tile of results in registers and reads its operands as float4 from shared memory, one of
// the two the same for the whole warp (a broadcast): ~8 FMAs per shared-memory load. A mask
// is hashed once per element and step, by t2s_lora_mask (hashed in each of the three down
// kernels instead, at r = 16 the hashes cost about as many instructions as the products). Reductions over tokens
// or over columns are split across blocks into partial sums the host adds in a fixed order
// (deterministic, no atomics); the host sizes the splits so the grid fills the GPU. All
// kernels take blocks of 256 threads; r ≤ 128, n · r ≤ 128 (down) and n ≤ 4 with offsets that
// are multiples of 4 (up). Register counts: bench/kernel_registers.py.
#define T2S_LORA_THREADS 256
#define T2S_LORA_MAX_R 128
#define T2S_LORA_KC 16  // reduction step of the row reductions (columns per staged tile)

struct LoraParts {
  int off[5];  // n ≤ 4 adapters: off[0] = 0, off[n] = O
};

__device__ __forceinline__ int lora_part(const LoraParts& parts, int n, int o) {
  int c = 0;
  while (c + 1 < n && o >= parts.off[c + 1]) ++c;
  return c;
}

__device__ __forceinline__ float4 lora_ld4(const float* p) { return *(const float4*)p; }

// acc[i][j] += a[i] · b[j] for the 4 × 4 tile.
__device__ __forceinline__ void lora_fma4x4(float acc[4][4], float4 a, float4 b) {
  const float av[4] = {a.x, a.y, a.z, a.w}, bv[4] = {b.x, b.y, b.z, b.w};
  for (int i = 0; i < 4; ++i)
    for (int j = 0; j < 4; ++j) acc[i][j] += av[i] * bv[j];
}

// The dropout masks of the n adapters sharing an input [T, D] as bits [n, T, W], W =
// ceil(D / 32): bit b of word w of row (c, t) is set where copy c keeps (t, 32·w + b)
// (lora_keep), bits past D clear. One word a thread. Grid (ceil(T·W / 256), n).
extern "C" __global__ void t2s_lora_mask(long long T, int D, int W, unsigned long long seed,
                                         float p, unsigned int* __restrict__ bits) {
  const int c = blockIdx.y;
  const long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= T * W) return;
  const long long t = i / W;
  const int d0 = 32 * (int)(i % W);
  unsigned int word = 0;
  for (int b = 0; b < 32; ++b)
    if (d0 + b < D && lora_keep(seed, c, t, d0 + b, p)) word |= 1u << b;
  bits[(long long)c * T * W + i] = word;
}

// The word of t2s_lora_mask's bits that holds columns 32·(d / 32) + 0..31 of copy c's token t.
__device__ __forceinline__ unsigned int lora_mask_word(const unsigned int* __restrict__ bits,
                                                       long long T, int W, int c, long long t,
                                                       int d) {
  return bits[((long long)c * T + t) * W + (d >> 5)];
}

// fp32(x[t][d]) · scale where copy c keeps (t, d) (every element without bits), else 0.
__device__ __forceinline__ float lora_dropped(const bf16_t* __restrict__ x, int D,
                                              const unsigned int* __restrict__ bits, long long T,
                                              int W, int c, long long t, int d, float scale) {
  if (bits != nullptr && !(lora_mask_word(bits, T, W, c, t, d) >> (d & 31) & 1u)) return 0.0f;
  return bf2f(x[t * D + d]) * scale;
}

// --- The down-projection as tensor-core GEMMs (fused.cpp's LoraDownGemm) ---------------------
// There the products run in cuBLAS on bf16 operands with fp32 results: the fp32 operands split
// into bf16 pieces, the input x bf16 already. A mask cannot ride in a GEMM, so with dropout
// these two kernels apply the bits of t2s_lora_mask around them.

// out[c][t][d] = x[t][d] where copy c keeps (t, d), else 0: the masked input, bf16 and exact
// (the 1 / (1 − p) is applied to the GEMM's fp32 result). 8 columns a thread, one byte of a
// mask word (8 · k columns never straddle a word). With `vec` (D % 8 == 0, 16-byte aligned
// rows) 16-byte loads and stores. Grid (ceil(T · ceil(D / 8) / 256), n).
extern "C" __global__ void t2s_lora_mask_apply(const bf16_t* __restrict__ x, long long T, int D,
                                               int W, const unsigned int* __restrict__ bits,
                                               bf16_t* __restrict__ out, int vec) {
  const int c = blockIdx.y, groups = (D + 7) / 8;
  const long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= T * groups) return;
  const long long t = i / groups;
  const int d0 = 8 * (int)(i % groups);
  const unsigned int keep = lora_mask_word(bits, T, W, c, t, d0) >> (d0 & 31) & 0xffu;
  const bf16_t* xr = x + t * D + d0;
  bf16_t* o = out + ((long long)c * T + t) * D + d0;
  if (vec) {
    const uint4 v = *(const uint4*)xr;
    const unsigned int w[4] = {v.x, v.y, v.z, v.w};
    unsigned int m[4];
    for (int k = 0; k < 4; ++k)
      m[k] = (keep >> (2 * k) & 1u ? 0xffffu : 0u) | (keep >> (2 * k + 1) & 1u ? 0xffff0000u : 0u);
    uint4 r;
    r.x = w[0] & m[0];
    r.y = w[1] & m[1];
    r.z = w[2] & m[2];
    r.w = w[3] & m[3];
    *(uint4*)o = r;
  } else {
    for (int e = 0; e < 8 && d0 + e < D; ++e) o[e] = keep >> e & 1u ? xr[e] : (bf16_t)0;
  }
}

// dx[t][d] = bf16(Σ_c (copy c keeps (t, d) ? g[c][t][d] · scale : 0)) for g [n, T, D] fp32
// (each adapter's du[c] · A[c] from the GEMM): the input's gradient through every adapter,
// summed in fp32 and rounded once, as t2s_lora_drop_bwd does with its hashed masks. 4 columns
// a thread; with `vec` (D % 4 == 0, 16-byte aligned rows) 16-byte loads of g. Grid
// (ceil(T · ceil(D / 4) / 256)).
extern "C" __global__ void t2s_lora_mask_sum(const float* __restrict__ g, long long T, int D,
                                             int W, int n, const unsigned int* __restrict__ bits,
                                             float scale, bf16_t* __restrict__ dx, int vec) {
  const int groups = (D + 3) / 4;
  const long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= T * groups) return;
  const long long t = i / groups;
  const int d0 = 4 * (int)(i % groups);
  float s[4] = {0.0f, 0.0f, 0.0f, 0.0f};
  for (int c = 0; c < n; ++c) {
    const unsigned int keep = lora_mask_word(bits, T, W, c, t, d0) >> (d0 & 31) & 0xfu;
    const float* gr = g + ((long long)c * T + t) * D + d0;
    float v[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    if (vec) {
      const float4 q = lora_ld4(gr);
      v[0] = q.x;
      v[1] = q.y;
      v[2] = q.z;
      v[3] = q.w;
    } else {
      for (int e = 0; e < 4 && d0 + e < D; ++e) v[e] = gr[e];
    }
    for (int e = 0; e < 4; ++e) s[e] += keep >> e & 1u ? v[e] * scale : 0.0f;
  }
  for (int e = 0; e < 4 && d0 + e < D; ++e) dx[t * D + d0 + e] = f2bf(s[e]);
}

// Tokens a row-reduction block takes for q outputs a token: 4 a thread, the 256 threads split
// into groups of 4 outputs (at least 4 groups, a power of two).
__device__ __forceinline__ int lora_row_tokens(int q) {
  int groups = 4;
  while (groups * 4 < q) groups *= 2;
  return 4 * (T2S_LORA_THREADS / groups);
}

// One block of a row reduction: out[t][j] = Σ over k in [k_lo, k_hi) of src(t, k) · w(j, k),
// for the lora_row_tokens(r) tokens from blockIdx.x's and all j < r. Thread i owns tokens
// 4·(i % tokens/4) + 0..3 and outputs 4·(i / (tokens/4)) + 0..3.
template <typename Src, typename W>
__device__ __forceinline__ void lora_row_reduce(const Src& src, const W& w, long long T, int k_lo,
                                                int k_hi, int r, float* __restrict__ out) {
  __shared__ __align__(16) float xs[T2S_LORA_KC][T2S_LORA_THREADS + 4];
  __shared__ __align__(16) float ws[T2S_LORA_KC][T2S_LORA_MAX_R];
  const int tid = threadIdx.x, tokens = lora_row_tokens(r);
  const int tgroups = tokens / 4, wide = 4 * (T2S_LORA_THREADS / tgroups);
  const int tg = tid % tgroups, jg = tid / tgroups;
  const long long t0 = (long long)blockIdx.x * tokens;
  float acc[4][4];
  for (int i = 0; i < 4; ++i)
    for (int j = 0; j < 4; ++j) acc[i][j] = 0.0f;
  // Staging: a thread keeps one column of the tiles (no division per element; `wide` divides
  // the block).
  const int x_kk = tid % T2S_LORA_KC, x_tt = tid / T2S_LORA_KC;
  const int w_j = tid % wide, w_kk = tid / wide, w_step = T2S_LORA_THREADS / wide;
  for (int k0 = k_lo; k0 < k_hi; k0 += T2S_LORA_KC) {
    for (int tt = x_tt; tt < tokens; tt += T2S_LORA_THREADS / T2S_LORA_KC) {
      const long long t = t0 + tt;
      const int k = k0 + x_kk;
      xs[x_kk][tt] = t < T && k < k_hi ? src(t, k) : 0.0f;
    }
    for (int kk = w_kk; kk < T2S_LORA_KC; kk += w_step) {
      const int k = k0 + kk;
      ws[kk][w_j] = w_j < r && k < k_hi ? w(w_j, k) : 0.0f;
    }
    __syncthreads();
    for (int kk = 0; kk < T2S_LORA_KC; ++kk)
      lora_fma4x4(acc, lora_ld4(&xs[kk][4 * tg]), lora_ld4(&ws[kk][4 * jg]));
    __syncthreads();
  }
  for (int i = 0; i < 4; ++i) {
    const long long t = t0 + 4 * tg + i;
    if (t >= T) continue;
    for (int j = 0; j < 4; ++j)
      if (4 * jg + j < r) out[t * r + 4 * jg + j] = acc[i][j];
  }
}

// One block of an outer sum over tokens: out[j][k] = Σ over t in [t_begin, t_end) of
// u(t, qbase(k) + j) · src(t, k), for the 4·(256 / groups) columns from k_tile and all j < r
// (u staged for q < q_n: one adapter's r, or every adapter's n·r when the columns' adapter
// varies). Thread i owns columns 4·(i % cgroups) + 0..3 (one adapter's: qbase of the first)
// and ranks 4·(i / cgroups) + 0..3.
template <typename Src, typename U, typename QBase>
__device__ __forceinline__ void lora_outer_sum(const Src& src, const U& u, const QBase& qbase,
                                               long long t_begin, long long t_end, int k_tile,
                                               int K, int r, int q_n, float* __restrict__ out,
                                               long long out_row) {
  __shared__ __align__(16) float xs[16][T2S_LORA_THREADS + 4];
  __shared__ __align__(16) float us[16][T2S_LORA_MAX_R + 4];
  const int tid = threadIdx.x, cols = lora_row_tokens(r), cgroups = cols / 4;
  const int cg = tid % cgroups, jg = tid / cgroups;
  const int k_first = k_tile + 4 * cg;
  const int q0 = qbase(k_first < K ? k_first : K - 1);
  float acc[4][4];
  for (int i = 0; i < 4; ++i)
    for (int j = 0; j < 4; ++j) acc[i][j] = 0.0f;
  // Staging x: a thread keeps one column (`cols` divides the block: no division per element).
  const int x_kk = tid % cols, x_tt = tid / cols, x_step = T2S_LORA_THREADS / cols;
  for (long long t0 = t_begin; t0 < t_end; t0 += 16) {
    for (int tt = x_tt; tt < 16; tt += x_step) {
      const long long t = t0 + tt;
      const int k = k_tile + x_kk;
      xs[tt][x_kk] = t < t_end && k < K ? src(t, k) : 0.0f;
    }
    for (int e = tid; e < 16 * q_n; e += T2S_LORA_THREADS) {
      const int q = e % q_n, tt = e / q_n;
      const long long t = t0 + tt;
      us[tt][q] = t < t_end ? u(t, q) : 0.0f;
    }
    __syncthreads();
    for (int tt = 0; tt < 16; ++tt) {
      const float* ur = &us[tt][q0 + 4 * jg];
      const int left = r - 4 * jg;  // ranks of this thread's four that exist
      float4 uv;
      uv.x = left > 0 ? ur[0] : 0.0f;
      uv.y = left > 1 ? ur[1] : 0.0f;
      uv.z = left > 2 ? ur[2] : 0.0f;
      uv.w = left > 3 ? ur[3] : 0.0f;
      lora_fma4x4(acc, uv, lora_ld4(&xs[tt][4 * cg]));
    }
    __syncthreads();
  }
  for (int j = 0; j < 4; ++j) {
    if (4 * jg + j >= r) continue;
    for (int i = 0; i < 4; ++i) {
      const int k = k_first + i;
      if (k < K) out[(long long)(4 * jg + j) * out_row + k] = acc[j][i];
    }
  }
}

// Operands of the row reductions and outer sums (functors: element (t, k) of the wide input,
// element (j, k) of the weights, the rank activations' column q, the first of a column's).
// fp32(g[t][k]) of a bf16 [T, K] gradient.
struct LoraBf16Rows {
  const bf16_t* g;
  int K;
  __device__ float operator()(long long t, int k) const { return bf2f(g[t * K + k]); }
};

// A[j][k] of one adapter's A [r, K].
struct LoraRowsOf {
  const float* a;
  int K;
  __device__ float operator()(int j, int k) const { return a[(long long)j * K + k]; }
};

// B[k][j] of the stacked B [K, r].
struct LoraColumnsOf {
  const float* b;
  int r;
  __device__ float operator()(int j, int k) const { return b[(long long)k * r + j]; }
};

// u[q / r][t][q % r] of rank activations [n, T, r] (q over every adapter's ranks).
struct LoraRanks {
  const float* u;
  long long T;
  int r;
  __device__ float operator()(long long t, int q) const {
    return u[((long long)(q / r) * T + t) * r + q % r];
  }
};

// Every column's ranks start at adapter c's: q0 = c · r.
struct LoraOneAdapter {
  int q0;
  __device__ int operator()(int) const { return q0; }
};

// A column's ranks start at its adapter's.
struct LoraAdapterOfColumn {
  LoraParts parts;
  int n, r;
  __device__ int operator()(int k) const { return lora_part(parts, n, k) * r; }
};

// Copy c of the dropped input: the bits of t2s_lora_mask (null: no dropout), x [T, D].
struct LoraDroppedX {
  const bf16_t* x;
  const unsigned int* bits;
  long long T;
  int D, W, c;
  float scale;
  __device__ float operator()(long long t, int d) const {
    return lora_dropped(x, D, bits, T, W, c, t, d, scale);
  }
};

// down: partial [S, n, T, r], S = ceil(D / split); the caller sums over S. Grid
// (ceil(T / lora_row_tokens(r)), n, S). Bounded to 4 blocks a multiprocessor (sm_90, NVRTC
// 13.0: 64 registers, no spills; 72 and 3 blocks unbounded).
extern "C" __global__ void __launch_bounds__(T2S_LORA_THREADS, 4)
    t2s_lora_down_fwd(const bf16_t* __restrict__ x, long long T, int D, int r,
                      const float* __restrict__ A, const unsigned int* __restrict__ bits, int W,
                      float scale, int split, float* __restrict__ partial) {
  const int c = blockIdx.y, n = gridDim.y;
  const long long s = blockIdx.z;
  const LoraDroppedX src{x, bits, T, D, W, c, scale};
  const LoraRowsOf w{A + (long long)c * r * D, D};
  const int lo = (int)s * split;
  const int hi = lo + split < D ? lo + split : D;
  lora_row_reduce(src, w, T, lo, hi, r, partial + ((s * n + c) * T) * r);
}

// dx [T, D] = bf16(Σ_c keep_c ⊙ (du[c] · A[c]) · scale) for du [n, T, r]: the gradient of x
// through every adapter, summed and rounded once. Grid (ceil(T / 32), ceil(D / 128)): thread i
// owns tokens 4·(i / 32) + 0..3 and columns 4·(i % 32) + 0..3; a warp shares its tokens (du
// read as a broadcast). Per adapter, A's rows come in steps of 16. Bounded to 3 blocks a
// multiprocessor (sm_90, NVRTC 13.0: 80 registers, 16 bytes spilled; 4 blocks would spill 72;
// 147 registers, one block of 8 warps, when it hashed its masks beside both tiles).
extern "C" __global__ void __launch_bounds__(T2S_LORA_THREADS, 3)
    t2s_lora_down_dx(const float* __restrict__ du, const float* __restrict__ A, long long T,
                     int D, int n, int r, const unsigned int* __restrict__ bits, int W,
                     float scale, bf16_t* __restrict__ dx) {
  __shared__ __align__(16) float as[16][128];
  __shared__ __align__(16) float ust[16][32];
  const int tid = threadIdx.x, cg = tid % 32, tg = tid / 32;
  const long long t0 = (long long)blockIdx.x * 32;
  const int d0 = blockIdx.y * 128 + 4 * cg;
  float total[4][4];
  for (int i = 0; i < 4; ++i)
    for (int j = 0; j < 4; ++j) total[i][j] = 0.0f;
  for (int c = 0; c < n; ++c) {
    // The adapter's mask over this thread's 16 elements, taken before its tile of products
    // is live: its 4 columns of a token sit in one word (d0 is a multiple of 4).
    unsigned keep = 0;
    for (int i = 0; i < 4; ++i) {
      const long long t = t0 + 4 * tg + i;
      if (t >= T || d0 >= D) continue;
      const unsigned word =
          bits != nullptr ? lora_mask_word(bits, T, W, c, t, d0) >> (d0 & 31) : 0xfu;
      for (int j = 0; j < 4; ++j)
        if (d0 + j < D && (word >> j & 1u)) keep |= 1u << (4 * i + j);
    }
    float g[4][4];
    for (int i = 0; i < 4; ++i)
      for (int j = 0; j < 4; ++j) g[i][j] = 0.0f;
    for (int j0 = 0; j0 < r; j0 += 16) {
      for (int e = tid; e < 16 * 128; e += T2S_LORA_THREADS) {
        const int jj = e / 128, dd = e % 128, j = j0 + jj, d = blockIdx.y * 128 + dd;
        as[jj][dd] = j < r && d < D ? A[((long long)c * r + j) * D + d] : 0.0f;
      }
      for (int e = tid; e < 16 * 32; e += T2S_LORA_THREADS) {
        const int tt = e % 32, jj = e / 32, j = j0 + jj;
        const long long t = t0 + tt;
        ust[jj][tt] = j < r && t < T ? du[((long long)c * T + t) * r + j] : 0.0f;
      }
      __syncthreads();
      for (int jj = 0; jj < 16; ++jj)
        lora_fma4x4(g, lora_ld4(&ust[jj][4 * tg]), lora_ld4(&as[jj][4 * cg]));
      __syncthreads();
    }
    for (int i = 0; i < 4; ++i)
      for (int j = 0; j < 4; ++j)
        if (keep >> (4 * i + j) & 1u) total[i][j] += g[i][j] * scale;
  }
  for (int i = 0; i < 4; ++i) {
    const long long t = t0 + 4 * tg + i;
    for (int j = 0; j < 4; ++j)
      if (t < T && d0 + j < D) dx[t * D + d0 + j] = f2bf(total[i][j]);
  }
}

// The gradient of A per split of the tokens: partial [S, n, r, D], S = ceil(T / span), with
// partial[s][c] = Σ over the split's tokens of du[c][t]ᵀ ⊗ (keep_c ⊙ fp32(x[t]) · scale); the
// caller sums over s. Grid (ceil(D / lora_row_tokens(r)), n, S). Bounded to 4 blocks a
// multiprocessor (NVRTC 13.0: 64 registers, no spills; unbounded 63 on sm_90 and 69, 3 blocks,
// on sm_80).
extern "C" __global__ void __launch_bounds__(T2S_LORA_THREADS, 4)
    t2s_lora_down_da(const float* __restrict__ du, const bf16_t* __restrict__ x, long long T,
                     int D, int r, long long span, const unsigned int* __restrict__ bits, int W,
                     float scale, float* __restrict__ partial) {
  const int c = blockIdx.y, n = gridDim.y;
  const long long s = blockIdx.z;
  const LoraDroppedX src{x, bits, T, D, W, c, scale};
  const LoraRanks u{du, T, r};
  const LoraOneAdapter qbase{c * r};
  const long long t_begin = s * span;
  const long long t_end = t_begin + span < T ? t_begin + span : T;
  lora_outer_sum(src, u, qbase, t_begin, t_end, blockIdx.x * lora_row_tokens(r), D, r, n * r,
                 partial + (s * n + c) * (long long)r * D, D);
}

// out [T, O] = bf16(fp32(y) + u[c(o)] · B[o]) for u [n, T, r] (scaled). Grid (ceil(T / 32),
// ceil(O / 128)): thread i owns tokens 4·(i / 32) + 0..3 and columns 4·(i % 32) + 0..3 (one
// adapter's: the offsets are multiples of 4).
extern "C" __global__ void t2s_lora_up_fwd(const bf16_t* __restrict__ y,
                                           const float* __restrict__ u,
                                           const float* __restrict__ B, long long T, int O,
                                           int n, int r, LoraParts parts,
                                           bf16_t* __restrict__ out) {
  __shared__ __align__(16) float bst[16][128];
  __shared__ __align__(16) float ust[T2S_LORA_MAX_R][32];
  const int tid = threadIdx.x, cg = tid % 32, tg = tid / 32, nr = n * r;
  const long long t0 = (long long)blockIdx.x * 32;
  const int o0 = blockIdx.y * 128 + 4 * cg;
  const int c = lora_part(parts, n, o0 < O ? o0 : O - 1);
  for (int e = tid; e < nr * 32; e += T2S_LORA_THREADS) {
    const int tt = e % 32, q = e / 32;
    const long long t = t0 + tt;
    ust[q][tt] = t < T ? u[((long long)(q / r) * T + t) * r + q % r] : 0.0f;
  }
  float acc[4][4];
  for (int i = 0; i < 4; ++i)
    for (int j = 0; j < 4; ++j) acc[i][j] = 0.0f;
  for (int j0 = 0; j0 < r; j0 += 16) {
    for (int e = tid; e < 16 * 128; e += T2S_LORA_THREADS) {
      const int oo = e % 128, jj = e / 128, j = j0 + jj, o = blockIdx.y * 128 + oo;
      bst[jj][oo] = j < r && o < O ? B[(long long)o * r + j] : 0.0f;
    }
    __syncthreads();
    const int jn = r - j0 < 16 ? r - j0 : 16;
    for (int jj = 0; jj < jn; ++jj)
      lora_fma4x4(acc, lora_ld4(&ust[c * r + j0 + jj][4 * tg]), lora_ld4(&bst[jj][4 * cg]));
    __syncthreads();
  }
  for (int i = 0; i < 4; ++i) {
    const long long t = t0 + 4 * tg + i;
    for (int j = 0; j < 4; ++j) {
      const int o = o0 + j;
      if (t < T && o < O) out[t * O + o] = f2bf(bf2f(y[t * O + o]) + acc[i][j]);
    }
  }
}

// du: partial [S, n, T, r], S = ceil(widest adapter's columns / split), with
// partial[s][c] = fp32(g[:, split s of adapter c's columns]) · B[c] for the output's gradient g
// [T, O]; the caller sums over s. Grid (ceil(T / lora_row_tokens(r)), n, S).
extern "C" __global__ void t2s_lora_up_du(const bf16_t* __restrict__ g,
                                          const float* __restrict__ B, long long T, int O, int r,
                                          LoraParts parts, int split,
                                          float* __restrict__ partial) {
  const int c = blockIdx.y, n = gridDim.y;
  const long long s = blockIdx.z;
  const LoraBf16Rows src{g, O};
  const LoraColumnsOf w{B, r};
  const int lo = parts.off[c] + (int)s * split;
  const int end = parts.off[c + 1];
  const int hi = lo + split < end ? lo + split : end;
  lora_row_reduce(src, w, T, lo, hi, r, partial + ((s * n + c) * T) * r);
}

// The gradient of B per split of the tokens: partial [S, O, r] laid out [S][r][O] (the caller
// sums over s and transposes), partial[s][j][o] = Σ over the split's tokens of fp32(g[t][o]) ·
// u[c(o)][t][j]. Grid (ceil(O / lora_row_tokens(r)), 1, S).
extern "C" __global__ void t2s_lora_up_db(const bf16_t* __restrict__ g,
                                          const float* __restrict__ u, long long T, int O, int n,
                                          int r, LoraParts parts, long long span,
                                          float* __restrict__ partial) {
  const long long s = blockIdx.z;
  const LoraBf16Rows src{g, O};
  const LoraRanks uu{u, T, r};
  const LoraAdapterOfColumn qbase{parts, n, r};
  const long long t_begin = s * span;
  const long long t_end = t_begin + span < T ? t_begin + span : T;
  lora_outer_sum(src, uu, qbase, t_begin, t_end, blockIdx.x * lora_row_tokens(r), O, r, n * r,
                 partial + s * (long long)r * O, O);
}
