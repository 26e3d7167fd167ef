#include "block_reduce.cuh"
#include "dtype.cuh"
#include "launch.cuh"
#include "sum_squares.cuh"

namespace npairs::cuda {

namespace {

constexpr int kBlock = 256;

template <class T>
__global__ __launch_bounds__(kBlock) void sum_squares_kernel(const T* x, int64_t count,
                                                             double* partials) {
  __shared__ double reduce_storage[kBlock];
  double sum = 0.0;
  const int64_t stride = int64_t(kSumSquaresParts) * kBlock;
  for (int64_t k = int64_t(blockIdx.x) * kBlock + threadIdx.x; k < count; k += stride) {
    const double v = to_compute(x[k]);
    sum += v * v;
  }
  const double total = block_sum<kBlock>(reduce_storage, sum);
  if (threadIdx.x == 0) partials[blockIdx.x] = total;
}

}  // namespace

template <class T>
void launch_sum_squares(const T* x, int64_t count, double* partials, cudaStream_t stream) {
  launch(sum_squares_kernel<T>, kSumSquaresParts, kBlock, 0, stream, x, count, partials);
}

#define NPAIRS_INSTANTIATE(T) \
  template void launch_sum_squares(const T*, int64_t, double*, cudaStream_t);
NPAIRS_FOR_EACH_DTYPE(NPAIRS_INSTANTIATE)

}  // namespace npairs::cuda
