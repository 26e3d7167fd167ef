// The tile of logits that the tile kernels (tile_row_stats, tile_symmetric_stats,
// tile_row_gradient) read: the arguments their own ones start with.
#pragma once

#include <cstdint>

#include "dtype.cuh"
#include "row_math.hpp"

namespace npairs::cuda {

template <class T>
struct LogitTileArgs {
  using C = compute_t<T>;
  const T* logits;            // [rows, cols], rows `ld` apart
  int64_t ld;
  LogitScale<C> logit_scale;  // z_ij = (logits[i * ld + j] * hi) * lo
  int64_t rows;
  int64_t cols;
};

}  // namespace npairs::cuda
