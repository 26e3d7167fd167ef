// What the row kernels share: 16-byte vectors of a row and how a kernel reads
// them, the threads that share a row (a warp or a block) and their merge of
// row statistics, and the grid that fills the device once.
//
// Device code only where a kernel calls it, launches only through
// cuda/launch.cuh, and no dynamic shared memory of its own, so that
// tests/emulated runs it as written.
#pragma once

#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "cuda_check.hpp"
#include "dtype.cuh"
#include "launch.cuh"
#include "row_kernel_plan.hpp"
#include "row_math.hpp"

namespace npairs::cuda {

template <class T>
constexpr int kVector = kVectorBytes / int(sizeof(T));

// 16 bytes of a row: one load or store instruction when aligned.
template <class T>
struct alignas(kVectorBytes) Pack {
  T v[kVector<T>];
};

// How a kernel reads and writes vector v of a row (elements [v V, v V + V)):
// whole when `vectorized` (the caller has checked that every row starts
// 16-byte aligned and holds whole vectors), else element by element up to the
// row's end.
template <class T>
struct RowAccess {
  int64_t cols;
  bool vectorized;

  __device__ bool valid(int64_t v, int e) const { return vectorized || v * kVector<T> + e < cols; }
  __device__ Pack<T> load(const T* row, int64_t v) const {
    if (vectorized) return reinterpret_cast<const Pack<T>*>(row)[v];
    Pack<T> p;
#pragma unroll
    for (int e = 0; e < kVector<T>; ++e)
      p.v[e] = valid(v, e) ? row[v * kVector<T> + e] : from_compute<T>(0);
    return p;
  }
  __device__ void store(T* row, int64_t v, const Pack<T>& p) const {
    if (vectorized) {
      reinterpret_cast<Pack<T>*>(row)[v] = p;
      return;
    }
#pragma unroll
    for (int e = 0; e < kVector<T>; ++e)
      if (valid(v, e)) row[v * kVector<T> + e] = p.v[e];
  }
};

inline bool aligned(const void* pointer) {
  return reinterpret_cast<std::uintptr_t>(pointer) % kVectorBytes == 0;
}

// Whether rows of `cols` elements, `ld` apart from `base`, can be read (and
// written, at `out`, nullptr for none) in whole vectors.
template <class T>
bool rows_vectorized(int64_t cols, int64_t ld, const void* base, const void* out) {
  return cols % kVector<T> == 0 && ld % kVector<T> == 0 && aligned(base) && aligned(out);
}

// Merges the stats of a warp's lanes in a butterfly: every lane ends with the
// same result, as row_stats_merge is commutative.
template <class C>
__device__ RowStats<C> warp_merge(RowStats<C> s) {
#pragma unroll
  for (int offset = kWarpSize / 2; offset > 0; offset /= 2) {
    const RowStats<C> other{__shfl_xor_sync(0xffffffffu, s.max, offset),
                            __shfl_xor_sync(0xffffffffu, s.sum_exp, offset),
                            __shfl_xor_sync(0xffffffffu, s.pos, offset),
                            __shfl_xor_sync(0xffffffffu, s.pos_gap, offset)};
    s = row_stats_merge(s, other);
  }
  return s;
}

// The threads that share a row: a warp, or a whole block. A grid-stride loop
// over rows starts at first_row() and steps by row_stride().
struct WarpGroup {
  __device__ int rank() const { return threadIdx.x % kWarpSize; }
  __device__ int size() const { return kWarpSize; }
  __device__ int64_t first_row() const {
    return int64_t(blockIdx.x) * (blockDim.x / kWarpSize) + threadIdx.x / kWarpSize;
  }
  __device__ int64_t row_stride() const { return int64_t(gridDim.x) * (blockDim.x / kWarpSize); }
  template <class C>
  __device__ RowStats<C> merge(const RowStats<C>& s) const {
    return warp_merge(s);
  }
};

template <class C>
struct BlockGroup {
  RowStats<C>* warp_stats;  // shared, one entry per warp

  __device__ int rank() const { return threadIdx.x; }
  __device__ int size() const { return blockDim.x; }
  __device__ int64_t first_row() const { return blockIdx.x; }
  __device__ int64_t row_stride() const { return gridDim.x; }
  // Every thread of the block must call it.
  __device__ RowStats<C> merge(const RowStats<C>& s) const {
    const RowStats<C> warp = warp_merge(s);
    const int lane = threadIdx.x % kWarpSize;
    if (lane == 0) warp_stats[threadIdx.x / kWarpSize] = warp;
    __syncthreads();
    // Each warp merges the warps' stats in the same order, so every thread
    // gets the same result without another round through shared memory.
    const int warps = blockDim.x / kWarpSize;
    const RowStats<C> row = warp_merge(lane < warps ? warp_stats[lane] : row_stats_empty<C>());
    __syncthreads();  // the next row rewrites warp_stats
    return row;
  }
};

// The sum of every thread's x over its group (a warp, or the block with
// `warp_sums` shared, one entry per warp), returned to every thread, in a
// fixed order: a butterfly gives every lane the same bits (each step adds the
// same two values, and addition commutes), and the block adds its warps'
// sums in warp order. BlockGroup: every thread of the block must call it.
template <class C>
__device__ C warp_sum(C x) {
#pragma unroll
  for (int offset = kWarpSize / 2; offset > 0; offset /= 2) x += __shfl_xor_sync(0xffffffffu, x, offset);
  return x;
}
// The largest x of a warp's lanes, returned to every lane.
template <class C>
__device__ C warp_max(C x) {
#pragma unroll
  for (int offset = kWarpSize / 2; offset > 0; offset /= 2) {
    const C other = __shfl_xor_sync(0xffffffffu, x, offset);
    x = other > x ? other : x;
  }
  return x;
}
template <class C>
__device__ C group_sum(const WarpGroup&, C x, C* /*warp_sums*/) {
  return warp_sum(x);
}
template <class C, class S>
__device__ C group_sum(const BlockGroup<S>&, C x, C* warp_sums) {
  const C warp = warp_sum(x);
  if (threadIdx.x % kWarpSize == 0) warp_sums[threadIdx.x / kWarpSize] = warp;
  __syncthreads();
  C total = C(0);
  for (int w = 0; w < int(blockDim.x / kWarpSize); ++w) total += warp_sums[w];
  __syncthreads();  // the next row rewrites warp_sums
  return total;
}

// Kernels that read each row once (the tile kernels) give a row a warp, in
// blocks of kWarpRowsPerBlock warps, or, for rows of more than
// kStreamedWarpVectors vectors, a block of kStreamedBlockThreads threads.
constexpr int kStreamedBlockThreads = 256;
constexpr int64_t kStreamedWarpVectors = 16 * kWarpSize;

struct StreamedRows {
  bool block_per_row;
  int threads;            // per block
  int64_t blocks_wanted;  // one row per warp or block
};

constexpr StreamedRows streamed_rows(int64_t rows, int64_t cols, std::size_t value_size) {
  if (cols > kStreamedWarpVectors * (kVectorBytes / int64_t(value_size)))
    return StreamedRows{true, kStreamedBlockThreads, rows};
  return StreamedRows{false, kWarpSize * kWarpRowsPerBlock,
                      ceil_div(rows, kWarpRowsPerBlock)};
}

// A kernel's Group, given its shared scratch for BlockGroup's merge.
template <class Group, class C>
__device__ Group make_row_group(RowStats<C>* warp_stats) {
  if constexpr (std::is_same_v<Group, WarpGroup>) return WarpGroup{};
  else return Group{warp_stats};
}

// Enough blocks to fill the device once (grid-stride loops do the rest), and
// no more than there is work for.
template <class Kernel>
unsigned grid_size(Kernel kernel, int threads, std::size_t shared_bytes, int64_t blocks_wanted,
                   const DeviceLimits& limits) {
  int per_multiprocessor = 0;
  NPAIRS_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_multiprocessor, kernel,
                                                                  threads, shared_bytes));
  const int64_t resident = int64_t(std::max(per_multiprocessor, 1)) * limits.multiprocessors;
  return static_cast<unsigned>(std::min(blocks_wanted, resident));
}

// Queues the kernel for the threads that `plan` gives a row (block_kernel or
// warp_kernel: a kernel's BlockGroup and WarpGroup instantiations), on a grid
// that fills the device once; throws Error when this launch fails.
template <class BlockKernel, class WarpKernel, class... Args>
void launch(const StreamedRows& plan, BlockKernel block_kernel, WarpKernel warp_kernel, const DeviceLimits& limits,
            cudaStream_t stream, const Args&... args) {
  const auto launch_filling = [&](auto kernel) {
    launch(kernel, grid_size(kernel, plan.threads, 0, plan.blocks_wanted, limits), plan.threads, 0, stream, args...);
  };
  if (plan.block_per_row) launch_filling(block_kernel);
  else launch_filling(warp_kernel);
}

}  // namespace npairs::cuda
