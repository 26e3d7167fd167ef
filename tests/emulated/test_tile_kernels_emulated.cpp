// The CUDA kernels for tiles of columns (cuda/tile_row_stats.cu,
// tile_row_losses.cu, tile_row_gradient.cu, as they are now) run on the CPU
// by the emulator of cuda_shim.hpp, the way src/tiled_loss.cpp drives them
// for one block of rows: the statistics of every tile merged in order into
// the running ones (the first tile resetting them), the row losses from the
// final statistics, then the gradient of every tile. Against a float64
// reference written from SPEC section 1 on the stored inputs, each case runs
// under the three thread orders of emu::Schedule and checks:
// - after each tile, the running statistics against those of the columns so
//   far (max, log-sum-exp, target weight and target mean); the losses and
//   every dS element against the whole rows;
// - every output bitwise the same under every order (a race would differ);
// - the launch (warp or block per row, as row_group.cuh plans it) and its
//   grid-stride loop going round where the case says so;
// - every thread of a row's group used the same statistics for its gradient,
//   each row once;
// - guard zones around every array, inputs left alone, nothing written
//   outside the tile (ld > cols), and with Tracked elements every dS and
//   row_losses element written exactly once and no logit read after its dS
//   overwrote it (in place);
// - no misaligned 16-byte vector access (-fsanitize=alignment).
// Cases: all four dtypes, labels (int32, int64) and Gram targets, a view of
// the whole logits matrix (dS in place or in another matrix) or a scratch
// tile (with and without padding), aligned and vectorized or not, weights,
// upstream gradients, -inf and huge logits, single-column tiles.
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
#include "tile_row_gradient_emulated.inc"
#include "tile_row_losses_emulated.inc"
#include "tile_row_stats_emulated.inc"

namespace {

using namespace emulated;
using npairs::LogitScale;
using npairs::RowStats;
using npairs::cuda::DeviceLimits;
using npairs::cuda::StreamedRows;

enum class Values { normal, minus_infinity, huge };  // huge: |z| ~ 1e30
enum class Upstream { ones, scalar, per_row };       // grad_loss
// Where a tile's logits are (src/cpu_backend.cpp's logits_of and grad_of):
// a view of the whole R x M matrix (ld = M: a similarity input, or
// embeddings whose dS the caller wants) with dS in place or in a second
// matrix; or a scratch tile of ld = cols + pad, dS in place.
enum class Layout { matrix_in_place, matrix_separate, tile_buffer };

struct Case {
  std::string name;
  Dtype dtype = Dtype::f32;
  bool tracked = false;
  int64_t rows = 1;
  std::vector<int64_t> tiles;  // widths, in order
  Layout layout = Layout::matrix_in_place;
  int64_t pad = 0;  // tile_buffer: ld = cols + pad
  Targets targets = Targets::labels_i32;
  bool misaligned = false;  // arrays one element past 16-byte alignment
  bool weights = false;
  Upstream upstream = Upstream::ones;
  Values values = Values::normal;
  int multiprocessors = 2;
  bool tiles_stride = true;    // some stats and gradient launches go round their grid twice
  bool losses_stride = false;  // the losses launch does
};

std::size_t value_size(Dtype d) { return d == Dtype::f64 ? 8 : d == Dtype::f32 ? 4 : 2; }
int64_t vector_width(Dtype d) { return npairs::cuda::kVectorBytes / int64_t(value_size(d)); }

std::string case_name(const Case& c) {
  static const char* const dtypes[] = {"f32", "f64", "f16", "bf16"};
  static const char* const targets[] = {"i32", "i64", "gram"};
  static const char* const layouts[] = {"matrix", "separate", "buffer"};
  std::string n = std::string(dtypes[int(c.dtype)]) + (c.tracked ? "tracked" : "") + "_" +
                  layouts[int(c.layout)] + (c.pad ? "pad" + std::to_string(c.pad) : "") + "_R" +
                  std::to_string(c.rows) + "_tiles";
  for (int64_t w : c.tiles) n += "_" + std::to_string(w);
  n += std::string("_") + targets[int(c.targets)];
  if (c.misaligned) n += "_misaligned";
  if (c.weights) n += "_weights";
  if (c.upstream == Upstream::scalar) n += "_gScalar";
  if (c.upstream == Upstream::per_row) n += "_gRow";
  if (c.values == Values::minus_infinity) n += "_neginf";
  if (c.values == Values::huge) n += "_huge";
  n += "_mp" + std::to_string(c.multiprocessors);
  return n;
}

// Per dtype: warp-per-row tiles (odd widths, one column, whole vectors),
// block-per-row tiles (above row_group.cuh's switch) mixed with warp ones,
// each layout and target kind, single-column tiles, many rows.
std::vector<Case> make_cases() {
  std::vector<Case> cases;
  auto add = [&cases](Case c) {
    c.name = case_name(c);
    cases.push_back(c);
  };
  for (Dtype dtype : {Dtype::f32, Dtype::f64, Dtype::f16, Dtype::bf16}) {
    const int64_t v = vector_width(dtype);
    // The widest tile a warp per row covers.
    const int64_t warp_max = npairs::cuda::kStreamedWarpVectors * v;
    Case base;
    base.dtype = dtype;
    base.rows = 37;  // warps: 32 rows a round on 2 multiprocessors

    Case a = base;  // odd widths, misaligned: element by element
    a.tiles = {64, 77, 1, 61};
    a.misaligned = true;
    a.weights = true;
    a.upstream = Upstream::per_row;
    add(a);

    Case b = base;  // whole vectors, aligned: vectorized; dS in another matrix
    b.tracked = true;
    b.tiles = {16 * v, 8 * v, 3 * v};
    b.layout = Layout::matrix_separate;
    b.targets = Targets::labels_i64;
    b.upstream = Upstream::scalar;
    b.multiprocessors = 3;
    b.rows = 53;
    add(b);

    Case c = base;  // scratch tiles with padding, Gram targets, -inf logits
    c.tracked = true;
    c.tiles = {40, 33, 50};
    c.layout = Layout::tile_buffer;
    c.pad = 3;
    c.targets = Targets::gram;
    c.values = Values::minus_infinity;
    c.weights = true;
    add(c);

    Case d = base;  // scratch tiles of whole vectors: vectorized in place
    d.tracked = true;
    d.tiles = {4 * v, 7 * v};
    d.layout = Layout::tile_buffer;
    d.targets = Targets::labels_i32;
    d.upstream = Upstream::per_row;
    add(d);

    Case e;  // block per row for the wide tiles, a warp for the narrow one
    e.dtype = dtype;
    e.rows = 6;  // blocks: 4 rows a round on 2 multiprocessors
    e.tiles = {warp_max + 1, 37, warp_max + 2 * v};
    e.targets = Targets::labels_i32;
    e.weights = true;
    e.upstream = Upstream::per_row;
    e.misaligned = true;
    add(e);

    Case f = e;  // block per row, vectorized, Gram targets, in scratch
    f.tracked = true;
    f.tiles = {warp_max + 3 * v, 2 * warp_max};
    f.layout = Layout::tile_buffer;
    f.targets = Targets::gram;
    f.misaligned = false;
    f.values = Values::minus_infinity;
    f.upstream = Upstream::scalar;
    add(f);

    Case g;  // single columns, Gram targets: rows whose first columns hold no positive
    g.dtype = dtype;
    g.tracked = true;
    g.rows = 37;
    g.tiles = {1, 1, 1, 1, 1, 1, 1};
    g.targets = Targets::gram;
    g.values = Values::minus_infinity;
    add(g);

    Case h;  // many rows: the losses' grid goes round too
    h.dtype = dtype;
    h.tracked = true;
    h.rows = 600;
    h.multiprocessors = 1;
    h.tiles = {5, 4};
    h.weights = true;
    h.losses_stride = true;
    add(h);

    if (dtype == Dtype::f32 || dtype == Dtype::f64) {
      Case huge = base;
      huge.tiles = {50, 50, 23};
      huge.values = Values::huge;
      huge.weights = true;
      huge.layout = Layout::matrix_separate;
      add(huge);
    }
  }
  return cases;
}

template <class T, class Label, bool kGram>
void run_case(const Case& c, TypeTag<T>, TypeTag<Label>, std::bool_constant<kGram>) {
  using C = compute_t<T>;
  using TargetsT = TargetsOf<C, Label, kGram>;
  constexpr bool kTracked = !std::is_same_v<T, typename Stored<T>::type>;
  const std::size_t rows = std::size_t(c.rows);
  std::vector<int64_t> begins(c.tiles.size() + 1, 0);
  std::partial_sum(c.tiles.begin(), c.tiles.end(), begins.begin() + 1);
  const std::size_t cols = std::size_t(begins.back()), n = rows * cols;
  const std::size_t widest = std::size_t(*std::max_element(c.tiles.begin(), c.tiles.end()));
  std::mt19937_64 rng(fnv1a(c.name));
  std::uniform_real_distribution<double> uniform(0, 1);
  std::normal_distribution<double> normal(0, 3);

  // Targets: every row has a positive column; with Gram targets in the -inf
  // cases, the first half of the rows none in the first tile.
  std::vector<Label> column_labels(cols), labels(rows);
  const Label label_step = sizeof(Label) == 8 ? Label(1) << 40 : Label(100003);
  for (Label& l : column_labels) l = Label(rng() % 5) * label_step + 3;
  for (Label& l : labels) l = column_labels[rng() % cols];
  std::vector<C> gram;
  if (kGram) {
    gram.assign(n, C(0));
    for (std::size_t i = 0; i < rows; ++i) {
      const std::size_t skip = c.values == Values::minus_infinity && i < rows / 2 ? std::size_t(c.tiles[0]) : 0;
      for (std::size_t j = skip; j < cols; ++j)
        if (uniform(rng) < 0.3) gram[i * cols + j] = C(int(uniform(rng) * 4));
      gram[i * cols + skip + rng() % (cols - skip)] += C(1.5);
    }
  }
  auto q = [&](std::size_t i, std::size_t j) -> double {
    return kGram ? double(gram[i * cols + j]) : (labels[i] == column_labels[j] ? 1 : 0);
  };

  GuardedArray<T> matrix(n, c.misaligned);
  GuardedArray<T> grad_matrix(c.layout == Layout::matrix_separate ? n : 0, c.misaligned);
  const std::size_t buffer_ld_max = widest + std::size_t(c.pad);
  GuardedArray<T> buffer(c.layout == Layout::tile_buffer ? rows * buffer_ld_max : 0, c.misaligned);
  GuardedArray<C> gram_tile(kGram ? rows * widest : 0, false);
  GuardedArray<RowStats<C>> running(rows, false);
  GuardedArray<T> row_losses(rows, false), weights(rows, false);
  GuardedArray<T> upstream(c.upstream == Upstream::per_row ? rows : 1, false);
  GuardedArray<C> losses_to_sum(rows, false);
  const LogitScale<C> logit_scale =
      c.values == Values::huge ? LogitScale<C>{C(1), C(1)} : LogitScale<C>{C(2.5), C(1 / 0.75)};
  const C grad_factor = C(0.37);
  for (std::size_t i = 0; i < rows; ++i)
    for (std::size_t j = 0; j < cols; ++j) {
      double x = c.values == Values::huge ? normal(rng) * 1e29 : normal(rng);
      if (c.values == Values::minus_infinity && q(i, j) == 0 &&
          (uniform(rng) < 0.15 || (i < rows / 2 && int64_t(j) < c.tiles[0])))
        x = -INFINITY;
      matrix.data()[i * cols + j] = from_double<T>(x);
    }
  for (std::size_t i = 0; i < weights.size(); ++i) weights.data()[i] = from_double<T>(0.25 + 2 * uniform(rng));
  for (std::size_t i = 0; i < upstream.size(); ++i) upstream.data()[i] = from_double<T>(-2 + 4 * uniform(rng));
  const std::vector<unsigned char> logits_bytes = matrix.copy_bytes();

  // The float64 reference from the stored values (SPEC section 1), with
  // z_ij = S_ij hi lo: after each tile, the statistics of the columns so far;
  // loss_i = w_i (logsumexp_j z_ij - sum_j T_ij z_ij), T row-normalised;
  // dL/dS_ij = grad_factor g_i w_i (softmax(z_i)_j - T_ij).
  const double z_scale = double(logit_scale.hi) * double(logit_scale.lo);
  auto z = [&](std::size_t i, std::size_t j) { return to_double(matrix.data()[i * cols + j]) * z_scale; };
  // The statistics of row i over columns [0, end).
  auto reference_stats = [&](std::size_t i, std::size_t end) {
    RefStats r{-INFINITY, 0, 0, 0, 1};
    for (std::size_t j = 0; j < end; ++j) {
      r.max = std::max(r.max, z(i, j));
      if (std::isfinite(z(i, j))) r.scale = std::max(r.scale, 1 + std::fabs(z(i, j)));
    }
    double sum_exp = 0, target = 0;
    for (std::size_t j = 0; j < end; ++j) {
      sum_exp += std::exp(z(i, j) - r.max);
      r.pos += q(i, j);
      if (q(i, j) != 0) target += q(i, j) * z(i, j);
    }
    r.lse = r.max == -INFINITY ? -INFINITY : r.max + std::log(sum_exp);
    r.mean = r.pos != 0 ? target / r.pos : 0;
    return r;
  };
  std::vector<std::vector<RefStats>> ref_prefix(c.tiles.size(), std::vector<RefStats>(rows));
  for (std::size_t t = 0; t < c.tiles.size(); ++t)
    for (std::size_t i = 0; i < rows; ++i) ref_prefix[t][i] = reference_stats(i, std::size_t(begins[t + 1]));
  const std::vector<RefStats>& ref_rows = ref_prefix.back();
  std::vector<double> ref_loss(rows), ref_grad(n), row_weight(rows), grad_scale(rows);
  for (std::size_t i = 0; i < rows; ++i) {
    row_weight[i] = c.weights ? to_double(weights.data()[i]) : 1.0;
    const double g =
        c.upstream == Upstream::ones ? 1.0 : to_double(upstream.data()[c.upstream == Upstream::per_row ? i : 0]);
    ref_loss[i] = row_weight[i] * (ref_rows[i].lse - ref_rows[i].mean);
    grad_scale[i] = double(grad_factor) * g * row_weight[i];
    for (std::size_t j = 0; j < cols; ++j)
      ref_grad[i * cols + j] =
          grad_scale[i] * (std::exp(z(i, j) - ref_rows[i].lse) - q(i, j) / ref_rows[i].pos);
  }

  const DeviceLimits limits{c.multiprocessors, 48 * 1024};
  const double tolerance = compute_tolerance<T>(), u = unit_roundoff<T>();
  std::vector<unsigned char> first_outputs;
  for (emu::Schedule schedule : kSchedules) {
    SCOPED_TRACE("schedule " + std::to_string(int(schedule)));
    emu::schedule = schedule;
    matrix.assign_bytes(logits_bytes);
    grad_matrix.fill_bytes(kPoisonByte);
    running.fill_bytes(kPoisonByte);  // NaN: a first tile that does not reset shows
    row_losses.fill_bytes(kPoisonByte);
    losses_to_sum.fill_bytes(kPoisonByte);
    std::vector<unsigned char> outputs;
    int stats_strided = 0, gradient_strided = 0;

    // Where tile t's logits are, and its dS; a scratch tile is filled first.
    struct Place {
      T* logits;
      T* grad;
      int64_t ld;
      T* array;  // the array dS goes into
      std::size_t array_size;
    };
    auto place = [&](std::size_t t) {
      const std::size_t begin = std::size_t(begins[t]), width = std::size_t(c.tiles[t]);
      if (c.layout == Layout::tile_buffer) {
        const std::size_t ld = width + std::size_t(c.pad);
        buffer.fill_bytes(kPoisonByte);
        for (std::size_t i = 0; i < rows; ++i)
          for (std::size_t j = 0; j < width; ++j) buffer.data()[i * ld + j] = matrix.data()[i * cols + begin + j];
        return Place{buffer.data(), buffer.data(), int64_t(ld), buffer.data(), buffer.size()};
      }
      T* grad = c.layout == Layout::matrix_separate ? grad_matrix.data() : matrix.data();
      return Place{matrix.data() + begin, grad + begin, int64_t(cols), grad, n};
    };
    auto in_tile = [&](const Place& p, std::size_t t, std::size_t k) {
      const std::size_t offset = std::size_t(p.grad - p.array);  // tile_buffer: 0
      const std::size_t ld = std::size_t(p.ld);
      return k >= offset && (k - offset) % ld < std::size_t(c.tiles[t]) && (k - offset) / ld < rows;
    };
    auto targets_of = [&](std::size_t t) {
      const std::size_t begin = std::size_t(begins[t]), width = std::size_t(c.tiles[t]);
      if constexpr (kGram) {
        for (std::size_t i = 0; i < rows; ++i)
          for (std::size_t j = 0; j < width; ++j) gram_tile.data()[i * width + j] = gram[i * cols + begin + j];
        return TargetsT{gram_tile.data(), int64_t(width)};
      } else {
        return TargetsT{labels.data(), column_labels.data() + begin};
      }
    };
    auto start_launch = [&](const StreamedRows& plan) {
      emu::launches.clear();
      emu::errors.clear();
      emu::rows_finished = 0;
      emu::row_group_threads = plan.block_per_row ? unsigned(plan.threads) : emu::kWarpSize;
    };
    // The one launch made, of `expected` kernel; counts a grid that goes round.
    auto check_launch = [&](void (*expected)(), const StreamedRows& plan, int& strided) {
      for (const std::string& e : emu::errors) ADD_FAILURE() << "emulator: " << e;
      ASSERT_EQ(emu::launches.size(), 1u);
      EXPECT_EQ(emu::launches[0].kernel, expected) << "not the planned kernel";
      EXPECT_EQ(emu::launches[0].threads, unsigned(plan.threads));
      EXPECT_EQ(emu::launches[0].shared_bytes, 0u);
      EXPECT_LE(int64_t(emu::launches[0].grid), plan.blocks_wanted);
      if (int64_t(emu::launches[0].grid) < plan.blocks_wanted) ++strided;
    };
    auto check_guards = [&] {
      EXPECT_TRUE(matrix.guards_intact()) << "write next to the logits";
      EXPECT_TRUE(grad_matrix.guards_intact()) << "write next to dS";
      EXPECT_TRUE(buffer.guards_intact()) << "write next to the scratch tile";
      EXPECT_TRUE(gram_tile.guards_intact()) << "write next to the overlaps";
      EXPECT_TRUE(running.guards_intact()) << "write next to the running statistics";
      EXPECT_TRUE(row_losses.guards_intact()) << "write next to row_losses";
      EXPECT_TRUE(losses_to_sum.guards_intact()) << "write next to row_losses_to_sum";
    };

    // The statistics, tile by tile.
    for (std::size_t t = 0; t < c.tiles.size(); ++t) {
      SCOPED_TRACE("statistics of tile " + std::to_string(t));
      const Place p = place(t);
      const TargetsT targets = targets_of(t);
      GuardedArray<T>& logits_array = c.layout == Layout::tile_buffer ? buffer : matrix;
      const std::vector<unsigned char> logits_before = logits_array.copy_bytes();
      npairs::cuda::TileRowStatsArgs<T> args{};
      args.logits = p.logits;
      args.ld = p.ld;
      args.logit_scale = logit_scale;
      args.rows = c.rows;
      args.cols = c.tiles[t];
      args.first = t == 0;
      args.running = running.data();
      const StreamedRows plan = npairs::cuda::streamed_rows(c.rows, c.tiles[t], sizeof(T));
      start_launch(plan);
      try {
        npairs::cuda::launch_tile_row_stats<T>(args, targets, limits, nullptr);
      } catch (const std::exception& e) {
        ADD_FAILURE() << "launch_tile_row_stats threw: " << e.what();
      }
      check_launch(plan.block_per_row
                       ? reinterpret_cast<void (*)()>(
                             &npairs::cuda::tile_row_stats_kernel<T, TargetsT, npairs::cuda::BlockGroup<C>>)
                       : reinterpret_cast<void (*)()>(
                             &npairs::cuda::tile_row_stats_kernel<T, TargetsT, npairs::cuda::WarpGroup>),
                   plan, stats_strided);
      check_guards();
      EXPECT_TRUE(logits_array.copy_bytes() == logits_before) << "logits changed";

      FailureLog errors("running statistics off the reference");
      for (std::size_t i = 0; i < rows; ++i) {
        const RowStats<C> s = running.data()[i];
        const RefStats& r = ref_prefix[t][i];
        const double got_lse = double(s.max) + std::log(double(s.sum_exp));
        const double tol = tolerance * r.scale;
        bool ok = near(double(s.max), r.max, tol) && near(got_lse, r.lse, tol) &&
                  near(double(s.pos), r.pos, tolerance * r.pos);
        if (r.pos != 0) ok = ok && near(double(s.max) - double(s.pos_gap) / double(s.pos), r.mean, tol);
        else ok = ok && s.pos_gap == C(0);
        if (!ok)
          errors.add("row " + std::to_string(i) + ": max " + std::to_string(double(s.max)) + " lse " +
                     std::to_string(got_lse) + " pos " + std::to_string(double(s.pos)) + " pos_gap " +
                     std::to_string(double(s.pos_gap)) + "; reference max " + std::to_string(r.max) +
                     " lse " + std::to_string(r.lse) + " pos " + std::to_string(r.pos) + " mean " +
                     std::to_string(r.mean));
      }
      const std::vector<unsigned char> stats = running.copy_bytes();
      outputs.insert(outputs.end(), stats.begin(), stats.end());
    }

    // The losses from the final statistics.
    {
      SCOPED_TRACE("losses");
      npairs::cuda::TileRowLossesArgs<T> args{};
      args.running = running.data();
      args.rows = c.rows;
      args.sample_weight = c.weights ? weights.data() : nullptr;
      args.row_losses = row_losses.data();
      args.row_losses_to_sum = losses_to_sum.data();
      tracking::clear();
      if constexpr (kTracked) tracking::watched[0].watch(row_losses.data(), rows, sizeof(T));
      emu::launches.clear();
      emu::errors.clear();
      try {
        npairs::cuda::launch_tile_row_losses<T>(args, limits, nullptr);
      } catch (const std::exception& e) {
        ADD_FAILURE() << "launch_tile_row_losses threw: " << e.what();
      }
      for (const std::string& e : emu::errors) ADD_FAILURE() << "emulator: " << e;
      ASSERT_EQ(emu::launches.size(), 1u);
      EXPECT_EQ(emu::launches[0].kernel,
                reinterpret_cast<void (*)()>(&npairs::cuda::tile_row_losses_kernel<T>));
      const int64_t blocks_wanted = (c.rows + 255) / 256;
      EXPECT_LE(int64_t(emu::launches[0].grid), blocks_wanted);
      if (c.losses_stride) {
        EXPECT_LT(int64_t(emu::launches[0].grid), blocks_wanted) << "the grid-stride loop never goes round";
      }
      if constexpr (kTracked) {
        for (std::size_t i = 0; i < rows; ++i)
          EXPECT_EQ(tracking::watched[0].writes[i], 1) << "row_losses[" << i << "] writes";
      }
      tracking::clear();
      check_guards();
      FailureLog errors("losses off the reference");
      for (std::size_t i = 0; i < rows; ++i) {
        const double tol = tolerance * std::fabs(row_weight[i]) * ref_rows[i].scale;
        const double got = to_double(row_losses.data()[i]), got_sum = double(losses_to_sum.data()[i]);
        if (!(std::fabs(got - ref_loss[i]) <= tol + 2 * u * std::fabs(ref_loss[i])) ||
            !(std::fabs(got_sum - ref_loss[i]) <= tol))
          errors.add("row " + std::to_string(i) + ": " + std::to_string(got) + " and " + std::to_string(got_sum) +
                     ", reference " + std::to_string(ref_loss[i]));
      }
      const std::vector<unsigned char> losses = row_losses.copy_bytes(), sums = losses_to_sum.copy_bytes();
      outputs.insert(outputs.end(), losses.begin(), losses.end());
      outputs.insert(outputs.end(), sums.begin(), sums.end());
    }

    // The gradient, tile by tile.
    for (std::size_t t = 0; t < c.tiles.size(); ++t) {
      SCOPED_TRACE("gradient of tile " + std::to_string(t));
      const Place p = place(t);
      const TargetsT targets = targets_of(t);
      const std::size_t begin = std::size_t(begins[t]), width = std::size_t(c.tiles[t]);
      const std::vector<unsigned char> running_before = running.copy_bytes();
      const std::vector<unsigned char> logits_before = matrix.copy_bytes();
      std::vector<T> array_before(p.array, p.array + p.array_size);
      npairs::cuda::TileRowGradientArgs<T> args{};
      args.logits = p.logits;
      args.ld = p.ld;
      args.logit_scale = logit_scale;
      args.rows = c.rows;
      args.cols = c.tiles[t];
      args.running = running.data();
      args.sample_weight = c.weights ? weights.data() : nullptr;
      args.grad_loss = c.upstream == Upstream::ones ? nullptr : upstream.data();
      args.grad_loss_per_row = c.upstream == Upstream::per_row;
      args.grad_factor = grad_factor;
      args.grad = p.grad;
      const StreamedRows plan = npairs::cuda::streamed_rows(c.rows, c.tiles[t], sizeof(T));
      start_launch(plan);
      tracking::clear();
      if constexpr (kTracked) tracking::watched[0].watch(p.array, p.array_size, sizeof(T));
      try {
        npairs::cuda::launch_tile_row_gradient<T>(args, targets, limits, nullptr);
      } catch (const std::exception& e) {
        ADD_FAILURE() << "launch_tile_row_gradient threw: " << e.what();
      }
      check_launch(plan.block_per_row
                       ? reinterpret_cast<void (*)()>(
                             &npairs::cuda::tile_row_gradient_kernel<T, TargetsT, npairs::cuda::BlockGroup<C>>)
                       : reinterpret_cast<void (*)()>(
                             &npairs::cuda::tile_row_gradient_kernel<T, TargetsT, npairs::cuda::WarpGroup>),
                   plan, gradient_strided);
      EXPECT_EQ(emu::rows_finished, c.rows) << "rows a group finished (each row once)";
      check_guards();
      EXPECT_TRUE(running.copy_bytes() == running_before) << "running statistics changed";
      if (c.layout == Layout::matrix_separate) {
        EXPECT_TRUE(matrix.copy_bytes() == logits_before) << "logits changed";
      }
      {
        FailureLog outside("elements outside the tile changed");
        FailureLog wrong_count("dS elements not written exactly once");
        for (std::size_t k = 0; k < p.array_size; ++k) {
          const bool inside = in_tile(p, t, k);
          if (!inside && std::memcmp(&p.array[k], &array_before[k], sizeof(T)))
            outside.add("element " + std::to_string(k));
          if constexpr (kTracked) {
            const int writes = tracking::watched[0].writes[k];
            if (writes != (inside ? 1 : 0))
              wrong_count.add("element " + std::to_string(k) + " written " + std::to_string(writes) + " times");
          }
        }
        if constexpr (kTracked) {
          EXPECT_EQ(tracking::reads_after_write, 0) << "reads of dS elements after they were written";
        }
      }
      tracking::clear();

      FailureLog errors("dS off the reference");
      for (std::size_t i = 0; i < rows; ++i) {
        const double tol = tolerance * std::fabs(grad_scale[i]) + subnormal_floor<T>();
        for (std::size_t j = 0; j < width; ++j) {
          const double r = ref_grad[i * cols + begin + j];
          const T& element = p.grad[i * std::size_t(p.ld) + j];
          const double got = to_double(element);
          if (!(std::fabs(got - r) <= tol + 2 * u * std::fabs(r)))
            errors.add("dS[" + std::to_string(i) + "][" + std::to_string(begin + j) + "] = " + std::to_string(got) +
                       ", reference " + std::to_string(r));
          const auto* bytes = reinterpret_cast<const unsigned char*>(&element);
          outputs.insert(outputs.end(), bytes, bytes + sizeof(T));
        }
      }
    }

    if (c.tiles_stride) {
      EXPECT_GT(stats_strided, 0) << "no statistics launch went round its grid";
      EXPECT_GT(gradient_strided, 0) << "no gradient launch went round its grid";
    }
    expect_same_as_first_schedule(schedule, outputs, first_outputs);
  }
}

void PrintTo(const Case& c, std::ostream* os) { *os << c.name; }

class EmulatedTileKernels : public ::testing::TestWithParam<Case> {};

TEST_P(EmulatedTileKernels, MatchTheReference) {
  const Case& c = GetParam();
  with_case_types(c.dtype, c.tracked, c.targets, [&c](auto... types) { run_case(c, types...); });
}

INSTANTIATE_TEST_SUITE_P(Cases, EmulatedTileKernels, ::testing::ValuesIn(make_cases()), CaseName());

}  // namespace
