// SPEC section 1's check value: A = P = [[1,1],[1,-1],[-1,1],[-1,-1]],
// labels [0,0,1,1], default reduction -> 1.253856022085945.
#include <cmath>
#include <cstring>

#include "reference.hpp"
#include "test_util.hpp"

namespace {

constexpr double kCheckValue = 1.253856022085945;
const double kEmb[8] = {1, 1, 1, -1, -1, 1, -1, -1};

template <class T>
std::vector<T> similarity_by_hand() {
  std::vector<T> s(16);
  for (int i = 0; i < 4; ++i) {
    for (int j = 0; j < 4; ++j) s[i * 4 + j] = static_cast<T>(kEmb[2 * i] * kEmb[2 * j] + kEmb[2 * i + 1] * kEmb[2 * j + 1]);
  }
  return s;
}

// The check problem on anchors = positives = `embeddings` (4 x 2), with the
// given labels; callers swap in other targets or logits.
npairs_problem check_problem(npairs_dtype dtype, const void* labels, npairs_dtype label_dtype,
                             const void* embeddings) {
  npairs_problem p;
  npairs_problem_init(&p);
  p.rows = 4;
  p.dtype = dtype;
  p.labels = labels;
  p.label_dtype = label_dtype;
  p.anchors = embeddings;
  p.positives = embeddings;
  p.dim = 2;
  return p;
}

TEST(CheckValue, ReferenceReproducesIt) {
  ref::Problem p;
  p.rows = p.cols = 4;
  p.labels = {0, 0, 1, 1};
  p.embeddings = true;
  p.dim = 2;
  p.anchors.assign(kEmb, kEmb + 8);
  p.positives = p.anchors;
  EXPECT_NEAR(ref::compute<double>(p).loss[0], kCheckValue, 1e-15);
  EXPECT_NEAR(static_cast<double>(ref::compute<long double>(p).loss[0]), kCheckValue, 1e-15);
}

// Embeddings, both label widths, float64, options NULL (the defaults).
template <class L>
void check_embeddings_f64(npairs_dtype label_dtype) {
  npt::Context ctx(NPAIRS_BACKEND_CPU);
  ASSERT_NPAIRS_OK(ctx.status());
  const L labels[4] = {0, 0, 1, 1};
  const npairs_problem p = check_problem(NPAIRS_F64, labels, label_dtype, kEmb);
  double loss = NAN;
  ASSERT_NPAIRS_OK(npairs_loss(ctx.get(), nullptr, &p, nullptr, &loss, nullptr));
  EXPECT_NEAR(loss, kCheckValue, 1e-15);
  EXPECT_NEAR(loss, kCheckValue, 1e-15 * kCheckValue);
}

TEST(CheckValue, EmbeddingsF64LabelsI64) { check_embeddings_f64<int64_t>(NPAIRS_I64); }
TEST(CheckValue, EmbeddingsF64LabelsI32) { check_embeddings_f64<int32_t>(NPAIRS_I32); }

TEST(CheckValue, SimilarityF64ByHand) {
  npt::Context ctx(NPAIRS_BACKEND_CPU);
  ASSERT_NPAIRS_OK(ctx.status());
  const std::vector<double> s = similarity_by_hand<double>();
  const int32_t labels[4] = {0, 0, 1, 1};
  npairs_problem p = check_problem(NPAIRS_F64, labels, NPAIRS_I32, nullptr);
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
  const double y[8] = {1, 0, 1, 0, 0, 1, 0, 1};  // one-hot of [0, 0, 1, 1]
  npairs_problem p = check_problem(NPAIRS_F64, nullptr, 0, kEmb);
  p.multilabels = y;
  p.num_classes = 2;
  double loss = NAN;
  ASSERT_NPAIRS_OK(npairs_loss(ctx.get(), nullptr, &p, nullptr, &loss, nullptr));
  EXPECT_NEAR(loss, kCheckValue, 1e-15);
}

TEST(CheckValue, Float32) {
  npt::Context ctx(NPAIRS_BACKEND_CPU);
  ASSERT_NPAIRS_OK(ctx.status());
  float emb[8];
  for (int i = 0; i < 8; ++i) emb[i] = static_cast<float>(kEmb[i]);
  const std::vector<float> s = similarity_by_hand<float>();
  const int64_t labels[4] = {0, 0, 1, 1};
  const npairs_problem p = check_problem(NPAIRS_F32, labels, NPAIRS_I64, emb);
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
  const int64_t labels[4] = {0, 0, 1, 1};
  const npairs_problem p = check_problem(NPAIRS_F64, labels, NPAIRS_I64, kEmb);
  double loss = NAN;
  ASSERT_NPAIRS_OK(npairs_loss(ctx.get(), nullptr, &p, nullptr, &loss, nullptr));
  ASSERT_NPAIRS_OK(npairs_context_synchronize(ctx.get()));
  EXPECT_NEAR(loss, kCheckValue, 4e-15);  // a GPU's exp/log may differ by an ulp
}

}  // namespace
