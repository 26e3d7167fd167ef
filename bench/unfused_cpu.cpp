#include "unfused_cpu.hpp"

#include <math.h>

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "cpu_blas.hpp"

// Like a framework's CPU kernels (and the library's row pass), the passes use
// a vectorized exp and the widest vectors the processor has: each row kernel
// is built twice, for AVX2 and for the baseline, and the loader picks one.
// glibc declares libmvec's expf/exp only under -ffast-math; the declarations
// below (with -fno-math-errno on this file) let GCC vectorize them.
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
extern "C" __attribute__((simd("notinbranch"))) float expf(float) noexcept;
extern "C" __attribute__((simd("notinbranch"))) double exp(double) noexcept;
#define BENCH_ROW_KERNEL __attribute__((target_clones("avx2", "default")))
#else
#define BENCH_ROW_KERNEL
#endif

namespace bench {
namespace {

inline float exp_of(float x) { return expf(x); }
inline double exp_of(double x) { return exp(x); }

// One elementwise op or row reduction each, as separate framework ops are.

template <class T>
BENCH_ROW_KERNEL T row_max(const T* x, int64_t n) {
  T m = -T(INFINITY);
#pragma omp simd reduction(max : m)
  for (int64_t j = 0; j < n; ++j) m = std::max(m, x[j]);
  return m;
}

template <class T>
BENCH_ROW_KERNEL T row_sum_exp(const T* x, int64_t n, T shift) {
  T s = 0;
#pragma omp simd reduction(+ : s)
  for (int64_t j = 0; j < n; ++j) s += exp_of(x[j] - shift);
  return s;
}

template <class T>
BENCH_ROW_KERNEL T row_sum(const T* x, int64_t n) {
  T s = 0;
#pragma omp simd reduction(+ : s)
  for (int64_t j = 0; j < n; ++j) s += x[j];
  return s;
}

template <class T>
BENCH_ROW_KERNEL void row_add_scalar(const T* x, int64_t n, T c, T* out) {
#pragma omp simd
  for (int64_t j = 0; j < n; ++j) out[j] = x[j] + c;
}

template <class T>
BENCH_ROW_KERNEL void row_scale(T* x, int64_t n, T c) {
#pragma omp simd
  for (int64_t j = 0; j < n; ++j) x[j] *= c;
}

template <class T>
BENCH_ROW_KERNEL void row_multiply(const T* x, const T* y, int64_t n, T* out) {
#pragma omp simd
  for (int64_t j = 0; j < n; ++j) out[j] = x[j] * y[j];
}

template <class T>
BENCH_ROW_KERNEL void row_subtract(const T* x, const T* y, int64_t n, T* out) {
#pragma omp simd
  for (int64_t j = 0; j < n; ++j) out[j] = x[j] - y[j];
}

template <class T>
BENCH_ROW_KERNEL void row_exp(const T* x, int64_t n, T* out) {
#pragma omp simd
  for (int64_t j = 0; j < n; ++j) out[j] = exp_of(x[j]);
}

template <class T>
BENCH_ROW_KERNEL void row_equal(int32_t label, const int32_t* column_labels, int64_t n, T* out) {
#pragma omp simd
  for (int64_t j = 0; j < n; ++j) out[j] = label == column_labels[j] ? T(1) : T(0);
}

}  // namespace

template <class T>
UnfusedCpu<T>::UnfusedCpu(const CaseSpec& spec, const HostCase<T>& data, int threads)
    : spec_(spec), data_(data), threads_(threads) {
  const size_t R = size_t(spec.rows), M = size_t(spec.cols), D = size_t(spec.dim);
  if (spec.input == Input::embeddings) logits_.resize(R * M);
  log_probs_.resize(R * M);
  targets_.resize(R * M);
  scratch_.resize(R * M);
  if (spec.grad_similarity || spec.grad_embeddings) grad_logits_.resize(R * M);
  if (spec.grad_embeddings) {
    grad_anchors_.resize(R * D);
    grad_positives_.resize(M * D);
  }
  for (auto* v : {&row_max_, &row_log_sum_exp_, &row_target_sum_, &row_loss_}) v->resize(R);
}

template <class T>
template <class F>
void UnfusedCpu<T>::for_each_row(F&& row_op) const {
#pragma omp parallel for schedule(static) num_threads(threads_)
  for (int64_t i = 0; i < spec_.rows; ++i) row_op(i);
}

template <class T>
void UnfusedCpu<T>::run() {
  const int64_t R = spec_.rows, M = spec_.cols, D = spec_.dim, K = spec_.classes;
  auto row = [M](auto& matrix, int64_t i) { return matrix.data() + i * M; };

  // Logits: S = A P^T (a GEMM) for embeddings, else the given S.
  const T* z = data_.similarity.data();
  if (spec_.input == Input::embeddings) {
    cpu_gemm(false, true, R, M, D, T(1), data_.anchors.data(), data_.positives.data(), T(0),
             logits_.data());
    z = logits_.data();
  }

  // log_softmax: a max pass, an exp-sum pass, a pass writing log-probabilities.
  for_each_row([&](int64_t i) { row_max_[i] = row_max(z + i * M, M); });
  for_each_row([&](int64_t i) {
    row_log_sum_exp_[i] = row_max_[i] + std::log(row_sum_exp(z + i * M, M, row_max_[i]));
  });
  for_each_row([&](int64_t i) { row_add_scalar(z + i * M, M, -row_log_sum_exp_[i], row(log_probs_, i)); });

  // Dense targets T: label equality (or the overlaps Y Y'^T), row-normalised.
  if (spec_.targets == Targets::labels) {
    const int32_t* columns =
        data_.column_labels.empty() ? data_.labels.data() : data_.column_labels.data();
    for_each_row([&](int64_t i) { row_equal(data_.labels[i], columns, M, row(targets_, i)); });
  } else {
    const T* columns = data_.column_multilabels.empty() ? data_.multilabels.data()
                                                        : data_.column_multilabels.data();
    cpu_gemm(false, true, R, M, K, T(1), data_.multilabels.data(), columns, T(0), targets_.data());
  }
  for_each_row([&](int64_t i) { row_target_sum_[i] = row_sum(row(targets_, i), M); });
  for_each_row([&](int64_t i) { row_scale(row(targets_, i), M, T(1) / row_target_sum_[i]); });

  // Loss: -sum_j T_ij log p_ij (a product pass, a row-sum pass), then the mean.
  for_each_row([&](int64_t i) { row_multiply(row(targets_, i), row(log_probs_, i), M, row(scratch_, i)); });
  for_each_row([&](int64_t i) { row_loss_[i] = -row_sum(row(scratch_, i), M); });
  double sum = 0;
  for (int64_t i = 0; i < R; ++i) sum += double(row_loss_[i]);
  loss_ = R > 0 ? sum / double(R) : 0.0;

  if (grad_logits_.empty()) return;
  // Backward: softmax = exp(log p), minus T, scaled by the mean's 1/R.
  for_each_row([&](int64_t i) { row_exp(row(log_probs_, i), M, row(scratch_, i)); });
  for_each_row([&](int64_t i) { row_subtract(row(scratch_, i), row(targets_, i), M, row(grad_logits_, i)); });
  for_each_row([&](int64_t i) { row_scale(row(grad_logits_, i), M, T(1.0 / double(R))); });
  if (!spec_.grad_embeddings) return;
  cpu_gemm(false, false, R, D, M, T(1), grad_logits_.data(), data_.positives.data(), T(0),
           grad_anchors_.data());
  cpu_gemm(true, false, M, D, R, T(1), grad_logits_.data(), data_.anchors.data(), T(0),
           grad_positives_.data());
}

template class UnfusedCpu<float>;
template class UnfusedCpu<double>;

}  // namespace bench
