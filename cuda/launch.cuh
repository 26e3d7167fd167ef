// Every kernel launch of the backend: cudaLaunchKernelEx, whose return is
// this launch's own result. A `<<<...>>>` launch can only be checked through
// cudaGetLastError, which also returns (and clears) an unrelated error the
// caller left pending, which the library must neither report nor swallow.
// tests/emulated/cuda_shim.hpp defines the include guard and its own launch.
#ifndef NPAIRS_CUDA_LAUNCH_CUH
#define NPAIRS_CUDA_LAUNCH_CUH

#include <cuda_runtime.h>

#include <cstddef>
#include <utility>

#include "cuda_check.hpp"

namespace npairs::cuda {

// Queues kernel(args...) on `stream`; throws Error when this launch fails.
template <class... Params, class... Args>
void launch(void (*kernel)(Params...), unsigned grid, unsigned threads, std::size_t shared_bytes,
            cudaStream_t stream, Args&&... args) {
  cudaLaunchConfig_t config{};
  config.gridDim = dim3(grid);
  config.blockDim = dim3(threads);
  config.dynamicSmemBytes = shared_bytes;
  config.stream = stream;
  NPAIRS_CUDA_CHECK(cudaLaunchKernelEx(&config, kernel, std::forward<Args>(args)...));
}

}  // namespace npairs::cuda

#endif  // NPAIRS_CUDA_LAUNCH_CUH
