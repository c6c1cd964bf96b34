// See jit.h.
#include "jit.h"

#include <c10/cuda/CUDAStream.h>

#include <cuda.h>
#include <dirent.h>
#include <dlfcn.h>
#include <nvrtc.h>

#include <mutex>
#include <stdexcept>
#include <unordered_map>
#include <vector>

// Exported by libtorch_cuda; their headers (ATen/native/cuda/jit_utils.h,
// ATen/cuda/CUDAContextLight.h) include others PyPI's CUDA packages do not ship.
namespace at::cuda {
cudaDeviceProp* getDeviceProperties(c10::DeviceIndex device);
namespace jit {
// Makes the device's primary context current on this thread.
void initializeCudaContext();
}  // namespace jit
}  // namespace at::cuda

namespace t2s::jit {
namespace {

// csrc/fused_kernels.cu as a string literal (build.rs wraps it in a raw string).
const char* kSource =
#include "fused_kernels.inc"
    ;

// --- NVRTC, loaded from the process or from the nvidia packages beside torch ---------------

struct Nvrtc {
  decltype(&nvrtcCreateProgram) create;
  decltype(&nvrtcCompileProgram) compile;
  decltype(&nvrtcGetProgramLogSize) log_size;
  decltype(&nvrtcGetProgramLog) log;
  decltype(&nvrtcGetCUBINSize) cubin_size;
  decltype(&nvrtcGetCUBIN) cubin;
  decltype(&nvrtcGetPTXSize) ptx_size;
  decltype(&nvrtcGetPTX) ptx;
  decltype(&nvrtcDestroyProgram) destroy;
  decltype(&nvrtcGetErrorString) error_string;
  decltype(&nvrtcGetNumSupportedArchs) num_archs;
  decltype(&nvrtcGetSupportedArchs) archs;
  decltype(&nvrtcVersion) version;
};

void* symbol(void* lib, const char* lib_name, const char* name) {
  void* p = dlsym(lib, name);
  if (p == nullptr) throw std::runtime_error(std::string(lib_name) + " lacks " + name);
  return p;
}

// The directory of the libtorch_cuda this code is linked with (…/site-packages/torch/lib).
std::string torch_lib_dir() {
  Dl_info info{};
  if (dladdr(reinterpret_cast<void*>(&at::cuda::jit::initializeCudaContext), &info) == 0 ||
      info.dli_fname == nullptr)
    return "";
  std::string path = info.dli_fname;
  const auto slash = path.rfind('/');
  return slash == std::string::npos ? "" : path.substr(0, slash);
}

// NVRTC opens libnvrtc-builtins by its soname, which a directory outside the loader's search
// path (the nvidia packages beside torch) does not satisfy; loaded first by its full path, it
// is found by that soname.
void preload_builtins(const std::string& dir) {
  DIR* d = opendir(dir.c_str());
  if (d == nullptr) return;
  while (const dirent* e = readdir(d)) {
    const std::string name = e->d_name;
    if (name.rfind("libnvrtc-builtins.so", 0) == 0)
      dlopen((dir + "/" + name).c_str(), RTLD_NOW | RTLD_GLOBAL);
  }
  closedir(d);
}

void* open_nvrtc(std::string* tried) {
  std::vector<std::string> names = {"libnvrtc.so.13", "libnvrtc.so.12", "libnvrtc.so"};
  const std::string torch_lib = torch_lib_dir();
  if (!torch_lib.empty()) {
    for (const char* sub : {"/../../nvidia/cu13/lib/libnvrtc.so.13",
                            "/../../nvidia/cuda_nvrtc/lib/libnvrtc.so.12"})
      names.push_back(torch_lib + sub);
  }
  for (const auto& n : names) {
    if (n.find('/') != std::string::npos) preload_builtins(n.substr(0, n.rfind('/')));
    if (void* h = dlopen(n.c_str(), RTLD_NOW | RTLD_LOCAL)) return h;
    *tried += (tried->empty() ? "" : ", ") + n;
  }
  return nullptr;
}

const Nvrtc& nvrtc() {
  static Nvrtc api = [] {
    std::string tried;
    void* h = open_nvrtc(&tried);
    if (h == nullptr) throw std::runtime_error("libnvrtc not found (tried " + tried + ")");
    auto sym = [&](const char* name) { return symbol(h, "libnvrtc", name); };
    Nvrtc a{};
    a.create = reinterpret_cast<decltype(a.create)>(sym("nvrtcCreateProgram"));
    a.compile = reinterpret_cast<decltype(a.compile)>(sym("nvrtcCompileProgram"));
    a.log_size = reinterpret_cast<decltype(a.log_size)>(sym("nvrtcGetProgramLogSize"));
    a.log = reinterpret_cast<decltype(a.log)>(sym("nvrtcGetProgramLog"));
    a.cubin_size = reinterpret_cast<decltype(a.cubin_size)>(sym("nvrtcGetCUBINSize"));
    a.cubin = reinterpret_cast<decltype(a.cubin)>(sym("nvrtcGetCUBIN"));
    a.ptx_size = reinterpret_cast<decltype(a.ptx_size)>(sym("nvrtcGetPTXSize"));
    a.ptx = reinterpret_cast<decltype(a.ptx)>(sym("nvrtcGetPTX"));
    a.destroy = reinterpret_cast<decltype(a.destroy)>(sym("nvrtcDestroyProgram"));
    a.error_string = reinterpret_cast<decltype(a.error_string)>(sym("nvrtcGetErrorString"));
    a.num_archs = reinterpret_cast<decltype(a.num_archs)>(sym("nvrtcGetNumSupportedArchs"));
    a.archs = reinterpret_cast<decltype(a.archs)>(sym("nvrtcGetSupportedArchs"));
    a.version = reinterpret_cast<decltype(a.version)>(sym("nvrtcVersion"));
    return a;
  }();
  return api;
}

void nvrtc_check(nvrtcResult r, const char* what) {
  if (r != NVRTC_SUCCESS)
    throw std::runtime_error(std::string(what) + ": " + nvrtc().error_string(r));
}

// Compile the kernels for compute capability major.minor: a cubin when this NVRTC knows the
// architecture, else PTX for the newest one it knows (the driver compiles it).
std::string compile_for(int major, int minor, bool* is_cubin) {
  const Nvrtc& api = nvrtc();
  int arch = major * 10 + minor;
  int n = 0;
  nvrtc_check(api.num_archs(&n), "nvrtcGetNumSupportedArchs");
  std::vector<int> archs(static_cast<size_t>(n));
  if (n > 0) nvrtc_check(api.archs(archs.data()), "nvrtcGetSupportedArchs");
  bool known = false;
  int newest = 0;
  for (int a : archs) {
    known |= a == arch;
    if (a <= arch && a > newest) newest = a;
  }
  *is_cubin = known;
  if (!known) arch = newest > 0 ? newest : 80;
  const std::string opt_arch =
      std::string("--gpu-architecture=") + (known ? "sm_" : "compute_") + std::to_string(arch);
  const char* opts[] = {opt_arch.c_str(), "--std=c++17"};
  nvrtcProgram prog = nullptr;
  nvrtc_check(api.create(&prog, kSource, "t2s_fused.cu", 0, nullptr, nullptr),
              "nvrtcCreateProgram");
  const nvrtcResult rc = api.compile(prog, 2, opts);
  size_t log_len = 0;
  api.log_size(prog, &log_len);
  std::string log(log_len, '\0');
  if (log_len > 1) api.log(prog, log.data());
  if (rc != NVRTC_SUCCESS) {
    api.destroy(&prog);
    throw std::runtime_error(std::string("NVRTC compile (") + opt_arch + "): " +
                             api.error_string(rc) + "\n" + log);
  }
  size_t size = 0;
  std::string image;
  if (known) {
    nvrtc_check(api.cubin_size(prog, &size), "nvrtcGetCUBINSize");
    image.resize(size);
    nvrtc_check(api.cubin(prog, image.data()), "nvrtcGetCUBIN");
  } else {
    nvrtc_check(api.ptx_size(prog, &size), "nvrtcGetPTXSize");
    image.resize(size);
    nvrtc_check(api.ptx(prog, image.data()), "nvrtcGetPTX");
  }
  api.destroy(&prog);
  return image;
}

// --- the driver API (libcuda.so.1, which every CUDA machine has) ----------------------------

struct Driver {
  decltype(&cuModuleLoadData) load;
  decltype(&cuModuleGetFunction) function;
  decltype(&cuLaunchKernel) launch;
  decltype(&cuGetErrorString) error_string;
};

const Driver& driver() {
  static Driver api = [] {
    void* h = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
    if (h == nullptr) throw std::runtime_error("libcuda.so.1 not found");
    auto sym = [&](const char* name) { return symbol(h, "libcuda", name); };
    Driver d{};
    d.load = reinterpret_cast<decltype(d.load)>(sym("cuModuleLoadData"));
    d.function = reinterpret_cast<decltype(d.function)>(sym("cuModuleGetFunction"));
    d.launch = reinterpret_cast<decltype(d.launch)>(sym("cuLaunchKernel"));
    d.error_string = reinterpret_cast<decltype(d.error_string)>(sym("cuGetErrorString"));
    return d;
  }();
  return api;
}

void cu_check(CUresult r, const char* what) {
  if (r != CUDA_SUCCESS) {
    const char* s = nullptr;
    driver().error_string(r, &s);
    throw std::runtime_error(std::string(what) + ": " + (s ? s : "unknown CUDA error"));
  }
}

struct Module {
  CUfunction fn[KernelCount];
};

std::mutex modules_mu;
std::unordered_map<int, Module> modules;  // per device, under modules_mu

// Load `image` (a cubin, or NUL-terminated PTX) on `device` and look up every entry point.
Module load_module(c10::DeviceIndex device, const std::string& image) {
  DeviceGuard guard(device);
  at::cuda::jit::initializeCudaContext();
  CUmodule mod = nullptr;
  cu_check(driver().load(&mod, image.data()), "cuModuleLoadData");
  Module m{};
  for (int k = 0; k < KernelCount; ++k)
    cu_check(driver().function(&m.fn[k], mod, kKernels[k]), "cuModuleGetFunction");
  return m;
}

std::string compile_for_device(c10::DeviceIndex device) {
  DeviceGuard guard(device);
  const auto props = at::cuda::getDeviceProperties(device);
  bool is_cubin = false;
  return compile_for(props->major, props->minor, &is_cubin);
}

// The kernels of one device: loaded by `load`, else compiled and loaded on first use.
const Module& module_for(c10::DeviceIndex device) {
  std::lock_guard<std::mutex> lock(modules_mu);
  auto it = modules.find(device);
  if (it != modules.end()) return it->second;
  return modules.emplace(device, load_module(device, compile_for_device(device))).first->second;
}

}  // namespace

std::string compile(int major, int minor, bool* is_cubin) {
  return compile_for(major, minor, is_cubin);
}

void load(c10::DeviceIndex device, const std::string& image) {
  std::lock_guard<std::mutex> lock(modules_mu);
  if (modules.count(device) == 0) modules.emplace(device, load_module(device, image));
}

void nvrtc_version(int* major, int* minor) {
  nvrtc_check(nvrtc().version(major, minor), "nvrtcVersion");
}

int multiprocessors(const at::Tensor& on) {
  return at::cuda::getDeviceProperties(on.get_device())->multiProcessorCount;
}

void launch(const at::Tensor& on, Kernel k, dim3 grid, dim3 block, void** args) {
  const auto device = on.get_device();
  const Module& m = module_for(device);
  at::cuda::jit::initializeCudaContext();
  const auto stream = c10::cuda::getCurrentCUDAStream(device).stream();
  cu_check(driver().launch(m.fn[k], grid.x, grid.y, grid.z, block.x, block.y, block.z, 0,
                           stream, args, nullptr),
           kKernels[k]);
}

}  // namespace t2s::jit
