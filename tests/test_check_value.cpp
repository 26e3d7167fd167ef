// SPEC section 1's check value: A = P = [[1,1],[1,-1],[-1,1],[-1,-1]],
// labels [0,0,1,1], default reduction -> 1.253856022085945.
#include <cmath>

#include "reference.hpp"
#include "test_util.hpp"

namespace {

using npt::check_problem;
using npt::kCheckLabels;
using npt::kCheckLabels32;
using npt::kCheckPoints;
using npt::kCheckValue;

TEST(CheckValue, ReferenceReproducesIt) {
  ref::Problem p;
  p.rows = p.cols = 4;
  p.labels.assign(kCheckLabels, kCheckLabels + 4);
  p.embeddings = true;
  p.dim = 2;
  p.anchors.assign(kCheckPoints, kCheckPoints + 8);
  p.positives = p.anchors;
  EXPECT_NEAR(ref::compute<double>(p).loss[0], kCheckValue, 1e-15);
  EXPECT_NEAR(static_cast<double>(ref::compute<long double>(p).loss[0]), kCheckValue, 1e-15);
}

// Embeddings, both label widths, float64, options NULL (the defaults).
void check_embeddings_f64(const void* labels, npairs_dtype label_dtype) {
  npt::Context ctx(NPAIRS_BACKEND_CPU);
  ASSERT_NPAIRS_OK(ctx.status());
  const npairs_problem p = check_problem(NPAIRS_F64, labels, label_dtype, kCheckPoints);
  double loss = NAN;
  ASSERT_NPAIRS_OK(npairs_loss(ctx.get(), nullptr, &p, nullptr, &loss, nullptr));
  EXPECT_NEAR(loss, kCheckValue, 1e-15);
}

TEST(CheckValue, EmbeddingsF64LabelsI64) { check_embeddings_f64(kCheckLabels, NPAIRS_I64); }
TEST(CheckValue, EmbeddingsF64LabelsI32) { check_embeddings_f64(kCheckLabels32, NPAIRS_I32); }

TEST(CheckValue, SimilarityF64ByHand) {
  npt::Context ctx(NPAIRS_BACKEND_CPU);
  ASSERT_NPAIRS_OK(ctx.status());
  const std::vector<double> s = npt::check_similarity();
  npairs_problem p = check_problem(NPAIRS_F64, kCheckLabels32, NPAIRS_I32, nullptr);
  p.anchors = p.positives = nullptr;
  p.dim = 0;
  p.cols = 4;
  p.similarity = s.data();
  npairs_options o;
  npairs_options_init(&o);
  double loss = NAN;
  ASSERT_NPAIRS_OK(npairs_loss(ctx.get(), &o, &p, nullptr, &loss, nullptr));
  EXPECT_NEAR(loss, kCheckValue, 1e-15);

  // SUM is 4x, and NONE gives the same value on every row (by symmetry).
  o.reduction = NPAIRS_REDUCTION_SUM;
  ASSERT_NPAIRS_OK(npairs_loss(ctx.get(), &o, &p, nullptr, &loss, nullptr));
  EXPECT_NEAR(loss, 4 * kCheckValue, 4e-15);
  o.reduction = NPAIRS_REDUCTION_NONE;
  double rows[4] = {NAN, NAN, NAN, NAN};
  ASSERT_NPAIRS_OK(npairs_loss(ctx.get(), &o, &p, nullptr, rows, nullptr));
  for (double r : rows) EXPECT_NEAR(r, kCheckValue, 1e-15);
}

TEST(CheckValue, MultilabelOneHotF64) {
  npt::Context ctx(NPAIRS_BACKEND_CPU);
  ASSERT_NPAIRS_OK(ctx.status());
  npairs_problem p = check_problem(NPAIRS_F64, nullptr, 0, kCheckPoints);
  p.multilabels = npt::kCheckOneHot;
  p.num_classes = 2;
  double loss = NAN;
  ASSERT_NPAIRS_OK(npairs_loss(ctx.get(), nullptr, &p, nullptr, &loss, nullptr));
  EXPECT_NEAR(loss, kCheckValue, 1e-15);
}

TEST(CheckValue, Float32) {
  npt::Context ctx(NPAIRS_BACKEND_CPU);
  ASSERT_NPAIRS_OK(ctx.status());
  float emb[8];
  for (int i = 0; i < 8; ++i) emb[i] = static_cast<float>(kCheckPoints[i]);
  const std::vector<double> s64 = npt::check_similarity();
  const std::vector<float> s(s64.begin(), s64.end());
  const npairs_problem p = check_problem(NPAIRS_F32, kCheckLabels, NPAIRS_I64, emb);
  float loss = NAN;
  ASSERT_NPAIRS_OK(npairs_loss(ctx.get(), nullptr, &p, nullptr, &loss, nullptr));
  EXPECT_NEAR(loss, kCheckValue, 1e-6 * kCheckValue);

  npairs_problem ps = p;
  ps.anchors = ps.positives = nullptr;
  ps.dim = 0;
  ps.similarity = s.data();
  loss = NAN;
  ASSERT_NPAIRS_OK(npairs_loss(ctx.get(), nullptr, &ps, nullptr, &loss, nullptr));
  EXPECT_NEAR(loss, kCheckValue, 1e-6 * kCheckValue);
}

TEST(CheckValue, AutoBackend) {
  // AUTO picks whatever is available; the check value holds there too.
  npt::Context ctx(NPAIRS_BACKEND_AUTO);
  ASSERT_NPAIRS_OK(ctx.status());
  const npairs_problem p = check_problem(NPAIRS_F64, kCheckLabels, NPAIRS_I64, kCheckPoints);
  double loss = NAN;
  ASSERT_NPAIRS_OK(npairs_loss(ctx.get(), nullptr, &p, nullptr, &loss, nullptr));
  ASSERT_NPAIRS_OK(npairs_context_synchronize(ctx.get()));
  EXPECT_NEAR(loss, kCheckValue, 4e-15);  // a GPU's exp/log may differ by an ulp
}

}  // namespace
