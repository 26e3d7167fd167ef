// The CPU row pass: for every row of logits, its statistics, its loss and
// (when wanted) its gradient, the row read while it is in cache. Compiled once
// per instruction set (cpu_rows_*.cpp) and dispatched at run time, so that
// the exp of every element runs through glibc's vector math (libmvec) at the
// widest width the processor has.
#pragma once

#include <cstdint>

namespace npairs {

template <class T, class L>
struct RowPassArgs {
  const T* logits;        // [rows x cols]
  T logit_scale;          // z = logits * logit_scale
  int64_t rows;
  int64_t cols;
  const L* labels;        // [rows], with column_labels [cols]; or
  const L* column_labels;
  const T* overlaps;      // [rows x cols] multi-label target weights
  const T* weights;       // [rows] or nullptr
  const T* grad_loss;     // nullptr, one value, or [rows] when per_row_grad
  bool per_row_grad;
  T grad_scale;           // r / tau
  T* row_losses;          // [rows] out: w_i * loss_i
  T* grad_out;            // [rows x cols] out: dL/dS, may alias logits; or nullptr
  int threads;
};

template <class T, class L>
void cpu_row_pass(const RowPassArgs<T, L>& args);

}  // namespace npairs
