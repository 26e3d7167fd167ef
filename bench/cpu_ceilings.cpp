#include "cpu_ceilings.hpp"

#include <dlfcn.h>

#include <array>
#include <cstring>
#include <vector>

#include "cpu_blas.hpp"

namespace bench {

Stats time_host_copy(double bytes, int threads, int warmup, int repeats) {
  const int64_t half = int64_t(bytes / 2);
  // Written before timing, so that no page fault lands in a timed copy.
  std::vector<unsigned char> source(size_t(half), 1), destination(size_t(half), 0);
  const int64_t chunk = (half + threads - 1) / threads;
  Stats stats;
  time_runs(warmup, repeats, [&] {
#pragma omp parallel for schedule(static) num_threads(threads)
    for (int t = 0; t < threads; ++t) {
      const int64_t begin = std::min(half, t * chunk), end = std::min(half, begin + chunk);
      std::memcpy(destination.data() + begin, source.data() + begin, size_t(end - begin));
    }
    return true;
  }, &stats);
  return stats;
}

template <class T>
Stats time_cpu_gemms(const CaseSpec& spec, int warmup, int repeats) {
  std::array<std::vector<T>, size_t(Matrix::count)> matrices;
  for (size_t m = 0; m < matrices.size(); ++m) {
    // Small, normal values: neither zeros (a BLAS may skip them) nor denormals.
    const int64_t n = matrix_elements(spec, Matrix(m));
    matrices[m].resize(size_t(n));
    for (int64_t i = 0; i < n; ++i) matrices[m][size_t(i)] = T(hash_uniform(m, uint64_t(i)) * 0.01);
  }
  auto data = [&](Matrix m) { return matrices[size_t(m)].data(); };
  const std::vector<Gemm> gemms = library_gemms(spec);
  Stats stats;
  time_runs(warmup, repeats, [&] {
    for (const Gemm& g : gemms)
      cpu_gemm(g.trans_a, g.trans_b, g.m, g.n, g.k, T(1), data(g.a), data(g.b), T(0), data(g.c));
    return true;
  }, &stats);
  return stats;
}

template Stats time_cpu_gemms<float>(const CaseSpec&, int, int);
template Stats time_cpu_gemms<double>(const CaseSpec&, int, int);

std::string cblas_provider() {
  Dl_info info{};
  void* symbol = dlsym(RTLD_DEFAULT, "cblas_sgemm");
  if (symbol == nullptr || dladdr(symbol, &info) == 0 || info.dli_fname == nullptr) return "unknown";
  return info.dli_fname;
}

}  // namespace bench
