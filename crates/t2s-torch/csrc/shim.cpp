// What t2s-worker needs of libtorch that tch does not bind: CUDA graph capture and replay (a
// thin C ABI over at::cuda::CUDAGraph and c10's stream pool), the device properties doctor
// reports, the switch of SDPA's cuDNN attention backend and libtorch's (Kineto) profiler. Only
// out-of-line libtorch/c10 functions are called, so the object links against libtorch_cuda and
// libc10_cuda alone (no direct cudart reference). Every entry point catches exceptions and
// returns the message instead.
#include <ATen/Context.h>
#include <ATen/cuda/CUDAGraph.h>
#include <torch/csrc/autograd/profiler_kineto.h>
#include <c10/cuda/CUDAFunctions.h>
#include <c10/cuda/CUDAStream.h>

#include "guarded.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <optional>

// Declared in ATen/cuda/CUDAContextLight.h, whose other includes (cuBLAS, cuSPARSE) need
// headers PyPI's CUDA packages do not ship; this one declaration is all we use.
namespace at::cuda {
cudaDeviceProp* getDeviceProperties(c10::DeviceIndex device);
}

namespace {

struct Graph {
  at::cuda::CUDAGraph graph;
  c10::DeviceIndex device;
  // The stream current before `enter`, restored by `leave`.
  std::optional<c10::cuda::CUDAStream> previous;
};

}  // namespace

using t2s::guarded;

extern "C" {

void* t2s_graph_new(int device, char** err) {
  Graph* g = nullptr;
  guarded(err, [&] {
    g = new Graph();
    g->device = static_cast<c10::DeviceIndex>(device);
  });
  return g;
}

// Make a side stream current (capture cannot run on the default stream); warm-up work and the
// capture itself run there.
int t2s_graph_enter(void* h, char** err) {
  auto* g = static_cast<Graph*>(h);
  return guarded(err, [&] {
    c10::cuda::device_synchronize();
    g->previous = c10::cuda::getCurrentCUDAStream(g->device);
    c10::cuda::setCurrentCUDAStream(c10::cuda::getStreamFromPool(false, g->device));
  });
}

int t2s_graph_capture_begin(void* h, char** err) {
  auto* g = static_cast<Graph*>(h);
  return guarded(err, [&] {
    c10::cuda::device_synchronize();
    g->graph.capture_begin();
  });
}

int t2s_graph_capture_end(void* h, char** err) {
  auto* g = static_cast<Graph*>(h);
  return guarded(err, [&] { g->graph.capture_end(); });
}

// Back to the stream that was current before `enter`, after the side stream's work is done.
int t2s_graph_leave(void* h, char** err) {
  auto* g = static_cast<Graph*>(h);
  return guarded(err, [&] {
    c10::cuda::device_synchronize();
    if (g->previous) {
      c10::cuda::setCurrentCUDAStream(*g->previous);
      g->previous.reset();
    }
  });
}

int t2s_graph_replay(void* h, char** err) {
  auto* g = static_cast<Graph*>(h);
  return guarded(err, [&] { g->graph.replay(); });
}

void t2s_graph_free(void* h) { delete static_cast<Graph*>(h); }

void t2s_free_message(char* m) { free(m); }

// The device's name (NUL-terminated into `name`), total memory in bytes and compute
// capability, from the properties libtorch caches (for `doctor`).
int t2s_cuda_device_info(int device, char* name, int name_len, unsigned long long* total_bytes,
                         int* major, int* minor, char** err) {
  return guarded(err, [&] {
    const cudaDeviceProp* p = at::cuda::getDeviceProperties(static_cast<c10::DeviceIndex>(device));
    snprintf(name, static_cast<size_t>(name_len), "%s", p->name);
    *total_bytes = p->totalGlobalMem;
    *major = p->major;
    *minor = p->minor;
  });
}

// Whether SDPA may choose cuDNN attention (libtorch's own setting, which the
// `torch.backends.cuda.enable_cudnn_sdp` switch sets in Python).
int t2s_sdp_set_cudnn(int enabled, char** err) {
  return guarded(err, [&] { at::globalContext().setSDPUseCuDNN(enabled != 0); });
}

int t2s_sdp_cudnn_enabled() { return at::globalContext().userEnabledCuDNNSDP() ? 1 : 0; }

// Which SDPA backends may serve (libtorch's torch.backends.cuda.enable_*_sdp switches): bit 0
// flash, 1 memory-efficient, 2 math, 3 cuDNN, 4 FlashAttention-3 (Hopper, where the build has
// it). `t2s_sdp_set_backends` sets all five from `mask`; `t2s_sdp_backends` reads them.
int t2s_sdp_set_backends(int mask, char** err) {
  return guarded(err, [&] {
    auto& ctx = at::globalContext();
    ctx.setSDPUseFlash((mask & 1) != 0);
    ctx.setSDPUseMemEfficient((mask & 2) != 0);
    ctx.setSDPUseMath((mask & 4) != 0);
    ctx.setSDPUseCuDNN((mask & 8) != 0);
    ctx.setSDPUseFA3((mask & 16) != 0);
  });
}

int t2s_sdp_backends() {
  const auto& ctx = at::globalContext();
  return (ctx.userEnabledFlashSDP() ? 1 : 0) | (ctx.userEnabledMemEfficientSDP() ? 2 : 0) |
         (ctx.userEnabledMathSDP() ? 4 : 0) | (ctx.userEnabledCuDNNSDP() ? 8 : 0) |
         (ctx.userEnabledFA3SDP() ? 16 : 0);
}

// Start libtorch's Kineto profiler on this thread (and the autograd threads it starts): CPU
// ops with their input shapes and dtypes and the FLOPs of the matrix ops (what
// bench/traffic.py models memory traffic from), and with `cuda` the CUDA kernels and runtime
// calls (through CUPTI).
int t2s_profile_start(int cuda, char** err) {
  return guarded(err, [&] {
    using namespace torch::profiler::impl;
    const ProfilerConfig config(ProfilerState::KINETO, /*report_input_shapes=*/true,
                                /*profile_memory=*/false, /*with_stack=*/false,
                                /*with_flops=*/true);
    std::set<ActivityType> activities{ActivityType::CPU};
    if (cuda) activities.insert(ActivityType::CUDA);
    torch::autograd::profiler::prepareProfiler(config, activities);
    torch::autograd::profiler::enableProfiler(config, activities);
  });
}

// Stop the profiler and save what it saw as a Chrome trace (JSON) at `path`.
int t2s_profile_stop(const char* path, char** err) {
  return guarded(err, [&] { torch::autograd::profiler::disableProfiler()->save(path); });
}

}  // extern "C"
