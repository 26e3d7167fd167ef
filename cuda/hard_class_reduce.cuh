// The block-wide arg max of hard negative class mining (block_reduce.cuh, so
// that it runs in the CPU emulator).
#pragma once

#include "block_reduce.cuh"
#include "hard_class_rule.hpp"

namespace npairs::cuda {

// The preferred candidate of every thread's `mine` (hard_class_before),
// returned to every thread, as block_reduce.
template <int kThreads>
__device__ HardClassCandidate block_best_class(HardClassCandidate* storage, HardClassCandidate mine) {
  return block_reduce<kThreads>(storage, mine, [](const HardClassCandidate& lower, const HardClassCandidate& upper) {
    return hard_class_before(upper, lower) ? upper : lower;
  });
}

}  // namespace npairs::cuda
