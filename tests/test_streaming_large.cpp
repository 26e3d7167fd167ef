// The streaming path at a size whose dense logits would not fit this
// machine: R = M = 65536, D = 64, float32 (16 GiB of logits, 32 GiB with
// their gradient), under a 256 MiB workspace limit on the CPU. Checked
// against a float64 reference computed in row blocks (OpenBLAS dgemm for
// the logits and the gradient products, plain loops for the rows), and the
// resident memory the call adds is checked against the limit. Label `large`
// (a few minutes on 2 cores): `ctest --preset release -L large`.

#include <algorithm>
#include <cmath>
#include <fstream>
#include <string>
#include <vector>

#include "blas.hpp"
#include "test_util.hpp"

namespace {

constexpr int64_t kRows = 65536, kDim = 64, kBlock = 1024;
constexpr std::size_t kLimit = std::size_t(256) << 20;

double status_bytes(const char* field) {
  std::ifstream status("/proc/self/status");
  std::string line;
  const std::string prefix = std::string(field) + ":";
  while (std::getline(status, line)) {
    if (line.rfind(prefix, 0) == 0) return 1024.0 * std::strtod(line.c_str() + prefix.size(), nullptr);
  }
  return -1;
}

TEST(StreamingLarge, Embeddings65536UnderA256MiBLimit) {
  const int64_t R = kRows, M = kRows, D = kDim, classes = R / 2;
  npt::Rng rng(2026);
  std::vector<float> anchors(std::size_t(R * D)), positives(std::size_t(M * D));
  for (float& v : anchors) v = float(rng.normal() * 0.25);
  for (float& v : positives) v = float(rng.normal() * 0.25);
  std::vector<int32_t> labels(static_cast<std::size_t>(R));
  for (int64_t i = 0; i < R; ++i) labels[std::size_t(i)] = int32_t((i * 7919) % classes);

  npairs_problem problem;
  npairs_problem_init(&problem);
  problem.rows = R;
  problem.dtype = NPAIRS_F32;
  problem.labels = labels.data();
  problem.label_dtype = NPAIRS_I32;
  problem.anchors = anchors.data();
  problem.positives = positives.data();
  problem.dim = D;
  npairs_options options;
  npairs_options_init(&options);
  options.temperature = 0.5;
  std::vector<float> grad_anchors(std::size_t(R * D), NAN), grad_positives(std::size_t(M * D), NAN);
  npairs_gradients grads;
  npairs_gradients_init(&grads);
  grads.anchors = grad_anchors.data();
  grads.positives = grad_positives.data();
  float loss = NAN;

  npt::Context ctx;
  ASSERT_NPAIRS_OK(ctx.status());
  ASSERT_NPAIRS_OK(npairs_context_set_workspace_limit(ctx.get(), kLimit));
  std::size_t reported = 0;
  ASSERT_NPAIRS_OK(npairs_workspace_size(ctx.get(), &options, &problem, &grads, &reported));
  EXPECT_LE(reported, kLimit);
  {
    std::ofstream clear("/proc/self/clear_refs");
    clear << "5";
  }
  const double before = status_bytes("VmRSS");
  ASSERT_NPAIRS_OK(npairs_loss(ctx.get(), &options, &problem, nullptr, &loss, &grads));
  const double growth = status_bytes("VmHWM") - before;
  // The workspace, plus OpenBLAS's own buffers on its first calls.
  EXPECT_LE(growth, double(kLimit) + double(64 << 20)) << "resident growth " << growth / double(1 << 20) << " MiB";

  // The float64 reference, in blocks of rows.
  std::vector<double> a(anchors.begin(), anchors.end()), p(positives.begin(), positives.end());
  std::vector<double> ref_da(std::size_t(R * D), 0.0), ref_dp(std::size_t(M * D), 0.0);
  std::vector<double> z(std::size_t(kBlock * M));
  const double inv_tau = 1.0 / options.temperature, r = 1.0 / double(R);
  double loss_sum = 0;
  for (int64_t r0 = 0; r0 < R; r0 += kBlock) {
    npairs::blas::gemm(false, true, kBlock, M, D, inv_tau, &a[std::size_t(r0 * D)], D, p.data(), D, 0.0, z.data(), M);
    for (int64_t i = 0; i < kBlock; ++i) {
      double* row = &z[std::size_t(i * M)];
      const int32_t label = labels[std::size_t(r0 + i)];
      double max = -INFINITY, positive = 0, count = 0;
      for (int64_t j = 0; j < M; ++j) max = std::max(max, row[j]);
      double sum = 0;
      for (int64_t j = 0; j < M; ++j) sum += std::exp(row[j] - max);
      for (int64_t j = 0; j < M; ++j) {
        if (labels[std::size_t(j)] == label) {
          positive += row[j];
          count += 1;
        }
      }
      loss_sum += max + std::log(sum) - positive / count;
      for (int64_t j = 0; j < M; ++j) {
        const double target = labels[std::size_t(j)] == label ? 1.0 / count : 0.0;
        row[j] = r * inv_tau * (std::exp(row[j] - max) / sum - target);  // dL/dS
      }
    }
    npairs::blas::gemm(false, false, kBlock, D, M, 1.0, z.data(), M, p.data(), D, 0.0, &ref_da[std::size_t(r0 * D)], D);
    npairs::blas::gemm(true, false, M, D, kBlock, 1.0, z.data(), M, &a[std::size_t(r0 * D)], D, 1.0, ref_dp.data(), D);
  }
  EXPECT_NEAR(double(loss), loss_sum * r, 1e-5 * std::fabs(loss_sum * r));
  EXPECT_TRUE(npt::all_close("grads.anchors", npt::to_double(grad_anchors), ref_da, 1e-4));
  EXPECT_TRUE(npt::all_close("grads.positives", npt::to_double(grad_positives), ref_dp, 1e-4));
}

}  // namespace
