#include <cstdint>

#include "cuda_check.hpp"
#include "launch.cuh"
#include "row_group.cuh"
#include "row_math.hpp"
#include "targets.cuh"
#include "tile_row_gradient.cuh"

namespace npairs::cuda {

namespace {

// A warp or a block per row (Group), grid-stride over rows; each element
// depends only on its logit and its row's statistics. A thread reads each
// logit before it writes that element and touches no other, so grad may
// alias logits.
template <class T, class Targets, class Group>
__global__ __launch_bounds__(kStreamedBlockThreads) void tile_row_gradient_kernel(
    TileRowGradientArgs<T> args, Targets targets, RowAccess<T> access) {
  using C = compute_t<T>;
  const Group group{};  // no merge: BlockGroup needs no shared memory here
  const int64_t vectors = (args.cols + kVector<T> - 1) / kVector<T>;
  for (int64_t i = group.first_row(); i < args.rows; i += group.row_stride()) {
    const C weight = args.sample_weight ? to_compute(args.sample_weight[i]) : C(1);
    const C upstream =
        args.grad_loss ? to_compute(args.grad_loss[args.grad_loss_per_row ? i : 0]) : C(1);
    const RowGradCoeffs<C> coeffs =
        row_grad_coeffs(args.running[i], upstream * weight * args.grad_factor);
    const typename Targets::Row target = targets.row(i);
    const T* logits = args.logits + i * args.ld;
    T* grad = args.grad + i * args.ld;
    for (int64_t v = group.rank(); v < vectors; v += group.size()) {
      const Pack<T> p = access.load(logits, v);
      Pack<T> out;
#pragma unroll
      for (int e = 0; e < kVector<T>; ++e)
        out.v[e] = access.valid(v, e)
                       ? from_compute<T>(row_grad(
                             coeffs, to_compute(p.v[e]) * args.logit_scale.hi * args.logit_scale.lo,
                             target.weight(v * kVector<T> + e)))
                       : from_compute<T>(0);
      access.store(grad, v, out);
    }
  }
}

}  // namespace

template <class T, class Targets>
void launch_tile_row_gradient(const TileRowGradientArgs<T>& args, const Targets& targets,
                              const DeviceLimits& limits, cudaStream_t stream) {
  if (args.rows == 0) return;
  using C = compute_t<T>;
  const RowAccess<T> access{args.cols,
                            rows_vectorized<T>(args.cols, args.ld, args.logits, args.grad)};
  const StreamedRows plan = streamed_rows(args.rows, args.cols, sizeof(T));
  if (plan.block_per_row) {
    const auto kernel = tile_row_gradient_kernel<T, Targets, BlockGroup<C>>;
    launch(kernel, grid_size(kernel, plan.threads, 0, plan.blocks_wanted, limits), plan.threads, 0, stream, args, targets, access);
  } else {
    const auto kernel = tile_row_gradient_kernel<T, Targets, WarpGroup>;
    launch(kernel, grid_size(kernel, plan.threads, 0, plan.blocks_wanted, limits), plan.threads, 0, stream, args, targets, access);
  }
}

#define NPAIRS_INSTANTIATE(T)                                                                   \
  template void launch_tile_row_gradient(const TileRowGradientArgs<T>&,                        \
                                         const LabelTargets<compute_t<T>, int32_t>&,           \
                                         const DeviceLimits&, cudaStream_t);                   \
  template void launch_tile_row_gradient(const TileRowGradientArgs<T>&,                        \
                                         const LabelTargets<compute_t<T>, int64_t>&,           \
                                         const DeviceLimits&, cudaStream_t);                   \
  template void launch_tile_row_gradient(const TileRowGradientArgs<T>&,                        \
                                         const GramTargets<compute_t<T>>&, const DeviceLimits&, \
                                         cudaStream_t);
NPAIRS_FOR_EACH_DTYPE(NPAIRS_INSTANTIATE)
#undef NPAIRS_INSTANTIATE

}  // namespace npairs::cuda
