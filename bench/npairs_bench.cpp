// npairs_bench: times one N-pairs loss + gradients case through the public C API.
//
// Default case, on the best available backend (NPAIRS_BACKEND_AUTO):
//   CPU:  R = M = 2048,  D = 256, float32
//   CUDA: R = M = 16384, D = 512, float32
// Embeddings input (anchors, positives), int32 labels with about R/2 classes
// (every class twice, so every row has a positive), the default reduction
// (SUM_OVER_BATCH_SIZE), the loss plus the gradients for anchors and positives.
// Each timed call is npairs_loss followed by npairs_context_synchronize; the
// table reports the median (and minimum) over --repeats calls after --warmup
// untimed ones, and the effective rate of the three GEMMs (3 * 2*R*M*D flops).
//
// Memory on CUDA: "host" passes host pointers, which the library stages
// through the device (the time includes the copies). "device" passes device
// buffers; this program does not link the CUDA runtime, it dlopen()s
// libcudart for cudaMalloc/cudaMemcpy, and that row is skipped when libcudart
// cannot be loaded. Only the public header <npairs/npairs.h> is used.

#include <npairs/npairs.h>

#include <dlfcn.h>

#include <algorithm>
#include <chrono>
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iterator>
#include <random>
#include <string>
#include <vector>

namespace {

struct Args {
  std::string backend = "auto";  // auto | cpu | cuda
  std::string dtype = "f32";     // f32 | f64
  std::string memory = "auto";   // auto | host | device | both
  int64_t rows = 0;              // 0: backend default
  int64_t cols = 0;              // 0: = rows
  int64_t dim = 0;               // 0: backend default
  int repeats = 0;               // 0: backend default
  int warmup = -1;               // -1: backend default
  int threads = 0;               // CPU threads, 0: all
  int device = 0;                // CUDA device ordinal
  bool tf32 = false;
};

void usage(const char* argv0) {
  std::printf(
      "usage: %s [options]\n"
      "  --backend auto|cpu|cuda   backend (default auto: CUDA when available, else CPU)\n"
      "  --rows R                  anchors (default CPU 2048, CUDA 16384)\n"
      "  --cols M                  positives (default R)\n"
      "  --dim D                   embedding width (default CPU 256, CUDA 512)\n"
      "  --dtype f32|f64           floating type (default f32)\n"
      "  --repeats N               timed calls (default CPU 10, CUDA 20)\n"
      "  --warmup N                untimed calls first (default CPU 2, CUDA 3)\n"
      "  --threads N               CPU threads (default 0: all cores)\n"
      "  --device N                CUDA device ordinal (default 0)\n"
      "  --memory host|device|both CUDA only: host pointers (staged by the library),\n"
      "                            device buffers, or both rows (default both on CUDA)\n"
      "  --tf32                    CUDA only: allow TF32 tensor cores for float32 GEMMs\n",
      argv0);
}

bool parse_int(const char* s, int64_t lo, int64_t* out) {
  char* end = nullptr;
  errno = 0;
  const long long v = std::strtoll(s, &end, 10);
  if (errno != 0 || end == s || *end != '\0' || v < lo) return false;
  *out = static_cast<int64_t>(v);
  return true;
}

// Returns 0 on success, 1 on a bad command line, 2 when --help was asked for.
int parse_args(int argc, char** argv, Args* a) {
  for (int i = 1; i < argc; ++i) {
    std::string key = argv[i];
    std::string value;
    bool has_value = false;
    const size_t eq = key.find('=');
    if (key.rfind("--", 0) == 0 && eq != std::string::npos) {
      value = key.substr(eq + 1);
      key = key.substr(0, eq);
      has_value = true;
    }
    if (key == "--help" || key == "-h") {
      usage(argv[0]);
      return 2;
    }
    if (key == "--tf32") {
      a->tf32 = true;
      continue;
    }
    static const char* const kValued[] = {"--backend", "--dtype",   "--memory",  "--rows",
                                          "--cols",    "--dim",     "--repeats", "--warmup",
                                          "--threads", "--device"};
    if (std::none_of(std::begin(kValued), std::end(kValued),
                     [&](const char* k) { return key == k; })) {
      std::fprintf(stderr, "npairs_bench: unknown option %s (try --help)\n", key.c_str());
      return 1;
    }
    if (!has_value) {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "npairs_bench: %s needs a value\n", key.c_str());
        return 1;
      }
      value = argv[++i];
    }
    int64_t n = 0;
    bool ok = true;
    if (key == "--backend") {
      a->backend = value;
      ok = value == "auto" || value == "cpu" || value == "cuda";
    } else if (key == "--dtype") {
      a->dtype = value;
      ok = value == "f32" || value == "f64";
    } else if (key == "--memory") {
      a->memory = value;
      ok = value == "auto" || value == "host" || value == "device" || value == "both";
    } else if (key == "--rows") {
      ok = parse_int(value.c_str(), 1, &a->rows);
    } else if (key == "--cols") {
      ok = parse_int(value.c_str(), 1, &a->cols);
    } else if (key == "--dim") {
      ok = parse_int(value.c_str(), 1, &a->dim);
    } else if (key == "--repeats") {
      ok = parse_int(value.c_str(), 1, &n) && n <= 1000000;
      a->repeats = static_cast<int>(n);
    } else if (key == "--warmup") {
      ok = parse_int(value.c_str(), 0, &n) && n <= 1000000;
      a->warmup = static_cast<int>(n);
    } else if (key == "--threads") {
      ok = parse_int(value.c_str(), 0, &n) && n <= 1000000;
      a->threads = static_cast<int>(n);
    } else if (key == "--device") {
      ok = parse_int(value.c_str(), 0, &n) && n <= 1000000;
      a->device = static_cast<int>(n);
    } else {
      std::fprintf(stderr, "npairs_bench: unknown option %s (try --help)\n", key.c_str());
      return 1;
    }
    if (!ok) {
      std::fprintf(stderr, "npairs_bench: bad value '%s' for %s (try --help)\n", value.c_str(),
                   key.c_str());
      return 1;
    }
  }
  return 0;
}

bool check(npairs_status st, const char* what) {
  if (st == NPAIRS_OK) return true;
  std::fprintf(stderr, "npairs_bench: %s failed: %s (%d): %s\n", what, npairs_status_string(st),
               static_cast<int>(st), npairs_last_error());
  return false;
}

// The few CUDA runtime entry points the "device" rows need, loaded at run time
// so that this program neither includes CUDA headers nor links the runtime.
struct CudaRuntime {
  using MallocFn = int (*)(void**, size_t);
  using FreeFn = int (*)(void*);
  using MemcpyFn = int (*)(void*, const void*, size_t, int);
  using SetDeviceFn = int (*)(int);
  using ErrorStringFn = const char* (*)(int);
  static constexpr int kHostToDevice = 1;  // cudaMemcpyHostToDevice
  static constexpr int kDeviceToHost = 2;  // cudaMemcpyDeviceToHost

  void* handle = nullptr;
  std::string name;
  MallocFn malloc_fn = nullptr;
  FreeFn free_fn = nullptr;
  MemcpyFn memcpy_fn = nullptr;
  SetDeviceFn set_device_fn = nullptr;
  ErrorStringFn error_string_fn = nullptr;

  bool load() {
    // Versioned names first: the one libnpairs itself loaded is then reused.
    std::vector<std::string> names = {"libcudart.so.13", "libcudart.so.12", "libcudart.so"};
#ifdef NPAIRS_BENCH_CUDART_DIR
    names.push_back(std::string(NPAIRS_BENCH_CUDART_DIR) + "/libcudart.so");
#endif
    for (const std::string& n : names) {
      handle = dlopen(n.c_str(), RTLD_NOW | RTLD_LOCAL);
      if (handle != nullptr) {
        name = n;
        break;
      }
    }
    if (handle == nullptr) return false;
    malloc_fn = reinterpret_cast<MallocFn>(dlsym(handle, "cudaMalloc"));
    free_fn = reinterpret_cast<FreeFn>(dlsym(handle, "cudaFree"));
    memcpy_fn = reinterpret_cast<MemcpyFn>(dlsym(handle, "cudaMemcpy"));
    set_device_fn = reinterpret_cast<SetDeviceFn>(dlsym(handle, "cudaSetDevice"));
    error_string_fn = reinterpret_cast<ErrorStringFn>(dlsym(handle, "cudaGetErrorString"));
    return malloc_fn && free_fn && memcpy_fn && set_device_fn && error_string_fn;
  }

  bool ok(int err, const char* what) const {
    if (err == 0) return true;
    std::fprintf(stderr, "npairs_bench: %s failed: CUDA error %d: %s\n", what, err,
                 error_string_fn(err));
    return false;
  }
};

// Device copies of the inputs and room for the outputs; freed on scope exit.
struct DeviceBuffers {
  const CudaRuntime* rt = nullptr;
  std::vector<void*> ptrs;
  ~DeviceBuffers() {
    for (void* p : ptrs) rt->free_fn(p);
  }
  // Allocates `bytes` and, when `src` is given, copies it there.
  void* add(size_t bytes, const void* src, const char* what) {
    void* p = nullptr;
    if (!rt->ok(rt->malloc_fn(&p, bytes), what)) return nullptr;
    ptrs.push_back(p);
    if (src != nullptr && !rt->ok(rt->memcpy_fn(p, src, bytes, CudaRuntime::kHostToDevice), what))
      return nullptr;
    return p;
  }
};

struct Result {
  double median_ms = 0;
  double min_ms = 0;
  double loss = 0;
};

template <typename T>
struct HostData {
  std::vector<T> anchors, positives, grad_anchors, grad_positives;
  std::vector<int32_t> labels, column_labels;  // column_labels empty when M == R
  T loss = 0;
};

template <typename T>
void fill(HostData<T>* h, int64_t R, int64_t M, int64_t D) {
  std::mt19937_64 rng(12345);
  std::normal_distribution<double> normal(0.0, 1.0);
  auto unit_rows = [&](std::vector<T>* v, int64_t n) {
    v->resize(static_cast<size_t>(n * D));
    for (int64_t i = 0; i < n; ++i) {
      double sq = 0;
      for (int64_t k = 0; k < D; ++k) {
        const double x = normal(rng);
        (*v)[static_cast<size_t>(i * D + k)] = static_cast<T>(x);
        sq += x * x;
      }
      const double s = 1.0 / std::sqrt(sq > 0 ? sq : 1.0);
      for (int64_t k = 0; k < D; ++k) {
        T& x = (*v)[static_cast<size_t>(i * D + k)];
        x = static_cast<T>(static_cast<double>(x) * s);
      }
    }
  };
  unit_rows(&h->anchors, R);
  unit_rows(&h->positives, M);
  h->grad_anchors.assign(static_cast<size_t>(R * D), T(0));
  h->grad_positives.assign(static_cast<size_t>(M * D), T(0));
  // About min(R, M)/2 classes; with R = M every class appears exactly twice
  // among the rows and among the columns, so every row has a positive.
  const int64_t classes = std::max<int64_t>(1, std::min(R, M) / 2);
  h->labels.resize(static_cast<size_t>(R));
  for (int64_t i = 0; i < R; ++i) h->labels[static_cast<size_t>(i)] = static_cast<int32_t>(i % classes);
  h->column_labels.clear();
  if (M != R) {
    h->column_labels.resize(static_cast<size_t>(M));
    for (int64_t j = 0; j < M; ++j)
      h->column_labels[static_cast<size_t>(j)] = static_cast<int32_t>(j % classes);
  }
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 == 1 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// Times npairs_loss (+ synchronize) on the given pointers.
bool time_calls(npairs_context ctx, const npairs_options* opt, const npairs_problem* prob,
                void* loss, npairs_gradients* grads, int warmup, int repeats, Result* r) {
  using clock = std::chrono::steady_clock;
  std::vector<double> ms;
  ms.reserve(static_cast<size_t>(repeats));
  for (int it = 0; it < warmup + repeats; ++it) {
    const auto t0 = clock::now();
    if (!check(npairs_loss(ctx, opt, prob, nullptr, loss, grads), "npairs_loss")) return false;
    if (!check(npairs_context_synchronize(ctx), "npairs_context_synchronize")) return false;
    const auto t1 = clock::now();
    if (it >= warmup) ms.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
  }
  r->median_ms = median(ms);
  r->min_ms = *std::min_element(ms.begin(), ms.end());
  return true;
}

template <typename T>
bool run_host(npairs_context ctx, const npairs_options* opt, npairs_dtype dtype, HostData<T>* h,
              int64_t R, int64_t M, int64_t D, int warmup, int repeats, Result* r) {
  npairs_problem prob;
  npairs_problem_init(&prob);
  prob.rows = R;
  prob.cols = M;
  prob.dtype = dtype;
  prob.labels = h->labels.data();
  prob.column_labels = h->column_labels.empty() ? nullptr : h->column_labels.data();
  prob.label_dtype = NPAIRS_I32;
  prob.anchors = h->anchors.data();
  prob.positives = h->positives.data();
  prob.dim = D;
  npairs_gradients grads;
  npairs_gradients_init(&grads);
  grads.anchors = h->grad_anchors.data();
  grads.positives = h->grad_positives.data();
  if (!time_calls(ctx, opt, &prob, &h->loss, &grads, warmup, repeats, r)) return false;
  r->loss = static_cast<double>(h->loss);
  return true;
}

template <typename T>
bool run_device(const CudaRuntime& rt, int device, npairs_context ctx, const npairs_options* opt,
                npairs_dtype dtype, const HostData<T>& h, int64_t R, int64_t M, int64_t D,
                int warmup, int repeats, Result* r) {
  if (!rt.ok(rt.set_device_fn(device), "cudaSetDevice")) return false;
  DeviceBuffers buf;
  buf.rt = &rt;
  const size_t a_bytes = static_cast<size_t>(R * D) * sizeof(T);
  const size_t p_bytes = static_cast<size_t>(M * D) * sizeof(T);
  npairs_problem prob;
  npairs_problem_init(&prob);
  prob.rows = R;
  prob.cols = M;
  prob.dtype = dtype;
  prob.label_dtype = NPAIRS_I32;
  prob.dim = D;
  prob.labels = buf.add(h.labels.size() * sizeof(int32_t), h.labels.data(), "cudaMalloc(labels)");
  if (prob.labels == nullptr) return false;
  if (!h.column_labels.empty()) {
    prob.column_labels = buf.add(h.column_labels.size() * sizeof(int32_t), h.column_labels.data(),
                                 "cudaMalloc(column_labels)");
    if (prob.column_labels == nullptr) return false;
  }
  prob.anchors = buf.add(a_bytes, h.anchors.data(), "cudaMalloc(anchors)");
  prob.positives = buf.add(p_bytes, h.positives.data(), "cudaMalloc(positives)");
  void* loss = buf.add(sizeof(T), nullptr, "cudaMalloc(loss)");
  npairs_gradients grads;
  npairs_gradients_init(&grads);
  grads.anchors = buf.add(a_bytes, nullptr, "cudaMalloc(grad anchors)");
  grads.positives = buf.add(p_bytes, nullptr, "cudaMalloc(grad positives)");
  if (!prob.anchors || !prob.positives || !loss || !grads.anchors || !grads.positives) return false;
  if (!time_calls(ctx, opt, &prob, loss, &grads, warmup, repeats, r)) return false;
  T host_loss = 0;
  if (!rt.ok(rt.memcpy_fn(&host_loss, loss, sizeof(T), CudaRuntime::kDeviceToHost),
             "cudaMemcpy(loss)"))
    return false;
  r->loss = static_cast<double>(host_loss);
  return true;
}

const char* backend_name(npairs_backend b) {
  return b == NPAIRS_BACKEND_CPU ? "cpu" : b == NPAIRS_BACKEND_CUDA ? "cuda" : "?";
}

template <typename T>
int bench(const Args& a, npairs_context ctx, npairs_backend backend, npairs_dtype dtype) {
  const bool cuda = backend == NPAIRS_BACKEND_CUDA;
  const int64_t R = a.rows > 0 ? a.rows : (cuda ? 16384 : 2048);
  const int64_t M = a.cols > 0 ? a.cols : R;
  const int64_t D = a.dim > 0 ? a.dim : (cuda ? 512 : 256);
  const int repeats = a.repeats > 0 ? a.repeats : (cuda ? 20 : 10);
  const int warmup = a.warmup >= 0 ? a.warmup : (cuda ? 3 : 2);
  std::string memory = a.memory;
  if (memory == "auto") memory = cuda ? "both" : "host";
  if (!cuda && memory != "host") {
    std::fprintf(stderr, "npairs_bench: --memory %s needs the CUDA backend\n", memory.c_str());
    return 1;
  }

  npairs_options opt;
  npairs_options_init(&opt);
  if (a.tf32) opt.flags |= NPAIRS_FLAG_ALLOW_TF32;

  HostData<T> h;
  fill(&h, R, M, D);

  std::printf("libnpairs %s benchmark: N-pairs loss + dL/dA + dL/dP, embeddings input,\n",
              npairs_version_string());
  std::printf("%lld classes (int32 labels), default reduction, %d warm-up + %d timed calls%s%s\n",
              static_cast<long long>(std::max<int64_t>(1, std::min(R, M) / 2)), warmup, repeats,
              a.tf32 ? ", TF32 allowed" : "",
              cuda ? "" : (a.threads > 0 ? "" : ", all CPU cores"));
  if (!cuda && a.threads > 0) std::printf("CPU threads: %d\n", a.threads);

  const double flops = 6.0 * static_cast<double>(R) * static_cast<double>(M) * static_cast<double>(D);
  const char* dname = dtype == NPAIRS_F32 ? "f32" : "f64";
  std::vector<std::string> lines;
  std::vector<std::string> notes;
  auto add_row = [&](const char* mem, const Result& r) {
    char line[256];
    std::snprintf(line, sizeof line, "%-7s %-5s %7lld %7lld %5lld  %-6s %10.3f %10.3f %10.1f  %.6f",
                  backend_name(backend), dname, static_cast<long long>(R),
                  static_cast<long long>(M), static_cast<long long>(D), mem, r.median_ms,
                  r.min_ms, flops / (r.median_ms * 1e6), r.loss);
    lines.push_back(line);
  };

  bool ok = true;
  if (memory == "host" || memory == "both") {
    Result r;
    ok = run_host(ctx, &opt, dtype, &h, R, M, D, warmup, repeats, &r);
    if (ok) add_row("host", r);
    if (cuda) notes.push_back("host: host pointers; the library stages them through the device, "
                              "and the time includes those copies");
  }
  if (ok && (memory == "device" || memory == "both")) {
    CudaRuntime rt;
    if (rt.load()) {
      Result r;
      ok = run_device(rt, a.device, ctx, &opt, dtype, h, R, M, D, warmup, repeats, &r);
      if (ok) add_row("device", r);
      notes.push_back("device: device buffers (cudaMalloc through " + rt.name +
                      "); the calls are queued, the clock stops after npairs_context_synchronize");
    } else if (memory == "device") {
      std::fprintf(stderr, "npairs_bench: --memory device: cannot load libcudart: %s\n",
                   dlerror());
      ok = false;
    } else {
      notes.push_back("device: skipped, libcudart could not be loaded");
    }
  }
  if (!lines.empty()) {
    std::printf("\n%-7s %-5s %7s %7s %5s  %-6s %10s %10s %10s  %s\n", "backend", "dtype", "rows",
                "cols", "dim", "memory", "median_ms", "min_ms", "GFLOP/s", "loss");
    for (const std::string& l : lines) std::printf("%s\n", l.c_str());
    std::printf("\nGFLOP/s counts the 3 GEMMs only (3 * 2*R*M*D = %.3g flop per call), at the median.\n",
                flops);
    for (const std::string& n : notes) std::printf("%s\n", n.c_str());
  }
  return ok ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  Args a;
  const int parsed = parse_args(argc, argv, &a);
  if (parsed == 2) return 0;
  if (parsed != 0) return 1;

  const npairs_backend wanted = a.backend == "cpu"    ? NPAIRS_BACKEND_CPU
                                : a.backend == "cuda" ? NPAIRS_BACKEND_CUDA
                                                      : NPAIRS_BACKEND_AUTO;
  npairs_context ctx = nullptr;
  if (!check(npairs_context_create(wanted, a.device, &ctx), "npairs_context_create")) return 1;
  npairs_backend backend = NPAIRS_BACKEND_AUTO;
  int rc = 1;
  if (check(npairs_context_backend(ctx, &backend), "npairs_context_backend") &&
      (backend != NPAIRS_BACKEND_CPU ||
       check(npairs_context_set_threads(ctx, a.threads), "npairs_context_set_threads"))) {
    rc = a.dtype == "f64" ? bench<double>(a, ctx, backend, NPAIRS_F64)
                          : bench<float>(a, ctx, backend, NPAIRS_F32);
  }
  if (!check(npairs_context_destroy(ctx), "npairs_context_destroy")) rc = 1;
  return rc;
}
