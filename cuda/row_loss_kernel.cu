#include <algorithm>
#include <cstdint>

#include "cuda_check.hpp"
#include "launch.cuh"
#include "row_group.cuh"
#include "row_loss_kernel.cuh"
#include "row_math.hpp"
#include "targets.cuh"

namespace npairs::cuda {

namespace {

template <class T>
__device__ compute_t<T> logit(const RowLossArgs<T>& args, const Pack<T>& p, int e) {
  return to_compute(p.v[e]) * args.logit_scale.hi * args.logit_scale.lo;
}

// Writes row i's weighted loss (one thread) and returns what its gradient
// needs.
template <class T, class C = compute_t<T>>
__device__ RowGradCoeffs<C> finish_row(const RowLossArgs<T>& args, int64_t i,
                                       const RowStats<C>& row, bool writer) {
  const C weight = args.sample_weight ? to_compute(args.sample_weight[i]) : C(1);
  if (writer) {
    const C weighted_loss = weight * row_loss(row);
    if (args.row_losses) args.row_losses[i] = from_compute<T>(weighted_loss);
    if (args.row_losses_to_sum) args.row_losses_to_sum[i] = weighted_loss;
  }
  const C upstream =
      args.grad_loss ? to_compute(args.grad_loss[args.grad_loss_per_row ? i : 0]) : C(1);
  return row_grad_coeffs(row, upstream * weight * args.grad_factor);
}

// dL/dS of vector v of a row.
template <class T, class TargetRow, class C = compute_t<T>>
__device__ Pack<T> grad_pack(const RowLossArgs<T>& args, const RowAccess<T>& access,
                             const RowGradCoeffs<C>& coeffs, const TargetRow& target,
                             const Pack<T>& p, int64_t v) {
  Pack<T> out;
#pragma unroll
  for (int e = 0; e < kVector<T>; ++e)
    out.v[e] = access.valid(v, e) ? from_compute<T>(row_grad(coeffs, logit(args, p, e),
                                                             target.weight(v * kVector<T> + e)))
                                  : from_compute<T>(0);
  return out;
}

// Row i held in the group's registers (row_kernel_plan.hpp: the plan makes
// sure kRowChunks vectors per thread cover it). The max is known before the
// sums, so each element costs one exp. The whole row is read before any
// gradient is written, so grad_logits may alias logits.
template <class T, class Targets, class Group>
__device__ void row_in_registers(const RowLossArgs<T>& args, const Targets& targets,
                                 const RowAccess<T>& access, int64_t i, const Group& group) {
  using C = compute_t<T>;
  const int64_t vectors = ceil_div(args.cols, kVector<T>);
  const typename Targets::Row target = targets.row(i);
  const T* logits = args.logits + i * args.cols;

  Pack<T> packs[kRowChunks];
  C max = -C(INFINITY);
#pragma unroll
  for (int c = 0; c < kRowChunks; ++c) {
    const int64_t v = group.rank() + int64_t(c) * group.size();
    if (v >= vectors) continue;
    packs[c] = access.load(logits, v);
#pragma unroll
    for (int e = 0; e < kVector<T>; ++e)
      if (access.valid(v, e)) max = fmax(max, logit(args, packs[c], e));
  }
  RowStats<C> stats{max, C(0), C(0), C(0)};
#pragma unroll
  for (int c = 0; c < kRowChunks; ++c) {
    const int64_t v = group.rank() + int64_t(c) * group.size();
    if (v >= vectors) continue;
#pragma unroll
    for (int e = 0; e < kVector<T>; ++e)
      if (access.valid(v, e))
        row_stats_accumulate(stats, logit(args, packs[c], e), target.weight(v * kVector<T> + e));
  }

  const RowStats<C> row = group.merge(stats);
  const RowGradCoeffs<C> coeffs = finish_row(args, i, row, group.rank() == 0);
  if (!args.grad_logits) return;
  T* grad = args.grad_logits + i * args.cols;
#pragma unroll
  for (int c = 0; c < kRowChunks; ++c) {
    const int64_t v = group.rank() + int64_t(c) * group.size();
    if (v < vectors) access.store(grad, v, grad_pack(args, access, coeffs, target, packs[c], v));
  }
}

// A warp per row, kWarpRowsPerBlock rows per block, grid-stride over rows.
template <class T, class Targets>
__global__ __launch_bounds__(kWarpSize* kWarpRowsPerBlock) void row_loss_warp_kernel(
    RowLossArgs<T> args, Targets targets, RowAccess<T> access) {
  const int64_t stride = int64_t(gridDim.x) * kWarpRowsPerBlock;
  for (int64_t i = int64_t(blockIdx.x) * kWarpRowsPerBlock + threadIdx.x / kWarpSize;
       i < args.rows; i += stride)
    row_in_registers(args, targets, access, i, WarpGroup{});
}

// A block per row, grid-stride over rows.
template <class T, class Targets>
__global__ __launch_bounds__(kMaxRegisterRowThreads) void row_loss_block_kernel(
    RowLossArgs<T> args, Targets targets, RowAccess<T> access) {
  __shared__ RowStats<compute_t<T>> warp_stats[kMaxRegisterRowThreads / kWarpSize];
  for (int64_t i = blockIdx.x; i < args.rows; i += gridDim.x)
    row_in_registers(args, targets, access, i, BlockGroup<compute_t<T>>{warp_stats});
}

// A block per long row. The statistics pass copies the row to shared memory
// when `staged` (each thread keeps the vectors it will write), else the
// gradient pass reads it again, mostly from L2. Either way a thread rereads
// only the vectors it writes, so grad_logits may alias logits.
template <class T, class Targets>
__global__ __launch_bounds__(kMaxRowThreads) void row_loss_staged_kernel(RowLossArgs<T> args,
                                                                         Targets targets,
                                                                         RowAccess<T> access,
                                                                         bool staged) {
  using C = compute_t<T>;
  extern __shared__ __align__(kVectorBytes) unsigned char staged_bytes[];
  Pack<T>* staged_row = reinterpret_cast<Pack<T>*>(staged_bytes);
  __shared__ RowStats<C> warp_stats[kMaxRowThreads / kWarpSize];
  const BlockGroup<C> group{warp_stats};
  const int64_t vectors = ceil_div(args.cols, kVector<T>);

  for (int64_t i = blockIdx.x; i < args.rows; i += gridDim.x) {
    const typename Targets::Row target = targets.row(i);
    const T* logits = args.logits + i * args.cols;
    RowStats<C> stats = row_stats_empty<C>();
    for (int64_t v = threadIdx.x; v < vectors; v += blockDim.x) {
      const Pack<T> p = access.load(logits, v);
      if (staged) staged_row[v] = p;
#pragma unroll
      for (int e = 0; e < kVector<T>; ++e)
        if (access.valid(v, e))
          row_stats_add(stats, logit(args, p, e), target.weight(v * kVector<T> + e));
    }

    const RowStats<C> row = group.merge(stats);
    const RowGradCoeffs<C> coeffs = finish_row(args, i, row, threadIdx.x == 0);
    if (!args.grad_logits) continue;
    T* grad = args.grad_logits + i * args.cols;
    for (int64_t v = threadIdx.x; v < vectors; v += blockDim.x) {
      const Pack<T> p = staged ? staged_row[v] : access.load(logits, v);
      access.store(grad, v, grad_pack(args, access, coeffs, target, p, v));
    }
  }
}

}  // namespace

template <class T, class Targets>
void launch_row_loss(const RowLossArgs<T>& args, const Targets& targets,
                     const DeviceLimits& limits, cudaStream_t stream) {
  if (args.rows == 0) return;
  using C = compute_t<T>;
  constexpr std::size_t kReservedShared = sizeof(RowStats<C>) * (kMaxRowThreads / kWarpSize);
  const RowKernelPlan plan = plan_row_kernel(args.cols, sizeof(T), limits, kReservedShared);
  const RowAccess<T> access{args.cols, args.cols % kVector<T> == 0 && aligned(args.logits) &&
                                           aligned(args.grad_logits)};
  const int64_t blocks = ceil_div(args.rows, plan.rows_per_block);
  switch (plan.kernel) {
    case RowKernel::warp: {
      const auto kernel = row_loss_warp_kernel<T, Targets>;
      launch(kernel, grid_size(kernel, plan.threads, 0, blocks, limits), plan.threads, 0, stream,
             args, targets, access);
      break;
    }
    case RowKernel::block: {
      const auto kernel = row_loss_block_kernel<T, Targets>;
      launch(kernel, grid_size(kernel, plan.threads, 0, blocks, limits), plan.threads, 0, stream,
             args, targets, access);
      break;
    }
    case RowKernel::staged: {
      const auto kernel = row_loss_staged_kernel<T, Targets>;
      const std::size_t shared = plan.shared_bytes;
      // The same value on every call, whatever the row: contexts on other
      // threads launch this kernel too.
      NPAIRS_CUDA_CHECK(cudaFuncSetAttribute(
          kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
          static_cast<int>(limits.shared_bytes_per_block - kReservedShared)));
      launch(kernel, grid_size(kernel, plan.threads, shared, blocks, limits), plan.threads, shared,
             stream, args, targets, access, shared > 0);
      break;
    }
  }
}

#define NPAIRS_INSTANTIATE(T, ...) \
  template void launch_row_loss(const RowLossArgs<T>&, const __VA_ARGS__&, const DeviceLimits&, cudaStream_t);
NPAIRS_FOR_EACH_DTYPE(NPAIRS_INSTANTIATE_EACH_TARGETS)
#undef NPAIRS_INSTANTIATE

}  // namespace npairs::cuda
