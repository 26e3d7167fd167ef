#include "test_util.hpp"

#include <algorithm>
#include <cinttypes>
#include <climits>
#include <cmath>
#include <cstdio>
#include <limits>
#include <set>
#include <sstream>

namespace npt {

std::size_t dtype_size(npairs_dtype dtype) {
  switch (dtype) {
    case NPAIRS_F32: return 4;
    case NPAIRS_F64: return 8;
    case NPAIRS_F16: return 2;
    case NPAIRS_BF16: return 2;
    case NPAIRS_I32: return 4;
    case NPAIRS_I64: return 8;
    default: return 0;
  }
}

const char* dtype_name(npairs_dtype dtype) {
  switch (dtype) {
    case NPAIRS_F32: return "f32";
    case NPAIRS_F64: return "f64";
    case NPAIRS_F16: return "f16";
    case NPAIRS_BF16: return "bf16";
    case NPAIRS_I32: return "i32";
    case NPAIRS_I64: return "i64";
    default: return "unknown";
  }
}

const char* reduction_name(npairs_reduction reduction) {
  switch (reduction) {
    case NPAIRS_REDUCTION_NONE: return "NONE";
    case NPAIRS_REDUCTION_SUM: return "SUM";
    case NPAIRS_REDUCTION_SUM_OVER_BATCH_SIZE: return "SOBS";
    default: return "unknown";
  }
}

ref::Reduction to_ref(npairs_reduction reduction) {
  switch (reduction) {
    case NPAIRS_REDUCTION_NONE: return ref::Reduction::None;
    case NPAIRS_REDUCTION_SUM: return ref::Reduction::Sum;
    default: return ref::Reduction::SumOverBatchSize;
  }
}

// ---------------------------------------------------------------------------
// Array

namespace {
constexpr uint64_t kPoison64 = 0x7FF8DEADBEEF0001ull;  // a quiet NaN with a payload
constexpr uint32_t kPoison32 = 0x7FC0DEADu;            // a quiet NaN with a payload
constexpr uint16_t kPoison16 = 0x7FDA;                 // a NaN in binary16 and in bfloat16
constexpr unsigned char kPoisonByte = 0x5A;            // integers

const void* poison_pattern(npairs_dtype dtype) {
  switch (dtype) {
    case NPAIRS_F64: return &kPoison64;
    case NPAIRS_F32: return &kPoison32;
    case NPAIRS_F16:
    case NPAIRS_BF16: return &kPoison16;
    default: return nullptr;
  }
}
}  // namespace

// Written from the formats' definitions (IEEE 754 binary16: 1 sign, 5
// exponent, 10 fraction bits; bfloat16: the top half of a binary32), not
// with a library's conversions, so the tests check the library's.
namespace {
// |v| rounded to nearest (ties to even) with `digits` significant bits, and
// no finer than 2^(min_exponent - digits + 1) (the subnormals).
double round_significand(double a, int digits, int min_exponent) {
  int e = 0;
  std::frexp(a, &e);  // a = f * 2^e, f in [0.5, 1)
  const int quantum = std::max(e - 1, min_exponent) - digits + 1;
  return std::ldexp(std::nearbyint(std::ldexp(a, -quantum)), quantum);
}
}  // namespace

double half_to_double(uint16_t bits) {
  const double sign = (bits & 0x8000u) ? -1.0 : 1.0;
  const int exponent = (bits >> 10) & 0x1F;
  const int fraction = bits & 0x3FF;
  if (exponent == 0x1F) return fraction ? std::numeric_limits<double>::quiet_NaN() : sign * INFINITY;
  if (exponent == 0) return sign * std::ldexp(fraction, -24);
  return sign * std::ldexp(1024 + fraction, exponent - 25);
}

uint16_t double_to_half(double v) {
  const uint16_t sign = std::signbit(v) ? 0x8000u : 0u;
  if (std::isnan(v)) return 0x7E00u;
  const double r = round_significand(std::fabs(v), 11, -14);
  if (r >= 65536.0) return static_cast<uint16_t>(sign | 0x7C00u);  // infinity
  if (r < std::ldexp(1.0, -14)) return static_cast<uint16_t>(sign | uint16_t(std::ldexp(r, 24)));
  int e = 0;
  std::frexp(r, &e);
  const auto fraction = static_cast<uint16_t>(std::ldexp(r, 11 - e) - 1024);  // exact
  return static_cast<uint16_t>(sign | ((e - 1 + 15) << 10) | fraction);
}

double bfloat16_to_double(uint16_t bits) {
  const uint32_t word = uint32_t(bits) << 16;
  float f;
  std::memcpy(&f, &word, 4);
  return f;
}

uint16_t double_to_bfloat16(double v) {
  if (std::isnan(v)) return 0x7FC0u;
  const double r = round_significand(std::fabs(v), 8, -126);
  const uint16_t sign = std::signbit(v) ? 0x8000u : 0u;
  if (r >= std::ldexp(1.0, 128)) return static_cast<uint16_t>(sign | 0x7F80u);  // infinity
  const float f = static_cast<float>(sign ? -r : r);  // exact
  uint32_t word;
  std::memcpy(&word, &f, 4);
  return static_cast<uint16_t>(word >> 16);
}

double round_to_half(double v) { return half_to_double(double_to_half(v)); }
double round_to_bfloat16(double v) { return bfloat16_to_double(double_to_bfloat16(v)); }

Array::Array(npairs_dtype dtype, std::size_t count, std::size_t guard)
    : dtype_(dtype), count_(count), guard_(guard), elem_(dtype_size(dtype)) {
  bytes_.assign((count + 2 * guard) * elem_, 0);
}

double Array::get(std::size_t i) const {
  const unsigned char* p = elem_ptr(static_cast<std::ptrdiff_t>(i));
  switch (dtype_) {
    case NPAIRS_F32: { float f; std::memcpy(&f, p, 4); return f; }
    case NPAIRS_F64: { double d; std::memcpy(&d, p, 8); return d; }
    case NPAIRS_F16: { uint16_t h; std::memcpy(&h, p, 2); return half_to_double(h); }
    case NPAIRS_BF16: { uint16_t h; std::memcpy(&h, p, 2); return bfloat16_to_double(h); }
    default: return static_cast<double>(get_int(i));
  }
}

void Array::set(std::size_t i, double v) {
  unsigned char* p = const_cast<unsigned char*>(elem_ptr(static_cast<std::ptrdiff_t>(i)));
  switch (dtype_) {
    case NPAIRS_F32: { const float f = static_cast<float>(v); std::memcpy(p, &f, 4); break; }
    case NPAIRS_F64: std::memcpy(p, &v, 8); break;
    case NPAIRS_F16: { const uint16_t h = double_to_half(v); std::memcpy(p, &h, 2); break; }
    case NPAIRS_BF16: { const uint16_t h = double_to_bfloat16(v); std::memcpy(p, &h, 2); break; }
    default: set_int(i, static_cast<int64_t>(v)); break;
  }
}

int64_t Array::get_int(std::size_t i) const {
  const unsigned char* p = elem_ptr(static_cast<std::ptrdiff_t>(i));
  if (dtype_ == NPAIRS_I32) { int32_t v; std::memcpy(&v, p, 4); return v; }
  if (dtype_ == NPAIRS_I64) { int64_t v; std::memcpy(&v, p, 8); return v; }
  return static_cast<int64_t>(get(i));
}

void Array::set_int(std::size_t i, int64_t v) {
  unsigned char* p = const_cast<unsigned char*>(elem_ptr(static_cast<std::ptrdiff_t>(i)));
  if (dtype_ == NPAIRS_I32) {
    const int32_t x = static_cast<int32_t>(v);
    std::memcpy(p, &x, 4);
  } else if (dtype_ == NPAIRS_I64) {
    std::memcpy(p, &v, 8);
  } else {
    set(i, static_cast<double>(v));
  }
}

std::vector<double> Array::values() const {
  std::vector<double> v(count_);
  for (std::size_t i = 0; i < count_; ++i) v[i] = get(i);
  return v;
}

std::vector<int64_t> Array::int_values() const {
  std::vector<int64_t> v(count_);
  for (std::size_t i = 0; i < count_; ++i) v[i] = get_int(i);
  return v;
}

void Array::fill(double v) {
  for (std::size_t i = 0; i < count_; ++i) set(i, v);
}

void Array::poison() {
  const std::ptrdiff_t lo = -static_cast<std::ptrdiff_t>(guard_);
  const std::ptrdiff_t hi = static_cast<std::ptrdiff_t>(count_ + guard_);
  for (std::ptrdiff_t i = lo; i < hi; ++i) {
    unsigned char* p = const_cast<unsigned char*>(elem_ptr(i));
    if (const void* pattern = poison_pattern(dtype_)) std::memcpy(p, pattern, elem_);
    else std::memset(p, kPoisonByte, elem_);
  }
}

bool Array::is_poison(std::ptrdiff_t i) const {
  const unsigned char* p = elem_ptr(i);
  if (const void* pattern = poison_pattern(dtype_)) return std::memcmp(p, pattern, elem_) == 0;
  for (std::size_t b = 0; b < elem_; ++b) {
    if (p[b] != kPoisonByte) return false;
  }
  return true;
}

bool Array::guards_intact() const {
  for (std::size_t g = 1; g <= guard_; ++g) {
    if (!is_poison(-static_cast<std::ptrdiff_t>(g))) return false;
    if (!is_poison(static_cast<std::ptrdiff_t>(count_ + g - 1))) return false;
  }
  return true;
}

std::ptrdiff_t Array::first_unwritten() const {
  for (std::size_t i = 0; i < count_; ++i) {
    if (is_poison(static_cast<std::ptrdiff_t>(i))) return static_cast<std::ptrdiff_t>(i);
  }
  return -1;
}

// ---------------------------------------------------------------------------
// Comparisons

::testing::AssertionResult all_close(const std::string& what, const std::vector<double>& got,
                                     const std::vector<double>& ref, double rtol, double min_scale) {
  if (got.size() != ref.size()) {
    return ::testing::AssertionFailure() << what << ": size " << got.size() << " != reference size " << ref.size();
  }
  double scale = min_scale;
  for (double r : ref) {
    if (std::isfinite(r)) scale = std::max(scale, std::fabs(r));
  }
  std::size_t bad = 0;
  std::ostringstream detail;
  double worst = 0;
  std::size_t worst_i = 0;
  for (std::size_t i = 0; i < got.size(); ++i) {
    const double g = got[i], r = ref[i];
    bool ok;
    double ratio = 0;
    if (std::isnan(r)) {
      ok = std::isnan(g);
    } else if (std::isinf(r)) {
      ok = (g == r);
    } else {
      const double allowed = rtol * (std::fabs(r) + scale);
      const double err = std::fabs(g - r);
      ok = err <= allowed;  // false for NaN
      ratio = allowed > 0 ? err / allowed : (err > 0 ? INFINITY : 0);
      if (std::isnan(g)) ratio = INFINITY;
    }
    if (ratio > worst) { worst = ratio; worst_i = i; }
    if (!ok) {
      if (bad < 8) {
        detail.precision(17);
        detail << "\n  [" << i << "] got " << g << ", expected " << r << ", diff " << (g - r);
      }
      ++bad;
    }
  }
  if (bad == 0) return ::testing::AssertionSuccess();
  std::ostringstream msg;
  msg.precision(17);
  msg << what << ": " << bad << " of " << got.size() << " elements differ (rtol " << rtol << ", scale " << scale
      << "; worst error/allowed " << worst << " at [" << worst_i << "])" << detail.str();
  return ::testing::AssertionFailure() << msg.str();
}

::testing::AssertionResult fully_written(const std::string& what, const Array& a) {
  const std::ptrdiff_t u = a.first_unwritten();
  if (u >= 0) {
    return ::testing::AssertionFailure() << what << ": element " << u << " of " << a.size()
                                         << " was not written (still poisoned)";
  }
  if (!a.guards_intact()) {
    return ::testing::AssertionFailure() << what << ": written outside its " << a.size()
                                         << " elements (guard elements changed)";
  }
  return ::testing::AssertionSuccess();
}

// ---------------------------------------------------------------------------
// Random problems

namespace {

int64_t label_value(int64_t k, npairs_dtype label_dtype, bool big) {
  if (!big) return 3 * k - 5;  // some negative labels too
  // Neighbouring integers that collide after a cast to float (i32) or
  // double (i64): a library comparing through floats merges the classes.
  if (label_dtype == NPAIRS_I32) return (k % 2 == 0) ? INT32_MAX - k : INT32_MIN + k;
  return (int64_t(1) << 60) + ((k % 2 == 0) ? k : -k);
}

double multilabel_entry(Rng& rng) {
  const double u = rng.uniform(0.0, 1.0);
  if (u < 0.45) return 0.0;
  if (u < 0.75) return 1.0;
  return rng.uniform(0.1, 3.0);
}

// A symmetric call needs every column to have a positive row too: a column
// without one takes the targets of a random row (labels), or one of its
// classes (multi-labels). No row loses a positive: a column label that no row
// has was no row's positive, and a class is only added.
void give_columns_positives(Inputs& in, Rng& rng) {
  const int64_t R = in.R, M = in.M, K = in.K;
  for (int64_t j = 0; j < M; ++j) {
    const int64_t i = rng.integer(0, R - 1);
    if (!in.spec.multilabel) {
      bool has_positive = false;
      for (int64_t r = 0; r < R && !has_positive; ++r) has_positive = in.labels.get_int(r) == in.column_labels.get_int(j);
      if (!has_positive) in.column_labels.set_int(j, in.labels.get_int(i));
      continue;
    }
    bool has_positive = false;
    for (int64_t r = 0; r < R && !has_positive; ++r) {
      for (int64_t k = 0; k < K; ++k) {
        has_positive = has_positive || (in.multilabels.get(r * K + k) > 0 && in.column_multilabels.get(j * K + k) > 0);
      }
    }
    if (has_positive) continue;
    int64_t k = 0;
    while (!(in.multilabels.get(i * K + k) > 0)) ++k;
    in.column_multilabels.set(j * K + k, 1.0);
  }
}

}  // namespace

npairs_problem check_problem(npairs_dtype dtype, const void* labels, npairs_dtype label_dtype, const void* embeddings) {
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

std::vector<double> check_similarity() {
  std::vector<double> s(16);
  for (int i = 0; i < 4; ++i) {
    for (int j = 0; j < 4; ++j) {
      s[static_cast<std::size_t>(i * 4 + j)] =
          kCheckPoints[2 * i] * kCheckPoints[2 * j] + kCheckPoints[2 * i + 1] * kCheckPoints[2 * j + 1];
    }
  }
  return s;
}

Inputs similarity_inputs(npairs_dtype dtype, int64_t rows, int64_t cols, const std::vector<double>& similarity,
                         const std::vector<int64_t>& labels, const std::vector<int64_t>& column_labels) {
  Inputs in;
  in.spec.dtype = dtype;
  in.spec.label_dtype = NPAIRS_I64;
  in.spec.column_targets = true;
  in.spec.rows = rows;
  in.spec.cols = cols;
  in.R = rows;
  in.M = cols;
  in.similarity = Array(dtype, similarity.size());
  in.labels = Array(NPAIRS_I64, labels.size());
  in.column_labels = Array(NPAIRS_I64, column_labels.size());
  for (std::size_t k = 0; k < similarity.size(); ++k) in.similarity.set(k, similarity[k]);
  for (std::size_t k = 0; k < labels.size(); ++k) in.labels.set_int(k, labels[k]);
  for (std::size_t k = 0; k < column_labels.size(); ++k) in.column_labels.set_int(k, column_labels[k]);
  return in;
}

Spec all_features_spec(npairs_dtype dtype, int64_t classes, uint64_t seed) {
  Spec s;
  s.dtype = dtype;
  s.rows = 257;
  s.cols = 263;
  s.column_targets = true;
  s.embeddings = true;
  s.dim = 65;
  s.classes = classes;
  s.weights = true;
  s.grad_loss = true;
  s.temperature = 0.37;
  s.reg_lambda = 0.1;
  s.seed = seed;
  return s;
}

std::vector<SymmetricCase> symmetric_sweep(std::initializer_list<npairs_dtype> dtypes, const SymmetricSizes& sizes) {
  std::vector<SymmetricCase> cases;
  int index = 0;
  for (bool symmetric : {true, false}) {
    for (npairs_dtype dtype : dtypes) {
      const bool half = dtype == NPAIRS_F16 || dtype == NPAIRS_BF16;
      for (bool multilabel : {false, true}) {
        if (multilabel && half) continue;
        for (bool embeddings : {false, true}) {
          for (bool rectangular : {false, true}) {
            SymmetricCase c;
            Spec& s = c.spec;
            c.index = ++index;
            s.seed = static_cast<uint64_t>(index) * sizes.seed_step;
            s.symmetric = symmetric;
            s.dtype = dtype;
            s.multilabel = multilabel;
            s.embeddings = embeddings;
            s.column_targets = rectangular;
            s.rows = sizes.rows + 2 * (index % 5);
            s.cols = rectangular ? (index % 2 == 0 ? sizes.even_cols : sizes.odd_cols) : s.rows;
            s.dim = sizes.dim + index % sizes.dim_cycle;
            s.classes = multilabel ? sizes.multilabel_classes : (rectangular ? sizes.rectangular_classes : s.rows);
            s.label_dtype = index % 3 == 0 ? NPAIRS_I32 : NPAIRS_I64;
            s.big_labels = sizes.big_labels && !multilabel && index % 4 == 3;
            s.reduction = index % 2 == 0 ? NPAIRS_REDUCTION_SUM_OVER_BATCH_SIZE : NPAIRS_REDUCTION_SUM;
            if (!symmetric && index % 4 == 1) s.reduction = NPAIRS_REDUCTION_NONE;
            s.weights = !symmetric && index % 3 != 0;
            s.grad_loss = index % 3 != 2;
            s.temperature = index % 4 == 0 ? 1.0 : 0.07 * (1 + index % 3);
            s.reg_lambda = embeddings && s.reduction != NPAIRS_REDUCTION_NONE && index % 2 == 0 ? 0.01 : 0.0;
            c.want_similarity = !embeddings || index % 2 == 0;
            c.want_anchors = embeddings;
            c.want_positives = embeddings && index % 3 != 0;
            char name[160];
            std::snprintf(name, sizeof name, "c%02d_%s_%s_%s_%s_%s_R%" PRId64 "x%" PRId64, index,
                          symmetric ? "sym" : "rows", dtype_name(dtype), multilabel ? "multi" : "labels",
                          embeddings ? "emb" : "sim", reduction_name(s.reduction), s.rows, s.cols);
            c.name = name;
            cases.push_back(c);
          }
        }
      }
    }
  }
  return cases;
}

void expect_symmetric_no_rows_gives_zeros(npairs_context ctx) {
  const Inputs in = similarity_inputs(NPAIRS_F32, 0, 0, {}, {}, {});
  npairs_options o = in.options();
  o.flags = NPAIRS_FLAG_SYMMETRIC;
  npairs_problem p = in.problem();
  p.column_labels = nullptr;
  float loss = -1, dtau = -1;
  npairs_gradients g;
  npairs_gradients_init(&g);
  g.temperature = &dtau;
  ASSERT_NPAIRS_OK(npairs_loss(ctx, &o, &p, nullptr, &loss, &g));
  EXPECT_EQ(loss, 0.0f);
  EXPECT_EQ(dtau, 0.0f);
}

bool mentions(const std::string& message, std::initializer_list<const char*> parts) {
  for (const char* part : parts) {
    if (message.find(part) == std::string::npos) return false;
  }
  return true;
}

Inputs symmetric_column_without_positive(bool multilabel, npairs_dtype dtype) {
  Spec s;
  s.dtype = dtype;
  s.symmetric = true;
  s.multilabel = multilabel;
  s.column_targets = true;
  s.rows = 9;
  s.cols = 11;
  s.classes = multilabel ? 3 : 4;
  s.reduction = NPAIRS_REDUCTION_SUM;
  for (s.seed = 5;; ++s.seed) {
    Inputs in = make_inputs(s);
    if (multilabel) {
      for (int64_t k = 0; k < in.K; ++k) in.column_multilabels.set(std::size_t(4 * in.K + k), 0.0);
    } else {
      in.column_labels.set_int(4, 999);
    }
    const ref::Result<double> r = ref::compute<double>(in.reference());
    if (r.first_bad_row < 0 && r.first_bad_column == 4) return in;
  }
}

void expect_symmetric_column_without_positive_fails(npairs_context ctx) {
  for (bool multilabel : {false, true}) {
    for (bool streamed : {false, true}) {
      SCOPED_TRACE(std::string(multilabel ? "multi" : "labels") + (streamed ? " streamed" : ""));
      Inputs in = symmetric_column_without_positive(multilabel);
      const ref::Result<double> expected = ref::compute<double>(in.reference());
      ASSERT_FALSE(expected.valid);
      ASSERT_EQ(expected.first_bad_column, 4);
      Outputs out(in, true, true, false, false, true);
      ASSERT_NPAIRS_OK(npairs_context_set_workspace_limit(ctx, streamed ? smallest_workspace(ctx, in, out) : 0));
      EXPECT_TRUE(fails_leaving_outputs_untouched(ctx, in, out, NPAIRS_ERROR_INVALID_VALUE));
      EXPECT_TRUE(mentions(npairs_last_error(),
                           {"column 4", multilabel ? "problem.column_multilabels" : "problem.column_labels"}))
          << npairs_last_error();
      // Not symmetric: the same input is valid (every row has a positive).
      in.spec.symmetric = false;
      Outputs fine(in, true, true, false, false, true);
      ASSERT_NPAIRS_OK(npairs_context_set_workspace_limit(ctx, 0));
      EXPECT_NPAIRS_OK(run_loss(ctx, in, fine));
    }
  }
  // No rows at all: column 0 has no positive row.
  const Inputs empty = similarity_inputs(NPAIRS_F64, 0, 2, {}, {}, {1, 2});
  npairs_options o = empty.options();
  o.flags = NPAIRS_FLAG_SYMMETRIC;
  const npairs_problem p = empty.problem();
  double loss = -1;
  EXPECT_EQ(npairs_loss(ctx, &o, &p, nullptr, &loss, nullptr), NPAIRS_ERROR_INVALID_VALUE);
  EXPECT_TRUE(mentions(npairs_last_error(), {"column 0"})) << npairs_last_error();
  EXPECT_EQ(loss, -1);
}

Inputs make_inputs(const Spec& spec) {
  Inputs in;
  in.spec = spec;
  Rng rng(spec.seed * 0x9E3779B97F4A7C15ull + 12345);
  in.R = spec.rows;
  in.M = spec.column_targets ? spec.cols : spec.rows;
  in.D = spec.embeddings ? spec.dim : 0;
  in.K = spec.multilabel ? spec.classes : 0;
  const std::size_t R = static_cast<std::size_t>(in.R), M = static_cast<std::size_t>(in.M);
  const std::size_t D = static_cast<std::size_t>(in.D), K = static_cast<std::size_t>(in.K);

  if (!spec.multilabel) {
    in.labels = Array(spec.label_dtype, R);
    if (spec.column_targets) {
      in.column_labels = Array(spec.label_dtype, M);
      std::vector<int64_t> col_class(M);
      for (std::size_t j = 0; j < M; ++j) {
        col_class[j] = rng.integer(0, spec.classes - 1);
        in.column_labels.set_int(j, label_value(col_class[j], spec.label_dtype, spec.big_labels));
      }
      // Every row takes a class that some column has, so it has a positive.
      for (std::size_t i = 0; i < R; ++i) {
        const int64_t k = col_class[static_cast<std::size_t>(rng.integer(0, in.M - 1))];
        in.labels.set_int(i, label_value(k, spec.label_dtype, spec.big_labels));
      }
    } else {
      for (std::size_t i = 0; i < R; ++i) {
        in.labels.set_int(i, label_value(rng.integer(0, spec.classes - 1), spec.label_dtype, spec.big_labels));
      }
    }
  } else {
    in.multilabels = Array(spec.dtype, R * K);
    for (std::size_t i = 0; i < R; ++i) {
      bool any = false;
      for (std::size_t k = 0; k < K; ++k) {
        in.multilabels.set(i * K + k, multilabel_entry(rng));
        any = any || in.multilabels.get(i * K + k) > 0;
      }
      if (!any) in.multilabels.set(i * K + static_cast<std::size_t>(rng.integer(0, in.K - 1)), 1.0);
    }
    if (spec.column_targets) {
      in.column_multilabels = Array(spec.dtype, M * K);
      for (std::size_t j = 0; j < M * K; ++j) in.column_multilabels.set(j, multilabel_entry(rng));
      // Give every row a positive column: a shared class with some column.
      for (std::size_t i = 0; i < R; ++i) {
        bool has_positive = false;
        for (std::size_t j = 0; j < M && !has_positive; ++j) {
          for (std::size_t k = 0; k < K; ++k) {
            if (in.multilabels.get(i * K + k) > 0 && in.column_multilabels.get(j * K + k) > 0) {
              has_positive = true;
              break;
            }
          }
        }
        if (!has_positive) {
          std::size_t k = 0;
          while (!(in.multilabels.get(i * K + k) > 0)) ++k;
          const std::size_t j = static_cast<std::size_t>(rng.integer(0, in.M - 1));
          in.column_multilabels.set(j * K + k, 1.0);
        }
      }
    }
  }

  if (spec.symmetric && spec.column_targets) give_columns_positives(in, rng);

  if (spec.embeddings) {
    // Scaled so that S = A P^T has entries of a few units for any D.
    const double c = 1.5 / std::pow(static_cast<double>(std::max<int64_t>(in.D, 1)), 0.25);
    in.anchors = Array(spec.dtype, R * D);
    in.positives = Array(spec.dtype, M * D);
    for (std::size_t i = 0; i < R * D; ++i) in.anchors.set(i, c * rng.normal());
    for (std::size_t i = 0; i < M * D; ++i) in.positives.set(i, c * rng.normal());
  } else {
    in.similarity = Array(spec.dtype, R * M);
    for (std::size_t i = 0; i < R * M; ++i) in.similarity.set(i, 3.0 * rng.normal());
  }
  if (spec.weights) {
    in.sample_weight = Array(spec.dtype, R);
    for (std::size_t i = 0; i < R; ++i) in.sample_weight.set(i, rng.bernoulli(0.1) ? 0.0 : rng.uniform(0.0, 2.0));
  }
  if (spec.grad_loss) {
    const std::size_t n = in.loss_count();
    in.grad_loss = Array(spec.dtype, n);
    for (std::size_t i = 0; i < n; ++i) in.grad_loss.set(i, rng.bernoulli(0.5) ? rng.uniform(0.5, 2.0) : rng.uniform(-2.0, -0.5));
  }
  return in;
}

npairs_problem Inputs::problem() const {
  npairs_problem p;
  npairs_problem_init(&p);
  p.rows = R;
  // Without column targets, alternate between the two spellings of M = R.
  p.cols = spec.column_targets ? M : ((spec.seed % 2 == 0) ? 0 : M);
  p.dtype = spec.dtype;
  p.label_dtype = spec.label_dtype;
  if (spec.multilabel) {
    p.multilabels = multilabels.data();
    p.column_multilabels = spec.column_targets ? column_multilabels.data() : nullptr;
    p.num_classes = K;
  } else {
    p.labels = labels.data();
    p.column_labels = spec.column_targets ? column_labels.data() : nullptr;
  }
  if (spec.embeddings) {
    p.anchors = anchors.data();
    p.positives = positives.data();
    p.dim = D;
  } else {
    p.similarity = similarity.data();
  }
  p.sample_weight = spec.weights ? sample_weight.data() : nullptr;
  return p;
}

npairs_options Inputs::options() const {
  npairs_options o;
  npairs_options_init(&o);
  o.reduction = spec.reduction;
  o.temperature = spec.temperature;
  o.reg_lambda = spec.reg_lambda;
  if (spec.symmetric) o.flags |= NPAIRS_FLAG_SYMMETRIC;
  return o;
}

ref::Problem Inputs::reference() const {
  ref::Problem p;
  p.rows = R;
  p.cols = M;
  p.multilabel = spec.multilabel;
  if (spec.multilabel) {
    p.num_classes = K;
    p.multilabels = multilabels.values();
    if (spec.column_targets) p.column_multilabels = column_multilabels.values();
  } else {
    p.labels = labels.int_values();
    if (spec.column_targets) p.column_labels = column_labels.int_values();
  }
  p.embeddings = spec.embeddings;
  if (spec.embeddings) {
    if (spec.dtype == NPAIRS_F16) p.round_similarity = round_to_half;
    if (spec.dtype == NPAIRS_BF16) p.round_similarity = round_to_bfloat16;
    p.dim = D;
    p.anchors = anchors.values();
    p.positives = positives.values();
  } else {
    p.similarity = similarity.values();
  }
  if (spec.weights) p.sample_weight = sample_weight.values();
  if (spec.grad_loss) p.grad_loss = grad_loss.values();
  p.reduction = to_ref(spec.reduction);
  p.temperature = spec.temperature;
  p.reg_lambda = spec.reg_lambda;
  p.symmetric = spec.symmetric;
  return p;
}

// ---------------------------------------------------------------------------
// Outputs

Outputs::Outputs(const Inputs& in, bool loss_, bool similarity, bool anchors, bool positives, bool temperature)
    : want_loss(loss_),
      want_similarity(similarity),
      want_anchors(anchors),
      want_positives(positives),
      want_temperature(temperature) {
  const npairs_dtype dt = in.spec.dtype;
  loss = Array(dt, in.loss_count());
  grad_similarity = Array(dt, similarity ? static_cast<std::size_t>(in.R * in.M) : 0);
  grad_anchors = Array(dt, anchors ? static_cast<std::size_t>(in.R * in.D) : 0);
  grad_positives = Array(dt, positives ? static_cast<std::size_t>(in.M * in.D) : 0);
  grad_temperature = Array(dt, temperature ? 1 : 0);
  poison();
}

void Outputs::poison() {
  loss.poison();
  grad_similarity.poison();
  grad_anchors.poison();
  grad_positives.poison();
  grad_temperature.poison();
}

npairs_gradients Outputs::grads() {
  npairs_gradients g;
  npairs_gradients_init(&g);
  g.similarity = want_similarity ? grad_similarity.data() : nullptr;
  g.anchors = want_anchors ? grad_anchors.data() : nullptr;
  g.positives = want_positives ? grad_positives.data() : nullptr;
  g.temperature = want_temperature ? grad_temperature.data() : nullptr;
  return g;
}

npairs_status workspace_size(npairs_context ctx, const Inputs& in, Outputs& out, std::size_t* bytes) {
  const npairs_options options = in.options();
  const npairs_problem problem = in.problem();
  npairs_gradients grads = out.grads();
  return npairs_workspace_size(ctx, &options, &problem, out.any_grads() ? &grads : nullptr, bytes);
}

std::size_t smallest_workspace(npairs_context ctx, const Inputs& in, Outputs& out) {
  EXPECT_NPAIRS_OK(npairs_context_set_workspace_limit(ctx, 1));
  std::size_t bytes = 0;
  EXPECT_EQ(workspace_size(ctx, in, out, &bytes), NPAIRS_ERROR_OUT_OF_MEMORY);
  const std::string message = npairs_last_error();
  EXPECT_NE(message.find("limit (1 bytes)"), std::string::npos) << message;
  const std::size_t at = message.find("smallest workspace this call can use (");
  EXPECT_NE(at, std::string::npos) << message;
  EXPECT_NPAIRS_OK(npairs_context_set_workspace_limit(ctx, 0));
  return at == std::string::npos ? 0 : std::stoull(message.substr(at + 38));
}

npairs_status run_loss(npairs_context ctx, const Inputs& in, Outputs& out) {
  const npairs_problem p = in.problem();
  const npairs_options o = in.options();
  npairs_gradients g = out.grads();
  return npairs_loss(ctx, &o, &p, in.grad_loss_ptr(), out.loss_ptr(), out.any_grads() ? &g : nullptr);
}

::testing::AssertionResult fails_leaving_untouched(const std::function<npairs_status()>& call,
                                                   std::initializer_list<Array*> outputs, npairs_status expected) {
  std::vector<std::vector<unsigned char>> before;
  for (Array* a : outputs) {
    a->poison();
    before.push_back(a->bytes());
  }
  const npairs_status status = call();
  const std::string message = npairs_last_error();
  if (status != expected) {
    return ::testing::AssertionFailure() << "npairs_loss returned " << npairs_status_string(status) << " (\""
                                         << message << "\"), expected " << npairs_status_string(expected);
  }
  if (message.empty()) return ::testing::AssertionFailure() << "npairs_loss failed without a message";
  if (message.find('\n') != std::string::npos) {
    return ::testing::AssertionFailure() << "the message is not one line: \"" << message << "\"";
  }
  std::size_t k = 0;
  for (const Array* a : outputs) {
    if (a->bytes() != before[k++]) {
      return ::testing::AssertionFailure() << "npairs_loss wrote output " << k - 1 << " although it failed";
    }
  }
  return ::testing::AssertionSuccess();
}

::testing::AssertionResult fails_leaving_outputs_untouched(npairs_context ctx, const Inputs& in, Outputs& out,
                                                           npairs_status expected) {
  return fails_leaving_untouched([&] { return run_loss(ctx, in, out); },
                                 {&out.loss, &out.grad_similarity, &out.grad_anchors, &out.grad_positives,
                                  &out.grad_temperature},
                                 expected);
}

namespace {
double max_abs(const std::vector<double>& v) {
  double m = 0;
  for (double x : v) m = std::max(m, std::fabs(x));
  return m;
}
}  // namespace

void expect_matches_reference(const Inputs& in, Outputs& out, const ref::Result<double>& expected, double rtol) {
  ASSERT_TRUE(expected.valid) << expected.error;
  // Natural magnitudes of each output. dS_ij = c_i (softmax_ij - T_ij) with
  // c_i = g_i w_i r / tau subtracts two numbers of up to 1 (their difference
  // is 0 when a row has one column): its error is relative to max |c_i|, the
  // floor of its scale; dA and dP sum such terms times P and A.
  const double wmax = in.spec.weights ? std::max(max_abs(in.sample_weight.values()), 1e-3) : 1.0;
  const double gmax = in.spec.grad_loss ? max_abs(in.grad_loss.values()) : 1.0;
  const double zmax = max_abs(expected.logits);
  // Symmetric: the larger of the two directions' factors (1/R and 1/M).
  const double r = (in.spec.reduction == NPAIRS_REDUCTION_SUM_OVER_BATCH_SIZE && in.R > 0)
                       ? 1.0 / double(in.spec.symmetric ? std::min(in.R, in.M) : in.R)
                       : 1.0;
  const double rows_sum = in.spec.reduction == NPAIRS_REDUCTION_SUM ? double(in.R) : 1.0;
  const double loss_scale = rows_sum * wmax * (zmax + 1.0);
  const double ds_scale = gmax * wmax * r / in.spec.temperature;
  // dL/dtau = -sum_ij dS_ij z_ij: its terms' magnitudes are its scale.
  double dtau_scale = 0;
  for (std::size_t k = 0; k < expected.logits.size(); ++k) {
    dtau_scale += std::fabs(expected.grad_similarity[k] * expected.logits[k]);
  }

  if (out.want_loss) {
    EXPECT_TRUE(fully_written("loss", out.loss));
    // A row loss log(sum_j exp(z_j - m)) + sum_j T_j (m - z_j) is a sum of
    // terms of up to 2 max|z| that may cancel to nearly 0: its absolute error
    // is a few units of roundoff of max|z| + 1 per row (weighted, summed over
    // the rows for SUM). That floor, 4 units, is below 1e-3 of the loss scale
    // at the float64 tolerance; it matters only for a float32 loss near 0.
    // 16-bit losses are rounded when stored: relative to their own size.
    const bool rounded = dtype_size(in.spec.dtype) == 2;
    const double floor = rounded ? 0.0 : 4 * unit_roundoff(in.spec.dtype) * loss_scale / rtol;
    EXPECT_TRUE(all_close("loss", out.loss.values(), expected.loss, rtol, floor));
  }
  if (out.want_similarity) {
    EXPECT_TRUE(fully_written("grads.similarity", out.grad_similarity));
    EXPECT_TRUE(all_close("grads.similarity", out.grad_similarity.values(), expected.grad_similarity, rtol, ds_scale));
  }
  if (out.want_temperature) {
    EXPECT_TRUE(fully_written("grads.temperature", out.grad_temperature));
    EXPECT_TRUE(all_close("grads.temperature", out.grad_temperature.values(), {expected.grad_temperature}, rtol,
                          dtau_scale));
  }
  if (out.want_anchors) {
    EXPECT_TRUE(fully_written("grads.anchors", out.grad_anchors));
    EXPECT_TRUE(all_close("grads.anchors", out.grad_anchors.values(), expected.grad_anchors, rtol,
                          ds_scale * max_abs(in.positives.values())));
  }
  if (out.want_positives) {
    EXPECT_TRUE(fully_written("grads.positives", out.grad_positives));
    EXPECT_TRUE(all_close("grads.positives", out.grad_positives.values(), expected.grad_positives, rtol,
                          ds_scale * max_abs(in.anchors.values())));
  }
}

}  // namespace npt
