// The CUDA backend's other kernels (cuda/first_row_with_negative.cu,
// first_row_without_positive.cu, deferred_check.cu, scalar_loss.cu,
// sum_squares.cu, l2_gradient.cu, as they are now, compiled after cuda_shim.hpp) run on the
// CPU by the emulator, through their launchers, against a float64 reference
// written from SPEC section 1. Each case runs under the three thread orders
// of emu::Schedule and checks: the results against the reference, bitwise
// the same under every order, no write outside the outputs (guard zones), the
// inputs left alone, the grid-stride loops going round where the case says
// so, no emulator report (barriers, deadlocks). Every launch runs with an
// unrelated error left pending in the thread's last-error state, which the
// launchers must neither report nor clear (issue 10, item 2).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <string>
#include <type_traits>
#include <vector>

#include "cuda_shim.hpp"
#include "deferred_check.cuh"
#include "dtype.cuh"
#include "emulated_test_support.hpp"
#include "first_row_with_negative.cuh"
#include "first_row_without_positive.cuh"
#include "l2_gradient.cuh"
#include "scalar_loss.cuh"
#include "sum_squares.cuh"
#include "targets.cuh"

namespace {

using emu::GuardedArray;
using emulated::run_under_every_schedule;
using npairs::cuda::compute_t;

template <class T>
T from_double(double x) {
  return npairs::cuda::from_double<T>(x);
}
template <class T>
double to_double(T x) {
  return double(npairs::cuda::to_compute(x));
}
template <class T>
const char* type_name() {
  if constexpr (std::is_same_v<T, float>) return "f32";
  if constexpr (std::is_same_v<T, double>) return "f64";
  if constexpr (std::is_same_v<T, __half>) return "f16";
  return "bf16";
}

// ---- first_row_with_negative_kernel (launch_first_row_with_negative) ----

template <class T>
void check_first_row_with_negative(int64_t rows, int64_t cols, std::vector<int64_t> bad_rows,
                                   double bad_value, long long slot_before, bool grid_stride) {
  SCOPED_TRACE(std::string(type_name<T>()) + " rows " + std::to_string(rows) + " cols " +
               std::to_string(cols) + " bad " + std::to_string(bad_value));
  std::mt19937_64 rng(uint64_t(rows * 31 + cols));
  std::uniform_real_distribution<double> uniform(0, 3);
  GuardedArray<T> matrix(std::size_t(rows * cols), true);
  for (std::size_t k = 0; k < matrix.size(); ++k)
    matrix.data()[k] = from_double<T>(k % 5 == 0 ? (k % 2 ? -0.0 : 0.0) : uniform(rng));
  for (int64_t row : bad_rows)
    matrix.data()[row * cols + int64_t(rng() % uint64_t(cols))] = from_double<T>(bad_value);
  const std::vector<unsigned char> matrix_bytes = matrix.copy_bytes();
  // The reference: the first row with an entry y where !(y >= 0).
  long long expected = slot_before;
  for (int64_t k = 0; k < rows * cols; ++k)
    if (!(to_double(matrix.data()[k]) >= 0) && k / cols < expected) expected = k / cols;

  GuardedArray<long long> slot(1, false);
  const auto launches = run_under_every_schedule(
      [&] {
        slot.data()[0] = slot_before;
        npairs::cuda::launch_first_row_with_negative(matrix.data(), rows, cols, slot.data(), nullptr);
      },
      [&] { return slot.copy_bytes(); });
  EXPECT_EQ(slot.data()[0], expected);
  EXPECT_TRUE(slot.guards_intact() && matrix.guards_intact());
  EXPECT_TRUE(matrix.copy_bytes() == matrix_bytes) << "input changed";
  ASSERT_EQ(launches.size(), rows * cols > 0 ? 1u : 0u);
  if (grid_stride) {
    EXPECT_LT(int64_t(launches[0].grid) * launches[0].threads, rows * cols) << "no grid-stride round";
  }
}

TEST(EmulatedFirstRowWithNegative, MatchesTheReference) {
  const long long none = npairs::cuda::kNoBadRow;
  check_first_row_with_negative<float>(37, 5, {}, -1, none, false);
  check_first_row_with_negative<float>(37, 5, {30, 11, 12}, -1, none, false);
  check_first_row_with_negative<double>(300, 7, {299}, NAN, none, false);
  check_first_row_with_negative<__half>(9, 300, {4, 8}, -INFINITY, none, false);
  check_first_row_with_negative<__nv_bfloat16>(9, 33, {7}, -1e-30, 3, false);  // a lower slot stays
  check_first_row_with_negative<float>(0, 4, {}, -1, none, false);
  // More elements than the grid's threads (4096 blocks of 256).
  check_first_row_with_negative<float>(4096 * 256 / 3 + 7, 3, {4096 * 256 / 3 + 2}, -2, none, true);
}

// ---- first_row_without_positive_kernel (launch_first_row_without_positive) ----

template <class Targets>
void check_first_row_without_positive(const Targets& targets, const std::vector<double>& q,
                                      int64_t rows, int64_t cols, bool grid_stride) {
  long long expected = npairs::cuda::kNoBadRow;
  for (int64_t i = rows - 1; i >= 0; --i) {
    double sum = 0;
    for (int64_t j = 0; j < cols; ++j) sum += q[std::size_t(i * cols + j)] > 0 ? 1 : 0;
    if (sum == 0) expected = i;
  }
  GuardedArray<long long> slot(1, false);
  const auto launches = run_under_every_schedule(
      [&] {
        slot.data()[0] = npairs::cuda::kNoBadRow;
        npairs::cuda::launch_first_row_without_positive(targets, rows, cols, slot.data(), nullptr);
      },
      [&] { return slot.copy_bytes(); });
  EXPECT_EQ(slot.data()[0], expected);
  EXPECT_TRUE(slot.guards_intact());
  ASSERT_EQ(launches.size(), rows > 0 ? 1u : 0u);
  if (grid_stride) {
    EXPECT_LT(int64_t(launches[0].grid), rows) << "no grid-stride round";
  }
}

// Labels with the rows in `lonely` (and only those) matching no column; the
// only positive of the other rows is at a column chosen per row, the last
// column among them.
template <class C, class L>
void check_labels(int64_t rows, int64_t cols, const std::vector<int64_t>& lonely, bool grid_stride) {
  SCOPED_TRACE("labels rows " + std::to_string(rows) + " cols " + std::to_string(cols));
  std::vector<L> column_labels(static_cast<std::size_t>(cols)), labels(static_cast<std::size_t>(rows));
  const L step = sizeof(L) == 8 ? L(1) << 40 : L(7);
  for (int64_t j = 0; j < cols; ++j) column_labels[std::size_t(j)] = L(j) * step;  // distinct
  for (int64_t i = 0; i < rows; ++i) {
    const int64_t j = i % 3 == 0 ? cols - 1 : (i * 7919) % cols;
    labels[std::size_t(i)] = column_labels[std::size_t(j)];
  }
  for (int64_t i : lonely) labels[std::size_t(i)] = L(-1);
  std::vector<double> q(std::size_t(rows * cols));
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t j = 0; j < cols; ++j)
      q[std::size_t(i * cols + j)] = labels[std::size_t(i)] == column_labels[std::size_t(j)];
  check_first_row_without_positive(
      npairs::cuda::LabelTargets<C, L>{labels.data(), column_labels.data()}, q, rows, cols, grid_stride);
}

template <class C>
void check_gram(int64_t rows, int64_t cols, const std::vector<int64_t>& lonely) {
  SCOPED_TRACE("gram rows " + std::to_string(rows) + " cols " + std::to_string(cols));
  std::mt19937_64 rng(uint64_t(rows + cols));
  std::vector<C> gram(std::size_t(rows * cols), C(0));
  for (int64_t i = 0; i < rows; ++i) gram[std::size_t(i * cols + int64_t(rng() % uint64_t(cols)))] = C(0.5);
  for (int64_t i : lonely)
    for (int64_t j = 0; j < cols; ++j) gram[std::size_t(i * cols + j)] = C(0);
  const std::vector<double> q(gram.begin(), gram.end());
  check_first_row_without_positive(npairs::cuda::GramTargets<C>{gram.data(), cols}, q, rows, cols, false);
}

// Weights that are not above 0 are no positive: a caller's block row
// statistics ([2] the target weight, NPAIRS_ROW_STATS_WIDTH apart) with a
// negative or NaN weight fail like a zero one.
TEST(EmulatedFirstRowWithoutPositive, NegativeOrNanWeightIsNoPositive) {
  for (double bad : {-0.5, std::numeric_limits<double>::quiet_NaN(), 0.0}) {
    SCOPED_TRACE("weight " + std::to_string(bad));
    const int64_t rows = 5, width = 4;
    std::vector<float> stats(std::size_t(rows * width), 1.0f);
    stats[std::size_t(3 * width + 2)] = float(bad);
    long long slot = npairs::cuda::kNoBadRow;
    npairs::cuda::launch_first_row_without_positive(npairs::cuda::GramTargets<float>{stats.data() + 2, width}, rows, 1,
                                                    &slot, nullptr);
    EXPECT_EQ(slot, 3);
  }
}

TEST(EmulatedFirstRowWithoutPositive, MatchesTheReference) {
  check_labels<float, int32_t>(5, 3, {}, false);
  check_labels<float, int32_t>(13, 700, {12, 5}, false);  // rows longer than a block
  check_labels<double, int64_t>(7, 257, {6}, false);
  check_labels<float, int64_t>(0, 3, {}, false);
  check_gram<float>(11, 600, {3, 9});
  check_gram<double>(4, 1, {2});
  // More rows than blocks (4096): the grid-stride loop goes round.
  check_labels<float, int32_t>(4096 + 20, 1, {4096 + 17}, true);
}

// ---- deferred_check_kernel (launch_deferred_check) ----

// Rows of a label or Gram problem, some invalid: no positive column, a
// negative multi-label entry, or (column_bad) a negative column multi-label
// row that spoils them all. The invalid rows' loss and gradient rows become
// NaN, the others are left as they were; the report slots keep the first
// invalid row of each kind, and a lower earlier report stays.
struct DeferredCase {
  std::string name;
  bool gram = false;
  int64_t rows = 37, cols = 41, classes = 3;
  std::vector<int64_t> lonely, negative;
  long long column_bad = npairs::cuda::kNoBadRow;  // this call's column check result
  bool gemm_input = false;
};

template <class T>
void check_deferred(const DeferredCase& c) {
  SCOPED_TRACE(std::string(type_name<T>()) + " " + c.name);
  using C = compute_t<T>;
  using npairs::cuda::kNoBadRow;
  const std::size_t rows = std::size_t(c.rows), cols = std::size_t(c.cols), n = rows * cols;
  // Targets: labels i % 5 against column labels j % 5 (every row has a
  // positive when cols >= 5), or a Gram matrix with one positive per row.
  std::vector<int32_t> labels(rows), column_labels(cols);
  for (std::size_t j = 0; j < cols; ++j) column_labels[j] = int32_t(j % 5);
  for (std::size_t i = 0; i < rows; ++i) labels[i] = int32_t(i % 5);
  std::vector<C> gram(n, C(0));
  for (std::size_t i = 0; i < rows; ++i) gram[i * cols + (i * 7) % cols] = C(2);
  for (int64_t i : c.lonely) {
    labels[std::size_t(i)] = 99;
    for (std::size_t j = 0; j < cols; ++j) gram[std::size_t(i) * cols + j] = C(0);
  }
  std::vector<T> multilabels(rows * std::size_t(c.classes), from_double<T>(0.5));
  for (int64_t i : c.negative) multilabels[std::size_t(i * c.classes + c.classes - 1)] = from_double<T>(-1);
  std::vector<bool> invalid(rows, c.column_bad != kNoBadRow);
  for (int64_t i : c.lonely) invalid[std::size_t(i)] = true;
  for (int64_t i : c.negative) invalid[std::size_t(i)] = true;

  GuardedArray<T> row_losses(rows, false), grad(n, true), gemm(c.gemm_input ? n : 0, false);
  GuardedArray<C> losses_to_sum(rows, false);
  GuardedArray<long long> reports(npairs::cuda::kBadRowSlots, false), column(1, false);
  column.data()[0] = c.column_bad;
  npairs::cuda::DeferredCheckArgs<T> args{};
  args.rows = c.rows;
  args.cols = c.cols;
  args.multilabels = c.gram ? multilabels.data() : nullptr;
  args.classes = c.classes;
  args.column_negative = c.gram ? column.data() : nullptr;
  args.reports = reports.data();
  args.row_losses = row_losses.data();
  args.row_losses_to_sum = losses_to_sum.data();
  args.grad_logits = grad.data();
  args.gemm_grad_logits = c.gemm_input ? gemm.data() : nullptr;
  const long long earlier_report = 1;  // an earlier call's, in the label slot
  run_under_every_schedule(
      [&] {
        for (std::size_t i = 0; i < rows; ++i) {
          row_losses.data()[i] = from_double<T>(double(i));
          losses_to_sum.data()[i] = C(i);
        }
        for (std::size_t k = 0; k < n; ++k) {
          grad.data()[k] = from_double<T>(double(k % 7));
          if (c.gemm_input) gemm.data()[k] = from_double<T>(double(k % 3));
        }
        for (int slot = 0; slot < npairs::cuda::kBadRowSlots; ++slot) reports.data()[slot] = kNoBadRow;
        reports.data()[npairs::cuda::kNoPositiveLabel] = earlier_report;
        if (c.gram)
          npairs::cuda::launch_deferred_check(args, npairs::cuda::GramTargets<C>{gram.data(), c.cols}, nullptr);
        else
          npairs::cuda::launch_deferred_check(
              args, npairs::cuda::LabelTargets<C, int32_t>{labels.data(), column_labels.data()}, nullptr);
      },
      [&] {
        std::vector<unsigned char> bytes = reports.copy_bytes();
        for (auto* part : {&row_losses, &grad}) {
          const std::vector<unsigned char> b = part->copy_bytes();
          bytes.insert(bytes.end(), b.begin(), b.end());
        }
        return bytes;
      });

  auto first_of = [&](const std::vector<int64_t>& found) {
    long long first = kNoBadRow;
    for (int64_t i : found) first = std::min<long long>(first, i);
    return first;
  };
  EXPECT_EQ(reports.data()[npairs::cuda::kNegativeMultilabel], first_of(c.negative));
  EXPECT_EQ(reports.data()[npairs::cuda::kNegativeColumnMultilabel], c.gram ? c.column_bad : kNoBadRow);
  EXPECT_EQ(reports.data()[npairs::cuda::kNoPositiveLabel],
            c.gram ? earlier_report : std::min(earlier_report, first_of(c.lonely)));
  EXPECT_EQ(reports.data()[npairs::cuda::kNoPositiveMultilabel], c.gram ? first_of(c.lonely) : kNoBadRow);
  int wrong = 0;
  for (std::size_t i = 0; i < rows; ++i) {
    const bool nan = invalid[i];
    auto expect = [&](bool ok, const std::string& what) {
      if (!ok && ++wrong <= 5) ADD_FAILURE() << what << " of row " << i << (nan ? " not NaN" : " changed");
    };
    expect(nan ? std::isnan(to_double(row_losses.data()[i])) : to_double(row_losses.data()[i]) == double(i),
           "loss");
    expect(nan ? std::isnan(double(losses_to_sum.data()[i])) : double(losses_to_sum.data()[i]) == double(i),
           "loss to sum");
    for (std::size_t j = 0; j < cols; ++j) {
      const std::size_t k = i * cols + j;
      expect(nan ? std::isnan(to_double(grad.data()[k])) : to_double(grad.data()[k]) == double(k % 7), "dS");
      if (c.gemm_input)
        expect(nan ? std::isnan(to_double(gemm.data()[k])) : to_double(gemm.data()[k]) == double(k % 3),
               "GEMM input");
    }
  }
  EXPECT_EQ(wrong, 0);
  EXPECT_TRUE(row_losses.guards_intact() && grad.guards_intact() && gemm.guards_intact() &&
              losses_to_sum.guards_intact() && reports.guards_intact());
}

TEST(EmulatedDeferredCheck, MatchesTheReference) {
  const long long none = npairs::cuda::kNoBadRow;
  const DeferredCase cases[] = {
      {"labels valid", false, 37, 41, 3, {}, {}, none, false},
      {"labels lonely", false, 37, 41, 3, {30, 4, 36}, {}, none, true},
      {"labels long rows", false, 5, 700, 3, {2}, {}, none, false},
      {"gram lonely and negative", true, 23, 300, 4, {9, 22}, {5, 9}, none, true},
      {"gram column bad", true, 6, 9, 2, {}, {}, 3, false},
      {"gram no rows, column bad", true, 0, 9, 2, {}, {}, 4, false},
      {"labels grid-stride", false, 4096 + 5, 5, 3, {4096 + 2}, {}, none, false},
  };
  for (const DeferredCase& c : cases) {
    check_deferred<float>(c);
    if (c.rows < 100) {
      check_deferred<double>(c);
      check_deferred<__half>(c);
      check_deferred<__nv_bfloat16>(c);
    }
  }
}

// ---- sum_squares_kernel (launch_sum_squares) ----

template <class T>
void check_sum_squares(int64_t count) {
  SCOPED_TRACE(std::string(type_name<T>()) + " count " + std::to_string(count));
  constexpr int kParts = npairs::cuda::kSumSquaresParts;
  std::mt19937_64 rng(static_cast<uint64_t>(count));
  std::normal_distribution<double> normal(0, 2);
  GuardedArray<T> x(std::size_t(count), true);
  for (std::size_t k = 0; k < x.size(); ++k) x.data()[k] = from_double<T>(normal(rng));
  const std::vector<unsigned char> x_bytes = x.copy_bytes();
  GuardedArray<double> partials(kParts, false);
  const auto launches = run_under_every_schedule(
      [&] {
        partials.fill_bytes(0xFF);
        npairs::cuda::launch_sum_squares(x.data(), count, partials.data(), nullptr);
      },
      [&] { return partials.copy_bytes(); });
  ASSERT_EQ(launches.size(), 1u);
  ASSERT_EQ(launches[0].grid, unsigned(kParts));
  // Part b holds the elements of the grid-stride share of block b.
  const int64_t threads = launches[0].threads, stride = int64_t(kParts) * threads;
  double total = 0, total_abs = 0;
  for (int b = 0; b < kParts; ++b) {
    double expected = 0;
    for (int64_t start = int64_t(b) * threads; start < count; start += stride)
      for (int64_t k = start; k < std::min(start + threads, count); ++k)
        expected += to_double(x.data()[k]) * to_double(x.data()[k]);
    EXPECT_NEAR(partials.data()[b], expected, 1e-13 * expected) << "part " << b;
    total += partials.data()[b];
    total_abs += expected;
  }
  EXPECT_NEAR(total, total_abs, 1e-12 * total_abs);
  EXPECT_TRUE(partials.guards_intact() && x.guards_intact());
  EXPECT_TRUE(x.copy_bytes() == x_bytes) << "input changed";
}

TEST(EmulatedSumSquares, MatchesTheReference) {
  check_sum_squares<float>(0);
  check_sum_squares<float>(1001);
  check_sum_squares<double>(77);
  check_sum_squares<__half>(5000);
}

// More elements than the grid's threads (512 blocks of 256): the slowest case
// to emulate, a test of its own.
TEST(EmulatedSumSquares, GridStride) { check_sum_squares<__nv_bfloat16>(512 * 256 + 333); }

// ---- scalar_loss_kernel (launch_scalar_loss) ----

template <class T>
void check_scalar_loss(int64_t rows, bool l2) {
  SCOPED_TRACE(std::string(type_name<T>()) + " rows " + std::to_string(rows) + (l2 ? " l2" : ""));
  using C = compute_t<T>;
  constexpr int kParts = npairs::cuda::kSumSquaresParts;
  std::mt19937_64 rng(uint64_t(rows * 3 + l2));
  std::uniform_real_distribution<double> uniform(0, 5);
  GuardedArray<C> row_losses(std::size_t(rows), false);
  for (std::size_t i = 0; i < row_losses.size(); ++i) row_losses.data()[i] = C(uniform(rng));
  GuardedArray<double> partials(2 * kParts, false);
  for (std::size_t k = 0; k < partials.size(); ++k) partials.data()[k] = uniform(rng);
  GuardedArray<T> loss(1, false);
  npairs::cuda::ScalarLossArgs<T> args{};
  args.row_losses = row_losses.data();
  args.rows = rows;
  args.reduction_factor = rows > 0 ? 1.0 / double(rows) : 0.0;
  args.l2_partials = l2 ? partials.data() : nullptr;
  args.l2_anchor_factor = 0.25 * 0.3 / 17;
  args.l2_positive_factor = 0.25 * 0.3 / 19;
  args.loss = loss.data();
  const auto launches = run_under_every_schedule(
      [&] {
        loss.fill_bytes(0xFF);
        npairs::cuda::launch_scalar_loss(args, nullptr);
      },
      [&] { return loss.copy_bytes(); });
  ASSERT_EQ(launches.size(), 1u);
  double sum = 0;
  for (int64_t i = 0; i < rows; ++i) sum += double(row_losses.data()[i]);
  double expected = args.reduction_factor * sum;
  if (l2) {
    double anchors = 0, positives = 0;
    for (int k = 0; k < kParts; ++k) {
      anchors += partials.data()[k];
      positives += partials.data()[kParts + k];
    }
    expected += args.l2_anchor_factor * anchors + args.l2_positive_factor * positives;
  }
  // One rounding to T of the double sum.
  EXPECT_EQ(to_double(loss.data()[0]), to_double(from_double<T>(expected)))
      << "within the double sum's error, which is far below T's rounding";
  EXPECT_TRUE(loss.guards_intact() && row_losses.guards_intact() && partials.guards_intact());
}

TEST(EmulatedScalarLoss, MatchesTheReference) {
  check_scalar_loss<float>(0, false);
  check_scalar_loss<float>(1, true);
  check_scalar_loss<__half>(1023, false);
  check_scalar_loss<__nv_bfloat16>(3001, true);  // more rows than the block's threads
}

TEST(EmulatedScalarLoss, DoubleMatchesTheReference) {
  // The compute type is double: compare to 1e-14 rather than bit for bit.
  const int64_t rows = 2049;
  constexpr int kParts = npairs::cuda::kSumSquaresParts;
  GuardedArray<double> row_losses(rows, false), partials(2 * kParts, false), loss(1, false);
  double sum = 0, l2 = 0;
  for (int64_t i = 0; i < rows; ++i) sum += row_losses.data()[i] = 1.0 / double(i + 3);
  for (int k = 0; k < 2 * kParts; ++k) l2 += partials.data()[k] = 0.5 + k % 7;
  npairs::cuda::ScalarLossArgs<double> args{};
  args.row_losses = row_losses.data();
  args.rows = rows;
  args.reduction_factor = 0.25;
  args.l2_partials = partials.data();
  args.l2_anchor_factor = args.l2_positive_factor = 0.125;
  args.loss = loss.data();
  run_under_every_schedule([&] { npairs::cuda::launch_scalar_loss(args, nullptr); },
                           [&] { return loss.copy_bytes(); });
  const double expected = 0.25 * sum + 0.125 * l2;
  EXPECT_NEAR(loss.data()[0], expected, 1e-14 * expected);
  EXPECT_TRUE(loss.guards_intact());
}

// ---- l2_gradient_kernel (launch_l2_gradient) ----

template <class T>
void check_l2_gradient(int64_t count, bool upstream, bool grid_stride) {
  SCOPED_TRACE(std::string(type_name<T>()) + " count " + std::to_string(count));
  std::mt19937_64 rng(uint64_t(count + upstream));
  std::normal_distribution<double> normal(0, 2);
  GuardedArray<T> x(std::size_t(count), true), grad(std::size_t(count), false), g(1, false);
  for (std::size_t k = 0; k < x.size(); ++k) x.data()[k] = from_double<T>(normal(rng));
  g.data()[0] = from_double<T>(-1.75);
  const std::vector<unsigned char> x_bytes = x.copy_bytes();
  const double factor = 0.5 * 0.3 / double(count + 1);
  const auto launches = run_under_every_schedule(
      [&] {
        grad.fill_bytes(0xFF);
        npairs::cuda::launch_l2_gradient(x.data(), count, factor, upstream ? g.data() : nullptr,
                                         grad.data(), nullptr);
      },
      [&] { return grad.copy_bytes(); });
  ASSERT_EQ(launches.size(), count > 0 ? 1u : 0u);
  if (grid_stride) {
    EXPECT_LT(int64_t(launches[0].grid) * launches[0].threads, count) << "no grid-stride round";
  }
  const double scale = factor * (upstream ? -1.75 : 1.0);
  // Relative rounding, and float16's subnormal spacing for tiny results.
  const double u = std::is_same_v<T, __half> ? 1e-3 : std::is_same_v<T, __nv_bfloat16> ? 8e-3 : 1e-6;
  const double floor = std::is_same_v<T, __half> ? std::ldexp(1.0, -24) : 0.0;
  int wrong = 0;
  for (int64_t k = 0; k < count; ++k) {
    const double expected = scale * to_double(x.data()[k]);
    if (!(std::fabs(to_double(grad.data()[k]) - expected) <= u * std::fabs(expected) + floor) && ++wrong <= 5)
      ADD_FAILURE() << "grad[" << k << "] = " << to_double(grad.data()[k]) << ", reference " << expected;
  }
  EXPECT_EQ(wrong, 0);
  EXPECT_TRUE(grad.guards_intact() && x.guards_intact());
  EXPECT_TRUE(x.copy_bytes() == x_bytes) << "input changed";
}

TEST(EmulatedL2Gradient, MatchesTheReference) {
  check_l2_gradient<float>(0, false, false);
  check_l2_gradient<float>(1000, true, false);
  check_l2_gradient<double>(33, false, false);
  check_l2_gradient<__half>(257, true, false);
  // More elements than the grid's threads (4096 blocks of 256).
  check_l2_gradient<__nv_bfloat16>(4096 * 256 + 99, true, true);
}

}  // namespace
