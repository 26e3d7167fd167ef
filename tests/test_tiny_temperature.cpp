// A temperature so small that 1/tau overflows float (tau = 1e-40: 1/tau =
// 1e40 > FLT_MAX) while every logit S/tau is finite (S ~ 1e-12: z ~ 1e28).
// The scale must be kept in double where it is formed, so that float32 gives
// the finite loss; on the CPU backend, and on CUDA when a GPU is present.
#include <cmath>
#include <vector>

#include "test_util.hpp"

namespace {

constexpr double kTau = 1e-40;

// R = 3 rows, M = 3 columns, labels 0..2: loss_i = logsumexp_j z_ij - z_ii,
// with z = S / tau computed in double from the stored float S.
double reference_loss(const std::vector<float>& s, int rows, int cols) {
  double total = 0;
  for (int i = 0; i < rows; ++i) {
    double max = -INFINITY;
    for (int j = 0; j < cols; ++j) max = std::fmax(max, double(s[i * cols + j]) / kTau);
    double sum = 0;
    for (int j = 0; j < cols; ++j) sum += std::exp(double(s[i * cols + j]) / kTau - max);
    total += max + std::log(sum) - double(s[i * cols + i]) / kTau;
  }
  return total;  // reduction SUM
}

void expect_finite_loss(npairs_backend backend) {
  npt::Context ctx(backend, 0);
  ASSERT_NPAIRS_OK(ctx.status());
  const int rows = 3, cols = 3;
  // Embeddings of width 1: S = A P^T = a_i p_j ~ 1e-12.
  const std::vector<float> anchors = {1e-6f, 2e-6f, -1e-6f}, positives = {2e-6f, 1e-6f, 3e-6f};
  std::vector<float> similarity(rows * cols);
  for (int i = 0; i < rows; ++i)
    for (int j = 0; j < cols; ++j) similarity[i * cols + j] = anchors[i] * positives[j];
  const std::vector<int32_t> labels = {0, 1, 2};
  npairs_options options;
  npairs_options_init(&options);
  options.temperature = kTau;
  options.reduction = NPAIRS_REDUCTION_SUM;
  for (bool embeddings : {false, true}) {
    SCOPED_TRACE(embeddings ? "embeddings" : "similarity");
    npairs_problem problem;
    npairs_problem_init(&problem);
    problem.rows = rows;
    problem.dtype = NPAIRS_F32;
    problem.labels = labels.data();
    problem.label_dtype = NPAIRS_I32;
    if (embeddings) {
      problem.anchors = anchors.data();
      problem.positives = positives.data();
      problem.dim = 1;
    } else {
      problem.similarity = similarity.data();
    }
    float loss = NAN;
    ASSERT_NPAIRS_OK(npairs_loss(ctx.get(), &options, &problem, nullptr, &loss, nullptr));
    // The GEMM rounds a_i p_j to float once: the reference reads the same S
    // for the similarity input; for embeddings the product of two floats is
    // exact in double, and float rounding of it is what both inputs hold.
    const double expected = reference_loss(similarity, rows, cols);
    ASSERT_TRUE(std::isfinite(expected) && expected > 1e27) << expected;
    EXPECT_TRUE(std::isfinite(loss)) << loss;
    EXPECT_NEAR(double(loss), expected, 1e-5 * expected);
  }
}

TEST(TinyTemperature, CpuLossIsFinite) { expect_finite_loss(NPAIRS_BACKEND_CPU); }

TEST(TinyTemperature, CudaLossIsFinite) {
  if (npairs_backend_available(NPAIRS_BACKEND_CUDA) != 1)
    GTEST_SKIP() << "CUDA backend not usable here (library built without CUDA, or no GPU present)";
  expect_finite_loss(NPAIRS_BACKEND_CUDA);
}

}  // namespace
