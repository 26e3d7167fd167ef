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

// A similarity problem with explicit row and column labels (int64).
struct SimProblem {
  npairs_dtype dtype = NPAIRS_F32;
  int64_t R = 0, M = 0;
  npt::Array S, labels, column_labels, weights, grad_loss;
  npairs_reduction reduction = NPAIRS_REDUCTION_NONE;
  double temperature = 1.0;
  bool use_weights = false, use_grad_loss = false;

  SimProblem(npairs_dtype dt, int64_t rows, int64_t cols, const std::vector<double>& s,
             const std::vector<int64_t>& l, const std::vector<int64_t>& c)
      : dtype(dt), R(rows), M(cols), S(dt, s.size()), labels(NPAIRS_I64, l.size()), column_labels(NPAIRS_I64, c.size()) {
    for (std::size_t k = 0; k < s.size(); ++k) S.set(k, s[k]);
    for (std::size_t k = 0; k < l.size(); ++k) labels.set_int(k, l[k]);
    for (std::size_t k = 0; k < c.size(); ++k) column_labels.set_int(k, c[k]);
  }
  npairs_problem problem() const {
    npairs_problem p;
    npairs_problem_init(&p);
    p.rows = R;
    p.cols = M;
    p.dtype = dtype;
    p.labels = labels.data();
    p.column_labels = column_labels.data();
    p.label_dtype = NPAIRS_I64;
    p.similarity = S.data();
    p.sample_weight = use_weights ? weights.data() : nullptr;
    return p;
  }
  ref::Problem reference() const {
    ref::Problem p;
    p.rows = R;
    p.cols = M;
    p.labels = labels.int_values();
    p.column_labels = column_labels.int_values();
    p.similarity = S.values();
    p.reduction = npt::to_ref(reduction);
    p.temperature = temperature;
    if (use_weights) p.sample_weight = weights.values();
    if (use_grad_loss) p.grad_loss = grad_loss.values();
    return p;
  }
  // Runs the loss (NONE: [R]) and dS; both arrays poisoned first.
  npairs_status run(npt::Array& loss, npt::Array& dS) const {
    loss = npt::Array(dtype, reduction == NPAIRS_REDUCTION_NONE ? static_cast<std::size_t>(R) : 1);
    dS = npt::Array(dtype, static_cast<std::size_t>(R * M));
    loss.poison();
    dS.poison();
    npt::Context ctx(NPAIRS_BACKEND_CPU);
    if (ctx.status() != NPAIRS_OK) return ctx.status();
    const npairs_problem p = problem();
    npairs_options o;
    npairs_options_init(&o);
    o.reduction = reduction;
    o.temperature = temperature;
    npairs_gradients g;
    npairs_gradients_init(&g);
    g.similarity = dS.data();
    return npairs_loss(ctx.get(), &o, &p, use_grad_loss ? grad_loss.data() : nullptr, loss.data(), &g);
  }
};

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
  SimProblem sp(GetParam(), 3, 2, {b, b, -b, b, b, -b}, {0, 0, 0}, {0, 1});
  npt::Array loss, dS;
  ASSERT_NPAIRS_OK(sp.run(loss, dS));
  EXPECT_TRUE(npt::fully_written("loss", loss));
  EXPECT_NEAR(loss.get(0), std::log(2.0), rtol() * std::log(2.0)) << "row [b, b]";
  EXPECT_NEAR(loss.get(1), 2 * b, rtol() * 2 * b) << "row [-b, b]";
  EXPECT_NEAR(loss.get(2), 0.0, 1e-6) << "row [b, -b], target on the max";
  EXPECT_TRUE(npt::fully_written("grads.similarity", dS));
  EXPECT_TRUE(each_close("grads.similarity", dS.values(), {-0.5, 0.5, -1, 1, 0, 0}, rtol(), 1e-7));
}

TEST_P(HugeLogits, ThroughTemperatureAndScalarReductions) {
  const double b = big() / 4;
  for (npairs_reduction red : {NPAIRS_REDUCTION_SUM, NPAIRS_REDUCTION_SUM_OVER_BATCH_SIZE}) {
    SimProblem sp(GetParam(), 3, 2, {b, b, -b, b, b, -b}, {0, 0, 0}, {0, 1});
    sp.reduction = red;
    sp.temperature = 0.5;  // z = 2 S
    npt::Array loss, dS;
    ASSERT_NPAIRS_OK(sp.run(loss, dS));
    const double expected = (std::log(2.0) + 4 * b) / (red == NPAIRS_REDUCTION_SUM ? 1.0 : 3.0);
    EXPECT_NEAR(loss.get(0), expected, rtol() * expected) << npt::reduction_name(red);
    EXPECT_TRUE(all_finite(dS.values()));
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
  SimProblem sp(GetParam(), R, M, s, rows, cols);
  npt::Array loss, dS;
  ASSERT_NPAIRS_OK(sp.run(loss, dS));
  const auto expected = ref::compute<long double>(sp.reference());
  ASSERT_TRUE(expected.valid);
  EXPECT_TRUE(each_close("loss", loss.values(), npt::to_double(expected.loss), 1e-5, 1e-5));
  EXPECT_TRUE(each_close("grads.similarity", dS.values(), npt::to_double(expected.grad_similarity), 1e-5, 1e-6));
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
  SimProblem sp(GetParam(), 2, 3, {0, -kInf, 1, -kInf, 2, 0}, {0, 1}, {0, 1, 2});
  npt::Array loss, dS;
  ASSERT_NPAIRS_OK(sp.run(loss, dS));
  const double e = std::exp(1.0);
  const double tol = GetParam() == NPAIRS_F32 ? 1e-6 : 1e-15;
  EXPECT_NEAR(loss.get(0), std::log(1 + e), tol * 2) << "row [0, -inf, 1], target 0";
  EXPECT_NEAR(loss.get(1), std::log(1 + std::exp(-2.0)), tol) << "row [-inf, 2, 0], target 1";
  const std::vector<double> ds = dS.values();
  EXPECT_TRUE(all_finite(ds));
  EXPECT_EQ(ds[1], 0.0);
  EXPECT_EQ(ds[3], 0.0);
  EXPECT_NEAR(ds[0], 1 / (1 + e) - 1, tol * 2);
  EXPECT_NEAR(ds[2], e / (1 + e), tol * 2);

  sp.reduction = NPAIRS_REDUCTION_SUM;
  ASSERT_NPAIRS_OK(sp.run(loss, dS));
  EXPECT_TRUE(std::isfinite(loss.get(0)));
}

TEST_P(NonFinite, NaNInSimilarityPropagatesToItsRow) {
  SimProblem sp(GetParam(), 3, 3, {1, 2, 3, 4, kNaN, 6, 7, 8, 9}, {0, 1, 2}, {0, 1, 2});
  npt::Array loss, dS;
  ASSERT_NPAIRS_OK(sp.run(loss, dS));
  EXPECT_FALSE(std::isfinite(loss.get(1)));
  EXPECT_TRUE(std::isfinite(loss.get(0)));
  EXPECT_TRUE(std::isfinite(loss.get(2)));
  const auto expected = ref::compute<double>(sp.reference());
  EXPECT_NEAR(loss.get(0), expected.loss[0], 1e-5 * std::fabs(expected.loss[0]));
  bool row1_nonfinite = false;
  for (std::size_t j = 3; j < 6; ++j) row1_nonfinite = row1_nonfinite || !std::isfinite(dS.get(j));
  EXPECT_TRUE(row1_nonfinite) << "grads.similarity row 1 should carry the NaN";

  for (npairs_reduction red : {NPAIRS_REDUCTION_SUM, NPAIRS_REDUCTION_SUM_OVER_BATCH_SIZE}) {
    sp.reduction = red;
    ASSERT_NPAIRS_OK(sp.run(loss, dS));
    EXPECT_FALSE(std::isfinite(loss.get(0))) << npt::reduction_name(red);
  }
}

TEST_P(NonFinite, InfinityInSimilarityGivesNonFiniteLoss) {
  // +inf in the target column (inf - inf) and in a non-target column (+inf).
  for (std::size_t col : {0u, 1u}) {
    std::vector<double> s = {1, 2, 3};
    s[col] = kInf;
    SimProblem sp(GetParam(), 1, 3, s, {0}, {0, 1, 2});
    npt::Array loss, dS;
    ASSERT_NPAIRS_OK(sp.run(loss, dS));
    EXPECT_FALSE(std::isfinite(loss.get(0))) << "+inf in column " << col;
  }
}

TEST_P(NonFinite, NaNInWeightsOrUpstreamGradientPropagates) {
  SimProblem sp(GetParam(), 2, 2, {1, 2, 3, 4}, {0, 1}, {0, 1});
  sp.use_weights = true;
  sp.weights = npt::Array(GetParam(), 2);
  sp.weights.set(0, 1.0);
  sp.weights.set(1, kNaN);
  sp.reduction = NPAIRS_REDUCTION_SUM;
  npt::Array loss, dS;
  ASSERT_NPAIRS_OK(sp.run(loss, dS));
  EXPECT_FALSE(std::isfinite(loss.get(0)));

  sp.use_weights = false;
  sp.use_grad_loss = true;
  sp.grad_loss = npt::Array(GetParam(), 1);
  sp.grad_loss.set(0, kNaN);
  ASSERT_NPAIRS_OK(sp.run(loss, dS));
  EXPECT_TRUE(std::isfinite(loss.get(0)));
  for (double x : dS.values()) EXPECT_FALSE(std::isfinite(x));
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

INSTANTIATE_TEST_SUITE_P(Dtypes, EmptyBatch, ::testing::Values(NPAIRS_F32, NPAIRS_F64),
                         [](const ::testing::TestParamInfo<npairs_dtype>& param_info) {
                           return std::string(npt::dtype_name(param_info.param));
                         });

}  // namespace
