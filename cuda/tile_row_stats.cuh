// Tiles of columns (src/tiled_loss.hpp): the row statistics of one tile of
// logits merged into the row block's running ones, an online log-sum-exp over
// the tiles of a block in their fixed order.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "dtype.cuh"
#include "logit_tile.cuh"
#include "row_kernel_plan.hpp"
#include "row_math.hpp"

namespace npairs::cuda {

template <class T>
struct TileRowStatsArgs : LogitTileArgs<T> {
  using C = compute_t<T>;
  bool first;                 // the block's first tile: running starts from row_stats_empty
  RowStats<C>* running;       // [rows], in and out
};

// running[i] = row_stats_merge(first ? row_stats_empty : running[i], stats of
// row i of the tile), queued on `stream`. Targets is LabelTargets (its
// column_labels at the tile's first column) or GramTargets (the tile's
// overlaps, rows `cols` apart) of targets.cuh, of value type compute_t<T>.
template <class T, class Targets>
void launch_tile_row_stats(const TileRowStatsArgs<T>& args, const Targets& targets,
                           const DeviceLimits& limits, cudaStream_t stream);

}  // namespace npairs::cuda
