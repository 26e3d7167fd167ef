#include <cstdint>

#include "cuda_check.hpp"
#include "launch.cuh"
#include "row_group.cuh"
#include "row_math.hpp"
#include "tile_row_losses.cuh"

namespace npairs::cuda {

namespace {

constexpr int kLossThreads = 256;

// A thread per row, grid-stride over rows.
template <class T>
__global__ __launch_bounds__(kLossThreads) void tile_row_losses_kernel(TileRowLossesArgs<T> args) {
  using C = compute_t<T>;
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < args.rows; i += stride) {
    const C weight = args.sample_weight ? to_compute(args.sample_weight[i]) : C(1);
    const C weighted_loss = weight * row_loss(args.running[i]);
    if (args.row_losses) args.row_losses[i] = from_compute<T>(weighted_loss);
    if (args.row_losses_to_sum) args.row_losses_to_sum[i] = weighted_loss;
  }
}

}  // namespace

template <class T>
void launch_tile_row_losses(const TileRowLossesArgs<T>& args, const DeviceLimits& limits,
                            cudaStream_t stream) {
  if (args.rows == 0) return;
  const auto kernel = tile_row_losses_kernel<T>;
  const int64_t blocks = ceil_div(args.rows, kLossThreads);
  launch(kernel, grid_size(kernel, kLossThreads, 0, blocks, limits), kLossThreads, 0, stream, args);
}

#define NPAIRS_INSTANTIATE(T) \
  template void launch_tile_row_losses(const TileRowLossesArgs<T>&, const DeviceLimits&, cudaStream_t);
NPAIRS_FOR_EACH_DTYPE(NPAIRS_INSTANTIATE)
#undef NPAIRS_INSTANTIATE

}  // namespace npairs::cuda
