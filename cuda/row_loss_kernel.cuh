// The fused row kernel: for every row of logits, its softmax statistics, its
// weighted loss and, when wanted, its row of dL/dS, reading the row once
// (row_kernel_plan.hpp says how a row is covered).
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "dtype.cuh"
#include "row_kernel_plan.hpp"
#include "row_math.hpp"

namespace npairs::cuda {

template <class T>
struct RowLossArgs {
  using C = compute_t<T>;
  const T* logits;  // [rows, cols]; z_ij = (logits[i, j] * logit_scale.hi) * logit_scale.lo
  // 1/tau as two factors finite in C (row_math.hpp): S/tau is finite
  // wherever it fits in C, even when 1/tau does not.
  LogitScale<C> logit_scale;
  int64_t rows;
  int64_t cols;
  const T* sample_weight;  // [rows], or nullptr for ones
  const T* grad_loss;      // [rows] or [1], or nullptr for ones
  bool grad_loss_per_row;  // grad_loss is [rows] (reduction NONE)
  C grad_factor;           // multiplies g_i * w_i * (softmax - T) in grad_logits
  T* row_losses;           // [rows] w_i * loss_i (reduction NONE), or nullptr
  C* row_losses_to_sum;    // [rows] the same in C, for the scalar reductions, or nullptr
  T* grad_logits;          // [rows, cols] dL/dS, or nullptr; may be `logits`
};

// Queued on `stream`. Targets is LabelTargets or GramTargets (targets.cuh) of
// value type compute_t<T>.
template <class T, class Targets>
void launch_row_loss(const RowLossArgs<T>& args, const Targets& targets,
                     const DeviceLimits& limits, cudaStream_t stream);

}  // namespace npairs::cuda
