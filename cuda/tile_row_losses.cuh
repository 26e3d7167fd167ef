// Tiles of columns (src/tiled_loss.hpp): the weighted row losses of a row
// block from its rows' final statistics.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "dtype.cuh"
#include "row_kernel_plan.hpp"
#include "row_math.hpp"

namespace npairs::cuda {

template <class T>
struct TileRowLossesArgs {
  using C = compute_t<T>;
  const RowStats<C>* running;  // [rows]: the statistics of the whole rows
  int64_t rows;
  const T* sample_weight;      // [rows], or nullptr for ones
  T* row_losses;               // [rows] w_i * loss_i (reduction NONE), or nullptr
  C* row_losses_to_sum;        // [rows] the same in C, for the scalar reductions, or nullptr
};

// Queued on `stream`.
template <class T>
void launch_tile_row_losses(const TileRowLossesArgs<T>& args, const DeviceLimits& limits,
                            cudaStream_t stream);

}  // namespace npairs::cuda
