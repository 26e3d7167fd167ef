#include "task.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>

#include "error.hpp"

namespace npairs {
namespace {

[[noreturn]] void invalid(const std::string& message) {
  fail(NPAIRS_ERROR_INVALID_ARGUMENT, message);
}

void require(bool condition, const std::string& message) {
  if (!condition) invalid(message);
}

// Products of the sizes index byte offsets: keep them far from int64 overflow.
void require_fits(int64_t a, int64_t b, const char* what) {
  constexpr int64_t limit = std::numeric_limits<int64_t>::max() / 16;
  if (a != 0 && b > limit / a) {
    fail(NPAIRS_ERROR_UNSUPPORTED, std::string("problem is too large: ") + what +
                                       " has more elements than this library can index");
  }
}

void check_options(const npairs_options& options) {
  const npairs_reduction reduction = options.reduction;
  require(reduction == NPAIRS_REDUCTION_NONE || reduction == NPAIRS_REDUCTION_SUM ||
              reduction == NPAIRS_REDUCTION_SUM_OVER_BATCH_SIZE,
          "options.reduction is not a valid npairs_reduction (" + std::to_string(reduction) + ")");
  require(std::isfinite(options.temperature) && options.temperature > 0.0,
          "options.temperature must be finite and greater than 0");
  require(std::isfinite(options.reg_lambda) && options.reg_lambda >= 0.0,
          "options.reg_lambda must be finite and at least 0");
  require((options.flags & ~(NPAIRS_FLAG_ALLOW_TF32 | NPAIRS_FLAG_DEFER_CHECKS | NPAIRS_FLAG_SYMMETRIC)) == 0u,
          "options.flags has unknown bits set");
  require(!(options.flags & NPAIRS_FLAG_SYMMETRIC) || reduction != NPAIRS_REDUCTION_NONE,
          "options.flags NPAIRS_FLAG_SYMMETRIC needs a scalar options.reduction, not NPAIRS_REDUCTION_NONE");
}

// F16 and BF16 are valid here; whether a backend computes them is its call.
void check_dtype(npairs_dtype dtype) {
  require(dtype == NPAIRS_F32 || dtype == NPAIRS_F64 || dtype == NPAIRS_F16 || dtype == NPAIRS_BF16,
          "problem.dtype is not a valid floating npairs_dtype (" + std::to_string(dtype) + ")");
}

}  // namespace

std::size_t dtype_size(npairs_dtype dtype) {
  switch (dtype) {
    case NPAIRS_F32: return 4;
    case NPAIRS_F64: return 8;
    case NPAIRS_F16: return 2;
    case NPAIRS_BF16: return 2;
    case NPAIRS_I32: return 4;
    case NPAIRS_I64: return 8;
    default: return 0;
  }
}

Task make_task(const npairs_options& options, const npairs_problem& problem,
               const void* grad_loss, void* loss, const npairs_gradients& grads) {
  check_options(options);
  check_dtype(problem.dtype);

  Task t;
  t.reduction = options.reduction;
  t.temperature = options.temperature;
  t.reg_lambda = options.reg_lambda;
  t.flags = options.flags;
  t.dtype = problem.dtype;

  require(problem.rows >= 0, "problem.rows must not be negative");
  require(problem.cols >= 0, "problem.cols must not be negative");
  t.rows = problem.rows;
  t.cols = problem.cols == 0 ? problem.rows : problem.cols;

  // Targets: exactly one kind.
  const bool has_labels = problem.labels != nullptr;
  const bool has_multilabels = problem.multilabels != nullptr;
  require(has_labels || has_multilabels, "problem.labels and problem.multilabels are both NULL");
  require(!(has_labels && has_multilabels),
          "problem.labels and problem.multilabels are both set; give one kind of targets");
  if (has_labels) {
    require(problem.column_multilabels == nullptr,
            "problem.column_multilabels is set with problem.labels; use problem.column_labels");
    require(problem.label_dtype == NPAIRS_I32 || problem.label_dtype == NPAIRS_I64,
            "problem.label_dtype must be NPAIRS_I32 or NPAIRS_I64");
    t.label_dtype = problem.label_dtype;
    t.labels = problem.labels;
    t.shared_targets = problem.column_labels == nullptr;
    t.column_labels = t.shared_targets ? problem.labels : problem.column_labels;
  } else {
    require(problem.column_labels == nullptr,
            "problem.column_labels is set with problem.multilabels; use problem.column_multilabels");
    require(problem.num_classes > 0, "problem.num_classes must be greater than 0 with multilabels");
    t.classes = problem.num_classes;
    t.multilabels = problem.multilabels;
    t.shared_targets = problem.column_multilabels == nullptr;
    t.column_multilabels = t.shared_targets ? problem.multilabels : problem.column_multilabels;
  }
  require(t.cols == t.rows || !t.shared_targets,
          std::string("problem.cols differs from problem.rows, so problem.") +
              (has_labels ? "column_labels" : "column_multilabels") + " must be given");

  // Logits: the similarity, or anchors with positives.
  const bool has_embeddings = problem.anchors != nullptr || problem.positives != nullptr;
  require(problem.similarity != nullptr || has_embeddings,
          "problem.similarity and problem.anchors are both NULL; give the logits");
  require(!(problem.similarity != nullptr && has_embeddings),
          "problem.similarity is set together with problem.anchors/positives; give one kind of logits");
  if (has_embeddings) {
    require(problem.anchors != nullptr, "problem.anchors is NULL while problem.positives is set");
    require(problem.positives != nullptr, "problem.positives is NULL while problem.anchors is set");
    require(problem.dim > 0, "problem.dim must be greater than 0 with anchors and positives");
    t.dim = problem.dim;
    t.anchors = problem.anchors;
    t.positives = problem.positives;
  } else {
    t.similarity = problem.similarity;
  }
  t.sample_weight = problem.sample_weight;
  require(!(t.symmetric() && t.sample_weight),
          "options.flags NPAIRS_FLAG_SYMMETRIC takes no problem.sample_weight (the column direction has no "
          "row weights)");

  if (t.reg_lambda > 0.0) {
    require(t.embeddings(), "options.reg_lambda > 0 needs anchors and positives, not a similarity");
    require(t.scalar_loss(), "options.reg_lambda > 0 needs a scalar reduction, not NPAIRS_REDUCTION_NONE");
  }

  require(grads.anchors == nullptr || t.embeddings(),
          "grads.anchors is set but the problem has no anchors and positives");
  require(grads.positives == nullptr || t.embeddings(),
          "grads.positives is set but the problem has no anchors and positives");
  t.grad_similarity = grads.similarity;
  t.grad_anchors = grads.anchors;
  t.grad_positives = grads.positives;
  t.grad_temperature = grads.temperature;
  t.grad_loss = grad_loss;
  t.loss = loss;

  require_fits(t.rows, t.cols, "problem.rows x problem.cols");
  require_fits(std::max(t.rows, t.cols), std::max(t.dim, t.classes), "the embeddings or multilabels");
  return t;
}

}  // namespace npairs
