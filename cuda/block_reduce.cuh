// Block-wide reductions in a fixed order (a tree over shared memory), so that
// the scalar reductions give the same bits on every device and run as written
// in the CPU emulator of tests/emulated/ (CUB's block reductions are
// device-only code that the emulator cannot compile).
#pragma once

namespace npairs::cuda {

// combine(...) of every thread's `value`, returned to every thread: thread t
// takes combine(its value, thread t + half's) for half = kThreads / 2, ..., 1.
// kThreads is the block size, a power of two; `storage` is shared, kThreads
// long. Every thread of the block must call it; it ends with a barrier, so
// that storage can be reused at once.
template <int kThreads, class V, class Combine>
__device__ V block_reduce(V* storage, V value, Combine combine) {
  static_assert(kThreads > 0 && (kThreads & (kThreads - 1)) == 0, "a power of two");
  storage[threadIdx.x] = value;
  __syncthreads();
  for (int half = kThreads / 2; half > 0; half /= 2) {
    if (int(threadIdx.x) < half) storage[threadIdx.x] = combine(storage[threadIdx.x], storage[threadIdx.x + half]);
    __syncthreads();
  }
  const V result = storage[0];
  __syncthreads();
  return result;
}

// The sum of every thread's `value`, as block_reduce.
template <int kThreads>
__device__ double block_sum(double* storage, double value) {
  return block_reduce<kThreads>(storage, value, [](double a, double b) { return a + b; });
}

}  // namespace npairs::cuda
