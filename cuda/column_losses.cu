#include <cstdint>

#include "column_losses.cuh"
#include "cuda_check.hpp"
#include "launch.cuh"
#include "row_group.cuh"
#include "row_math.hpp"

namespace npairs::cuda {

namespace {

constexpr int kColumnLossThreads = 256;

// A thread per column, grid-stride over columns.
template <class T>
__global__ __launch_bounds__(kColumnLossThreads) void column_losses_kernel(ColumnLossesArgs<T> args) {
  using C = compute_t<T>;
  const C upstream = args.grad_loss ? to_compute(args.grad_loss[0]) : C(1);
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t j = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; j < args.cols; j += stride) {
    const RowStats<C> s = args.columns[j];
    if (args.column_losses) args.column_losses[j] = row_loss(s);
    if (args.coeffs) args.coeffs[j] = row_grad_coeffs(s, upstream);
  }
}

}  // namespace

template <class T>
void launch_column_losses(const ColumnLossesArgs<T>& args, const DeviceLimits& limits, cudaStream_t stream) {
  if (args.cols == 0) return;
  const auto kernel = column_losses_kernel<T>;
  const int64_t blocks = ceil_div(args.cols, kColumnLossThreads);
  launch(kernel, grid_size(kernel, kColumnLossThreads, 0, blocks, limits), kColumnLossThreads, 0, stream, args);
}

#define NPAIRS_INSTANTIATE(T) \
  template void launch_column_losses(const ColumnLossesArgs<T>&, const DeviceLimits&, cudaStream_t);
NPAIRS_FOR_EACH_DTYPE(NPAIRS_INSTANTIATE)
#undef NPAIRS_INSTANTIATE

}  // namespace npairs::cuda
