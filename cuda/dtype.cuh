// The element types the CUDA backend stores (float, double, and the 16-bit
// __half and __nv_bfloat16) and the type each computes in: 16-bit values are
// widened to float for every sum, exp and log (SPEC: float32 softmax), and
// rounded to nearest when stored.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <library_types.h>

#include <type_traits>

namespace npairs::cuda {

template <class Compute, cudaDataType kDataType>
struct DtypeInfo {
  using compute = Compute;
  static constexpr cudaDataType data_type = kDataType;
};
template <class T>
struct DtypeTraits;
template <>
struct DtypeTraits<float> : DtypeInfo<float, CUDA_R_32F> {};
template <>
struct DtypeTraits<double> : DtypeInfo<double, CUDA_R_64F> {};
template <>
struct DtypeTraits<__half> : DtypeInfo<float, CUDA_R_16F> {};
template <>
struct DtypeTraits<__nv_bfloat16> : DtypeInfo<float, CUDA_R_16BF> {};

template <class T>
using compute_t = typename DtypeTraits<T>::compute;

template <class T>
__host__ __device__ __forceinline__ compute_t<T> to_compute(T x) {
  return static_cast<compute_t<T>>(x);
}
template <class T>
__host__ __device__ __forceinline__ T from_compute(compute_t<T> x) {
  return static_cast<T>(x);
}
// Rounds once, not through float first.
template <class T>
__host__ __device__ __forceinline__ T from_double(double x) {
  if constexpr (std::is_same_v<T, __half>) return __double2half(x);
  else if constexpr (std::is_same_v<T, __nv_bfloat16>) return __double2bfloat16(x);
  else return static_cast<T>(x);
}

}  // namespace npairs::cuda

// Expands MACRO(T) for every element type the backend stores, for the
// explicit instantiations of the launchers.
#define NPAIRS_FOR_EACH_DTYPE(MACRO) \
  MACRO(float)                       \
  MACRO(double)                      \
  MACRO(__half)                      \
  MACRO(__nv_bfloat16)
