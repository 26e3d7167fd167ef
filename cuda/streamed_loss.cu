#include "streamed_loss.hpp"

#include <algorithm>
#include <string>
#include <type_traits>
#include <utility>

#include "call_plan.hpp"
#include "column_losses.cuh"
#include "cuda_check.hpp"
#include "deferred_check.cuh"
#include "dtype.cuh"
#include "error.hpp"
#include "first_row_with_negative.cuh"
#include "first_row_without_positive.cuh"
#include "gemm.hpp"
#include "l2_gradient.cuh"
#include "row_loss_kernel.cuh"
#include "row_math.hpp"
#include "scalar_loss.cuh"
#include "sum_squares.cuh"
#include "target_checks.hpp"
#include "targets.cuh"
#include "tile_row_gradient.cuh"
#include "tile_row_losses.cuh"
#include "tile_row_stats.cuh"
#include "tile_symmetric_stats.cuh"

namespace npairs::cuda {
namespace {

// A similarity input is read, and its dL/dS written, in place when both are
// device memory; otherwise each piece goes through a tile in scratch (the
// kernels read and write a tile with one row stride).
struct Placement {
  bool similarity_in_place = false;
  bool similarity_waits = false;  // either is host or managed memory: the call waits
};
Placement placement_of(const Task& task, int device) {
  auto kind = [&](const void* pointer, const char* name) {
    return pointer ? pointer_kind(pointer, device, name) : MemoryKind::device;
  };
  const MemoryKind similarity = kind(task.similarity, "problem.similarity");
  const MemoryKind grad = kind(task.grad_similarity, "grads.similarity");
  Placement p;
  p.similarity_in_place = task.similarity && similarity != MemoryKind::host && grad != MemoryKind::host;
  p.similarity_waits = similarity != MemoryKind::device || grad != MemoryKind::device;
  return p;
}

// A tile of logits in scratch: the embeddings' S, or a staged similarity.
bool needs_logits_tile(const Task& task, const Placement& p) {
  return task.embeddings() || !p.similarity_in_place;
}

// The arrays of a streamed call: the whole ones (staged when host memory) and
// the scratch of one piece.
struct StreamedArrays : CallerArrays {
  Buffer grad_temperature;
  Buffer bad_rows, check_ones, check_column_sums, check_overlaps;
  Buffer logits, gram, running, row_losses, l2_partials;
  // Symmetric calls: the columns' running statistics, losses and gradient
  // coefficients [M], and a tile's partial statistics of both directions;
  // dL/dtau: each row's moment [R].
  Buffer column_running, column_losses, column_coeffs, stats_partials, moments;
};

// Whether a symmetric call checks that every column has a positive row: with
// shared targets each column j has row j's normaliser.
bool checks_columns(const Task& task) { return task.symmetric() && !task.shared_targets; }

template <class T>
void declare(const Task& task, const Placement& placement, int64_t row_block, int64_t col_tile,
             CallLayout& layout, StreamedArrays& a) {
  using C = compute_t<T>;
  const int64_t R = task.rows, M = task.cols, K = task.classes;
  const std::size_t value = sizeof(T);
  const bool scalar = task.scalar_loss();
  // The similarity and dL/dS go through tiles (Placement), not as whole arrays.
  declare_caller_arrays(task, value, layout, a, nullptr, nullptr);
  layout.output(a.grad_temperature, task.grad_temperature, value, "grads.temperature");

  const bool check_targets = task.multilabel() || !task.shared_targets || task.row_stats;
  if (check_targets) layout.scratch(a.bad_rows, kBadRowSlots * sizeof(long long));
  if (task.multilabel() && !task.row_stats) {
    // The column check runs the row check's GEMMs with rows and columns swapped.
    const int64_t both = checks_columns(task) ? std::max(R, M) : 0;
    layout.scratch(a.check_ones, bytes(std::max(M, both), value));
    layout.scratch(a.check_column_sums, bytes(K, value));
    layout.scratch(a.check_overlaps, bytes(std::max(R, both), value));
  }
  const int64_t tile = row_block * col_tile;
  if (needs_logits_tile(task, placement)) layout.scratch(a.logits, bytes(tile, value));
  if (task.multilabel()) layout.scratch(a.gram, bytes(tile, sizeof(C)));
  // Every row's statistics: a copy of the caller's (column blocks), or a
  // symmetric call's, kept until its gradient sweep; else the block's, for
  // tiles of columns and for dL/dtau (whole rows then run the tile kernels).
  if (task.row_stats || task.symmetric()) layout.scratch(a.running, bytes(R, sizeof(RowStats<C>)));
  else if (col_tile < M || task.grad_temperature) layout.scratch(a.running, bytes(row_block, sizeof(RowStats<C>)));
  if (task.symmetric()) {
    layout.scratch(a.column_running, bytes(M, sizeof(RowStats<C>)));
    layout.scratch(a.stats_partials, bytes(tile_symmetric_stats_partials(row_block, col_tile), sizeof(RowStats<C>)));
    if (task.loss) layout.scratch(a.column_losses, bytes(M, sizeof(C)));
    if (task.wants_gradient_pass()) layout.scratch(a.column_coeffs, bytes(M, sizeof(RowGradCoeffs<C>)));
  }
  if (task.grad_temperature) layout.scratch(a.moments, bytes(R, sizeof(C)));
  if (task.loss && scalar) layout.scratch(a.row_losses, bytes(R, sizeof(C)));
  if (task.loss && scalar && task.reg_lambda > 0)
    layout.scratch(a.l2_partials, 2 * kSumSquaresParts * sizeof(double));
}

template <class T>
std::size_t streamed_bytes(const Task& task, const Placement& placement, int64_t row_block,
                           int64_t col_tile, int device) {
  CallLayout layout(device);
  StreamedArrays arrays;
  declare<T>(task, placement, row_block, col_tile, layout, arrays);
  return layout.bytes();
}

// The targets of a piece as the kernels read them (column labels offset to
// the piece's first column, the piece's overlaps).
template <class C, class F>
void with_tile_targets(const Task& task, const StreamedArrays& a, const Tile& tile, F&& f) {
  if (task.multilabel()) {
    f(GramTargets<C>{a.gram.as<const C>(), tile.cols()});
  } else if (task.label_dtype == NPAIRS_I64) {
    f(LabelTargets<C, int64_t>{a.labels.as<const int64_t>() + tile.row_begin,
                               a.column_labels.as<const int64_t>() + tile.col_begin});
  } else {
    f(LabelTargets<C, int32_t>{a.labels.as<const int32_t>() + tile.row_begin,
                               a.column_labels.as<const int32_t>() + tile.col_begin});
  }
}

// Every data check before any output is written, or (ctx.deferred_reports
// set: NPAIRS_FLAG_DEFER_CHECKS on a call in one piece) queued without a
// wait: the checks that make outputs NaN run after the kernels that write
// them (CudaTiles::poison_invalid_rows), and the column checks report into
// the context's slots directly (a column without a positive row makes its
// own loss and gradient NaN: its target weights sum to 0). The multi-label
// normaliser sum_j G_ij = Y_i . (sum_j Y'_j c) / c is checked without
// forming G: the column sums are taken against a vector of one positive
// constant c, written with cudaMemsetAsync as the bytes 0x3C (about 0.0115
// in float, 1.5e-18 in double: positive and normal), and a row whose result
// is 0 has no positive; the columns' the same way with rows and columns
// swapped.
template <class T>
void check_targets(const Task& task, const StreamedArrays& a, const StreamedContext& ctx) {
  using C = compute_t<T>;
  const int64_t R = task.rows, M = task.cols, K = task.classes;
  const bool deferred = ctx.deferred_reports != nullptr;
  long long* first_bad = a.bad_rows.as<long long>();
  long long* column_reports = deferred ? ctx.deferred_reports : first_bad;
  NPAIRS_CUDA_CHECK(cudaMemsetAsync(first_bad, kNoBadRowByte, kBadRowSlots * sizeof(long long), ctx.stream));
  if constexpr (!std::is_same_v<T, C>) {
    if (task.multilabel()) fail(NPAIRS_ERROR_INTERNAL, "16-bit multi-labels reached the streamed path");
  } else if (task.multilabel()) {
    // Lowers slot `slot` to the first of `rows` rows of `own` (rows x K)
    // whose classes meet none of `others` (count x K).
    auto without_overlap = [&](const T* own, int64_t rows, const T* others, int64_t count, long long* slot) {
      NPAIRS_CUDA_CHECK(cudaMemsetAsync(a.check_ones.data, 0x3C, bytes(count, sizeof(T)), ctx.stream));
      gemm_row_major<T>(ctx.cublas, false, true, false, K, 1, count, C(1), others, a.check_ones.as<const T>(), C(0),
                        a.check_column_sums.as<T>());
      gemm_row_major<T>(ctx.cublas, false, false, false, rows, 1, K, C(1), own, a.check_column_sums.as<const T>(),
                        C(0), a.check_overlaps.as<T>());
      launch_first_row_without_positive(GramTargets<T>{a.check_overlaps.as<const T>(), 1}, rows, 1, slot, ctx.stream);
    };
    const T* rows = a.multilabels.as<const T>();
    const T* columns = a.column_multilabels.as<const T>();
    if (!deferred) launch_first_row_with_negative(rows, R, K, first_bad + kNegativeMultilabel, ctx.stream);
    // Deferred: read by the rows' check, which spoils every row; without rows
    // there is none, so the column's sign is reported directly (a symmetric
    // call without rows fails below, and queues no report).
    const bool report_column_signs = R == 0 && !checks_columns(task);
    if (!task.shared_targets)
      launch_first_row_with_negative(columns, M, K,
                                     (report_column_signs ? column_reports : first_bad) + kNegativeColumnMultilabel,
                                     ctx.stream);
    if (R > 0 && !deferred) without_overlap(rows, R, columns, M, first_bad + kNoPositiveMultilabel);
    if (checks_columns(task) && R > 0)
      without_overlap(columns, M, rows, R, column_reports + kNoPositiveColumnMultilabel);
  } else {
    if (!deferred) {
      with_tile_targets<C>(task, a, Tile{0, R, 0, M}, [&](const auto& targets) {
        launch_first_row_without_positive(targets, R, M, first_bad + kNoPositiveLabel, ctx.stream);
      });
    }
    if (checks_columns(task) && R > 0) {  // the columns' labels against the rows'
      auto check_columns = [&](auto label) {
        using L = decltype(label);
        launch_first_row_without_positive(LabelTargets<C, L>{a.column_labels.as<const L>(), a.labels.as<const L>()},
                                          M, R, column_reports + kNoPositiveColumnLabel, ctx.stream);
      };
      if (task.label_dtype == NPAIRS_I64) check_columns(int64_t{});
      else check_columns(int32_t{});
    }
  }
  if (!deferred) {
    NPAIRS_CUDA_CHECK(cudaMemcpyAsync(ctx.bad_rows_host, first_bad, kBadRowSlots * sizeof(long long),
                                      cudaMemcpyDeviceToHost, ctx.stream));
    NPAIRS_CUDA_CHECK(cudaStreamSynchronize(ctx.stream));
    report_bad_rows(ctx.bad_rows_host);
  }
  if (checks_columns(task) && R == 0 && M > 0) {  // no row: no column has a positive (after the signs, as the CPU)
    fail(NPAIRS_ERROR_INVALID_VALUE, std::string(task.multilabel() ? "problem.column_multilabels" : "problem.column_labels") +
                                         " column 0 has no positive row, which NPAIRS_FLAG_SYMMETRIC needs");
  }
}

// The work of one piece on the device.
template <class T>
class CudaTiles final : public TileOps {
  using C = compute_t<T>;

 public:
  CudaTiles(const Task& task, const Placement& placement, const StreamedArrays& a, const StreamedContext& ctx)
      : t_(task),
        p_(placement),
        a_(a),
        ctx_(ctx),
        scaling_(plan_gradient_scaling(sizeof(T), task.grad_similarity != nullptr, task.wants_embedding_grads(),
                                       ds_factor(task))) {}

  // dL/dS = ds_factor g_i w_i (softmax - T) in the row direction.
  static double ds_factor(const Task& task) {
    return task.reduction_factor() * task.direction_weight() / task.temperature;
  }
  // What the moments hold of dL/dtau = -factor * sum_i moments_i: the first
  // gradient pass (which sums them) has dS scaled by first_grad_factor().
  double moment_factor() const { return ds_factor(t_) / double(first_grad_factor()); }

  void load(const Tile& tile) override {
    const int64_t K = t_.classes, D = t_.dim, M = t_.cols;
    if (t_.multilabel()) {
      // G = Y Y'^T, always in full precision: TF32 is for the logits only.
      gemm_row_major<T, C>(ctx_.cublas, false, false, true, tile.rows(), tile.cols(), K, C(1),
                           a_.multilabels.as<const T>() + tile.row_begin * K,
                           a_.column_multilabels.as<const T>() + tile.col_begin * K, C(0), a_.gram.as<C>());
    }
    if (t_.embeddings()) {
      gemm_row_major<T>(ctx_.cublas, allow_tf32(), false, true, tile.rows(), tile.cols(), D, C(1),
                        a_.anchors.as<const T>() + tile.row_begin * D,
                        a_.positives.as<const T>() + tile.col_begin * D, C(0), a_.logits.as<T>());
    } else if (!p_.similarity_in_place) {
      NPAIRS_CUDA_CHECK(cudaMemcpy2DAsync(a_.logits.data, bytes(tile.cols(), sizeof(T)),
                                          static_cast<const T*>(t_.similarity) + tile.row_begin * M + tile.col_begin,
                                          bytes(M, sizeof(T)), bytes(tile.cols(), sizeof(T)),
                                          static_cast<std::size_t>(tile.rows()), cudaMemcpyDefault, ctx_.stream));
    }
  }

  void whole_rows(const Tile& block) override {
    if (t_.grad_temperature) {  // the row kernel sums no moments: the tile kernels on the whole rows
      tile_stats(block);
      finish_rows(block);
      tile_gradient(block);
      return;
    }
    const int64_t r0 = block.row_begin;
    RowLossArgs<T> args{};
    args.logits = logits_of(block).first;
    args.logit_scale = logit_scale<C>(t_.temperature);
    args.rows = block.rows();
    args.cols = block.cols();
    args.sample_weight = row_offset(a_.sample_weight.as<const T>(), r0);
    args.grad_loss = grad_loss_of(r0);
    args.grad_loss_per_row = !t_.scalar_loss();
    args.grad_factor = first_grad_factor();
    args.row_losses = t_.scalar_loss() ? nullptr : row_offset(a_.loss.as<T>(), r0);
    args.row_losses_to_sum = row_offset(a_.row_losses.as<C>(), r0);
    args.grad_logits = gradient_wanted() ? grad_of(block).first : nullptr;
    auto run_rows = [&] {
      with_tile_targets<C>(t_, a_, block, [&](const auto& targets) {
        launch_row_loss(args, targets, ctx_.limits, ctx_.stream);
      });
    };
    run_rows();
    if (gradient_wanted()) download_grad(block);
    if (scaling_.separate_gemm_input) {  // the GEMMs' unscaled input, from the logits again
      load(block);
      args.grad_factor = static_cast<C>(scaling_.gemm_input_factor);
      run_rows();
    }
  }

  void tile_stats(const Tile& tile) override {
    const std::pair<const T*, int64_t> logits = logits_of(tile);
    const bool first_rows = tile.col_begin == 0 && !t_.row_stats;  // column blocks merge into the earlier blocks'
    with_tile_targets<C>(t_, a_, tile, [&](const auto& targets) {
      auto set_tile = [&](auto& args) {
        args.logits = logits.first;
        args.ld = logits.second;
        args.logit_scale = logit_scale<C>(t_.temperature);
        args.rows = tile.rows();
        args.cols = tile.cols();
        args.running = running_of(tile);
      };
      if (t_.symmetric()) {  // both directions from one read of the tile
        TileSymmetricStatsArgs<T> args{};
        set_tile(args);
        args.first_rows = first_rows;
        args.first_columns = tile.row_begin == 0;
        args.column_running = a_.column_running.as<RowStats<C>>() + tile.col_begin;
        args.partials = a_.stats_partials.as<RowStats<C>>();
        launch_tile_symmetric_stats(args, targets, ctx_.limits, ctx_.stream);
      } else {
        TileRowStatsArgs<T> args{};
        set_tile(args);
        args.first = first_rows;
        launch_tile_row_stats(args, targets, ctx_.limits, ctx_.stream);
      }
    });
  }

  void finish_rows(const Tile& block) override {
    const int64_t r0 = block.row_begin;
    TileRowLossesArgs<T> args{};
    args.running = running_of(block);
    args.rows = block.rows();
    args.sample_weight = row_offset(a_.sample_weight.as<const T>(), r0);
    args.row_losses = t_.scalar_loss() ? nullptr : row_offset(a_.loss.as<T>(), r0);
    args.row_losses_to_sum = row_offset(a_.row_losses.as<C>(), r0);
    launch_tile_row_losses(args, ctx_.limits, ctx_.stream);
    poison_invalid_rows(block, nullptr);
  }

  void finish_columns() override {
    ColumnLossesArgs<T> args{};
    args.columns = a_.column_running.as<const RowStats<C>>();
    args.cols = t_.cols;
    args.grad_loss = a_.grad_loss.as<const T>();  // one value: symmetric needs a scalar reduction
    args.column_losses = a_.column_losses.as<C>();
    args.coeffs = a_.column_coeffs.as<RowGradCoeffs<C>>();
    launch_column_losses(args, ctx_.limits, ctx_.stream);
  }

  void tile_gradient(const Tile& tile) override {
    const int64_t r0 = tile.row_begin;
    const auto [logits, ld] = logits_of(tile);
    TileRowGradientArgs<T> args{};
    args.logits = logits;
    args.ld = ld;  // grad_of(tile) has the same stride
    args.logit_scale = logit_scale<C>(t_.temperature);
    args.rows = tile.rows();
    args.cols = tile.cols();
    args.running = running_of(tile);
    args.sample_weight = row_offset(a_.sample_weight.as<const T>(), r0);
    args.grad_loss = grad_loss_of(r0);
    args.grad_loss_per_row = !t_.scalar_loss();
    args.grad = gradient_wanted() ? grad_of(tile).first : nullptr;
    if (t_.symmetric()) args.column_coeffs = a_.column_coeffs.as<const RowGradCoeffs<C>>() + tile.col_begin;
    args.moments = row_offset(a_.moments.as<C>(), r0);  // block calls: this block's share
    auto run_tile = [&](C grad_factor) {
      args.grad_factor = grad_factor;
      // The column direction's r' / 2 for the row direction's r / 2.
      args.column_grad_factor = static_cast<C>(double(grad_factor) * t_.column_reduction_factor() /
                                               t_.reduction_factor());
      with_tile_targets<C>(t_, a_, tile, [&](const auto& targets) {
        launch_tile_row_gradient(args, targets, ctx_.limits, ctx_.stream);
      });
      poison_invalid_rows(tile, args.grad);
    };
    run_tile(first_grad_factor());
    download_grad(tile);
    if (scaling_.separate_gemm_input) {  // the GEMMs' unscaled input, from the logits again
      load(tile);
      args.moments = nullptr;  // summed once
      run_tile(static_cast<C>(scaling_.gemm_input_factor));
    }
  }

  // dL/dtau = -sum_i sum_j dL/dS_ij z_ij from the rows' moments, summed in
  // a fixed order, after the gradient sweep.
  void finish_temperature() const {
    ScalarLossArgs<T> args{};
    args.row_losses = a_.moments.as<const C>();
    args.rows = t_.rows;
    args.reduction_factor = -moment_factor();
    args.loss = a_.grad_temperature.as<T>();
    launch_scalar_loss(args, ctx_.stream);
  }

  void embedding_gradients(const Tile& tile) override {
    const Rows rows{tile.row_begin, tile.rows()}, cols{tile.col_begin, tile.cols()};
    if (t_.grad_anchors) side_gradient(false, a_.grad_anchors, a_.anchors, rows, t_.rows, a_.positives, cols);
    if (t_.grad_positives) side_gradient(true, a_.grad_positives, a_.positives, cols, t_.cols, a_.anchors, rows);
  }

 private:
  // A range of rows of the anchors or the positives.
  struct Rows {
    int64_t begin, count;
  };
  // One side's part of the tile's embedding gradients: rows `mine` of `grad`
  // (of the side's `side_rows`) from the stored dS (`transposed`: dS^T, for
  // the positives) and rows `other` of the other side. The sweep's first tile
  // over the other side starts the sum: with the L2 term of `own`, else with
  // the GEMM's beta 0.
  void side_gradient(bool transposed, const Buffer& grad, const Buffer& own, Rows mine, int64_t side_rows,
                     const Buffer& other_side, Rows other) const {
    const int64_t D = t_.dim;
    const bool l2 = t_.reg_lambda > 0;
    const bool first = other.begin == 0;
    T* out = grad.as<T>() + mine.begin * D;
    if (first && l2)
      launch_l2_gradient(own.as<const T>() + mine.begin * D, mine.count * D, 0.5 * t_.reg_lambda / double(side_rows),
                         a_.grad_loss.as<const T>(), out, ctx_.stream);
    // r/tau is in the stored dS or in alpha (call_plan.hpp).
    gemm_row_major<T>(ctx_.cublas, allow_tf32(), transposed, false, mine.count, D, other.count,
                      static_cast<C>(scaling_.gemm_alpha), a_.logits.as<const T>(),
                      other_side.as<const T>() + other.begin * D, first && !l2 ? C(0) : C(1), out);
  }
  template <class U>
  static U* row_offset(U* pointer, int64_t row) {
    return pointer ? pointer + row : nullptr;
  }
  // The running statistics of a tile's rows: every row's for column blocks
  // (the caller's, copied into scratch) and symmetric calls (kept for the
  // gradient sweep after every block), else the block's.
  RowStats<C>* running_of(const Tile& tile) const {
    RowStats<C>* running = a_.running.as<RowStats<C>>();
    return t_.row_stats || t_.symmetric() ? running + tile.row_begin : running;
  }
  bool allow_tf32() const { return (t_.flags & NPAIRS_FLAG_ALLOW_TF32) != 0; }
  // Deferred checks (a call in one piece): the loss rows and the dS rows
  // (`grad`, rows M apart, or nullptr) of the invalid rows made NaN, and
  // the rows' checks reported to the context's slots.
  void poison_invalid_rows(const Tile& block, T* grad) const {
    if (!ctx_.deferred_reports) return;
    DeferredCheckArgs<T> args{};
    args.rows = block.rows();
    args.cols = block.cols();
    args.multilabels = a_.multilabels.as<const T>();
    args.classes = t_.classes;
    args.column_negative = t_.multilabel() && !t_.shared_targets
                               ? a_.bad_rows.as<const long long>() + kNegativeColumnMultilabel
                               : nullptr;
    args.reports = ctx_.deferred_reports;
    if (!grad) {
      args.row_losses = t_.scalar_loss() ? nullptr : a_.loss.as<T>();
      args.row_losses_to_sum = a_.row_losses.as<C>();
    }
    args.grad_logits = grad;
    with_tile_targets<C>(t_, a_, block, [&](const auto& targets) {
      launch_deferred_check(args, targets, ctx_.stream);
    });
  }
  bool gradient_wanted() const { return t_.grad_similarity || t_.wants_embedding_grads(); }
  const T* grad_loss_of(int64_t row) const {
    const T* g = a_.grad_loss.as<const T>();
    return t_.scalar_loss() ? g : row_offset(g, row);
  }
  // The first gradient pass writes the dS output when it is wanted, else the
  // GEMMs' input.
  C first_grad_factor() const {
    return static_cast<C>(t_.grad_similarity ? scaling_.output_factor : scaling_.gemm_input_factor);
  }
  // The piece's logits: the caller's device similarity in place (rows `M`
  // apart), or the scratch tile (dense).
  std::pair<const T*, int64_t> logits_of(const Tile& tile) const {
    if (p_.similarity_in_place) {
      return {static_cast<const T*>(t_.similarity) + tile.row_begin * t_.cols + tile.col_begin, t_.cols};
    }
    return {a_.logits.as<const T>(), tile.cols()};
  }
  // Where the piece's dL/dS is written: in place of the scratch logits
  // (embeddings, whose GEMMs read it, or a staged similarity), or the
  // caller's device dL/dS beside the similarity read in place.
  std::pair<T*, int64_t> grad_of(const Tile& tile) const {
    if (p_.similarity_in_place) {
      return {static_cast<T*>(t_.grad_similarity) + tile.row_begin * t_.cols + tile.col_begin, t_.cols};
    }
    return {a_.logits.as<T>(), tile.cols()};
  }
  // Copies a piece of dL/dS written in scratch to the caller's buffer.
  void download_grad(const Tile& tile) const {
    if (!t_.grad_similarity || grad_of(tile).first != a_.logits.as<T>()) return;
    const int64_t M = t_.cols;
    NPAIRS_CUDA_CHECK(cudaMemcpy2DAsync(static_cast<T*>(t_.grad_similarity) + tile.row_begin * M + tile.col_begin,
                                        bytes(M, sizeof(T)), a_.logits.data, bytes(tile.cols(), sizeof(T)),
                                        bytes(tile.cols(), sizeof(T)), static_cast<std::size_t>(tile.rows()),
                                        cudaMemcpyDefault, ctx_.stream));
  }

  const Task& t_;
  Placement p_;
  const StreamedArrays& a_;
  const StreamedContext& ctx_;
  GradientScaling scaling_;
};

template <class T>
TilePlan plan_typed(const Task& task, std::size_t limit, int device) {
  const Placement placement = placement_of(task, device);
  return plan_tiles(task, limit, [&](int64_t rows, int64_t cols) {
    return streamed_bytes<T>(task, placement, rows, cols, device);
  });
}

// Lays the call's arrays out in the workspace and queues the uploads of the
// host inputs; with shared targets the columns' are the rows'.
template <class T>
void place_arrays(const Task& task, const Placement& placement, const TilePlan& plan, const StreamedContext& ctx,
                  CallLayout& layout, StreamedArrays& a) {
  declare<T>(task, placement, plan.row_block, plan.col_tile, layout, a);
  layout.bind(ctx.workspace->reserve(layout.bytes(), ctx.work_queued));
  layout.upload(ctx.stream);
  share_targets(task, a);
}

template <class T>
void run_typed(const Task& task, const TilePlan& plan, const StreamedContext& ctx) {
  using C = compute_t<T>;
  const int64_t R = task.rows, M = task.cols, D = task.dim;
  const Placement placement = placement_of(task, ctx.device);
  CallLayout layout(ctx.device);
  StreamedArrays a;
  place_arrays<T>(task, placement, plan, ctx, layout, a);
  if (task.multilabel() || !task.shared_targets) check_targets<T>(task, a, ctx);

  if (R > 0) {
    if (task.grad_temperature) NPAIRS_CUDA_CHECK(cudaMemsetAsync(a.moments.data, 0, bytes(R, sizeof(C)), ctx.stream));
    CudaTiles<T> ops(task, placement, a, ctx);
    run_tiled(task, plan, ops);
    if (task.loss && task.scalar_loss()) {
      // Symmetric: (r sum_i loss_i + r' sum_j loss'_j) / 2.
      const double half = task.direction_weight();
      launch_scalar_loss_with_l2(a.row_losses.as<const C>(), R, M, D, task.reduction_factor() * half,
                                 task.reg_lambda, a.anchors.as<const T>(), a.positives.as<const T>(),
                                 a.l2_partials.as<double>(), a.loss.as<T>(), ctx.stream,
                                 a.column_losses.as<const C>(), task.column_reduction_factor() * half);
    }
    if (task.grad_temperature) ops.finish_temperature();
  } else {
    // R = 0: the scalar reductions give 0, and dL/dP (M x D) and dL/dtau are zero.
    if (task.loss && task.scalar_loss()) NPAIRS_CUDA_CHECK(cudaMemsetAsync(a.loss.data, 0, sizeof(T), ctx.stream));
    if (task.grad_positives)
      NPAIRS_CUDA_CHECK(cudaMemsetAsync(a.grad_positives.data, 0, bytes(M * D, sizeof(T)), ctx.stream));
    if (task.grad_temperature) NPAIRS_CUDA_CHECK(cudaMemsetAsync(a.grad_temperature.data, 0, sizeof(T), ctx.stream));
  }
  layout.download(ctx.stream);
  if (layout.uses_host_memory() || placement.similarity_waits) NPAIRS_CUDA_CHECK(cudaStreamSynchronize(ctx.stream));
}

// Copies the first bad row of each check to the host, waits, and throws for
// the first one; `no_positive_argument` and `no_positive` name the column
// blocks' own check, kept in the kNoPositiveLabel slot.
void report_block_checks(const StreamedArrays& a, const StreamedContext& ctx, const char* no_positive_argument,
                         const char* no_positive) {
  long long* host = ctx.bad_rows_host;
  NPAIRS_CUDA_CHECK(cudaMemcpyAsync(host, a.bad_rows.data, kBadRowSlots * sizeof(long long), cudaMemcpyDeviceToHost,
                                    ctx.stream));
  NPAIRS_CUDA_CHECK(cudaStreamSynchronize(ctx.stream));
  const long long row = host[kNoPositiveLabel];
  host[kNoPositiveLabel] = kNoBadRow;
  report_bad_rows(host);  // the multi-labels' signs first, as the CPU backend checks them
  if (row != kNoBadRow) {
    fail(NPAIRS_ERROR_INVALID_VALUE, std::string(no_positive_argument) + " row " + std::to_string(row) + " " +
                                         no_positive);
  }
}

// Column blocks, for the dtypes whose running statistics are the caller's
// (float32, float64). The statistics are merged into (or read from) a scratch
// copy, so that a failed check leaves the caller's untouched: the merged
// statistics are checked before they and the row losses are written.
template <class T>
void run_block_typed(const Task& block, std::size_t limit, bool gradients, const StreamedContext& ctx) {
  static_assert(std::is_same_v<T, compute_t<T>>, "column blocks keep the caller's statistics in its dtype");
  Task task = block;
  if (!gradients) task.reduction = NPAIRS_REDUCTION_NONE;  // the stats pass writes each row's loss
  const int64_t R = task.rows, M = task.cols, K = task.classes;
  const TilePlan plan = plan_typed<T>(task, limit, ctx.device);
  const Placement placement = placement_of(task, ctx.device);
  CallLayout layout(ctx.device);
  StreamedArrays a;
  place_arrays<T>(task, placement, plan, ctx, layout, a);
  long long* first_bad = a.bad_rows.as<long long>();
  NPAIRS_CUDA_CHECK(cudaMemsetAsync(first_bad, kNoBadRowByte, kBadRowSlots * sizeof(long long), ctx.stream));
  if (task.multilabel()) {
    launch_first_row_with_negative(a.multilabels.as<const T>(), R, K, first_bad + kNegativeMultilabel, ctx.stream);
    launch_first_row_with_negative(a.column_multilabels.as<const T>(), M, K, first_bad + kNegativeColumnMultilabel,
                                   ctx.stream);
  }
  const std::size_t stats_bytes = bytes(R, sizeof(RowStats<T>));
  RowStats<T>* stats = a.running.as<RowStats<T>>();
  // Finds the first row whose target weight [2] (NPAIRS_ROW_STATS_WIDTH
  // values apart) is zero: no positive merged.
  auto check_positive_weights = [&] {
    launch_first_row_without_positive(GramTargets<T>{&stats->pos, NPAIRS_ROW_STATS_WIDTH}, R, 1,
                                      first_bad + kNoPositiveLabel, ctx.stream);
  };
  if (R > 0) {
    NPAIRS_CUDA_CHECK(cudaMemcpyAsync(stats, task.row_stats, stats_bytes, cudaMemcpyDefault, ctx.stream));
  }
  CudaTiles<T> ops(task, placement, a, ctx);
  if (gradients) {
    if (R > 0) check_positive_weights();
    report_block_checks(a, ctx, "row_stats", "holds no positive column (its target weight [2] is not above 0)");
    if (R > 0) {
      if (task.grad_temperature) NPAIRS_CUDA_CHECK(cudaMemsetAsync(a.moments.data, 0, bytes(R, sizeof(T)), ctx.stream));
      run_block_gradients(task, plan, ops);
      if (task.grad_temperature) ops.finish_temperature();  // the block's share of dL/dtau
    } else {  // no row: the block's gradients are zero
      if (task.grad_positives)
        NPAIRS_CUDA_CHECK(cudaMemsetAsync(a.grad_positives.data, 0, bytes(M * task.dim, sizeof(T)), ctx.stream));
      if (task.grad_temperature)
        NPAIRS_CUDA_CHECK(cudaMemsetAsync(a.grad_temperature.data, 0, sizeof(T), ctx.stream));
    }
  } else if (R > 0) {
    // The row losses follow the check of the merged statistics.
    Task merge_only = task;
    merge_only.loss = nullptr;
    run_block_stats(merge_only, plan, ops);
    if (task.loss) check_positive_weights();
    report_block_checks(a, ctx, "problem.labels", "has no positive column in any block merged so far");
    if (task.loss) ops.finish_rows(Tile{0, R, 0, M});
    NPAIRS_CUDA_CHECK(cudaMemcpyAsync(task.row_stats, stats, stats_bytes, cudaMemcpyDefault, ctx.stream));
  } else {
    report_block_checks(a, ctx, "problem.labels", "has no positive column in any block merged so far");
  }
  layout.download(ctx.stream);
  NPAIRS_CUDA_CHECK(cudaStreamSynchronize(ctx.stream));
}

// A call that waits for the host on its way cannot be captured.
void refuse_capture(cudaStream_t stream, const char* why) {
  cudaStreamCaptureStatus capture = cudaStreamCaptureStatusNone;
  NPAIRS_CUDA_CHECK(cudaStreamIsCapturing(stream, &capture));
  if (capture != cudaStreamCaptureStatusNone) {
    fail(NPAIRS_ERROR_UNSUPPORTED, std::string("the context's stream is being captured, and ") + why);
  }
}

template <class F>
auto with_dtype(const Task& task, F&& f) {
  switch (task.dtype) {
    case NPAIRS_F32: return f(float{});
    case NPAIRS_F64: return f(double{});
    case NPAIRS_F16: return f(__half{});
    default: return f(__nv_bfloat16{});  // make_task admits no other dtype
  }
}

}  // namespace

bool runs_tiles_only(const Task& task) { return task.symmetric() || task.grad_temperature; }

bool one_piece(const Task& task, const TilePlan& plan) {
  return task.rows <= plan.row_block && task.cols <= plan.col_tile;
}

TilePlan plan_streamed(const Task& task, std::size_t limit, int device) {
  if (task.multilabel() && (task.dtype == NPAIRS_F16 || task.dtype == NPAIRS_BF16)) {
    if (runs_tiles_only(task)) {
      fail(NPAIRS_ERROR_UNSUPPORTED,
           "CUDA contexts do not compute options.flags NPAIRS_FLAG_SYMMETRIC or grads.temperature for float16 or "
           "bfloat16 multi-labels in this version (use float32)");
    }
    fail(NPAIRS_ERROR_UNSUPPORTED,
         "a float16 or bfloat16 multi-label call above the context's workspace limit cannot be streamed by the "
         "CUDA backend yet (raise the limit, or use float32)");
  }
  return with_dtype(task, [&](auto value) { return plan_typed<decltype(value)>(task, limit, device); });
}

void run_streamed(const Task& task, const TilePlan& plan, const StreamedContext& context) {
  // A symmetric or dL/dtau call in one piece: the caller checked what it may do under capture.
  if (!(runs_tiles_only(task) && one_piece(task, plan))) {
    refuse_capture(context.stream,
                   "the call needs more workspace than the context's limit: a streamed call waits for its target "
                   "check (raise the limit, or reserve the whole call's workspace)");
  }
  with_dtype(task, [&](auto value) { run_typed<decltype(value)>(task, plan, context); });
}

void run_block(const Task& task, std::size_t limit, bool gradients, const StreamedContext& context) {
  refuse_capture(context.stream, "column blocks wait for their data checks");
  switch (task.dtype) {
    case NPAIRS_F32: return run_block_typed<float>(task, limit, gradients, context);
    case NPAIRS_F64: return run_block_typed<double>(task, limit, gradients, context);
    default:
      fail(NPAIRS_ERROR_UNSUPPORTED,
           "CUDA contexts do not compute column blocks of float16 or bfloat16 in this version (their running "
           "statistics are kept in float32, not in the problem's dtype); use float32");
  }
}

}  // namespace npairs::cuda
