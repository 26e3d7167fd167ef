#include <cstdint>

#include "cuda_check.hpp"
#include "launch.cuh"
#include "row_group.cuh"
#include "row_math.hpp"
#include "targets.cuh"
#include "tile_symmetric_stats.cuh"

namespace npairs::cuda {

namespace {

// A block of kSubWarps warps takes a sub-tile at a time: warp w its rows
// [16 w, 16 w + 16), each lane kLaneColumns of its columns in 16-byte
// vectors p * 32 + lane (so that each load of the warp is coalesced). Per
// row, the warp's max first, then each lane's terms about it summed across
// the warp; per column, each lane adds its rows in order and the warps are
// merged by a fixed tree through shared memory. Every order is fixed: the
// partials depend only on the tile's shape and values.
constexpr int kSubWarps = 8;
constexpr int kSubThreads = kSubWarps * kWarpSize;
constexpr int kWarpRows = int(kSymmetricSubRows) / kSubWarps;
constexpr int kLaneColumns = int(kSymmetricSubCols) / kWarpSize;
static_assert(kWarpRows * kSubWarps == kSymmetricSubRows && kLaneColumns * kWarpSize == kSymmetricSubCols);
static_assert(kLaneColumns % kVector<double> == 0 && kLaneColumns % kVector<__half> == 0);

template <class T, class Targets>
__global__ __launch_bounds__(kSubThreads) void tile_symmetric_partials_kernel(TileSymmetricStatsArgs<T> args,
                                                                              Targets targets, RowAccess<T> access) {
  using C = compute_t<T>;
  constexpr int V = kVector<T>;
  constexpr int kLaneVectors = kLaneColumns / V;
  // Half the warps hand their column statistics to the other half, halving
  // until warp 0 holds the sub-tile's.
  __shared__ RowStats<C> column_share[kSubWarps / 2][kSymmetricSubCols];
  const int lane = int(threadIdx.x % kWarpSize), warp = int(threadIdx.x / kWarpSize);
  const int64_t row_subs = ceil_div(args.rows, kSymmetricSubRows);
  const int64_t col_subs = ceil_div(args.cols, kSymmetricSubCols);
  const int64_t vectors = ceil_div(args.cols, V);
  RowStats<C>* const row_partials = args.partials;                                // [col_subs][rows]
  RowStats<C>* const column_partials = args.partials + args.rows * col_subs;      // [row_subs][cols]
  // Element k = p V + e of a lane is column lane_column(k) of its sub-tile.
  const auto lane_column = [lane](int k) { return ((k / V) * kWarpSize + lane) * V + k % V; };

  for (int64_t s = blockIdx.x; s < row_subs * col_subs; s += gridDim.x) {
    const int64_t row_sub = s / col_subs, col_sub = s % col_subs;
    const int64_t first_vector = col_sub * (kSymmetricSubCols / V);
    const int64_t row_begin = row_sub * kSymmetricSubRows + int64_t(warp) * kWarpRows;
    const int64_t row_end = row_begin + kWarpRows < args.rows ? row_begin + kWarpRows : args.rows;
    // The lane's vectors of row i; past the tile's columns, zeros (not added).
    const auto load_row = [&](int64_t i, Pack<T>* packs) {
#pragma unroll
      for (int p = 0; p < kLaneVectors; ++p) {
        const int64_t v = first_vector + p * kWarpSize + lane;
        packs[p] = v < vectors ? access.load(args.logits + i * args.ld, v) : Pack<T>{};
      }
    };
    RowStats<C> columns[kLaneColumns];
#pragma unroll
    for (int k = 0; k < kLaneColumns; ++k) columns[k] = row_stats_empty<C>();
    Pack<T> packs[kLaneVectors];
    if (row_begin < row_end) load_row(row_begin, packs);
    for (int64_t i = row_begin; i < row_end; ++i) {
      // The next row's loads in flight while this row is added and summed
      // (the last row loads itself again).
      Pack<T> next[kLaneVectors];
      load_row(i + 1 < row_end ? i + 1 : i, next);
      const typename Targets::Row target = targets.row(i);
      C z[kLaneColumns], q[kLaneColumns];
      bool valid[kLaneColumns];
      C lane_max = C(-INFINITY);
#pragma unroll
      for (int p = 0; p < kLaneVectors; ++p) {
        const int64_t v = first_vector + p * kWarpSize + lane;
#pragma unroll
        for (int e = 0; e < V; ++e) {
          const int k = p * V + e;
          valid[k] = v < vectors && access.valid(v, e);
          z[k] = to_compute(packs[p].v[e]) * args.logit_scale.hi * args.logit_scale.lo;
          q[k] = valid[k] ? target.weight(v * V + e) : C(0);
          if (valid[k]) {
            lane_max = z[k] > lane_max ? z[k] : lane_max;
            row_stats_add(columns[k], z[k], q[k]);
          }
        }
      }
      // The row's terms about its max over the sub-tile, known before any
      // exp, so that the warp only adds them (no rescaling merges).
      RowStats<C> row{warp_max(lane_max), C(0), C(0), C(0)};
#pragma unroll
      for (int k = 0; k < kLaneColumns; ++k)
        if (valid[k]) row_stats_accumulate(row, z[k], q[k]);
      row.sum_exp = warp_sum(row.sum_exp);
      row.pos = warp_sum(row.pos);
      row.pos_gap = warp_sum(row.pos_gap);
      if (lane == 0) row_partials[col_sub * args.rows + i] = row;
#pragma unroll
      for (int p = 0; p < kLaneVectors; ++p) packs[p] = next[p];
    }
    for (int half = kSubWarps / 2; half > 0; half /= 2) {
      if (warp >= half && warp < 2 * half) {
#pragma unroll
        for (int k = 0; k < kLaneColumns; ++k) column_share[warp - half][lane_column(k)] = columns[k];
      }
      __syncthreads();
      if (warp < half) {
#pragma unroll
        for (int k = 0; k < kLaneColumns; ++k)
          columns[k] = row_stats_merge(columns[k], column_share[warp][lane_column(k)]);
      }
      __syncthreads();  // the next step (or sub-tile) rewrites column_share
    }
    if (warp == 0) {
#pragma unroll
      for (int k = 0; k < kLaneColumns; ++k) {
        const int64_t j = col_sub * kSymmetricSubCols + lane_column(k);
        if (j < args.cols) column_partials[row_sub * args.cols + j] = columns[k];
      }
    }
  }
}

constexpr int kMergeThreads = 256;

// A thread per row, then per column, grid-stride: the running statistics
// merged with the partials in sub-tile order.
template <class T>
__global__ __launch_bounds__(kMergeThreads) void tile_symmetric_merge_kernel(TileSymmetricStatsArgs<T> args) {
  using C = compute_t<T>;
  const int64_t row_subs = ceil_div(args.rows, kSymmetricSubRows);
  const int64_t col_subs = ceil_div(args.cols, kSymmetricSubCols);
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t t = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; t < args.rows + args.cols; t += stride) {
    const bool is_row = t < args.rows;
    const int64_t index = is_row ? t : t - args.rows;
    const int64_t count = is_row ? col_subs : row_subs;
    const int64_t step = is_row ? args.rows : args.cols;
    const RowStats<C>* partials = args.partials + (is_row ? index : args.rows * col_subs + index);
    RowStats<C>* out = is_row ? args.running + index : args.column_running + index;
    RowStats<C> merged = (is_row ? args.first_rows : args.first_columns) ? row_stats_empty<C>() : *out;
    for (int64_t k = 0; k < count; ++k) merged = row_stats_merge(merged, partials[k * step]);
    *out = merged;
  }
}

}  // namespace

template <class T, class Targets>
void launch_tile_symmetric_stats(const TileSymmetricStatsArgs<T>& args, const Targets& targets,
                                 const DeviceLimits& limits, cudaStream_t stream) {
  const int64_t sub_tiles = ceil_div(args.rows, kSymmetricSubRows) * ceil_div(args.cols, kSymmetricSubCols);
  if (sub_tiles > 0) {
    const auto kernel = tile_symmetric_partials_kernel<T, Targets>;
    const RowAccess<T> access{args.cols, rows_vectorized<T>(args.cols, args.ld, args.logits, nullptr)};
    launch(kernel, grid_size(kernel, kSubThreads, 0, sub_tiles, limits), kSubThreads, 0, stream, args, targets,
           access);
  }
  const int64_t outputs = args.rows + args.cols;
  if (outputs > 0) {
    const auto kernel = tile_symmetric_merge_kernel<T>;
    launch(kernel, grid_size(kernel, kMergeThreads, 0, ceil_div(outputs, kMergeThreads), limits), kMergeThreads, 0,
           stream, args);
  }
}

#define NPAIRS_INSTANTIATE(T, ...)                                                              \
  template void launch_tile_symmetric_stats(const TileSymmetricStatsArgs<T>&, const __VA_ARGS__&, \
                                            const DeviceLimits&, cudaStream_t);
NPAIRS_FOR_EACH_DTYPE(NPAIRS_INSTANTIATE_EACH_TARGETS)
#undef NPAIRS_INSTANTIATE

}  // namespace npairs::cuda
