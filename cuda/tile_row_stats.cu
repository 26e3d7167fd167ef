#include <cstdint>

#include "cuda_check.hpp"
#include "launch.cuh"
#include "row_group.cuh"
#include "row_math.hpp"
#include "targets.cuh"
#include "tile_row_stats.cuh"

namespace npairs::cuda {

namespace {

// A warp or a block per row (Group), grid-stride over rows. Each thread adds
// its elements in a fixed order, the group merges them in a fixed order, and
// the group's first thread merges the tile into the running statistics: the
// result does not depend on timing.
template <class T, class Targets, class Group>
__global__ __launch_bounds__(kStreamedBlockThreads) void tile_row_stats_kernel(
    TileRowStatsArgs<T> args, Targets targets, RowAccess<T> access) {
  using C = compute_t<T>;
  __shared__ RowStats<C> warp_stats[kStreamedBlockThreads / kWarpSize];  // BlockGroup's
  const Group group = make_row_group<Group>(warp_stats);
  const int64_t vectors = ceil_div(args.cols, kVector<T>);
  for (int64_t i = group.first_row(); i < args.rows; i += group.row_stride()) {
    const typename Targets::Row target = targets.row(i);
    const T* logits = args.logits + i * args.ld;
    RowStats<C> stats = row_stats_empty<C>();
    for (int64_t v = group.rank(); v < vectors; v += group.size()) {
      const Pack<T> p = access.load(logits, v);
#pragma unroll
      for (int e = 0; e < kVector<T>; ++e)
        if (access.valid(v, e))
          row_stats_add(stats, to_compute(p.v[e]) * args.logit_scale.hi * args.logit_scale.lo,
                        target.weight(v * kVector<T> + e));
    }
    const RowStats<C> tile = group.merge(stats);
    if (group.rank() == 0)
      args.running[i] = row_stats_merge(args.first ? row_stats_empty<C>() : args.running[i], tile);
  }
}

}  // namespace

template <class T, class Targets>
void launch_tile_row_stats(const TileRowStatsArgs<T>& args, const Targets& targets,
                           const DeviceLimits& limits, cudaStream_t stream) {
  if (args.rows == 0) return;
  using C = compute_t<T>;
  const RowAccess<T> access{args.cols, rows_vectorized<T>(args.cols, args.ld, args.logits, nullptr)};
  launch(streamed_rows(args.rows, args.cols, sizeof(T)), tile_row_stats_kernel<T, Targets, BlockGroup<C>>,
         tile_row_stats_kernel<T, Targets, WarpGroup>, limits, stream, args, targets, access);
}

#define NPAIRS_INSTANTIATE(T, ...)                                                    \
  template void launch_tile_row_stats(const TileRowStatsArgs<T>&, const __VA_ARGS__&, \
                                      const DeviceLimits&, cudaStream_t);
NPAIRS_FOR_EACH_DTYPE(NPAIRS_INSTANTIATE_EACH_TARGETS)
#undef NPAIRS_INSTANTIATE

}  // namespace npairs::cuda
