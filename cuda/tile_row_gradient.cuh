// Tiles of columns (src/tiled_loss.hpp): dL/dS of one tile of logits from its
// rows' final statistics (the running ones after the block's last tile).
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "dtype.cuh"
#include "logit_tile.cuh"
#include "row_kernel_plan.hpp"
#include "row_math.hpp"

namespace npairs::cuda {

template <class T>
struct TileRowGradientArgs : LogitTileArgs<T> {
  using C = compute_t<T>;
  const RowStats<C>* running;  // [rows]: the statistics of the whole rows
  const T* sample_weight;      // [rows], or nullptr for ones
  const T* grad_loss;          // [rows] or [1], or nullptr for ones
  bool grad_loss_per_row;      // grad_loss is [rows] (reduction NONE)
  C grad_factor;               // r / tau: multiplies g_i * w_i * (softmax - T)
  T* grad;                     // [rows, cols], rows `ld` apart: dL/dS; may be `logits`; nullptr: not written
  // Symmetric calls: the column direction's coefficients (column_losses.cuh,
  // scale g) of the tile's columns, [cols], and the factor of their term
  // (r' / r of the row direction's grad_factor); nullptr: rows only.
  const RowGradCoeffs<C>* column_coeffs;
  C column_grad_factor;
  // [rows] or nullptr: each row's sum_j dS_ij z_ij over the tile added in
  // (dL/dtau = -sum_ij dL/dS_ij z_ij), each direction's term shifted by its
  // own max (shifted_term), which leaves the sum as it is (each direction's
  // terms of a row or column sum to 0) and keeps it free of huge values.
  C* moments;
};

// grad[i * ld + j] = g_i w_i grad_factor (exp(z_ij - max_i) / sum_exp_i -
// q_ij / pos_i) (+ column_grad_factor g (exp(z_ij - max'_j) / sum_exp'_j -
// q_ij / pos'_j) with column coefficients), queued on `stream`. Targets as
// for launch_tile_row_stats.
template <class T, class Targets>
void launch_tile_row_gradient(const TileRowGradientArgs<T>& args, const Targets& targets,
                              const DeviceLimits& limits, cudaStream_t stream);

}  // namespace npairs::cuda
