#include "row_kernel_plan.hpp"
#include "row_math.hpp"

namespace npairs::cuda {

RowKernelPlan plan_row_kernel(int64_t cols, std::size_t value_size, const DeviceLimits& limits,
                              std::size_t reserved_shared_bytes) {
  RowKernelPlan plan;
  plan.vector_width = int(kVectorBytes / value_size);
  const int64_t per_thread = row_elements_per_thread(value_size);
  if (cols <= kWarpSize * per_thread) {
    plan.kernel = RowKernel::warp;
    plan.threads = kWarpSize * kWarpRowsPerBlock;
    plan.rows_per_block = kWarpRowsPerBlock;
    return plan;
  }
  if (cols <= kMaxRegisterRowThreads * per_thread) {
    // The fewest whole warps that hold the row: no idle threads for rows of
    // a few thousand elements, and every thread busy up to the largest.
    const int64_t threads = ceil_div(cols, per_thread);
    plan.kernel = RowKernel::block;
    plan.threads = int(ceil_div(threads, kWarpSize) * kWarpSize);
    return plan;
  }
  plan.kernel = RowKernel::staged;
  plan.threads = kMaxRowThreads;
  const int64_t vectors = ceil_div(cols, plan.vector_width);
  const auto row_bytes = static_cast<std::size_t>(vectors) * kVectorBytes;
  if (row_bytes + reserved_shared_bytes <= limits.shared_bytes_per_block)
    plan.shared_bytes = row_bytes;
  return plan;
}

}  // namespace npairs::cuda
