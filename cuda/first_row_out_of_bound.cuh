// Data check of hard negative class mining: the first row of the class
// embeddings with an entry that is NaN, infinite or too large.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

namespace npairs::cuda {

// Lowers *first_bad to the first row of the row-major rows x cols `matrix`
// holding an entry x with !(|x| <= bound). Queued on `stream`.
template <class T>
void launch_first_row_out_of_bound(const T* matrix, int64_t rows, int64_t cols, double bound,
                                   long long* first_bad, cudaStream_t stream);

}  // namespace npairs::cuda
