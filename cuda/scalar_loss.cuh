// The scalar reductions (SUM, SUM_OVER_BATCH_SIZE): one deterministic block
// sums the weighted row losses and adds the L2 term.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "dtype.cuh"
#include "sum_squares.cuh"

namespace npairs::cuda {

template <class T>
struct ScalarLossArgs {
  const compute_t<T>* row_losses;  // [rows] w_i * loss_i, in the compute type
  int64_t rows;
  double reduction_factor;    // r
  // Symmetric calls: the column losses [cols] and their factor (r' / 2),
  // added after the rows'; nullptr: none.
  const compute_t<T>* column_losses;
  int64_t cols;
  double column_factor;
  const double* l2_partials;  // [2 * kSumSquaresParts] sums of |a|^2 then |p|^2, or nullptr
  double l2_anchor_factor;    // 0.25 * reg_lambda / R
  double l2_positive_factor;  // 0.25 * reg_lambda / M
  T* loss;                    // [1]
};

// *loss = r * sum_i row_losses[i] (+ column_factor * sum_j column_losses[j])
// (+ the L2 term), summed in double in a fixed order; queued on `stream`.
// Also dL/dtau = -sum_i moments_i: any [rows] sum with a factor.
template <class T>
void launch_scalar_loss(const ScalarLossArgs<T>& args, cudaStream_t stream);

// The scalar loss of a call from its weighted row losses (and a symmetric
// call's column losses, with their factor): the sums of squares of the
// embeddings first when reg_lambda > 0 (l2_partials then holds
// 2 * kSumSquaresParts doubles), then the reduction. Both CUDA paths use it.
template <class T>
void launch_scalar_loss_with_l2(const compute_t<T>* row_losses, int64_t rows, int64_t cols, int64_t dim,
                                double reduction_factor, double reg_lambda, const T* anchors,
                                const T* positives, double* l2_partials, T* loss, cudaStream_t stream,
                                const compute_t<T>* column_losses = nullptr, double column_factor = 0) {
  if (reg_lambda > 0) {
    launch_sum_squares(anchors, rows * dim, l2_partials, stream);
    launch_sum_squares(positives, cols * dim, l2_partials + kSumSquaresParts, stream);
  }
  ScalarLossArgs<T> args{};
  args.row_losses = row_losses;
  args.rows = rows;
  args.reduction_factor = reduction_factor;
  args.column_losses = column_losses;
  args.cols = cols;
  args.column_factor = column_factor;
  args.l2_partials = l2_partials;
  args.l2_anchor_factor = 0.25 * reg_lambda / double(rows);
  args.l2_positive_factor = 0.25 * reg_lambda / double(cols);
  args.loss = loss;
  launch_scalar_loss(args, stream);
}

}  // namespace npairs::cuda
