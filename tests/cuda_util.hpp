// Helpers of the CUDA tests: the skip when no GPU backend is usable, and
// device mirrors of npt::Array (whole buffer, guards included) when the CUDA
// runtime is linked (NPAIRS_TEST_HAVE_CUDART).
#pragma once

#include "test_util.hpp"

#ifdef NPAIRS_TEST_HAVE_CUDART
#include <cuda_runtime.h>
#endif

// Skips the current test, with the reason, when the library has no usable
// CUDA backend here.
#define NPT_REQUIRE_CUDA()                                                                         \
  do {                                                                                             \
    if (npairs_backend_available(NPAIRS_BACKEND_CUDA) != 1)                                        \
      GTEST_SKIP() << "CUDA backend not usable here: npairs_backend_available(NPAIRS_BACKEND_CUDA) " \
                      "is 0 (library built without CUDA, or no GPU present)";                      \
  } while (0)

#ifdef NPAIRS_TEST_HAVE_CUDART
#define NPT_REQUIRE_CUDART() \
  do {                       \
  } while (0)
#define NPT_ASSERT_CUDA(expr)                                                        \
  do {                                                                               \
    const cudaError_t npt_err_ = (expr);                                             \
    ASSERT_EQ(npt_err_, cudaSuccess) << #expr << ": " << cudaGetErrorString(npt_err_); \
  } while (0)

namespace npt {

// A device copy of a host Array's whole buffer (guards included), so that
// poison and guard checks work unchanged after download().
class DeviceArray {
 public:
  DeviceArray() = default;
  explicit DeviceArray(const Array& host) : bytes_(host.bytes().size()), offset_(host.data_offset()) {
    if (bytes_ == 0) return;
    if (cudaMalloc(&ptr_, bytes_) != cudaSuccess) {
      ptr_ = nullptr;
      return;
    }
    if (cudaMemcpy(ptr_, host.bytes().data(), bytes_, cudaMemcpyHostToDevice) != cudaSuccess) {
      cudaFree(ptr_);
      ptr_ = nullptr;
    }
  }
  ~DeviceArray() {
    if (ptr_ != nullptr) cudaFree(ptr_);
  }
  DeviceArray(const DeviceArray&) = delete;
  DeviceArray& operator=(const DeviceArray&) = delete;
  bool ok() const { return bytes_ == 0 || ptr_ != nullptr; }
  void* data() const { return ptr_ ? static_cast<char*>(ptr_) + offset_ : nullptr; }
  // Copies a host array of the same size over the device buffer (new inputs
  // in the same device memory, as for a CUDA graph's replay).
  bool upload(const Array& host) {
    if (bytes_ == 0) return true;
    return host.bytes().size() == bytes_ &&
           cudaMemcpy(ptr_, host.bytes().data(), bytes_, cudaMemcpyHostToDevice) == cudaSuccess;
  }
  // Copies the device buffer back over the host array's bytes.
  bool download(Array& host) const {
    if (bytes_ == 0) return true;
    return host.bytes().size() == bytes_ &&
           cudaMemcpy(host.raw_bytes(), ptr_, bytes_, cudaMemcpyDeviceToHost) == cudaSuccess;
  }

 private:
  void* ptr_ = nullptr;
  std::size_t bytes_ = 0;
  std::size_t offset_ = 0;
};

}  // namespace npt
#else
#define NPT_REQUIRE_CUDART() \
  GTEST_SKIP() << "tests built without the CUDA runtime (CUDA toolkit not found): device-pointer path not tested"
#endif
