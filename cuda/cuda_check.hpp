// The one error check of the CUDA backend: NPAIRS_CUDA_CHECK(call) turns a
// failed cudaError_t or cublasStatus_t into npairs::Error (OUT_OF_MEMORY for
// allocation failures, UNSUPPORTED for cuBLAS's NOT_SUPPORTED, DEVICE
// otherwise) whose message names the call, file, line and the runtime's own
// description.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime_api.h>

namespace npairs::cuda {

[[noreturn]] void throw_cuda_error(cudaError_t status, const char* call, const char* file,
                                   int line);
[[noreturn]] void throw_cublas_error(cublasStatus_t status, const char* call, const char* file,
                                     int line);

inline void check(cudaError_t status, const char* call, const char* file, int line) {
  if (status != cudaSuccess) throw_cuda_error(status, call, file, line);
}

inline void check(cublasStatus_t status, const char* call, const char* file, int line) {
  if (status != CUBLAS_STATUS_SUCCESS) throw_cublas_error(status, call, file, line);
}

}  // namespace npairs::cuda

#define NPAIRS_CUDA_CHECK(call) ::npairs::cuda::check((call), #call, __FILE__, __LINE__)
