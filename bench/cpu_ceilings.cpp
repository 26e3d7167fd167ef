#include "cpu_ceilings.hpp"

#include <dlfcn.h>

#include <algorithm>
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

namespace {

// The GEMMs of an embeddings call streamed under a workspace limit, piece by
// piece as the library runs them, on one reused tile of logits.
template <class T>
Stats time_streamed_gemms(const CaseSpec& spec, const Pieces& pieces, int warmup, int repeats) {
  const int64_t R = spec.rows, M = spec.cols, D = spec.dim;
  const int64_t tile_cols = pieces.column_tiles() ? pieces.cols : M;
  auto filled = [](int64_t n, uint64_t stream) {
    std::vector<T> v(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) v[size_t(i)] = T(hash_uniform(stream, uint64_t(i)) * 0.01);
    return v;
  };
  const std::vector<T> anchors = filled(R * D, 1), positives = filled(M * D, 2);
  std::vector<T> grad_anchors = filled(R * D, 3), grad_positives = filled(M * D, 4);
  std::vector<T> tile = filled(pieces.rows * tile_cols, 5);
  Stats stats;
  time_runs(warmup, repeats, [&] {
    for (int64_t r0 = 0; r0 < R; r0 += pieces.rows) {
      const int64_t rows = std::min(pieces.rows, R - r0);
      for (int64_t c0 = 0; c0 < M; c0 += tile_cols) {
        const int64_t cols = std::min(tile_cols, M - c0);
        cpu_gemm(false, true, rows, cols, D, T(1), anchors.data() + r0 * D, positives.data() + c0 * D, T(0),
                 tile.data());
        if (pieces.column_tiles())  // again in the gradient sweep
          cpu_gemm(false, true, rows, cols, D, T(1), anchors.data() + r0 * D, positives.data() + c0 * D, T(0),
                   tile.data());
        if (!spec.grad_embeddings) continue;
        cpu_gemm(false, false, rows, D, cols, T(1), tile.data(), positives.data() + c0 * D, c0 == 0 ? T(0) : T(1),
                 grad_anchors.data() + r0 * D);
        cpu_gemm(true, false, cols, D, rows, T(1), tile.data(), anchors.data() + r0 * D, r0 == 0 ? T(0) : T(1),
                 grad_positives.data() + c0 * D);
      }
    }
    return true;
  }, &stats);
  return stats;
}

}  // namespace

template <class T>
Stats time_cpu_gemms(const CaseSpec& spec, int warmup, int repeats) {
  const Pieces pieces = pieces_of(spec);
  if (spec.input == Input::embeddings && pieces.rows < spec.rows)
    return time_streamed_gemms<T>(spec, pieces, warmup, repeats);
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
  void* symbol = dlsym(RTLD_DEFAULT, kSgemmSymbol);
  if (symbol == nullptr || dladdr(symbol, &info) == 0 || info.dli_fname == nullptr) return "unknown";
  return info.dli_fname;
}

}  // namespace bench
