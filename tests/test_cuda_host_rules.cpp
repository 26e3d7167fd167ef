// The CUDA backend's decisions that need no GPU, checked on the CPU
// (cuda/call_plan.hpp, and the memory rule of cuda/workspace.hpp): where r/tau
// goes for 16-bit gradients (with a float16 simulation at R = M = 8192), how a
// call treats each kind of caller memory, and when a call waits for the host
// (never, so that it can be captured into a CUDA graph, with device
// pointers, reserved workspace and NPAIRS_FLAG_DEFER_CHECKS).
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "call_plan.hpp"
#include "cuda_check.hpp"
#include "error.hpp"
#include "test_util.hpp"
#include "workspace.hpp"

namespace {

using npairs::cuda::GradientScaling;
using npairs::cuda::plan_gradient_scaling;

TEST(CudaHostRules, GradientScalingPlans) {
  const double factor = 1.0 / 8192 / 0.5;
  // dS only: scaled in the kernel.
  GradientScaling s = plan_gradient_scaling(2, true, false, factor);
  EXPECT_EQ(s.output_factor, factor);
  EXPECT_FALSE(s.separate_gemm_input);
  // Embedding gradients only: unscaled scratch, r/tau in alpha.
  for (std::size_t size : {2u, 4u, 8u}) {
    s = plan_gradient_scaling(size, false, true, factor);
    EXPECT_EQ(s.gemm_input_factor, 1.0);
    EXPECT_EQ(s.gemm_alpha, factor);
    EXPECT_FALSE(s.separate_gemm_input);
  }
  // Both, float or double: the GEMMs read the scaled dS output.
  s = plan_gradient_scaling(4, true, true, factor);
  EXPECT_EQ(s.output_factor, factor);
  EXPECT_FALSE(s.separate_gemm_input);
  EXPECT_EQ(s.gemm_alpha, 1.0);
  // Both, 16-bit: the GEMMs read an unscaled copy.
  s = plan_gradient_scaling(2, true, true, factor);
  EXPECT_EQ(s.output_factor, factor);
  EXPECT_TRUE(s.separate_gemm_input);
  EXPECT_EQ(s.gemm_input_factor, 1.0);
  EXPECT_EQ(s.gemm_alpha, factor);
}

// dA = (r/tau) (softmax - T) P at R = M = 8192 in float16, simulated: the
// GEMM input as the row kernel stores it (one rounding to float16), the GEMM
// exact. The plan's dA stays within float16's rounding of the reference; the
// stored dS with r/tau folded in (the plan before issue 10) loses every
// negative's term, as its entries fall below float16's smallest subnormal.
TEST(CudaHostRules, Float16GradientsKeepSmallTermsWithDsRequested) {
  const int64_t R = 8192, M = 8192, D = 16, rows_simulated = 24;
  const double tau = 1.0, factor = 1.0 / double(R) / tau;  // SUM_OVER_BATCH_SIZE
  std::mt19937_64 rng(10);
  std::normal_distribution<double> normal(0, 1);
  std::vector<double> positives(static_cast<std::size_t>(M * D));
  for (double& p : positives) p = npt::round_to_half(normal(rng));

  auto relative_error = [&](const GradientScaling& plan) {
    double max_error = 0, max_value = 0;
    std::mt19937_64 logits_rng(11);
    std::vector<double> z(static_cast<std::size_t>(M));
    for (int64_t i = 0; i < rows_simulated; ++i) {
      double max = -INFINITY, sum = 0;
      for (double& v : z) max = std::fmax(max, v = npt::round_to_half(normal(logits_rng)) / tau);
      for (double v : z) sum += std::exp(v - max);
      std::vector<double> exact(std::size_t(D), 0.0), simulated(std::size_t(D), 0.0);
      for (int64_t j = 0; j < M; ++j) {
        const double unscaled = std::exp(z[std::size_t(j)] - max) / sum - (j == i ? 1.0 : 0.0);
        const double stored = npt::round_to_half(plan.gemm_input_factor * unscaled);
        for (int64_t d = 0; d < D; ++d) {
          exact[std::size_t(d)] += factor * unscaled * positives[std::size_t(j * D + d)];
          simulated[std::size_t(d)] += plan.gemm_alpha * stored * positives[std::size_t(j * D + d)];
        }
      }
      for (int64_t d = 0; d < D; ++d) {
        max_error = std::fmax(max_error, std::fabs(simulated[std::size_t(d)] - exact[std::size_t(d)]));
        max_value = std::fmax(max_value, std::fabs(exact[std::size_t(d)]));
      }
    }
    return max_error / max_value;
  };

  const GradientScaling plan = plan_gradient_scaling(2, true, true, factor);
  const double plan_error = relative_error(plan);
  EXPECT_LT(plan_error, 1e-3) << "float16 rounding of the GEMM input is ~5e-4";
  GradientScaling folded;  // r/tau folded into the stored dS, read by the GEMMs
  folded.gemm_input_factor = factor;
  folded.gemm_alpha = 1;
  EXPECT_GT(relative_error(folded), 10 * plan_error) << "the simulation must show the lost terms";
}

cudaPointerAttributes attributes(cudaMemoryType type, int device) {
  cudaPointerAttributes a{};
  a.type = type;
  a.device = device;
  return a;
}

// Device memory of the context's device in place and asynchronous; another
// device's rejected; managed memory in place and synchronous; host memory,
// pageable (unregistered) or pinned, staged and synchronous.
TEST(CudaHostRules, MemoryKinds) {
  using npairs::cuda::memory_kind;
  using npairs::cuda::MemoryKind;
  EXPECT_EQ(memory_kind(attributes(cudaMemoryTypeDevice, 1), 1), MemoryKind::device);
  EXPECT_EQ(memory_kind(attributes(cudaMemoryTypeDevice, 0), 1), MemoryKind::other_device);
  EXPECT_EQ(memory_kind(attributes(cudaMemoryTypeDevice, 2), 0), MemoryKind::other_device);
  EXPECT_EQ(memory_kind(attributes(cudaMemoryTypeManaged, 0), 1), MemoryKind::managed);
  EXPECT_EQ(memory_kind(attributes(cudaMemoryTypeHost, 0), 0), MemoryKind::host);
  EXPECT_EQ(memory_kind(attributes(cudaMemoryTypeUnregistered, 0), 0), MemoryKind::host);
}

// The rule of SPEC section 4: device pointers, reserved workspace and the
// flag make a call that only queues work; each missing piece adds its wait.
TEST(CudaHostRules, HostWaits) {
  using npairs::cuda::plan_host_waits;
  const std::size_t needed = 1000, reserved = 4096;
  // Captureable: no wait at all, with or without targets to check.
  EXPECT_FALSE(plan_host_waits(needed, reserved, true, true, false).any());
  EXPECT_FALSE(plan_host_waits(needed, needed, true, true, false).any());
  EXPECT_FALSE(plan_host_waits(needed, reserved, false, false, false).any());  // shared labels: no check
  // Each missing piece: its own wait.
  auto w = plan_host_waits(needed, reserved, true, false, false);
  EXPECT_TRUE(w.wait_for_check && !w.grow_workspace && !w.wait_at_end);
  w = plan_host_waits(needed, needed - 1, true, true, false);
  EXPECT_TRUE(w.grow_workspace && !w.wait_for_check && !w.wait_at_end);
  w = plan_host_waits(needed, reserved, true, true, true);
  EXPECT_TRUE(w.wait_at_end && !w.grow_workspace && !w.wait_for_check);
  w = plan_host_waits(needed, 0, true, false, true);
  EXPECT_TRUE(w.grow_workspace && w.wait_for_check && w.wait_at_end);
}

// cuBLAS's NOT_SUPPORTED (a valid request this device or build cannot do) is
// UNSUPPORTED, allocation failure OUT_OF_MEMORY, anything else DEVICE; the
// message names the call and cuBLAS's description.
TEST(CudaHostRules, CublasStatuses) {
  auto status_of = [](cublasStatus_t status) {
    try {
      npairs::cuda::check(status, "cublasGemmEx_64(...)", "cuda/gemm.cpp", 42);
    } catch (const npairs::Error& e) {
      EXPECT_NE(std::string(e.what()).find("cublasGemmEx_64(...) failed at gemm.cpp:42: "), std::string::npos)
          << e.what();
      return e.status();
    }
    return npairs_status(NPAIRS_OK);
  };
  EXPECT_EQ(status_of(CUBLAS_STATUS_SUCCESS), NPAIRS_OK);
  EXPECT_EQ(status_of(CUBLAS_STATUS_NOT_SUPPORTED), NPAIRS_ERROR_UNSUPPORTED);
  EXPECT_EQ(status_of(CUBLAS_STATUS_ALLOC_FAILED), NPAIRS_ERROR_OUT_OF_MEMORY);
  EXPECT_EQ(status_of(CUBLAS_STATUS_EXECUTION_FAILED), NPAIRS_ERROR_DEVICE);
}

}  // namespace
