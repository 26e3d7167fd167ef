#include <cub/block/block_reduce.cuh>

#include "cuda_check.hpp"
#include "dtype.cuh"
#include "scalar_loss.cuh"
#include "sum_squares.cuh"

namespace npairs::cuda {

namespace {

constexpr int kBlock = 1024;

using BlockReduce = cub::BlockReduce<double, kBlock>;

// The sum of x[0, count) over the block, valid in thread 0. Ends with a
// barrier so that reduce_storage can be reused at once.
template <class U>
__device__ double block_sum(BlockReduce::TempStorage& reduce_storage, const U* x, int64_t count) {
  double sum = 0.0;
  for (int64_t k = threadIdx.x; k < count; k += kBlock) sum += static_cast<double>(to_compute(x[k]));
  const double total = BlockReduce(reduce_storage).Sum(sum);
  __syncthreads();
  return total;
}

template <class T>
__global__ __launch_bounds__(kBlock) void scalar_loss_kernel(ScalarLossArgs<T> args) {
  __shared__ BlockReduce::TempStorage reduce_storage;
  double loss = args.reduction_factor * block_sum(reduce_storage, args.row_losses, args.rows);
  if (args.l2_partials) {
    loss += args.l2_anchor_factor * block_sum(reduce_storage, args.l2_partials, kSumSquaresParts);
    loss += args.l2_positive_factor *
            block_sum(reduce_storage, args.l2_partials + kSumSquaresParts, kSumSquaresParts);
  }
  if (threadIdx.x == 0) *args.loss = from_double<T>(loss);
}

}  // namespace

template <class T>
void launch_scalar_loss(const ScalarLossArgs<T>& args, cudaStream_t stream) {
  scalar_loss_kernel<<<1, kBlock, 0, stream>>>(args);
  NPAIRS_CUDA_CHECK(cudaGetLastError());
}

#define NPAIRS_INSTANTIATE(T) template void launch_scalar_loss(const ScalarLossArgs<T>&, cudaStream_t);
NPAIRS_FOR_EACH_DTYPE(NPAIRS_INSTANTIATE)

}  // namespace npairs::cuda
