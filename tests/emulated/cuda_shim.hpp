// A CPU emulator for the CUDA kernels, so that machines without a GPU (CI
// among them) execute every kernel of cuda/ itself. The kernel sources are
// compiled as C++ after this header, which takes the place of cuda/launch.cuh
// (its include guard is defined here, and npairs::cuda::launch runs
// emu::launch); emulate_kernel.cmake rewrites only an `extern __shared__`
// array (into a reference to emu::dynamic_shared_memory).
//
// Every emulated thread is a ucontext fiber; the blocks of a launch run one
// after another on the calling OS thread. A fiber runs until it reaches
// __syncthreads or __shfl_xor_sync, and the scheduler releases a barrier once
// every thread it concerns has arrived, so the kernels' indexing, loops,
// barriers, shuffles, shared memory and dynamic shared memory all run as
// written. emu::Schedule picks the order in which threads run between
// barriers: a race between threads shows up as results that differ between
// schedules (atomics are whole operations: fibers switch only at barriers
// and shuffles). The emulator reports what real hardware would not forgive: a
// shuffle that not all 32 lanes reach, or that lanes reach with different
// arguments; threads at different __syncthreads; a __syncthreads after some
// threads have exited; a deadlock; dynamic shared memory beyond the
// attribute the launch set.
//
// What it cannot show: that nvcc compiles the kernels (the CUDA build does
// that), register use, spills and __launch_bounds__, real occupancy and grid
// sizes (cudaOccupancyMaxActiveBlocksPerMultiprocessor is a stub), the GPU
// memory model (a write is visible to every thread at once here; blocks never
// overlap), FMA contraction and the device's exp/log (host libm, no fused
// multiply-adds), and speed. bench/gpu-check.sh covers those on a GPU.
#pragma once

#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime_api.h>
#include <library_types.h>
#include <sys/mman.h>
#include <ucontext.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <stdexcept>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "cuda_check.hpp"
#include "row_math.hpp"

// The CUDA keywords as plain C++: a static __shared__ variable is one per
// launch, which is right because blocks run one at a time.
#undef __global__
#undef __device__
#undef __host__
#undef __forceinline__
#undef __shared__
#undef __launch_bounds__
#undef __align__
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __shared__ static
#define __launch_bounds__(...)
#define __align__(n) __attribute__((aligned(n)))

namespace emu {

struct Dim3 {
  unsigned x = 0, y = 0, z = 0;
};

// The order in which the threads of a block run between barriers.
enum class Schedule {
  in_order,      // every thread to its next barrier, thread 0 first; blocks in order
  reversed,      // the same, last thread first; blocks in reverse order
  warp_by_warp,  // each warp as far as it can get before the next warp starts
};

// What a launch was asked for.
struct Launch {
  void (*kernel)();
  unsigned grid;
  unsigned threads;
  std::size_t shared_bytes;
};

// The merged statistics a thread computed for one row (see the
// row_grad_coeffs hook below), widened to double.
struct RowStatsRecord {
  double max, sum_exp, pos, pos_gap;
};

constexpr unsigned kMaxThreads = 1024;
constexpr unsigned kWarpSize = 32;
constexpr std::size_t kDynamicSharedBytes = 256 * 1024;
// What a kernel gets without cudaFuncAttributeMaxDynamicSharedMemorySize.
constexpr std::size_t kDefaultDynamicSharedBytes = 48 * 1024;

alignas(256) inline unsigned char dynamic_shared_memory[kDynamicSharedBytes];

inline Dim3 thread_index, block_index, block_dim, grid_dim;

// Set by the test before each launch_row_loss call, read back after it.
inline Schedule schedule = Schedule::in_order;
inline unsigned row_group_threads = kWarpSize;  // threads that share a row: 32 or the block
inline std::vector<Launch> launches;
inline std::vector<std::string> errors;
inline int64_t rows_finished = 0;  // rows whose gradient coefficients a group computed
inline int max_dynamic_shared_attribute = 0;
// What cudaGetLastError and cudaPeekAtLastError return: a test sets an error
// the caller left pending, which no launcher may consult (launch.cuh).
inline cudaError_t pending_error = cudaSuccess;

inline void report(const std::string& message) {
  if (errors.size() < 20) errors.push_back(message);
}

namespace detail {

enum class FiberState { ready, at_shuffle, at_syncthreads, done };

struct Shuffle {
  unsigned mask;
  int lane_mask;
  std::size_t bytes;
};

struct Fiber {
  ucontext_t context;
  FiberState state = FiberState::ready;
  Shuffle shuffle{};
  int64_t shuffles = 0;     // reached so far, to tell shuffles apart
  int64_t syncthreads = 0;  // likewise for __syncthreads
  int exchange_slot = 0;
  std::vector<RowStatsRecord> row_stats;
};

constexpr std::size_t kPageBytes = 4096;
constexpr std::size_t kStackBytes = 128 * 1024;

inline Fiber fibers[kMaxThreads];
// The predicates of __syncthreads_or, in two slots by the parity of the
// barrier: a thread released from one barrier may reach the next while
// slower threads still read this one's.
inline int barrier_predicates[2][kMaxThreads];
inline ucontext_t scheduler_context;
inline unsigned current = 0;
inline std::function<void()> thread_body;
// Shuffle values per warp and lane, in two slots: a lane writes the next
// shuffle's value while slower lanes may still read this one's.
inline unsigned char exchange[kMaxThreads / kWarpSize][2][kWarpSize][8];

// The fiber stacks, each above a PROT_NONE page so that an overflow faults
// instead of overwriting the next stack.
inline char* stacks() {
  static char* const base = [] {
    const std::size_t stride = kPageBytes + kStackBytes;
    void* p = mmap(nullptr, stride * kMaxThreads, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) throw std::runtime_error("emu: cannot map the fiber stacks");
    char* b = static_cast<char*>(p);
    for (unsigned t = 0; t < kMaxThreads; ++t) mprotect(b + t * stride, kPageBytes, PROT_NONE);
    return b;
  }();
  return base;
}

inline void suspend(FiberState state) {
  fibers[current].state = state;
  swapcontext(&fibers[current].context, &scheduler_context);
}

inline void fiber_entry() {
  thread_body();
  suspend(FiberState::done);
}

inline void resume(unsigned t) {
  current = t;
  thread_index = Dim3{t, 0, 0};
  swapcontext(&scheduler_context, &fibers[t].context);
}

// Releases warp w from its shuffle once all its lanes are there.
inline bool release_shuffle(unsigned w) {
  Fiber* lanes = fibers + w * kWarpSize;
  unsigned waiting = 0;
  for (unsigned l = 0; l < kWarpSize; ++l) {
    if (lanes[l].state == FiberState::ready) return false;
    if (lanes[l].state == FiberState::at_shuffle) ++waiting;
  }
  if (waiting == 0) return false;
  if (waiting != kWarpSize)
    report("warp " + std::to_string(w) + ": a shuffle that only " + std::to_string(waiting) +
           " of 32 lanes reach");
  for (unsigned l = 0; l < kWarpSize; ++l) {
    if (lanes[l].state != FiberState::at_shuffle) continue;
    const Shuffle& s = lanes[l].shuffle;
    // The kernels shuffle with every lane; the emulator models no other mask.
    if (s.mask != 0xffffffffu)
      report("warp " + std::to_string(w) + ": a shuffle whose mask leaves lanes out");
    if (s.lane_mask != lanes[0].shuffle.lane_mask || s.bytes != lanes[0].shuffle.bytes ||
        lanes[l].shuffles != lanes[0].shuffles)
      report("warp " + std::to_string(w) + ": lanes at different shuffles");
    lanes[l].state = FiberState::ready;
  }
  return true;
}

// Releases the block from __syncthreads once every thread is there. Returns
// false when nothing can move.
inline bool release_syncthreads(unsigned threads) {
  unsigned waiting = 0, done = 0;
  for (unsigned t = 0; t < threads; ++t) {
    if (fibers[t].state == FiberState::at_syncthreads) ++waiting;
    if (fibers[t].state == FiberState::done) ++done;
  }
  if (waiting == 0 || waiting + done != threads) return false;
  if (done) report("__syncthreads after " + std::to_string(done) + " threads exited");
  for (unsigned t = 0; t < threads; ++t) {
    if (fibers[t].state != FiberState::at_syncthreads) continue;
    if (fibers[t].syncthreads != fibers[0].syncthreads)
      report("threads at different __syncthreads");
    fibers[t].state = FiberState::ready;
  }
  return true;
}

// Runs one block of `threads` threads to the end. Returns false on deadlock.
inline bool run_block(unsigned threads) {
  char* const stack_base = stacks();
  for (unsigned t = 0; t < threads; ++t) {
    Fiber& f = fibers[t];
    f.state = FiberState::ready;
    f.shuffles = f.syncthreads = 0;
    f.exchange_slot = 0;
    f.row_stats.clear();
    getcontext(&f.context);
    f.context.uc_stack.ss_sp = stack_base + t * (kPageBytes + kStackBytes) + kPageBytes;
    f.context.uc_stack.ss_size = kStackBytes;
    f.context.uc_link = nullptr;
    makecontext(&f.context, fiber_entry, 0);
  }
  const unsigned warps = threads / kWarpSize;
  for (;;) {
    bool moved = false;
    if (schedule == Schedule::warp_by_warp) {
      for (unsigned w = 0; w < warps; ++w) {
        do {
          for (unsigned l = 0; l < kWarpSize; ++l) {
            const unsigned t = w * kWarpSize + l;
            if (fibers[t].state == FiberState::ready) {
              resume(t);
              moved = true;
            }
          }
        } while (release_shuffle(w));
      }
    } else {
      for (unsigned k = 0; k < threads; ++k) {
        const unsigned t = schedule == Schedule::reversed ? threads - 1 - k : k;
        if (fibers[t].state == FiberState::ready) {
          resume(t);
          moved = true;
        }
      }
      for (unsigned w = 0; w < warps; ++w) moved |= release_shuffle(w);
    }
    bool all_done = true;
    for (unsigned t = 0; t < threads; ++t) all_done &= fibers[t].state == FiberState::done;
    if (all_done) return true;
    moved |= release_syncthreads(threads);
    if (!moved) {
      report("deadlock in block " + std::to_string(block_index.x));
      return false;
    }
  }
}

// Every thread of a row group must have merged the same statistics for the
// same rows: the kernels rely on it to write a consistent gradient row.
inline void check_row_stats(unsigned threads) {
  for (unsigned t = 0; t < threads; ++t) {
    const unsigned leader = t / row_group_threads * row_group_threads;
    const std::vector<RowStatsRecord>& mine = fibers[t].row_stats;
    const std::vector<RowStatsRecord>& theirs = fibers[leader].row_stats;
    if (t == leader) {
      rows_finished += int64_t(mine.size());
      continue;
    }
    if (mine.size() != theirs.size() ||
        (!mine.empty() && std::memcmp(mine.data(), theirs.data(), mine.size() * sizeof mine[0]))) {
      report("block " + std::to_string(block_index.x) + ": thread " + std::to_string(t) +
             " merged other row statistics than thread " + std::to_string(leader));
      return;
    }
  }
}

}  // namespace detail

template <class... Params, class... Args>
void launch(void (*kernel)(Params...), unsigned grid, unsigned threads, std::size_t shared_bytes,
            cudaStream_t, Args&&... args) {
  launches.push_back(Launch{reinterpret_cast<void (*)()>(kernel), grid, threads, shared_bytes});
  if (grid == 0 || threads == 0 || threads > kMaxThreads || threads % kWarpSize) {
    report("launch of " + std::to_string(grid) + " blocks of " + std::to_string(threads) +
           " threads");
    return;
  }
  if (shared_bytes > kDynamicSharedBytes ||
      (shared_bytes > kDefaultDynamicSharedBytes &&
       shared_bytes > std::size_t(max_dynamic_shared_attribute))) {
    report("launch with " + std::to_string(shared_bytes) +
           " bytes of dynamic shared memory, above the kernel's attribute");
    return;
  }
  // Every thread gets its own copy of the arguments, as from CUDA's
  // parameter space.
  const std::tuple<Params...> params(std::forward<Args>(args)...);
  detail::thread_body = [&params, kernel] { std::apply(kernel, params); };
  grid_dim = Dim3{grid, 1, 1};
  block_dim = Dim3{threads, 1, 1};
  for (unsigned k = 0; k < grid; ++k) {
    block_index = Dim3{schedule == Schedule::reversed ? grid - 1 - k : k, 0, 0};
    // Uninitialised shared memory: NaN in every floating type.
    std::memset(dynamic_shared_memory, 0xFF, kDynamicSharedBytes);
    if (!detail::run_block(threads)) return;
    detail::check_row_stats(threads);
  }
}

}  // namespace emu

#define threadIdx (::emu::thread_index)
#define blockIdx (::emu::block_index)
#define blockDim (::emu::block_dim)
#define gridDim (::emu::grid_dim)

inline void __syncthreads() {
  ++emu::detail::fibers[emu::detail::current].syncthreads;
  emu::detail::suspend(emu::detail::FiberState::at_syncthreads);
}

inline int __syncthreads_or(int predicate) {
  using emu::detail::barrier_predicates;
  const int slot = int(emu::detail::fibers[emu::detail::current].syncthreads % 2);
  barrier_predicates[slot][emu::thread_index.x] = predicate;
  __syncthreads();
  int any = 0;
  for (unsigned t = 0; t < emu::block_dim.x; ++t) any |= barrier_predicates[slot][t] != 0;
  return any;
}

// Fibers switch only at barriers and shuffles, so an atomic is one step.
inline long long atomicMin(long long* address, long long value) {
  const long long old = *address;
  if (value < old) *address = value;
  return old;
}

template <class V>
V __shfl_xor_sync(unsigned mask, V value, int lane_mask, int width = 32) {
  static_assert(sizeof(V) <= 8, "one 8-byte exchange slot per lane");
  using emu::detail::exchange;
  emu::detail::Fiber& f = emu::detail::fibers[emu::detail::current];
  const unsigned warp = emu::thread_index.x / emu::kWarpSize;
  const unsigned lane = emu::thread_index.x % emu::kWarpSize;
  if (width != 32) emu::report("__shfl_xor_sync with width " + std::to_string(width));
  f.exchange_slot ^= 1;
  std::memcpy(exchange[warp][f.exchange_slot][lane], &value, sizeof value);
  f.shuffle = emu::detail::Shuffle{mask, lane_mask, sizeof value};
  ++f.shuffles;
  emu::detail::suspend(emu::detail::FiberState::at_shuffle);
  V result;
  std::memcpy(&result, exchange[warp][f.exchange_slot][(lane ^ unsigned(lane_mask)) % emu::kWarpSize],
              sizeof result);
  return result;
}

// The runtime calls the launcher makes. These templates take the kernel
// pointer itself, so overload resolution prefers them to the C API's
// `const void*` declarations.
template <class Kernel>
cudaError_t cudaOccupancyMaxActiveBlocksPerMultiprocessor(int* blocks, Kernel, int threads,
                                                          std::size_t) {
  *blocks = threads >= 1024 ? 1 : 2;
  return cudaSuccess;
}

template <class Kernel>
cudaError_t cudaFuncSetAttribute(Kernel, cudaFuncAttribute attribute, int value) {
  if (attribute == cudaFuncAttributeMaxDynamicSharedMemorySize)
    emu::max_dynamic_shared_attribute = value;
  return cudaSuccess;
}

extern "C" inline cudaError_t cudaGetLastError(void) { return emu::pending_error; }
extern "C" inline cudaError_t cudaPeekAtLastError(void) { return emu::pending_error; }

// cuda/launch.cuh's place: every launch of the kernel sources runs here.
#define NPAIRS_CUDA_LAUNCH_CUH
namespace npairs::cuda {
template <class... Params, class... Args>
void launch(void (*kernel)(Params...), unsigned grid, unsigned threads, std::size_t shared_bytes,
            cudaStream_t stream, Args&&... args) {
  emu::launch(kernel, grid, threads, shared_bytes, stream, std::forward<Args>(args)...);
}
}  // namespace npairs::cuda

// cuda/cuda_check.cpp needs the CUDA runtime library; the emulated kernels
// only need a failed check to be visible.
namespace npairs::cuda {
[[noreturn]] inline void throw_cuda_error(cudaError_t status, const char* call, const char*, int) {
  throw std::runtime_error(std::string(call) + " returned " + std::to_string(int(status)));
}
[[noreturn]] inline void throw_cublas_error(cublasStatus_t status, const char* call, const char*,
                                            int) {
  throw std::runtime_error(std::string(call) + " returned " + std::to_string(int(status)));
}

// The hook through which the emulator sees each thread's merged statistics:
// the kernels call row_grad_coeffs unqualified from namespace npairs::cuda,
// so these non-templates are found first and preferred to the template in
// row_math.hpp (found by argument-dependent lookup), which they forward to.
// Should the kernels stop calling them, emu::rows_finished stays 0 and the
// test fails.
inline RowGradCoeffs<float> row_grad_coeffs(const RowStats<float>& s, float scale) {
  emu::detail::fibers[emu::detail::current].row_stats.push_back(
      emu::RowStatsRecord{s.max, s.sum_exp, s.pos, s.pos_gap});
  return ::npairs::row_grad_coeffs<float>(s, scale);
}
inline RowGradCoeffs<double> row_grad_coeffs(const RowStats<double>& s, double scale) {
  emu::detail::fibers[emu::detail::current].row_stats.push_back(
      emu::RowStatsRecord{s.max, s.sum_exp, s.pos, s.pos_gap});
  return ::npairs::row_grad_coeffs<double>(s, scale);
}
}  // namespace npairs::cuda
