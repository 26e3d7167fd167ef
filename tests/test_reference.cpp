// Self-checks of the float64 reference (reference.cpp), so that the library
// is compared against something that is itself verified: hand-computed
// values, its gradients against its own finite differences, and agreement of
// its double and long double instantiations.
#include <cmath>

#include "reference.hpp"
#include "test_util.hpp"

namespace {

TEST(Reference, TwoColumnsByHand) {
  // z = [0, log 3], target column 1: loss = log(1 + 3) - log 3 = log(4/3).
  ref::Problem p;
  p.rows = 1;
  p.cols = 2;
  p.labels = {7};
  p.column_labels = {8, 7};
  p.similarity = {0.0, std::log(3.0)};
  const auto r = ref::compute<double>(p);
  ASSERT_TRUE(r.valid);
  EXPECT_NEAR(r.loss[0], std::log(4.0 / 3.0), 1e-15);
  // dS = softmax - T = [1/4, 3/4] - [0, 1], r = 1 (R = 1).
  EXPECT_NEAR(r.grad_similarity[0], 0.25, 1e-15);
  EXPECT_NEAR(r.grad_similarity[1], -0.25, 1e-15);
}

TEST(Reference, SoftTargetsAndTemperatureByHand) {
  // One row, K = 2: Y = [1, 1]; columns Y' = [[1, 0], [1, 1], [0, 0]] give
  // G = [1, 2, 0], T = [1/3, 2/3, 0]. S = [1, 2, 3], tau = 0.5: z = [2, 4, 6].
  ref::Problem p;
  p.rows = 1;
  p.cols = 3;
  p.multilabel = true;
  p.num_classes = 2;
  p.multilabels = {1, 1};
  p.column_multilabels = {1, 0, 1, 1, 0, 0};
  p.similarity = {1, 2, 3};
  p.temperature = 0.5;
  const auto r = ref::compute<double>(p);
  ASSERT_TRUE(r.valid);
  const double lse = std::log(std::exp(2.0) + std::exp(4.0) + std::exp(6.0));
  EXPECT_NEAR(r.loss[0], lse - (2.0 / 3.0 + 8.0 / 3.0), 1e-14);
  EXPECT_NEAR(r.targets[0], 1.0 / 3.0, 1e-16);
  EXPECT_NEAR(r.targets[1], 2.0 / 3.0, 1e-16);
  EXPECT_EQ(r.targets[2], 0.0);
}

TEST(Reference, DetectsRowWithoutPositive) {
  ref::Problem p;
  p.rows = 3;
  p.cols = 2;
  p.labels = {1, 2, 3};
  p.column_labels = {1, 2};
  p.similarity.assign(6, 0.0);
  const auto r = ref::compute<double>(p);
  EXPECT_FALSE(r.valid);
  EXPECT_EQ(r.first_bad_row, 2);
}

TEST(Reference, LabelsCompareAsExactIntegers) {
  // 2^60 and 2^60 + 1 are the same double but different labels.
  const int64_t big = int64_t(1) << 60;
  ref::Problem p;
  p.rows = 2;
  p.cols = 2;
  p.labels = {big, big + 1};
  p.similarity = {0, 0, 0, 0};
  const auto r = ref::compute<double>(p);
  ASSERT_TRUE(r.valid);
  EXPECT_EQ(r.targets[1], 0.0);
  EXPECT_NEAR(r.loss[0], std::log(2.0), 1e-15);
}

// The reference's analytic gradients against central differences of its own
// objective, for every reduction, with weights, temperature, L2 and g.
TEST(Reference, GradientsMatchOwnFiniteDifferences) {
  for (npairs_reduction red : {NPAIRS_REDUCTION_NONE, NPAIRS_REDUCTION_SUM, NPAIRS_REDUCTION_SUM_OVER_BATCH_SIZE}) {
    for (bool multilabel : {false, true}) {
      SCOPED_TRACE(std::string(npt::reduction_name(red)) + (multilabel ? " multilabel" : " labels"));
      npt::Spec s;
      s.rows = 4;
      s.cols = 5;
      s.dim = 3;
      s.column_targets = true;
      s.multilabel = multilabel;
      s.embeddings = true;
      s.weights = true;
      s.grad_loss = true;
      s.reduction = red;
      s.temperature = 0.7;
      s.reg_lambda = red == NPAIRS_REDUCTION_NONE ? 0.0 : 0.3;
      s.seed = 99;
      const npt::Inputs in = npt::make_inputs(s);
      ref::Problem p = in.reference();
      const auto r = ref::compute<double>(p);
      ASSERT_TRUE(r.valid);
      auto objective = [&](const ref::Problem& q) { return ref::upstream_objective(q, ref::compute<double>(q)); };
      const double h = 1e-6;
      for (std::size_t k = 0; k < p.anchors.size(); ++k) {
        ref::Problem a = p, b = p;
        a.anchors[k] += h;
        b.anchors[k] -= h;
        EXPECT_NEAR((objective(a) - objective(b)) / (2 * h), r.grad_anchors[k], 1e-7) << "dA[" << k << "]";
      }
      for (std::size_t k = 0; k < p.positives.size(); ++k) {
        ref::Problem a = p, b = p;
        a.positives[k] += h;
        b.positives[k] -= h;
        EXPECT_NEAR((objective(a) - objective(b)) / (2 * h), r.grad_positives[k], 1e-7) << "dP[" << k << "]";
      }
      // dS through the similarity form of the same problem.
      ref::Problem sp = p;
      sp.embeddings = false;
      sp.similarity.assign(r.logits.begin(), r.logits.end());
      for (double& v : sp.similarity) v *= p.temperature;
      sp.anchors.clear();
      sp.positives.clear();
      sp.reg_lambda = 0;
      const auto rs = ref::compute<double>(sp);
      for (std::size_t k = 0; k < sp.similarity.size(); ++k) {
        ref::Problem a = sp, b = sp;
        a.similarity[k] += h;
        b.similarity[k] -= h;
        EXPECT_NEAR((objective(a) - objective(b)) / (2 * h), rs.grad_similarity[k], 1e-7) << "dS[" << k << "]";
        EXPECT_NEAR(rs.grad_similarity[k], r.grad_similarity[k], 1e-13);
      }
    }
  }
}

TEST(Reference, DoubleAgreesWithLongDouble) {
  npt::Spec s;
  s.rows = 13;
  s.cols = 17;
  s.column_targets = true;
  s.weights = true;
  s.grad_loss = true;
  s.temperature = 0.37;
  s.seed = 5;
  const ref::Problem p = npt::make_inputs(s).reference();
  const auto d = ref::compute<double>(p);
  const auto l = ref::compute<long double>(p);
  EXPECT_TRUE(npt::all_close("loss", d.loss, npt::to_double(l.loss), 1e-14));
  EXPECT_TRUE(npt::all_close("dS", d.grad_similarity, npt::to_double(l.grad_similarity), 1e-14));
}

}  // namespace

namespace {

// The test-side 16-bit conversions (test_util.cpp) against values from the
// formats' definitions, so that the half-precision CUDA tests read and write
// what they think they do.
TEST(TestTools, HalfConversions) {
  EXPECT_EQ(npt::double_to_half(1.0), 0x3C00);
  EXPECT_EQ(npt::double_to_half(-2.0), 0xC000);
  EXPECT_EQ(npt::double_to_half(65504.0), 0x7BFF);
  EXPECT_EQ(npt::double_to_half(65520.0), 0x7C00);  // the tie rounds up to infinity
  EXPECT_EQ(npt::double_to_half(65519.99), 0x7BFF);
  EXPECT_EQ(npt::double_to_half(INFINITY), 0x7C00);
  EXPECT_EQ(npt::double_to_half(-INFINITY), 0xFC00);
  EXPECT_EQ(npt::double_to_half(std::ldexp(1.0, -26)), 0x0000);     // a quarter unit: down to zero
  EXPECT_EQ(npt::double_to_half(3 * std::ldexp(1.0, -26)), 0x0001);  // three quarters: up
  EXPECT_EQ(npt::double_to_half(std::ldexp(1.0, -24)), 0x0001);
  EXPECT_EQ(npt::double_to_half(std::ldexp(1.0, -14)), 0x0400);
  EXPECT_EQ(npt::double_to_half(0.1), 0x2E66);
  EXPECT_EQ(npt::double_to_half(1.0 + std::ldexp(1.0, -11)), 0x3C00);  // tie to even
  EXPECT_EQ(npt::double_to_half(1.0 + 3 * std::ldexp(1.0, -11)), 0x3C02);
  EXPECT_EQ(npt::half_to_double(0x3555), 0x1.554p-2);
  EXPECT_EQ(npt::half_to_double(0x03FF), 1023 * std::ldexp(1.0, -24));
  EXPECT_TRUE(std::isinf(npt::half_to_double(0xFC00)) && npt::half_to_double(0xFC00) < 0);
  EXPECT_TRUE(std::isnan(npt::half_to_double(0x7FDA)));
  for (uint32_t bits = 0; bits < 0x7C00; ++bits) {
    ASSERT_EQ(npt::double_to_half(npt::half_to_double(static_cast<uint16_t>(bits))), bits);
  }
}

TEST(TestTools, BFloat16Conversions) {
  EXPECT_EQ(npt::double_to_bfloat16(1.0), 0x3F80);
  EXPECT_EQ(npt::double_to_bfloat16(-3.0), 0xC040);
  EXPECT_EQ(npt::double_to_bfloat16(1.0 + std::ldexp(1.0, -8)), 0x3F80);  // tie to even
  EXPECT_EQ(npt::double_to_bfloat16(1.0 + 3 * std::ldexp(1.0, -8)), 0x3F82);
  // Rounded once from double: just above the tie goes up (through float it
  // would round to the tie first, then down to even).
  EXPECT_EQ(npt::double_to_bfloat16(1.0 + std::ldexp(1.0, -8) + std::ldexp(1.0, -30)), 0x3F81);
  EXPECT_EQ(npt::double_to_bfloat16(INFINITY), 0x7F80);
  EXPECT_EQ(npt::double_to_bfloat16(-1e39), 0xFF80);
  EXPECT_EQ(npt::bfloat16_to_double(0x4049), 3.140625);
  EXPECT_TRUE(std::isnan(npt::bfloat16_to_double(0x7FDA)));
  for (uint32_t bits = 0; bits < 0x7F80; ++bits) {
    ASSERT_EQ(npt::double_to_bfloat16(npt::bfloat16_to_double(static_cast<uint16_t>(bits))), bits);
  }
}

}  // namespace
