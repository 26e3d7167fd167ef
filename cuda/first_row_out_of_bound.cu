#include <math.h>

#include <algorithm>

#include "first_row_out_of_bound.cuh"
#include "launch.cuh"
#include "row_math.hpp"

namespace npairs::cuda {

namespace {

constexpr int kBlock = 256;
constexpr int64_t kMaxBlocks = 4096;

template <class T>
__global__ __launch_bounds__(kBlock) void first_row_out_of_bound_kernel(const T* matrix, int64_t rows,
                                                                        int64_t cols, double bound,
                                                                        long long* first_bad) {
  const int64_t count = rows * cols;
  const int64_t stride = int64_t(gridDim.x) * kBlock;
  for (int64_t k = int64_t(blockIdx.x) * kBlock + threadIdx.x; k < count; k += stride)
    if (!(fabs(double(matrix[k])) <= bound)) atomicMin(first_bad, static_cast<long long>(k / cols));
}

}  // namespace

template <class T>
void launch_first_row_out_of_bound(const T* matrix, int64_t rows, int64_t cols, double bound,
                                   long long* first_bad, cudaStream_t stream) {
  const int64_t count = rows * cols;
  if (count == 0) return;
  const auto blocks = static_cast<unsigned>(std::min(ceil_div(count, kBlock), kMaxBlocks));
  launch(first_row_out_of_bound_kernel<T>, blocks, kBlock, 0, stream, matrix, rows, cols, bound, first_bad);
}

#define NPAIRS_INSTANTIATE(T)                                                                      \
  template void launch_first_row_out_of_bound(const T*, int64_t, int64_t, double, long long*, \
                                              cudaStream_t);
NPAIRS_INSTANTIATE(float)
NPAIRS_INSTANTIATE(double)

}  // namespace npairs::cuda
