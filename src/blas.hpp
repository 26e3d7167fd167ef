// The BLAS calls the library makes, on row-major operands, mapped to the BLAS
// the build chose (cmake/NpairsBlas.cmake): the system OpenBLAS's cblas_*, or
// scipy-openblas32's scipy_cblas_* (NPAIRS_BLAS_SCIPY), whose prefix keeps it
// apart from any other OpenBLAS in the process.
#pragma once

#include <cblas.h>

#include <cstdint>

#if NPAIRS_BLAS_SCIPY
#define NPAIRS_BLAS_SYMBOL(name) scipy_##name
#else
#define NPAIRS_BLAS_SYMBOL(name) name
#endif

namespace npairs::blas {

inline CBLAS_TRANSPOSE op(bool trans) { return trans ? CblasTrans : CblasNoTrans; }

// C[m x n] = alpha * op(A) * op(B) + beta * C.
inline void gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
                 int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  NPAIRS_BLAS_SYMBOL(cblas_sgemm)(CblasRowMajor, op(trans_a), op(trans_b), int(m), int(n), int(k), alpha, a,
                                  int(lda), b, int(ldb), beta, c, int(ldc));
}
inline void gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, double alpha, const double* a,
                 int64_t lda, const double* b, int64_t ldb, double beta, double* c, int64_t ldc) {
  NPAIRS_BLAS_SYMBOL(cblas_dgemm)(CblasRowMajor, op(trans_a), op(trans_b), int(m), int(n), int(k), alpha, a,
                                  int(lda), b, int(ldb), beta, c, int(ldc));
}

// y[n] = E[n x d] x.
inline void gemv(int64_t n, int64_t d, const float* e, const float* x, float* y) {
  NPAIRS_BLAS_SYMBOL(cblas_sgemv)(CblasRowMajor, CblasNoTrans, int(n), int(d), 1.0f, e, int(d), x, 1, 0.0f, y, 1);
}
inline void gemv(int64_t n, int64_t d, const double* e, const double* x, double* y) {
  NPAIRS_BLAS_SYMBOL(cblas_dgemv)(CblasRowMajor, CblasNoTrans, int(n), int(d), 1.0, e, int(d), x, 1, 0.0, y, 1);
}

// Bounds the BLAS's threads to `threads` for a scope, where omp_set_num_threads
// does not: OpenBLAS's OpenMP build (Debian's, preferred for the system BLAS)
// runs its GEMMs on the caller's OpenMP team and needs nothing more; a pthreads
// build (scipy-openblas32) keeps a pool of its own, whose count is the whole
// process's (not the calling thread's), restored on the way out.
class ScopedThreads {
 public:
  explicit ScopedThreads(int threads)
      : own_pool_(NPAIRS_BLAS_SYMBOL(openblas_get_parallel)() == OPENBLAS_THREAD),
        caller_(own_pool_ ? NPAIRS_BLAS_SYMBOL(openblas_get_num_threads)() : 0) {
    if (own_pool_) NPAIRS_BLAS_SYMBOL(openblas_set_num_threads)(threads);
  }
  ~ScopedThreads() {
    if (own_pool_) NPAIRS_BLAS_SYMBOL(openblas_set_num_threads)(caller_);
  }
  ScopedThreads(const ScopedThreads&) = delete;
  ScopedThreads& operator=(const ScopedThreads&) = delete;

 private:
  bool own_pool_;
  int caller_;
};

}  // namespace npairs::blas
