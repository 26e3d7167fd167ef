#include "cpu_rows.hpp"

namespace npairs {

namespace generic {
template <class T, class L> void row_pass(const RowPassArgs<T, L>&);
}
#if defined(NPAIRS_CPU_X86)
namespace avx2 {
template <class T, class L> void row_pass(const RowPassArgs<T, L>&);
}
namespace avx512 {
template <class T, class L> void row_pass(const RowPassArgs<T, L>&);
}
#endif

template <class T, class L>
void cpu_row_pass(const RowPassArgs<T, L>& args) {
#if defined(NPAIRS_CPU_X86)
  static const bool has_avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("fma");
  static const bool has_avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  if (has_avx512) return avx512::row_pass(args);
  if (has_avx2) return avx2::row_pass(args);
#endif
  generic::row_pass(args);
}

template void cpu_row_pass(const RowPassArgs<float, int32_t>&);
template void cpu_row_pass(const RowPassArgs<float, int64_t>&);
template void cpu_row_pass(const RowPassArgs<double, int32_t>&);
template void cpu_row_pass(const RowPassArgs<double, int64_t>&);

}  // namespace npairs
