// How the fused row kernel covers a row of logits, chosen from the row length
// on the host. Plain C++ (no CUDA headers), so that the CPU tests check every
// plan covers its row.
//
// A thread owns vectors of 16 bytes (4 floats, 2 doubles, 8 halves): vector v
// is elements [v * V, v * V + V). In the register kernels thread t of a group
// of n threads owns vectors t, t + n, ..., t + (kRowChunks - 1) n.
#pragma once

#include <cstddef>
#include <cstdint>

namespace npairs::cuda {

constexpr int kVectorBytes = 16;
constexpr int kRowChunks = 4;  // vectors a thread holds in registers
constexpr int kWarpSize = 32;
constexpr int kWarpRowsPerBlock = 8;
constexpr int kMaxRowThreads = 1024;
// The register kernel's largest block: at 1024 threads a thread gets only 64
// registers and the row spills to local memory.
constexpr int kMaxRegisterRowThreads = 512;

enum class RowKernel {
  warp,    // a warp per row, the row in registers
  block,   // a block per row, the row in registers
  staged,  // a block per row, the row in shared memory when it fits, else read twice
};

struct DeviceLimits {
  int multiprocessors = 1;
  std::size_t shared_bytes_per_block = 48 * 1024;  // the opt-in maximum
};

struct RowKernelPlan {
  RowKernel kernel = RowKernel::warp;
  int vector_width = 1;           // V: elements per 16-byte vector
  int threads = kWarpSize;        // per block
  int rows_per_block = 1;         // rows a block works on at once
  std::size_t shared_bytes = 0;   // dynamic shared memory for a staged row, or 0
};

// The elements per row one thread can hold in registers.
constexpr int64_t row_elements_per_thread(std::size_t value_size) {
  return int64_t(kRowChunks) * (kVectorBytes / int64_t(value_size));
}

// `reserved_shared_bytes` is the shared memory the staged kernel uses itself.
RowKernelPlan plan_row_kernel(int64_t cols, std::size_t value_size, const DeviceLimits& limits,
                              std::size_t reserved_shared_bytes);

}  // namespace npairs::cuda
