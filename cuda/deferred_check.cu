#include <algorithm>

#include "deferred_check.cuh"
#include "launch.cuh"
#include "targets.cuh"

namespace npairs::cuda {

namespace {

constexpr int kBlock = 256;
// More blocks than any GPU keeps resident (grid-stride loops do the rest).
constexpr int64_t kMaxBlocks = 4096;

template <class T>
__device__ void poison_row(T* matrix, int64_t i, int64_t cols, T nan) {
  if (!matrix) return;
  for (int64_t j = threadIdx.x; j < cols; j += kBlock) matrix[i * cols + j] = nan;
}

// A block per row (grid-stride over rows): the row is invalid when it has no
// positive column, when its multi-label row has a negative or NaN entry, or
// when a column multi-label row has one.
template <class T, class Targets>
__global__ __launch_bounds__(kBlock) void deferred_check_kernel(DeferredCheckArgs<T> args,
                                                                Targets targets) {
  using C = compute_t<T>;
  const bool column_bad = args.column_negative && *args.column_negative != kNoBadRow;
  if (blockIdx.x == 0 && threadIdx.x == 0 && column_bad)
    atomicMin(args.reports + kNegativeColumnMultilabel, *args.column_negative);
  const T nan = from_compute<T>(C(NAN));
  for (int64_t i = blockIdx.x; i < args.rows; i += gridDim.x) {
    const typename Targets::Row row = targets.row(i);
    bool positive = false;
    for (int64_t j = threadIdx.x; j < args.cols && !positive; j += kBlock)
      positive = row.weight(j) != C(0);
    bool negative = false;
    if (args.multilabels)
      for (int64_t k = threadIdx.x; k < args.classes && !negative; k += kBlock)
        negative = !(to_compute(args.multilabels[i * args.classes + k]) >= C(0));
    // i is the same for the whole block, so every thread reaches the barriers.
    const bool no_positive = !__syncthreads_or(positive);
    const bool has_negative = __syncthreads_or(negative);
    if (!(no_positive || has_negative || column_bad)) continue;
    if (threadIdx.x == 0) {
      if (has_negative) atomicMin(args.reports + kNegativeMultilabel, static_cast<long long>(i));
      if (no_positive)
        atomicMin(args.reports + (args.multilabels ? kNoPositiveMultilabel : kNoPositiveLabel),
                  static_cast<long long>(i));
      if (args.row_losses) args.row_losses[i] = nan;
      if (args.row_losses_to_sum) args.row_losses_to_sum[i] = C(NAN);
    }
    poison_row(args.grad_logits, i, args.cols, nan);
    poison_row(args.gemm_grad_logits, i, args.cols, nan);
  }
}

}  // namespace

template <class T, class Targets>
void launch_deferred_check(const DeferredCheckArgs<T>& args, const Targets& targets,
                           cudaStream_t stream) {
  // At least one block, which reports the column check even without rows.
  const auto blocks = static_cast<unsigned>(std::clamp<int64_t>(args.rows, 1, kMaxBlocks));
  launch(deferred_check_kernel<T, Targets>, blocks, kBlock, 0, stream, args, targets);
}

#define NPAIRS_INSTANTIATE(T, ...) \
  template void launch_deferred_check(const DeferredCheckArgs<T>&, const __VA_ARGS__&, cudaStream_t);
NPAIRS_FOR_EACH_DTYPE(NPAIRS_INSTANTIATE_EACH_TARGETS)
#undef NPAIRS_INSTANTIATE

}  // namespace npairs::cuda
