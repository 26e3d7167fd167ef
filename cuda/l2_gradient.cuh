// The L2 term of the embedding gradients, written before the GEMM that adds
// (dL/dS) P or (dL/dS)^T A to it.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

namespace npairs::cuda {

// grad[k] = factor * g * x[k] for k < count, where g = *grad_loss (the scalar
// upstream gradient, device memory) or 1 when grad_loss is nullptr. Queued on
// `stream`.
template <class T>
void launch_l2_gradient(const T* x, int64_t count, double factor, const T* grad_loss, T* grad,
                        cudaStream_t stream);

}  // namespace npairs::cuda
