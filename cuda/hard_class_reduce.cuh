// The block-wide arg max of hard negative class mining, in a fixed tree over
// shared memory (as block_sum.cuh, so that it runs in the CPU emulator).
#pragma once

#include "hard_class_rule.hpp"

namespace npairs::cuda {

// The preferred candidate of every thread's `mine` (hard_class_before),
// returned to every thread. kThreads is the block size, a power of two;
// `storage` is shared, kThreads long. Every thread of the block must call
// it; it ends with a barrier, so that storage can be reused at once.
template <int kThreads>
__device__ HardClassCandidate block_best_class(HardClassCandidate* storage, HardClassCandidate mine) {
  static_assert(kThreads > 0 && (kThreads & (kThreads - 1)) == 0, "a power of two");
  storage[threadIdx.x] = mine;
  __syncthreads();
  for (int half = kThreads / 2; half > 0; half /= 2) {
    if (int(threadIdx.x) < half && hard_class_before(storage[threadIdx.x + half], storage[threadIdx.x]))
      storage[threadIdx.x] = storage[threadIdx.x + half];
    __syncthreads();
  }
  const HardClassCandidate best = storage[0];
  __syncthreads();
  return best;
}

}  // namespace npairs::cuda
