#include <cstdint>

#include "cuda_check.hpp"
#include "launch.cuh"
#include "row_group.cuh"
#include "row_math.hpp"
#include "targets.cuh"
#include "tile_column_stats.cuh"

namespace npairs::cuda {

namespace {

// A block takes kWarpSize adjacent columns at a time (a warp reads a row's
// columns together: coalesced), its kColumnLanes warps the rows in turn:
// warp w rows w, w + kColumnLanes, ... Each thread adds its elements in row
// order, and the first warp merges the lanes' statistics in lane order: the
// result does not depend on timing or on the grid.
constexpr int kColumnLanes = 16;
constexpr int kColumnThreads = kWarpSize * kColumnLanes;

template <class T, class Targets>
__global__ __launch_bounds__(kColumnThreads) void tile_column_stats_kernel(TileColumnStatsArgs<T> args,
                                                                           Targets targets) {
  using C = compute_t<T>;
  __shared__ RowStats<C> lane_stats[kColumnLanes][kWarpSize];
  const int column_in_group = int(threadIdx.x % kWarpSize), lane = int(threadIdx.x / kWarpSize);
  const int64_t groups = (args.cols + kWarpSize - 1) / kWarpSize;
  for (int64_t g = blockIdx.x; g < groups; g += gridDim.x) {
    const int64_t j = g * kWarpSize + column_in_group;
    RowStats<C> stats = row_stats_empty<C>();
    if (j < args.cols) {
      for (int64_t i = lane; i < args.rows; i += kColumnLanes) {
        const C z = to_compute(args.logits[i * args.ld + j]) * args.logit_scale.hi * args.logit_scale.lo;
        row_stats_add(stats, z, targets.row(i).weight(j));
      }
    }
    lane_stats[lane][column_in_group] = stats;
    __syncthreads();
    if (lane == 0 && j < args.cols) {
      RowStats<C> column = args.first ? row_stats_empty<C>() : args.columns[j];
      RowStats<C> tile = lane_stats[0][column_in_group];
      for (int l = 1; l < kColumnLanes; ++l) tile = row_stats_merge(tile, lane_stats[l][column_in_group]);
      args.columns[j] = row_stats_merge(column, tile);
    }
    __syncthreads();  // the next group rewrites lane_stats
  }
}

}  // namespace

template <class T, class Targets>
void launch_tile_column_stats(const TileColumnStatsArgs<T>& args, const Targets& targets,
                              const DeviceLimits& limits, cudaStream_t stream) {
  if (args.cols == 0) return;
  const auto kernel = tile_column_stats_kernel<T, Targets>;
  const int64_t groups = (args.cols + kWarpSize - 1) / kWarpSize;
  launch(kernel, grid_size(kernel, kColumnThreads, 0, groups, limits), kColumnThreads, 0, stream, args, targets);
}

#define NPAIRS_INSTANTIATE(T, ...)                                                          \
  template void launch_tile_column_stats(const TileColumnStatsArgs<T>&, const __VA_ARGS__&, \
                                         const DeviceLimits&, cudaStream_t);
NPAIRS_FOR_EACH_DTYPE(NPAIRS_INSTANTIATE_EACH_TARGETS)
#undef NPAIRS_INSTANTIATE

}  // namespace npairs::cuda
