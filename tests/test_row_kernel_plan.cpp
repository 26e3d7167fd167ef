// The CUDA row kernels' plan (cuda/row_kernel_plan.cpp, plain C++): every row
// length gets a kernel whose registers or shared memory hold the whole row,
// with the fewest threads, for every element size. Runs without a GPU; the
// kernels themselves are checked by test_cuda.
#include <gtest/gtest.h>

#include <set>

#include "row_kernel_plan.hpp"

namespace {

using npairs::cuda::DeviceLimits;
using npairs::cuda::plan_row_kernel;
using npairs::cuda::RowKernel;
using npairs::cuda::RowKernelPlan;

constexpr std::size_t kReserved = 1024;

std::set<int64_t> row_lengths(std::size_t value_size) {
  const int64_t per_thread = npairs::cuda::row_elements_per_thread(value_size);
  std::set<int64_t> lengths;
  for (int64_t cols = 1; cols <= 1100; ++cols) lengths.insert(cols);
  for (int64_t edge : {32 * per_thread, 512 * per_thread, int64_t(12 * 1024), int64_t(56 * 1024),
                       int64_t(58 * 1024), int64_t(116 * 1024), int64_t(1) << 20})
    for (int64_t d = -17; d <= 17; ++d) lengths.insert(edge + d);
  for (int64_t cols = 1101; cols < 300000; cols = cols * 9 / 8 + 7) lengths.insert(cols);
  return lengths;
}

TEST(RowKernelPlan, EveryRowIsHeldWhole) {
  for (std::size_t value_size : {2u, 4u, 8u}) {
    const int64_t vector = 16 / int64_t(value_size);
    const int64_t per_thread = npairs::cuda::row_elements_per_thread(value_size);
    EXPECT_EQ(per_thread, npairs::cuda::kRowChunks * vector);
    // 48 KiB (the default), 100 KiB, and H100/H200's 227 KiB opt-in.
    for (std::size_t shared : {std::size_t(48) << 10, std::size_t(100) << 10, std::size_t(232448)}) {
      const DeviceLimits limits{132, shared};
      RowKernel previous = RowKernel::warp;
      for (int64_t cols : row_lengths(value_size)) {
        SCOPED_TRACE(testing::Message() << "value_size " << value_size << ", shared " << shared << ", cols "
                                        << cols);
        const RowKernelPlan plan = plan_row_kernel(cols, value_size, limits, kReserved);
        EXPECT_EQ(plan.vector_width, vector);
        EXPECT_GE(int(plan.kernel), int(previous)) << "longer rows never go back to a smaller kernel";
        previous = plan.kernel;
        EXPECT_EQ(plan.threads % 32, 0);
        switch (plan.kernel) {
          case RowKernel::warp:
            EXPECT_EQ(plan.threads, 32 * plan.rows_per_block);
            EXPECT_GE(32 * per_thread, cols);
            EXPECT_EQ(plan.shared_bytes, 0u);
            break;
          case RowKernel::block:
            EXPECT_EQ(plan.rows_per_block, 1);
            EXPECT_LE(plan.threads, npairs::cuda::kMaxRegisterRowThreads);
            EXPECT_GE(plan.threads * per_thread, cols) << "the registers hold the row";
            EXPECT_LT((plan.threads - 32) * per_thread, cols) << "no whole idle warp";
            EXPECT_GT(cols, 32 * per_thread) << "a warp would have held it";
            break;
          case RowKernel::staged: {
            EXPECT_EQ(plan.rows_per_block, 1);
            EXPECT_EQ(plan.threads, npairs::cuda::kMaxRowThreads);
            EXPECT_GT(cols, npairs::cuda::kMaxRegisterRowThreads * per_thread);
            const auto row_bytes = std::size_t((cols + vector - 1) / vector) * 16;
            const bool fits = row_bytes + kReserved <= shared;
            EXPECT_EQ(plan.shared_bytes, fits ? row_bytes : 0u) << "staged in shared memory exactly when it fits";
            break;
          }
        }
      }
      EXPECT_EQ(previous, RowKernel::staged);
    }
  }
}

}  // namespace
