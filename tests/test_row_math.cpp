// Unit tests of the header-only row helpers (src/row_math.hpp) that both the
// CPU backend and the CUDA kernels use, against the independent reference.
#include "row_math.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "reference.hpp"
#include "test_util.hpp"

namespace {

using npairs::RowStats;

template <class T>
RowStats<T> stats_of(const std::vector<T>& z, const std::vector<T>& q, std::size_t begin, std::size_t end) {
  RowStats<T> s = npairs::row_stats_empty<T>();
  for (std::size_t j = begin; j < end; ++j) npairs::row_stats_add(s, z[j], q[j]);
  return s;
}

// The reference loss of one row z with target weights q (normalised there).
double reference_row_loss(const std::vector<double>& z, const std::vector<double>& q) {
  ref::Problem p;
  p.rows = 1;
  p.cols = static_cast<int64_t>(z.size());
  p.multilabel = true;
  p.num_classes = p.cols;
  p.multilabels.assign(z.size(), 1.0);  // Y = ones, Y' = diag(q): G = q
  p.column_multilabels.assign(z.size() * z.size(), 0.0);
  for (std::size_t j = 0; j < z.size(); ++j) p.column_multilabels[j * z.size() + j] = q[j];
  p.similarity = z;
  const auto r = ref::compute<long double>(p);
  EXPECT_TRUE(r.valid);
  return static_cast<double>(r.loss[0]);
}

template <class T>
class RowMath : public ::testing::Test {};
using Reals = ::testing::Types<float, double>;
TYPED_TEST_SUITE(RowMath, Reals);

template <class T>
double rtol_of() {
  return sizeof(T) == 4 ? 2e-6 : 1e-14;
}

// A random row of 1 to max_length logits and target weights (30% of them
// positive), with at least one positive column; returns its length.
template <class T>
std::size_t random_row(npt::Rng& rng, int max_length, std::vector<T>& z, std::vector<T>& q) {
  const auto n = static_cast<std::size_t>(rng.integer(1, max_length));
  z.resize(n);
  q.resize(n);
  for (std::size_t j = 0; j < n; ++j) {
    z[j] = static_cast<T>(5 * rng.normal());
    q[j] = static_cast<T>(rng.bernoulli(0.3) ? rng.uniform(0.5, 2) : 0.0);
  }
  if (q[0] == T(0)) q[0] = T(1);
  return n;
}

TYPED_TEST(RowMath, RowLossMatchesReference) {
  using T = TypeParam;
  npt::Rng rng(1);
  for (int trial = 0; trial < 20; ++trial) {
    std::vector<T> z, q;
    const std::size_t n = random_row(rng, 50, z, q);
    const std::vector<double> zd(z.begin(), z.end()), qd(q.begin(), q.end());
    const double expected = reference_row_loss(zd, qd);
    const double got = static_cast<double>(npairs::row_loss(stats_of(z, q, 0, n)));
    EXPECT_NEAR(got, expected, rtol_of<T>() * (std::fabs(expected) + 10)) << "trial " << trial;
  }
}

TYPED_TEST(RowMath, MergeOfPartsEqualsWhole) {
  using T = TypeParam;
  npt::Rng rng(2);
  const std::size_t n = 37;
  std::vector<T> z(n), q(n);
  for (std::size_t j = 0; j < n; ++j) {
    z[j] = static_cast<T>(4 * rng.normal());
    q[j] = static_cast<T>(j % 5 == 0 ? 1 : 0);
  }
  const T whole = npairs::row_loss(stats_of(z, q, 0, n));
  for (std::size_t cut : {std::size_t(0), std::size_t(1), std::size_t(13), n - 1, n}) {
    const auto a = stats_of(z, q, 0, cut), b = stats_of(z, q, cut, n);
    for (const auto& m : {npairs::row_stats_merge(a, b), npairs::row_stats_merge(b, a)}) {
      EXPECT_NEAR(static_cast<double>(npairs::row_loss(m)), static_cast<double>(whole),
                  rtol_of<T>() * (std::fabs(static_cast<double>(whole)) + 10))
          << "cut " << cut;
      EXPECT_EQ(m.pos, npairs::row_stats_merge(a, b).pos);
    }
  }
  // Equal maxima on both sides (the `same` branch), positives on both.
  std::vector<T> z2 = {T(3), T(1), T(3), T(-2)}, q2 = {T(1), T(0), T(0), T(1)};
  const auto m = npairs::row_stats_merge(stats_of(z2, q2, 0, 2), stats_of(z2, q2, 2, 4));
  EXPECT_NEAR(static_cast<double>(npairs::row_loss(m)),
              reference_row_loss({3, 1, 3, -2}, {1, 0, 0, 1}), rtol_of<T>() * 10);
  // Merging with an empty part is the identity.
  const auto s = stats_of(z, q, 0, n);
  const auto e = npairs::row_stats_merge(s, npairs::row_stats_empty<T>());
  EXPECT_EQ(e.max, s.max);
  EXPECT_EQ(e.sum_exp, s.sum_exp);
  EXPECT_EQ(e.pos, s.pos);
  EXPECT_EQ(e.pos_gap, s.pos_gap);
}

TYPED_TEST(RowMath, NegativeInfinityWithZeroTarget) {
  using T = TypeParam;
  const T inf = std::numeric_limits<T>::infinity();
  // -inf first (max starts at -inf), then in the middle.
  for (const std::vector<T>& z : {std::vector<T>{-inf, T(0), T(1)}, std::vector<T>{T(0), -inf, T(1)}}) {
    const std::vector<T> q = {z[0] == -inf ? T(0) : T(1), z[1] == -inf ? T(0) : T(1), T(0)};
    const auto s = stats_of(z, q, 0, 3);
    const T loss = npairs::row_loss(s);
    EXPECT_TRUE(std::isfinite(static_cast<double>(loss)));
    EXPECT_NEAR(static_cast<double>(loss), std::log(1 + std::exp(1.0)), rtol_of<T>() * 2);
    const auto c = npairs::row_grad_coeffs(s, T(1));
    const int inf_col = z[0] == -inf ? 0 : 1;
    EXPECT_EQ(npairs::row_grad(c, z[inf_col], q[inf_col]), T(0));
  }
  // A merge where one part is only -inf.
  std::vector<T> z = {-inf, -inf, T(2), T(0)}, q = {T(0), T(0), T(0), T(1)};
  const auto m = npairs::row_stats_merge(stats_of(z, q, 0, 2), stats_of(z, q, 2, 4));
  EXPECT_NEAR(static_cast<double>(npairs::row_loss(m)), std::log(1 + std::exp(2.0)), rtol_of<T>() * 3);
}

TYPED_TEST(RowMath, HugeValuesStayExact) {
  using T = TypeParam;
  const T b = sizeof(T) == 4 ? T(1e30) : T(1e300);
  auto loss_of = [&](std::vector<T> z, std::vector<T> q) {
    return static_cast<double>(npairs::row_loss(stats_of(z, q, 0, z.size())));
  };
  EXPECT_NEAR(loss_of({b, b}, {T(1), T(0)}), std::log(2.0), rtol_of<T>());
  EXPECT_NEAR(loss_of({-b, b}, {T(1), T(0)}), 2 * static_cast<double>(b), rtol_of<T>() * 2 * static_cast<double>(b));
  EXPECT_NEAR(loss_of({b, -b}, {T(1), T(0)}), 0.0, 1e-7);
  // Split across a merge, the huge gap on the lower part.
  std::vector<T> z = {-b, T(0), b, b}, q = {T(1), T(0), T(0), T(0)};
  const auto m = npairs::row_stats_merge(stats_of(z, q, 0, 2), stats_of(z, q, 2, 4));
  EXPECT_NEAR(static_cast<double>(npairs::row_loss(m)), 2 * static_cast<double>(b),
              rtol_of<T>() * 2 * static_cast<double>(b));
}

TYPED_TEST(RowMath, GradientIsSoftmaxMinusTargets) {
  using T = TypeParam;
  const std::vector<T> z = {T(0.5), T(-1), T(2), T(0)}, q = {T(1), T(0), T(3), T(0)};
  const auto s = stats_of(z, q, 0, 4);
  const T scale = T(0.25);
  const auto c = npairs::row_grad_coeffs(s, scale);
  double denom = 0;
  for (T x : z) denom += std::exp(static_cast<double>(x));
  double total = 0;
  for (std::size_t j = 0; j < 4; ++j) {
    const double expected = 0.25 * (std::exp(static_cast<double>(z[j])) / denom - static_cast<double>(q[j]) / 4.0);
    const double got = static_cast<double>(npairs::row_grad(c, z[j], q[j]));
    EXPECT_NEAR(got, expected, rtol_of<T>());
    total += got;
  }
  EXPECT_NEAR(total, 0.0, rtol_of<T>());  // softmax and targets both sum to 1
}

// row_grad_from_exp, fed e = row_exp(z - max) as the CPU row pass keeps it,
// against the gradient computed in long double from z and q alone.
TYPED_TEST(RowMath, GradientFromExpMatchesLongDouble) {
  using T = TypeParam;
  npt::Rng rng(3);
  for (int trial = 0; trial < 20; ++trial) {
    std::vector<T> z, q;
    const std::size_t n = random_row(rng, 60, z, q);
    const T scale = static_cast<T>(rng.uniform(-2, 2));
    const auto c = npairs::row_grad_coeffs(stats_of(z, q, 0, n), scale);

    long double max = -INFINITY, sum_exp = 0, pos = 0;
    for (std::size_t j = 0; j < n; ++j) {
      max = std::max(max, static_cast<long double>(z[j]));
      pos += q[j];
    }
    for (std::size_t j = 0; j < n; ++j) sum_exp += std::exp(z[j] - max);
    for (std::size_t j = 0; j < n; ++j) {
      const long double expected = scale * (std::exp(z[j] - max) / sum_exp - q[j] / pos);
      const T got = npairs::row_grad_from_exp(c, npairs::row_exp(z[j] - c.max), q[j]);
      EXPECT_NEAR(static_cast<double>(got), static_cast<double>(expected),
                  rtol_of<T>() * std::fabs(static_cast<double>(scale)))
          << "trial " << trial << ", column " << j;
      // row_grad is this helper with its own exp: the same bits.
      EXPECT_EQ(got, npairs::row_grad(c, z[j], q[j]));
    }
  }
  // A column at -inf (e = 0) without target weight has no gradient; the
  // row's only other column takes the whole softmax and target: 0 too.
  const T inf = std::numeric_limits<T>::infinity();
  const std::vector<T> z = {-inf, T(3)}, q = {T(0), T(1)};
  const auto c = npairs::row_grad_coeffs(stats_of(z, q, 0, 2), T(0.5));
  EXPECT_EQ(npairs::row_grad_from_exp(c, T(0), T(0)), T(0));
  EXPECT_EQ(npairs::row_grad_from_exp(c, T(1), T(1)), T(0));
}

}  // namespace
