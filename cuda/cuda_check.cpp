#include "cuda_check.hpp"

#include <cstring>
#include <string>

#include "error.hpp"

namespace npairs::cuda {

namespace {

std::string where(const char* call, const char* file, int line) {
  const char* slash = std::strrchr(file, '/');
  return std::string(call) + " failed at " + (slash ? slash + 1 : file) + ":" +
         std::to_string(line) + ": ";
}

}  // namespace

void throw_cuda_error(cudaError_t status, const char* call, const char* file, int line) {
  // Reset the thread's last-error state, so that a later launch check does not
  // report this (non-sticky) error a second time.
  (void)cudaGetLastError();
  fail(status == cudaErrorMemoryAllocation ? NPAIRS_ERROR_OUT_OF_MEMORY : NPAIRS_ERROR_DEVICE,
       where(call, file, line) + cudaGetErrorString(status));
}

void throw_cublas_error(cublasStatus_t status, const char* call, const char* file, int line) {
  fail(status == CUBLAS_STATUS_ALLOC_FAILED ? NPAIRS_ERROR_OUT_OF_MEMORY : NPAIRS_ERROR_DEVICE,
       where(call, file, line) + cublasGetStatusString(status));
}

}  // namespace npairs::cuda
