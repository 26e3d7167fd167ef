// Symmetric calls (NPAIRS_FLAG_SYMMETRIC): the column direction's statistics
// of one tile of logits merged into the columns' running ones, an online
// log-sum-exp over the row blocks in their fixed order.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "dtype.cuh"
#include "logit_tile.cuh"
#include "row_kernel_plan.hpp"
#include "row_math.hpp"

namespace npairs::cuda {

template <class T>
struct TileColumnStatsArgs : LogitTileArgs<T> {
  using C = compute_t<T>;
  bool first;                 // the first row block: columns start from row_stats_empty
  RowStats<C>* columns;       // [cols], in and out: the tile's columns' running statistics
};

// columns[j] = row_stats_merge(first ? row_stats_empty : columns[j], stats of
// column j of the tile over its rows), queued on `stream`. Targets as for
// launch_tile_row_stats (tile_row_stats.cuh): q_ij of the tile's row i and
// column j, the same weights the column direction normalises per column.
// The result depends only on the tile's shape and values, not on the device.
template <class T, class Targets>
void launch_tile_column_stats(const TileColumnStatsArgs<T>& args, const Targets& targets,
                              const DeviceLimits& limits, cudaStream_t stream);

}  // namespace npairs::cuda
