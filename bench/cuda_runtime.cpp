#include "cuda_runtime.hpp"

#include <dlfcn.h>

#include <array>
#include <cstdio>

namespace bench {
namespace {

// Values of the CUDA headers' enums (fixed across CUDA versions).
constexpr int kHostToDevice = 1, kDeviceToHost = 2, kDeviceToDevice = 3;
constexpr int kCudaR32F = 0, kCudaR64F = 1, kCudaR16F = 2, kCudaR16BF = 14;
constexpr int kComputeF32 = 68, kComputeF32FastTF32 = 77, kComputeF64 = 70;
constexpr int kOpN = 0, kOpT = 1, kGemmDefault = -1;

void* open_first(const std::vector<std::string>& names, std::string* opened) {
  for (const std::string& n : names) {
    if (void* handle = dlopen(n.c_str(), RTLD_NOW | RTLD_LOCAL)) {
      *opened = n;
      return handle;
    }
  }
  return nullptr;
}

// Versioned names first: those libnpairs itself loaded are then reused.
std::vector<std::string> candidates(const char* stem) {
  std::vector<std::string> names;
  for (const char* version : {".so.13", ".so.12", ".so"}) names.push_back(std::string(stem) + version);
#ifdef NPAIRS_BENCH_CUDA_LIBRARY_DIR
  names.push_back(std::string(NPAIRS_BENCH_CUDA_LIBRARY_DIR) + "/" + stem + ".so");
#endif
  return names;
}

}  // namespace

template <class F>
bool CudaRuntime::symbol(void* library, const char* name, F* out, std::string* why) {
  *out = reinterpret_cast<F>(dlsym(library, name));
  if (*out == nullptr && why != nullptr) *why = std::string("no ") + name + " in the CUDA library";
  return *out != nullptr;
}

bool CudaRuntime::load(int device, std::string* why) {
  cudart_ = open_first(candidates("libcudart"), &cudart_name_);
  if (cudart_ == nullptr) {
    *why = "cannot load libcudart";
    return false;
  }
  device_ = device;
  // cudaGetDeviceProperties is versioned (_v2) from CUDA 12 on.
  if (!symbol(cudart_, "cudaGetDeviceProperties_v2", &device_properties_, nullptr))
    symbol(cudart_, "cudaGetDeviceProperties", &device_properties_, nullptr);
  if (!symbol(cudart_, "cudaMalloc", &malloc_, why) || !symbol(cudart_, "cudaFree", &free_, why) ||
      !symbol(cudart_, "cudaMemcpy", &memcpy_, why) || !symbol(cudart_, "cudaMemset", &memset_, why) ||
      !symbol(cudart_, "cudaSetDevice", &set_device_, why) ||
      !symbol(cudart_, "cudaDeviceSynchronize", &synchronize_, why) ||
      !symbol(cudart_, "cudaGetErrorString", &error_string_, why))
    return false;
  if (!ok(set_device_(device), "cudaSetDevice")) {
    *why = "cudaSetDevice failed";
    return false;
  }
  // cuBLAS is optional: without it the GEMM ceiling is skipped.
  std::string cublas_name;
  cublas_library_ = open_first(candidates("libcublas"), &cublas_name);
  int (*create)(void**) = nullptr;
  const bool found = cublas_library_ != nullptr &&
                     symbol(cublas_library_, "cublasCreate_v2", &create, nullptr) &&
                     symbol(cublas_library_, "cublasDestroy_v2", &cublas_destroy_, nullptr) &&
                     symbol(cublas_library_, "cublasGemmEx", &cublas_gemm_, nullptr);
  if (found && create(&cublas_) != 0) cublas_ = nullptr;
  return true;
}

CudaRuntime::~CudaRuntime() {
  if (cublas_ != nullptr) cublas_destroy_(cublas_);
  // The libraries stay loaded: libnpairs may share them.
}

bool CudaRuntime::ok(int status, const char* what) const {
  if (status == 0) return true;
  std::fprintf(stderr, "npairs_bench: %s failed: %s (%d)\n", what,
               error_string_ ? error_string_(status) : "?", status);
  return false;
}

std::string CudaRuntime::device_name() const {
  // cudaDeviceProp begins with char name[256]; the buffer is larger than the
  // struct of any CUDA version.
  alignas(64) static std::array<char, 16384> properties;
  if (device_properties_ == nullptr || device_properties_(properties.data(), device_) != 0)
    return "unknown GPU";
  properties[255] = '\0';
  return properties.data();
}

bool CudaRuntime::allocate(void** ptr, size_t bytes, const char* what) const {
  return ok(malloc_(ptr, bytes), what);
}
void CudaRuntime::release(void* ptr) const { free_(ptr); }
bool CudaRuntime::upload(void* device, const void* host, size_t bytes, const char* what) const {
  return ok(memcpy_(device, host, bytes, kHostToDevice), what);
}
bool CudaRuntime::download(void* host, const void* device, size_t bytes, const char* what) const {
  return ok(memcpy_(host, device, bytes, kDeviceToHost), what);
}
bool CudaRuntime::copy_on_device(void* dst, const void* src, size_t bytes) const {
  return ok(memcpy_(dst, src, bytes, kDeviceToDevice), "cudaMemcpy(device to device)");
}
bool CudaRuntime::fill_bytes(void* ptr, int value, size_t bytes) const {
  return ok(memset_(ptr, value, bytes), "cudaMemset");
}
bool CudaRuntime::synchronize() const { return ok(synchronize_(), "cudaDeviceSynchronize"); }

bool CudaRuntime::gemm(npairs_dtype dtype, bool tf32, const Gemm& g, const void* a, const void* b,
                       void* c) const {
  // Row-major X is column-major X^T: cuBLAS computes C^T = op(B)^T op(A)^T,
  // as the library's gemm_row_major does. 16-bit types: A, B and C in the
  // dtype, float32 accumulation (tensor cores), float alpha and beta.
  int type = kCudaR32F, compute = tf32 && g.tf32_allowed ? kComputeF32FastTF32 : kComputeF32;
  if (dtype == NPAIRS_F64) {
    type = kCudaR64F;
    compute = kComputeF64;
  } else if (dtype == NPAIRS_F16 || dtype == NPAIRS_BF16) {
    type = dtype == NPAIRS_F16 ? kCudaR16F : kCudaR16BF;
    compute = kComputeF32;
  }
  const float one_f = 1, zero_f = 0;
  const double one_d = 1, zero_d = 0;
  const bool f64 = dtype == NPAIRS_F64;
  const void* one = f64 ? static_cast<const void*>(&one_d) : &one_f;
  const void* zero = f64 ? static_cast<const void*>(&zero_d) : &zero_f;
  const int lda = int(g.trans_a ? g.m : g.k), ldb = int(g.trans_b ? g.k : g.n);
  return ok(cublas_gemm_(cublas_, g.trans_b ? kOpT : kOpN, g.trans_a ? kOpT : kOpN, int(g.n),
                         int(g.m), int(g.k), one, b, type, ldb, a, type, lda, zero, c, type,
                         int(g.n), compute, kGemmDefault),
            "cublasGemmEx");
}

DeviceBuffers::~DeviceBuffers() {
  for (void* p : buffers_) runtime_.release(p);
}

void* DeviceBuffers::add(size_t bytes, const char* what) {
  void* p = nullptr;
  if (!runtime_.allocate(&p, bytes, what)) return nullptr;
  buffers_.push_back(p);
  return p;
}

// 0x3c in every byte is a small normal float (0.0115), double (1.5e-18),
// bfloat16 (0.0115) and float16 (1.06): GEMM operands that are neither zeros
// nor denormals, without a host copy.
constexpr int kSmallValueByte = 0x3c;

bool time_device_copy(const CudaRuntime& runtime, double bytes, int warmup, int repeats,
                      Stats* out) {
  const size_t half = size_t(bytes / 2);
  DeviceBuffers buffers(runtime);
  void* source = buffers.add(half, "cudaMalloc(copy source)");
  void* destination = buffers.add(half, "cudaMalloc(copy destination)");
  if (source == nullptr || destination == nullptr || !runtime.fill_bytes(source, kSmallValueByte, half))
    return false;
  return time_runs(warmup, repeats, [&] {
    return runtime.copy_on_device(destination, source, half) && runtime.synchronize();
  }, out);
}

bool time_cublas_gemms(const CudaRuntime& runtime, const CaseSpec& spec, int warmup, int repeats,
                       Stats* out) {
  DeviceBuffers buffers(runtime);
  std::array<void*, size_t(Matrix::count)> matrices{};
  for (size_t m = 0; m < matrices.size(); ++m) {
    const size_t bytes = size_t(matrix_elements(spec, Matrix(m))) * spec.value_size();
    if (bytes == 0) continue;
    matrices[m] = buffers.add(bytes, "cudaMalloc(GEMM operand)");
    if (matrices[m] == nullptr || !runtime.fill_bytes(matrices[m], kSmallValueByte, bytes)) return false;
  }
  auto data = [&](Matrix m) { return matrices[size_t(m)]; };
  const std::vector<Gemm> gemms = library_gemms(spec);
  return time_runs(warmup, repeats, [&] {
    for (const Gemm& g : gemms)
      if (!runtime.gemm(spec.dtype, spec.allow_tf32, g, data(g.a), data(g.b), data(g.c))) return false;
    return runtime.synchronize();
  }, out);
}

}  // namespace bench
