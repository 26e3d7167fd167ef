// The deferred check of the targets (NPAIRS_FLAG_DEFER_CHECKS): run on the
// device after the row kernel, it finds the invalid rows of a call, makes
// their loss and gradient rows NaN and keeps the first invalid row of each
// kind in the context's report slots, which npairs_context_synchronize reads.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "dtype.cuh"

namespace npairs::cuda {

// The report slots of the data checks: the first bad row of each kind, in
// the order the messages name them.
enum BadRowSlot : int {
  kNegativeMultilabel,        // a row of problem.multilabels with a negative or NaN entry
  kNegativeColumnMultilabel,  // the same in problem.column_multilabels
  kNoPositiveLabel,           // a row of problem.labels matching no column label
  kNoPositiveMultilabel,      // a row of problem.multilabels sharing no class with a column
  // Symmetric calls: a column of problem.column_labels matching no row label,
  // and of problem.column_multilabels sharing no class with a row.
  kNoPositiveColumnLabel,
  kNoPositiveColumnMultilabel,
  kBadRowSlots
};

template <class T>
struct DeferredCheckArgs {
  using C = compute_t<T>;
  int64_t rows;
  int64_t cols;
  const T* multilabels;  // [rows, classes], or nullptr for labels
  int64_t classes;
  // This call's first row of problem.column_multilabels with a negative
  // entry (kNoBadRow: none), or nullptr. Such a column spoils every row.
  const long long* column_negative;
  long long* reports;       // [kBadRowSlots], lowered with atomicMin
  T* row_losses;            // [rows] or nullptr: NaN for invalid rows
  C* row_losses_to_sum;     // [rows] or nullptr
  T* grad_logits;           // [rows, cols] or nullptr: NaN rows
  T* gemm_grad_logits;      // [rows, cols] or nullptr (a separate GEMM input)
};

// Queued on `stream`. Targets is LabelTargets or GramTargets (targets.cuh) of
// value type compute_t<T>.
template <class T, class Targets>
void launch_deferred_check(const DeferredCheckArgs<T>& args, const Targets& targets,
                           cudaStream_t stream);

}  // namespace npairs::cuda
