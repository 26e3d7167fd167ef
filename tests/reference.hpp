// An independent float64 (or long double) reference of SPEC section 1,
// written with plain loops straight from the formulas. It never calls the
// library or src/row_math.hpp, so that the tests compare two independent
// implementations of the same definitions.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace ref {

// Keras' reduction names (same numbering as the C API, kept separate on
// purpose so the reference does not depend on the library's header).
enum class Reduction { None = 0, Sum = 1, SumOverBatchSize = 2 };

struct Problem {
  int64_t rows = 0;  // R
  int64_t cols = 0;  // M (already resolved: never 0 unless R = 0 with shared targets)
  // Targets: labels (column_labels empty: the same as labels) or multilabels
  // (column_multilabels empty: the same as multilabels).
  bool multilabel = false;
  std::vector<int64_t> labels, column_labels;
  int64_t num_classes = 0;  // K
  std::vector<double> multilabels, column_multilabels;
  // Logits: similarity [R, M], or anchors [R, D] and positives [M, D].
  bool embeddings = false;
  int64_t dim = 0;  // D
  std::vector<double> similarity, anchors, positives;
  // When set, S = A P^T is rounded by it before the division by tau: the
  // 16-bit dtypes store the computed similarity in the dtype.
  double (*round_similarity)(double) = nullptr;
  std::vector<double> sample_weight;  // empty: ones
  std::vector<double> grad_loss;      // empty: ones; [1] for scalar reductions, [R] for NONE
  Reduction reduction = Reduction::SumOverBatchSize;
  double temperature = 1.0;
  double reg_lambda = 0.0;
  // SPEC section 5: the mean of the row loss and the column loss.
  bool symmetric = false;
};

template <class Real>
struct Result {
  bool valid = true;            // false: a row without positive or a negative multi-label
  int64_t first_bad_row = -1;   // the first row without positive (when that is the problem)
  std::string error;            // why the input is invalid
  int64_t first_bad_column = -1;  // symmetric: the first column without positive row
  std::vector<Real> row_loss;   // [R] unweighted loss_i
  std::vector<Real> column_loss;  // [M] loss'_j (symmetric only)
  std::vector<Real> loss;       // [R] for NONE, else [1]
  std::vector<Real> grad_similarity;  // [R, M]
  std::vector<Real> grad_anchors;     // [R, D] (embeddings only)
  std::vector<Real> grad_positives;   // [M, D] (embeddings only)
  Real grad_temperature = 0;          // dL/dtau = -(1/tau) sum_ij (dL/dz_ij) z_ij
  std::vector<Real> targets;          // [R, M] the row-normalised T
  std::vector<Real> logits;           // [R, M] z = S / tau
};

// Computes everything (loss and all gradients) in Real arithmetic.
template <class Real>
Result<Real> compute(const Problem& problem);

extern template Result<double> compute<double>(const Problem&);
extern template Result<long double> compute<long double>(const Problem&);

// The value of the scalar (or sum_i g_i * loss_i for NONE) that the upstream
// gradient g multiplies: the function whose gradient the reference (and the
// library) return. Used by finite-difference tests.
double upstream_objective(const Problem& problem, const Result<double>& result);

}  // namespace ref
