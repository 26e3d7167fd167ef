#include "cpu_backend.hpp"

#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <climits>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "error.hpp"
#include "cpu_rows.hpp"

namespace npairs {
namespace {

// Row-major C[m x n] = alpha * op(A) * op(B) + beta * C.
void gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
          const float* a, int64_t lda, const float* b, int64_t ldb, float beta, float* c,
          int64_t ldc) {
  cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans,
              int(m), int(n), int(k), alpha, a, int(lda), b, int(ldb), beta, c, int(ldc));
}
void gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, double alpha,
          const double* a, int64_t lda, const double* b, int64_t ldb, double beta, double* c,
          int64_t ldc) {
  cblas_dgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans,
              int(m), int(n), int(k), alpha, a, int(lda), b, int(ldb), beta, c, int(ldc));
}

// Bump allocator over the context's buffer: every span is sized before any
// output is written, so an allocation failure leaves the outputs untouched.
class Arena {
 public:
  explicit Arena(std::vector<double>& storage) : storage_(storage) {}
  template <class T>
  void reserve(int64_t count) {
    bytes_ += round_up(std::size_t(count) * sizeof(T));
  }
  void allocate() {
    if (storage_.size() * sizeof(double) < bytes_) storage_.resize(bytes_ / sizeof(double));
  }
  template <class T>
  T* take(int64_t count) {
    T* p = reinterpret_cast<T*>(reinterpret_cast<unsigned char*>(storage_.data()) + offset_);
    offset_ += round_up(std::size_t(count) * sizeof(T));
    return p;
  }

 private:
  static std::size_t round_up(std::size_t n) { return (n + 63) / 64 * 64; }
  std::vector<double>& storage_;
  std::size_t bytes_ = 0;
  std::size_t offset_ = 0;
};

// The first row whose label matches no column label, or -1.
template <class L>
int64_t first_row_without_positive(const L* labels, const L* column_labels, int64_t rows, int64_t cols) {
  std::vector<L> sorted(column_labels, column_labels + cols);
  std::sort(sorted.begin(), sorted.end());
  for (int64_t i = 0; i < rows; ++i) {
    if (!std::binary_search(sorted.begin(), sorted.end(), labels[i])) return i;
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

// The first row of a non-negative [rows x cols] matrix that is all zeros, or -1.
template <class T>
int64_t first_zero_row(const T* values, int64_t rows, int64_t cols) {
  for (int64_t i = 0; i < rows; ++i) {
    const T* row = values + i * cols;
    if (std::all_of(row, row + cols, [](T v) { return v == T(0); })) return i;
  }
  return -1;
}

[[noreturn]] void fail_row(const char* argument, int64_t row, const char* what) {
  fail(NPAIRS_ERROR_INVALID_VALUE,
       std::string(argument) + " row " + std::to_string(row) + " " + what);
}

// Sum of squares of a [n] vector, in double and in a fixed order.
template <class T>
double sum_of_squares(const T* x, int64_t n) {
  double s = 0.0;
  for (int64_t i = 0; i < n; ++i) s += double(x[i]) * double(x[i]);
  return s;
}

template <class T, class L>
void compute_typed(const Task& t, int threads, std::vector<double>& storage) {
  const int64_t R = t.rows, M = t.cols, D = t.dim, K = t.classes;
  const T* weights = static_cast<const T*>(t.sample_weight);
  const T* grad_loss = static_cast<const T*>(t.grad_loss);
  T* loss = static_cast<T*>(t.loss);
  const T* anchors = static_cast<const T*>(t.anchors);
  const T* positives = static_cast<const T*>(t.positives);

  // 1. Check the targets: nothing is written before this passes.
  const L* labels = static_cast<const L*>(t.labels);
  const L* column_labels = static_cast<const L*>(t.column_labels);
  const T* multilabels = static_cast<const T*>(t.multilabels);
  const T* column_multilabels = static_cast<const T*>(t.column_multilabels);
  if (!t.multilabel() && !t.shared_targets) {
    const int64_t row = first_row_without_positive(labels, column_labels, R, M);
    if (row >= 0) fail_row("problem.labels", row, "has no positive column (no column label equals it)");
  }
  if (t.multilabel()) {
    int64_t row = first_row_with_negative(multilabels, R, K);
    if (row >= 0) fail_row("problem.multilabels", row, "has a negative or NaN entry");
    if (!t.shared_targets) {
      row = first_row_with_negative(column_multilabels, M, K);
      if (row >= 0) fail_row("problem.column_multilabels", row, "has a negative or NaN entry");
    }
  }

  // 2. Workspace: row losses, the multi-label overlaps G, and the logits of
  // embeddings when the caller has no dL/dS buffer to compute them in.
  // 1/tau is formed in double: it overflows float for tau below ~3e-39 where
  // S/tau may still be finite. Then the logits are scaled in double into a
  // buffer (the dL/dS output when there is one) and the row pass scales by 1.
  const double inv_tau = 1.0 / t.temperature;
  const bool scale_logits = inv_tau > double(std::numeric_limits<T>::max());
  const bool need_logits_buffer = (t.embeddings() || scale_logits) && t.grad_similarity == nullptr;
  Arena arena(storage);
  arena.reserve<T>(R);
  if (t.multilabel()) arena.reserve<T>(R * M);
  if (need_logits_buffer) arena.reserve<T>(R * M);
  arena.allocate();
  T* row_losses = arena.take<T>(R);
  T* overlaps = t.multilabel() ? arena.take<T>(R * M) : nullptr;

  if (t.multilabel() && R > 0) {
    gemm(false, true, R, M, K, T(1), multilabels, K, column_multilabels, K, T(0), overlaps, M);
    const int64_t row = first_zero_row(overlaps, R, M);
    if (row >= 0) {
      fail_row("problem.multilabels", row, "has no positive column (its classes meet no column's)");
    }
  }

  // 3. Logits z = S / tau. Embeddings: one GEMM with 1/tau folded into alpha,
  // into the dL/dS output when asked for (the row pass overwrites it in place).
  const T* logits = static_cast<const T*>(t.similarity);
  T logit_scale = T(inv_tau);
  T* grad_out = static_cast<T*>(t.grad_similarity);
  if (t.embeddings() || scale_logits) {
    T* buffer = need_logits_buffer ? arena.take<T>(R * M) : grad_out;
    if (t.embeddings() && R > 0)
      gemm(false, true, R, M, D, scale_logits ? T(1) : T(inv_tau), anchors, D, positives, D, T(0), buffer, M);
    if (scale_logits) {
      const T* unscaled = t.embeddings() ? buffer : logits;
      for (int64_t k = 0; k < R * M; ++k) buffer[k] = T(double(unscaled[k]) * inv_tau);
    }
    logits = buffer;
    logit_scale = T(1);
    if (t.wants_embedding_grads()) grad_out = buffer;
  }

  // 4. The rows: each row is read for its statistics and written as its
  // gradient while it is in cache.
  cpu_row_pass(RowPassArgs<T, L>{logits, logit_scale, R, M, labels, column_labels, overlaps, weights,
                                 grad_loss, t.reduction == NPAIRS_REDUCTION_NONE,
                                 T(t.reduction_factor() / t.temperature), row_losses, grad_out,
                                 threads});

  // 5. The loss, reduced in a fixed order so that it does not depend on the
  // thread count.
  if (loss && !t.scalar_loss()) std::copy(row_losses, row_losses + R, loss);
  if (loss && t.scalar_loss()) {
    double sum = 0.0;
    for (int64_t i = 0; i < R; ++i) sum += double(row_losses[i]);
    double value = sum * t.reduction_factor();
    if (t.reg_lambda > 0.0 && R > 0) {
      value += 0.25 * t.reg_lambda *
               (sum_of_squares(anchors, R * D) / double(R) + sum_of_squares(positives, M * D) / double(M));
    }
    *loss = T(value);
  }

  // 6. Embedding gradients: dA = dS P + c_a A and dP = dS^T A + c_p P, the L2
  // term entering as beta over a copy of the inputs.
  if (!t.wants_embedding_grads()) return;
  // The upstream gradient enters here only through the L2 term, which needs a
  // scalar reduction: then grad_loss is one value (with NONE it is [R], maybe
  // empty, and not read here).
  const bool l2 = t.reg_lambda > 0.0 && R > 0;
  const T g = l2 && grad_loss ? grad_loss[0] : T(1);
  auto embedding_grad = [&](T* out, const T* own, int64_t own_rows, bool transpose_ds,
                            const T* other, int64_t count) {
    if (!out) return;
    if (R == 0) {
      std::fill(out, out + own_rows * D, T(0));
      return;
    }
    if (l2) std::copy(own, own + own_rows * D, out);
    const T beta = l2 ? T(0.5 * t.reg_lambda * double(g) / double(count)) : T(0);
    gemm(transpose_ds, false, own_rows, D, transpose_ds ? R : M, T(1), grad_out, M, other, D, beta, out, D);
  };
  embedding_grad(static_cast<T*>(t.grad_anchors), anchors, R, false, positives, R);
  embedding_grad(static_cast<T*>(t.grad_positives), positives, M, true, anchors, M);
}

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

  void compute(const Task& t) override {
    if (t.dtype == NPAIRS_F16 || t.dtype == NPAIRS_BF16) {
      fail(NPAIRS_ERROR_UNSUPPORTED,
           "problem.dtype NPAIRS_F16 and NPAIRS_BF16 are computed by CUDA contexts only, not by "
           "the CPU backend");
    }
    const int64_t largest = std::max({t.rows, t.cols, t.dim, t.classes});
    if (largest > INT_MAX) {
      fail(NPAIRS_ERROR_UNSUPPORTED, "problem dimensions above 2^31-1 are not supported by the CPU backend");
    }
    const int threads = threads_ > 0 ? threads_ : omp_get_num_procs();
    const bool wide_labels = t.label_dtype == NPAIRS_I64;
    if (t.dtype == NPAIRS_F32) {
      wide_labels ? compute_typed<float, int64_t>(t, threads, storage_)
                  : compute_typed<float, int32_t>(t, threads, storage_);
    } else {
      wide_labels ? compute_typed<double, int64_t>(t, threads, storage_)
                  : compute_typed<double, int32_t>(t, threads, storage_);
    }
  }

 private:
  int threads_ = 0;
  std::vector<double> storage_;
};

}  // namespace

std::unique_ptr<Backend> make_cpu_backend() { return std::make_unique<CpuBackend>(); }

}  // namespace npairs
