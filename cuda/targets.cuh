// The target weights q_ij of SPEC section 1 as the kernels read them, shared
// by the data check and the loss kernel so that both see the same targets.
// targets.row(i) gives row i, and row.weight(j) its q_ij: 1 or 0 for labels,
// G_ij for multi-labels.
#pragma once

#include <cstdint>

namespace npairs::cuda {

// Single-label targets: q_ij = [labels[i] == column_labels[j]], compared as
// exact integers.
template <class T, class L>
struct LabelTargets {
  using value_type = T;
  const L* labels;
  const L* column_labels;

  struct Row {
    L label;
    const L* column_labels;
    __device__ T weight(int64_t j) const { return column_labels[j] == label ? T(1) : T(0); }
  };
  __device__ Row row(int64_t i) const { return Row{labels[i], column_labels}; }
};

// Multi-label targets: q_ij = G_ij, with G = Y Y'^T (R x M, row-major).
template <class T>
struct GramTargets {
  using value_type = T;
  const T* gram;
  int64_t cols;

  struct Row {
    const T* gram_row;
    __device__ T weight(int64_t j) const { return gram_row[j]; }
  };
  __device__ Row row(int64_t i) const { return Row{gram + i * cols}; }
};

}  // namespace npairs::cuda

// Expands NPAIRS_INSTANTIATE(T, Targets), which a launcher's source defines
// for its explicit instantiations, for every Targets that the kernels of
// element type T read (of value type compute_t<T>, dtype.cuh); Targets holds
// a comma, so NPAIRS_INSTANTIATE takes it as `...`. For every element type:
// NPAIRS_FOR_EACH_DTYPE(NPAIRS_INSTANTIATE_EACH_TARGETS).
#define NPAIRS_INSTANTIATE_EACH_TARGETS(T)                     \
  NPAIRS_INSTANTIATE(T, LabelTargets<compute_t<T>, int32_t>) \
  NPAIRS_INSTANTIATE(T, LabelTargets<compute_t<T>, int64_t>) \
  NPAIRS_INSTANTIATE(T, GramTargets<compute_t<T>>)

namespace npairs::cuda {

// The data checks report the first bad row with atomicMin into a device
// slot that starts at kNoBadRow, larger than any row: the value of eight 0x7F
// bytes, so that cudaMemsetAsync(slots, 0x7F, bytes) resets the slots.
constexpr long long kNoBadRow = 0x7F7F7F7F7F7F7F7FLL;
constexpr int kNoBadRowByte = 0x7F;

}  // namespace npairs::cuda
