// The problem description the backends work from: the C structs' contents,
// checked against every argument rule of SPEC section 2 and resolved (column
// targets defaulted, cols defaulted), so a backend never re-checks arguments.
// Checks of the data itself (a row without positive, a negative multi-label)
// need to read the inputs and so live in the backends, before any output is
// written.
#pragma once

#include <cstdint>

#include "npairs/npairs.h"

namespace npairs {

struct Task {
  // Sizes: R rows, M cols, D embedding width (0 for similarity input), K
  // classes (0 for labels).
  int64_t rows = 0;
  int64_t cols = 0;
  int64_t dim = 0;
  int64_t classes = 0;
  npairs_dtype dtype = NPAIRS_F32;
  npairs_dtype label_dtype = NPAIRS_I32;

  // Targets: either labels/column_labels or multilabels/column_multilabels.
  // Column targets are resolved to the row targets when not given, and then
  // `shared_targets` is true: every row is its own positive.
  const void* labels = nullptr;
  const void* column_labels = nullptr;
  const void* multilabels = nullptr;
  const void* column_multilabels = nullptr;
  bool shared_targets = false;

  // Logits: either similarity or anchors and positives.
  const void* similarity = nullptr;
  const void* anchors = nullptr;
  const void* positives = nullptr;
  const void* sample_weight = nullptr;  // nullptr: ones
  const void* grad_loss = nullptr;      // nullptr: ones

  // Outputs; nullptr when not wanted.
  void* loss = nullptr;
  void* grad_similarity = nullptr;
  void* grad_anchors = nullptr;
  void* grad_positives = nullptr;
  void* grad_temperature = nullptr;  // [1] dL/dtau

  npairs_reduction reduction = NPAIRS_REDUCTION_SUM_OVER_BATCH_SIZE;
  double temperature = 1.0;
  double reg_lambda = 0.0;
  uint32_t flags = 0;

  bool multilabel() const { return multilabels != nullptr; }
  bool embeddings() const { return anchors != nullptr; }
  bool scalar_loss() const { return reduction != NPAIRS_REDUCTION_NONE; }
  bool wants_embedding_grads() const { return grad_anchors || grad_positives; }
  // dL/dS is needed when asked for or as the input of the embedding grads.
  bool wants_grad_similarity() const { return grad_similarity || wants_embedding_grads(); }
  // NPAIRS_FLAG_SYMMETRIC: the mean of the row and the column direction.
  bool symmetric() const { return (flags & NPAIRS_FLAG_SYMMETRIC) != 0u; }
  // A pass over the logits after their statistics: for dL/dS, or for dL/dtau
  // (a reduction of dL/dS_ij * z_ij).
  bool wants_gradient_pass() const { return wants_grad_similarity() || grad_temperature; }
  // r in SPEC section 1: 1/R for SUM_OVER_BATCH_SIZE (0 when R = 0), else 1.
  double reduction_factor() const { return batch_factor(rows); }
  // The same for the column direction of a symmetric call: 1/M or 1.
  double column_reduction_factor() const { return batch_factor(cols); }
  // The weight of each direction in the loss: 1/2 when symmetric, else 1.
  double direction_weight() const { return symmetric() ? 0.5 : 1.0; }

 private:
  double batch_factor(int64_t count) const {
    return reduction == NPAIRS_REDUCTION_SUM_OVER_BATCH_SIZE ? (count > 0 ? 1.0 / double(count) : 0.0)
                                                             : 1.0;
  }
};

// Builds the task from the caller's structs (full-size copies made by capi;
// options already defaulted when the caller passed NULL; grads zeroed when the
// caller passed NULL). Throws Error for every violated argument rule.
Task make_task(const npairs_options& options, const npairs_problem& problem,
               const void* grad_loss, void* loss, const npairs_gradients& grads);

// Size in bytes of one element of a dtype (0 for unknown values).
std::size_t dtype_size(npairs_dtype dtype);

}  // namespace npairs
