// Row-major GEMM on cuBLAS (which is column-major).
#pragma once

#include <cublas_v2.h>

#include <cstdint>

#include "dtype.cuh"

namespace npairs::cuda {

// C[m x n] = alpha * op(A) op(B) + beta * C, every matrix dense and row-major;
// op(A) is m x k (A is stored k x m when trans_a), op(B) is k x n (B is stored
// n x k when trans_b). A and B hold In, C holds Out (float C from 16-bit A and
// B keeps the label overlaps exact). 16-bit inputs run on tensor cores with
// float accumulation; allow_tf32 lets float GEMMs use TF32 tensor cores,
// otherwise they compute in full FP32. Queued on the handle's stream.
template <class In, class Out = In>
void gemm_row_major(cublasHandle_t handle, bool allow_tf32, bool trans_a, bool trans_b, int64_t m,
                    int64_t n, int64_t k, compute_t<Out> alpha, const In* a, const In* b,
                    compute_t<Out> beta, Out* c);

}  // namespace npairs::cuda
