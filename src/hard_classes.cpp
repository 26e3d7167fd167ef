#include "hard_classes.hpp"

#include <omp.h>

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstdio>
#include <limits>
#include <string>
#include <vector>

#include "blas.hpp"
#include "error.hpp"
#include "hard_class_rule.hpp"
#include "row_math.hpp"
#include "task.hpp"

namespace npairs {
namespace {

void require(bool condition, const std::string& message) {
  if (!condition) fail(NPAIRS_ERROR_INVALID_ARGUMENT, message);
}

// GEMV outputs per block: large enough that OpenBLAS's threads share each
// GEMV well, small enough to stay in cache for the pass that follows.
constexpr int64_t kBlock = 65536;
constexpr int64_t kSmallestBlock = 64;

std::size_t aligned(std::size_t bytes) { return round_up(bytes, 64); }

using blas::gemv;

template <class T>
int64_t first_bad_row(const T* e, int64_t rows, int64_t dim, double bound) {
  for (int64_t i = 0; i < rows; ++i) {
    for (int64_t k = 0; k < dim; ++k) {
      if (!(std::fabs(double(e[i * dim + k])) <= bound)) return i;
    }
  }
  return -1;
}

// Folds each thread's best candidate into the team's, in the total order of
// hard_class_before (so the thread count does not matter).
HardClassCandidate team_best(const std::vector<HardClassCandidate>& per_thread) {
  HardClassCandidate best = no_hard_class();
  for (const HardClassCandidate& c : per_thread)
    if (hard_class_before(c, best)) best = c;
  return best;
}

template <class T>
void select(const HardClassTask& t, int threads, unsigned char* workspace, int64_t block) {
  const int64_t C = t.classes, D = t.dim;
  const T* e = static_cast<const T*>(t.embeddings);
  const double bound = hard_class_entry_bound(t.dtype, D);
  fail_if_bad_embedding_row(first_bad_row(e, C, D, bound), bound);
  T* best = reinterpret_cast<T*>(workspace);  // running scores; NaN once selected
  T* products = reinterpret_cast<T*>(workspace + aligned(std::size_t(C) * sizeof(T)));
  std::fill(best, best + C, -std::numeric_limits<T>::infinity());
  std::vector<HardClassCandidate> per_thread(static_cast<std::size_t>(threads));
  std::vector<int64_t> selected(static_cast<std::size_t>(t.count));

  // Step 0: every score is -inf, so the smallest key wins.
  for (HardClassCandidate& c : per_thread) c = no_hard_class();
#pragma omp parallel num_threads(threads)
  {
    HardClassCandidate& mine = per_thread[static_cast<std::size_t>(omp_get_thread_num())];
#pragma omp for schedule(static)
    for (int64_t c = 0; c < C; ++c) offer_hard_class(mine, double(best[c]), c, t.seed, 0);
  }
  for (int64_t step = 0;; ++step) {
    const int64_t chosen = team_best(per_thread).index;
    selected[static_cast<std::size_t>(step)] = chosen;
    if (step + 1 == t.count) break;
    best[chosen] = std::numeric_limits<T>::quiet_NaN();
    // The scores' update with the chosen class's inner products, fused with
    // the arg max of the next step.
    const uint64_t next = static_cast<uint64_t>(step + 1);
    for (HardClassCandidate& c : per_thread) c = no_hard_class();
    for (int64_t begin = 0; begin < C; begin += block) {
      const int64_t n = std::min(block, C - begin);
      gemv(n, D, e + begin * D, e + chosen * D, products);
#pragma omp parallel num_threads(threads)
      {
        // A local copy, so that the compiler keeps it in registers (the
        // scores' stores could otherwise alias it).
        HardClassCandidate& shared = per_thread[static_cast<std::size_t>(omp_get_thread_num())];
        HardClassCandidate mine = shared;
#pragma omp for schedule(static) nowait
        for (int64_t i = 0; i < n; ++i) {
          T& score = best[begin + i];
          // A NaN score (selected) stays NaN: the comparison is false.
          if (products[i] > score) score = products[i];
          offer_hard_class(mine, double(score), begin + i, t.seed, next);
        }
        shared = mine;
      }
    }
  }
  std::copy(selected.begin(), selected.end(), t.selected);
}

}  // namespace

HardClassTask make_hard_class_task(const npairs_class_selection& s, int64_t* selected) {
  require(s.class_embeddings != nullptr, "selection.class_embeddings is NULL");
  require(selected != nullptr, "selected is NULL");
  require(s.dtype == NPAIRS_F32 || s.dtype == NPAIRS_F64 || s.dtype == NPAIRS_F16 || s.dtype == NPAIRS_BF16,
          "selection.dtype is not a valid floating npairs_dtype (" + std::to_string(s.dtype) + ")");
  require(s.classes >= 1, "selection.classes must be at least 1 (got " + std::to_string(s.classes) + ")");
  require(s.dim >= 1, "selection.dim must be at least 1 (got " + std::to_string(s.dim) + ")");
  require(s.count >= 1 && s.count <= s.classes,
          "selection.count must be between 1 and selection.classes (" + std::to_string(s.classes) +
              "), got " + std::to_string(s.count));
  if (s.dtype == NPAIRS_F16 || s.dtype == NPAIRS_BF16) {
    fail(NPAIRS_ERROR_UNSUPPORTED, "selection.dtype NPAIRS_F16 and NPAIRS_BF16 are not supported by "
                                   "npairs_select_hard_classes (use NPAIRS_F32 or NPAIRS_F64)");
  }
  if (s.dim > std::numeric_limits<int64_t>::max() / 16 / s.classes) {
    fail(NPAIRS_ERROR_UNSUPPORTED,
         "selection is too large: class_embeddings has more elements than this library can index");
  }
  HardClassTask t;
  t.embeddings = s.class_embeddings;
  t.classes = s.classes;
  t.dim = s.dim;
  t.count = s.count;
  t.dtype = s.dtype;
  t.seed = s.seed;
  t.selected = selected;
  return t;
}

double hard_class_entry_bound(npairs_dtype dtype, int64_t dim) {
  const double max = dtype == NPAIRS_F64 ? std::numeric_limits<double>::max()
                                         : double(std::numeric_limits<float>::max());
  return std::sqrt(max / 4.0) / std::sqrt(double(dim));
}

void fail_if_bad_embedding_row(int64_t row, double bound) {
  if (row < 0) return;
  char magnitude[32];
  std::snprintf(magnitude, sizeof magnitude, "%.6g", bound);
  fail(NPAIRS_ERROR_INVALID_VALUE,
       "selection.class_embeddings row " + std::to_string(row) +
           " has an entry that is NaN, infinite or larger in magnitude than " + magnitude +
           " (sqrt(max / (4 dim)), beyond which inner products could overflow)");
}

std::size_t cpu_hard_class_workspace(const HardClassTask& t, std::size_t limit, int64_t* block) {
  if (t.classes > INT_MAX || t.dim > INT_MAX) {
    fail(NPAIRS_ERROR_UNSUPPORTED,
         "selection.classes and selection.dim above 2^31-1 are not supported by the CPU backend");
  }
  const std::size_t value = dtype_size(t.dtype);
  const std::size_t scores = aligned(std::size_t(t.classes) * value);
  const int64_t smallest = std::min(t.classes, kSmallestBlock);
  int64_t n = std::min(t.classes, kBlock);
  if (limit != 0) {
    // The most outputs whose 64-byte-aligned array fits beside the scores.
    const std::size_t room = limit > scores ? (limit - scores) / 64 * 64 / value : 0;
    n = std::min<int64_t>(n, static_cast<int64_t>(std::min<std::size_t>(room, std::size_t(kBlock))));
    if (n < smallest) {
      fail(NPAIRS_ERROR_OUT_OF_MEMORY,
           "the context's workspace limit (" + std::to_string(limit) +
               " bytes) is below the smallest workspace of npairs_select_hard_classes (" +
               std::to_string(scores + aligned(std::size_t(smallest) * value)) + " bytes)");
    }
  }
  *block = n;
  return scores + aligned(std::size_t(n) * value);
}

void cpu_select_hard_classes(const HardClassTask& t, int threads, unsigned char* workspace, int64_t block) {
  if (t.dtype == NPAIRS_F32)
    select<float>(t, threads, workspace, block);
  else
    select<double>(t, threads, workspace, block);
}

}  // namespace npairs
