// Fused CUDA kernels for the Gemma-3 training and decoding step (csrc/fused_kernels.cu,
// compiled at run time and launched on libtorch's current stream by jit.cpp), each wrapped in
// a libtorch autograd Function, and the C entry points fused.rs calls:
//
//   * Gemma RMSNorm with bf16 input/output and fp32 math: y = bf16((x * rstd) * (1 + w)),
//     optionally followed by the residual add bf16(res + y); per-head weights for the q/k norms
//     of a strided [tokens, heads, D] view. One kernel forward, one backward (the unfused
//     chain is cast, norm, cast, add: four kernels each way and fp32 copies of the input).
//   * The q/k norms and RoPE after them in one kernel each way (unfused: the norm chain, then
//     mul, roll and addcmul forward and five kernels back).
//   * The cross-entropy of a chunk of logits with its gradient, in place (two passes over the
//     logits instead of log_softmax, gather, softmax and scatter-add; not autograd: the
//     chunked loss computes its gradient itself).
//   * The tanh-GELU gate of the MLP, gelu(gate) * up, read straight from the fused gate/up
//     projection [tokens, 2I]: one kernel forward, and one backward that writes the gradient
//     of both halves (unfused: gelu, mul, then mul, mul, gelu-backward and a concatenation).
//   * LoRA dropout: the bf16 input read once into the fp32 dropped copies the adapters sharing
//     it multiply (unfused: a cast, then a dropout over the expanded copies that writes a mask),
//     and back the masked sum over the copies, cast to bf16, with the masks regenerated from a
//     seed (unfused: dropout backward, a sum, a cast).
//   * The LoRA down-projection u = A · dropout(x) of the adapters sharing a bf16 input, read
//     straight from it with the masks applied on the fly (drawn once as bits, 1/16 of x's
//     size per adapter): no fp32 copy of x is written, kept or read, forward or backward (a
//     mask kernel and one kernel forward, two back: the input's gradient summed over the
//     adapters in bf16, and A's per split of the tokens), and the up-projection
//     bf16(y + u · Bᵀ) into the base output without the fp32 deltas (one kernel forward; back,
//     u's gradient and B's per split of the tokens, both from the bf16 output gradient).
//
// Every rounding step of the unfused bf16 program is kept (bf16 after gelu, after the norm,
// after the residual add), so results equal libtorch's up to fp32 summation order. The kernels
// are compiled once per device (or loaded from fused.rs's disk cache); `t2s_fused_compile`
// compiles them without a device (a CPU machine can still check that the source is valid CUDA).
#include <ATen/ATen.h>
#include <torch/csrc/autograd/custom_function.h>

#include "guarded.h"
#include "jit.h"

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <initializer_list>
#include <new>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

using t2s::jit::DeviceGuard;
using t2s::jit::Kernel;
using t2s::jit::launch;

void check_bf16_cuda(const at::Tensor& t, const char* name) {
  TORCH_CHECK(t.is_cuda(), name, " must be a CUDA tensor");
  TORCH_CHECK(t.scalar_type() == at::kBFloat16, name, " must be bfloat16, got ",
              t.scalar_type());
}

// `x` as rows of D = x.size(-1) with `heads` rows per token: the last dim contiguous, the head
// dim (when heads > 1) of stride D, and the leading dims one uniform token stride. Returns
// the tensor to read (x itself, or a contiguous copy) and that token stride.
std::pair<at::Tensor, int64_t> as_rows(const at::Tensor& x, int64_t heads) {
  TORCH_CHECK(x.dim() >= (heads > 1 ? 2 : 1), "rms_norm input has too few dims: ", x.sizes());
  const int64_t D = x.size(-1);
  const int64_t lead = x.dim() - (heads > 1 ? 2 : 1);
  bool ok = x.stride(-1) == 1 && (heads == 1 || (x.size(-2) == heads && x.stride(-2) == D));
  int64_t tok_stride = heads * D;
  if (ok && lead > 0) {
    tok_stride = x.stride(lead - 1);
    for (int64_t d = 0; d + 1 < lead; ++d)
      ok &= x.size(d) == 1 || x.stride(d) == x.stride(d + 1) * x.size(d + 1);
  }
  if (ok) return {x, tok_stride};
  return {x.contiguous(), heads * D};
}

int norm_threads(int64_t D) { return D >= 1024 ? 256 : (D >= 512 ? 128 : 64); }

struct GemmaRmsNorm : public torch::autograd::Function<GemmaRmsNorm> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x,
                            const at::Tensor& w, const at::Tensor& res, bool has_res,
                            int64_t heads, double eps) {
    check_bf16_cuda(x, "rms_norm input");
    TORCH_CHECK(w.scalar_type() == at::kFloat && w.is_contiguous() && w.device() == x.device(),
                "rms_norm weight must be a contiguous fp32 tensor on the input's device");
    const int64_t D = x.size(-1);
    const int64_t w_heads = w.numel() / D;
    TORCH_CHECK(w.numel() == w_heads * D && (w_heads == 1 || w_heads == heads),
                "rms_norm weight has ", w.numel(), " values, expected ", D, " or ", heads * D);
    DeviceGuard guard(x.device());
    auto [xr, tok_stride] = as_rows(x, heads);
    const int64_t rows = x.numel() / D;
    auto y = at::empty(x.sizes(), x.options());
    auto rstd = at::empty({rows}, x.options().dtype(at::kFloat));
    at::Tensor r;
    if (has_res) {
      check_bf16_cuda(res, "rms_norm residual");
      TORCH_CHECK(res.numel() == x.numel(), "residual and input differ in size");
      r = res.contiguous();
    }
    if (rows > 0) {
      const void* xp = xr.data_ptr();
      const void* wp = w.data_ptr();
      const void* rp = r.defined() ? r.data_ptr() : nullptr;
      void* yp = y.data_ptr();
      void* sp = rstd.data_ptr();
      long long xt = tok_stride;
      int wh = static_cast<int>(w_heads), h = static_cast<int>(heads), d = static_cast<int>(D);
      float e = static_cast<float>(eps);
      void* args[] = {&xp, &xt, &wp, &wh, &rp, &yp, &sp, &h, &d, &e};
      launch(x, Kernel::RmsFwd, dim3(static_cast<unsigned>(rows)), dim3(norm_threads(D)), args);
    }
    ctx->save_for_backward({xr, w, rstd});
    ctx->saved_data["heads"] = heads;
    ctx->saved_data["tok_stride"] = tok_stride;
    ctx->saved_data["has_res"] = has_res;
    return y;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const at::Tensor& x = saved[0];
    const at::Tensor& w = saved[1];
    const at::Tensor& rstd = saved[2];
    const int64_t heads = ctx->saved_data["heads"].toInt();
    const int64_t D = x.size(-1);
    DeviceGuard guard(x.device());
    const at::Tensor none;
    if (!grads[0].defined()) return {none, none, none, none, none, none};
    const at::Tensor g = grads[0].to(at::kBFloat16).contiguous();
    auto dx = at::empty(x.sizes(), g.options());
    const int64_t rows = rstd.numel();
    if (rows > 0) {
      const void* gp = g.data_ptr();
      const void* xp = x.data_ptr();
      const void* wp = w.data_ptr();
      const void* sp = rstd.data_ptr();
      void* dp = dx.data_ptr();
      long long xt = ctx->saved_data["tok_stride"].toInt();
      int wh = static_cast<int>(w.numel() / D), h = static_cast<int>(heads);
      int d = static_cast<int>(D);
      void* args[] = {&gp, &xp, &xt, &wp, &wh, &sp, &dp, &h, &d};
      launch(x, Kernel::RmsBwd, dim3(static_cast<unsigned>(rows)), dim3(norm_threads(D)), args);
    }
    const bool has_res = ctx->saved_data["has_res"].toBool();
    return {dx, none, has_res ? grads[0] : none, none, none, none};
  }
};

// The q/k norms then RoPE (t2s_qk_rope_*): `x: [..., heads, D]` as in GemmaRmsNorm, `cos`
// and `sin` bf16 with one row of D per token (`[..., 1, D]`, the sign of rotate_half in sin).
struct QkNormRope : public torch::autograd::Function<QkNormRope> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x,
                            const at::Tensor& w, const at::Tensor& cos, const at::Tensor& sin,
                            int64_t heads, double eps) {
    check_bf16_cuda(x, "q/k input");
    check_bf16_cuda(cos, "RoPE cos");
    check_bf16_cuda(sin, "RoPE sin");
    const int64_t D = x.size(-1);
    TORCH_CHECK(D % 2 == 0, "RoPE needs an even head dim, got ", D);
    TORCH_CHECK(w.scalar_type() == at::kFloat && w.is_contiguous() && w.numel() == heads * D,
                "q/k norm weight must be contiguous fp32 [heads, D]");
    const int64_t rows = x.numel() / D, tokens = rows / heads;
    TORCH_CHECK(cos.numel() == tokens * D && sin.numel() == tokens * D,
                "RoPE tables must hold one row of ", D, " per token (", tokens, " tokens)");
    DeviceGuard guard(x.device());
    auto [xr, tok_stride] = as_rows(x, heads);
    const at::Tensor c = cos.contiguous(), sn = sin.contiguous();
    auto y = at::empty(x.sizes(), x.options());
    auto rstd = at::empty({rows}, x.options().dtype(at::kFloat));
    if (rows > 0) {
      const void* xp = xr.data_ptr();
      const void* wp = w.data_ptr();
      const void* cp = c.data_ptr();
      const void* sp = sn.data_ptr();
      void* yp = y.data_ptr();
      void* rp = rstd.data_ptr();
      long long xt = tok_stride;
      int wh = static_cast<int>(heads), h = static_cast<int>(heads), d = static_cast<int>(D);
      float e = static_cast<float>(eps);
      void* args[] = {&xp, &xt, &wp, &wh, &cp, &sp, &yp, &rp, &h, &d, &e};
      launch(x, Kernel::QkRopeFwd, dim3(static_cast<unsigned>(rows)), dim3(norm_threads(D)), args);
    }
    ctx->save_for_backward({xr, w, c, sn, rstd});
    ctx->saved_data["heads"] = heads;
    ctx->saved_data["tok_stride"] = tok_stride;
    return y;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    if (!grads[0].defined()) return {at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(),
                                     at::Tensor(), at::Tensor()};
    const auto saved = ctx->get_saved_variables();
    const at::Tensor &x = saved[0], &w = saved[1], &c = saved[2], &sn = saved[3],
                     &rstd = saved[4];
    const int64_t heads = ctx->saved_data["heads"].toInt();
    const int64_t D = x.size(-1);
    DeviceGuard guard(x.device());
    const at::Tensor g = grads[0].to(at::kBFloat16).contiguous();
    auto dx = at::empty(x.sizes(), g.options());
    const int64_t rows = rstd.numel();
    if (rows > 0) {
      const void* gp = g.data_ptr();
      const void* xp = x.data_ptr();
      const void* wp = w.data_ptr();
      const void* cp = c.data_ptr();
      const void* snp = sn.data_ptr();
      const void* rp = rstd.data_ptr();
      void* dp = dx.data_ptr();
      long long xt = ctx->saved_data["tok_stride"].toInt();
      int wh = static_cast<int>(heads), h = static_cast<int>(heads), d = static_cast<int>(D);
      void* args[] = {&gp, &xp, &xt, &wp, &wh, &cp, &snp, &rp, &dp, &h, &d};
      launch(x, Kernel::QkRopeBwd, dim3(static_cast<unsigned>(rows)), dim3(norm_threads(D)), args);
    }
    return {dx, at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

// Whether 16-byte accesses fit: the row width a multiple of 8 bf16 and every pointer aligned.
bool vec8(int64_t width, std::initializer_list<const void*> ptrs) {
  if (width % 8 != 0) return false;
  for (const void* p : ptrs)
    if (reinterpret_cast<uintptr_t>(p) % 16 != 0) return false;
  return true;
}

dim3 gate_grid(int64_t rows, int64_t I, int threads, bool vec) {
  const int64_t per_block = static_cast<int64_t>(threads) * (vec ? 8 : 1);
  const auto cols = static_cast<unsigned>((I + per_block - 1) / per_block);
  return dim3(cols, static_cast<unsigned>(std::min<int64_t>(std::max<int64_t>(rows, 1), 65535)));
}

struct GeluGate : public torch::autograd::Function<GeluGate> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& gu) {
    check_bf16_cuda(gu, "gelu gate input");
    const int64_t two_i = gu.size(-1);
    TORCH_CHECK(two_i % 2 == 0, "gelu gate input's last dim must be even, got ", two_i);
    DeviceGuard guard(gu.device());
    const at::Tensor x = gu.contiguous();
    const int64_t I = two_i / 2, rows = x.numel() / two_i;
    auto sizes = x.sizes().vec();
    sizes.back() = I;
    auto out = at::empty(sizes, x.options());
    if (rows > 0 && I > 0) {
      const void* xp = x.data_ptr();
      void* op = out.data_ptr();
      long long r = rows;
      int i = static_cast<int>(I);
      const bool vec = vec8(I, {xp, op});
      int v = vec ? 1 : 0;
      void* args[] = {&xp, &r, &i, &op, &v};
      launch(x, Kernel::GeluGateFwd, gate_grid(rows, I, 256, vec), dim3(256), args);
    }
    ctx->save_for_backward({x});
    return out;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const at::Tensor x = ctx->get_saved_variables()[0];
    if (!grads[0].defined()) return {at::Tensor()};
    DeviceGuard guard(x.device());
    const at::Tensor g = grads[0].to(at::kBFloat16).contiguous();
    const int64_t two_i = x.size(-1), I = two_i / 2, rows = x.numel() / two_i;
    auto dx = at::empty(x.sizes(), x.options());
    if (rows > 0 && I > 0) {
      const void* gp = g.data_ptr();
      const void* xp = x.data_ptr();
      void* dp = dx.data_ptr();
      long long r = rows;
      int i = static_cast<int>(I);
      const bool vec = vec8(I, {gp, xp, dp});
      int v = vec ? 1 : 0;
      void* args[] = {&gp, &xp, &r, &i, &dp, &v};
      launch(x, Kernel::GeluGateBwd, gate_grid(rows, I, 256, vec), dim3(256), args);
    }
    return {dx};
  }
};

// LoRA dropout over `copies` fp32 copies of a bf16 input (t2s_lora_drop_*): out [copies,
// ...x.shape] fp32, each copy with its own mask drawn from `seed`. Nothing is saved for the
// backward but the seed: the masks are regenerated there.
struct LoraDropout : public torch::autograd::Function<LoraDropout> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x,
                            int64_t copies, double p, int64_t seed) {
    check_bf16_cuda(x, "LoRA dropout input");
    TORCH_CHECK(copies >= 1, "LoRA dropout needs at least one copy, got ", copies);
    TORCH_CHECK(p > 0.0 && p < 1.0, "LoRA dropout probability must be in (0, 1), got ", p);
    DeviceGuard guard(x.device());
    const at::Tensor xc = x.contiguous();
    auto sizes = xc.sizes().vec();
    sizes.insert(sizes.begin(), copies);
    auto out = at::empty(sizes, xc.options().dtype(at::kFloat));
    launch_drop(xc, Kernel::LoraDropFwd, xc.data_ptr(), out.data_ptr(), xc.sizes().vec(), copies,
                p, seed);
    ctx->saved_data["copies"] = copies;
    ctx->saved_data["p"] = p;
    ctx->saved_data["seed"] = seed;
    ctx->saved_data["sizes"] = xc.sizes().vec();
    return out;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    if (!grads[0].defined()) return {at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
    const at::Tensor g = grads[0].to(at::kFloat).contiguous();
    DeviceGuard guard(g.device());
    const auto sizes = ctx->saved_data["sizes"].toIntVector();
    auto dx = at::empty(sizes, g.options().dtype(at::kBFloat16));
    launch_drop(g, Kernel::LoraDropBwd, g.data_ptr(), dx.data_ptr(), sizes,
                ctx->saved_data["copies"].toInt(), ctx->saved_data["p"].toDouble(),
                ctx->saved_data["seed"].toInt());
    return {dx, at::Tensor(), at::Tensor(), at::Tensor()};
  }

  // Both kernels: (in, rows, D, copies, seed, p, scale, out) over x's shape `sizes` as rows of
  // its last dim D: blocks stride over the rows, threads over the columns.
  static void launch_drop(const at::Tensor& on, Kernel k, const void* in, void* out,
                          const std::vector<int64_t>& sizes, int64_t copies, double p,
                          int64_t seed) {
    int64_t numel = 1;
    for (int64_t v : sizes) numel *= v;
    const int64_t width = sizes.empty() ? 1 : sizes.back();
    if (numel == 0) return;
    long long rows = numel / width;
    int D = static_cast<int>(width);
    int c = static_cast<int>(copies);
    unsigned long long s = static_cast<unsigned long long>(seed);
    float pf = static_cast<float>(p);
    float scale = static_cast<float>(1.0 / (1.0 - p));
    void* args[] = {&in, &rows, &D, &c, &s, &pf, &scale, &out};
    const int64_t blocks = std::min<int64_t>(rows, int64_t{1} << 20);
    launch(on, k, dim3(static_cast<unsigned>(blocks)), dim3(256), args);
  }
};

// Geometry of the LoRA kernels (csrc/fused_kernels.cu): blocks of 256 threads; a row reduction
// (the down-projection forward, the up-projection's u gradient) takes lora_row_tokens(r) tokens
// a block, an outer sum (A's and B's gradients) as many columns, in splits the host adds.
struct LoraGeometry {
  static constexpr int64_t kMaxRank = 128;  // T2S_LORA_MAX_R
  // The most columns / tokens a block reduces over (a split), and the fewest the host sizes a
  // split to.
  static constexpr int64_t kMaxSplit = 256;
  static constexpr int64_t kMinSplit = 32;
  // Blocks of 256 threads a multiprocessor could hold by its 2,048 threads. The LoRA kernels'
  // registers allow 2 to 6 (bench/kernel_registers.py), so a grid of this many blocks per
  // multiprocessor is one or more full waves.
  static constexpr int64_t kBlocksPerMultiprocessor = 8;

  // lora_row_tokens: 4 a thread, the threads in groups of 4 outputs (at least 4 groups, a
  // power of two).
  static int64_t row_tokens(int64_t r) {
    int64_t groups = 4;
    while (groups * 4 < r) groups *= 2;
    return 4 * (256 / groups);
  }

  static unsigned blocks(int64_t extent, int64_t tile) {
    return static_cast<unsigned>((extent + tile - 1) / tile);
  }

  static int64_t splits(int64_t extent, int64_t per_split) {
    return (extent + per_split - 1) / per_split;
  }

  // The split (columns or tokens a block reduces over, a multiple of 16 in [kMinSplit,
  // kMaxSplit]) of a reduction over `extent` whose grid has `blocks_per_split` blocks a split:
  // kMaxSplit unless that gives fewer than kBlocksPerMultiprocessor blocks a multiprocessor.
  // The H200 showed why: at batch 8 × 512 the fixed 256 gave A's gradient 240 blocks for
  // q/k/v (64 for o) on 132 multiprocessors, and it took 59% of the time 4× the tokens took.
  // T2S_LORA_SPLIT=<n> (a multiple of 16, 16 to 256) fixes every split at n instead: to
  // measure the sizing against the fixed split it replaced (256).
  // `on`: a tensor on the GPU that runs the grid.
  static int64_t split(int64_t extent, int64_t blocks_per_split, const at::Tensor& on) {
    if (const int64_t fixed = fixed_split(); fixed > 0) return fixed;
    const int64_t wave = kBlocksPerMultiprocessor * t2s::jit::multiprocessors(on);
    const int64_t want =
        std::max<int64_t>(1, splits(wave, std::max<int64_t>(1, blocks_per_split)));
    const int64_t per = (splits(extent, want) + 15) / 16 * 16;
    return std::clamp(per, kMinSplit, kMaxSplit);
  }

  // T2S_LORA_SPLIT's value, 0 when unset or empty (read once).
  static int64_t fixed_split() {
    static const int64_t value = [] {
      const char* env = std::getenv("T2S_LORA_SPLIT");
      if (env == nullptr || *env == '\0') return int64_t{0};
      char* end = nullptr;
      const long long v = std::strtoll(env, &end, 10);
      TORCH_CHECK(*end == '\0' && v >= 16 && v <= kMaxSplit && v % 16 == 0, "T2S_LORA_SPLIT=",
                  env, ": expected a multiple of 16 from 16 to ", kMaxSplit);
      return static_cast<int64_t>(v);
    }();
    return value;
  }
};

// The LoRA down-projection of a bf16 input shared by n adapters (t2s_lora_down_*): u [n, T, r]
// fp32 with u[c] = (keep_c ⊙ fp32(x) / (1 − p)) · A[c]ᵀ, x viewed as [T, D] and A [n, r, D]
// fp32 (p = 0: no dropout). The masks are those LoraDropout draws from the same seed, drawn
// once as bits [n, T, ceil(D / 32)] (t2s_lora_mask) that the forward and both backward
// kernels read. Saved for the backward: x in bf16, A and the bits (1/16 of x's size for each
// adapter), not the dropped fp32 copies [n, T, D] the unfused program keeps.
struct LoraDown : public torch::autograd::Function<LoraDown> {
  using G = LoraGeometry;

  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x,
                            const at::Tensor& a, double p, int64_t seed) {
    check_bf16_cuda(x, "LoRA down-projection input");
    TORCH_CHECK(a.dim() == 3 && a.scalar_type() == at::kFloat && a.device() == x.device(),
                "LoRA A matrices must be fp32 [n, r, D] on the input's device, got ",
                a.scalar_type(), " ", a.sizes());
    const int64_t D = x.size(-1), n = a.size(0), r = a.size(1);
    TORCH_CHECK(a.size(2) == D, "LoRA A matrices are ", a.sizes(), " for an input of width ", D);
    TORCH_CHECK(n >= 1 && r >= 1 && n * r <= G::kMaxRank,
                "the fused LoRA down-projection takes n · r <= ", G::kMaxRank, ", got n ", n,
                ", r ", r);
    TORCH_CHECK(p >= 0.0 && p < 1.0, "LoRA dropout probability must be in [0, 1), got ", p);
    DeviceGuard guard(x.device());
    const at::Tensor xc = x.contiguous().view({-1, D});
    const at::Tensor ac = a.contiguous();
    const int64_t T = xc.size(0);
    at::Tensor u;
    // No dropout: an empty placeholder (autograd's saved tensors and apply want defined ones).
    at::Tensor bits = at::empty({0}, xc.options().dtype(at::kInt));
    if (T > 0 && D > 0) {
      Args l(p, seed, T, D, n, r);
      if (p > 0.0) bits = draw_bits(xc, n, p, seed);
      const unsigned token_blocks = G::blocks(T, G::row_tokens(r));
      int split = static_cast<int>(G::split(D, token_blocks * n, xc));
      const int64_t S = G::splits(D, split);
      auto partial = at::empty({S, n, T, r}, xc.options().dtype(at::kFloat));
      const void* xp = xc.data_ptr();
      const void* ap = ac.data_ptr();
      const void* bp = mask_bits(bits);
      void* pp = partial.data_ptr();
      void* args[] = {&xp, &l.T, &l.D, &l.r, &ap, &bp, &l.W, &l.scale, &split, &pp};
      launch(xc, Kernel::LoraDownFwd,
             dim3(token_blocks, static_cast<unsigned>(n), static_cast<unsigned>(S)), dim3(256),
             args);
      u = partial.sum(0);
    } else {
      u = at::zeros({n, T, r}, xc.options().dtype(at::kFloat));
    }
    ctx->save_for_backward({xc, ac, bits});
    ctx->saved_data["p"] = p;
    ctx->saved_data["sizes"] = x.sizes().vec();
    return u;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const at::Tensor none;
    if (!grads[0].defined()) return {none, none, none, none};
    const auto saved = ctx->get_saved_variables();
    const at::Tensor &xc = saved[0], &ac = saved[1], &bits = saved[2];
    const at::Tensor du = grads[0].to(at::kFloat).contiguous();
    DeviceGuard guard(du.device());
    const int64_t T = xc.size(0), D = xc.size(1), n = ac.size(0), r = ac.size(1);
    Args l(ctx->saved_data["p"].toDouble(), 0, T, D, n, r);
    const void* dup = du.data_ptr();
    const void* bp = mask_bits(bits);
    at::Tensor dx, da;
    if (ctx->needs_input_grad(0)) {
      // Every element is written by the kernel (or there are none).
      dx = at::empty({T, D}, xc.options());
      if (T > 0 && D > 0) {
        const void* ap = ac.data_ptr();
        void* dxp = dx.data_ptr();
        void* args[] = {&dup, &ap, &l.T, &l.D, &l.n, &l.r, &bp, &l.W, &l.scale, &dxp};
        launch(du, Kernel::LoraDownDx, dim3(G::blocks(T, 32), G::blocks(D, 128)), dim3(256),
               args);
      }
      dx = dx.view(ctx->saved_data["sizes"].toIntVector());
    }
    if (ctx->needs_input_grad(1)) {
      if (T > 0 && D > 0) {
        const unsigned column_blocks = G::blocks(D, G::row_tokens(r));
        long long span = G::split(T, column_blocks * n, du);
        const int64_t S = G::splits(T, span);
        auto partial = at::empty({S, n, r, D}, du.options());
        const void* xp = xc.data_ptr();
        void* pp = partial.data_ptr();
        void* args[] = {&dup, &xp, &l.T, &l.D, &l.r, &span, &bp, &l.W, &l.scale, &pp};
        launch(du, Kernel::LoraDownDa,
               dim3(column_blocks, static_cast<unsigned>(n), static_cast<unsigned>(S)),
               dim3(256), args);
        da = partial.sum(0);
      } else {
        da = at::zeros_like(ac);
      }
    }
    return {dx, da, none, none};
  }

  // The dropout masks of n copies of xc [T, D] drawn from `seed` (t2s_lora_mask): bits
  // [n, T, ceil(D / 32)].
  static at::Tensor draw_bits(const at::Tensor& xc, int64_t n, double p, int64_t seed) {
    const int64_t T = xc.size(0), D = xc.size(1);
    Args l(p, seed, T, D, n, 1);
    at::Tensor bits = at::empty({n, T, l.W}, xc.options().dtype(at::kInt));
    void* bp = bits.data_ptr();
    void* args[] = {&l.T, &l.D, &l.W, &l.seed, &l.p, &bp};
    launch(xc, Kernel::LoraMask, dim3(G::blocks(T * l.W, 256), static_cast<unsigned>(n)),
           dim3(256), args);
    return bits;
  }

  // The mask bits the kernels take: null for the no-dropout placeholder.
  static const void* mask_bits(const at::Tensor& bits) {
    return bits.numel() > 0 ? bits.data_ptr() : nullptr;
  }

  // The kernels' scalar arguments, in the types they take (W: words of mask bits a row).
  struct Args {
    long long T;
    int D, n, r, W;
    unsigned long long seed;
    float p, scale;
    Args(double p_, int64_t seed_, int64_t T_, int64_t D_, int64_t n_, int64_t r_)
        : T(T_),
          D(static_cast<int>(D_)),
          n(static_cast<int>(n_)),
          r(static_cast<int>(r_)),
          W(static_cast<int>((D_ + 31) / 32)),
          seed(static_cast<unsigned long long>(seed_)),
          p(static_cast<float>(p_)),
          scale(static_cast<float>(1.0 / (1.0 - p_))) {}
  };
};

// --- Tensor-core GEMMs at fp32 accuracy (T2S_LORA_MATMUL=gemm) ------------------------------
// The LoRA side path's products have an fp32 operand (A, B, the rank activations u or their
// gradient) and, often, a bf16 one (x, the output's gradient). Split into three bf16 pieces
// (hi = bf16(v), mid = bf16(v − hi), lo = bf16(v − hi − mid): their sum is v to 24 bits, each
// difference exact in fp32), an fp32 operand becomes three bf16 ones, and a product of two bf16
// values is exact in fp32: cuBLAS's bf16 GEMM with fp32 results, over the pieces side by side,
// gives the fp32 product (PEFT's fp32 GEMMs without TF32) on tensor cores. Where both operands
// are fp32, six piece products down to the 2^-18 terms (the rest are under 2^-27).

// The three bf16 pieces of fp32 v, stacked at `dim`.
at::Tensor split3(const at::Tensor& v, int64_t dim) {
  const at::Tensor hi = v.to(at::kBFloat16);
  const at::Tensor rest = v - hi.to(at::kFloat);
  const at::Tensor mid = rest.to(at::kBFloat16);
  const at::Tensor lo = (rest - mid.to(at::kFloat)).to(at::kBFloat16);
  return at::stack({hi, mid, lo}, dim);
}

// (hi + mid) + lo over the pieces' dim.
at::Tensor sum_pieces(const at::Tensor& t, int64_t dim) {
  return t.select(dim, 0).add(t.select(dim, 1)).add_(t.select(dim, 2));
}

// The product of bf16 matrices (or batches of them) into fp32: cuBLAS with fp32 results on
// CUDA; on the CPU, which has no such GEMM, the same values multiplied in fp32 (the tests).
at::Tensor mm_f32(const at::Tensor& l, const at::Tensor& r) {
  if (l.is_cuda()) return l.dim() == 3 ? at::bmm(l, r, at::kFloat) : at::mm(l, r, at::kFloat);
  return at::matmul(l.to(at::kFloat), r.to(at::kFloat));
}

// The LoRA down-projection of LoraDown as tensor-core GEMMs (T2S_LORA_MATMUL=gemm): the same
// u [n, T, r] and gradients, with cuBLAS doing the products over bf16 pieces (above): `x · Aᵀ`
// with A's three pieces, `du · A` with six piece products, A's gradient with du's three. The
// products are small (r columns), so the pieces cost FLOPs tensor cores have to spare, and
// cuBLAS runs them near memory speed where the CUDA-core kernels of LoraDown ran near a tenth
// of it (tenth session's H200 profile).
//
// Dropout: each adapter's GEMM reads its masked copy of x (bf16, exact: the masks of the bits
// applied, t2s_lora_mask_apply; 1 / (1 − p) applied to the fp32 result), and the input's
// gradient is the masked sum of each adapter's fp32 `du · A` (t2s_lora_mask_sum). Saved for
// the backward: x, A and the bits, as LoraDown; the masked copies are made again there. Without
// dropout, one GEMM over every adapter's pieces side by side each way.
//
// Any device: on the CPU (tests) the products run in fp32 on the same bf16 values and the
// masks are applied with ATen ops, so the arithmetic can be checked without a GPU.
struct LoraDownGemm : public torch::autograd::Function<LoraDownGemm> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x,
                            const at::Tensor& a, const at::Tensor& bits, double p) {
    TORCH_CHECK(x.scalar_type() == at::kBFloat16, "LoRA down-projection input must be bfloat16");
    TORCH_CHECK(a.dim() == 3 && a.scalar_type() == at::kFloat && a.device() == x.device(),
                "LoRA A matrices must be fp32 [n, r, D] on the input's device, got ",
                a.scalar_type(), " ", a.sizes());
    const int64_t D = x.size(-1), n = a.size(0), r = a.size(1);
    TORCH_CHECK(a.size(2) == D, "LoRA A matrices are ", a.sizes(), " for an input of width ", D);
    TORCH_CHECK(p >= 0.0 && p < 1.0, "LoRA dropout probability must be in [0, 1), got ", p);
    const at::Tensor xc = x.contiguous().view({-1, D});
    const int64_t T = xc.size(0);
    TORCH_CHECK(p == 0.0 || (bits.dim() == 3 && bits.size(0) == n && bits.size(1) == T &&
                             bits.size(2) == (D + 31) / 32),
                "LoRA dropout bits must be [n, T, ceil(D / 32)], got ", bits.sizes());
    std::optional<DeviceGuard> guard;
    if (xc.is_cuda()) guard.emplace(xc.device());
    const at::Tensor ac = a.contiguous();
    // [n, 3r, D]: each adapter's pieces hi, mid, lo stacked over its rows.
    const at::Tensor pieces = split3(ac, 1).view({n, 3 * r, D});
    at::Tensor u;
    if (p > 0.0) {
      const at::Tensor xm = masked_copies(xc, bits, n);
      u = sum_pieces(mm_f32(xm, pieces.transpose(1, 2)).view({n, T, 3, r}), 2)
              .mul_(scale_of(p));
    } else {
      // [T, n · 3r] → [n, T, r].
      const at::Tensor all = mm_f32(xc, pieces.view({n * 3 * r, D}).t());
      u = sum_pieces(all.view({T, n, 3, r}), 2).permute({1, 0, 2}).contiguous();
    }
    ctx->save_for_backward({xc, ac, bits});
    ctx->saved_data["p"] = p;
    ctx->saved_data["sizes"] = x.sizes().vec();
    return u;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const at::Tensor none;
    if (!grads[0].defined()) return {none, none, none, none};
    const auto saved = ctx->get_saved_variables();
    const at::Tensor &xc = saved[0], &ac = saved[1], &bits = saved[2];
    const double p = ctx->saved_data["p"].toDouble();
    std::optional<DeviceGuard> guard;
    if (xc.is_cuda()) guard.emplace(xc.device());
    const int64_t T = xc.size(0), D = xc.size(1), n = ac.size(0), r = ac.size(1);
    const at::Tensor du = grads[0].to(at::kFloat).contiguous();
    // [n, T, 3, r] and [n, 3, r, D]: the pieces of u's gradient and of A.
    const at::Tensor dp = split3(du, 2);
    const at::Tensor ap = split3(ac, 1);
    at::Tensor dx, da;
    if (ctx->needs_input_grad(0)) {
      // du · A ≈ d0·a0 + d0·a1 + d1·a0 + d0·a2 + d1·a1 + d2·a0: six products side by side
      // along the reduction, [n, T, 6r] · [n, 6r, D].
      auto d = [&](int64_t i) { return dp.select(2, i); };
      auto w = [&](int64_t i) { return ap.select(1, i); };
      const at::Tensor left = at::cat({d(0), d(0), d(1), d(0), d(1), d(2)}, 2);
      const at::Tensor right = at::cat({w(0), w(1), w(0), w(2), w(1), w(0)}, 1);
      if (p > 0.0) {
        dx = masked_sum(mm_f32(left, right), bits, scale_of(p));
      } else {
        dx = mm_f32(left.permute({1, 0, 2}).reshape({T, n * 6 * r}), right.reshape({n * 6 * r, D}))
                 .to(at::kBFloat16);
      }
      dx = dx.view(ctx->saved_data["sizes"].toIntVector());
    }
    if (ctx->needs_input_grad(1)) {
      // Σ_t du[c][t]ᵀ ⊗ dropped x[t], with du's three pieces as 3r rows.
      const at::Tensor rows = dp.view({n, T, 3 * r});
      at::Tensor sums;
      if (p > 0.0) {
        sums = mm_f32(rows.transpose(1, 2), masked_copies(xc, bits, n)).view({n, 3, r, D});
        da = sum_pieces(sums, 1).mul_(scale_of(p));
      } else {
        sums = mm_f32(rows.permute({1, 0, 2}).reshape({T, n * 3 * r}).t(), xc);
        da = sum_pieces(sums.view({n, 3, r, D}), 1);
      }
    }
    return {dx, da, none, none};
  }

  // 1 / (1 − p) as the kernels take it (fp32).
  static double scale_of(double p) { return static_cast<float>(1.0 / (1.0 - p)); }

  // The masks of the bits [n, T, W] as bool [n, T, D] (the CPU's way; the GPU's kernels read
  // the bits).
  static at::Tensor unpack(const at::Tensor& bits, int64_t D) {
    const at::Tensor shifts = at::arange(32, bits.options());
    const at::Tensor b = bits.unsqueeze(-1).bitwise_right_shift(shifts).bitwise_and(1);
    return b.view({bits.size(0), bits.size(1), -1}).narrow(2, 0, D).to(at::kBool);
  }

  // [n, T, D] bf16: copy c of xc [T, D] with the elements its mask drops zeroed.
  static at::Tensor masked_copies(const at::Tensor& xc, const at::Tensor& bits, int64_t n) {
    const int64_t T = xc.size(0), D = xc.size(1);
    if (!xc.is_cuda())
      return at::where(unpack(bits, D), xc.unsqueeze(0), at::zeros({}, xc.options()));
    at::Tensor out = at::empty({n, T, D}, xc.options());
    if (T == 0 || D == 0) return out;
    const void* xp = xc.data_ptr();
    const void* bp = bits.data_ptr();
    void* op = out.data_ptr();
    long long t = T;
    int d = static_cast<int>(D), w = static_cast<int>((D + 31) / 32);
    int vec = vec8(D, {xp, op}) ? 1 : 0;
    void* args[] = {&xp, &t, &d, &w, &bp, &op, &vec};
    const int64_t groups = (D + 7) / 8;
    launch(xc, Kernel::LoraMaskApply,
           dim3(LoraGeometry::blocks(T * groups, 256), static_cast<unsigned>(n)), dim3(256),
           args);
    return out;
  }

  // bf16 [T, D]: Σ_c (kept ? g[c] · scale : 0) for g [n, T, D] fp32, summed in fp32 and
  // rounded once.
  static at::Tensor masked_sum(const at::Tensor& g, const at::Tensor& bits, double scale) {
    const int64_t n = g.size(0), T = g.size(1), D = g.size(2);
    if (!g.is_cuda()) {
      const at::Tensor kept = at::where(unpack(bits, D), g.mul(scale), at::zeros({}, g.options()));
      at::Tensor s = kept.select(0, 0).clone();
      for (int64_t c = 1; c < n; ++c) s.add_(kept.select(0, c));
      return s.to(at::kBFloat16);
    }
    const at::Tensor gc = g.contiguous();
    at::Tensor dx = at::empty({T, D}, gc.options().dtype(at::kBFloat16));
    if (T == 0 || D == 0) return dx;
    const void* gp = gc.data_ptr();
    const void* bp = bits.data_ptr();
    void* dp = dx.data_ptr();
    long long t = T;
    int d = static_cast<int>(D), w = static_cast<int>((D + 31) / 32), nn = static_cast<int>(n);
    float sc = static_cast<float>(scale);
    int vec = (D % 4 == 0 && reinterpret_cast<uintptr_t>(gp) % 16 == 0) ? 1 : 0;
    void* args[] = {&gp, &t, &d, &w, &nn, &bp, &sc, &dp, &vec};
    const int64_t groups = (D + 3) / 4;
    launch(gc, Kernel::LoraMaskSum, dim3(LoraGeometry::blocks(T * groups, 256)), dim3(256), args);
    return dx;
  }
};

// The LoRA up-projection into a bf16 output (t2s_lora_up_*): for n adapters whose outputs sit
// side by side in y [..., O] (adapter c owning columns [off[c], off[c + 1]), multiples of 4),
// out = bf16(fp32(y) + u[c] · B[c]ᵀ) with u [n, T, r] fp32 (scaled) and B [O, r] the
// adapters' B matrices stacked. PEFT's `result + lora(x)` promoted to fp32 and cast back,
// without the fp32 deltas. Saved for the backward: u and B (the output's gradient passes
// through to y).
struct LoraUp : public torch::autograd::Function<LoraUp> {
  using G = LoraGeometry;
  struct Parts {
    int off[5];
  };

  // `gemm`: the gradients as tensor-core GEMMs over bf16 pieces (T2S_LORA_MATMUL=gemm), the
  // forward (one pass over the output) as before; that mode also runs on the CPU (the tests),
  // its forward there with ATen ops.
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& y,
                            const at::Tensor& u, const at::Tensor& b,
                            std::vector<int64_t> offsets, bool gemm) {
    if (gemm && !y.is_cuda()) {
      TORCH_CHECK(y.scalar_type() == at::kBFloat16, "LoRA up-projection output must be bfloat16");
    } else {
      check_bf16_cuda(y, "LoRA up-projection output");
    }
    const int64_t O = y.size(-1);
    TORCH_CHECK(b.dim() == 2 && b.scalar_type() == at::kFloat && b.device() == y.device() &&
                    b.size(0) == O,
                "LoRA B matrices must be fp32 [O, r] with O = ", O, ", got ", b.sizes());
    const int64_t r = b.size(1);
    TORCH_CHECK(u.dim() == 3 && u.scalar_type() == at::kFloat && u.device() == y.device() &&
                    u.size(2) == r,
                "LoRA rank activations must be fp32 [n, T, r] on the output's device, got ",
                u.scalar_type(), " ", u.sizes());
    const int64_t n = u.size(0);
    TORCH_CHECK(n >= 1 && n <= 4 && r >= 1 && n * r <= G::kMaxRank,
                "the fused LoRA up-projection takes n <= 4, n · r <= ", G::kMaxRank, ", got n ",
                n, ", r ", r);
    TORCH_CHECK(static_cast<int64_t>(offsets.size()) == n + 1 && offsets.front() == 0 &&
                    offsets.back() == O && std::is_sorted(offsets.begin(), offsets.end()) &&
                    std::all_of(offsets.begin(), offsets.end(),
                                [](int64_t o) { return o % 4 == 0; }),
                "LoRA output offsets must run from 0 to ", O, " over ", n,
                " adapters in multiples of 4");
    std::optional<DeviceGuard> guard;
    if (y.is_cuda()) guard.emplace(y.device());
    const at::Tensor yc = y.contiguous().view({-1, O});
    const int64_t T = yc.size(0);
    TORCH_CHECK(u.size(1) == T, "LoRA rank activations have ", u.size(1), " rows for ", T);
    const at::Tensor uc = u.contiguous(), bc = b.contiguous();
    auto out = at::empty_like(yc);
    if (!yc.is_cuda()) {
      // bf16(fp32(y) + u[c] · B[c]ᵀ), the fp32 deltas side by side.
      std::vector<at::Tensor> deltas;
      for (int64_t c = 0; c < n; ++c)
        deltas.push_back(at::matmul(uc.select(0, c), bc.slice(0, offsets[c], offsets[c + 1]).t()));
      at::add_out(out, yc, at::cat(deltas, 1));
    } else if (T > 0 && O > 0) {
      Args a(T, O, n, r, offsets);
      const void* yp = yc.data_ptr();
      const void* up = uc.data_ptr();
      const void* bp = bc.data_ptr();
      void* op = out.data_ptr();
      void* args[] = {&yp, &up, &bp, &a.T, &a.O, &a.n, &a.r, &a.parts, &op};
      launch(yc, Kernel::LoraUpFwd, dim3(G::blocks(T, 32), G::blocks(O, 128)), dim3(256), args);
    }
    ctx->save_for_backward({uc, bc});
    ctx->saved_data["offsets"] = offsets;
    ctx->saved_data["gemm"] = gemm;
    return out.view(y.sizes());
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const at::Tensor none;
    if (!grads[0].defined()) return {none, none, none, none, none};
    const auto saved = ctx->get_saved_variables();
    const at::Tensor &uc = saved[0], &bc = saved[1];
    const int64_t n = uc.size(0), T = uc.size(1), r = uc.size(2), O = bc.size(0);
    const at::Tensor g = grads[0].to(at::kBFloat16).contiguous().view({T, O});
    const auto offsets = ctx->saved_data["offsets"].toIntVector();
    if (ctx->saved_data["gemm"].toBool()) {
      std::optional<DeviceGuard> guard;
      if (g.is_cuda()) guard.emplace(g.device());
      return gemm_backward(ctx, grads[0], g, uc, bc, offsets);
    }
    DeviceGuard guard(g.device());
    Args a(T, O, n, r, offsets);
    const void* gp = g.data_ptr();
    at::Tensor du, db;
    if (ctx->needs_input_grad(1)) {
      if (T > 0 && O > 0) {
        int64_t widest = 0;
        for (size_t c = 0; c + 1 < offsets.size(); ++c)
          widest = std::max(widest, offsets[c + 1] - offsets[c]);
        const unsigned token_blocks = G::blocks(T, G::row_tokens(r));
        int split = static_cast<int>(G::split(widest, token_blocks * n, g));
        const int64_t S = std::max<int64_t>(1, G::splits(widest, split));
        auto partial = at::empty({S, n, T, r}, uc.options());
        const void* bp = bc.data_ptr();
        void* pp = partial.data_ptr();
        void* args[] = {&gp, &bp, &a.T, &a.O, &a.r, &a.parts, &split, &pp};
        launch(g, Kernel::LoraUpDu,
               dim3(token_blocks, static_cast<unsigned>(n), static_cast<unsigned>(S)),
               dim3(256), args);
        du = partial.sum(0);
      } else {
        du = at::zeros({n, T, r}, uc.options());
      }
    }
    if (ctx->needs_input_grad(2)) {
      if (T > 0 && O > 0) {
        const unsigned column_blocks = G::blocks(O, G::row_tokens(r));
        long long span = G::split(T, column_blocks, g);
        const int64_t S = G::splits(T, span);
        auto partial = at::empty({S, r, O}, uc.options());
        const void* up = uc.data_ptr();
        void* pp = partial.data_ptr();
        void* args[] = {&gp, &up, &a.T, &a.O, &a.n, &a.r, &a.parts, &span, &pp};
        launch(g, Kernel::LoraUpDb, dim3(column_blocks, 1, static_cast<unsigned>(S)), dim3(256),
               args);
        db = partial.sum(0).t().contiguous();
      } else {
        db = at::zeros_like(bc);
      }
    }
    // The output's gradient is y's (out = y + delta).
    return {ctx->needs_input_grad(0) ? grads[0] : none, du, db, none, none};
  }

  // The gradients as GEMMs over bf16 pieces, per adapter c on its columns g_c of the bf16
  // output gradient g [T, O] (exact as it is): u's, g_c · B[c] with B's three pieces; B's,
  // g_cᵀ · u[c] with u's three pieces.
  static torch::autograd::variable_list gemm_backward(torch::autograd::AutogradContext* ctx,
                                                      const at::Tensor& grad, const at::Tensor& g,
                                                      const at::Tensor& uc, const at::Tensor& bc,
                                                      const std::vector<int64_t>& offsets) {
    const at::Tensor none;
    const int64_t n = uc.size(0), T = uc.size(1), r = uc.size(2), O = bc.size(0);
    at::Tensor du, db;
    if (ctx->needs_input_grad(1)) {
      // [O, 3r]: B's pieces side by side per output column.
      const at::Tensor bp = split3(bc, 1).view({O, 3 * r});
      std::vector<at::Tensor> parts;
      for (int64_t c = 0; c < n; ++c) {
        const int64_t lo = offsets[c], hi = offsets[c + 1];
        parts.push_back(
            sum_pieces(mm_f32(g.slice(1, lo, hi), bp.slice(0, lo, hi)).view({T, 3, r}), 1));
      }
      du = at::stack(parts, 0);
    }
    if (ctx->needs_input_grad(2)) {
      // [n, T, 3r]: u's pieces side by side per token.
      const at::Tensor up = split3(uc, 2).view({n, T, 3 * r});
      std::vector<at::Tensor> parts;
      for (int64_t c = 0; c < n; ++c) {
        const int64_t lo = offsets[c], hi = offsets[c + 1];
        parts.push_back(
            sum_pieces(mm_f32(g.slice(1, lo, hi).t(), up.select(0, c)).view({hi - lo, 3, r}), 1));
      }
      db = at::cat(parts, 0);
    }
    return {ctx->needs_input_grad(0) ? grad : none, du, db, none, none};
  }

  // The kernels' scalar arguments, in the types they take.
  struct Args {
    long long T;
    int O, n, r;
    Parts parts{};
    Args(int64_t T_, int64_t O_, int64_t n_, int64_t r_, const std::vector<int64_t>& offsets)
        : T(T_), O(static_cast<int>(O_)), n(static_cast<int>(n_)), r(static_cast<int>(r_)) {
      for (size_t i = 0; i < offsets.size() && i < 5; ++i)
        parts.off[i] = static_cast<int>(offsets[i]);
    }
  };
};

}  // namespace

extern "C" {

// The version of the NVRTC that compiles the kernels (part of a compiled image's cache key).
int t2s_fused_nvrtc_version(int* major, int* minor, char** err) {
  return t2s::guarded(err, [&] { t2s::jit::nvrtc_version(major, minor); });
}

// Compile the kernels for compute capability major.minor with NVRTC only (no device, no
// driver) into `*image` (`*len` bytes, malloc'ed: t2s_fused_free): a cubin, or PTX with its
// NUL. Checks that the image holds every entry point jit.h names (loading looks each one up;
// one missing turns all the kernels off), so a CPU machine can check the source too.
int t2s_fused_compile(int major, int minor, char** image, size_t* len, char** err) {
  return t2s::guarded(err, [&] {
    bool is_cubin = false;
    const std::string compiled = t2s::jit::compile(major, minor, &is_cubin);
    for (const char* name : t2s::jit::kKernels) {
      // A cubin's string table ends each name with a NUL; PTX declares `.entry name(`.
      const std::string n(name);
      if (compiled.find(n + '\0') == std::string::npos &&
          compiled.find(".entry " + n + "(") == std::string::npos)
        throw std::runtime_error("the compiled kernels lack the entry point " + n);
    }
    char* out = static_cast<char*>(malloc(compiled.size()));
    if (out == nullptr) throw std::bad_alloc();
    memcpy(out, compiled.data(), compiled.size());
    *image = out;
    *len = compiled.size();
  });
}

void t2s_fused_free(char* image) { free(image); }

// Load an image t2s_fused_compile made for CUDA device `device`'s compute capability (e.g.
// read back from the disk cache), unless the device has its kernels already.
int t2s_fused_load(int device, const char* image, size_t len, char** err) {
  return t2s::guarded(err, [&] {
    t2s::jit::load(static_cast<c10::DeviceIndex>(device), std::string(image, len));
  });
}

// y = [res +] (x * rstd) * w over the last dim, `heads` rows per token (see GemmaRmsNorm);
// `res` may be null. `*out` receives a new tensor the caller owns.
int t2s_fused_rms_norm(void* x, void* w, void* res, long long heads, double eps, void** out,
                       char** err) {
  return t2s::guarded(err, [&] {
    // autograd's apply records every tensor argument's device, dtype and shape before calling
    // forward, which an undefined tensor has none of: no residual is an empty placeholder.
    const at::Tensor& xt = *static_cast<at::Tensor*>(x);
    const at::Tensor r = res ? *static_cast<at::Tensor*>(res) : at::empty({0}, xt.options());
    at::Tensor y = GemmaRmsNorm::apply(xt, *static_cast<at::Tensor*>(w), r, res != nullptr,
                                       static_cast<int64_t>(heads), eps);
    *out = new at::Tensor(std::move(y));
  });
}

// RoPE(q/k norm(x)) for x [..., heads, D] (see QkNormRope). `*out` receives a new tensor.
int t2s_fused_qk_norm_rope(void* x, void* w, void* cos, void* sin, long long heads, double eps,
                           void** out, char** err) {
  return t2s::guarded(err, [&] {
    at::Tensor y = QkNormRope::apply(*static_cast<at::Tensor*>(x), *static_cast<at::Tensor*>(w),
                                     *static_cast<at::Tensor*>(cos),
                                     *static_cast<at::Tensor*>(sin), static_cast<int64_t>(heads),
                                     eps);
    *out = new at::Tensor(std::move(y));
  });
}

// Cross-entropy rows of logits z [rows, V] (bf16, contiguous) at int64 `targets` [rows]: the
// fp32 NLL per row into `*out` (a new tensor), and z overwritten with softmax(z) - onehot in
// bf16 (the gradient of the summed NLL). Not differentiable: the caller owns the gradient.
int t2s_fused_ce_rows(void* z, void* targets, void** out, char** err) {
  return t2s::guarded(err, [&] {
    at::Tensor& zt = *static_cast<at::Tensor*>(z);
    const at::Tensor& tt = *static_cast<at::Tensor*>(targets);
    check_bf16_cuda(zt, "logits");
    TORCH_CHECK(zt.dim() == 2 && zt.is_contiguous(), "logits must be contiguous [rows, V]");
    TORCH_CHECK(tt.scalar_type() == at::kLong && tt.device() == zt.device() &&
                    tt.numel() == zt.size(0),
                "targets must be int64 [rows] on the logits' device");
    DeviceGuard guard(zt.device());
    const at::Tensor t = tt.contiguous();
    auto nll = at::empty({zt.size(0)}, zt.options().dtype(at::kFloat));
    if (zt.size(0) > 0) {
      void* zp = zt.data_ptr();
      const void* tp = t.data_ptr();
      void* np = nll.data_ptr();
      int v = static_cast<int>(zt.size(1));
      int vec = vec8(v, {zp}) ? 1 : 0;
      void* args[] = {&zp, &tp, &v, &np, &vec};
      launch(zt, Kernel::CeRows, dim3(static_cast<unsigned>(zt.size(0))), dim3(1024), args);
    }
    *out = new at::Tensor(std::move(nll));
  });
}

// gelu_tanh(gu[..., :I]) * gu[..., I:] for gu [..., 2I]. `*out` receives a new tensor.
int t2s_fused_gelu_gate(void* gu, void** out, char** err) {
  return t2s::guarded(err, [&] {
    at::Tensor y = GeluGate::apply(*static_cast<at::Tensor*>(gu));
    *out = new at::Tensor(std::move(y));
  });
}

// LoRA dropout of bf16 x into `copies` fp32 copies (see LoraDropout). `*out` receives a new
// tensor [copies, ...x.shape].
int t2s_fused_lora_dropout(void* x, long long copies, double p, long long seed, void** out,
                           char** err) {
  return t2s::guarded(err, [&] {
    at::Tensor y = LoraDropout::apply(*static_cast<at::Tensor*>(x), static_cast<int64_t>(copies),
                                      p, static_cast<int64_t>(seed));
    *out = new at::Tensor(std::move(y));
  });
}

// The fused LoRA down-projection: x bf16 [..., D], a fp32 [n, r, D]; `*out` receives a new
// tensor [n, T, r] (T the number of rows of x). `gemm` 0: the CUDA-core kernels (LoraDown);
// 1: tensor-core GEMMs (LoraDownGemm) with the masks LoraDown draws from the same seed.
int t2s_fused_lora_down(void* x, void* a, double p, long long seed, int gemm, void** out,
                        char** err) {
  return t2s::guarded(err, [&] {
    const at::Tensor& xt = *static_cast<at::Tensor*>(x);
    const at::Tensor& am = *static_cast<at::Tensor*>(a);
    at::Tensor u;
    if (gemm != 0) {
      check_bf16_cuda(xt, "LoRA down-projection input");
      TORCH_CHECK(p >= 0.0 && p < 1.0, "LoRA dropout probability must be in [0, 1), got ", p);
      TORCH_CHECK(am.dim() == 3, "LoRA A matrices must be [n, r, D], got ", am.sizes());
      at::Tensor bits = at::empty({0}, xt.options().dtype(at::kInt));
      if (p > 0.0 && xt.numel() > 0) {
        DeviceGuard guard(xt.device());
        const at::Tensor xc = xt.contiguous().view({-1, xt.size(-1)});
        bits = LoraDown::draw_bits(xc, am.size(0), p, static_cast<int64_t>(seed));
      }
      u = LoraDownGemm::apply(xt, am, bits, p);
    } else {
      u = LoraDown::apply(xt, am, p, static_cast<int64_t>(seed));
    }
    *out = new at::Tensor(std::move(u));
  });
}

// LoraDownGemm with the dropout masks given as bits [n, T, ceil(D / 32)] (int32; empty for
// p = 0), on any device: the tests check its arithmetic on the CPU.
int t2s_fused_lora_down_gemm_bits(void* x, void* a, void* bits, double p, void** out,
                                  char** err) {
  return t2s::guarded(err, [&] {
    at::Tensor u = LoraDownGemm::apply(*static_cast<at::Tensor*>(x), *static_cast<at::Tensor*>(a),
                                       *static_cast<at::Tensor*>(bits), p);
    *out = new at::Tensor(std::move(u));
  });
}

// The fused LoRA up-projection (see LoraUp): y bf16 [..., O], u fp32 [n, T, r], b fp32 [O, r],
// `offsets` the n + 1 column offsets of the adapters' outputs in y; `*out` receives a new
// tensor shaped like y. `gemm` 1: the gradients as tensor-core GEMMs (and any device).
int t2s_fused_lora_up(void* y, void* u, void* b, const long long* offsets, long long n_offsets,
                      int gemm, void** out, char** err) {
  return t2s::guarded(err, [&] {
    std::vector<int64_t> offs(offsets, offsets + n_offsets);
    at::Tensor o = LoraUp::apply(*static_cast<at::Tensor*>(y), *static_cast<at::Tensor*>(u),
                                 *static_cast<at::Tensor*>(b), offs, gemm != 0);
    *out = new at::Tensor(std::move(o));
  });
}

}  // extern "C"
