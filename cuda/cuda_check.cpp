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
  // The thread's last-error state is left alone: the launches check their own
  // result (launch.cuh), and it may hold an error of the caller's.
  fail(status == cudaErrorMemoryAllocation ? NPAIRS_ERROR_OUT_OF_MEMORY : NPAIRS_ERROR_DEVICE,
       where(call, file, line) + cudaGetErrorString(status));
}

void throw_cublas_error(cublasStatus_t status, const char* call, const char* file, int line) {
  const npairs_status kind = status == CUBLAS_STATUS_ALLOC_FAILED     ? NPAIRS_ERROR_OUT_OF_MEMORY
                             : status == CUBLAS_STATUS_NOT_SUPPORTED ? NPAIRS_ERROR_UNSUPPORTED
                                                                     : NPAIRS_ERROR_DEVICE;
  fail(kind, where(call, file, line) + cublasGetStatusString(status));
}

}  // namespace npairs::cuda
