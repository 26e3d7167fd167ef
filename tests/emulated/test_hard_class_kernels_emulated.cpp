// The kernels of hard negative class mining (cuda/hard_class_scores.cu,
// hard_class_pick.cu, first_row_out_of_bound.cu, as they are now, compiled
// after cuda_shim.hpp) run on the CPU by the emulator, through their
// launchers, against plain loops written from the greedy rule of npairs.h.
// Each case runs under the three thread orders of emu::Schedule and checks:
// the results against the reference, bitwise the same under every order, no
// write outside the outputs (guard zones), the grid-stride loops going
// round where the case says so, and no emulator report. Every launch runs
// with an unrelated error left pending in the thread's last-error state,
// which the launchers must neither report nor clear (issue 10, item 2).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "cuda_shim.hpp"
#include "dtype.cuh"
#include "emulated_test_support.hpp"
#include "first_row_out_of_bound.cuh"
#include "hard_class_pick.cuh"
#include "hard_class_rule.hpp"
#include "hard_class_scores.cuh"
#include "targets.cuh"

namespace {

using emu::GuardedArray;
using emulated::run_under_every_schedule;
using npairs::HardClassCandidate;

// The header's key, written out again.
uint64_t mix(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}
uint64_t key(uint64_t seed, uint64_t step, uint64_t c) { return mix(mix(mix(seed) ^ step) ^ c); }

// True when candidate c is preferred to w (-1: none) by the rule, given
// their scores (NaN: selected): the higher score, then the smaller key, then
// the smaller index.
bool prefers(const std::vector<double>& scores, int64_t c, int64_t w, uint64_t seed, uint64_t step) {
  const double s = scores[std::size_t(c)];
  if (std::isnan(s)) return false;
  if (w < 0) return true;
  const double t = scores[std::size_t(w)];
  if (s != t) return s > t;
  const uint64_t kc = key(seed, step, uint64_t(c)), kw = key(seed, step, uint64_t(w));
  return kc != kw ? kc < kw : c < w;
}

// One step of the scores kernel: the running scores after the max, and the
// best candidate over all blocks equal to the reference's.
template <class T>
void check_scores(int64_t classes, bool first_step, int ties, bool grid_stride) {
  SCOPED_TRACE(std::string(sizeof(T) == 4 ? "f32" : "f64") + " classes " + std::to_string(classes) +
               (first_step ? " step 0" : " later step") + " ties " + std::to_string(ties));
  std::mt19937_64 rng(uint64_t(classes) * 7 + uint64_t(ties));
  std::uniform_int_distribution<int> small(-ties, ties);  // ties > 0: many equal values
  std::normal_distribution<double> normal;
  GuardedArray<T> scores(std::size_t(classes), true), products(std::size_t(classes), true);
  std::vector<T> scores_before(static_cast<std::size_t>(classes));
  for (int64_t c = 0; c < classes; ++c) {
    scores_before[std::size_t(c)] = T(ties > 0 ? small(rng) : normal(rng));
    if (c % 11 == 3) scores_before[std::size_t(c)] = std::numeric_limits<T>::quiet_NaN();  // selected
    products.data()[c] = T(ties > 0 ? small(rng) : normal(rng));
  }
  const std::vector<unsigned char> product_bytes = products.copy_bytes();
  const int blocks = npairs::cuda::hard_class_score_blocks(classes);
  GuardedArray<HardClassCandidate> block_best(std::size_t(blocks), false);
  const uint64_t seed = 99, step = first_step ? 0 : 5;
  const auto launches = run_under_every_schedule(
      [&] {
        std::copy(scores_before.begin(), scores_before.end(), scores.data());
        npairs::cuda::launch_hard_class_scores<T>(scores.data(), first_step ? nullptr : products.data(), classes,
                                                  seed, step, block_best.data(), nullptr);
      },
      [&] {
        std::vector<unsigned char> b = scores.copy_bytes();
        const std::vector<unsigned char> c = block_best.copy_bytes();
        b.insert(b.end(), c.begin(), c.end());
        return b;
      });
  std::vector<double> expected(static_cast<std::size_t>(classes));
  for (int64_t c = 0; c < classes; ++c) {
    const double before = double(scores_before[std::size_t(c)]);
    const double product = double(products.data()[c]);
    expected[std::size_t(c)] = first_step ? -INFINITY : std::isnan(before) ? before : std::max(before, product);
    const double got = double(scores.data()[c]);
    if (std::isnan(expected[std::size_t(c)]))
      EXPECT_TRUE(std::isnan(got)) << c;
    else
      EXPECT_EQ(got, expected[std::size_t(c)]) << c;
  }
  // Each block's candidate is the best of its grid-stride share.
  const int64_t stride = int64_t(blocks) * 256;
  int64_t overall = -1;
  HardClassCandidate reduced = npairs::no_hard_class();
  for (int b = 0; b < blocks; ++b) {
    int64_t w = -1;
    for (int64_t c0 = int64_t(b) * 256; c0 < classes; c0 += stride)
      for (int64_t c = c0; c < std::min(classes, c0 + 256); ++c)
        if (prefers(expected, c, w, seed, step)) w = c;
    EXPECT_EQ(block_best.data()[b].index, w) << "block " << b;
    if (w >= 0) {
      EXPECT_EQ(block_best.data()[b].key, key(seed, step, uint64_t(w)));
      if (prefers(expected, w, overall, seed, step)) overall = w;
    }
    if (npairs::hard_class_before(block_best.data()[b], reduced)) reduced = block_best.data()[b];
  }
  EXPECT_EQ(reduced.index, overall);
  EXPECT_TRUE(scores.guards_intact() && products.guards_intact() && block_best.guards_intact());
  EXPECT_TRUE(products.copy_bytes() == product_bytes) << "input changed";
  ASSERT_EQ(launches.size(), 1u);
  if (grid_stride) {
    EXPECT_LT(int64_t(launches[0].grid) * launches[0].threads, classes) << "no grid-stride round";
  }
}

TEST(EmulatedHardClassScores, MatchesTheReference) {
  check_scores<float>(1, true, 0, false);
  check_scores<float>(37, true, 0, false);
  check_scores<double>(37, false, 0, false);
  check_scores<float>(1000, false, 1, false);   // many exact ties
  check_scores<double>(777, false, 0, false);
  // More candidates than the grid's threads (1024 blocks of 256).
  check_scores<float>(1024 * 256 + 1234, false, 2, true);
}

template <class T>
void check_pick(int blocks, int64_t dim) {
  SCOPED_TRACE(std::string(sizeof(T) == 4 ? "f32" : "f64") + " blocks " + std::to_string(blocks) + " dim " +
               std::to_string(dim));
  std::mt19937_64 rng(uint64_t(blocks) * 13 + uint64_t(dim));
  const int64_t classes = 3 * int64_t(blocks) + 5;
  GuardedArray<HardClassCandidate> block_best(std::size_t(blocks), false);
  // Block candidates with equal scores (keys decide) and empty blocks.
  for (int b = 0; b < blocks; ++b) {
    HardClassCandidate c = npairs::no_hard_class();
    if (b % 7 != 6) {
      c.index = int64_t(rng() % uint64_t(classes));
      c.score = double(int(rng() % 3));
      c.key = rng();
    }
    block_best.data()[b] = c;
  }
  HardClassCandidate winner = npairs::no_hard_class();
  for (int b = 0; b < blocks; ++b) {
    const HardClassCandidate& c = block_best.data()[b];
    const bool real = c.index >= 0;
    if (!real) continue;
    if (winner.index < 0 || c.score > winner.score ||
        (c.score == winner.score && (c.key < winner.key || (c.key == winner.key && c.index < winner.index))))
      winner = c;
  }
  GuardedArray<T> scores(std::size_t(classes), true), embeddings(std::size_t(classes * dim), true),
      next_row(std::size_t(dim), true);
  for (std::size_t k = 0; k < embeddings.size(); ++k) embeddings.data()[k] = T(double(k) * 0.25);
  GuardedArray<int64_t> selected(4, false);
  const auto launches = run_under_every_schedule(
      [&] {
        for (int64_t c = 0; c < classes; ++c) scores.data()[c] = T(1);
        for (int k = 0; k < 4; ++k) selected.data()[k] = -5;
        npairs::cuda::launch_hard_class_pick<T>(block_best.data(), blocks, scores.data(), embeddings.data(), dim,
                                                next_row.data(), selected.data(), 2, nullptr);
      },
      [&] {
        std::vector<unsigned char> b = scores.copy_bytes();
        const std::vector<unsigned char> s = selected.copy_bytes(), r = next_row.copy_bytes();
        b.insert(b.end(), s.begin(), s.end());
        b.insert(b.end(), r.begin(), r.end());
        return b;
      });
  ASSERT_GE(winner.index, 0);
  EXPECT_EQ(selected.data()[2], winner.index);
  EXPECT_EQ(selected.data()[0], -5);
  EXPECT_EQ(selected.data()[3], -5);
  for (int64_t c = 0; c < classes; ++c) {
    if (c == winner.index)
      EXPECT_TRUE(std::isnan(double(scores.data()[c])));
    else
      EXPECT_EQ(double(scores.data()[c]), 1.0) << c;
  }
  for (int64_t k = 0; k < dim; ++k) EXPECT_EQ(next_row.data()[k], embeddings.data()[winner.index * dim + k]);
  EXPECT_TRUE(scores.guards_intact() && next_row.guards_intact() && selected.guards_intact() &&
              block_best.guards_intact());
  ASSERT_EQ(launches.size(), 1u);
}

TEST(EmulatedHardClassPick, MatchesTheReference) {
  check_pick<float>(1, 1);
  check_pick<double>(5, 3);
  check_pick<float>(300, 257);   // more blocks and more dims than threads
  check_pick<double>(1024, 600);
}

template <class T>
void check_out_of_bound(int64_t rows, int64_t cols, std::vector<int64_t> bad_rows, double bad_value) {
  SCOPED_TRACE(std::string(sizeof(T) == 4 ? "f32" : "f64") + " rows " + std::to_string(rows) + " bad " +
               std::to_string(bad_value));
  std::mt19937_64 rng(uint64_t(rows * 31 + cols));
  std::uniform_real_distribution<double> uniform(-3, 3);
  const double bound = 3.5;
  GuardedArray<T> matrix(std::size_t(rows * cols), true);
  for (std::size_t k = 0; k < matrix.size(); ++k) matrix.data()[k] = T(k % 9 == 0 ? bound : uniform(rng));
  for (int64_t row : bad_rows) matrix.data()[row * cols + int64_t(rng() % uint64_t(cols))] = T(bad_value);
  long long expected = npairs::cuda::kNoBadRow;
  for (int64_t k = 0; k < rows * cols; ++k)
    if (!(std::fabs(double(matrix.data()[k])) <= bound) && k / cols < expected) expected = k / cols;
  GuardedArray<long long> slot(1, false);
  run_under_every_schedule(
      [&] {
        slot.data()[0] = npairs::cuda::kNoBadRow;
        npairs::cuda::launch_first_row_out_of_bound(matrix.data(), rows, cols, bound, slot.data(), nullptr);
      },
      [&] { return slot.copy_bytes(); });
  EXPECT_EQ(slot.data()[0], expected);
  EXPECT_TRUE(slot.guards_intact() && matrix.guards_intact());
}

TEST(EmulatedFirstRowOutOfBound, MatchesTheReference) {
  check_out_of_bound<float>(37, 5, {}, 0);
  check_out_of_bound<float>(37, 5, {30, 11, 12}, NAN);
  check_out_of_bound<double>(300, 7, {299}, INFINITY);
  check_out_of_bound<double>(30, 7, {4, 20}, -3.6);
  check_out_of_bound<float>(4096 * 256 / 3 + 7, 3, {4096 * 256 / 3 + 2}, -INFINITY);
}

}  // namespace
