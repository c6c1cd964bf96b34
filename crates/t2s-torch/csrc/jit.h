// Run-time compilation and launch of csrc/fused_kernels.cu (used by fused.cpp): NVRTC (the
// libnvrtc PyPI's torch ships, found beside torch when not on the loader's path) compiles the
// source (fused.rs keeps the image on disk and hands it to `load`; a device without one
// compiles on first launch), the CUDA driver API loads it once per device and launches on
// libtorch's current stream. Only out-of-line libtorch/c10 functions are called, so the object
// links against libtorch and c10 alone.
#pragma once

#include <ATen/ATen.h>
#include <c10/cuda/CUDAFunctions.h>

#include <vector_types.h>

#include <string>

namespace t2s::jit {

// The kernels of csrc/fused_kernels.cu, by entry point.
inline constexpr const char* kKernels[] = {
    "t2s_rms_fwd",     "t2s_rms_bwd",     "t2s_gelu_gate_fwd", "t2s_gelu_gate_bwd",
    "t2s_qk_rope_fwd", "t2s_qk_rope_bwd", "t2s_ce_rows",       "t2s_lora_drop_fwd",
    "t2s_lora_drop_bwd", "t2s_lora_mask",     "t2s_lora_down_fwd", "t2s_lora_down_dx",
    "t2s_lora_down_da",  "t2s_lora_up_fwd",   "t2s_lora_up_du",    "t2s_lora_up_db",
    "t2s_lora_mask_apply", "t2s_lora_mask_sum"};
enum Kernel {
  RmsFwd,
  RmsBwd,
  GeluGateFwd,
  GeluGateBwd,
  QkRopeFwd,
  QkRopeBwd,
  CeRows,
  LoraDropFwd,
  LoraDropBwd,
  LoraMask,
  LoraDownFwd,
  LoraDownDx,
  LoraDownDa,
  LoraUpFwd,
  LoraUpDu,
  LoraUpDb,
  LoraMaskApply,
  LoraMaskSum,
  KernelCount
};
static_assert(sizeof(kKernels) / sizeof(kKernels[0]) == KernelCount, "one name per kernel");

// Compile the kernels for compute capability major.minor with NVRTC alone (no device): a
// cubin when NVRTC knows the architecture, else PTX for the newest one it knows.
std::string compile(int major, int minor, bool* is_cubin);

// Load an image `compile` made (e.g. kept on disk) for CUDA device `device`, unless the device
// has its kernels already. Throws when the driver rejects the image or it lacks an entry point.
void load(c10::DeviceIndex device, const std::string& image);

// The version of the NVRTC that `compile` uses.
void nvrtc_version(int* major, int* minor);

// The multiprocessors of `on`'s device (what a grid must fill).
int multiprocessors(const at::Tensor& on);

// Launch kernel `k` on the current stream of `on`'s device with the kernel's `args`.
void launch(const at::Tensor& on, Kernel k, dim3 grid, dim3 block, void** args);

// Makes `device` current for its lifetime (c10's CUDAGuard inlines CUDA runtime calls, and
// this object links against libtorch and c10 alone).
class DeviceGuard {
 public:
  explicit DeviceGuard(const at::Device& device) : previous_(c10::cuda::current_device()) {
    if (device.index() != previous_) c10::cuda::set_device(device.index());
  }
  explicit DeviceGuard(c10::DeviceIndex device) : DeviceGuard(at::Device(at::kCUDA, device)) {}
  ~DeviceGuard() {
    if (c10::cuda::current_device() != previous_) c10::cuda::set_device(previous_);
  }
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;

 private:
  c10::DeviceIndex previous_;
};

}  // namespace t2s::jit
