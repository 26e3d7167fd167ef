#include "cpu_backend.hpp"

#include <omp.h>

#include <algorithm>
#include <climits>
#include <cstdint>
#include <cstring>
#include <new>
#include <optional>
#include <type_traits>
#include <utility>
#include <vector>
#include <string>

#include "blas.hpp"
#include "cpu_rows.hpp"
#include "error.hpp"
#include "hard_classes.hpp"
#include "row_math.hpp"
#include "tiled_loss.hpp"

namespace npairs {
namespace {

using blas::gemm;

// The context's host workspace: it only grows (or is released above a new
// limit), and a failed growth keeps the old buffer.
class HostWorkspace {
 public:
  unsigned char* reserve(std::size_t bytes) {
    if (bytes > capacity_) {
      unsigned char* grown = new (std::align_val_t(kAlignment), std::nothrow) unsigned char[bytes];
      if (!grown) {
        fail(NPAIRS_ERROR_OUT_OF_MEMORY,
             "could not allocate " + std::to_string(bytes) + " bytes of host workspace");
      }
      data_.reset(grown);
      capacity_ = bytes;
    }
    return data_.get();
  }
  void release_above(std::size_t limit) {
    if (limit != 0 && capacity_ > limit) {
      data_.reset();
      capacity_ = 0;
    }
  }

 private:
  static constexpr std::size_t kAlignment = 64;
  struct Free {
    void operator()(unsigned char* p) const { ::operator delete[](p, std::align_val_t(kAlignment)); }
  };
  std::unique_ptr<unsigned char[], Free> data_;
  std::size_t capacity_ = 0;
};

// The scratch arrays of one call in the workspace.
template <class T, class L>
struct CpuBuffers {
  T* row_losses = nullptr;         // [R]
  T* logits = nullptr;             // [row_block x col_tile], embeddings without a dL/dS output
  T* overlaps = nullptr;           // [row_block x col_tile], multi-labels
  RowStats<T>* running = nullptr;  // [row_block], tiles of columns; [R], symmetric
  // Symmetric calls: the columns' statistics so far [M], each chunk of rows'
  // part of a tile's [chunks x col_tile] and its scratch ([chunks x
  // kColumnScratchArrays x col_tile] values, [chunks x col_tile] indices), the columns' losses [M]
  // and gradient coefficients [M].
  RowStats<T>* column_running = nullptr;
  RowStats<T>* column_partials = nullptr;
  T* column_scratch = nullptr;
  int64_t* column_indices = nullptr;
  T* column_losses = nullptr;
  RowGradCoeffs<T>* column_coeffs = nullptr;
  T* logit_moments = nullptr;  // [R], dL/dtau
};

// Lays the call's arrays out for blocks of `row_block` rows and tiles of
// `col_tile` columns (a symmetric call's rows in `chunks` chunks), from
// `base` (nullptr: only sizes them). Returns the bytes they take: the
// workspace model of this backend.
template <class T, class L>
std::size_t lay_out(const Task& t, int64_t row_block, int64_t col_tile, int64_t chunks, unsigned char* base,
                    CpuBuffers<T, L>& b) {
  std::size_t offset = 0;
  auto take = [&](auto*& pointer, int64_t count) {
    using U = std::remove_pointer_t<std::remove_reference_t<decltype(pointer)>>;
    pointer = base ? reinterpret_cast<U*>(base + offset) : nullptr;
    offset += round_up(std::size_t(count) * sizeof(U), 64);
  };
  const int64_t tile = row_block * col_tile;
  take(b.row_losses, t.rows);
  if (t.multilabel()) take(b.overlaps, tile);
  if (t.embeddings() && !t.grad_similarity) take(b.logits, tile);
  if (t.symmetric()) {
    take(b.running, t.rows);
    take(b.column_running, t.cols);
    take(b.column_partials, chunks * col_tile);
    take(b.column_scratch, chunks * kColumnScratchArrays * col_tile);
    take(b.column_indices, chunks * col_tile);
    take(b.column_losses, t.cols);
    if (t.wants_gradient_pass()) take(b.column_coeffs, t.cols);
  } else if (col_tile < t.cols) {
    take(b.running, row_block);
  }
  if (t.grad_temperature) take(b.logit_moments, t.rows);
  return offset;
}

[[noreturn]] void fail_row(const char* argument, int64_t row, const char* what) {
  fail(NPAIRS_ERROR_INVALID_VALUE,
       std::string(argument) + " row " + std::to_string(row) + " " + what);
}

// The first row whose label matches no column label, or -1; `sorted` is
// scratch for the column labels.
template <class L>
int64_t first_row_without_positive(const L* labels, const L* column_labels, int64_t rows, int64_t cols,
                                   L* sorted) {
  std::copy(column_labels, column_labels + cols, sorted);
  std::sort(sorted, sorted + cols);
  for (int64_t i = 0; i < rows; ++i) {
    if (!std::binary_search(sorted, sorted + cols, labels[i])) return i;
  }
  return -1;
}

// The first row of a [rows x width] matrix with a negative or NaN entry, or -1.
template <class T>
int64_t first_row_with_negative(const T* values, int64_t rows, int64_t width) {
  for (int64_t i = 0; i < rows; ++i) {
    for (int64_t k = 0; k < width; ++k) {
      if (!(values[i * width + k] >= T(0))) return i;
    }
  }
  return -1;
}

// The first row of non-negative multi-labels Y whose normaliser
// sum_j G_ij = Y_i . (sum_j Y'_j) is 0, or -1, without forming G.
template <class T>
int64_t first_row_without_overlap(const T* labels, const T* column_labels, int64_t rows, int64_t cols,
                                  int64_t classes, T* column_sums) {
  std::fill(column_sums, column_sums + classes, T(0));
  for (int64_t j = 0; j < cols; ++j) {
    for (int64_t k = 0; k < classes; ++k) column_sums[k] += column_labels[j * classes + k];
  }
  for (int64_t i = 0; i < rows; ++i) {
    T overlap = 0;
    for (int64_t k = 0; k < classes; ++k) overlap += labels[i * classes + k] * column_sums[k];
    if (overlap == T(0)) return i;
  }
  return -1;
}

// The row checks of the data: rows without positive, negative multi-labels.
template <class T, class L>
void check_row_targets(const Task& t) {
  if (!t.multilabel()) {
    if (t.shared_targets) return;
    std::vector<L> sorted(static_cast<std::size_t>(t.cols));
    const int64_t row = first_row_without_positive(static_cast<const L*>(t.labels),
                                                   static_cast<const L*>(t.column_labels), t.rows,
                                                   t.cols, sorted.data());
    if (row >= 0) fail_row("problem.labels", row, "has no positive column (no column label equals it)");
    return;
  }
  const T* multilabels = static_cast<const T*>(t.multilabels);
  const T* column_multilabels = static_cast<const T*>(t.column_multilabels);
  int64_t row = first_row_with_negative(multilabels, t.rows, t.classes);
  if (row >= 0) fail_row("problem.multilabels", row, "has a negative or NaN entry");
  if (!t.shared_targets) {
    row = first_row_with_negative(column_multilabels, t.cols, t.classes);
    if (row >= 0) fail_row("problem.column_multilabels", row, "has a negative or NaN entry");
  }
  // Without rows there is no normaliser to check (and K may be any size:
  // the multi-label arrays are then empty).
  if (t.rows == 0) return;
  std::vector<T> column_sums(static_cast<std::size_t>(t.classes));
  row = first_row_without_overlap(multilabels, column_multilabels, t.rows, t.cols, t.classes,
                                  column_sums.data());
  if (row >= 0) {
    fail_row("problem.multilabels", row, "has no positive column (its classes meet no column's)");
  }
}

// The first column with no positive row (symmetric calls), or -1: the same
// search with rows and columns swapped.
template <class T, class L>
int64_t first_column_without_positive(const Task& t) {
  if (t.multilabel()) {
    std::vector<T> row_sums(static_cast<std::size_t>(t.classes));
    return first_row_without_overlap(static_cast<const T*>(t.column_multilabels), static_cast<const T*>(t.multilabels),
                                     t.cols, t.rows, t.classes, row_sums.data());
  }
  std::vector<L> sorted(static_cast<std::size_t>(t.rows));
  return first_row_without_positive(static_cast<const L*>(t.column_labels), static_cast<const L*>(t.labels), t.cols,
                                    t.rows, sorted.data());
}

// Every check of the data, before any output is written and before the
// workspace is allocated (invalid data never costs an R x M allocation). Its
// scratch is O(R + M + K), freed before the workspace is taken.
template <class T, class L>
void check_targets(const Task& t) {
  check_row_targets<T, L>(t);
  // With shared targets each column j has row j's normaliser (G = Y Y^T is
  // symmetric; label j equals itself). Without rows every column lacks one.
  if (!t.symmetric() || t.shared_targets) return;
  const int64_t column = t.rows == 0 ? 0 : first_column_without_positive<T, L>(t);
  if (column >= 0) {
    fail(NPAIRS_ERROR_INVALID_VALUE,
         std::string(t.multilabel() ? "problem.column_multilabels" : "problem.column_labels") + " column " +
             std::to_string(column) + " has no positive row, which NPAIRS_FLAG_SYMMETRIC needs");
  }
}

// Sum of squares of a [n] vector, in double and in a fixed order.
template <class T>
double sum_of_squares(const T* x, int64_t n) {
  double s = 0.0;
  for (int64_t i = 0; i < n; ++i) s += double(x[i]) * double(x[i]);
  return s;
}

// The CPU's work on one tile: OpenBLAS GEMMs and the row pass.
template <class T, class L>
class CpuTiles final : public TileOps {
 public:
  // exp_in_grad: a symmetric call's statistics sweep keeps each element's
  // exp(z - max) in dL/dS for the gradient sweep (whole rows only).
  CpuTiles(const Task& t, const CpuBuffers<T, L>& b, int threads, int64_t chunks, bool exp_in_grad = false)
      : t_(t),
        b_(b),
        threads_(threads),
        chunks_(chunks),
        exp_in_grad_(exp_in_grad),
        scale_(logit_scale<T>(t.temperature)) {}

  void load(const Tile& tile) override {
    if (t_.multilabel()) {
      const int64_t K = t_.classes;
      gemm(false, true, tile.rows(), tile.cols(), K, T(1),
           static_cast<const T*>(t_.multilabels) + tile.row_begin * K, K,
           static_cast<const T*>(t_.column_multilabels) + tile.col_begin * K, K, T(0), b_.overlaps,
           tile.cols());
    }
    if (t_.embeddings()) {
      // 1/tau's first factor goes into alpha, its second into the row pass.
      const int64_t D = t_.dim;
      const auto [logits, ld] = logits_of(tile);
      gemm(false, true, tile.rows(), tile.cols(), D, scale_.hi,
           static_cast<const T*>(t_.anchors) + tile.row_begin * D, D,
           static_cast<const T*>(t_.positives) + tile.col_begin * D, D, T(0), logits, ld);
    }
  }

  void whole_rows(const Tile& tile) override {
    cpu_row_pass(row_pass(tile, RowPassMode::kWholeRows, gradient_wanted() ? grad_of(tile).first : nullptr));
  }

  void tile_stats(const Tile& tile) override {
    RowStats<T>* running = running_of(tile);
    // Column blocks merge into the caller's statistics, which hold the blocks before this one.
    if (tile.col_begin == 0 && !t_.row_stats) std::fill(running, running + tile.rows(), row_stats_empty<T>());
    if (!t_.symmetric()) return cpu_row_pass(row_pass(tile, RowPassMode::kTileStats, nullptr));
    const int64_t cols = tile.cols();
    std::fill(b_.column_partials, b_.column_partials + chunks_ * cols, row_stats_empty<T>());
    RowPassArgs<T, L> a = symmetric_row_pass(tile, RowPassMode::kTileStats);
    a.column_partials = b_.column_partials;
    cpu_row_pass(a);
    // The chunks' statistics merged in chunk order, after the earlier blocks'.
    RowStats<T>* columns = b_.column_running + tile.col_begin;
    for (int64_t j = 0; j < cols; ++j) {
      RowStats<T> s = tile.row_begin == 0 ? row_stats_empty<T>() : columns[j];
      for (int64_t c = 0; c < chunks_; ++c) s = row_stats_merge(s, b_.column_partials[c * cols + j]);
      columns[j] = s;
    }
  }

  void finish_rows(const Tile& block) override {
    const T* weights = static_cast<const T*>(t_.sample_weight);
    const RowStats<T>* running = running_of(block);
    for (int64_t i = 0; i < block.rows(); ++i) {
      const T w = weights ? weights[block.row_begin + i] : T(1);
      b_.row_losses[block.row_begin + i] = w * row_loss(running[i]);
    }
  }

  void finish_columns() override {
    // The column direction's gradient scale g * r' / (2 tau): no weights,
    // and grad_loss is one value (symmetric needs a scalar reduction).
    const T* grad_loss = static_cast<const T*>(t_.grad_loss);
    const double g = grad_loss ? double(*grad_loss) : 1.0;
    const T scale = T(g * t_.column_reduction_factor() * t_.direction_weight() / t_.temperature);
    for (int64_t j = 0; j < t_.cols; ++j) {
      b_.column_losses[j] = row_loss(b_.column_running[j]);
      if (b_.column_coeffs) b_.column_coeffs[j] = row_grad_coeffs(b_.column_running[j], scale);
    }
  }

  void tile_gradient(const Tile& tile) override {
    if (!t_.symmetric()) {
      return cpu_row_pass(
          row_pass(tile, RowPassMode::kTileGrad, gradient_wanted() ? grad_of(tile).first : nullptr));
    }
    RowPassArgs<T, L> a = symmetric_row_pass(tile, RowPassMode::kTileGrad);
    a.column_coeffs = b_.column_coeffs + tile.col_begin;
    cpu_row_pass(a);
  }

  void embedding_gradients(const Tile& tile) override {
    const int64_t D = t_.dim;
    const auto [ds, ld] = grad_of(tile);
    const T* anchors = static_cast<const T*>(t_.anchors);
    const T* positives = static_cast<const T*>(t_.positives);
    if (t_.grad_anchors) {
      T* out = static_cast<T*>(t_.grad_anchors) + tile.row_begin * D;
      const T beta = start_gradient(tile.col_begin == 0, anchors + tile.row_begin * D, tile.rows(), t_.rows, out);
      gemm(false, false, tile.rows(), D, tile.cols(), T(1), ds, ld, positives + tile.col_begin * D, D, beta,
           out, D);
    }
    if (t_.grad_positives) {
      T* out = static_cast<T*>(t_.grad_positives) + tile.col_begin * D;
      const T beta =
          start_gradient(tile.row_begin == 0, positives + tile.col_begin * D, tile.cols(), t_.cols, out);
      gemm(true, false, tile.cols(), D, tile.rows(), T(1), ds, ld, anchors + tile.row_begin * D, D, beta,
           out, D);
    }
  }

 private:
  bool gradient_wanted() const { return t_.embeddings() ? t_.wants_grad_similarity() : t_.grad_similarity != nullptr; }

  // The running row statistics of a tile's rows: the caller's for column
  // blocks; a symmetric call keeps every row's until its gradient sweep;
  // others only the block's.
  RowStats<T>* running_of(const Tile& tile) const {
    if (t_.row_stats) return static_cast<RowStats<T>*>(t_.row_stats) + tile.row_begin;
    return t_.symmetric() ? b_.running + tile.row_begin : b_.running;
  }

  // Where the tile's logits are: the caller's similarity, the caller's dL/dS
  // (embeddings: overwritten in place by the gradient), or scratch.
  std::pair<T*, int64_t> logits_of(const Tile& tile) const {
    const int64_t M = t_.cols;
    if (!t_.embeddings()) {
      return {const_cast<T*>(static_cast<const T*>(t_.similarity)) + tile.row_begin * M + tile.col_begin, M};
    }
    if (t_.grad_similarity) return {static_cast<T*>(t_.grad_similarity) + tile.row_begin * M + tile.col_begin, M};
    return {b_.logits, tile.cols()};
  }
  // Where the tile's dL/dS goes: the caller's buffer, or (embeddings) in
  // place of the logits.
  std::pair<T*, int64_t> grad_of(const Tile& tile) const {
    if (t_.embeddings()) return logits_of(tile);
    const int64_t M = t_.cols;
    return {static_cast<T*>(t_.grad_similarity) + tile.row_begin * M + tile.col_begin, M};
  }

  RowPassArgs<T, L> row_pass(const Tile& tile, RowPassMode mode, T* grad_out) const {
    const auto [logits, ld] = logits_of(tile);
    const T* weights = static_cast<const T*>(t_.sample_weight);
    const T* grad_loss = static_cast<const T*>(t_.grad_loss);
    const bool per_row = t_.reduction == NPAIRS_REDUCTION_NONE;
    RowPassArgs<T, L> a{};
    a.logits = logits;
    a.logit_scale = t_.embeddings() ? LogitScale<T>{T(1), scale_.lo} : scale_;
    a.rows = tile.rows();
    a.cols = tile.cols();
    a.ld = ld;
    a.labels = t_.multilabel() ? nullptr : static_cast<const L*>(t_.labels) + tile.row_begin;
    a.column_labels = t_.multilabel() ? nullptr : static_cast<const L*>(t_.column_labels) + tile.col_begin;
    a.overlaps = b_.overlaps;
    a.weights = weights ? weights + tile.row_begin : nullptr;
    a.grad_loss = grad_loss && per_row ? grad_loss + tile.row_begin : grad_loss;
    a.per_row_grad = per_row;
    a.grad_scale = T(t_.reduction_factor() * t_.direction_weight() / t_.temperature);
    a.row_losses = b_.row_losses + tile.row_begin;
    a.grad_out = grad_out;
    a.threads = threads_;
    a.mode = mode;
    a.running = running_of(tile);
    a.logit_moments = b_.logit_moments ? b_.logit_moments + tile.row_begin : nullptr;
    return a;
  }

  // A symmetric call's row pass: in chunks of rows with scratch of their own,
  // the exponentials kept in dL/dS when exp_in_grad.
  RowPassArgs<T, L> symmetric_row_pass(const Tile& tile, RowPassMode mode) const {
    const bool stats = mode == RowPassMode::kTileStats;
    RowPassArgs<T, L> a = row_pass(tile, mode, (stats ? exp_in_grad_ : gradient_wanted()) ? grad_of(tile).first : nullptr);
    a.column_chunks = chunks_;
    a.column_scratch = b_.column_scratch;
    a.column_indices = b_.column_indices;
    a.exp_in_grad = exp_in_grad_;
    return a;
  }

  // The beta of the first GEMM into an embedding gradient: 0, or with the L2
  // term 0.5 * lambda * g / count over a copy of the input rows.
  T start_gradient(bool first, const T* own, int64_t own_rows, int64_t count, T* out) const {
    if (!first) return T(1);
    if (!(t_.reg_lambda > 0.0)) return T(0);
    // The L2 term needs a scalar reduction: grad_loss is then one value.
    const T* grad_loss = static_cast<const T*>(t_.grad_loss);
    const double g = grad_loss ? double(grad_loss[0]) : 1.0;
    std::copy(own, own + own_rows * t_.dim, out);
    return T(0.5 * t_.reg_lambda * g / double(count));
  }

  const Task& t_;
  const CpuBuffers<T, L>& b_;
  int threads_;
  int64_t chunks_;
  bool exp_in_grad_;
  LogitScale<T> scale_;
};

template <class T, class L>
std::size_t workspace_bytes(const Task& t, int64_t row_block, int64_t col_tile, int64_t chunks) {
  CpuBuffers<T, L> sizes;
  return lay_out<T, L>(t, row_block, col_tile, chunks, nullptr, sizes);
}

template <class T, class L>
TilePlan plan(const Task& t, std::size_t limit, int64_t chunks) {
  return plan_tiles(t, limit,
                    [&](int64_t rows, int64_t cols) { return workspace_bytes<T, L>(t, rows, cols, chunks); });
}

// sum_i of the rows' sum_j dL/dS_ij z_ij, in a fixed order: -dL/dtau, as
// dL/dtau = -(1/tau) sum_ij (dL/dz_ij) z_ij = -sum_ij dL/dS_ij z_ij.
template <class T>
double summed_moments(const T* moments, int64_t rows) {
  double sum = 0.0;
  for (int64_t i = 0; i < rows; ++i) sum += double(moments[i]);
  return sum;
}

template <class T, class L>
void compute_typed(const Task& t, std::size_t limit, int threads, HostWorkspace& workspace) {
  const int64_t R = t.rows, M = t.cols, D = t.dim;
  const TilePlan tiles = plan<T, L>(t, limit, threads);
  check_targets<T, L>(t);
  CpuBuffers<T, L> b;
  lay_out<T, L>(t, tiles.row_block, tiles.col_tile, threads, workspace.reserve(tiles.bytes), b);

  T* loss = static_cast<T*>(t.loss);
  T* grad_temperature = static_cast<T*>(t.grad_temperature);
  if (R == 0) {
    // The scalar reductions give 0 and every gradient is zero; only the
    // scalar loss, dL/dtau and dL/dP (M x D) have elements.
    if (loss && t.scalar_loss()) *loss = T(0);
    if (grad_temperature) *grad_temperature = T(0);
    if (t.grad_positives) std::fill_n(static_cast<T*>(t.grad_positives), M * D, T(0));
    return;
  }

  if (b.logit_moments) std::fill_n(b.logit_moments, R, T(0));
  // Over whole rows, a symmetric call's exponentials wait in the caller's
  // dL/dS for the gradient sweep, unless that is the similarity itself
  // (whose logits the sweep reads for dL/dtau and the directly summed columns).
  const bool exp_in_grad = t.symmetric() && tiles.whole_rows(t) && !t.embeddings() && t.grad_similarity &&
                           t.grad_similarity != t.similarity;
  CpuTiles<T, L> ops(t, b, threads, threads, exp_in_grad);
  run_tiled(t, tiles, ops);

  if (grad_temperature) *grad_temperature = T(-summed_moments(b.logit_moments, R));

  // The loss, reduced in a fixed order so that it does not depend on the
  // thread count.
  if (loss && !t.scalar_loss()) std::copy(b.row_losses, b.row_losses + R, loss);
  if (loss && t.scalar_loss()) {
    double sum = 0.0;
    for (int64_t i = 0; i < R; ++i) sum += double(b.row_losses[i]);
    double value = sum * t.reduction_factor() * t.direction_weight();
    if (t.symmetric()) {
      double column_sum = 0.0;
      for (int64_t j = 0; j < M; ++j) column_sum += double(b.column_losses[j]);
      value += column_sum * t.column_reduction_factor() * t.direction_weight();
    }
    if (t.reg_lambda > 0.0) {
      value += 0.25 * t.reg_lambda *
               (sum_of_squares(static_cast<const T*>(t.anchors), R * D) / double(R) +
                sum_of_squares(static_cast<const T*>(t.positives), M * D) / double(M));
    }
    *loss = T(value);
  }
}

// Column blocks read the caller's row statistics as RowStats: the header's
// NPAIRS_ROW_STATS_WIDTH values per row, in the same order.
static_assert(sizeof(RowStats<float>) == NPAIRS_ROW_STATS_WIDTH * sizeof(float) &&
                  sizeof(RowStats<double>) == NPAIRS_ROW_STATS_WIDTH * sizeof(double),
              "RowStats must match npairs.h's row statistics layout");

// The first row of a column block that has no positive among the columns
// merged so far (its statistics' target weight and this block's), or -1.
template <class T, class L>
int64_t first_row_without_merged_positive(const Task& t, const RowStats<T>* stats) {
  std::vector<L> sorted;
  std::vector<T> column_sums;
  if (t.multilabel()) {
    column_sums.assign(static_cast<std::size_t>(t.classes), T(0));
    const T* columns = static_cast<const T*>(t.column_multilabels);
    for (int64_t j = 0; j < t.cols; ++j) {
      for (int64_t k = 0; k < t.classes; ++k) column_sums[k] += columns[j * t.classes + k];
    }
  } else {
    const L* columns = static_cast<const L*>(t.column_labels);
    sorted.assign(columns, columns + t.cols);
    std::sort(sorted.begin(), sorted.end());
  }
  for (int64_t i = 0; i < t.rows; ++i) {
    if (stats[i].pos > T(0)) continue;
    if (t.multilabel()) {
      const T* row = static_cast<const T*>(t.multilabels) + i * t.classes;
      T overlap = 0;
      for (int64_t k = 0; k < t.classes; ++k) overlap += row[k] * column_sums[k];
      if (overlap > T(0)) continue;
    } else if (std::binary_search(sorted.begin(), sorted.end(), static_cast<const L*>(t.labels)[i])) {
      continue;
    }
    return i;
  }
  return -1;
}

// The data checks of a column block, before any output is written: the
// multi-labels' signs, and that every row has a positive where one is needed
// (the gradient pass: in the final statistics; the stats pass with a loss:
// after this block's merge). A block itself needs no positive of a row.
template <class T, class L>
void check_block(const Task& t, bool gradients) {
  if (t.multilabel()) {
    int64_t row = first_row_with_negative(static_cast<const T*>(t.multilabels), t.rows, t.classes);
    if (row >= 0) fail_row("problem.multilabels", row, "has a negative or NaN entry");
    row = first_row_with_negative(static_cast<const T*>(t.column_multilabels), t.cols, t.classes);
    if (row >= 0) fail_row("problem.column_multilabels", row, "has a negative or NaN entry");
  }
  const auto* stats = static_cast<const RowStats<T>*>(t.row_stats);
  if (gradients) {
    for (int64_t i = 0; i < t.rows; ++i) {
      if (!(stats[i].pos > T(0))) {
        fail_row("row_stats", i, "holds no positive column (its target weight [2] is not above 0)");
      }
    }
  } else if (t.loss) {
    const int64_t row = first_row_without_merged_positive<T, L>(t, stats);
    if (row >= 0) fail_row("problem.labels", row, "has no positive column in any block merged so far");
  }
}

template <class T, class L>
void block_typed(const Task& t, std::size_t limit, int threads, HostWorkspace& workspace, bool gradients) {
  const TilePlan tiles = plan<T, L>(t, limit, threads);
  check_block<T, L>(t, gradients);
  CpuBuffers<T, L> b;
  lay_out<T, L>(t, tiles.row_block, tiles.col_tile, threads, workspace.reserve(tiles.bytes), b);
  T* grad_temperature = static_cast<T*>(t.grad_temperature);
  if (t.rows == 0) {  // no row: nothing to merge, and the block's gradients are zero
    if (t.grad_positives) std::fill_n(static_cast<T*>(t.grad_positives), t.cols * t.dim, T(0));
    if (grad_temperature) *grad_temperature = T(0);
    return;
  }
  CpuTiles<T, L> ops(t, b, threads, threads);
  if (gradients) {
    if (b.logit_moments) std::fill_n(b.logit_moments, t.rows, T(0));
    run_block_gradients(t, tiles, ops);
    if (grad_temperature) *grad_temperature = T(-summed_moments(b.logit_moments, t.rows));
    return;
  }
  run_block_stats(t, tiles, ops);
  if (t.loss) std::copy(b.row_losses, b.row_losses + t.rows, static_cast<T*>(t.loss));
}

// The element and label types of a call, as a value for generic lambdas.
template <class T, class L>
struct Types {
  using Value = T;
  using Label = L;
};

// Calls f(Types<T, L>{}) with the task's element and label types.
template <class F>
auto with_types(const Task& t, F&& f) {
  const bool wide_labels = t.label_dtype == NPAIRS_I64;
  if (t.dtype == NPAIRS_F32) return wide_labels ? f(Types<float, int64_t>{}) : f(Types<float, int32_t>{});
  return wide_labels ? f(Types<double, int64_t>{}) : f(Types<double, int32_t>{});
}

// What this backend cannot compute, after every argument rule passed.
void check_supported(const Task& t) {
  if (t.dtype == NPAIRS_F16 || t.dtype == NPAIRS_BF16) {
    fail(NPAIRS_ERROR_UNSUPPORTED,
         "problem.dtype NPAIRS_F16 and NPAIRS_BF16 are computed by CUDA contexts only, not by "
         "the CPU backend");
  }
  const int64_t largest = std::max({t.rows, t.cols, t.dim, t.classes});
  if (largest > INT_MAX) {
    fail(NPAIRS_ERROR_UNSUPPORTED, "problem dimensions above 2^31-1 are not supported by the CPU backend");
  }
}

// Sets OpenMP's thread count (which OpenBLAS's OpenMP build follows too) for
// this thread only, and a pthreads BLAS's for the process, for a scope: a
// context's thread setting covers its GEMMs as well as its rows, and leaves
// the caller's setting as it was.
class ScopedOmpThreads {
 public:
  explicit ScopedOmpThreads(int threads) : caller_(omp_get_max_threads()), blas_(threads) {
    omp_set_num_threads(threads);
  }
  ~ScopedOmpThreads() { omp_set_num_threads(caller_); }
  ScopedOmpThreads(const ScopedOmpThreads&) = delete;
  ScopedOmpThreads& operator=(const ScopedOmpThreads&) = delete;

 private:
  int caller_;
  blas::ScopedThreads blas_;
};

class CpuBackend final : public Backend {
 public:
  npairs_backend kind() const override { return NPAIRS_BACKEND_CPU; }

  void set_stream(void* stream) override {
    if (stream != nullptr) {
      fail(NPAIRS_ERROR_UNSUPPORTED, "cuda_stream must be NULL on a CPU context");
    }
  }

  void set_threads(int threads) override { threads_ = threads; }

  void synchronize() override {}

  void set_workspace_limit(std::size_t bytes) override {
    limit_ = bytes;
    workspace_.release_above(bytes);
  }

  void reserve(std::size_t bytes) override { workspace_.reserve(bytes); }

  std::size_t workspace_size(const Task& t) override {
    check_supported(t);
    return with_types(t, [&](auto types) {
      using Ty = decltype(types);
      return plan<typename Ty::Value, typename Ty::Label>(t, limit_, threads()).bytes;
    });
  }

  void compute(const Task& t) override {
    run_typed(t, [&](auto types, int threads) {
      using Ty = decltype(types);
      compute_typed<typename Ty::Value, typename Ty::Label>(t, limit_, threads, workspace_);
    });
  }

  void select_hard_classes(const HardClassTask& t) override {
    int64_t block = 0;
    const std::size_t bytes = cpu_hard_class_workspace(t, limit_, &block);
    const std::optional<ScopedOmpThreads> scoped = scoped_threads();
    cpu_select_hard_classes(t, threads(), workspace_.reserve(bytes), block);
  }

  void block_stats(const Task& t) override { compute_block(t, false); }
  void block_gradients(const Task& t) override { compute_block(t, true); }

 private:
  void compute_block(const Task& t, bool gradients) {
    run_typed(t, [&](auto types, int threads) {
      using Ty = decltype(types);
      block_typed<typename Ty::Value, typename Ty::Label>(t, limit_, threads, workspace_, gradients);
    });
  }

  // The context's thread count for the GEMMs' OpenMP teams too (this thread,
  // while the result lives); nothing when the context uses every core.
  std::optional<ScopedOmpThreads> scoped_threads() const {
    if (threads_ > 0) return std::optional<ScopedOmpThreads>(std::in_place, threads_);
    return std::nullopt;
  }

  // Checks what the backend supports, then runs body(types, threads) for the
  // task's element and label types under scoped_threads().
  template <class Body>
  void run_typed(const Task& t, Body&& body) {
    check_supported(t);
    const std::optional<ScopedOmpThreads> scoped = scoped_threads();
    const int threads = this->threads();
    with_types(t, [&](auto types) { body(types, threads); });
  }

  int threads() const { return threads_ > 0 ? threads_ : omp_get_num_procs(); }

  int threads_ = 0;
  std::size_t limit_ = 0;
  HostWorkspace workspace_;
};

}  // namespace

std::unique_ptr<Backend> make_cpu_backend() { return std::make_unique<CpuBackend>(); }

}  // namespace npairs
