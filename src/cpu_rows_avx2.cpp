// The row pass for processors with AVX2 and FMA (built with -mavx2 -mfma).
#define NPAIRS_CPU_ISA avx2
#include "cpu_rows.inc"
