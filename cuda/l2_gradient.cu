#include <algorithm>

#include "cuda_check.hpp"
#include "l2_gradient.cuh"

namespace npairs::cuda {

namespace {

constexpr int kBlock = 256;
constexpr int64_t kMaxBlocks = 4096;

template <class T>
__global__ __launch_bounds__(kBlock) void l2_gradient_kernel(const T* x, int64_t count, T factor,
                                                             const T* grad_loss, T* grad) {
  const T scale = grad_loss ? factor * *grad_loss : factor;
  const int64_t stride = int64_t(gridDim.x) * kBlock;
  for (int64_t k = int64_t(blockIdx.x) * kBlock + threadIdx.x; k < count; k += stride)
    grad[k] = scale * x[k];
}

}  // namespace

template <class T>
void launch_l2_gradient(const T* x, int64_t count, double factor, const T* grad_loss, T* grad,
                        cudaStream_t stream) {
  if (count == 0) return;
  const auto blocks = static_cast<unsigned>(std::min((count + kBlock - 1) / kBlock, kMaxBlocks));
  l2_gradient_kernel<<<blocks, kBlock, 0, stream>>>(x, count, static_cast<T>(factor), grad_loss,
                                                    grad);
  NPAIRS_CUDA_CHECK(cudaGetLastError());
}

template void launch_l2_gradient(const float*, int64_t, double, const float*, float*, cudaStream_t);
template void launch_l2_gradient(const double*, int64_t, double, const double*, double*,
                                 cudaStream_t);

}  // namespace npairs::cuda
