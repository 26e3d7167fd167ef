// hard_classes_bench: times npairs_select_hard_classes (hard negative class
// mining, issue 13) against the number of candidate classes C, beside two
// floors measured in the same run on the same machine:
//   GEMV floor   N matrix-vector products of the C x D embeddings alone
//                (OpenBLAS's sgemv on the CPU, cuBLAS's GEMM with one column
//                on CUDA): the work the greedy rule cannot avoid;
//   score floor  N passes over the C running scores (read the products,
//                read and write the scores: 12 C bytes a pass in float32);
//                on CUDA a device copy moving the same bytes.
// Median of --repeats timed runs after --warmup untimed ones. CUDA cases
// pass device pointers (the embeddings uploaded once, outside the timing).
//
// ./bench/hard_classes_bench --classes 10000,100000,1000000 --count 1024,1024,64
#include <npairs/npairs.h>
#include <omp.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <sstream>
#include <string>
#include <vector>

#include "blas.hpp"
#include "cuda_runtime.hpp"
#include "timing.hpp"

namespace {

struct Args {
  npairs_backend backend = NPAIRS_BACKEND_CPU;
  std::vector<int64_t> classes{10000, 100000, 1000000};
  std::vector<int64_t> counts{1024};
  int64_t dim = 256;
  int repeats = 5;
  int warmup = 1;
  int threads = 0;
  int device = 0;
};

std::vector<int64_t> parse_list(const std::string& text) {
  std::vector<int64_t> out;
  std::stringstream in(text);
  std::string item;
  while (std::getline(in, item, ',')) out.push_back(std::strtoll(item.c_str(), nullptr, 10));
  return out;
}

int usage() {
  std::fprintf(stderr,
               "usage: hard_classes_bench [--backend cpu|cuda] [--classes C,...] [--count N,...]\n"
               "  [--dim D] [--repeats R] [--warmup W] [--threads T] [--device d]\n"
               "--count: one N for every C, or one per C (default 1024); float32 embeddings\n");
  return 1;
}

bool parse(int argc, char** argv, Args* a) {
  for (int i = 1; i < argc; ++i) {
    const std::string key = argv[i];
    if (i + 1 >= argc) return false;
    const std::string value = argv[++i];
    if (key == "--backend" && (value == "cpu" || value == "cuda"))
      a->backend = value == "cpu" ? NPAIRS_BACKEND_CPU : NPAIRS_BACKEND_CUDA;
    else if (key == "--classes")
      a->classes = parse_list(value);
    else if (key == "--count")
      a->counts = parse_list(value);
    else if (key == "--dim")
      a->dim = std::atoll(value.c_str());
    else if (key == "--repeats")
      a->repeats = std::atoi(value.c_str());
    else if (key == "--warmup")
      a->warmup = std::atoi(value.c_str());
    else if (key == "--threads")
      a->threads = std::atoi(value.c_str());
    else if (key == "--device")
      a->device = std::atoi(value.c_str());
    else
      return false;
  }
  return !a->classes.empty() && (a->counts.size() == 1 || a->counts.size() == a->classes.size()) &&
         a->dim > 0 && a->repeats > 0 && a->warmup >= 0;
}

bool selected_ok(npairs_status status) {
  if (status != NPAIRS_OK) std::fprintf(stderr, "npairs_select_hard_classes: %s\n", npairs_last_error());
  return status == NPAIRS_OK;
}

struct Row {
  int64_t classes, count;
  bench::Stats select, gemv_floor, score_floor;
};

bool run_cpu(const Args& a, int64_t C, int64_t N, const std::vector<float>& e, npairs_context ctx, Row* row) {
  const int64_t D = a.dim;
  std::vector<int64_t> selected(static_cast<size_t>(N));
  npairs_class_selection s;
  npairs_class_selection_init(&s);
  s.class_embeddings = e.data();
  s.classes = C;
  s.dim = D;
  s.count = N;
  if (!bench::time_runs(a.warmup, a.repeats, [&] { return selected_ok(npairs_select_hard_classes(ctx, &s, selected.data())); },
                        &row->select))
    return false;
  std::vector<float> products(static_cast<size_t>(C)), best(static_cast<size_t>(C), -1.0f);
  const int threads = a.threads > 0 ? a.threads : omp_get_num_procs();
  omp_set_num_threads(threads);
  bench::time_runs(a.warmup, a.repeats, [&] {
    for (int64_t step = 0; step < N; ++step)
      npairs::blas::gemv(C, D, e.data(), e.data() + (step % C) * D, products.data());
    return true;
  }, &row->gemv_floor);
  bench::time_runs(a.warmup, a.repeats, [&] {
    for (int64_t step = 0; step < N; ++step) {
#pragma omp parallel for schedule(static) num_threads(threads)
      for (int64_t c = 0; c < C; ++c) best[size_t(c)] = std::max(best[size_t(c)], products[size_t(c)]);
    }
    return true;
  }, &row->score_floor);
  return true;
}

bool run_cuda(const Args& a, int64_t C, int64_t N, const std::vector<float>& e, npairs_context ctx,
              const bench::CudaRuntime& cuda, Row* row) {
  const int64_t D = a.dim;
  bench::DeviceBuffers buffers(cuda);
  void* embeddings = buffers.add(e.size() * sizeof(float), "embeddings");
  void* selected = buffers.add(size_t(N) * sizeof(int64_t), "selected");
  void* products = buffers.add(size_t(C) * sizeof(float), "products");
  if (!embeddings || !selected || !products || !cuda.upload(embeddings, e.data(), e.size() * sizeof(float), "upload"))
    return false;
  npairs_class_selection s;
  npairs_class_selection_init(&s);
  s.class_embeddings = embeddings;
  s.classes = C;
  s.dim = D;
  s.count = N;
  if (!bench::time_runs(a.warmup, a.repeats, [&] {
        return selected_ok(npairs_select_hard_classes(ctx, &s, static_cast<int64_t*>(selected))) &&
               npairs_context_synchronize(ctx) == NPAIRS_OK;
      }, &row->select))
    return false;
  bench::Gemm g{};
  g.trans_a = false;
  g.trans_b = true;  // x stored as one row of D
  g.m = C;
  g.n = 1;
  g.k = D;
  if (!bench::time_runs(a.warmup, a.repeats, [&] {
        for (int64_t step = 0; step < N; ++step)
          if (!cuda.gemm(NPAIRS_F32, false, g, embeddings, static_cast<const float*>(embeddings) + (step % C) * D,
                         products))
            return false;
        return cuda.synchronize();
      }, &row->gemv_floor))
    return false;
  bench::Stats copy;
  if (!bench::time_device_copy(cuda, 12.0 * double(C), a.warmup, a.repeats, &copy)) return false;
  row->score_floor.median_ms = copy.median_ms * double(N);
  row->score_floor.min_ms = copy.min_ms * double(N);
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  Args a;
  if (!parse(argc, argv, &a)) return usage();
  npairs_context ctx = nullptr;
  if (npairs_context_create(a.backend, a.device, &ctx) != NPAIRS_OK) {
    std::fprintf(stderr, "npairs_context_create: %s\n", npairs_last_error());
    return 1;
  }
  if (a.threads > 0) npairs_context_set_threads(ctx, a.threads);
  bench::CudaRuntime cuda;
  std::string why;
  if (a.backend == NPAIRS_BACKEND_CUDA && !cuda.load(a.device, &why)) {
    std::fprintf(stderr, "hard_classes_bench: %s\n", why.c_str());
    return 1;
  }
  std::printf("backend %s, D = %lld, float32, %d timed runs (median) after %d\n",
              a.backend == NPAIRS_BACKEND_CPU ? "cpu" : ("cuda " + cuda.device_name()).c_str(),
              static_cast<long long>(a.dim), a.repeats, a.warmup);
  std::printf("%10s %6s %12s %14s %14s %10s %10s %12s\n", "C", "N", "select ms", "GEMV floor ms", "score floor ms",
              "/GEMV", "/score", "ms per step");
  int status = 0;
  for (size_t i = 0; i < a.classes.size(); ++i) {
    const int64_t C = a.classes[i], N = a.counts.size() == 1 ? a.counts[0] : a.counts[i];
    // Uniform in [-1, 1) from a xorshift generator: fast enough for 10^7 x 256.
    std::vector<float> e(static_cast<size_t>(C * a.dim));
    uint64_t state = 0x9E3779B97F4A7C15ull ^ static_cast<uint64_t>(C);
    for (float& v : e) {
      state ^= state << 13;
      state ^= state >> 7;
      state ^= state << 17;
      v = static_cast<float>(static_cast<double>(state >> 11) * 0x1p-52 - 1.0);
    }
    Row row{C, N, {}, {}, {}};
    const bool ok = a.backend == NPAIRS_BACKEND_CPU ? run_cpu(a, C, N, e, ctx, &row) : run_cuda(a, C, N, e, ctx, cuda, &row);
    if (!ok) {
      status = 1;
      continue;
    }
    std::printf("%10lld %6lld %12.2f %14.2f %14.2f %10.2f %10.2f %12.4f\n", static_cast<long long>(C),
                static_cast<long long>(N), row.select.median_ms, row.gemv_floor.median_ms, row.score_floor.median_ms,
                row.select.median_ms / row.gemv_floor.median_ms, row.select.median_ms / row.score_floor.median_ms,
                row.select.median_ms / double(N));
    std::fflush(stdout);
  }
  npairs_context_destroy(ctx);
  return status;
}
