// The CUDA kernels of a symmetric call and of dL/dtau (SPEC section 5), as
// they are now, run on the CPU by the emulator of cuda_shim.hpp the way
// src/tiled_loss.cpp drives them through cuda/streamed_loss.cu: every tile's
// row and column statistics from one read (tile_symmetric_stats.cu; the row
// direction alone, tile_row_stats.cu) merged, row block after row block; the
// columns' losses and gradient coefficients (column_losses.cu); then every
// tile's dS of both directions and each row's moment sum_j dS_ij z_ij
// (tile_row_gradient.cu). Against a float64 reference written from SPEC
// section 5 with simple loops on the stored inputs, under the three thread
// orders of emu::Schedule, each case checks:
// - the rows' and the columns' final statistics (max, log-sum-exp, target
//   weight and target mean), the column losses and coefficients;
// - every dS element (row term + column term) and every row's moment;
//   without column coefficients (dL/dtau of a non-symmetric call) the row
//   term alone;
// - every output bitwise the same under every order;
// - guard zones around every array, inputs left alone, the statistics
//   kernel's grid-stride loop over sub-tiles going round where the case says
//   so.
// Cases: all four dtypes, labels (int32, int64) and Gram targets, square and
// rectangular, odd row blocks and column tiles, one-column tiles, tiles of
// several sub-tiles (kSymmetricSubRows x kSymmetricSubCols) with ragged
// edges, read in 16-byte vectors or element by element, a tile wide enough
// for a block per row (the block's moment sum), -inf logits (scattered, and
// rows whose part of a sub-tile is all -inf).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <exception>
#include <numeric>
#include <ostream>
#include <random>
#include <string>
#include <type_traits>
#include <vector>

// First: the CUDA keywords, launches and barriers the kernel sources need.
#include "cuda_shim.hpp"
#include "dtype.cuh"
#include "emulated_test_support.hpp"
#include "column_losses_emulated.inc"
#include "tile_row_gradient_emulated.inc"
#include "tile_row_stats_emulated.inc"
#include "tile_symmetric_stats_emulated.inc"

namespace {

using namespace emulated;
using npairs::LogitScale;
using npairs::RowGradCoeffs;
using npairs::RowStats;
using npairs::cuda::DeviceLimits;


struct Case {
  std::string name;
  Dtype dtype = Dtype::f32;
  std::vector<int64_t> blocks;  // row block heights, in order
  std::vector<int64_t> tiles;   // column tile widths, in order
  Targets targets = Targets::labels_i32;
  bool symmetric = true;        // false: the row direction and its moment only (dL/dtau)
  bool in_place = false;        // dS written over the logits
  bool minus_infinity = false;  // some logits without a target weight are -inf
  bool minus_infinity_rows = false;  // every fifth row -inf wherever it has no target weight
  bool upstream = false;        // a scalar grad_loss g
  int multiprocessors = 2;
  bool sub_tiles_stride = false;  // a statistics launch goes round its grid
};

int64_t vector_width(Dtype d) { return npairs::cuda::kVectorBytes / (d == Dtype::f64 ? 8 : d == Dtype::f32 ? 4 : 2); }

std::string case_name(const Case& c) {
  static const char* const dtypes[] = {"f32", "f64", "f16", "bf16"};
  static const char* const targets[] = {"i32", "i64", "gram"};
  std::string n = std::string(dtypes[int(c.dtype)]) + (c.symmetric ? "_sym" : "_rows") + "_blocks";
  for (int64_t h : c.blocks) n += "_" + std::to_string(h);
  n += "_tiles";
  for (int64_t w : c.tiles) n += "_" + std::to_string(w);
  n += std::string("_") + targets[int(c.targets)];
  if (c.in_place) n += "_inplace";
  if (c.minus_infinity) n += "_neginf";
  if (c.minus_infinity_rows) n += "_neginfrows";
  if (c.upstream) n += "_g";
  return n + "_mp" + std::to_string(c.multiprocessors);
}

std::vector<Case> make_cases() {
  std::vector<Case> cases;
  auto add = [&cases](Case c) {
    c.name = case_name(c);
    cases.push_back(c);
  };
  for (Dtype dtype : {Dtype::f32, Dtype::f64, Dtype::f16, Dtype::bf16}) {
    Case a;  // rectangular, odd blocks and tiles, one-column tile, several column groups a block
    a.dtype = dtype;
    a.blocks = {16, 21};
    a.tiles = {40, 1, 97};
    a.upstream = true;
    a.multiprocessors = 1;
    add(a);

    Case b = a;  // Gram targets, -inf logits, in place, one block
    b.blocks = {29};
    b.tiles = {17, 12};
    b.targets = Targets::gram;
    b.minus_infinity = true;
    b.in_place = true;
    b.upstream = false;
    b.multiprocessors = 2;
    add(b);

    Case c = a;  // wide int64 labels, square, the row direction only
    c.blocks = {11, 11, 1};
    c.tiles = {23};
    c.targets = Targets::labels_i64;
    c.symmetric = false;
    add(c);

    Case d;  // a tile wide enough for a block per row: the block's moment sum
    d.dtype = dtype;
    d.blocks = {3, 2};
    d.tiles = {npairs::cuda::kStreamedWarpVectors * vector_width(dtype) + 5, 7};
    d.targets = Targets::gram;
    d.upstream = true;
    add(d);

    // Several sub-tiles with ragged edges, read element by element, the grid
    // going round; rows whose part of a sub-tile is all -inf (no positive there).
    Case e;
    e.dtype = dtype;
    e.blocks = {133, 7};
    e.tiles = {517, 3};
    e.upstream = true;
    e.multiprocessors = 1;
    e.sub_tiles_stride = true;
    e.minus_infinity_rows = true;
    add(e);

    Case f = e;  // the same in 16-byte vectors (every tile's rows whole vectors), Gram, in place, -inf
    f.blocks = {150};
    f.tiles = {264, 8};
    f.targets = Targets::gram;
    f.in_place = true;
    f.minus_infinity = true;
    f.minus_infinity_rows = false;
    f.upstream = false;
    f.multiprocessors = 2;
    f.sub_tiles_stride = false;
    add(f);
  }
  return cases;
}

template <class T, class Label, bool kGram>
void run_case(const Case& c, TypeTag<T>, TypeTag<Label>, std::bool_constant<kGram>) {
  using C = compute_t<T>;
  using TargetsT = TargetsOf<C, Label, kGram>;
  std::vector<int64_t> row_begins(c.blocks.size() + 1, 0), col_begins(c.tiles.size() + 1, 0);
  std::partial_sum(c.blocks.begin(), c.blocks.end(), row_begins.begin() + 1);
  std::partial_sum(c.tiles.begin(), c.tiles.end(), col_begins.begin() + 1);
  const std::size_t rows = std::size_t(row_begins.back()), cols = std::size_t(col_begins.back());
  const std::size_t n = rows * cols;
  std::mt19937_64 rng(fnv1a(c.name));
  std::uniform_real_distribution<double> uniform(0, 1);
  std::normal_distribution<double> normal(0, 3);

  // Targets: every row and every column has a positive.
  std::vector<Label> labels(rows), column_labels(cols);
  const Label step = sizeof(Label) == 8 ? Label(1) << 40 : Label(100003);
  for (std::size_t i = 0; i < rows; ++i) labels[i] = Label(i % 4) * step + 7;
  for (std::size_t j = 0; j < cols; ++j) column_labels[j] = labels[(j * 7 + 3) % rows];
  for (std::size_t i = 0; i < std::min(rows, cols); ++i) column_labels[i] = labels[i];
  std::vector<C> gram;
  if (kGram) {
    gram.assign(n, C(0));
    for (std::size_t k = 0; k < n; ++k)
      if (uniform(rng) < 0.2) gram[k] = C(int(uniform(rng) * 4));
    for (std::size_t i = 0; i < rows; ++i) gram[i * cols + rng() % cols] += C(1.5);
    for (std::size_t j = 0; j < cols; ++j) gram[(rng() % rows) * cols + j] += C(0.5);
  }
  auto q = [&](std::size_t i, std::size_t j) -> double {
    return kGram ? double(gram[i * cols + j]) : (labels[i] == column_labels[j] ? 1 : 0);
  };

  GuardedArray<T> matrix(n, false), grad_matrix(c.in_place ? 0 : n, false);
  GuardedArray<C> gram_tile(kGram ? n : 0, false);
  GuardedArray<RowStats<C>> running(rows, false), columns(cols, false);
  const int64_t largest_partials = npairs::cuda::tile_symmetric_stats_partials(
      *std::max_element(c.blocks.begin(), c.blocks.end()), *std::max_element(c.tiles.begin(), c.tiles.end()));
  GuardedArray<RowStats<C>> partials(std::size_t(largest_partials), false);
  GuardedArray<C> column_losses(cols, false), moments(rows, false);
  GuardedArray<RowGradCoeffs<C>> coeffs(cols, false);
  GuardedArray<T> upstream(1, false);
  const LogitScale<C> logit_scale{C(2.5), C(1 / 0.75)};
  const C grad_factor = C(0.37), column_grad_factor = C(0.29);
  for (std::size_t i = 0; i < rows; ++i)
    for (std::size_t j = 0; j < cols; ++j) {
      double x = normal(rng);
      if (c.minus_infinity && q(i, j) == 0 && uniform(rng) < 0.2) x = -INFINITY;
      if (c.minus_infinity_rows && i % 5 == 0 && q(i, j) == 0) x = -INFINITY;
      matrix.data()[i * cols + j] = from_double<T>(x);
    }
  upstream.data()[0] = from_double<T>(-1.75);
  const std::vector<unsigned char> logits_bytes = matrix.copy_bytes();

  // The float64 reference (SPEC section 5) on the stored values, z = S hi lo.
  const double z_scale = double(logit_scale.hi) * double(logit_scale.lo);
  auto z = [&](std::size_t i, std::size_t j) { return to_double(matrix.data()[i * cols + j]) * z_scale; };
  // Statistics over the elements (i, j) that `at(k)` gives for k < count.
  auto reference = [&](std::size_t count, auto at) {
    RefStats r{-INFINITY, 0, 0, 0, 1};
    double sum_exp = 0, target = 0;
    for (std::size_t k = 0; k < count; ++k) {
      const auto [i, j] = at(k);
      r.max = std::max(r.max, z(i, j));
      if (std::isfinite(z(i, j))) r.scale = std::max(r.scale, 1 + std::fabs(z(i, j)));
    }
    for (std::size_t k = 0; k < count; ++k) {
      const auto [i, j] = at(k);
      sum_exp += std::exp(z(i, j) - r.max);
      r.pos += q(i, j);
      if (q(i, j) != 0) target += q(i, j) * z(i, j);
    }
    r.lse = r.max + std::log(sum_exp);
    r.mean = target / r.pos;
    return r;
  };
  std::vector<RefStats> ref_rows(rows), ref_columns(cols);
  for (std::size_t i = 0; i < rows; ++i)
    ref_rows[i] = reference(cols, [&](std::size_t k) { return std::pair{i, k}; });
  for (std::size_t j = 0; j < cols; ++j)
    ref_columns[j] = reference(rows, [&](std::size_t k) { return std::pair{k, j}; });
  const double g = c.upstream ? to_double(upstream.data()[0]) : 1.0;
  // dS_ij = grad_factor g (softmax_i - T_i)_j + column_grad_factor g (softmax'_j - T'_j)_i;
  // moment_i = sum_j dS_ij z_ij (a term with dS_ij = 0 and z_ij = -inf adds
  // nothing). Symmetric: the rows' sum only, the total -dL/dtau (each row's
  // share of the column direction is taken about its column's max, which
  // cancels in the sum over the rows only).
  std::vector<double> ref_grad(n, 0), ref_moment(rows, 0), moment_scale(rows, 0);
  for (std::size_t i = 0; i < rows; ++i)
    for (std::size_t j = 0; j < cols; ++j) {
      double ds = grad_factor * g * (std::exp(z(i, j) - ref_rows[i].lse) - q(i, j) / ref_rows[i].pos);
      if (c.symmetric)
        ds += column_grad_factor * g * (std::exp(z(i, j) - ref_columns[j].lse) - q(i, j) / ref_columns[j].pos);
      ref_grad[i * cols + j] = ds;
      if (ds != 0) {
        ref_moment[i] += ds * z(i, j);
        moment_scale[i] += std::fabs(ds) * (std::fabs(z(i, j)) + ref_rows[i].scale + ref_columns[j].scale);
      }
    }

  const DeviceLimits limits{c.multiprocessors, 48 * 1024};
  const double tolerance = compute_tolerance<T>(), u = unit_roundoff<T>();
  // The final statistics of each row or column (`what`) against the
  // reference's, appended to `outputs`.
  auto check_stats = [&](const std::string& what, GuardedArray<RowStats<C>>& got,
                         const std::vector<RefStats>& ref, std::vector<unsigned char>& outputs) {
    FailureLog errors(what + " statistics off the reference");
    for (std::size_t k = 0; k < ref.size(); ++k) {
      const RowStats<C> s = got.data()[k];
      const RefStats& r = ref[k];
      const double tol = tolerance * r.scale;
      const double got_lse = double(s.max) + std::log(double(s.sum_exp));
      if (!(near(double(s.max), r.max, tol) && near(got_lse, r.lse, tol) &&
            near(double(s.pos), r.pos, tolerance * r.pos) &&
            near(double(s.max) - double(s.pos_gap) / double(s.pos), r.mean, tol)))
        errors.add(what + " " + std::to_string(k) + ": max " + std::to_string(double(s.max)) + " lse " +
                   std::to_string(got_lse) + " pos " + std::to_string(double(s.pos)) + "; reference max " +
                   std::to_string(r.max) + " lse " + std::to_string(r.lse) + " pos " + std::to_string(r.pos));
    }
    const std::vector<unsigned char> stats = got.copy_bytes();
    outputs.insert(outputs.end(), stats.begin(), stats.end());
  };
  std::vector<unsigned char> first_outputs;
  for (emu::Schedule schedule : kSchedules) {
    SCOPED_TRACE("schedule " + std::to_string(int(schedule)));
    emu::schedule = schedule;
    matrix.assign_bytes(logits_bytes);
    grad_matrix.fill_bytes(kPoisonByte);
    running.fill_bytes(kPoisonByte);
    columns.fill_bytes(kPoisonByte);  // NaN: a first block that does not reset shows
    partials.fill_bytes(kPoisonByte);
    column_losses.fill_bytes(kPoisonByte);
    coeffs.fill_bytes(kPoisonByte);
    std::fill(moments.data(), moments.data() + rows, C(0));
    std::vector<unsigned char> outputs;
    int sub_tiles_strided = 0;
    auto launched = [&](const char* what) {
      for (const std::string& e : emu::errors) ADD_FAILURE() << what << ": emulator: " << e;
      emu::errors.clear();
    };
    auto check_guards = [&] {
      EXPECT_TRUE(matrix.guards_intact() && grad_matrix.guards_intact() && gram_tile.guards_intact() &&
                  running.guards_intact() && columns.guards_intact() && partials.guards_intact() &&
                  column_losses.guards_intact() && coeffs.guards_intact() && moments.guards_intact())
          << "a write next to an array";
    };
    // Tile (b, t)'s targets (the tile's overlaps copied out).
    auto tile_targets = [&](std::size_t b, std::size_t t) {
      const std::size_t r0 = std::size_t(row_begins[b]), c0 = std::size_t(col_begins[t]);
      const std::size_t height = std::size_t(c.blocks[b]), width = std::size_t(c.tiles[t]);
      if constexpr (kGram) {
        for (std::size_t i = 0; i < height; ++i)
          for (std::size_t j = 0; j < width; ++j) gram_tile.data()[i * width + j] = gram[(r0 + i) * cols + c0 + j];
        return TargetsT{gram_tile.data(), int64_t(width)};
      } else {
        return TargetsT{labels.data() + r0, column_labels.data() + c0};
      }
    };
    // `args` of a tile kernel with tile (b, t)'s logits, shape and scale set.
    auto tile_args = [&](auto args, std::size_t b, std::size_t t) {
      args.logits = matrix.data() + std::size_t(row_begins[b]) * cols + std::size_t(col_begins[t]);
      args.ld = int64_t(cols);
      args.logit_scale = logit_scale;
      args.rows = c.blocks[b];
      args.cols = c.tiles[t];
      return args;
    };

    // The statistics sweep: each block's tiles, rows and (symmetric) columns.
    for (std::size_t b = 0; b < c.blocks.size(); ++b) {
      for (std::size_t t = 0; t < c.tiles.size(); ++t) {
        SCOPED_TRACE("statistics of block " + std::to_string(b) + " tile " + std::to_string(t));
        const TargetsT targets = tile_targets(b, t);
        emu::launches.clear();
        if (c.symmetric) {
          auto args = tile_args(npairs::cuda::TileSymmetricStatsArgs<T>{}, b, t);
          args.first_rows = t == 0;
          args.first_columns = b == 0;
          args.running = running.data() + row_begins[b];
          args.column_running = columns.data() + col_begins[t];
          args.partials = partials.data();
          try {
            npairs::cuda::launch_tile_symmetric_stats<T>(args, targets, limits, nullptr);
          } catch (const std::exception& e) {
            ADD_FAILURE() << "launch_tile_symmetric_stats threw: " << e.what();
          }
          launched("tile_symmetric_stats");
          ASSERT_EQ(emu::launches.size(), 2u) << "the partials, then their merge";
          EXPECT_EQ(emu::launches[0].kernel,
                    reinterpret_cast<void (*)()>(&npairs::cuda::tile_symmetric_partials_kernel<T, TargetsT>));
          EXPECT_EQ(emu::launches[1].kernel,
                    reinterpret_cast<void (*)()>(&npairs::cuda::tile_symmetric_merge_kernel<T>));
          using npairs::cuda::kSymmetricSubCols, npairs::cuda::kSymmetricSubRows, npairs::ceil_div;
          const int64_t sub_tiles =
              ceil_div(c.blocks[b], kSymmetricSubRows) * ceil_div(c.tiles[t], kSymmetricSubCols);
          EXPECT_LE(int64_t(emu::launches[0].grid), sub_tiles);
          if (int64_t(emu::launches[0].grid) < sub_tiles) ++sub_tiles_strided;
        } else {
          auto args = tile_args(npairs::cuda::TileRowStatsArgs<T>{}, b, t);
          args.first = t == 0;
          args.running = running.data() + row_begins[b];
          npairs::cuda::launch_tile_row_stats<T>(args, targets, limits, nullptr);
          launched("tile_row_stats");
        }
        check_guards();
        EXPECT_TRUE(matrix.copy_bytes() == logits_bytes) << "logits changed";
      }
    }
    if (c.sub_tiles_stride) {
      EXPECT_GT(sub_tiles_strided, 0) << "no statistics launch went round its grid";
    }
    check_stats("row", running, ref_rows, outputs);

    if (c.symmetric) {
      check_stats("column", columns, ref_columns, outputs);

      // The column losses and coefficients; a thread per column, so each
      // thread is its own group for the emulator's statistics hook.
      npairs::cuda::ColumnLossesArgs<T> args{};
      args.columns = columns.data();
      args.cols = int64_t(cols);
      args.grad_loss = c.upstream ? upstream.data() : nullptr;
      args.column_losses = column_losses.data();
      args.coeffs = coeffs.data();
      emu::launches.clear();
      emu::row_group_threads = 1;
      emu::rows_finished = 0;
      npairs::cuda::launch_column_losses<T>(args, limits, nullptr);
      launched("column_losses");
      ASSERT_EQ(emu::launches.size(), 1u);
      EXPECT_EQ(emu::launches[0].kernel, reinterpret_cast<void (*)()>(&npairs::cuda::column_losses_kernel<T>));
      EXPECT_EQ(emu::rows_finished, int64_t(cols)) << "columns whose coefficients were computed";
      check_guards();
      FailureLog loss_errors("column losses or coefficients off the reference");
      for (std::size_t j = 0; j < cols; ++j) {
        const RefStats& r = ref_columns[j];
        const RowGradCoeffs<C> k = coeffs.data()[j];
        const double loss = double(column_losses.data()[j]);
        const double sum_exp = std::exp(r.lse - r.max);
        if (!(near(loss, r.lse - r.mean, tolerance * r.scale) && double(k.max) == double(columns.data()[j].max) &&
              near(double(k.inv_sum_exp), 1 / sum_exp, tolerance / sum_exp) &&
              near(double(k.inv_pos), 1 / r.pos, tolerance / r.pos) && double(k.scale) == double(C(g))))
          loss_errors.add("column " + std::to_string(j) + ": loss " + std::to_string(loss) + ", reference " +
                          std::to_string(r.lse - r.mean));
      }
      const std::vector<unsigned char> losses = column_losses.copy_bytes(), k = coeffs.copy_bytes();
      outputs.insert(outputs.end(), losses.begin(), losses.end());
      outputs.insert(outputs.end(), k.begin(), k.end());
    }

    // The gradient sweep with the final statistics of both directions.
    for (std::size_t b = 0; b < c.blocks.size(); ++b) {
      for (std::size_t t = 0; t < c.tiles.size(); ++t) {
        SCOPED_TRACE("gradient of block " + std::to_string(b) + " tile " + std::to_string(t));
        const TargetsT targets = tile_targets(b, t);
        const std::size_t offset = std::size_t(row_begins[b]) * cols + std::size_t(col_begins[t]);
        auto args = tile_args(npairs::cuda::TileRowGradientArgs<T>{}, b, t);
        args.running = running.data() + row_begins[b];
        args.grad_loss = c.upstream ? upstream.data() : nullptr;
        args.grad_factor = grad_factor;
        args.grad = (c.in_place ? matrix.data() : grad_matrix.data()) + offset;
        args.column_coeffs = c.symmetric ? coeffs.data() + col_begins[t] : nullptr;
        args.column_grad_factor = column_grad_factor;
        args.moments = moments.data() + row_begins[b];
        const npairs::cuda::StreamedRows plan = npairs::cuda::streamed_rows(c.blocks[b], c.tiles[t], sizeof(T));
        emu::launches.clear();
        emu::rows_finished = 0;
        emu::row_group_threads = plan.block_per_row ? unsigned(plan.threads) : emu::kWarpSize;
        npairs::cuda::launch_tile_row_gradient<T>(args, targets, limits, nullptr);
        launched("tile_row_gradient");
        ASSERT_EQ(emu::launches.size(), 1u);
        EXPECT_EQ(emu::launches[0].threads, unsigned(plan.threads));
        EXPECT_EQ(emu::rows_finished, c.blocks[b]) << "rows a group finished (each row once)";
        check_guards();
      }
    }
    const T* grad = c.in_place ? matrix.data() : grad_matrix.data();
    if (!c.in_place) {
      EXPECT_TRUE(matrix.copy_bytes() == logits_bytes) << "logits changed";
    }
    {
      FailureLog errors("dS off the reference");
      for (std::size_t i = 0; i < rows; ++i)
        for (std::size_t j = 0; j < cols; ++j) {
          const double r = ref_grad[i * cols + j], got = to_double(grad[i * cols + j]);
          const double tol = tolerance * (std::fabs(grad_factor) + std::fabs(column_grad_factor)) * std::fabs(g) +
                             subnormal_floor<T>();
          if (!(std::fabs(got - r) <= tol + 2 * u * std::fabs(r)))
            errors.add("dS[" + std::to_string(i) + "][" + std::to_string(j) + "] = " + std::to_string(got) +
                       ", reference " + std::to_string(r));
        }
      FailureLog moment_errors("moments off the reference");
      double total = 0, ref_total = 0, total_scale = 0;
      for (std::size_t i = 0; i < rows; ++i) {
        const double got = double(moments.data()[i]);
        total += got;
        ref_total += ref_moment[i];
        total_scale += moment_scale[i];
        if (!c.symmetric && !(std::fabs(got - ref_moment[i]) <= tolerance * moment_scale[i]))
          moment_errors.add("row " + std::to_string(i) + ": " + std::to_string(got) + ", reference " +
                            std::to_string(ref_moment[i]));
      }
      if (!(std::fabs(total - ref_total) <= tolerance * total_scale))
        moment_errors.add("sum over the rows: " + std::to_string(total) + ", reference " + std::to_string(ref_total));
      const auto* bytes = reinterpret_cast<const unsigned char*>(grad);
      outputs.insert(outputs.end(), bytes, bytes + n * sizeof(T));
      const std::vector<unsigned char> m = moments.copy_bytes();
      outputs.insert(outputs.end(), m.begin(), m.end());
    }
    expect_same_as_first_schedule(schedule, outputs, first_outputs);
  }
}

void PrintTo(const Case& c, std::ostream* os) { *os << c.name; }

class EmulatedSymmetricKernels : public ::testing::TestWithParam<Case> {};

TEST_P(EmulatedSymmetricKernels, MatchTheReference) {
  const Case& c = GetParam();
  with_case_types(c.dtype, c.targets, [&c](auto... types) { run_case(c, types...); });
}

INSTANTIATE_TEST_SUITE_P(Cases, EmulatedSymmetricKernels, ::testing::ValuesIn(make_cases()), CaseName());

}  // namespace
