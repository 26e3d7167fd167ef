// Data check: the first row whose target weights are all zero (no positive
// column, so its target row cannot be normalised).
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

namespace npairs::cuda {

// Lowers *first_bad to the first row i < rows with targets.row(i).weight(j)
// == 0 for every j < cols. Queued on `stream`.
template <class Targets>
void launch_first_row_without_positive(const Targets& targets, int64_t rows, int64_t cols,
                                       long long* first_bad, cudaStream_t stream);

}  // namespace npairs::cuda
