// Hard negative class mining, the end of one step on the device: the best of
// the blocks' candidates is the step's class.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "hard_class_rule.hpp"

namespace npairs::cuda {

// With w the best of block_best[0 .. blocks) (hard_class_before): writes
// selected[step] = w, marks w selected (scores[w] = NaN) and copies its
// embedding, row w of the row-major [*, dim] `embeddings`, to next_row
// [dim], the next step's GEMV input. One block, queued on `stream`.
template <class T>
void launch_hard_class_pick(const HardClassCandidate* block_best, int blocks, T* scores, const T* embeddings,
                            int64_t dim, T* next_row, int64_t* selected, int64_t step, cudaStream_t stream);

}  // namespace npairs::cuda
