// Hard negative class mining (npairs_select_hard_classes) through the C API,
// against a plain-loop float64 reference of the greedy rule written from the
// header's wording (score = largest inner product with the selected classes;
// the highest score wins; ties to the smallest key(seed, step, index), then
// the smallest index): every tie case, determinism, thread counts, workspace
// limits, CPU vs CUDA (skips without a GPU) and every bad input.
#include <gtest/gtest.h>
#include <npairs/npairs.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "cuda_util.hpp"
#include "test_util.hpp"

namespace {

// The header's key(seed, step, c), written out again.
uint64_t mix(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}
uint64_t key(uint64_t seed, uint64_t step, uint64_t c) { return mix(mix(mix(seed) ^ step) ^ c); }

// The greedy rule by its definition: every step recomputes each candidate's
// score from scratch (no running maximum), in float64.
std::vector<int64_t> reference(const std::vector<double>& e, int64_t C, int64_t D, int64_t N, uint64_t seed) {
  std::vector<int64_t> selected;
  std::vector<bool> taken(static_cast<std::size_t>(C), false);
  for (int64_t step = 0; step < N; ++step) {
    int64_t winner = -1;
    double winner_score = 0;
    for (int64_t c = 0; c < C; ++c) {
      if (taken[std::size_t(c)]) continue;
      double score = -std::numeric_limits<double>::infinity();
      for (int64_t s : selected) {
        double dot = 0;
        for (int64_t k = 0; k < D; ++k) dot += e[std::size_t(c * D + k)] * e[std::size_t(s * D + k)];
        score = std::max(score, dot);
      }
      const bool better =
          winner < 0 || score > winner_score ||
          (score == winner_score && key(seed, uint64_t(step), uint64_t(c)) < key(seed, uint64_t(step), uint64_t(winner)));
      if (better) {
        winner = c;
        winner_score = score;
      }
    }
    taken[std::size_t(winner)] = true;
    selected.push_back(winner);
  }
  return selected;
}

std::vector<double> random_embeddings(int64_t C, int64_t D, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<double> normal(0.0, 1.0);
  std::vector<double> e(static_cast<std::size_t>(C * D));
  for (double& v : e) v = normal(rng);
  return e;
}

// Small integers: every inner product is exact in float and double, on any
// backend, so that ties are exact ties.
std::vector<double> integer_embeddings(int64_t C, int64_t D, uint32_t seed, int range) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> values(-range, range);
  std::vector<double> e(static_cast<std::size_t>(C * D));
  for (double& v : e) v = values(rng);
  return e;
}

constexpr int64_t kUntouched = -777;

struct Call {
  npairs_status status;
  std::vector<int64_t> selected;
  std::string message;
};

// One call on `ctx` with the embeddings in `dtype` (host memory).
Call select(npairs_context ctx, const std::vector<double>& e, int64_t C, int64_t D, int64_t N, uint64_t seed,
            npairs_dtype dtype = NPAIRS_F64) {
  std::vector<float> as_float(e.begin(), e.end());
  npairs_class_selection s;
  npairs_class_selection_init(&s);
  s.class_embeddings = dtype == NPAIRS_F32 ? static_cast<const void*>(as_float.data()) : e.data();
  s.classes = C;
  s.dim = D;
  s.dtype = dtype;
  s.count = N;
  s.seed = seed;
  Call call;
  call.selected.assign(static_cast<std::size_t>(std::max<int64_t>(N, 1)), kUntouched);
  call.status = npairs_select_hard_classes(ctx, &s, call.selected.data());
  call.message = npairs_last_error();
  return call;
}

void expect_valid_selection(const std::vector<int64_t>& selected, int64_t C) {
  std::set<int64_t> distinct(selected.begin(), selected.end());
  EXPECT_EQ(distinct.size(), selected.size()) << "the selected classes repeat";
  for (int64_t c : selected) {
    EXPECT_GE(c, 0);
    EXPECT_LT(c, C);
  }
}

class HardClasses : public ::testing::TestWithParam<npairs_dtype> {};

TEST_P(HardClasses, MatchesTheReferenceOnRandomEmbeddings) {
  const npairs_dtype dtype = GetParam();
  npt::Context ctx;
  ASSERT_NPAIRS_OK(ctx.status());
  for (const auto& [C, D, N] : {std::tuple<int64_t, int64_t, int64_t>{37, 5, 1}, {37, 5, 2}, {37, 5, 13},
                                {37, 5, 37}, {101, 17, 40}, {3, 1, 3}, {200, 3, 199}}) {
    for (uint64_t seed : {0ull, 1ull, 12345678901234567ull}) {
      SCOPED_TRACE("C " + std::to_string(C) + " D " + std::to_string(D) + " N " + std::to_string(N) +
                   " seed " + std::to_string(seed));
      // float32: inner products of random values differ from the float64
      // reference by rounding, so use integers there.
      const std::vector<double> e = dtype == NPAIRS_F64 ? random_embeddings(C, D, uint32_t(C * 7 + N))
                                                        : integer_embeddings(C, D, uint32_t(C * 7 + N), 50);
      const Call call = select(ctx.get(), e, C, D, N, seed, dtype);
      ASSERT_EQ(call.status, NPAIRS_OK) << call.message;
      EXPECT_EQ(call.selected, reference(e, C, D, N, seed));
      expect_valid_selection(call.selected, C);
    }
  }
}

TEST_P(HardClasses, AllEqualEmbeddingsFollowTheKeys) {
  const npairs_dtype dtype = GetParam();
  npt::Context ctx;
  ASSERT_NPAIRS_OK(ctx.status());
  const int64_t C = 50, D = 4;
  const std::vector<double> e(std::size_t(C * D), 0.5);
  for (uint64_t seed : {0ull, 7ull, 99ull}) {
    const Call call = select(ctx.get(), e, C, D, C, seed, dtype);
    ASSERT_EQ(call.status, NPAIRS_OK) << call.message;
    // Every step is a tie of every candidate: each step's smallest key.
    std::vector<int64_t> by_keys;
    std::vector<bool> taken(std::size_t(C), false);
    for (int64_t step = 0; step < C; ++step) {
      int64_t w = -1;
      for (int64_t c = 0; c < C; ++c)
        if (!taken[std::size_t(c)] && (w < 0 || key(seed, uint64_t(step), uint64_t(c)) < key(seed, uint64_t(step), uint64_t(w))))
          w = c;
      taken[std::size_t(w)] = true;
      by_keys.push_back(w);
    }
    EXPECT_EQ(call.selected, by_keys);
    EXPECT_EQ(call.selected, reference(e, C, D, C, seed));
  }
}

TEST_P(HardClasses, DuplicatedClassesAreTiesBrokenByTheKeys) {
  const npairs_dtype dtype = GetParam();
  npt::Context ctx;
  ASSERT_NPAIRS_OK(ctx.status());
  const int64_t D = 6, distinct = 9, copies = 4, C = distinct * copies;
  const std::vector<double> base = integer_embeddings(distinct, D, 3, 3);
  std::vector<double> e;
  for (int64_t c = 0; c < C; ++c)
    e.insert(e.end(), base.begin() + (c % distinct) * D, base.begin() + (c % distinct + 1) * D);
  for (int64_t N : {int64_t(1), int64_t(2), int64_t(5), int64_t(17), C}) {
    for (uint64_t seed : {0ull, 5ull}) {
      const Call call = select(ctx.get(), e, C, D, N, seed, dtype);
      ASSERT_EQ(call.status, NPAIRS_OK) << call.message;
      EXPECT_EQ(call.selected, reference(e, C, D, N, seed)) << "N " << N << " seed " << seed;
      expect_valid_selection(call.selected, C);
    }
  }
}

TEST_P(HardClasses, PicksTheClassClosestToTheSelectedSet) {
  const npairs_dtype dtype = GetParam();
  npt::Context ctx;
  ASSERT_NPAIRS_OK(ctx.status());
  // Pairs (2i, 2i+1) are near each other, pairs far apart: after any first
  // class its partner is the closest, so the second class is its partner.
  const int64_t pairs = 8, C = 2 * pairs, D = 2;
  std::vector<double> e;
  for (int64_t i = 0; i < pairs; ++i) {
    const double angle = 2 * M_PI * double(i) / double(pairs);
    e.insert(e.end(), {std::cos(angle), std::sin(angle), std::cos(angle + 0.05), std::sin(angle + 0.05)});
  }
  for (uint64_t seed = 0; seed < 10; ++seed) {
    const Call call = select(ctx.get(), e, C, D, 2, seed, dtype);
    ASSERT_EQ(call.status, NPAIRS_OK) << call.message;
    EXPECT_EQ(call.selected[0] / 2, call.selected[1] / 2) << "seed " << seed;
  }
}

std::string dtype_case_name(const ::testing::TestParamInfo<npairs_dtype>& param_info) {
  return npt::dtype_name(param_info.param);
}
INSTANTIATE_TEST_SUITE_P(Dtypes, HardClasses, ::testing::Values(NPAIRS_F32, NPAIRS_F64), dtype_case_name);

TEST(HardClassesDeterminism, SameSeedSameResultAnyThreadCountAndLimit) {
  const int64_t C = 3000, D = 16, N = 50;
  const std::vector<double> e = random_embeddings(C, D, 11);
  npt::Context ctx;
  ASSERT_NPAIRS_OK(ctx.status());
  const Call first = select(ctx.get(), e, C, D, N, 42);
  ASSERT_EQ(first.status, NPAIRS_OK) << first.message;
  EXPECT_EQ(first.selected, reference(e, C, D, N, 42));
  EXPECT_EQ(select(ctx.get(), e, C, D, N, 42).selected, first.selected);
  for (int threads : {1, 2, 3}) {
    ASSERT_NPAIRS_OK(npairs_context_set_threads(ctx.get(), threads));
    EXPECT_EQ(select(ctx.get(), e, C, D, N, 42).selected, first.selected) << threads << " threads";
  }
  // A limit that leaves room for blocks of 64 GEMV outputs only.
  ASSERT_NPAIRS_OK(npairs_context_set_workspace_limit(ctx.get(), C * 8 + 64 + 64 * 8));
  EXPECT_EQ(select(ctx.get(), e, C, D, N, 42).selected, first.selected) << "under a workspace limit";
}

TEST(HardClassesDeterminism, TheSeedPicksTheFirstClassAtRandom) {
  const int64_t C = 1000, D = 8;
  const std::vector<double> e = random_embeddings(C, D, 5);
  npt::Context ctx;
  ASSERT_NPAIRS_OK(ctx.status());
  std::set<int64_t> firsts;
  for (uint64_t seed = 0; seed < 32; ++seed) {
    const Call call = select(ctx.get(), e, C, D, 1, seed);
    ASSERT_EQ(call.status, NPAIRS_OK) << call.message;
    firsts.insert(call.selected[0]);
  }
  EXPECT_GE(firsts.size(), 28u) << "32 seeds should give (nearly) 32 first classes out of 1000";
}

TEST(HardClassesErrors, WorkspaceLimitTooSmallIsOutOfMemory) {
  npt::Context ctx;
  ASSERT_NPAIRS_OK(ctx.status());
  const int64_t C = 1000, D = 4;
  const std::vector<double> e = random_embeddings(C, D, 1);
  ASSERT_NPAIRS_OK(npairs_context_set_workspace_limit(ctx.get(), C * 8));
  const Call call = select(ctx.get(), e, C, D, 3, 0);
  EXPECT_EQ(call.status, NPAIRS_ERROR_OUT_OF_MEMORY);
  EXPECT_NE(call.message.find("limit (8000 bytes)"), std::string::npos) << call.message;
  EXPECT_EQ(call.selected, std::vector<int64_t>(3, kUntouched));
}

// One bad call: its status, a message naming `argument`, `selected` untouched.
void expect_rejected(npairs_context ctx, const npairs_class_selection* s, int64_t* selected, npairs_status status,
                     const std::string& argument) {
  std::vector<int64_t> before;
  if (selected) before.assign(selected, selected + 4);
  EXPECT_EQ(npairs_select_hard_classes(ctx, s, selected), status) << argument;
  const std::string message = npairs_last_error();
  EXPECT_NE(message.find(argument), std::string::npos) << "message: " << message;
  if (selected) {
    EXPECT_EQ(std::vector<int64_t>(selected, selected + 4), before) << argument;
  }
}

TEST(HardClassesErrors, EveryBadInputIsRejectedWithOutputsUntouched) {
  npt::Context ctx;
  ASSERT_NPAIRS_OK(ctx.status());
  const int64_t C = 4, D = 3;
  std::vector<double> e = random_embeddings(C, D, 2);
  std::vector<int64_t> out(4, kUntouched);
  npairs_class_selection good;
  npairs_class_selection_init(&good);
  good.class_embeddings = e.data();
  good.classes = C;
  good.dim = D;
  good.dtype = NPAIRS_F64;
  good.count = 2;
  const npairs_status bad_arg = NPAIRS_ERROR_INVALID_ARGUMENT;

  expect_rejected(nullptr, &good, out.data(), bad_arg, "ctx is NULL");
  expect_rejected(ctx.get(), nullptr, out.data(), bad_arg, "selection is NULL");
  expect_rejected(ctx.get(), &good, nullptr, bad_arg, "selected is NULL");
  npairs_class_selection s = good;
  s.class_embeddings = nullptr;
  expect_rejected(ctx.get(), &s, out.data(), bad_arg, "selection.class_embeddings is NULL");
  for (int64_t count : {int64_t(0), int64_t(-1), C + 1}) {
    s = good;
    s.count = count;
    expect_rejected(ctx.get(), &s, out.data(), bad_arg, "selection.count");
  }
  s = good;
  s.classes = 0;
  expect_rejected(ctx.get(), &s, out.data(), bad_arg, "selection.classes");
  s = good;
  s.dim = 0;
  expect_rejected(ctx.get(), &s, out.data(), bad_arg, "selection.dim");
  for (npairs_dtype dtype : {npairs_dtype(NPAIRS_I32), npairs_dtype(NPAIRS_I64), npairs_dtype(99)}) {
    s = good;
    s.dtype = dtype;
    expect_rejected(ctx.get(), &s, out.data(), bad_arg, "selection.dtype");
  }
  for (npairs_dtype dtype : {npairs_dtype(NPAIRS_F16), npairs_dtype(NPAIRS_BF16)}) {
    s = good;
    s.dtype = dtype;
    expect_rejected(ctx.get(), &s, out.data(), NPAIRS_ERROR_UNSUPPORTED, "selection.dtype");
  }
  s = good;
  s.struct_size = sizeof(npairs_class_selection) - 1;
  expect_rejected(ctx.get(), &s, out.data(), bad_arg, "selection.struct_size");

  // A larger struct: zero extra bytes are fine, others UNSUPPORTED.
  struct Bigger {
    npairs_class_selection s;
    uint64_t extra;
  } bigger{good, 0};
  bigger.s.struct_size = sizeof bigger;
  EXPECT_EQ(npairs_select_hard_classes(ctx.get(), &bigger.s, out.data()), NPAIRS_OK) << npairs_last_error();
  out.assign(4, kUntouched);
  bigger.extra = 1;
  expect_rejected(ctx.get(), &bigger.s, out.data(), NPAIRS_ERROR_UNSUPPORTED, "selection.struct_size");
}

TEST(HardClassesErrors, NonFiniteOrHugeEmbeddingsAreInvalidValues) {
  npt::Context ctx;
  ASSERT_NPAIRS_OK(ctx.status());
  const int64_t C = 5, D = 4;
  for (npairs_dtype dtype : {NPAIRS_F32, NPAIRS_F64}) {
    const double huge = dtype == NPAIRS_F32 ? 1e19 : 1e154;  // above sqrt(max / (4 D))
    const double fine = dtype == NPAIRS_F32 ? 1e18 : 1e153;  // below it
    for (double bad : {std::nan(""), std::numeric_limits<double>::infinity(),
                       -std::numeric_limits<double>::infinity(), huge, -huge}) {
      std::vector<double> e = random_embeddings(C, D, 3);
      e[3 * D + 2] = bad;
      e[4 * D + 0] = bad;
      const Call call = select(ctx.get(), e, C, D, 2, 0, dtype);
      EXPECT_EQ(call.status, NPAIRS_ERROR_INVALID_VALUE) << bad;
      EXPECT_NE(call.message.find("selection.class_embeddings row 3 "), std::string::npos) << call.message;
      EXPECT_EQ(call.selected, std::vector<int64_t>(2, kUntouched));
    }
    std::vector<double> e = random_embeddings(C, D, 3);
    e[0] = fine;
    const Call call = select(ctx.get(), e, C, D, C, 0, dtype);
    EXPECT_EQ(call.status, NPAIRS_OK) << call.message;
  }
}

// CPU and CUDA select the same classes where the inner products are exact
// (integers), ties included; host pointers (staged) and device pointers.
TEST(HardClassesCuda, SameSelectionAsTheCpu) {
  NPT_REQUIRE_CUDA();
  npt::Context cpu(NPAIRS_BACKEND_CPU), gpu(NPAIRS_BACKEND_CUDA);
  ASSERT_NPAIRS_OK(cpu.status());
  ASSERT_NPAIRS_OK(gpu.status());
  for (npairs_dtype dtype : {NPAIRS_F32, NPAIRS_F64}) {
    for (const auto& [C, D, N, range] : {std::tuple<int64_t, int64_t, int64_t, int>{1, 1, 1, 3}, {50, 4, 50, 1},
                                         {5000, 33, 100, 4}, {70000, 8, 20, 2}}) {
      const std::vector<double> e = integer_embeddings(C, D, uint32_t(C), range);
      for (uint64_t seed : {0ull, 3ull}) {
        const Call on_cpu = select(cpu.get(), e, C, D, N, seed, dtype);
        const Call on_gpu = select(gpu.get(), e, C, D, N, seed, dtype);
        ASSERT_EQ(on_cpu.status, NPAIRS_OK) << on_cpu.message;
        ASSERT_EQ(on_gpu.status, NPAIRS_OK) << on_gpu.message;
        EXPECT_EQ(on_gpu.selected, on_cpu.selected) << "C " << C << " seed " << seed;
      }
    }
  }
  const Call bad = select(gpu.get(), std::vector<double>{1, std::nan(""), 0, 0}, 2, 2, 1, 0);
  EXPECT_EQ(bad.status, NPAIRS_ERROR_INVALID_VALUE);
  EXPECT_NE(bad.message.find("selection.class_embeddings row 0 "), std::string::npos) << bad.message;
  EXPECT_EQ(bad.selected, std::vector<int64_t>(1, kUntouched));
}

#ifdef NPAIRS_TEST_HAVE_CUDART
TEST(HardClassesCuda, DevicePointersGiveTheSameSelection) {
  NPT_REQUIRE_CUDA();
  npt::Context cpu(NPAIRS_BACKEND_CPU), gpu(NPAIRS_BACKEND_CUDA);
  const int64_t C = 20000, D = 16, N = 64;
  const std::vector<double> e = integer_embeddings(C, D, 9, 3);
  const Call on_cpu = select(cpu.get(), e, C, D, N, 1);
  ASSERT_EQ(on_cpu.status, NPAIRS_OK) << on_cpu.message;
  void* device_e = nullptr;
  void* device_out = nullptr;
  NPT_ASSERT_CUDA(cudaMalloc(&device_e, e.size() * sizeof(double)));
  NPT_ASSERT_CUDA(cudaMalloc(&device_out, std::size_t(N) * sizeof(int64_t)));
  NPT_ASSERT_CUDA(cudaMemcpy(device_e, e.data(), e.size() * sizeof(double), cudaMemcpyHostToDevice));
  npairs_class_selection s;
  npairs_class_selection_init(&s);
  s.class_embeddings = device_e;
  s.classes = C;
  s.dim = D;
  s.dtype = NPAIRS_F64;
  s.count = N;
  s.seed = 1;
  EXPECT_NPAIRS_OK(npairs_select_hard_classes(gpu.get(), &s, static_cast<int64_t*>(device_out)));
  EXPECT_NPAIRS_OK(npairs_context_synchronize(gpu.get()));
  std::vector<int64_t> selected(static_cast<std::size_t>(N));
  NPT_ASSERT_CUDA(cudaMemcpy(selected.data(), device_out, selected.size() * sizeof(int64_t), cudaMemcpyDeviceToHost));
  EXPECT_EQ(selected, on_cpu.selected);
  cudaFree(device_e);
  cudaFree(device_out);
}
#endif

}  // namespace
