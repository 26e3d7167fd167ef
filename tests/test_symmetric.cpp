// SPEC section 5 on the CPU backend: NPAIRS_FLAG_SYMMETRIC (the mean of the
// row and the column direction) and grads.temperature (dL/dtau), against the
// float64 reference for every input kind, dense and streamed; finite
// differences on tau and on S; open_clip's formula; the 1.0-sized gradients
// struct; the bad inputs.
#include <algorithm>
#include <cinttypes>
#include <cmath>
#include <cstddef>
#include <cstdio>
#include <limits>
#include <string>
#include <vector>

#if defined(__SSE__)
#include <xmmintrin.h>
#endif

#include "test_util.hpp"

namespace {

struct SymCase : npt::SymmetricCase {
  bool wide_logits = false;  // similarity spread far apart: see widen()
};

// Logits far apart (similarity inputs): rows and columns shifted by offsets
// beyond ColumnShiftLimit (src/row_math.hpp) of the dtype, so that some
// columns' maxima lie far below other rows' maxima (computed directly, not
// from the row exponentials), and z = -1e30 at some non-target elements.
void widen(npt::Inputs& in) {
  const bool f32 = in.spec.dtype == NPAIRS_F32;
  const double column_drop = f32 ? 75.0 : 650.0, row_rise = f32 ? 30.0 : 200.0;
  for (int64_t i = 0; i < in.R; ++i) {
    for (int64_t j = 0; j < in.M; ++j) {
      const std::size_t k = static_cast<std::size_t>(i * in.M + j);
      double v = in.similarity.get(k) * in.spec.temperature;
      if (j % 3 == 0) v -= column_drop * in.spec.temperature;
      if (i % 5 == 1) v += row_rise * in.spec.temperature;
      const npt::Array& column_labels = in.spec.column_targets ? in.column_labels : in.labels;
      const bool target = !in.spec.multilabel && in.labels.get(static_cast<std::size_t>(i)) ==
                                                     column_labels.get(static_cast<std::size_t>(j));
      if (!in.spec.multilabel && !target && (i + 2 * j) % 11 == 0) v = -1e30 * in.spec.temperature;
      in.similarity.set(k, v);
    }
  }
}

// Every input kind (npt::symmetric_sweep): odd sizes above the smallest
// block of whole rows (64), so that limits give one block, several, and
// tiles of columns.
std::vector<SymCase> make_cases() {
  std::vector<SymCase> cases;
  for (const npt::SymmetricCase& swept :
       npt::symmetric_sweep({NPAIRS_F32, NPAIRS_F64}, npt::SymmetricSizes{104729, 131, 97, 173, 5, 4, 4, 9, true})) {
    SymCase c;
    static_cast<npt::SymmetricCase&>(c) = swept;
    cases.push_back(c);
  }
  // Far-apart logits, similarity inputs, both dtypes and target kinds.
  for (const SymCase& base : std::vector<SymCase>(cases)) {
    if (!base.spec.symmetric || base.spec.embeddings) continue;
    SymCase c = base;
    c.wide_logits = true;
    c.name = "wide_" + base.name;
    cases.push_back(c);
  }
  return cases;
}

npt::Inputs inputs_of(const SymCase& c) {
  npt::Inputs in = npt::make_inputs(c.spec);
  if (c.wide_logits) widen(in);
  return in;
}

class Symmetric : public ::testing::TestWithParam<SymCase> {};

// Unlimited (dense), then limits that force blocks of rows and tiles of
// columns (streamed): each against the reference, bitwise reproducible.
TEST_P(Symmetric, MatchesReferenceDenseAndStreamed) {
  const SymCase& c = GetParam();
  const npt::Inputs in = inputs_of(c);
  const ref::Result<double> expected = ref::compute<double>(in.reference());
  ASSERT_TRUE(expected.valid) << expected.error;
  const double rtol = npt::default_rtol(c.spec.dtype);
  npt::Context ctx;
  ASSERT_NPAIRS_OK(ctx.status());

  npt::Outputs probe(in, true, c.want_similarity, c.want_anchors, c.want_positives, true);
  std::size_t whole = 0;
  ASSERT_NPAIRS_OK(npt::workspace_size(ctx.get(), in, probe, &whole));
  const std::size_t smallest = npt::smallest_workspace(ctx.get(), in, probe);
  ASSERT_GT(smallest, 0u);
  std::vector<std::size_t> limits = {0};
  for (double f : {0.6, 0.3, 0.05, 0.0}) {
    if (smallest < whole) limits.push_back(smallest + static_cast<std::size_t>(f * double(whole - smallest)));
  }
  for (std::size_t limit : limits) {
    SCOPED_TRACE("limit " + std::to_string(limit) + " of " + std::to_string(whole));
    ASSERT_NPAIRS_OK(npairs_context_set_workspace_limit(ctx.get(), limit));
    npt::Outputs out(in, true, c.want_similarity, c.want_anchors, c.want_positives, true);
    std::size_t used = 0;
    ASSERT_NPAIRS_OK(npt::workspace_size(ctx.get(), in, out, &used));
    if (limit != 0) {
      EXPECT_LE(used, limit);
    }
    ASSERT_NPAIRS_OK(npt::run_loss(ctx.get(), in, out));
    npt::expect_matches_reference(in, out, expected, rtol);
    npt::Outputs again(in, true, c.want_similarity, c.want_anchors, c.want_positives, true);
    ASSERT_NPAIRS_OK(npt::run_loss(ctx.get(), in, again));
    EXPECT_EQ(out.loss.bytes(), again.loss.bytes());
    EXPECT_EQ(out.grad_similarity.bytes(), again.grad_similarity.bytes());
    EXPECT_EQ(out.grad_anchors.bytes(), again.grad_anchors.bytes());
    EXPECT_EQ(out.grad_positives.bytes(), again.grad_positives.bytes());
    EXPECT_EQ(out.grad_temperature.bytes(), again.grad_temperature.bytes());
  }
}

// dL/dtau alone (no other gradient), and dL/dS alone: the same values as
// with everything asked for.
TEST_P(Symmetric, SubsetsOfTheOutputs) {
  const SymCase& c = GetParam();
  const npt::Inputs in = inputs_of(c);
  const ref::Result<double> expected = ref::compute<double>(in.reference());
  const double rtol = npt::default_rtol(c.spec.dtype);
  npt::Context ctx;
  ASSERT_NPAIRS_OK(ctx.status());
  npt::Outputs only_tau(in, false, false, false, false, true);
  ASSERT_NPAIRS_OK(npt::run_loss(ctx.get(), in, only_tau));
  npt::expect_matches_reference(in, only_tau, expected, rtol);
  EXPECT_TRUE(only_tau.loss.is_poison(0));
  npt::Outputs loss_and_ds(in, true, true, false, false);
  ASSERT_NPAIRS_OK(npt::run_loss(ctx.get(), in, loss_and_ds));
  npt::expect_matches_reference(in, loss_and_ds, expected, rtol);
}

INSTANTIATE_TEST_SUITE_P(Cases, Symmetric, ::testing::ValuesIn(make_cases()),
                         [](const ::testing::TestParamInfo<SymCase>& param_info) { return param_info.param.name; });

// A small float64 problem for the finite differences.
npt::Spec small_spec(bool symmetric, bool multilabel, bool rectangular, npairs_reduction reduction) {
  npt::Spec s;
  s.dtype = NPAIRS_F64;
  s.symmetric = symmetric;
  s.multilabel = multilabel;
  s.column_targets = rectangular;
  s.rows = 5;
  s.cols = rectangular ? 7 : 5;
  s.classes = multilabel ? 3 : (rectangular ? 3 : 2);
  s.grad_loss = true;
  s.weights = !symmetric;
  s.reduction = reduction;
  s.temperature = 0.6;
  s.seed = 77 + (symmetric ? 1 : 0) + (multilabel ? 2 : 0) + (rectangular ? 4 : 0) + 8 * uint64_t(reduction);
  return s;
}

// g * loss (or sum_i g_i loss_i) of the library at the inputs' tau.
double objective(npairs_context ctx, const npt::Inputs& in) {
  npt::Outputs out(in, true, false, false, false);
  EXPECT_NPAIRS_OK(npt::run_loss(ctx, in, out));
  double f = 0;
  for (std::size_t i = 0; i < out.loss.size(); ++i) f += in.grad_loss.get(i) * out.loss.get(i);
  return f;
}

TEST(SymmetricFiniteDifferences, TemperatureAndSimilarity) {
  npt::Context ctx;
  ASSERT_NPAIRS_OK(ctx.status());
  for (bool symmetric : {true, false}) {
    for (bool multilabel : {false, true}) {
      for (bool rectangular : {false, true}) {
        for (npairs_reduction reduction : {NPAIRS_REDUCTION_SUM, NPAIRS_REDUCTION_SUM_OVER_BATCH_SIZE,
                                           NPAIRS_REDUCTION_NONE}) {
          if (symmetric && reduction == NPAIRS_REDUCTION_NONE) continue;
          npt::Inputs in = npt::make_inputs(small_spec(symmetric, multilabel, rectangular, reduction));
          SCOPED_TRACE(std::string(symmetric ? "symmetric " : "rows ") + (multilabel ? "multi " : "labels ") +
                       (rectangular ? "rect " : "square ") + npt::reduction_name(reduction));
          npt::Outputs out(in, false, true, false, false, true);
          ASSERT_NPAIRS_OK(npt::run_loss(ctx.get(), in, out));
          // Central differences, h = 1e-5 relative: error O(h^2) ~ 1e-10.
          const double tau = in.spec.temperature, h = 1e-5 * tau;
          in.spec.temperature = tau + h;
          const double up = objective(ctx.get(), in);
          in.spec.temperature = tau - h;
          const double down = objective(ctx.get(), in);
          in.spec.temperature = tau;
          EXPECT_NEAR(out.grad_temperature.get(0), (up - down) / (2 * h), 1e-7);
          for (std::size_t k : {std::size_t(0), std::size_t(6), in.similarity.size() - 1}) {
            const double s = in.similarity.get(k), hs = 1e-5;
            in.similarity.set(k, s + hs);
            const double s_up = objective(ctx.get(), in);
            in.similarity.set(k, s - hs);
            const double s_down = objective(ctx.get(), in);
            in.similarity.set(k, s);
            EXPECT_NEAR(out.grad_similarity.get(k), (s_up - s_down) / (2 * hs), 1e-7) << "dS element " << k;
          }
        }
      }
    }
  }
}

// open_clip's ClipLoss: (cross_entropy(S, arange) + cross_entropy(S^T,
// arange)) / 2 with S = logit_scale * img txt^T, each cross-entropy a mean
// over its rows; written here from that formula.
double clip_loss(const std::vector<double>& s, int64_t n) {
  double rows = 0, cols = 0;
  for (int64_t i = 0; i < n; ++i) {
    double m = -std::numeric_limits<double>::infinity(), mc = m;
    for (int64_t j = 0; j < n; ++j) {
      m = std::max(m, s[i * n + j]);
      mc = std::max(mc, s[j * n + i]);
    }
    double sum = 0, sum_c = 0;
    for (int64_t j = 0; j < n; ++j) {
      sum += std::exp(s[i * n + j] - m);
      sum_c += std::exp(s[j * n + i] - mc);
    }
    rows += m + std::log(sum) - s[i * n + i];
    cols += mc + std::log(sum_c) - s[i * n + i];
  }
  return (rows / double(n) + cols / double(n)) / 2;
}

TEST(SymmetricClip, EqualsOpenClipsFormulaWithItsLogitScaleGradient) {
  const int64_t n = 37, dim = 9;
  const double logit_scale = 14.3;  // exp of open_clip's learnable log-scale
  npt::Rng rng(2024);
  npt::Context ctx;
  ASSERT_NPAIRS_OK(ctx.status());
  npt::Array img(NPAIRS_F64, n * dim), txt(NPAIRS_F64, n * dim), labels(NPAIRS_I64, n), loss(NPAIRS_F64, 1),
      dtau(NPAIRS_F64, 1), dimg(NPAIRS_F64, n * dim);
  for (std::size_t k = 0; k < img.size(); ++k) {
    img.set(k, rng.normal() / 3);
    txt.set(k, rng.normal() / 3);
  }
  for (int64_t i = 0; i < n; ++i) labels.set_int(static_cast<std::size_t>(i), i);
  npairs_problem p;
  npairs_problem_init(&p);
  p.rows = n;
  p.dtype = NPAIRS_F64;
  p.labels = labels.data();
  p.label_dtype = NPAIRS_I64;
  p.anchors = img.data();
  p.positives = txt.data();
  p.dim = dim;
  npairs_options o;
  npairs_options_init(&o);
  o.flags = NPAIRS_FLAG_SYMMETRIC;
  auto clip_of = [&](double scale, const npt::Array& a) {
    std::vector<double> s(static_cast<std::size_t>(n * n));
    for (int64_t i = 0; i < n; ++i) {
      for (int64_t j = 0; j < n; ++j) {
        double dot = 0;
        for (int64_t k = 0; k < dim; ++k) dot += a.get(std::size_t(i * dim + k)) * txt.get(std::size_t(j * dim + k));
        s[std::size_t(i * n + j)] = scale * dot;
      }
    }
    return clip_loss(s, n);
  };
  auto library = [&](double scale, npairs_gradients* g) {
    o.temperature = 1.0 / scale;
    EXPECT_NPAIRS_OK(npairs_loss(ctx.get(), &o, &p, nullptr, loss.data(), g));
    return loss.get(0);
  };
  npairs_gradients g;
  npairs_gradients_init(&g);
  g.temperature = dtau.data();
  g.anchors = dimg.data();
  EXPECT_NEAR(library(logit_scale, &g), clip_of(logit_scale, img), 1e-12);
  // d/d(logit_scale) = dL/dtau * dtau/dscale = -dL/dtau / scale^2, against
  // central differences of open_clip's formula.
  const double h = 1e-5;
  const double clip_dscale = (clip_of(logit_scale + h, img) - clip_of(logit_scale - h, img)) / (2 * h);
  EXPECT_NEAR(-dtau.get(0) / (logit_scale * logit_scale), clip_dscale, 1e-8);
  for (std::size_t k : {std::size_t(0), std::size_t(100), img.size() - 1}) {
    npt::Array moved = img;
    moved.set(k, img.get(k) + h);
    const double up = clip_of(logit_scale, moved);
    moved.set(k, img.get(k) - h);
    const double down = clip_of(logit_scale, moved);
    EXPECT_NEAR(dimg.get(k), (up - down) / (2 * h), 1e-8) << "d img element " << k;
  }
}

// CLIP's logits at its largest logit scale, 100: unit image and text
// embeddings with matching pairs, so that most columns lie far below the rows'
// largest logits and many exp(z - max) are below float's normal range (the
// row pass flushes those to zero). Against the reference in both dtypes,
// with the caller's floating-point control word as it was.
std::vector<double> clip_similarity(int64_t n, int64_t dim, uint64_t seed) {
  npt::Rng rng(seed);
  auto unit_rows = [&](std::vector<double> v) {
    for (int64_t i = 0; i < n; ++i) {
      double norm = 0;
      for (int64_t k = 0; k < dim; ++k) norm += v[std::size_t(i * dim + k)] * v[std::size_t(i * dim + k)];
      for (int64_t k = 0; k < dim; ++k) v[std::size_t(i * dim + k)] /= std::sqrt(norm);
    }
    return v;
  };
  std::vector<double> img(std::size_t(n * dim)), txt(img.size());
  for (double& x : img) x = rng.normal();
  img = unit_rows(img);
  for (std::size_t k = 0; k < txt.size(); ++k) txt[k] = img[k] + 0.5 * rng.normal();
  txt = unit_rows(txt);
  std::vector<double> s(std::size_t(n * n));
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t j = 0; j < n; ++j) {
      double dot = 0;
      for (int64_t k = 0; k < dim; ++k) dot += img[std::size_t(i * dim + k)] * txt[std::size_t(j * dim + k)];
      s[std::size_t(i * n + j)] = dot;
    }
  }
  return s;
}

TEST(SymmetricClip, LogitScale100MatchesReferenceAndKeepsTheCallersFloatMode) {
  const int64_t n = 301;
  std::vector<int64_t> labels(static_cast<std::size_t>(n));
  for (int64_t i = 0; i < n; ++i) labels[std::size_t(i)] = i;
  const std::vector<double> similarity = clip_similarity(n, 16, 7);
  for (npairs_dtype dtype : {NPAIRS_F32, NPAIRS_F64}) {
    SCOPED_TRACE(npt::dtype_name(dtype));
    npt::Inputs in = npt::similarity_inputs(dtype, n, n, similarity, labels, labels);
    in.spec.symmetric = true;
    in.spec.temperature = 0.01;
    const ref::Result<double> expected = ref::compute<double>(in.reference());
    ASSERT_TRUE(expected.valid) << expected.error;
    for (int threads : {1, 2}) {
      npt::Context ctx;
      ASSERT_NPAIRS_OK(ctx.status());
      ASSERT_NPAIRS_OK(npairs_context_set_threads(ctx.get(), threads));
      npt::Outputs out(in, true, true, false, false, true);
#if defined(__SSE__)
      const unsigned int mode = _mm_getcsr();
#endif
      ASSERT_NPAIRS_OK(npt::run_loss(ctx.get(), in, out));
#if defined(__SSE__)
      EXPECT_EQ(_mm_getcsr(), mode);
#endif
      npt::expect_matches_reference(in, out, expected, npt::default_rtol(dtype));
    }
  }
}

// A caller compiled against the 1.0 header: its struct ends before
// `temperature`; whatever follows it in memory is never read or written.
TEST(SymmetricAbi, OneZeroSizedGradientsStructIsReadAsBefore) {
  npt::Spec s = small_spec(false, false, false, NPAIRS_REDUCTION_SUM_OVER_BATCH_SIZE);
  const npt::Inputs in = npt::make_inputs(s);
  npt::Context ctx;
  ASSERT_NPAIRS_OK(ctx.status());
  npt::Outputs expected(in, true, true, false, false);
  ASSERT_NPAIRS_OK(npt::run_loss(ctx.get(), in, expected));

  npt::Array ds(NPAIRS_F64, in.similarity.size()), loss(NPAIRS_F64, 1), tail(NPAIRS_F64, 1);
  tail.poison();
  npairs_gradients grown;
  npairs_gradients_init(&grown);
  grown.struct_size = offsetof(npairs_gradients, temperature);  // the 1.0 size
  grown.similarity = ds.data();
  grown.temperature = tail.data();  // beyond the 1.0 struct: not a field of it
  const npairs_problem p = in.problem();
  const npairs_options o = in.options();
  ASSERT_NPAIRS_OK(npairs_loss(ctx.get(), &o, &p, in.grad_loss_ptr(), loss.data(), &grown));
  EXPECT_EQ(loss.values(), expected.loss.values());
  EXPECT_EQ(ds.values(), expected.grad_similarity.values());
  EXPECT_TRUE(tail.is_poison(0));
  std::size_t bytes = 0;
  EXPECT_NPAIRS_OK(npairs_workspace_size(ctx.get(), &o, &p, &grown, &bytes));
  // Below the 1.0 size stays invalid.
  grown.struct_size = offsetof(npairs_gradients, temperature) - 1;
  EXPECT_EQ(npairs_loss(ctx.get(), &o, &p, nullptr, loss.data(), &grown), NPAIRS_ERROR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(npairs_last_error()).find("grads.struct_size"), std::string::npos) << npairs_last_error();
}

// The function npairs_gradients_init (what a 1.0 binary or a binding like
// ctypes calls) fills the 1.0 struct and writes no byte beyond it; the
// header's macro of the same name fills the struct this test was compiled
// with.
TEST(SymmetricAbi, GradientsInitWritesTheCallersSize) {
  const std::size_t old_size = offsetof(npairs_gradients, temperature);
  std::vector<unsigned char> bytes(sizeof(npairs_gradients) + 8, 0xAB);
  auto* g = reinterpret_cast<npairs_gradients*>(bytes.data());
  (npairs_gradients_init)(g);
  EXPECT_EQ(g->struct_size, old_size);
  EXPECT_EQ(g->similarity, nullptr);
  EXPECT_EQ(g->positives, nullptr);
  for (std::size_t k = old_size; k < bytes.size(); ++k) EXPECT_EQ(bytes[k], 0xAB) << "byte " << k;
  npairs_gradients_init(g);
  EXPECT_EQ(g->struct_size, sizeof(npairs_gradients));
  EXPECT_EQ(g->temperature, nullptr);
  for (std::size_t k = sizeof(npairs_gradients); k < bytes.size(); ++k) EXPECT_EQ(bytes[k], 0xAB) << "byte " << k;
  // Below the 1.0 size: nothing is written.
  std::fill(bytes.begin(), bytes.end(), 0xAB);
  npairs_gradients_init_sized(g, old_size - 1);
  for (unsigned char b : bytes) EXPECT_EQ(b, 0xAB);
}

TEST(SymmetricErrors, NoneReductionOrSampleWeightIsInvalidArgument) {
  npt::Context ctx;
  ASSERT_NPAIRS_OK(ctx.status());
  npt::Spec s = small_spec(true, false, true, NPAIRS_REDUCTION_NONE);
  s.grad_loss = false;
  {
    const npt::Inputs in = npt::make_inputs(s);
    npt::Outputs out(in, true, true, false, false, true);
    EXPECT_TRUE(npt::fails_leaving_outputs_untouched(ctx.get(), in, out, NPAIRS_ERROR_INVALID_ARGUMENT));
    EXPECT_TRUE(npt::mentions(npairs_last_error(), {"NPAIRS_FLAG_SYMMETRIC", "options.reduction"})) << npairs_last_error();
  }
  s.reduction = NPAIRS_REDUCTION_SUM;
  s.weights = true;
  const npt::Inputs in = npt::make_inputs(s);
  npt::Outputs out(in, true, true, false, false, true);
  EXPECT_TRUE(npt::fails_leaving_outputs_untouched(ctx.get(), in, out, NPAIRS_ERROR_INVALID_ARGUMENT));
  EXPECT_TRUE(npt::mentions(npairs_last_error(), {"NPAIRS_FLAG_SYMMETRIC", "problem.sample_weight"})) << npairs_last_error();
  // npairs_workspace_size checks the same rules.
  const npairs_options o = in.options();
  const npairs_problem p = in.problem();
  std::size_t bytes = 7;
  EXPECT_EQ(npairs_workspace_size(ctx.get(), &o, &p, nullptr, &bytes), NPAIRS_ERROR_INVALID_ARGUMENT);
  EXPECT_EQ(bytes, 7u);
}

TEST(SymmetricErrors, ColumnWithoutPositiveRowIsInvalidValueNamingIt) {
  npt::Context ctx;
  ASSERT_NPAIRS_OK(ctx.status());
  npt::expect_symmetric_column_without_positive_fails(ctx.get());
}

// R = 0 without column targets (M = 0): the loss and dL/dtau are 0.
TEST(Symmetric, NoRowsGivesZeros) {
  npt::Context ctx;
  ASSERT_NPAIRS_OK(ctx.status());
  npt::expect_symmetric_no_rows_gives_zeros(ctx.get());
}

}  // namespace
