// The row pass for any x86-64 (or other) processor.
#define NPAIRS_CPU_ISA generic
#include "cpu_rows.inc"
