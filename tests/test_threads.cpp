// Determinism and threads: the same call twice is bitwise identical; one vs
// two CPU threads agree within rounding; concurrent calls on distinct
// contexts from several std::threads give the results of a run from one
// thread, bitwise; contexts created, used and destroyed a thousand times over
// give the same results every time (and, under the asan preset, leak nothing).
#include <thread>

#include "test_util.hpp"

namespace {

npt::Spec big_spec(npairs_dtype dtype) { return npt::all_features_spec(dtype, 30, 2024); }

std::vector<std::vector<unsigned char>> run_bytes(npairs_context ctx, const npt::Inputs& in) {
  npt::Outputs out(in, true, true, true, true);
  const npairs_status st = npt::run_loss(ctx, in, out);
  EXPECT_EQ(st, NPAIRS_OK) << npairs_last_error();
  EXPECT_TRUE(npt::fully_written("loss", out.loss));
  EXPECT_TRUE(npt::fully_written("grads.similarity", out.grad_similarity));
  return {out.loss.bytes(), out.grad_similarity.bytes(), out.grad_anchors.bytes(), out.grad_positives.bytes()};
}

class Threads : public ::testing::TestWithParam<npairs_dtype> {};

TEST_P(Threads, SameCallTwiceIsBitwiseIdentical) {
  npt::Context ctx(NPAIRS_BACKEND_CPU);
  ASSERT_NPAIRS_OK(ctx.status());
  for (npairs_reduction red : {NPAIRS_REDUCTION_NONE, NPAIRS_REDUCTION_SUM_OVER_BATCH_SIZE}) {
    npt::Spec s = big_spec(GetParam());
    s.reduction = red;
    if (red == NPAIRS_REDUCTION_NONE) s.reg_lambda = 0;
    const npt::Inputs in = npt::make_inputs(s);
    const auto a = run_bytes(ctx.get(), in);
    const auto b = run_bytes(ctx.get(), in);
    // And on a fresh context.
    npt::Context other(NPAIRS_BACKEND_CPU);
    ASSERT_NPAIRS_OK(other.status());
    const auto c = run_bytes(other.get(), in);
    for (std::size_t k = 0; k < a.size(); ++k) {
      EXPECT_TRUE(a[k] == b[k]) << "output " << k << " differs between two identical calls";
      EXPECT_TRUE(a[k] == c[k]) << "output " << k << " differs between two contexts";
    }
  }
}

TEST_P(Threads, OneAndTwoThreadsAgree) {
  const npt::Inputs in = npt::make_inputs(big_spec(GetParam()));
  const double rtol = npt::default_rtol(GetParam());
  npt::Context one(NPAIRS_BACKEND_CPU), two(NPAIRS_BACKEND_CPU), all(NPAIRS_BACKEND_CPU);
  ASSERT_NPAIRS_OK(one.status());
  ASSERT_NPAIRS_OK(two.status());
  ASSERT_NPAIRS_OK(all.status());
  ASSERT_NPAIRS_OK(npairs_context_set_threads(one.get(), 1));
  ASSERT_NPAIRS_OK(npairs_context_set_threads(two.get(), 2));
  ASSERT_NPAIRS_OK(npairs_context_set_threads(all.get(), 0));
  npt::Outputs o1(in, true, true, true, true), o2(in, true, true, true, true), o0(in, true, true, true, true);
  ASSERT_NPAIRS_OK(npt::run_loss(one.get(), in, o1));
  ASSERT_NPAIRS_OK(npt::run_loss(two.get(), in, o2));
  ASSERT_NPAIRS_OK(npt::run_loss(all.get(), in, o0));
  for (npt::Outputs* o : {&o2, &o0}) {
    EXPECT_TRUE(npt::all_close("loss", o->loss.values(), o1.loss.values(), rtol));
    EXPECT_TRUE(npt::all_close("grads.similarity", o->grad_similarity.values(), o1.grad_similarity.values(), rtol));
    EXPECT_TRUE(npt::all_close("grads.anchors", o->grad_anchors.values(), o1.grad_anchors.values(), rtol));
    EXPECT_TRUE(npt::all_close("grads.positives", o->grad_positives.values(), o1.grad_positives.values(), rtol));
  }
  // And all of them match the reference.
  npt::expect_matches_reference(in, o2, ref::compute<double>(in.reference()), rtol);
}

// Distinct contexts used concurrently: each thread's results equal the
// single-threaded baseline bitwise (same thread count per context).
TEST_P(Threads, ConcurrentContextsGiveIdenticalResults) {
  npt::Spec s = big_spec(GetParam());
  s.rows = 129;
  s.cols = 131;
  const npt::Inputs in = npt::make_inputs(s);
  for (int32_t threads : {1, 2}) {
    SCOPED_TRACE(threads);
    npt::Context base(NPAIRS_BACKEND_CPU);
    ASSERT_NPAIRS_OK(base.status());
    ASSERT_NPAIRS_OK(npairs_context_set_threads(base.get(), threads));
    const auto expected = run_bytes(base.get(), in);

    constexpr int kThreads = 8, kIterations = 3;
    std::vector<std::vector<std::vector<unsigned char>>> results(kThreads * kIterations);
    std::vector<npairs_status> statuses(kThreads, NPAIRS_OK);
    std::vector<std::thread> pool;
    for (int t = 0; t < kThreads; ++t) {
      pool.emplace_back([&, t] {
        npairs_context ctx = nullptr;
        statuses[t] = npairs_context_create(NPAIRS_BACKEND_CPU, 0, &ctx);
        if (statuses[t] != NPAIRS_OK) return;
        statuses[t] = npairs_context_set_threads(ctx, threads);
        for (int it = 0; it < kIterations && statuses[t] == NPAIRS_OK; ++it) {
          npt::Outputs out(in, true, true, true, true);
          statuses[t] = npt::run_loss(ctx, in, out);
          results[t * kIterations + it] = {out.loss.bytes(), out.grad_similarity.bytes(), out.grad_anchors.bytes(),
                                           out.grad_positives.bytes()};
        }
        npairs_context_destroy(ctx);
      });
    }
    for (std::thread& th : pool) th.join();
    for (int t = 0; t < kThreads; ++t) ASSERT_EQ(statuses[t], NPAIRS_OK) << "thread " << t;
    for (std::size_t r = 0; r < results.size(); ++r) {
      for (std::size_t k = 0; k < expected.size(); ++k) {
        EXPECT_TRUE(results[r][k] == expected[k]) << "run " << r << " output " << k << " differs";
      }
    }
  }
}

// A context's whole life, 1000 times, from 4 threads at once: create, a
// failing call (its exception and message), a computing call, destroy. Every
// cycle gives the bytes of the first; LeakSanitizer (the asan preset) fails
// the test if a cycle leaks.
TEST_P(Threads, CreateComputeDestroyCycles) {
  npt::Spec s = big_spec(GetParam());
  s.rows = 33;
  s.cols = 35;
  s.dim = 9;
  const npt::Inputs in = npt::make_inputs(s);
  npt::Context base(NPAIRS_BACKEND_CPU);
  ASSERT_NPAIRS_OK(base.status());
  const auto expected = run_bytes(base.get(), in);

  constexpr int kThreads = 4, kCycles = 250;
  std::vector<int> mismatches(kThreads, 0);
  std::vector<std::thread> pool;
  for (int t = 0; t < kThreads; ++t) {
    pool.emplace_back([&, t] {
      for (int cycle = 0; cycle < kCycles; ++cycle) {
        npairs_context ctx = nullptr;
        ASSERT_NPAIRS_OK(npairs_context_create(NPAIRS_BACKEND_CPU, 0, &ctx));
        EXPECT_EQ(npairs_loss(ctx, nullptr, nullptr, nullptr, nullptr, nullptr), NPAIRS_ERROR_INVALID_ARGUMENT);
        if (run_bytes(ctx, in) != expected) ++mismatches[t];
        EXPECT_NPAIRS_OK(npairs_context_destroy(ctx));
      }
    });
  }
  for (std::thread& th : pool) th.join();
  for (int t = 0; t < kThreads; ++t) EXPECT_EQ(mismatches[t], 0) << "thread " << t << ": cycles whose results differ";
}

INSTANTIATE_TEST_SUITE_P(Dtypes, Threads, ::testing::Values(NPAIRS_F32, NPAIRS_F64),
                         [](const ::testing::TestParamInfo<npairs_dtype>& param_info) {
                           return std::string(npt::dtype_name(param_info.param));
                         });

}  // namespace
