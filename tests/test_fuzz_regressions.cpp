// The library bugs the fuzzer (fuzz/npairs_fuzzer.cpp) found, each as a
// readable call. Buffers are heap blocks of exactly their declared size, so
// that the ASan build (ctest --preset asan) reports any access outside them.
// The minimized fuzz inputs themselves are in fuzz/regressions/, replayed by
// the fuzz_replay test.
#include <memory>

#include "test_util.hpp"

namespace {

// NONE reduction and R = 0: grad_loss is [R], an empty array. The CPU backend
// read grad_loss[0] (one element past its end) for the L2 factor of the
// embedding gradients, although there is no L2 term with NONE.
TEST(FuzzRegressions, EmptyPerRowGradLossIsNotRead) {
  npt::Context ctx;
  ASSERT_NPAIRS_OK(ctx.status());
  const std::unique_ptr<int64_t[]> labels(new int64_t[0]);
  const std::unique_ptr<double[]> anchors(new double[0]), positives(new double[0]), grad_loss(new double[0]);
  const std::unique_ptr<double[]> loss(new double[0]), grad_anchors(new double[0]);
  npairs_problem p;
  npairs_problem_init(&p);
  p.rows = 0;
  p.dtype = NPAIRS_F64;
  p.labels = labels.get();
  p.label_dtype = NPAIRS_I64;
  p.anchors = anchors.get();
  p.positives = positives.get();
  p.dim = 2;
  npairs_options o;
  npairs_options_init(&o);
  o.reduction = NPAIRS_REDUCTION_NONE;
  npairs_gradients g;
  npairs_gradients_init(&g);
  g.anchors = grad_anchors.get();
  EXPECT_NPAIRS_OK(npairs_loss(ctx.get(), &o, &p, grad_loss.get(), loss.get(), &g));
}

}  // namespace
