// The math of one logits row, shared by the CPU backend and the CUDA kernels
// (__host__ __device__), so that the CPU tests check what the GPU runs.
//
// For a row z (already divided by the temperature) and target weights q
// (1/0 for labels, G_ij = Y_i . Y'_j for multi-labels) the row loss is
//   loss = logsumexp(z) - sum_j q_j z_j / sum_j q_j
//        = log(sum_j exp(z_j - m)) + sum_j q_j (m - z_j) / sum_j q_j,
// with m = max_j z_j. The second form never subtracts two huge numbers, so it
// stays finite for |z| up to 1e30 in float wherever the exact loss is finite,
// and a column with q_j = 0 never touches the target term (even at z = -inf).
#pragma once

#include <math.h>
#include <stddef.h>
#include <stdint.h>

#if defined(__CUDACC__)
#define NPAIRS_HD __host__ __device__ __forceinline__
#else
#define NPAIRS_HD inline
#endif

namespace npairs {

// The blocks of `per` that cover n things (n >= 0, per > 0).
NPAIRS_HD constexpr int64_t ceil_div(int64_t n, int64_t per) { return (n + per - 1) / per; }

// n bytes rounded up to a multiple of `to` (to > 0): the workspace layouts' offsets.
constexpr size_t round_up(size_t n, size_t to) { return (n + to - 1) / to * to; }

// exp and log of the row's own precision, on host and device alike.
NPAIRS_HD float row_exp(float x) { return expf(x); }
NPAIRS_HD double row_exp(double x) { return exp(x); }
NPAIRS_HD float row_log(float x) { return logf(x); }
NPAIRS_HD double row_log(double x) { return log(x); }

// The logit scale 1/tau as two factors, each finite in T, applied as
// z = (S * hi) * lo: 1/tau alone overflows float for tau below about 3e-39,
// where z = S / tau may still be finite (tau = 1e-40, S = 1e-12: z = 1e28).
// When 1/tau is finite in T, lo is 1 and z = S * (1/tau) exactly as before.
template <class T>
struct LogitScale {
  T hi;
  T lo;
};

template <class T>
inline LogitScale<T> logit_scale(double temperature) {
  const T whole = T(1.0 / temperature);
  if (whole - whole == T(0)) return LogitScale<T>{whole, T(1)};  // finite
  const double root = 1.0 / sqrt(temperature);                     // finite for any tau > 0
  return LogitScale<T>{T(root), T(1.0 / temperature / root)};
}

// Running statistics of a (part of a) row: max, sum of exp(z - max), sum of
// target weights, and sum of q * (max - z).
template <class T>
struct RowStats {
  T max;
  T sum_exp;
  T pos;
  T pos_gap;
};

template <class T>
NPAIRS_HD RowStats<T> row_stats_empty() {
  return RowStats<T>{-T(INFINITY), T(0), T(0), T(0)};
}

// Adds one element z <= s.max (with target weight q) without moving the max,
// given e = row_exp(z - s.max): the whole step when the max of the row is
// known beforehand, and a caller that keeps e for the gradient computes it
// once. The equality test keeps a row that starts with -inf from adding
// exp(-inf - -inf) = NaN; the 1 it adds is scaled to 0 as soon as a finite
// element raises the max.
// An element's term of the sum of exponentials, e = row_exp(z - max), and 1
// at the max (also where z = max = -inf).
template <class T>
NPAIRS_HD T exp_term(T z, T max, T e) {
  return (z == max) ? T(1) : e;
}

// An element's term of the target gap, q * (max - z), and 0 where q is 0
// (even at z = -inf).
template <class T>
NPAIRS_HD T gap_term(T q, T z, T max) {
  return (q != T(0)) ? q * (max - z) : T(0);
}

// Branch-free (selects, not jumps) so that CPU loops over it vectorize.
// (Summing exp_term and gap_term straight into a loop's own sums vectorizes
// about 1.4x faster with GCC 12, but gave wrong sums for float64 with int32
// labels in the symmetric pass: keep one RowStats per element.)
template <class T>
NPAIRS_HD void row_stats_accumulate_exp(RowStats<T>& s, T z, T q, T e) {
  s.sum_exp += exp_term(z, s.max, e);
  s.pos += q;
  s.pos_gap += gap_term(q, z, s.max);
}

template <class T>
NPAIRS_HD void row_stats_accumulate(RowStats<T>& s, T z, T q) {
  row_stats_accumulate_exp(s, z, q, row_exp(z - s.max));
}

// Adds one element in a single pass over the row, raising the max as needed,
// with one exp and no branch (selects), so that a loop over many running
// statistics at once (the columns of a symmetric call) vectorizes: raising
// the max rescales the sum by exp(max - z), else the element adds
// exp(z - max), and both are exp(-|z - max|).
template <class T>
NPAIRS_HD void row_stats_add(RowStats<T>& s, T z, T q) {
  const T d = z - s.max;
  const bool raise = z > s.max;
  const T e = row_exp(raise ? -d : d);
  s.sum_exp = raise ? s.sum_exp * e + T(1) : s.sum_exp + ((z == s.max) ? T(1) : e);
  s.pos_gap += (raise && s.pos != T(0)) ? s.pos * d : T(0);
  s.max = raise ? z : s.max;
  s.pos_gap += (q != T(0)) ? q * (s.max - z) : T(0);
  s.pos += q;
}

// Combines the statistics of two disjoint parts of a row. Deterministic for a
// fixed order of merges.
template <class T>
NPAIRS_HD RowStats<T> row_stats_merge(const RowStats<T>& a, const RowStats<T>& b) {
  // Copies, not references: selecting between references makes nvcc spill
  // the stats to local memory.
  const bool a_high = a.max >= b.max;
  const RowStats<T> hi = a_high ? a : b;
  const RowStats<T> lo = a_high ? b : a;
  const bool same = (lo.max == hi.max);
  RowStats<T> r;
  r.max = hi.max;
  r.sum_exp = hi.sum_exp + (same ? lo.sum_exp : lo.sum_exp * row_exp(lo.max - hi.max));
  r.pos = hi.pos + lo.pos;
  r.pos_gap = hi.pos_gap + lo.pos_gap + ((same || lo.pos == T(0)) ? T(0) : lo.pos * (hi.max - lo.max));
  return r;
}

// The row loss: log(sum_exp) + pos_gap / pos. Needs pos > 0 (checked by the
// caller's target validation).
template <class T>
NPAIRS_HD T row_loss(const RowStats<T>& s) {
  return row_log(s.sum_exp) + s.pos_gap / s.pos;
}

// What the gradient of one row needs, computed once per row. `scale` is
// g_i * w_i * r / tau (upstream gradient, weight, reduction factor,
// temperature).
template <class T>
struct RowGradCoeffs {
  T max;
  T inv_sum_exp;
  T inv_pos;
  T scale;
};

template <class T>
NPAIRS_HD RowGradCoeffs<T> row_grad_coeffs(const RowStats<T>& s, T scale) {
  return RowGradCoeffs<T>{s.max, T(1) / s.sum_exp, T(1) / s.pos, scale};
}

// dL/dS_ij = scale * (softmax(z)_j - q_j / pos), given e = row_exp(z - c.max)
// (e.g. kept from the statistics pass, so that each element costs one exp).
template <class T>
NPAIRS_HD T row_grad_from_exp(const RowGradCoeffs<T>& c, T e, T q) {
  return c.scale * (e * c.inv_sum_exp - q * c.inv_pos);
}

template <class T>
NPAIRS_HD T row_grad(const RowGradCoeffs<T>& c, T z, T q) {
  return row_grad_from_exp(c, row_exp(z - c.max), q);
}

// x * (z - max), and 0 where x is 0: a term of sum_j x_j (z_j - max) that a
// column at z = -inf with nothing to add (x = 0) leaves finite.
template <class T>
NPAIRS_HD T shifted_term(T x, T z, T max) {
  return x != T(0) ? x * (z - max) : T(0);
}

// sum_j (softmax(z)_j - q_j / pos) z_j of a row, from its statistics and
// exp_gap = sum_j shifted_term(exp(z_j - max), z_j, max): the row's share of
// dL/dtau = -(1/tau) sum_ij (dL/dz_ij) z_ij. Both sums weigh the z_j by
// weights summing to 1, so the max cancels between them and neither term
// subtracts two huge numbers.
template <class T>
NPAIRS_HD T row_logit_moment(const RowStats<T>& s, T exp_gap) {
  return exp_gap / s.sum_exp + s.pos_gap / s.pos;
}

// The column direction of a symmetric call, from the row direction's
// exponentials: for rows i of a block with maxima m_i <= G (G the block's
// largest) and a column with max C,
//   exp(z_ij - C) = exp(z_ij - m_i) * exp(m_i - G) * exp(G - C),
// so each column needs one exp per block instead of one per element. Every
// factor is a normal number for each element that matters to the column
// (within 25 of its max in float, 40 in double) when G - C is at most this
// limit; a column further below G is computed directly.
template <class T>
struct ColumnShiftLimit;
template <>
struct ColumnShiftLimit<float> {
  static constexpr float value = 50.0f;
};
template <>
struct ColumnShiftLimit<double> {
  static constexpr double value = 600.0;
};

// Whether a column whose max lies `shift` = G - C below the block's largest
// row max takes the factored form; false for NaN (non-finite statistics are
// computed directly).
template <class T>
NPAIRS_HD bool column_shift_ok(T shift) {
  return shift <= ColumnShiftLimit<T>::value;
}

}  // namespace npairs
