// Row-major GEMM through the BLAS the library calls (src/blas.hpp, the one
// the build chose), and the name of the shared object that actually provides
// its sgemm (so that an LD_PRELOADed BLIS or MKL shows up in the report).
#pragma once

#include <cstdint>
#include <string>

#include "blas.hpp"

namespace bench {

// C[m x n] = alpha op(A) op(B) + beta C, dense row-major operands.
template <class T>
void cpu_gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, T alpha, const T* a, const T* b,
              T beta, T* c) {
  npairs::blas::gemm(trans_a, trans_b, m, n, k, alpha, a, trans_a ? m : k, b, trans_b ? k : n, beta, c, n);
}

#define BENCH_STRINGIFY(x) #x
#define BENCH_SYMBOL_NAME(x) BENCH_STRINGIFY(x)
// The symbol of the library's single-precision GEMM: cblas_sgemm, or scipy-openblas32's scipy_cblas_sgemm.
inline constexpr char kSgemmSymbol[] = BENCH_SYMBOL_NAME(NPAIRS_BLAS_SYMBOL(cblas_sgemm));

// The path of the library whose kSgemmSymbol this process calls.
std::string cblas_provider();

}  // namespace bench
