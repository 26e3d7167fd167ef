// Symmetric calls (NPAIRS_FLAG_SYMMETRIC): each column's loss and gradient
// coefficients from the columns' final statistics, once every row block's
// statistics are merged.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "dtype.cuh"
#include "row_kernel_plan.hpp"
#include "row_math.hpp"

namespace npairs::cuda {

template <class T>
struct ColumnLossesArgs {
  using C = compute_t<T>;
  const RowStats<C>* columns;  // [cols]: the statistics of the whole columns
  int64_t cols;
  const T* grad_loss;          // [1] the upstream gradient g, or nullptr for 1
  C* column_losses;            // [cols] loss'_j, or nullptr
  RowGradCoeffs<C>* coeffs;    // [cols] with scale g (the factors are the gradient kernel's), or nullptr
};

// Queued on `stream`.
template <class T>
void launch_column_losses(const ColumnLossesArgs<T>& args, const DeviceLimits& limits, cudaStream_t stream);

}  // namespace npairs::cuda
