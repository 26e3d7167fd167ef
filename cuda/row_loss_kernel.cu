#include <algorithm>
#include <cub/block/block_reduce.cuh>

#include "cuda_check.hpp"
#include "row_loss_kernel.cuh"
#include "row_math.hpp"
#include "targets.cuh"

namespace npairs::cuda {

namespace {

constexpr int kBlock = 256;
// Row elements per thread kept in registers between the statistics and the
// gradient pass; longer rows are read a second time (mostly from L2).
constexpr int kItems = 16;
constexpr int64_t kMaxBlocks = 65535;

template <class T>
struct MergeRowStats {
  __device__ RowStats<T> operator()(const RowStats<T>& a, const RowStats<T>& b) const {
    return row_stats_merge(a, b);
  }
};

// A block per row (grid-stride over rows). Each thread accumulates its
// columns j = threadIdx.x + k * kBlock in a fixed order, and the block merges
// them in cub's fixed tree, so results are deterministic. The row's stats are
// complete before any gradient of it is written, so grad_logits may alias
// logits.
template <class T, class Targets>
__global__ __launch_bounds__(kBlock) void row_loss_kernel(RowLossArgs<T> args, Targets targets) {
  using BlockReduce = cub::BlockReduce<RowStats<T>, kBlock>;
  __shared__ typename BlockReduce::TempStorage reduce_storage;
  __shared__ RowStats<T> shared_stats;

  const int64_t cols = args.cols;
  const bool in_registers = cols <= int64_t(kBlock) * kItems;
  for (int64_t i = blockIdx.x; i < args.rows; i += gridDim.x) {
    const T* logits = args.logits + i * cols;
    const typename Targets::Row target = targets.row(i);

    RowStats<T> stats = row_stats_empty<T>();
    T z[kItems] = {};
    T q[kItems] = {};
    if (in_registers) {
#pragma unroll
      for (int k = 0; k < kItems; ++k) {
        const int64_t j = threadIdx.x + int64_t(k) * kBlock;
        if (j < cols) {
          z[k] = logits[j] * args.logit_scale;
          q[k] = target.weight(j);
          row_stats_add(stats, z[k], q[k]);
        }
      }
    } else {
      for (int64_t j = threadIdx.x; j < cols; j += kBlock)
        row_stats_add(stats, logits[j] * args.logit_scale, target.weight(j));
    }

    // The loop bound depends on the block only, so all threads get here.
    const RowStats<T> block_stats = BlockReduce(reduce_storage).Reduce(stats, MergeRowStats<T>());
    if (threadIdx.x == 0) shared_stats = block_stats;
    __syncthreads();
    const RowStats<T> row = shared_stats;
    __syncthreads();  // the next row rewrites reduce_storage and shared_stats

    const T weight = args.sample_weight ? args.sample_weight[i] : T(1);
    if (args.row_losses && threadIdx.x == 0) args.row_losses[i] = weight * row_loss(row);
    if (!args.grad_logits) continue;

    const T upstream = args.grad_loss ? args.grad_loss[args.grad_loss_per_row ? i : 0] : T(1);
    const RowGradCoeffs<T> coeffs = row_grad_coeffs(row, upstream * weight * args.grad_factor);
    T* grad = args.grad_logits + i * cols;
    if (in_registers) {
#pragma unroll
      for (int k = 0; k < kItems; ++k) {
        const int64_t j = threadIdx.x + int64_t(k) * kBlock;
        if (j < cols) grad[j] = row_grad(coeffs, z[k], q[k]);
      }
    } else {
      // Each thread rereads only the columns it writes, so aliasing is safe.
      for (int64_t j = threadIdx.x; j < cols; j += kBlock)
        grad[j] = row_grad(coeffs, logits[j] * args.logit_scale, target.weight(j));
    }
  }
}

}  // namespace

template <class T, class Targets>
void launch_row_loss(const RowLossArgs<T>& args, const Targets& targets, cudaStream_t stream) {
  if (args.rows == 0) return;
  const auto blocks = static_cast<unsigned>(std::min(args.rows, kMaxBlocks));
  row_loss_kernel<T, Targets><<<blocks, kBlock, 0, stream>>>(args, targets);
  NPAIRS_CUDA_CHECK(cudaGetLastError());
}

template void launch_row_loss(const RowLossArgs<float>&, const LabelTargets<float, int32_t>&,
                              cudaStream_t);
template void launch_row_loss(const RowLossArgs<float>&, const LabelTargets<float, int64_t>&,
                              cudaStream_t);
template void launch_row_loss(const RowLossArgs<float>&, const GramTargets<float>&, cudaStream_t);
template void launch_row_loss(const RowLossArgs<double>&, const LabelTargets<double, int32_t>&,
                              cudaStream_t);
template void launch_row_loss(const RowLossArgs<double>&, const LabelTargets<double, int64_t>&,
                              cudaStream_t);
template void launch_row_loss(const RowLossArgs<double>&, const GramTargets<double>&, cudaStream_t);

}  // namespace npairs::cuda
