// Symmetric calls (NPAIRS_FLAG_SYMMETRIC): the statistics of both directions
// from one read of a tile of logits. Each row's are merged into the rows'
// running ones (the tiles of a row block in their fixed order), each column's
// into the columns' running ones (the row blocks in their fixed order): an
// online log-sum-exp both ways.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "dtype.cuh"
#include "logit_tile.cuh"
#include "row_kernel_plan.hpp"
#include "row_math.hpp"

namespace npairs::cuda {

// A block reads sub-tiles of kSymmetricSubRows x kSymmetricSubCols logits and
// writes one partial statistic per row and per column of each.
constexpr int64_t kSymmetricSubRows = 128;
constexpr int64_t kSymmetricSubCols = 256;

// The partial statistics a tile of rows x cols needs in scratch: a row's per
// column sub-tile, then a column's per row sub-tile.
constexpr int64_t tile_symmetric_stats_partials(int64_t rows, int64_t cols) {
  return rows * ceil_div(cols, kSymmetricSubCols) + cols * ceil_div(rows, kSymmetricSubRows);
}

template <class T>
struct TileSymmetricStatsArgs : LogitTileArgs<T> {
  using C = compute_t<T>;
  bool first_rows;               // the rows' first tile: running starts from row_stats_empty
  bool first_columns;            // the columns' first row block: likewise column_running
  RowStats<C>* running;          // [rows], in and out
  RowStats<C>* column_running;   // [cols], in and out
  RowStats<C>* partials;         // scratch: tile_symmetric_stats_partials(rows, cols) entries
};

// running[i] = row_stats_merge(first_rows ? row_stats_empty : running[i],
// stats of row i of the tile), and column_running[j] likewise with the stats
// of column j over the tile's rows, queued on `stream` as two kernels (the
// partials of each sub-tile, then their merge in sub-tile order). Targets as
// for launch_tile_row_stats (tile_row_stats.cuh): q_ij of the tile's row i and
// column j, which the column direction normalises per column. The result
// depends only on the tile's shape and values, not on the device or timing.
template <class T, class Targets>
void launch_tile_symmetric_stats(const TileSymmetricStatsArgs<T>& args, const Targets& targets,
                                 const DeviceLimits& limits, cudaStream_t stream);

}  // namespace npairs::cuda
