#include "gemm.hpp"

#include <type_traits>

#include "cuda_check.hpp"

namespace npairs::cuda {

namespace {

template <class In>
cublasComputeType_t compute_type(bool allow_tf32) {
  if constexpr (std::is_same_v<In, double>) return CUBLAS_COMPUTE_64F;
  if constexpr (std::is_same_v<In, float>)
    return allow_tf32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
  return CUBLAS_COMPUTE_32F;  // 16-bit inputs: tensor cores, float accumulation
}

}  // namespace

template <class In, class Out>
void gemm_row_major(cublasHandle_t handle, bool allow_tf32, bool trans_a, bool trans_b, int64_t m,
                    int64_t n, int64_t k, compute_t<Out> alpha, const In* a, const In* b,
                    compute_t<Out> beta, Out* c) {
  static_assert(std::is_same_v<compute_t<In>, compute_t<Out>>, "alpha and beta type");
  const cudaDataType in_type = DtypeTraits<In>::data_type;
  // A row-major X is the column-major X^T (same memory, leading dimension =
  // row length), so cuBLAS computes C^T[n x m] = op(B)^T op(A)^T: B comes
  // first, and each keeps its own transpose flag.
  const int64_t lda = trans_a ? m : k;
  const int64_t ldb = trans_b ? k : n;
  NPAIRS_CUDA_CHECK(cublasGemmEx_64(handle, trans_b ? CUBLAS_OP_T : CUBLAS_OP_N,
                                    trans_a ? CUBLAS_OP_T : CUBLAS_OP_N, n, m, k, &alpha, b,
                                    in_type, ldb, a, in_type, lda, &beta, c,
                                    DtypeTraits<Out>::data_type, n, compute_type<In>(allow_tf32),
                                    CUBLAS_GEMM_DEFAULT));
}

#define NPAIRS_INSTANTIATE(In, Out)                                                             \
  template void gemm_row_major<In, Out>(cublasHandle_t, bool, bool, bool, int64_t, int64_t,   \
                                        int64_t, compute_t<Out>, const In*, const In*,        \
                                        compute_t<Out>, Out*);
NPAIRS_INSTANTIATE(float, float)
NPAIRS_INSTANTIATE(double, double)
NPAIRS_INSTANTIATE(__half, __half)
NPAIRS_INSTANTIATE(__half, float)
NPAIRS_INSTANTIATE(__nv_bfloat16, __nv_bfloat16)
NPAIRS_INSTANTIATE(__nv_bfloat16, float)

}  // namespace npairs::cuda
