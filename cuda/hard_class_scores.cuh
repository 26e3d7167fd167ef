// Hard negative class mining, one step on the device: the candidates'
// running scores take the max with the last selected class's inner
// products, and each block names its best candidate for this step.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "hard_class_rule.hpp"

namespace npairs::cuda {

// The most blocks launch_hard_class_scores uses (the size of `block_best`).
constexpr int kHardClassScoreBlocks = 1024;

// The blocks launch_hard_class_scores uses for `classes` candidates.
int hard_class_score_blocks(int64_t classes);

// For every candidate c < classes: scores[c] = max(scores[c], products[c])
// (a NaN score, a selected class, stays NaN), or scores[c] = -inf when
// products is nullptr (step 0); then block_best[b], for each of the
// hard_class_score_blocks(classes) blocks b, receives the best candidate of
// its grid-stride share at `step` (hard_class_before, keys of `seed`).
// Queued on `stream`.
template <class T>
void launch_hard_class_scores(T* scores, const T* products, int64_t classes, uint64_t seed, uint64_t step,
                              HardClassCandidate* block_best, cudaStream_t stream);

}  // namespace npairs::cuda
