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
// depends only on its logit and its row's (and column's) statistics. A
// thread reads each logit before it writes that element and touches no
// other, so grad may alias logits. The moments are summed in a fixed order
// (group_sum), and added by the group's first thread.
template <class T, class Targets, class Group>
__global__ __launch_bounds__(kStreamedBlockThreads) void tile_row_gradient_kernel(
    TileRowGradientArgs<T> args, Targets targets, RowAccess<T> access) {
  using C = compute_t<T>;
  __shared__ C warp_sums[kStreamedBlockThreads / kWarpSize];  // BlockGroup's moment sum
  const Group group{};  // no merge: BlockGroup needs no statistics storage here
  const int64_t vectors = ceil_div(args.cols, kVector<T>);
  for (int64_t i = group.first_row(); i < args.rows; i += group.row_stride()) {
    const C weight = args.sample_weight ? to_compute(args.sample_weight[i]) : C(1);
    const C upstream =
        args.grad_loss ? to_compute(args.grad_loss[args.grad_loss_per_row ? i : 0]) : C(1);
    const RowGradCoeffs<C> coeffs =
        row_grad_coeffs(args.running[i], upstream * weight * args.grad_factor);
    const typename Targets::Row target = targets.row(i);
    const T* logits = args.logits + i * args.ld;
    T* grad = args.grad ? args.grad + i * args.ld : nullptr;
    C moment = C(0);
    for (int64_t v = group.rank(); v < vectors; v += group.size()) {
      const Pack<T> p = access.load(logits, v);
      Pack<T> out;
#pragma unroll
      for (int e = 0; e < kVector<T>; ++e) {
        const int64_t j = v * kVector<T> + e;
        C ds = C(0);
        if (access.valid(v, e)) {
          const C z = to_compute(p.v[e]) * args.logit_scale.hi * args.logit_scale.lo;
          const C q = target.weight(j);
          const C row = row_grad(coeffs, z, q);
          ds = row;
          if (args.moments) moment += shifted_term(row, z, coeffs.max);
          if (args.column_coeffs) {
            const RowGradCoeffs<C> column = args.column_coeffs[j];
            const C term = args.column_grad_factor * row_grad(column, z, q);
            ds += term;
            if (args.moments) moment += shifted_term(term, z, column.max);
          }
        }
        out.v[e] = from_compute<T>(ds);
      }
      if (grad) access.store(grad, v, out);
    }
    if (args.moments) {
      const C sum = group_sum(group, moment, warp_sums);
      if (group.rank() == 0) args.moments[i] += sum;
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
  launch(streamed_rows(args.rows, args.cols, sizeof(T)), tile_row_gradient_kernel<T, Targets, BlockGroup<C>>,
         tile_row_gradient_kernel<T, Targets, WarpGroup>, limits, stream, args, targets, access);
}

#define NPAIRS_INSTANTIATE(T, ...)                                                          \
  template void launch_tile_row_gradient(const TileRowGradientArgs<T>&, const __VA_ARGS__&, \
                                         const DeviceLimits&, cudaStream_t);
NPAIRS_FOR_EACH_DTYPE(NPAIRS_INSTANTIATE_EACH_TARGETS)
#undef NPAIRS_INSTANTIATE

}  // namespace npairs::cuda
