// First stage of the L2 term: partial sums of squares of an array.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

namespace npairs::cuda {

// The number of partial sums launch_sum_squares writes. Fixed, so that the
// summation order (and the result) does not depend on the device.
constexpr int kSumSquaresParts = 512;

// partials[b] = sum of x[k]^2 (in double) over a fixed grid-stride share of
// the `count` elements of x; queued on `stream`.
template <class T>
void launch_sum_squares(const T* x, int64_t count, double* partials, cudaStream_t stream);

}  // namespace npairs::cuda
