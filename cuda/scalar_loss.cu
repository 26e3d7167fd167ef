#include "block_reduce.cuh"
#include "dtype.cuh"
#include "launch.cuh"
#include "scalar_loss.cuh"
#include "sum_squares.cuh"

namespace npairs::cuda {

namespace {

constexpr int kBlock = 1024;

// The sum of x[0, count) over the block, in every thread.
template <class U>
__device__ double array_sum(double* reduce_storage, const U* x, int64_t count) {
  double sum = 0.0;
  for (int64_t k = threadIdx.x; k < count; k += kBlock) sum += static_cast<double>(to_compute(x[k]));
  return block_sum<kBlock>(reduce_storage, sum);
}

template <class T>
__global__ __launch_bounds__(kBlock) void scalar_loss_kernel(ScalarLossArgs<T> args) {
  __shared__ double reduce_storage[kBlock];
  double loss = args.reduction_factor * array_sum(reduce_storage, args.row_losses, args.rows);
  if (args.column_losses) loss += args.column_factor * array_sum(reduce_storage, args.column_losses, args.cols);
  if (args.l2_partials) {
    loss += args.l2_anchor_factor * array_sum(reduce_storage, args.l2_partials, kSumSquaresParts);
    loss += args.l2_positive_factor *
            array_sum(reduce_storage, args.l2_partials + kSumSquaresParts, kSumSquaresParts);
  }
  if (threadIdx.x == 0) *args.loss = from_double<T>(loss);
}

}  // namespace

template <class T>
void launch_scalar_loss(const ScalarLossArgs<T>& args, cudaStream_t stream) {
  launch(scalar_loss_kernel<T>, 1, kBlock, 0, stream, args);
}

#define NPAIRS_INSTANTIATE(T) template void launch_scalar_loss(const ScalarLossArgs<T>&, cudaStream_t);
NPAIRS_FOR_EACH_DTYPE(NPAIRS_INSTANTIATE)

}  // namespace npairs::cuda
