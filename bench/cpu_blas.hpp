// Row-major GEMM through the CBLAS the bench links (the library's BLAS), and
// the name of the shared object that actually provides cblas_sgemm (so that
// an LD_PRELOADed BLIS or MKL shows up in the report).
#pragma once

#include <cblas.h>

#include <cstdint>
#include <string>

namespace bench {

// C[m x n] = alpha op(A) op(B) + beta C, dense row-major operands.
inline void cpu_gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                     const float* a, const float* b, float beta, float* c) {
  cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
              trans_b ? CblasTrans : CblasNoTrans, int(m), int(n), int(k), alpha, a,
              int(trans_a ? m : k), b, int(trans_b ? k : n), beta, c, int(n));
}
inline void cpu_gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, double alpha,
                     const double* a, const double* b, double beta, double* c) {
  cblas_dgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
              trans_b ? CblasTrans : CblasNoTrans, int(m), int(n), int(k), alpha, a,
              int(trans_a ? m : k), b, int(trans_b ? k : n), beta, c, int(n));
}

// The path of the library whose cblas_sgemm this process calls.
std::string cblas_provider();

}  // namespace bench
