#include <algorithm>

#include "dtype.cuh"
#include "l2_gradient.cuh"
#include "launch.cuh"
#include "row_math.hpp"

namespace npairs::cuda {

namespace {

constexpr int kBlock = 256;
constexpr int64_t kMaxBlocks = 4096;

template <class T, class C = compute_t<T>>
__global__ __launch_bounds__(kBlock) void l2_gradient_kernel(const T* x, int64_t count, C factor,
                                                             const T* grad_loss, T* grad) {
  const C scale = grad_loss ? factor * to_compute(*grad_loss) : factor;
  const int64_t stride = int64_t(gridDim.x) * kBlock;
  for (int64_t k = int64_t(blockIdx.x) * kBlock + threadIdx.x; k < count; k += stride)
    grad[k] = from_compute<T>(scale * to_compute(x[k]));
}

}  // namespace

template <class T>
void launch_l2_gradient(const T* x, int64_t count, double factor, const T* grad_loss, T* grad,
                        cudaStream_t stream) {
  if (count == 0) return;
  const auto blocks = static_cast<unsigned>(std::min(ceil_div(count, kBlock), kMaxBlocks));
  launch(l2_gradient_kernel<T>, blocks, kBlock, 0, stream, x, count,
         static_cast<compute_t<T>>(factor), grad_loss, grad);
}

#define NPAIRS_INSTANTIATE(T) \
  template void launch_l2_gradient(const T*, int64_t, double, const T*, T*, cudaStream_t);
NPAIRS_FOR_EACH_DTYPE(NPAIRS_INSTANTIATE)

}  // namespace npairs::cuda
