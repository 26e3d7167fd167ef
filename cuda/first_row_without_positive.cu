#include <algorithm>

#include "first_row_without_positive.cuh"
#include "launch.cuh"
#include "targets.cuh"

namespace npairs::cuda {

namespace {

constexpr int kBlock = 256;
// More blocks than any GPU keeps resident (grid-stride loops do the rest).
constexpr int64_t kMaxBlocks = 4096;

// A block per row (grid-stride over rows); each thread stops at its first
// positive column. "Positive" is weight > 0, so that a caller's row
// statistics with a negative or NaN target weight fail as on the CPU
// (valid targets are never negative).
template <class Targets>
__global__ __launch_bounds__(kBlock) void first_row_without_positive_kernel(Targets targets,
                                                                            int64_t rows,
                                                                            int64_t cols,
                                                                            long long* first_bad) {
  using T = typename Targets::value_type;
  for (int64_t i = blockIdx.x; i < rows; i += gridDim.x) {
    const typename Targets::Row row = targets.row(i);
    bool positive = false;
    for (int64_t j = threadIdx.x; j < cols && !positive; j += kBlock)
      positive = row.weight(j) > T(0);
    // i is the same for the whole block, so every thread reaches the barrier.
    if (!__syncthreads_or(positive) && threadIdx.x == 0)
      atomicMin(first_bad, static_cast<long long>(i));
  }
}

}  // namespace

template <class Targets>
void launch_first_row_without_positive(const Targets& targets, int64_t rows, int64_t cols,
                                       long long* first_bad, cudaStream_t stream) {
  if (rows == 0) return;
  const auto blocks = static_cast<unsigned>(std::min(rows, kMaxBlocks));
  launch(first_row_without_positive_kernel<Targets>, blocks, kBlock, 0, stream, targets, rows, cols,
         first_bad);
}

template void launch_first_row_without_positive(const LabelTargets<float, int32_t>&, int64_t,
                                                int64_t, long long*, cudaStream_t);
template void launch_first_row_without_positive(const LabelTargets<float, int64_t>&, int64_t,
                                                int64_t, long long*, cudaStream_t);
template void launch_first_row_without_positive(const LabelTargets<double, int32_t>&, int64_t,
                                                int64_t, long long*, cudaStream_t);
template void launch_first_row_without_positive(const LabelTargets<double, int64_t>&, int64_t,
                                                int64_t, long long*, cudaStream_t);
template void launch_first_row_without_positive(const GramTargets<float>&, int64_t, int64_t,
                                                long long*, cudaStream_t);
template void launch_first_row_without_positive(const GramTargets<double>&, int64_t, int64_t,
                                                long long*, cudaStream_t);

}  // namespace npairs::cuda
