// The CPU's ceilings for a case, measured in the same run: the time to copy
// its bytes at the memory's copy bandwidth, and the time of its GEMMs alone
// through the same BLAS.
#pragma once

#include "bench_case.hpp"
#include "timing.hpp"

namespace bench {

// A memcpy moving `bytes` in all (bytes / 2 read, bytes / 2 written), split
// over `threads` threads as the library's row pass is.
Stats time_host_copy(double bytes, int threads, int warmup, int repeats);

// library_gemms(spec) alone, through cblas, on buffers of the case's shapes;
// under a workspace limit, piece by piece as the library streams them.
template <class T>
Stats time_cpu_gemms(const CaseSpec& spec, int warmup, int repeats);

}  // namespace bench
