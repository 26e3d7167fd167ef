// The CPU row pass: for every row of logits, its statistics, its loss and
// (when wanted) its gradient, the row read while it is in cache. Compiled once
// per instruction set (cpu_rows_*.cpp) and dispatched at run time, so that
// the exp of every element runs through glibc's vector math (libmvec) at the
// widest width the processor has.
#pragma once

#include <cstdint>

#include "row_math.hpp"

namespace npairs {

// What one pass over a block of rows does (src/tiled_loss.hpp cuts a call
// into such blocks and tiles).
enum class RowPassMode {
  kWholeRows,  // the rows are whole: statistics, loss and gradient at once
  kTileStats,  // a tile of columns: its statistics merged into `running`
               // (and, symmetric, its columns' into `column_partials`)
  kTileGrad,   // a tile of columns: its gradient from the final `running`
               // (and, symmetric, `column_coeffs`)
};

// Arrays of `cols` values in each chunk's scratch of a symmetric row pass.
constexpr int64_t kColumnScratchArrays = 5;

template <class T, class L>
struct RowPassArgs {
  const T* logits;        // [rows x cols], rows `ld` apart
  LogitScale<T> logit_scale;  // z = (logits * hi) * lo
  int64_t rows;
  int64_t cols;
  int64_t ld;
  const L* labels;        // [rows], with column_labels [cols]; or
  const L* column_labels;
  const T* overlaps;      // [rows x cols], rows `cols` apart: multi-label target weights
  const T* weights;       // [rows] or nullptr
  const T* grad_loss;     // nullptr, one value, or [rows] when per_row_grad
  bool per_row_grad;
  T grad_scale;           // r / tau
  T* row_losses;          // [rows] out: w_i * loss_i (kWholeRows)
  T* grad_out;            // [rows x cols], rows `ld` apart, out: dL/dS, may alias logits; or nullptr
  int threads;
  RowPassMode mode = RowPassMode::kWholeRows;
  RowStats<T>* running = nullptr;  // [rows]: the tile modes' statistics so far
  // Symmetric calls: the rows are cut into `column_chunks` consecutive
  // chunks (a fixed partition), each with scratch of its own:
  // column_scratch[c * kColumnScratchArrays * cols ...] and
  // column_indices[c * cols ...].
  // kTileStats: chunk c adds its rows' elements of column j to
  // column_partials[c * cols + j] (merged by the caller in chunk order).
  // kTileGrad: the columns' coefficients, [cols].
  RowStats<T>* column_partials = nullptr;
  int64_t column_chunks = 0;
  T* column_scratch = nullptr;
  int64_t* column_indices = nullptr;
  const RowGradCoeffs<T>* column_coeffs = nullptr;
  // Symmetric calls over whole rows with a dL/dS output apart from the
  // logits: kTileStats also writes each element's exp(z - max) into
  // grad_out, and kTileGrad turns them into the gradient (no second exp).
  bool exp_in_grad = false;
  // [rows] or nullptr: row i's sum_j dL/dS_ij z_ij (for dL/dtau) is added to
  // logit_moments[i] (kWholeRows and kTileGrad).
  T* logit_moments = nullptr;
};

template <class T, class L>
void cpu_row_pass(const RowPassArgs<T, L>& args);

}  // namespace npairs
