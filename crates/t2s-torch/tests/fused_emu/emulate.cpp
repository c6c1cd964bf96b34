// Runs csrc/fused_kernels.cu on the CPU: every CUDA thread of a block is a std::thread,
// __syncthreads is a barrier and __shfl_xor_sync exchanges through a block-wide slot array
// between two barriers (every kernel calls its shuffles with all threads of the block, so
// this equals the warp semantics). Blocks run one after another. Used by tests/fused.rs to
// check the kernels' arithmetic against libtorch on a machine without a GPU.
//
//   emulate rms  <dir> <rows> <heads> <D> <x_tok> <w_heads> <has_res> <eps> <threads>
//     reads  dir/x.bin (bf16), w.bin (f32), res.bin (bf16, if has_res), g.bin (bf16)
//     writes dir/y.bin (bf16), rstd.bin (f32), dx.bin (bf16)
//   emulate rope <dir> <rows> <heads> <D> <x_tok> <eps> <threads>
//     reads  dir/x.bin, w.bin ([heads, D] f32), cos.bin, sin.bin, g.bin; writes y.bin, dx.bin
//   emulate ce   <dir> <rows> <V> <threads> <vec>
//     reads  dir/z.bin (bf16 [rows, V]), t.bin (int64); writes nll.bin (f32), grad.bin (bf16)
//   emulate gate <dir> <rows> <I> <grid_y> <threads> <vec>
//     reads  dir/gu.bin (bf16), g.bin (bf16); writes dir/out.bin, dgu.bin (bf16)
//   emulate drop <dir> <rows> <D> <copies> <seed> <p> <blocks> <threads>
//     reads  dir/x.bin (bf16 [rows, D]), g.bin (f32 [copies, rows, D]); writes out.bin (f32),
//     dx.bin (bf16)
//   emulate down <dir> <T> <D> <n> <r> <seed> <p> <span> <split>
//     reads  dir/x.bin (bf16 [T, D]), a.bin (f32 [n, r, D]), du.bin (f32 [n, T, r]); writes
//     u.bin (f32 [ceil(D / split), n, T, r]: per split of the columns), dx.bin (bf16 [T, D]),
//     da.bin (f32 [ceil(T / span), n, r, D]: per split of the tokens), partial sums the host adds,
//     and with dropout (p > 0) bits.bin (u32 [n, T, ceil(D / 32)]: the masks the three read)
//   emulate mask <dir> <T> <D> <n> <scale> <vec>
//     reads  dir/x.bin (bf16 [T, D]), bits.bin (u32 [n, T, ceil(D / 32)]), g.bin (f32 [n, T,
//     D]); writes xm.bin (bf16 [n, T, D]: the masked copies) and dx.bin (bf16 [T, D]: the
//     masked, scaled sum of g over the copies)
//   emulate up <dir> <T> <O> <r> <span> <split> <off_0> ... <off_n>
//     reads  dir/y.bin (bf16 [T, O]), u.bin (f32 [n, T, r]), b.bin (f32 [O, r]), g.bin (bf16
//     [T, O]); writes out.bin (bf16 [T, O]), du.bin (f32 [ceil(widest / split), n, T, r]: per
//     split of each adapter's columns), db.bin (f32 [ceil(T / span), r, O]: per split of the
//     tokens, transposed), partial sums the host adds
#include <algorithm>
#include <barrier>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

struct dim3 {
  unsigned x = 1, y = 1, z = 1;
};

struct alignas(16) uint4 {
  unsigned int x, y, z, w;
};

struct alignas(16) float4 {
  float x, y, z, w;
};

static dim3 blockIdx, blockDim, gridDim;
static thread_local dim3 threadIdx;
static std::unique_ptr<std::barrier<>> block_barrier;
static float shuffle_slots[1024];

#define __global__
#define __device__
#define __forceinline__ inline
#define __shared__ static
#define __align__(n) __attribute__((aligned(n)))
#define __launch_bounds__(...)

static void __syncthreads() { block_barrier->arrive_and_wait(); }

static float __shfl_xor_sync(unsigned, float v, int lane_mask) {
  shuffle_slots[threadIdx.x] = v;
  __syncthreads();
  const float other = shuffle_slots[threadIdx.x ^ static_cast<unsigned>(lane_mask)];
  __syncthreads();
  return other;
}

static float __uint_as_float(unsigned int u) {
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

static unsigned int __float_as_uint(float f) {
  unsigned int u;
  std::memcpy(&u, &f, sizeof u);
  return u;
}

static float rsqrtf(float x) { return 1.0f / std::sqrt(x); }
using std::fmaxf;

#include "../../csrc/fused_kernels.cu"

// Launch `kernel` on a grid of blocks, each block's threads concurrently.
static void launch(dim3 grid, dim3 block, const std::function<void()>& kernel) {
  gridDim = grid;
  blockDim = block;
  for (unsigned bz = 0; bz < grid.z; ++bz) {
    for (unsigned by = 0; by < grid.y; ++by) {
      for (unsigned bx = 0; bx < grid.x; ++bx) {
        blockIdx.x = bx;
        blockIdx.y = by;
        blockIdx.z = bz;
        block_barrier = std::make_unique<std::barrier<>>(static_cast<std::ptrdiff_t>(block.x));
        std::vector<std::thread> threads;
        for (unsigned t = 0; t < block.x; ++t)
          threads.emplace_back([t, &kernel] {
            threadIdx.x = t;
            kernel();
          });
        for (auto& th : threads) th.join();
      }
    }
  }
}

// Blocks of `tile` that cover `extent`.
static unsigned tiles(long long extent, long long tile) {
  return static_cast<unsigned>((extent + tile - 1) / tile);
}

template <typename T>
static std::vector<T> read(const std::string& path) {
  std::ifstream f(path, std::ios::binary | std::ios::ate);
  if (!f) {
    std::fprintf(stderr, "cannot read %s\n", path.c_str());
    std::exit(2);
  }
  const auto bytes = static_cast<size_t>(f.tellg());
  std::vector<T> v(bytes / sizeof(T));
  f.seekg(0);
  f.read(reinterpret_cast<char*>(v.data()), static_cast<std::streamsize>(bytes));
  return v;
}

template <typename T>
static void write(const std::string& path, const std::vector<T>& v) {
  std::ofstream f(path, std::ios::binary);
  f.write(reinterpret_cast<const char*>(v.data()), static_cast<std::streamsize>(v.size() * sizeof(T)));
}

int main(int argc, char** argv) {
  if (argc < 3) return 2;
  const std::string what = argv[1], dir = std::string(argv[2]) + "/";
  if (what == "rms" && argc == 11) {
    const long long rows = std::atoll(argv[3]);
    const int heads = std::atoi(argv[4]), D = std::atoi(argv[5]);
    const long long x_tok = std::atoll(argv[6]);
    const int w_heads = std::atoi(argv[7]);
    const bool has_res = std::atoi(argv[8]) != 0;
    const float eps = static_cast<float>(std::atof(argv[9]));
    const unsigned threads = static_cast<unsigned>(std::atoi(argv[10]));
    const auto x = read<bf16_t>(dir + "x.bin");
    const auto w = read<float>(dir + "w.bin");
    const auto g = read<bf16_t>(dir + "g.bin");
    const std::vector<bf16_t> res = has_res ? read<bf16_t>(dir + "res.bin") : std::vector<bf16_t>();
    std::vector<bf16_t> y(static_cast<size_t>(rows * D)), dx(y.size());
    std::vector<float> rstd(static_cast<size_t>(rows));
    const dim3 grid{static_cast<unsigned>(rows), 1, 1}, block{threads, 1, 1};
    launch(grid, block, [&] {
      t2s_rms_fwd(x.data(), x_tok, w.data(), w_heads, has_res ? res.data() : nullptr, y.data(),
                  rstd.data(), heads, D, eps);
    });
    launch(grid, block, [&] {
      t2s_rms_bwd(g.data(), x.data(), x_tok, w.data(), w_heads, rstd.data(), dx.data(), heads,
                  D);
    });
    write(dir + "y.bin", y);
    write(dir + "rstd.bin", rstd);
    write(dir + "dx.bin", dx);
    return 0;
  }
  if (what == "rope" && argc == 9) {
    const long long rows = std::atoll(argv[3]);
    const int heads = std::atoi(argv[4]), D = std::atoi(argv[5]);
    const long long x_tok = std::atoll(argv[6]);
    const float eps = static_cast<float>(std::atof(argv[7]));
    const unsigned threads = static_cast<unsigned>(std::atoi(argv[8]));
    const auto x = read<bf16_t>(dir + "x.bin");
    const auto w = read<float>(dir + "w.bin");
    const auto cos = read<bf16_t>(dir + "cos.bin");
    const auto sin = read<bf16_t>(dir + "sin.bin");
    const auto g = read<bf16_t>(dir + "g.bin");
    std::vector<bf16_t> y(static_cast<size_t>(rows * D)), dx(y.size());
    std::vector<float> rstd(static_cast<size_t>(rows));
    const dim3 grid{static_cast<unsigned>(rows), 1, 1}, block{threads, 1, 1};
    launch(grid, block, [&] {
      t2s_qk_rope_fwd(x.data(), x_tok, w.data(), heads, cos.data(), sin.data(), y.data(),
                      rstd.data(), heads, D, eps);
    });
    launch(grid, block, [&] {
      t2s_qk_rope_bwd(g.data(), x.data(), x_tok, w.data(), heads, cos.data(), sin.data(),
                      rstd.data(), dx.data(), heads, D);
    });
    write(dir + "y.bin", y);
    write(dir + "dx.bin", dx);
    return 0;
  }
  if (what == "ce" && argc == 7) {
    const long long rows = std::atoll(argv[3]);
    const int V = std::atoi(argv[4]);
    const unsigned threads = static_cast<unsigned>(std::atoi(argv[5]));
    const int vec = std::atoi(argv[6]);
    auto z = read<bf16_t>(dir + "z.bin");
    const auto t = read<long long>(dir + "t.bin");
    std::vector<float> nll(static_cast<size_t>(rows));
    launch(dim3{static_cast<unsigned>(rows), 1, 1}, dim3{threads, 1, 1},
           [&] { t2s_ce_rows(z.data(), t.data(), V, nll.data(), vec); });
    write(dir + "nll.bin", nll);
    write(dir + "grad.bin", z);
    return 0;
  }
  if (what == "gate" && argc == 8) {
    const long long rows = std::atoll(argv[3]);
    const int I = std::atoi(argv[4]);
    const unsigned grid_y = static_cast<unsigned>(std::atoi(argv[5]));
    const unsigned threads = static_cast<unsigned>(std::atoi(argv[6]));
    const int vec = std::atoi(argv[7]);
    const auto gu = read<bf16_t>(dir + "gu.bin");
    const auto g = read<bf16_t>(dir + "g.bin");
    std::vector<bf16_t> out(static_cast<size_t>(rows * I)), dgu(gu.size());
    const unsigned per_block = threads * (vec ? 8 : 1);
    const dim3 grid{(static_cast<unsigned>(I) + per_block - 1) / per_block, grid_y, 1};
    const dim3 block{threads, 1, 1};
    launch(grid, block, [&] { t2s_gelu_gate_fwd(gu.data(), rows, I, out.data(), vec); });
    launch(grid, block,
           [&] { t2s_gelu_gate_bwd(g.data(), gu.data(), rows, I, dgu.data(), vec); });
    write(dir + "out.bin", out);
    write(dir + "dgu.bin", dgu);
    return 0;
  }
  if (what == "drop" && argc == 10) {
    const long long rows = std::atoll(argv[3]);
    const int D = std::atoi(argv[4]);
    const long long numel = rows * D;
    const int copies = std::atoi(argv[5]);
    const unsigned long long seed = std::strtoull(argv[6], nullptr, 10);
    const float p = static_cast<float>(std::atof(argv[7]));
    const float scale = static_cast<float>(1.0 / (1.0 - std::atof(argv[7])));
    const unsigned blocks = static_cast<unsigned>(std::atoi(argv[8]));
    const unsigned threads = static_cast<unsigned>(std::atoi(argv[9]));
    const auto x = read<bf16_t>(dir + "x.bin");
    const auto g = read<float>(dir + "g.bin");
    std::vector<float> out(static_cast<size_t>(numel * copies));
    std::vector<bf16_t> dx(static_cast<size_t>(numel));
    const dim3 grid{blocks, 1, 1}, block{threads, 1, 1};
    launch(grid, block,
           [&] { t2s_lora_drop_fwd(x.data(), rows, D, copies, seed, p, scale, out.data()); });
    launch(grid, block,
           [&] { t2s_lora_drop_bwd(g.data(), rows, D, copies, seed, p, scale, dx.data()); });
    write(dir + "out.bin", out);
    write(dir + "dx.bin", dx);
    return 0;
  }
  if (what == "down" && argc == 11) {
    const long long T = std::atoll(argv[3]);
    const int D = std::atoi(argv[4]), n = std::atoi(argv[5]), r = std::atoi(argv[6]);
    const unsigned long long seed = std::strtoull(argv[7], nullptr, 10);
    const float p = static_cast<float>(std::atof(argv[8]));
    const float scale = static_cast<float>(1.0 / (1.0 - std::atof(argv[8])));
    const long long span = std::atoll(argv[9]);
    const int split = std::atoi(argv[10]);
    const long long splits = (T + span - 1) / span;
    const auto x = read<bf16_t>(dir + "x.bin");
    const auto a = read<float>(dir + "a.bin");
    const auto du = read<float>(dir + "du.bin");
    const long long d_splits = (D + split - 1) / split;
    std::vector<float> u(static_cast<size_t>(d_splits * n * T * r));
    // dx starts as NaN: the kernel must write every element (the host allocates it empty).
    std::vector<bf16_t> dx(static_cast<size_t>(T * D), static_cast<bf16_t>(0x7fc0u));
    std::vector<float> da(static_cast<size_t>(splits * n * r * D));
    const dim3 block{T2S_LORA_THREADS, 1, 1};
    // The masks as bits, drawn once for the three kernels (none without dropout).
    const int W = (D + 31) / 32;
    std::vector<unsigned int> bits;
    if (p > 0.0f) {
      bits.assign(static_cast<size_t>(n * T * W), 0xdeadbeefu);
      launch({tiles(T * W, T2S_LORA_THREADS), static_cast<unsigned>(n), 1}, block,
             [&] { t2s_lora_mask(T, D, W, seed, p, bits.data()); });
    }
    const unsigned int* b = bits.empty() ? nullptr : bits.data();
    const long long rows = lora_row_tokens(r);
    launch({tiles(T, rows), static_cast<unsigned>(n), static_cast<unsigned>(d_splits)}, block,
           [&] { t2s_lora_down_fwd(x.data(), T, D, r, a.data(), b, W, scale, split, u.data()); });
    launch({tiles(T, 32), tiles(D, 128), 1}, block, [&] {
      t2s_lora_down_dx(du.data(), a.data(), T, D, n, r, b, W, scale, dx.data());
    });
    launch({tiles(D, rows), static_cast<unsigned>(n), static_cast<unsigned>(splits)}, block,
           [&] {
             t2s_lora_down_da(du.data(), x.data(), T, D, r, span, b, W, scale, da.data());
           });
    write(dir + "u.bin", u);
    write(dir + "dx.bin", dx);
    write(dir + "da.bin", da);
    if (!bits.empty()) write(dir + "bits.bin", bits);
    return 0;
  }
  if (what == "mask" && argc == 8) {
    const long long T = std::atoll(argv[3]);
    const int D = std::atoi(argv[4]), n = std::atoi(argv[5]);
    const float scale = static_cast<float>(std::atof(argv[6]));
    const int vec = std::atoi(argv[7]);
    const int W = (D + 31) / 32;
    const auto x = read<bf16_t>(dir + "x.bin");
    const auto bits = read<unsigned int>(dir + "bits.bin");
    const auto g = read<float>(dir + "g.bin");
    // Both start as NaN: the kernels must write every element.
    std::vector<bf16_t> xm(static_cast<size_t>(n * T * D), static_cast<bf16_t>(0x7fc0u));
    std::vector<bf16_t> dx(static_cast<size_t>(T * D), static_cast<bf16_t>(0x7fc0u));
    const dim3 block{256, 1, 1};
    launch({tiles(T * ((D + 7) / 8), 256), static_cast<unsigned>(n), 1}, block,
           [&] { t2s_lora_mask_apply(x.data(), T, D, W, bits.data(), xm.data(), vec); });
    launch({tiles(T * ((D + 3) / 4), 256), 1, 1}, block,
           [&] { t2s_lora_mask_sum(g.data(), T, D, W, n, bits.data(), scale, dx.data(), vec); });
    write(dir + "xm.bin", xm);
    write(dir + "dx.bin", dx);
    return 0;
  }
  if (what == "up" && argc >= 10 && argc <= 13) {
    const long long T = std::atoll(argv[3]);
    const int O = std::atoi(argv[4]), r = std::atoi(argv[5]);
    const long long span = std::atoll(argv[6]);
    const int split = std::atoi(argv[7]);
    const int n = argc - 9;
    LoraParts parts{};
    for (int i = 0; i <= n; ++i) parts.off[i] = std::atoi(argv[8 + i]);
    const long long splits = (T + span - 1) / span;
    const auto y = read<bf16_t>(dir + "y.bin");
    const auto u = read<float>(dir + "u.bin");
    const auto b = read<float>(dir + "b.bin");
    const auto g = read<bf16_t>(dir + "g.bin");
    int widest = 0;
    for (int i = 0; i < n; ++i) widest = std::max(widest, parts.off[i + 1] - parts.off[i]);
    const long long o_splits = std::max(1, (widest + split - 1) / split);
    std::vector<bf16_t> out(static_cast<size_t>(T * O));
    std::vector<float> du(static_cast<size_t>(o_splits * n * T * r));
    std::vector<float> db(static_cast<size_t>(splits * O * r));
    const dim3 block{T2S_LORA_THREADS, 1, 1};
    const long long rows = lora_row_tokens(r);
    launch({tiles(T, 32), tiles(O, 128), 1}, block, [&] {
      t2s_lora_up_fwd(y.data(), u.data(), b.data(), T, O, n, r, parts, out.data());
    });
    launch({tiles(T, rows), static_cast<unsigned>(n), static_cast<unsigned>(o_splits)}, block,
           [&] { t2s_lora_up_du(g.data(), b.data(), T, O, r, parts, split, du.data()); });
    launch({tiles(O, rows), 1, static_cast<unsigned>(splits)}, block, [&] {
      t2s_lora_up_db(g.data(), u.data(), T, O, n, r, parts, span, db.data());
    });
    write(dir + "out.bin", out);
    write(dir + "du.bin", du);
    write(dir + "db.bin", db);
    return 0;
  }
  std::fprintf(stderr, "usage: see the header of emulate.cpp\n");
  return 2;
}
