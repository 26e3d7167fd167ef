#include "gemm.hpp"

#include <type_traits>

#include "cuda_check.hpp"

namespace npairs::cuda {

template <class T>
void gemm_row_major(cublasHandle_t handle, bool allow_tf32, bool trans_a, bool trans_b, int64_t m,
                    int64_t n, int64_t k, T alpha, const T* a, const T* b, T beta, T* c) {
  constexpr bool is_float = std::is_same_v<T, float>;
  const cudaDataType type = is_float ? CUDA_R_32F : CUDA_R_64F;
  const cublasComputeType_t compute =
      is_float ? (allow_tf32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F)
               : CUBLAS_COMPUTE_64F;
  // A row-major X is the column-major X^T (same memory, leading dimension =
  // row length), so cuBLAS computes C^T[n x m] = op(B)^T op(A)^T: B comes
  // first, and each keeps its own transpose flag.
  const int64_t lda = trans_a ? m : k;
  const int64_t ldb = trans_b ? k : n;
  NPAIRS_CUDA_CHECK(cublasGemmEx_64(
      handle, trans_b ? CUBLAS_OP_T : CUBLAS_OP_N, trans_a ? CUBLAS_OP_T : CUBLAS_OP_N, n, m, k,
      &alpha, b, type, ldb, a, type, lda, &beta, c, type, n, compute, CUBLAS_GEMM_DEFAULT));
}

template void gemm_row_major<float>(cublasHandle_t, bool, bool, bool, int64_t, int64_t, int64_t,
                                    float, const float*, const float*, float, float*);
template void gemm_row_major<double>(cublasHandle_t, bool, bool, bool, int64_t, int64_t, int64_t,
                                     double, const double*, const double*, double, double*);

}  // namespace npairs::cuda
