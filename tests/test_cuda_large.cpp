// R * M > 2^31 on a GPU (ctest label "large"): R = M = 46341, float32
// similarity in device memory (8.6 GB), int32 labels. Checks sampled rows of
// the NONE loss and of the in-place dS against the float64 reference computed
// on those rows only, and the scalar reductions against the sum of the rows.
// The last row is the one whose elements cross index 2^31.
#include <algorithm>
#include <cmath>
#include <thread>

#include "cuda_util.hpp"

namespace {

#ifdef NPAIRS_TEST_HAVE_CUDART
constexpr int64_t kR = 46341;  // kR * kR = 2147488281 > 2^31
constexpr int64_t kClasses = 1000;

// S_ij, a deterministic function of (i, j): uniform in [-6, 6).
float similarity(int64_t i, int64_t j) {
  const uint64_t h = npt::splitmix64(static_cast<uint64_t>(i * kR + j));
  return static_cast<float>(static_cast<double>(h >> 40) / double(1ull << 24) * 12.0 - 6.0);
}
int32_t label(int64_t i) { return static_cast<int32_t>(npt::splitmix64(~static_cast<uint64_t>(i)) % kClasses); }

// The reference of row i alone: 1 x M against all column labels, SUM with
// g = w = 1, so r = 1 and dS is that row's dS in the full problem too.
ref::Result<double> reference_row(int64_t i, const std::vector<int64_t>& labels) {
  ref::Problem p;
  p.rows = 1;
  p.cols = kR;
  p.labels = {labels[static_cast<std::size_t>(i)]};
  p.column_labels = labels;
  p.similarity.resize(static_cast<std::size_t>(kR));
  for (int64_t j = 0; j < kR; ++j) p.similarity[static_cast<std::size_t>(j)] = similarity(i, j);
  p.reduction = ref::Reduction::Sum;
  return ref::compute<double>(p);
}
#endif

TEST(CudaLarge, MoreThan2To31Elements) {
  NPT_REQUIRE_CUDA();
  NPT_REQUIRE_CUDART();
#ifdef NPAIRS_TEST_HAVE_CUDART
  const std::size_t n = static_cast<std::size_t>(kR * kR);
  ASSERT_GT(n, std::size_t(1) << 31);
  const std::size_t bytes = n * sizeof(float);
  std::size_t free_bytes = 0, total_bytes = 0;
  NPT_ASSERT_CUDA(cudaMemGetInfo(&free_bytes, &total_bytes));
  // S itself plus room for a workspace of the same size.
  if (free_bytes < 2 * bytes + (std::size_t(2) << 30)) {
    GTEST_SKIP() << "needs about " << (2 * bytes >> 30) + 2 << " GiB of free device memory, "
                 << (free_bytes >> 30) << " GiB free";
  }

  npt::Context gpu(NPAIRS_BACKEND_CUDA, 0);
  ASSERT_NPAIRS_OK(gpu.status());

  std::vector<int64_t> labels64(static_cast<std::size_t>(kR));
  std::vector<int32_t> labels32(static_cast<std::size_t>(kR));
  for (int64_t i = 0; i < kR; ++i) labels32[static_cast<std::size_t>(i)] = label(i);
  for (int64_t i = 0; i < kR; ++i) labels64[static_cast<std::size_t>(i)] = labels32[static_cast<std::size_t>(i)];

  float* d_s = nullptr;
  int32_t* d_labels = nullptr;
  float* d_loss = nullptr;
  NPT_ASSERT_CUDA(cudaMalloc(reinterpret_cast<void**>(&d_s), bytes));
  NPT_ASSERT_CUDA(cudaMalloc(reinterpret_cast<void**>(&d_labels), labels32.size() * sizeof(int32_t)));
  NPT_ASSERT_CUDA(cudaMalloc(reinterpret_cast<void**>(&d_loss), static_cast<std::size_t>(kR) * sizeof(float)));
  struct Free {
    void* p[3];
    ~Free() {
      for (void* q : p) cudaFree(q);
    }
  } free_all{{d_s, d_labels, d_loss}};
  NPT_ASSERT_CUDA(cudaMemcpy(d_labels, labels32.data(), labels32.size() * sizeof(int32_t), cudaMemcpyHostToDevice));

  // Generate S on the host in row blocks, in parallel, and upload.
  const int64_t block = 1024;
  std::vector<float> host(static_cast<std::size_t>(block * kR));
  const unsigned workers = std::max(1u, std::thread::hardware_concurrency());
  for (int64_t r0 = 0; r0 < kR; r0 += block) {
    const int64_t rows = std::min(block, kR - r0);
    std::vector<std::thread> pool;
    for (unsigned w = 0; w < workers; ++w) {
      pool.emplace_back([&, w] {
        for (int64_t r = w; r < rows; r += workers) {
          for (int64_t j = 0; j < kR; ++j) host[static_cast<std::size_t>(r * kR + j)] = similarity(r0 + r, j);
        }
      });
    }
    for (std::thread& t : pool) t.join();
    NPT_ASSERT_CUDA(cudaMemcpy(d_s + r0 * kR, host.data(), static_cast<std::size_t>(rows * kR) * sizeof(float),
                               cudaMemcpyHostToDevice));
  }

  npairs_problem p;
  npairs_problem_init(&p);
  p.rows = kR;
  p.dtype = NPAIRS_F32;
  p.labels = d_labels;
  p.label_dtype = NPAIRS_I32;
  p.similarity = d_s;
  npairs_options o;
  npairs_options_init(&o);

  // NONE: per-row losses.
  o.reduction = NPAIRS_REDUCTION_NONE;
  std::vector<float> rows(static_cast<std::size_t>(kR), NAN);
  NPT_ASSERT_CUDA(cudaMemcpy(d_loss, rows.data(), rows.size() * sizeof(float), cudaMemcpyHostToDevice));
  ASSERT_NPAIRS_OK(npairs_loss(gpu.get(), &o, &p, nullptr, d_loss, nullptr));
  ASSERT_NPAIRS_OK(npairs_context_synchronize(gpu.get()));
  NPT_ASSERT_CUDA(cudaMemcpy(rows.data(), d_loss, rows.size() * sizeof(float), cudaMemcpyDeviceToHost));
  double total = 0;
  for (float x : rows) {
    ASSERT_TRUE(std::isfinite(x));
    total += x;
  }

  // SUM and SUM_OVER_BATCH_SIZE against the sum of the rows.
  float sum = NAN, mean = NAN;
  o.reduction = NPAIRS_REDUCTION_SUM;
  ASSERT_NPAIRS_OK(npairs_loss(gpu.get(), &o, &p, nullptr, &sum, nullptr));  // host output: staged
  o.reduction = NPAIRS_REDUCTION_SUM_OVER_BATCH_SIZE;
  ASSERT_NPAIRS_OK(npairs_loss(gpu.get(), &o, &p, nullptr, &mean, nullptr));
  EXPECT_NEAR(sum, total, 1e-4 * std::fabs(total));
  EXPECT_NEAR(mean, total / double(kR), 1e-4 * std::fabs(total) / double(kR));

  // dS in place (SUM, g = 1): overwrites S, so last.
  npairs_gradients g;
  npairs_gradients_init(&g);
  g.similarity = d_s;
  o.reduction = NPAIRS_REDUCTION_SUM;
  ASSERT_NPAIRS_OK(npairs_loss(gpu.get(), &o, &p, nullptr, nullptr, &g));
  ASSERT_NPAIRS_OK(npairs_context_synchronize(gpu.get()));

  // Sampled rows: the first, the middle, the last two (the last crosses
  // 2^31), and random ones.
  std::vector<int64_t> sample = {0, 1, kR / 2, kR - 2, kR - 1};
  npt::Rng rng(11);
  for (int k = 0; k < 11; ++k) sample.push_back(rng.integer(0, kR - 1));
  std::vector<float> ds_row(static_cast<std::size_t>(kR));
  for (int64_t i : sample) {
    SCOPED_TRACE("row " + std::to_string(i));
    const ref::Result<double> expected = reference_row(i, labels64);
    ASSERT_TRUE(expected.valid);
    EXPECT_NEAR(rows[static_cast<std::size_t>(i)], expected.loss[0], 1e-5 * (std::fabs(expected.loss[0]) + 1));
    NPT_ASSERT_CUDA(cudaMemcpy(ds_row.data(), d_s + i * kR, ds_row.size() * sizeof(float), cudaMemcpyDeviceToHost));
    EXPECT_TRUE(npt::all_close("grads.similarity row", std::vector<double>(ds_row.begin(), ds_row.end()),
                               expected.grad_similarity, 1e-5));
  }
#endif
}

}  // namespace
