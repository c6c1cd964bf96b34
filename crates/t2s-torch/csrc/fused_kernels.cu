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

// LoRA dropout over `copies` fp32 copies of a bf16 input (each adapter sharing the input draws
// its own mask, as PEFT's separate Dropout modules do): element i of copy c is kept when a
// hash of (seed, c * numel + i) is at least p. Counter-based, so the backward regenerates the
// masks instead of storing them. splitmix64's finaliser; 24 bits make the uniform draw.
__device__ __forceinline__ bool lora_keep(unsigned long long seed, unsigned long long idx,
                                          float p) {
  unsigned long long z = seed + (idx + 1ULL) * 0x9E3779B97F4A7C15ULL;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  z ^= z >> 31;
  return (float)(z >> 40) * (1.0f / 16777216.0f) >= p;
}

// out[c][i] = kept ? float(x[i]) * scale : 0, scale = 1 / (1 - p): one read of the bf16 input
// for every copy (unfused: a cast to fp32, then a dropout kernel over the expanded copies that
// also writes a mask). Grid-stride over i.
extern "C" __global__ void t2s_lora_drop_fwd(const bf16_t* __restrict__ x, long long numel,
                                             int copies, unsigned long long seed, float p,
                                             float scale, float* __restrict__ out) {
  const long long stride = (long long)gridDim.x * blockDim.x;
  for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < numel; i += stride) {
    const float v = bf2f(x[i]);
    for (int c = 0; c < copies; ++c) {
      const unsigned long long idx = (unsigned long long)c * (unsigned long long)numel + i;
      out[idx] = lora_keep(seed, idx, p) ? v * scale : 0.0f;
    }
  }
}

// dx[i] = bf16(sum over c of (kept ? g[c][i] * scale : 0)), the masks regenerated from the
// seed (unfused: the dropout backward, a sum over the copies and a cast, three kernels).
extern "C" __global__ void t2s_lora_drop_bwd(const float* __restrict__ g, long long numel,
                                             int copies, unsigned long long seed, float p,
                                             float scale, bf16_t* __restrict__ dx) {
  const long long stride = (long long)gridDim.x * blockDim.x;
  for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < numel; i += stride) {
    float s = 0.0f;
    for (int c = 0; c < copies; ++c) {
      const unsigned long long idx = (unsigned long long)c * (unsigned long long)numel + i;
      s += lora_keep(seed, idx, p) ? g[idx] * scale : 0.0f;
    }
    dx[i] = f2bf(s);
  }
}

// --- LoRA down-projection straight from the bf16 input --------------------------------------
// u[c] = (keep_c ⊙ fp32(x) · scale) · A[c]ᵀ for n adapters sharing the input x [T, D], each
// with its own mask (the masks of t2s_lora_drop_fwd for the same seed: element (t, d) of copy
// c kept by lora_keep(seed, c·T·D + t·D + d, p)) and its own A[c] [r, D] (A contiguous
// [n, r, D]). Unfused (even with t2s_lora_drop_fwd), the dropped fp32 copies [n, T, D] are
// written, read by the GEMM, kept for the backward, read again there and their gradient
// written and read: here nothing of width D but x itself is read or written in fp32.
// p = 0 means no dropout (no hash, scale 1). All three kernels take blocks of 256 threads and
// need r ≤ 128 and n·r ≤ 128.
#define T2S_LORA_THREADS 256
#define T2S_LORA_MAX_R 128

// fp32(x[t][d]) · scale where copy c keeps (t, d), else 0; 0 outside [0, T) × [0, D).
__device__ __forceinline__ float lora_dropped(const bf16_t* __restrict__ x, long long T, int D,
                                              int c, long long t, int d,
                                              unsigned long long seed, float p, float scale) {
  if (t >= T || d >= D) return 0.0f;
  const long long i = t * D + d;
  if (p > 0.0f &&
      !lora_keep(seed, (unsigned long long)c * (unsigned long long)(T * D) + i, p))
    return 0.0f;
  return bf2f(x[i]) * scale;
}

// u [n, T, r]. Grid (ceil(T / 64), n): a block takes 64 tokens of adapter blockIdx.y and all
// r outputs, stepping through D 32 columns at a time (the masked x tile and the A tile in
// shared memory). Thread i owns token i % 64 and outputs i / 64 + 4k.
extern "C" __global__ void t2s_lora_down_fwd(const bf16_t* __restrict__ x, long long T, int D,
                                             int r, const float* __restrict__ A,
                                             unsigned long long seed, float p, float scale,
                                             float* __restrict__ u) {
  __shared__ float xs[64][33];
  __shared__ float as[T2S_LORA_MAX_R][33];
  const int c = blockIdx.y, tid = threadIdx.x;
  const long long t0 = (long long)blockIdx.x * 64;
  const int tok = tid % 64, j0 = tid / 64;
  const float* Ac = A + (long long)c * r * D;
  float acc[T2S_LORA_MAX_R / 4];
#pragma unroll
  for (int k = 0; k < T2S_LORA_MAX_R / 4; ++k) acc[k] = 0.0f;
  for (int d0 = 0; d0 < D; d0 += 32) {
    for (int e = tid; e < 64 * 32; e += T2S_LORA_THREADS)
      xs[e / 32][e % 32] = lora_dropped(x, T, D, c, t0 + e / 32, d0 + e % 32, seed, p, scale);
    for (int e = tid; e < r * 32; e += T2S_LORA_THREADS) {
      const int d = d0 + e % 32;
      as[e / 32][e % 32] = d < D ? Ac[(long long)(e / 32) * D + d] : 0.0f;
    }
    __syncthreads();
    for (int kk = 0; kk < 32; ++kk) {
      const float xv = xs[tok][kk];
#pragma unroll
      for (int k = 0; k < T2S_LORA_MAX_R / 4; ++k)
        if (j0 + 4 * k < r) acc[k] += xv * as[j0 + 4 * k][kk];
    }
    __syncthreads();
  }
  const long long t = t0 + tok;
  if (t < T) {
#pragma unroll
    for (int k = 0; k < T2S_LORA_MAX_R / 4; ++k)
      if (j0 + 4 * k < r) u[((long long)c * T + t) * r + j0 + 4 * k] = acc[k];
  }
}

// dx [T, D] = bf16(Σ_c keep_c ⊙ (du[c] · A[c]) · scale) for du [n, T, r]: the gradient of x
// through every adapter, summed and rounded once (unfused: the GEMM's fp32 gradient of the
// copies, the dropout backward, a sum over the copies and a cast). Grid (ceil(T / 32),
// ceil(D / 32)); thread i owns column i % 32 of tokens i / 32 + 8k.
extern "C" __global__ void t2s_lora_down_dx(const float* __restrict__ du,
                                            const float* __restrict__ A, long long T, int D,
                                            int n, int r, unsigned long long seed, float p,
                                            float scale, bf16_t* __restrict__ dx) {
  __shared__ float us[32][T2S_LORA_MAX_R + 1];
  __shared__ float as[T2S_LORA_MAX_R][32];
  const int tid = threadIdx.x, nr = n * r;
  const long long t0 = (long long)blockIdx.x * 32;
  const int d0 = blockIdx.y * 32, col = tid % 32;
  for (int e = tid; e < 32 * nr; e += T2S_LORA_THREADS) {
    const int tt = e / nr, q = e % nr;
    const long long t = t0 + tt;
    us[tt][q] = t < T ? du[((long long)(q / r) * T + t) * r + q % r] : 0.0f;
  }
  for (int e = tid; e < nr * 32; e += T2S_LORA_THREADS) {
    const int d = d0 + e % 32;
    as[e / 32][e % 32] = d < D ? A[(long long)(e / 32) * D + d] : 0.0f;
  }
  __syncthreads();
  const int d = d0 + col;
  for (int k = 0; k < 4; ++k) {
    const int tt = tid / 32 + 8 * k;
    const long long t = t0 + tt;
    if (t >= T || d >= D) continue;
    float s = 0.0f;
    for (int c = 0; c < n; ++c) {
      float g = 0.0f;
      for (int j = 0; j < r; ++j) g += us[tt][c * r + j] * as[c * r + j][col];
      const unsigned long long idx =
          (unsigned long long)c * (unsigned long long)(T * D) + (unsigned long long)(t * D + d);
      if (p <= 0.0f || lora_keep(seed, idx, p)) s += g * scale;
    }
    dx[t * D + d] = f2bf(s);
  }
}

// The gradient of A, per split of the tokens: partial [S, n, r, D] with
// partial[s][c] = Σ over tokens [s·span, (s+1)·span) of du[c][t]ᵀ ⊗ (keep_c ⊙ fp32(x[t]) ·
// scale); the caller sums over s (a fixed order: deterministic, no atomics). Grid (ceil(D /
// 64), n, S); thread i owns column i % 64 and rows i / 64 + 4k.
extern "C" __global__ void t2s_lora_down_da(const float* __restrict__ du,
                                            const bf16_t* __restrict__ x, long long T, int D,
                                            int r, long long span, unsigned long long seed,
                                            float p, float scale, float* __restrict__ partial) {
  __shared__ float xs[32][64];
  __shared__ float us[32][T2S_LORA_MAX_R + 1];
  const int c = blockIdx.y, tid = threadIdx.x, n = gridDim.y;
  const long long s = blockIdx.z;
  const int d0 = blockIdx.x * 64, col = tid % 64, j0 = tid / 64;
  const long long t_begin = s * span;
  const long long t_end = t_begin + span < T ? t_begin + span : T;
  float acc[T2S_LORA_MAX_R / 4];
#pragma unroll
  for (int k = 0; k < T2S_LORA_MAX_R / 4; ++k) acc[k] = 0.0f;
  for (long long t0 = t_begin; t0 < t_end; t0 += 32) {
    for (int e = tid; e < 32 * 64; e += T2S_LORA_THREADS) {
      const long long t = t0 + e / 64;
      xs[e / 64][e % 64] = t < t_end ? lora_dropped(x, T, D, c, t, d0 + e % 64, seed, p, scale)
                                     : 0.0f;
    }
    for (int e = tid; e < 32 * r; e += T2S_LORA_THREADS) {
      const long long t = t0 + e / r;
      us[e / r][e % r] = t < t_end ? du[((long long)c * T + t) * r + e % r] : 0.0f;
    }
    __syncthreads();
    for (int tt = 0; tt < 32; ++tt) {
      const float xv = xs[tt][col];
#pragma unroll
      for (int k = 0; k < T2S_LORA_MAX_R / 4; ++k)
        if (j0 + 4 * k < r) acc[k] += us[tt][j0 + 4 * k] * xv;
    }
    __syncthreads();
  }
  const int d = d0 + col;
  if (d < D) {
#pragma unroll
    for (int k = 0; k < T2S_LORA_MAX_R / 4; ++k)
      if (j0 + 4 * k < r) partial[((s * n + c) * r + j0 + 4 * k) * D + d] = acc[k];
  }
}

// --- LoRA up-projection into the bf16 output ------------------------------------------------
// For n adapters whose outputs sit side by side in y [T, O] (the fused q/k/v projection),
// adapter c owning columns [off[c], off[c + 1]): out = bf16(fp32(y) + u[c] · B[c]ᵀ) with u
// [n, T, r] fp32 (already scaled) and B the adapters' [out_c, r] matrices stacked [O, r].
// Unfused: each adapter's fp32 delta [T, out_c] written, concatenated, read by the add; in the
// backward the output's gradient cast to an fp32 copy that both GEMMs read. Here only y (in)
// and out are read and written forward, and the bf16 gradient read twice back.
struct LoraParts {
  int off[5];  // n ≤ 4 adapters: off[0] = 0, off[n] = O
};

__device__ __forceinline__ int lora_part(const LoraParts& parts, int n, int o) {
  int c = 0;
  while (c + 1 < n && o >= parts.off[c + 1]) ++c;
  return c;
}

// out [T, O]. Grid (ceil(T / 32), ceil(O / 32)); thread i owns column i % 32 of tokens
// i / 32 + 8k.
extern "C" __global__ void t2s_lora_up_fwd(const bf16_t* __restrict__ y,
                                           const float* __restrict__ u,
                                           const float* __restrict__ B, long long T, int O,
                                           int n, int r, LoraParts parts,
                                           bf16_t* __restrict__ out) {
  __shared__ float us[32][T2S_LORA_MAX_R + 1];
  __shared__ float bs[32][T2S_LORA_MAX_R + 1];
  const int tid = threadIdx.x, nr = n * r;
  const long long t0 = (long long)blockIdx.x * 32;
  const int o0 = blockIdx.y * 32, col = tid % 32;
  for (int e = tid; e < 32 * nr; e += T2S_LORA_THREADS) {
    const int tt = e / nr, q = e % nr;
    const long long t = t0 + tt;
    us[tt][q] = t < T ? u[((long long)(q / r) * T + t) * r + q % r] : 0.0f;
  }
  for (int e = tid; e < 32 * r; e += T2S_LORA_THREADS) {
    const int o = o0 + e / r;
    bs[e / r][e % r] = o < O ? B[(long long)o * r + e % r] : 0.0f;
  }
  __syncthreads();
  const int o = o0 + col;
  if (o >= O) return;
  const int c = lora_part(parts, n, o);
  for (int k = 0; k < 4; ++k) {
    const int tt = tid / 32 + 8 * k;
    const long long t = t0 + tt;
    if (t >= T) continue;
    float s = 0.0f;
    for (int j = 0; j < r; ++j) s += us[tt][c * r + j] * bs[col][j];
    out[t * O + o] = f2bf(bf2f(y[t * O + o]) + s);
  }
}

// du [n, T, r] = fp32(g[:, off[c]:off[c + 1]]) · B[c] for the output's gradient g [T, O].
// Grid (ceil(T / 64), n): as t2s_lora_down_fwd, over adapter c's columns.
extern "C" __global__ void t2s_lora_up_du(const bf16_t* __restrict__ g,
                                          const float* __restrict__ B, long long T, int O, int r,
                                          LoraParts parts, float* __restrict__ du) {
  __shared__ float gs[64][33];
  __shared__ float bs[T2S_LORA_MAX_R][33];
  const int c = blockIdx.y, tid = threadIdx.x;
  const long long t0 = (long long)blockIdx.x * 64;
  const int tok = tid % 64, j0 = tid / 64;
  const int lo = parts.off[c], hi = parts.off[c + 1];
  float acc[T2S_LORA_MAX_R / 4];
#pragma unroll
  for (int k = 0; k < T2S_LORA_MAX_R / 4; ++k) acc[k] = 0.0f;
  for (int k0 = lo; k0 < hi; k0 += 32) {
    for (int e = tid; e < 64 * 32; e += T2S_LORA_THREADS) {
      const long long t = t0 + e / 32;
      const int o = k0 + e % 32;
      gs[e / 32][e % 32] = t < T && o < hi ? bf2f(g[t * O + o]) : 0.0f;
    }
    for (int e = tid; e < r * 32; e += T2S_LORA_THREADS) {
      const int o = k0 + e / r;
      bs[e % r][e / r] = o < hi ? B[(long long)o * r + e % r] : 0.0f;
    }
    __syncthreads();
    for (int kk = 0; kk < 32; ++kk) {
      const float gv = gs[tok][kk];
#pragma unroll
      for (int k = 0; k < T2S_LORA_MAX_R / 4; ++k)
        if (j0 + 4 * k < r) acc[k] += gv * bs[j0 + 4 * k][kk];
    }
    __syncthreads();
  }
  const long long t = t0 + tok;
  if (t < T) {
#pragma unroll
    for (int k = 0; k < T2S_LORA_MAX_R / 4; ++k)
      if (j0 + 4 * k < r) du[((long long)c * T + t) * r + j0 + 4 * k] = acc[k];
  }
}

// The gradient of B per split of the tokens: partial [S, O, r] with partial[s][o] = Σ over
// tokens [s·span, (s+1)·span) of fp32(g[t][o]) · u[c(o)][t]; the caller sums over s. Grid
// (ceil(O / 64), 1, S); thread i owns column i % 64 and ranks i / 64 + 4k.
extern "C" __global__ void t2s_lora_up_db(const bf16_t* __restrict__ g,
                                          const float* __restrict__ u, long long T, int O, int n,
                                          int r, LoraParts parts, long long span,
                                          float* __restrict__ partial) {
  __shared__ float gs[32][64];
  __shared__ float us[32][T2S_LORA_MAX_R + 1];
  const int tid = threadIdx.x, nr = n * r;
  const long long s = blockIdx.z;
  const int o0 = blockIdx.x * 64, col = tid % 64, j0 = tid / 64;
  const int o = o0 + col;
  const int c = lora_part(parts, n, o < O ? o : O - 1);
  const long long t_begin = s * span;
  const long long t_end = t_begin + span < T ? t_begin + span : T;
  float acc[T2S_LORA_MAX_R / 4];
#pragma unroll
  for (int k = 0; k < T2S_LORA_MAX_R / 4; ++k) acc[k] = 0.0f;
  for (long long t0 = t_begin; t0 < t_end; t0 += 32) {
    for (int e = tid; e < 32 * 64; e += T2S_LORA_THREADS) {
      const long long t = t0 + e / 64;
      const int oo = o0 + e % 64;
      gs[e / 64][e % 64] = t < t_end && oo < O ? bf2f(g[t * O + oo]) : 0.0f;
    }
    for (int e = tid; e < 32 * nr; e += T2S_LORA_THREADS) {
      const int tt = e / nr, q = e % nr;
      const long long t = t0 + tt;
      us[tt][q] = t < t_end ? u[((long long)(q / r) * T + t) * r + q % r] : 0.0f;
    }
    __syncthreads();
    for (int tt = 0; tt < 32; ++tt) {
      const float gv = gs[tt][col];
#pragma unroll
      for (int k = 0; k < T2S_LORA_MAX_R / 4; ++k)
        if (j0 + 4 * k < r) acc[k] += us[tt][c * r + j0 + 4 * k] * gv;
    }
    __syncthreads();
  }
  if (o < O) {
#pragma unroll
    for (int k = 0; k < T2S_LORA_MAX_R / 4; ++k)
      if (j0 + 4 * k < r) partial[(s * O + o) * r + j0 + 4 * k] = acc[k];
  }
}
