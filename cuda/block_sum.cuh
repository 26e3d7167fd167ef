// A block-wide sum in a fixed order (a tree over shared memory), so that the
// scalar reductions give the same bits on every device and run as written in
// the CPU emulator of tests/emulated/ (CUB's block reductions are device-only
// code that the emulator cannot compile).
#pragma once

namespace npairs::cuda {

// The sum of every thread's `value`, returned to every thread. kThreads is
// the block size, a power of two; `storage` is shared, kThreads long. Every
// thread of the block must call it; it ends with a barrier, so that storage
// can be reused at once.
template <int kThreads>
__device__ double block_sum(double* storage, double value) {
  static_assert(kThreads > 0 && (kThreads & (kThreads - 1)) == 0, "a power of two");
  storage[threadIdx.x] = value;
  __syncthreads();
  for (int half = kThreads / 2; half > 0; half /= 2) {
    if (int(threadIdx.x) < half) storage[threadIdx.x] += storage[threadIdx.x + half];
    __syncthreads();
  }
  const double total = storage[0];
  __syncthreads();
  return total;
}

}  // namespace npairs::cuda
