// The scalar reductions (SUM, SUM_OVER_BATCH_SIZE): one deterministic block
// sums the weighted row losses and adds the L2 term.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "dtype.cuh"

namespace npairs::cuda {

template <class T>
struct ScalarLossArgs {
  const compute_t<T>* row_losses;  // [rows] w_i * loss_i, in the compute type
  int64_t rows;
  double reduction_factor;    // r
  const double* l2_partials;  // [2 * kSumSquaresParts] sums of |a|^2 then |p|^2, or nullptr
  double l2_anchor_factor;    // 0.25 * reg_lambda / R
  double l2_positive_factor;  // 0.25 * reg_lambda / M
  T* loss;                    // [1]
};

// *loss = r * sum_i row_losses[i] (+ the L2 term), summed in double in a fixed
// order; queued on `stream`.
template <class T>
void launch_scalar_loss(const ScalarLossArgs<T>& args, cudaStream_t stream);

}  // namespace npairs::cuda
