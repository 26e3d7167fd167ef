// Data check: the first row of a multi-label matrix with a negative or NaN
// entry.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

namespace npairs::cuda {

// Lowers *first_bad to the first row of the row-major rows x cols `matrix`
// holding an entry y with !(y >= 0). Queued on `stream`.
template <class T>
void launch_first_row_with_negative(const T* matrix, int64_t rows, int64_t cols,
                                    long long* first_bad, cudaStream_t stream);

}  // namespace npairs::cuda
