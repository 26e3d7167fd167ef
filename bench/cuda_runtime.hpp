// The few CUDA runtime and cuBLAS entry points the bench needs, loaded at run
// time with dlopen(), so that the bench neither includes CUDA headers nor
// links CUDA: it builds and runs (CPU only) wherever the library does.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "bench_case.hpp"
#include "timing.hpp"

namespace bench {

class CudaRuntime {
 public:
  CudaRuntime() = default;
  CudaRuntime(const CudaRuntime&) = delete;
  CudaRuntime& operator=(const CudaRuntime&) = delete;
  ~CudaRuntime();

  // Loads libcudart (required) and libcublas (optional: without it the GEMM
  // ceiling is skipped); false with *why set when libcudart cannot be used.
  bool load(int device, std::string* why);
  bool has_cublas() const { return cublas_ != nullptr; }
  const std::string& library() const { return cudart_name_; }
  std::string device_name() const;

  // Each returns false after printing what failed to stderr.
  bool allocate(void** ptr, size_t bytes, const char* what) const;
  void release(void* ptr) const;
  bool upload(void* device, const void* host, size_t bytes, const char* what) const;
  bool download(void* host, const void* device, size_t bytes, const char* what) const;
  bool copy_on_device(void* dst, const void* src, size_t bytes) const;
  bool fill_bytes(void* ptr, int value, size_t bytes) const;
  bool synchronize() const;
  // Row-major C = op(A) op(B) in the dtype's precision (TF32 when allowed;
  // F16 and BF16 on tensor cores with float32 accumulation).
  bool gemm(npairs_dtype dtype, bool tf32, const Gemm& g, const void* a, const void* b,
            void* c) const;

 private:
  bool ok(int status, const char* what) const;
  template <class F>
  bool symbol(void* library, const char* name, F* out, std::string* why);

  void* cudart_ = nullptr;
  void* cublas_library_ = nullptr;
  void* cublas_ = nullptr;  // cublasHandle_t
  std::string cudart_name_;
  int device_ = 0;
  int (*malloc_)(void**, size_t) = nullptr;
  int (*free_)(void*) = nullptr;
  int (*memcpy_)(void*, const void*, size_t, int) = nullptr;
  int (*memset_)(void*, int, size_t) = nullptr;
  int (*set_device_)(int) = nullptr;
  int (*synchronize_)() = nullptr;
  int (*device_properties_)(void*, int) = nullptr;
  const char* (*error_string_)(int) = nullptr;
  int (*cublas_destroy_)(void*) = nullptr;
  int (*cublas_gemm_)(void*, int, int, int, int, int, const void*, const void*, int, int,
                      const void*, int, int, const void*, void*, int, int, int, int) = nullptr;
};

// Device buffers freed together.
class DeviceBuffers {
 public:
  explicit DeviceBuffers(const CudaRuntime& runtime) : runtime_(runtime) {}
  DeviceBuffers(const DeviceBuffers&) = delete;
  DeviceBuffers& operator=(const DeviceBuffers&) = delete;
  ~DeviceBuffers();
  void* add(size_t bytes, const char* what);  // nullptr on failure

 private:
  const CudaRuntime& runtime_;
  std::vector<void*> buffers_;
};

// The GPU's ceilings for a case, on device buffers: a device-to-device copy
// moving `bytes` in all, and library_gemms(spec) alone through cuBLAS.
bool time_device_copy(const CudaRuntime& runtime, double bytes, int warmup, int repeats,
                      Stats* out);
bool time_cublas_gemms(const CudaRuntime& runtime, const CaseSpec& spec, int warmup, int repeats,
                       Stats* out);

}  // namespace bench
