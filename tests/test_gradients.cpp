// Central finite differences (float64) against the library's gradients dS,
// dA, dP: every reduction, labels and multilabels, square and rectangular,
// with sample weights, temperature, the L2 term and an upstream gradient g.
// The objective differentiated is g * loss (scalar reductions) or
// sum_i g_i * loss_i (NONE), of the library's own loss (the gradient is the
// derivative of what the library computes) and of the independent reference's
// loss (so that a bug shared by the library's loss and gradient fails too).
#include <cmath>
#include <functional>
#include <string>

#include "test_util.hpp"

namespace {

struct GradCase {
  npairs_reduction reduction;
  bool multilabel;
  bool rectangular;
  std::string name;
};

std::vector<GradCase> grad_cases() {
  std::vector<GradCase> v;
  for (npairs_reduction r : {NPAIRS_REDUCTION_NONE, NPAIRS_REDUCTION_SUM, NPAIRS_REDUCTION_SUM_OVER_BATCH_SIZE}) {
    for (bool ml : {false, true}) {
      for (bool rect : {false, true}) {
        v.push_back({r, ml, rect,
                     std::string(npt::reduction_name(r)) + (ml ? "_multi" : "_labels") + (rect ? "_rect" : "_square")});
      }
    }
  }
  return v;
}

class FiniteDifferences : public ::testing::TestWithParam<GradCase> {
 protected:
  void SetUp() override {
    ASSERT_NPAIRS_OK(ctx_.status());
    // Hundreds of tiny calls: one thread keeps them fast on a busy machine
    // (the sweeps cover the default thread count).
    ASSERT_NPAIRS_OK(npairs_context_set_threads(ctx_.get(), 1));
  }

  npt::Spec spec(bool embeddings) const {
    const GradCase& c = GetParam();
    npt::Spec s;
    s.dtype = NPAIRS_F64;
    s.multilabel = c.multilabel;
    s.column_targets = c.rectangular;
    s.rows = 5;
    s.cols = c.rectangular ? 7 : 5;
    s.dim = 3;
    s.classes = c.multilabel ? 3 : 2;
    s.embeddings = embeddings;
    s.weights = true;
    s.grad_loss = true;
    s.reduction = c.reduction;
    s.temperature = 0.6;
    s.reg_lambda = (embeddings && c.reduction != NPAIRS_REDUCTION_NONE) ? 0.3 : 0.0;
    s.seed = 1000 + static_cast<uint64_t>(c.reduction) * 4 + (c.multilabel ? 2 : 0) + (c.rectangular ? 1 : 0);
    return s;
  }

  // The library's loss only (no gradients), weighted by the upstream g.
  double library_objective(const npt::Inputs& in) {
    npt::Outputs out(in, true, false, false, false);
    const npairs_problem p = in.problem();
    const npairs_options o = in.options();
    EXPECT_EQ(npairs_loss(ctx_.get(), &o, &p, nullptr, out.loss.data(), nullptr), NPAIRS_OK) << npairs_last_error();
    double f = 0;
    for (std::size_t i = 0; i < out.loss.size(); ++i) f += in.grad_loss.get(i) * out.loss.get(i);
    return f;
  }

  // The same objective from the float64 reference (tests/reference.cpp).
  static double reference_objective(const npt::Inputs& in) {
    const ref::Problem p = in.reference();
    return ref::upstream_objective(p, ref::compute<double>(p));
  }

  // Compares d(objective)/d(array[k]) by central differences with `grad`.
  void check(npt::Inputs& in, npt::Array npt::Inputs::*member, const npt::Array& grad, const char* what,
             const std::function<double(const npt::Inputs&)>& objective) {
    ASSERT_EQ((in.*member).size(), grad.size());
    double scale = 0;
    for (double x : grad.values()) scale = std::max(scale, std::fabs(x));
    for (std::size_t k = 0; k < grad.size(); ++k) {
      const double x = (in.*member).get(k);
      const double h = 1e-6 * std::max(1.0, std::fabs(x));
      (in.*member).set(k, x + h);
      const double fp = objective(in);
      (in.*member).set(k, x - h);
      const double fm = objective(in);
      (in.*member).set(k, x);
      const double fd = (fp - fm) / (2 * h);
      EXPECT_NEAR(grad.get(k), fd, 1e-6 * (std::fabs(fd) + scale) + 1e-9) << what << "[" << k << "]";
    }
  }
  void check(npt::Inputs& in, npt::Array npt::Inputs::*member, const npt::Array& grad, const char* what) {
    check(in, member, grad, what, [this](const npt::Inputs& x) { return library_objective(x); });
  }

  npt::Context ctx_{NPAIRS_BACKEND_CPU};
};

TEST_P(FiniteDifferences, Embeddings) {
  npt::Inputs in = npt::make_inputs(spec(true));
  npt::Outputs out(in, false, true, true, true);
  ASSERT_NPAIRS_OK(npt::run_loss(ctx_.get(), in, out));
  check(in, &npt::Inputs::anchors, out.grad_anchors, "grads.anchors");
  check(in, &npt::Inputs::positives, out.grad_positives, "grads.positives");
}

TEST_P(FiniteDifferences, Similarity) {
  npt::Inputs in = npt::make_inputs(spec(false));
  npt::Outputs out(in, false, true, false, false);
  ASSERT_NPAIRS_OK(npt::run_loss(ctx_.get(), in, out));
  check(in, &npt::Inputs::similarity, out.grad_similarity, "grads.similarity");
}

// dS of an embeddings problem is the dS of its similarity S = A P^T.
TEST_P(FiniteDifferences, EmbeddingsSimilarityGradient) {
  npt::Inputs in = npt::make_inputs(spec(true));
  npt::Outputs out(in, false, true, false, false);
  ASSERT_NPAIRS_OK(npt::run_loss(ctx_.get(), in, out));
  // Build the similarity form of the same problem (L2 term off: it does not
  // depend on S).
  npt::Inputs sim = in;
  sim.spec.embeddings = false;
  sim.spec.reg_lambda = 0;
  sim.D = 0;
  sim.similarity = npt::Array(NPAIRS_F64, static_cast<std::size_t>(in.R * in.M));
  for (int64_t i = 0; i < in.R; ++i) {
    for (int64_t j = 0; j < in.M; ++j) {
      double s = 0;
      for (int64_t k = 0; k < in.D; ++k) {
        s += in.anchors.get(static_cast<std::size_t>(i * in.D + k)) * in.positives.get(static_cast<std::size_t>(j * in.D + k));
      }
      sim.similarity.set(static_cast<std::size_t>(i * in.M + j), s);
    }
  }
  check(sim, &npt::Inputs::similarity, out.grad_similarity, "grads.similarity");
}

// The library's gradients against finite differences of the reference's loss.
TEST_P(FiniteDifferences, EmbeddingsAgainstReferenceLoss) {
  npt::Inputs in = npt::make_inputs(spec(true));
  npt::Outputs out(in, false, false, true, true);
  ASSERT_NPAIRS_OK(npt::run_loss(ctx_.get(), in, out));
  check(in, &npt::Inputs::anchors, out.grad_anchors, "grads.anchors", reference_objective);
  check(in, &npt::Inputs::positives, out.grad_positives, "grads.positives", reference_objective);
}

TEST_P(FiniteDifferences, SimilarityAgainstReferenceLoss) {
  npt::Inputs in = npt::make_inputs(spec(false));
  npt::Outputs out(in, false, true, false, false);
  ASSERT_NPAIRS_OK(npt::run_loss(ctx_.get(), in, out));
  check(in, &npt::Inputs::similarity, out.grad_similarity, "grads.similarity", reference_objective);
}

INSTANTIATE_TEST_SUITE_P(Cpu, FiniteDifferences, ::testing::ValuesIn(grad_cases()),
                         [](const ::testing::TestParamInfo<GradCase>& param_info) { return param_info.param.name; });

// The L2 term alone: with reg_lambda the scalar loss grows by exactly
// 0.25 * lambda * (mean|a|^2 + mean|p|^2) and dA, dP by 0.5 * lambda * g * A / R
// and 0.5 * lambda * g * P / M.
TEST(L2Term, AddsExactlyTheSpecifiedAmounts) {
  npt::Context ctx(NPAIRS_BACKEND_CPU);
  ASSERT_NPAIRS_OK(ctx.status());
  for (npairs_reduction red : {NPAIRS_REDUCTION_SUM, NPAIRS_REDUCTION_SUM_OVER_BATCH_SIZE}) {
    SCOPED_TRACE(npt::reduction_name(red));
    npt::Spec s;
    s.rows = 6;
    s.cols = 9;
    s.column_targets = true;
    s.embeddings = true;
    s.dim = 4;
    s.grad_loss = true;
    s.reduction = red;
    s.seed = 31;
    npt::Inputs in = npt::make_inputs(s);
    npt::Outputs base(in, true, false, true, true);
    ASSERT_NPAIRS_OK(npt::run_loss(ctx.get(), in, base));
    const double lambda = 0.8;
    in.spec.reg_lambda = lambda;
    npt::Outputs reg(in, true, false, true, true);
    ASSERT_NPAIRS_OK(npt::run_loss(ctx.get(), in, reg));
    double a2 = 0, p2 = 0;
    for (double x : in.anchors.values()) a2 += x * x;
    for (double x : in.positives.values()) p2 += x * x;
    const double R = double(in.R), M = double(in.M), g = in.grad_loss.get(0);
    EXPECT_NEAR(reg.loss.get(0) - base.loss.get(0), 0.25 * lambda * (a2 / R + p2 / M), 1e-13);
    for (std::size_t k = 0; k < in.anchors.size(); ++k) {
      EXPECT_NEAR(reg.grad_anchors.get(k) - base.grad_anchors.get(k), 0.5 * lambda * g * in.anchors.get(k) / R, 1e-13);
    }
    for (std::size_t k = 0; k < in.positives.size(); ++k) {
      EXPECT_NEAR(reg.grad_positives.get(k) - base.grad_positives.get(k), 0.5 * lambda * g * in.positives.get(k) / M,
                  1e-13);
    }
  }
}

// Sample weights and reductions relate exactly: SUM = sum(NONE),
// SUM_OVER_BATCH_SIZE = SUM / R, and weights scale the rows.
TEST(Reductions, RelateAsSpecified) {
  npt::Context ctx(NPAIRS_BACKEND_CPU);
  ASSERT_NPAIRS_OK(ctx.status());
  npt::Spec s;
  s.rows = 13;
  s.cols = 13;
  s.weights = true;
  s.seed = 32;
  s.reduction = NPAIRS_REDUCTION_NONE;
  npt::Inputs in = npt::make_inputs(s);
  npt::Outputs none(in, true, false, false, false);
  ASSERT_NPAIRS_OK(npt::run_loss(ctx.get(), in, none));
  in.spec.reduction = NPAIRS_REDUCTION_SUM;
  npt::Outputs sum(in, true, false, false, false);
  ASSERT_NPAIRS_OK(npt::run_loss(ctx.get(), in, sum));
  in.spec.reduction = NPAIRS_REDUCTION_SUM_OVER_BATCH_SIZE;
  npt::Outputs mean(in, true, false, false, false);
  ASSERT_NPAIRS_OK(npt::run_loss(ctx.get(), in, mean));
  double total = 0;
  for (double x : none.loss.values()) total += x;
  EXPECT_NEAR(sum.loss.get(0), total, 1e-13 * std::fabs(total));
  EXPECT_NEAR(mean.loss.get(0), total / 13.0, 1e-13 * std::fabs(total));
  // Unweighted NONE times the weights is weighted NONE.
  in.spec.weights = false;
  in.spec.reduction = NPAIRS_REDUCTION_NONE;
  npt::Outputs unweighted(in, true, false, false, false);
  ASSERT_NPAIRS_OK(npt::run_loss(ctx.get(), in, unweighted));
  for (std::size_t i = 0; i < 13; ++i) {
    EXPECT_NEAR(none.loss.get(i), in.sample_weight.get(i) * unweighted.loss.get(i),
                1e-14 * std::fabs(unweighted.loss.get(i)) + 1e-300);
  }
}

}  // namespace
