// 16-bit floats on the host, held as their bit patterns: NPAIRS_F16 (IEEE
// binary16) and NPAIRS_BF16 (bfloat16). Converted in plain C++ because the
// bench includes no CUDA headers, and _Float16 is not available with every
// compiler it builds with (clang 14 on x86-64 has none).
#pragma once

#include <npairs/npairs.h>

#include <cstdint>
#include <cstring>

namespace bench {

using HalfBits = uint16_t;

inline uint32_t float_bits(float x) {
  uint32_t u = 0;
  std::memcpy(&u, &x, sizeof u);
  return u;
}

inline float bits_float(uint32_t u) {
  float x = 0;
  std::memcpy(&x, &u, sizeof x);
  return x;
}

// x rounded to nearest even; NaN stays a (quiet) NaN, overflow gives +-inf.
inline HalfBits to_half_bits(float x, npairs_dtype dtype) {
  const uint32_t u = float_bits(x), magnitude = u & 0x7fffffffu;
  if (dtype == NPAIRS_BF16) {
    if (magnitude > 0x7f800000u) return HalfBits((u >> 16) | 0x40u);
    return HalfBits((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
  }
  const uint32_t sign = (u >> 16) & 0x8000u;
  if (magnitude > 0x7f800000u) return HalfBits(sign | 0x7e00u | ((magnitude >> 13) & 0x3ffu));
  if (magnitude >= 0x477ff000u) return HalfBits(sign | 0x7c00u);  // >= 65520 rounds to inf
  // Normal halves keep the float's top 10 mantissa bits (exponent rebiased by
  // 127 - 15); subnormal halves count units of 2^-24 of the full significand.
  const bool normal = magnitude >= 0x38800000u;
  const uint32_t shift = normal ? 13u : 126u - (magnitude >> 23);
  if (shift > 24) return HalfBits(sign);  // below 2^-25: rounds to zero
  const uint32_t significand = normal ? magnitude - 0x38000000u : (magnitude & 0x7fffffu) | 0x800000u;
  const uint32_t kept = significand >> shift, rest = significand & ((1u << shift) - 1u),
                 halfway = 1u << (shift - 1);
  // A carry out of the mantissa moves to the next binade, as it should.
  return HalfBits(sign | (kept + (rest > halfway || (rest == halfway && (kept & 1u)))));
}

inline float from_half_bits(HalfBits h, npairs_dtype dtype) {
  if (dtype == NPAIRS_BF16) return bits_float(uint32_t(h) << 16);
  const uint32_t sign = uint32_t(h & 0x8000u) << 16, exponent = (h >> 10) & 0x1fu, mantissa = h & 0x3ffu;
  if (exponent == 0) return bits_float(sign | float_bits(float(mantissa) * 0x1p-24f));
  if (exponent == 31) return bits_float(sign | 0x7f800000u | (mantissa << 13));
  return bits_float(sign | ((exponent + 112u) << 23) | (mantissa << 13));
}

}  // namespace bench
