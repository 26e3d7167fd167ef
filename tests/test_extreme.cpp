// Extreme inputs: float32 logits of +-1e30 (float64: +-1e300) must give the
// exact finite answer; a -inf logit in a column with zero target weight
// contributes nothing; NaN/Inf elsewhere propagate without crashing; R = 0 is
// valid.
#include <cmath>
#include <limits>

#include "test_util.hpp"

namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

// A similarity problem with explicit values and the NONE reduction.
npt::Inputs rows_problem(npairs_dtype dtype, int64_t rows, int64_t cols, const std::vector<double>& s,
                         const std::vector<int64_t>& labels, const std::vector<int64_t>& column_labels) {
  npt::Inputs in = npt::similarity_inputs(dtype, rows, cols, s, labels, column_labels);
  in.spec.reduction = NPAIRS_REDUCTION_NONE;
  return in;
}

// Runs the loss and dS of `in` on a CPU context into fresh poisoned outputs.
npairs_status run(const npt::Inputs& in, npt::Outputs& out) {
  out = npt::Outputs(in, true, true, false, false);
  npt::Context ctx(NPAIRS_BACKEND_CPU);
  if (ctx.status() != NPAIRS_OK) return ctx.status();
  return npt::run_loss(ctx.get(), in, out);
}

bool all_finite(const std::vector<double>& v) {
  for (double x : v) {
    if (!std::isfinite(x)) return false;
  }
  return true;
}

// Compares each element with its own magnitude (not the output's max): the
// small rows of an extreme problem must be right in absolute terms too.
::testing::AssertionResult each_close(const std::string& what, const std::vector<double>& got,
                                      const std::vector<double>& expected, double rtol, double atol) {
  if (got.size() != expected.size()) return ::testing::AssertionFailure() << what << ": size mismatch";
  for (std::size_t i = 0; i < got.size(); ++i) {
    if (!(std::fabs(got[i] - expected[i]) <= rtol * std::fabs(expected[i]) + atol)) {
      return ::testing::AssertionFailure() << what << "[" << i << "] = " << got[i] << ", expected " << expected[i];
    }
  }
  return ::testing::AssertionSuccess();
}

class HugeLogits : public ::testing::TestWithParam<npairs_dtype> {
 protected:
  double big() const { return GetParam() == NPAIRS_F32 ? 1e30 : 1e300; }
  double rtol() const { return GetParam() == NPAIRS_F32 ? 2e-6 : 1e-14; }
};

// Rows [b, b], [-b, b], [b, -b], all with the target in column 0.
TEST_P(HugeLogits, ExactFiniteAnswers) {
  const double b = big();
  npt::Inputs sp = rows_problem(GetParam(), 3, 2, {b, b, -b, b, b, -b}, {0, 0, 0}, {0, 1});
  npt::Outputs out;
  ASSERT_NPAIRS_OK(run(sp, out));
  EXPECT_TRUE(npt::fully_written("loss", out.loss));
  EXPECT_NEAR(out.loss.get(0), std::log(2.0), rtol() * std::log(2.0)) << "row [b, b]";
  EXPECT_NEAR(out.loss.get(1), 2 * b, rtol() * 2 * b) << "row [-b, b]";
  EXPECT_NEAR(out.loss.get(2), 0.0, rtol()) << "row [b, -b], target on the max";
  EXPECT_TRUE(npt::fully_written("grads.similarity", out.grad_similarity));
  EXPECT_TRUE(each_close("grads.similarity", out.grad_similarity.values(), {-0.5, 0.5, -1, 1, 0, 0}, rtol(), rtol()));
}

TEST_P(HugeLogits, ThroughTemperatureAndScalarReductions) {
  const double b = big() / 4;
  for (npairs_reduction red : {NPAIRS_REDUCTION_SUM, NPAIRS_REDUCTION_SUM_OVER_BATCH_SIZE}) {
    npt::Inputs sp = rows_problem(GetParam(), 3, 2, {b, b, -b, b, b, -b}, {0, 0, 0}, {0, 1});
    sp.spec.reduction = red;
    sp.spec.temperature = 0.5;  // z = 2 S
    npt::Outputs out;
    ASSERT_NPAIRS_OK(run(sp, out));
    const double expected = (std::log(2.0) + 4 * b) / (red == NPAIRS_REDUCTION_SUM ? 1.0 : 3.0);
    EXPECT_NEAR(out.loss.get(0), expected, rtol() * expected) << npt::reduction_name(red);
    EXPECT_TRUE(all_finite(out.grad_similarity.values()));
  }
}

// Long rows mixing +-b, +-b/2, 0 with random targets, checked per row against
// the long double reference.
TEST_P(HugeLogits, MixedRowsMatchLongDoubleReference) {
  const double b = big();
  npt::Rng rng(17);
  const int64_t R = 40, M = 33;
  std::vector<double> s(static_cast<std::size_t>(R * M));
  const double levels[] = {-1.0, -0.5, 0.0, 0.5, 1.0};
  for (double& x : s) x = b * levels[rng.integer(0, 4)];
  std::vector<int64_t> rows(R), cols(M);
  for (int64_t& c : cols) c = rng.integer(0, 3);
  for (int64_t& l : rows) l = cols[static_cast<std::size_t>(rng.integer(0, M - 1))];
  npt::Inputs sp = rows_problem(GetParam(), R, M, s, rows, cols);
  npt::Outputs out;
  ASSERT_NPAIRS_OK(run(sp, out));
  const auto expected = ref::compute<long double>(sp.reference());
  ASSERT_TRUE(expected.valid);
  const double tol = npt::default_rtol(GetParam());
  EXPECT_TRUE(each_close("loss", out.loss.values(), npt::to_double(expected.loss), tol, tol));
  EXPECT_TRUE(
      each_close("grads.similarity", out.grad_similarity.values(), npt::to_double(expected.grad_similarity), tol, tol));
}

// Multilabel targets with huge logits: T = [1/3, 2/3, 0].
TEST_P(HugeLogits, Multilabels) {
  const double b = big();
  npt::Context ctx(NPAIRS_BACKEND_CPU);
  ASSERT_NPAIRS_OK(ctx.status());
  const npairs_dtype dt = GetParam();
  npt::Array S(dt, 3), Y(dt, 2), Yc(dt, 6), loss(dt, 1);
  const double s[] = {b, b, -b}, y[] = {1, 1}, yc[] = {1, 0, 1, 1, 0, 0};
  for (std::size_t k = 0; k < 3; ++k) S.set(k, s[k]);
  for (std::size_t k = 0; k < 2; ++k) Y.set(k, y[k]);
  for (std::size_t k = 0; k < 6; ++k) Yc.set(k, yc[k]);
  loss.poison();
  npairs_problem p;
  npairs_problem_init(&p);
  p.rows = 1;
  p.cols = 3;
  p.dtype = dt;
  p.multilabels = Y.data();
  p.column_multilabels = Yc.data();
  p.num_classes = 2;
  p.similarity = S.data();
  ASSERT_NPAIRS_OK(npairs_loss(ctx.get(), nullptr, &p, nullptr, loss.data(), nullptr));
  // logsumexp = b + log 2; target term = b.
  EXPECT_NEAR(loss.get(0), std::log(2.0), rtol() * std::log(2.0));
}

INSTANTIATE_TEST_SUITE_P(Dtypes, HugeLogits, ::testing::Values(NPAIRS_F32, NPAIRS_F64),
                         [](const ::testing::TestParamInfo<npairs_dtype>& param_info) {
                           return std::string(npt::dtype_name(param_info.param));
                         });

class NonFinite : public ::testing::TestWithParam<npairs_dtype> {};

// -inf where the target weight is 0 contributes nothing, also as the first
// element of a row.
TEST_P(NonFinite, NegativeInfinityInZeroTargetColumn) {
  npt::Inputs sp = rows_problem(GetParam(), 2, 3, {0, -kInf, 1, -kInf, 2, 0}, {0, 1}, {0, 1, 2});
  npt::Outputs out;
  ASSERT_NPAIRS_OK(run(sp, out));
  const double e = std::exp(1.0);
  const double tol = GetParam() == NPAIRS_F32 ? 1e-6 : 1e-15;
  EXPECT_NEAR(out.loss.get(0), std::log(1 + e), tol * 2) << "row [0, -inf, 1], target 0";
  EXPECT_NEAR(out.loss.get(1), std::log(1 + std::exp(-2.0)), tol) << "row [-inf, 2, 0], target 1";
  const std::vector<double> ds = out.grad_similarity.values();
  EXPECT_TRUE(all_finite(ds));
  EXPECT_EQ(ds[1], 0.0);
  EXPECT_EQ(ds[3], 0.0);
  EXPECT_NEAR(ds[0], 1 / (1 + e) - 1, tol * 2);
  EXPECT_NEAR(ds[2], e / (1 + e), tol * 2);

  sp.spec.reduction = NPAIRS_REDUCTION_SUM;
  ASSERT_NPAIRS_OK(run(sp, out));
  EXPECT_TRUE(std::isfinite(out.loss.get(0)));
}

TEST_P(NonFinite, NaNInSimilarityPropagatesToItsRow) {
  npt::Inputs sp = rows_problem(GetParam(), 3, 3, {1, 2, 3, 4, kNaN, 6, 7, 8, 9}, {0, 1, 2}, {0, 1, 2});
  npt::Outputs out;
  ASSERT_NPAIRS_OK(run(sp, out));
  EXPECT_FALSE(std::isfinite(out.loss.get(1)));
  EXPECT_TRUE(std::isfinite(out.loss.get(0)));
  EXPECT_TRUE(std::isfinite(out.loss.get(2)));
  const auto expected = ref::compute<double>(sp.reference());
  EXPECT_NEAR(out.loss.get(0), expected.loss[0], npt::default_rtol(GetParam()) * std::fabs(expected.loss[0]));
  bool row1_nonfinite = false;
  for (std::size_t j = 3; j < 6; ++j) row1_nonfinite = row1_nonfinite || !std::isfinite(out.grad_similarity.get(j));
  EXPECT_TRUE(row1_nonfinite) << "grads.similarity row 1 should carry the NaN";

  for (npairs_reduction red : {NPAIRS_REDUCTION_SUM, NPAIRS_REDUCTION_SUM_OVER_BATCH_SIZE}) {
    sp.spec.reduction = red;
    ASSERT_NPAIRS_OK(run(sp, out));
    EXPECT_FALSE(std::isfinite(out.loss.get(0))) << npt::reduction_name(red);
  }
}

TEST_P(NonFinite, InfinityInSimilarityGivesNonFiniteLoss) {
  // +inf in the target column (inf - inf) and in a non-target column (+inf).
  for (std::size_t col : {0u, 1u}) {
    std::vector<double> s = {1, 2, 3};
    s[col] = kInf;
    npt::Inputs sp = rows_problem(GetParam(), 1, 3, s, {0}, {0, 1, 2});
    npt::Outputs out;
    ASSERT_NPAIRS_OK(run(sp, out));
    EXPECT_FALSE(std::isfinite(out.loss.get(0))) << "+inf in column " << col;
  }
}

TEST_P(NonFinite, NaNInWeightsOrUpstreamGradientPropagates) {
  npt::Inputs sp = rows_problem(GetParam(), 2, 2, {1, 2, 3, 4}, {0, 1}, {0, 1});
  sp.spec.weights = true;
  sp.sample_weight = npt::Array(GetParam(), 2);
  sp.sample_weight.set(0, 1.0);
  sp.sample_weight.set(1, kNaN);
  sp.spec.reduction = NPAIRS_REDUCTION_SUM;
  npt::Outputs out;
  ASSERT_NPAIRS_OK(run(sp, out));
  EXPECT_FALSE(std::isfinite(out.loss.get(0)));

  sp.spec.weights = false;
  sp.spec.grad_loss = true;
  sp.grad_loss = npt::Array(GetParam(), 1);
  sp.grad_loss.set(0, kNaN);
  ASSERT_NPAIRS_OK(run(sp, out));
  EXPECT_TRUE(std::isfinite(out.loss.get(0)));
  for (double x : out.grad_similarity.values()) EXPECT_FALSE(std::isfinite(x));
}

TEST_P(NonFinite, NaNInEmbeddingsPropagates) {
  npt::Spec s;
  s.dtype = GetParam();
  s.rows = 4;
  s.embeddings = true;
  s.dim = 3;
  s.seed = 3;
  npt::Inputs in = npt::make_inputs(s);
  in.anchors.set(4, kNaN);
  npt::Outputs out(in, true, true, true, true);
  npt::Context ctx(NPAIRS_BACKEND_CPU);
  ASSERT_NPAIRS_OK(ctx.status());
  ASSERT_NPAIRS_OK(npt::run_loss(ctx.get(), in, out));
  EXPECT_FALSE(std::isfinite(out.loss.get(0)));
  bool any = false;
  for (double x : out.grad_positives.values()) any = any || !std::isfinite(x);
  EXPECT_TRUE(any) << "grads.positives should carry the NaN";
}

TEST_P(NonFinite, NaNMultilabelNeverCrashes) {
  // Either propagated (non-finite loss) or rejected as invalid data.
  npt::Spec s;
  s.dtype = GetParam();
  s.rows = 4;
  s.multilabel = true;
  s.classes = 3;
  s.seed = 4;
  npt::Inputs in = npt::make_inputs(s);
  in.multilabels.set(4, kNaN);
  npt::Outputs out(in, true, false, false, false);
  npt::Context ctx(NPAIRS_BACKEND_CPU);
  ASSERT_NPAIRS_OK(ctx.status());
  const npairs_status st = npt::run_loss(ctx.get(), in, out);
  EXPECT_TRUE(st == NPAIRS_OK || st == NPAIRS_ERROR_INVALID_VALUE) << npairs_status_string(st);
  if (st == NPAIRS_OK) {
    EXPECT_FALSE(std::isfinite(out.loss.get(0)));
  }
}

INSTANTIATE_TEST_SUITE_P(Dtypes, NonFinite, ::testing::Values(NPAIRS_F32, NPAIRS_F64),
                         [](const ::testing::TestParamInfo<npairs_dtype>& param_info) {
                           return std::string(npt::dtype_name(param_info.param));
                         });

// R = 0 is valid: the scalar reductions give 0, NONE writes nothing.
class EmptyBatch : public ::testing::TestWithParam<npairs_dtype> {};

TEST_P(EmptyBatch, ScalarReductionsGiveZero) {
  const npairs_dtype dt = GetParam();
  npt::Context ctx(NPAIRS_BACKEND_CPU);
  ASSERT_NPAIRS_OK(ctx.status());
  // Non-NULL dummy pointers for the inputs.
  const double dummy[4] = {0, 0, 0, 0};
  const int64_t dummy_labels[1] = {0};
  for (int kind = 0; kind < 3; ++kind) {  // labels+similarity, multilabels+similarity, labels+embeddings
    for (npairs_reduction red :
         {NPAIRS_REDUCTION_NONE, NPAIRS_REDUCTION_SUM, NPAIRS_REDUCTION_SUM_OVER_BATCH_SIZE}) {
      SCOPED_TRACE("kind " + std::to_string(kind) + " " + npt::reduction_name(red));
      npairs_problem p;
      npairs_problem_init(&p);
      p.rows = 0;
      p.dtype = dt;
      if (kind == 1) {
        p.multilabels = dummy;
        p.num_classes = 2;
      } else {
        p.labels = dummy_labels;
        p.label_dtype = NPAIRS_I64;
      }
      if (kind == 2) {
        p.anchors = p.positives = dummy;
        p.dim = 2;
      } else {
        p.similarity = dummy;
      }
      npairs_options o;
      npairs_options_init(&o);
      o.reduction = red;
      npt::Array loss(dt, red == NPAIRS_REDUCTION_NONE ? 0 : 1), dS(dt, 0), dA(dt, 0), dP(dt, 0);
      loss.poison();
      dS.poison();
      dA.poison();
      dP.poison();
      npairs_gradients g;
      npairs_gradients_init(&g);
      g.similarity = dS.data();
      if (kind == 2) {
        g.anchors = dA.data();
        g.positives = dP.data();
      }
      ASSERT_NPAIRS_OK(npairs_loss(ctx.get(), &o, &p, nullptr, loss.data(), &g));
      EXPECT_TRUE(npt::fully_written("loss", loss));
      if (red != NPAIRS_REDUCTION_NONE) {
        EXPECT_EQ(loss.get(0), 0.0);
      }
      EXPECT_TRUE(dS.guards_intact());
      EXPECT_TRUE(dA.guards_intact());
      EXPECT_TRUE(dP.guards_intact());
    }
  }
}

// R = 0 with M > 0 columns (column targets): no logits, so dL/dP is zero,
// and it must be written as zeros (the buffer is poisoned first), for labels
// and multilabels and every reduction.
TEST_P(EmptyBatch, NoRowsWithColumnsGivesZeroPositiveGradients) {
  const npairs_dtype dt = GetParam();
  npt::Context ctx(NPAIRS_BACKEND_CPU);
  ASSERT_NPAIRS_OK(ctx.status());
  for (bool multilabel : {false, true}) {
    for (npairs_reduction red :
         {NPAIRS_REDUCTION_NONE, NPAIRS_REDUCTION_SUM, NPAIRS_REDUCTION_SUM_OVER_BATCH_SIZE}) {
      SCOPED_TRACE(std::string(multilabel ? "multilabels " : "labels ") + npt::reduction_name(red));
      npt::Spec s;
      s.dtype = dt;
      s.rows = 0;
      s.cols = 5;
      s.column_targets = true;
      s.multilabel = multilabel;
      s.embeddings = true;
      s.dim = 3;
      s.reduction = red;
      s.seed = 40;
      const npt::Inputs in = npt::make_inputs(s);
      ASSERT_EQ(in.positives.size(), 15u);
      npt::Outputs out(in, true, true, true, true);
      ASSERT_NPAIRS_OK(npt::run_loss(ctx.get(), in, out));
      EXPECT_TRUE(npt::fully_written("grads.positives", out.grad_positives));
      for (std::size_t k = 0; k < out.grad_positives.size(); ++k) {
        EXPECT_EQ(out.grad_positives.get(k), 0.0) << "grads.positives[" << k << "]";
      }
      EXPECT_TRUE(out.grad_anchors.guards_intact());
      EXPECT_TRUE(out.grad_similarity.guards_intact());
      EXPECT_TRUE(npt::fully_written("loss", out.loss));
      if (red != NPAIRS_REDUCTION_NONE) {
        EXPECT_EQ(out.loss.get(0), 0.0);
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Dtypes, EmptyBatch, ::testing::Values(NPAIRS_F32, NPAIRS_F64),
                         [](const ::testing::TestParamInfo<npairs_dtype>& param_info) {
                           return std::string(npt::dtype_name(param_info.param));
                         });

}  // namespace
