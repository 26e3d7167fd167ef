// The row pass for processors with AVX-512F (built with -mavx512f -mfma).
#define NPAIRS_CPU_ISA avx512
#include "cpu_rows.inc"
