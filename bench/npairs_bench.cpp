// npairs_bench: times the N-pairs loss and its gradients through the public C
// API, next to what bounds it on the same machine in the same run.
//
// Default sweep, on the best available backend (NPAIRS_BACKEND_AUTO):
//   CPU:  R = M in {1024, 2048, 4096},   D = 256, float32
//   CUDA: R = M in {4096, 16384, 32768}, D = 512, float32
// each with similarity input (loss + dL/dS) and embeddings input (loss +
// dL/dA + dL/dP), int32 labels with min(R, M)/2 classes (each label twice),
// the default options (SUM_OVER_BATCH_SIZE, temperature 1). --dtype f16 and
// bf16 round the same float data to 16 bits (every floating array of the call
// is then in that dtype); a case the library answers UNSUPPORTED for (16-bit
// floats on the CPU backend) is skipped with its reason, not failed.
//
// For each case it reports the median (and minimum) time of npairs_loss +
// npairs_context_synchronize over --repeats calls after --warmup untimed ones,
// and, measured the same way in the same run:
//  - copy:    a memcpy moving as many bytes as the case must (read the logits
//             or embeddings and the targets once, write each gradient once);
//             on the CPU split over the row pass's threads, on CUDA a
//             device-to-device cudaMemcpy. "x copy" = time / copy time.
//  - GEMMs:   the same GEMMs alone (shapes and order as the library's) through
//             the same BLAS: cblas on the CPU, cuBLAS on CUDA (dlopen()ed; the
//             ceiling is skipped without it). "x GEMMs" = time / GEMM time.
//  - unfused: (CPU only, f32 and f64) the loss and gradients computed the way
//             a framework does, one pass per op (unfused_cpu.cpp); checked
//             against the library (loss, and sampled gradient entries).
// Effective GB/s counts the bytes above; GFLOP/s counts the GEMMs (2 m n k).
//
// Memory on CUDA: "host" passes host pointers, which the library stages
// through the device (the time includes those copies; no ceilings). "device"
// passes device buffers made through a dlopen()ed libcudart.
//
// A progress line per case goes to stderr, the table to stdout, and --json
// FILE writes every figure with the machine, the date and the command line.

#include <npairs/npairs.h>
#include <omp.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

#include "bench_case.hpp"
#include "cpu_blas.hpp"
#include "cpu_ceilings.hpp"
#include "cuda_runtime.hpp"
#include "json_writer.hpp"
#include "timing.hpp"
#include "unfused_cpu.hpp"

namespace bench {
namespace {

struct Args {
  std::string backend = "auto";  // auto | cpu | cuda
  npairs_dtype dtype = NPAIRS_F32;
  std::string input = "both";    // similarity | embeddings | both
  std::string targets = "labels";
  std::string grads = "input";   // none | input | similarity | embeddings | all
  std::string memory = "auto";   // auto | host | device | both
  std::vector<int64_t> rows;     // empty: backend default
  int64_t cols = 0;              // 0: = rows
  int64_t dim = 0;               // 0: backend default
  int64_t classes = 0;           // 0: default
  int repeats = 0;               // 0: backend default
  int warmup = -1;               // -1: backend default
  int threads = 0;               // CPU threads, 0: all
  int device = 0;                // CUDA device ordinal
  bool tf32 = false;
  bool baselines = true;
  size_t workspace_limit = 0;    // --workspace-limit, 0: none
  std::string symmetric = "off"; // --symmetric off|on|both
  bool dtau = false;             // --dtau
  std::string json;              // --json FILE
};

void usage(const char* argv0) {
  std::printf(
      "usage: %s [options]\n"
      "  --backend auto|cpu|cuda     backend (default auto: CUDA when available, else CPU)\n"
      "  --rows R[,R...]             anchors, one case per value\n"
      "                              (default CPU 1024,2048,4096; CUDA 4096,16384,32768)\n"
      "  --cols M                    positives (default R)\n"
      "  --dim D                     embedding width (default CPU 256, CUDA 512)\n"
      "  --dtype f32|f64|f16|bf16    floating type of every floating array (default f32;\n"
      "                              f16 and bf16 on CUDA only)\n"
      "  --input similarity|embeddings|both   logits given (default both)\n"
      "  --targets labels|multilabels         int32 labels, or multi-hot rows (default labels)\n"
      "  --classes K                 labels: distinct labels (default min(R,M)/2);\n"
      "                              multilabels: K (default 64, two classes per row)\n"
      "  --grads none|input|similarity|embeddings|all\n"
      "                              gradients wanted (default input: dS for similarity,\n"
      "                              dA+dP for embeddings; all: every one the input has)\n"
      "  --repeats N                 timed calls (default CPU 10, CUDA 20)\n"
      "  --warmup N                  untimed calls first (default CPU 2, CUDA 3)\n"
      "  --threads N                 CPU threads (default 0: all cores)\n"
      "  --device N                  CUDA device ordinal (default 0)\n"
      "  --memory host|device|both   CUDA only: host pointers (staged by the library),\n"
      "                              device buffers, or both (default both)\n"
      "  --tf32                      CUDA only: allow TF32 tensor cores for float32 GEMMs\n"
      "  --workspace-limit BYTES     npairs_context_set_workspace_limit (suffix K, M or G:\n"
      "                              KiB, MiB, GiB; default 0: none); the GEMM ceiling then\n"
      "                              runs piece by piece as the library streams\n"
      "  --no-baselines              time the library only (no copy, GEMM, unfused runs)\n"
      "  --symmetric off|on|both     NPAIRS_FLAG_SYMMETRIC (CLIP's loss, both directions); both:\n"
      "                              each case without, then with it, and their ratio\n"
      "  --dtau                      also ask for dL/dtau (grads.temperature)\n"
      "  --json FILE                 write every figure, the machine and the command as JSON\n"
      "peak_MiB is the growth of the process's resident memory over one call on a fresh\n"
      "context (CPU): the library's workspace and whatever else the call touches first.\n",
      argv0);
}

bool parse_int(const std::string& s, int64_t lo, int64_t* out) {
  char* end = nullptr;
  errno = 0;
  const long long v = std::strtoll(s.c_str(), &end, 10);
  if (errno != 0 || end == s.c_str() || *end != '\0' || v < lo) return false;
  *out = static_cast<int64_t>(v);
  return true;
}

// A byte count with an optional K, M or G suffix (powers of 1024).
bool parse_bytes(const std::string& s, size_t* out) {
  if (s.empty()) return false;
  int shift = 0;
  std::string digits = s;
  switch (s.back()) {
    case 'K': shift = 10; break;
    case 'M': shift = 20; break;
    case 'G': shift = 30; break;
    default: break;
  }
  if (shift != 0) digits.pop_back();
  int64_t n = 0;
  if (!parse_int(digits, 0, &n) || n > (int64_t(1) << (62 - shift))) return false;
  *out = size_t(n) << shift;
  return true;
}

bool parse_int_list(const std::string& s, int64_t lo, std::vector<int64_t>* out) {
  out->clear();
  size_t start = 0;
  while (start <= s.size()) {
    const size_t comma = std::min(s.find(',', start), s.size());
    int64_t v = 0;
    if (!parse_int(s.substr(start, comma - start), lo, &v)) return false;
    out->push_back(v);
    start = comma + 1;
  }
  return !out->empty();
}

bool one_of(const std::string& v, std::initializer_list<const char*> choices) {
  return std::any_of(choices.begin(), choices.end(), [&](const char* c) { return v == c; });
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
    if (key == "--dtau") {
      a->dtau = true;
      continue;
    }
    if (key == "--no-baselines") {
      a->baselines = false;
      continue;
    }
    static const char* const kValued[] = {
        "--backend", "--dtype",   "--input",  "--targets", "--grads",  "--memory", "--rows",
        "--cols",    "--dim",     "--classes", "--repeats", "--warmup", "--threads", "--device",
        "--json",    "--workspace-limit", "--symmetric"};
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
      ok = one_of(a->backend = value, {"auto", "cpu", "cuda"});
    } else if (key == "--dtype") {
      ok = dtype_from_name(value, &a->dtype);
    } else if (key == "--input") {
      ok = one_of(a->input = value, {"similarity", "embeddings", "both"});
    } else if (key == "--targets") {
      ok = one_of(a->targets = value, {"labels", "multilabels"});
    } else if (key == "--grads") {
      ok = one_of(a->grads = value, {"none", "input", "similarity", "embeddings", "all"});
    } else if (key == "--memory") {
      ok = one_of(a->memory = value, {"auto", "host", "device", "both"});
    } else if (key == "--rows") {
      ok = parse_int_list(value, 1, &a->rows);
    } else if (key == "--cols") {
      ok = parse_int(value, 1, &a->cols);
    } else if (key == "--dim") {
      ok = parse_int(value, 1, &a->dim);
    } else if (key == "--classes") {
      ok = parse_int(value, 1, &a->classes);
    } else if (key == "--workspace-limit") {
      ok = parse_bytes(value, &a->workspace_limit);
    } else if (key == "--symmetric") {
      ok = value == "off" || value == "on" || value == "both";
      a->symmetric = value;
    } else if (key == "--json") {
      a->json = value;
      ok = !value.empty();
    } else {  // --repeats, --warmup, --threads, --device
      ok = parse_int(value, key == "--repeats" ? 1 : 0, &n) && n <= 1000000;
      int* target = key == "--repeats" ? &a->repeats
                    : key == "--warmup" ? &a->warmup
                    : key == "--threads" ? &a->threads
                                         : &a->device;
      *target = static_cast<int>(n);
    }
    if (!ok) {
      std::fprintf(stderr, "npairs_bench: bad value '%s' for %s (try --help)\n", value.c_str(),
                   key.c_str());
      return 1;
    }
  }
  if (a->input == "similarity" || a->input == "both") {
    if (a->grads == "embeddings") {
      std::fprintf(stderr, "npairs_bench: --grads embeddings needs --input embeddings\n");
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

// ---------------------------------------------------------------------------
// The cases of a run

struct Settings {
  int warmup = 0, repeats = 0, threads = 1;
  bool baselines = true;
};

std::vector<CaseSpec> make_cases(const Args& a, npairs_backend backend) {
  const bool cuda = backend == NPAIRS_BACKEND_CUDA;
  std::vector<int64_t> rows = a.rows;
  if (rows.empty()) rows = cuda ? std::vector<int64_t>{4096, 16384, 32768}
                                : std::vector<int64_t>{1024, 2048, 4096};
  std::vector<Input> inputs;
  if (a.input != "embeddings") inputs.push_back(Input::similarity);
  if (a.input != "similarity") inputs.push_back(Input::embeddings);
  std::vector<bool> device_memory = {false};
  if (cuda && a.memory != "host") device_memory = a.memory == "device" ? std::vector<bool>{true}
                                                                       : std::vector<bool>{false, true};
  std::vector<bool> symmetric = {a.symmetric == "on"};
  if (a.symmetric == "both") symmetric = {false, true};
  std::vector<CaseSpec> cases;
  for (int64_t R : rows) {
    for (Input input : inputs) {
      for (bool on_device : device_memory) {
        for (bool both_directions : symmetric) {
          CaseSpec s;
          s.backend = backend;
          s.dtype = a.dtype;
          s.input = input;
          s.targets = a.targets == "multilabels" ? Targets::multilabels : Targets::labels;
          s.rows = R;
          s.cols = a.cols > 0 ? a.cols : R;
          s.dim = input == Input::embeddings ? (a.dim > 0 ? a.dim : (cuda ? 512 : 256)) : 0;
          s.classes = a.classes > 0 ? a.classes
                      : s.targets == Targets::labels ? std::max<int64_t>(1, std::min(s.rows, s.cols) / 2)
                                                     : 64;
          const bool embeddings = input == Input::embeddings;
          s.grad_similarity = a.grads == "similarity" || a.grads == "all" ||
                              (a.grads == "input" && !embeddings);
          s.grad_embeddings = embeddings && (a.grads == "embeddings" || a.grads == "all" ||
                                             a.grads == "input");
          s.device_memory = on_device;
          s.allow_tf32 = a.tf32;
          s.workspace_limit = a.workspace_limit;
          s.symmetric = both_directions;
          s.grad_temperature = a.dtau;
          cases.push_back(s);
        }
      }
    }
  }
  return cases;
}

struct Check {
  double loss_error = 0;      // |loss - reference| / |reference|
  double gradient_error = 0;  // max |g - reference| / max |reference| over sampled entries
  bool passed = false;
};

struct CaseResult {
  CaseSpec spec;
  std::string error;        // empty when the case ran or was unsupported
  std::string unsupported;  // the library's message when it answered UNSUPPORTED
  Stats library;
  double loss = 0;
  double peak_bytes = -1;  // resident memory growth over one call (CPU); -1: not measured
  bool has_copy = false, has_gemms = false, has_unfused = false;
  Stats copy, gemms, unfused;
  Check check;
  std::string skipped;  // why a baseline was not measured, if one was not
};

// The largest error of `values` against `reference` over a fixed sample of
// entries, relative to the largest magnitude in `reference`.
template <class T>
double sampled_error(const std::vector<T>& values, const std::vector<T>& reference) {
  if (reference.empty()) return 0;
  double scale = 0;
  for (T r : reference) scale = std::max(scale, std::fabs(double(r)));
  const uint64_t n = reference.size();
  double worst = 0;
  for (uint64_t s = 0; s < 4096; ++s) {
    const size_t i = size_t(uint64_t((hash_uniform(7, s) + 1.0) * 0.5 * double(n)) % n);
    worst = std::max(worst, std::fabs(double(values[i]) - double(reference[i])));
  }
  return scale > 0 ? worst / scale : worst;
}

template <class T>
Check compare(const CaseSpec& spec, const HostCase<T>& fused, const UnfusedCpu<T>& unfused) {
  Check c;
  c.loss_error = std::fabs(double(fused.loss) - unfused.loss()) / std::max(std::fabs(unfused.loss()), 1e-30);
  if (spec.grad_similarity)
    c.gradient_error = sampled_error(fused.grad_similarity, unfused.grad_similarity());
  if (spec.grad_embeddings) {
    c.gradient_error = std::max({c.gradient_error,
                                 sampled_error(fused.grad_anchors, unfused.grad_anchors()),
                                 sampled_error(fused.grad_positives, unfused.grad_positives())});
  }
  const bool f32 = spec.dtype == NPAIRS_F32;
  c.passed = c.loss_error <= (f32 ? 1e-4 : 1e-10) && c.gradient_error <= (f32 ? 1e-3 : 1e-8);
  return c;
}

// Device copies of every array of the case (inputs uploaded).
bool mirror_on_device(const CudaRuntime& cuda, const CaseArrays& host, DeviceBuffers* buffers,
                      CaseArrays* device) {
  for (int i = 0; i < kArrayCount; ++i) {
    device->bytes[i] = host.bytes[i];
    if (host.bytes[i] == 0) continue;
    device->ptr[i] = buffers->add(host.bytes[i], "cudaMalloc");
    if (device->ptr[i] == nullptr) return false;
    if (i < kFirstOutput && !cuda.upload(device->ptr[i], host.ptr[i], host.bytes[i], "cudaMemcpy"))
      return false;
  }
  return true;
}

template <class T>
double value_of(T v, npairs_dtype dtype) {
  if constexpr (std::is_same_v<T, HalfBits>) return from_half_bits(v, dtype);
  else return double(v);
}

// Lets the previous phase's idle worker threads (OpenBLAS's spin for about
// 2^28 cycles after a GEMM, OpenMP's for a while after a parallel region) go
// to sleep, so that they do not take cores from the next measurement.
void settle() { std::this_thread::sleep_for(std::chrono::milliseconds(300)); }

// A field of /proc/self/status in bytes (its kB figure), or -1.
double status_bytes(const char* field) {
  std::ifstream status("/proc/self/status");
  std::string line;
  const std::string prefix = std::string(field) + ":";
  while (std::getline(status, line)) {
    if (line.rfind(prefix, 0) == 0) return 1024.0 * std::strtod(line.c_str() + prefix.size(), nullptr);
  }
  return -1;
}

// How far one run of `call` raises the resident memory above what it was:
// the high-water mark (VmHWM) is reset first (clear_refs 5, Linux), -1 when
// that cannot be done.
template <class F>
double peak_growth(F&& call) {
  {
    std::ofstream clear("/proc/self/clear_refs");
    clear << "5";
    if (!clear.flush()) return -1;
  }
  const double before = status_bytes("VmRSS");
  call();
  const double peak = status_bytes("VmHWM");
  return before < 0 || peak < 0 ? -1 : peak - before;
}

template <class T>
CaseResult run_case(const CaseSpec& spec, npairs_context ctx, const Settings& settings,
                    const CudaRuntime* cuda) {
  CaseResult result;
  result.spec = spec;
  HostCase<T> data(spec);
  CaseArrays arrays = data.arrays();
  std::unique_ptr<DeviceBuffers> device_buffers;
  if (spec.device_memory) {
    device_buffers = std::make_unique<DeviceBuffers>(*cuda);
    CaseArrays on_device;
    if (!mirror_on_device(*cuda, arrays, device_buffers.get(), &on_device)) {
      result.error = "device buffers";
      return result;
    }
    arrays = on_device;
  }

  npairs_options options;
  npairs_options_init(&options);
  if (spec.allow_tf32) options.flags |= NPAIRS_FLAG_ALLOW_TF32;
  if (spec.symmetric) options.flags |= NPAIRS_FLAG_SYMMETRIC;
  const npairs_problem problem = make_problem(spec, arrays);
  npairs_gradients grads = make_gradients(arrays);
  settle();
  npairs_status status = NPAIRS_OK;
  const bool timed = time_runs(settings.warmup, settings.repeats, [&] {
    status = npairs_loss(ctx, &options, &problem, nullptr, arrays.ptr[kLoss], &grads);
    return status != NPAIRS_ERROR_UNSUPPORTED && check(status, "npairs_loss") &&
           check(npairs_context_synchronize(ctx), "npairs_context_synchronize");
  }, &result.library);
  if (!timed) {
    if (status == NPAIRS_ERROR_UNSUPPORTED) result.unsupported = npairs_last_error();
    else result.error = npairs_last_error();
    return result;
  }
  if (spec.device_memory && !cuda->download(&data.loss, arrays.ptr[kLoss], sizeof(T), "cudaMemcpy(loss)")) {
    result.error = "loss download";
    return result;
  }
  result.loss = value_of(data.loss, spec.dtype);
  if (spec.backend == NPAIRS_BACKEND_CPU) {
    // On a fresh context, so that the workspace it allocates counts.
    npairs_context fresh = nullptr;
    if (npairs_context_create(NPAIRS_BACKEND_CPU, 0, &fresh) == NPAIRS_OK &&
        npairs_context_set_threads(fresh, settings.threads) == NPAIRS_OK &&
        npairs_context_set_workspace_limit(fresh, spec.workspace_limit) == NPAIRS_OK) {
      result.peak_bytes =
          peak_growth([&] { npairs_loss(fresh, &options, &problem, nullptr, arrays.ptr[kLoss], &grads); });
    }
    npairs_context_destroy(fresh);
  }
  if (!settings.baselines) return result;

  const bool has_gemms = !library_gemms(spec).empty();
  if (spec.backend == NPAIRS_BACKEND_CPU) {
    // The CPU baselines exist in float and double only (the CPU backend
    // answers UNSUPPORTED for 16-bit floats, so those cases end above).
    if constexpr (!std::is_same_v<T, HalfBits>) {
      settle();
      result.copy = time_host_copy(bytes_moved(spec), settings.threads, settings.warmup, settings.repeats);
      result.has_copy = true;
      settle();
      if (has_gemms) result.gemms = time_cpu_gemms<T>(spec, settings.warmup, settings.repeats);
      result.has_gemms = has_gemms;
      settle();
      if (spec.workspace_limit != 0) {
        result.skipped = "no unfused baseline under a workspace limit (it holds the R x M logits)";
        return result;
      }
      if (spec.symmetric || spec.grad_temperature) {
        result.skipped = "no unfused baseline for the symmetric loss or dL/dtau (it computes the row loss and dS)";
        return result;
      }
      UnfusedCpu<T> unfused(spec, data, settings.threads);
      time_runs(settings.warmup, settings.repeats, [&] {
        unfused.run();
        return true;
      }, &result.unfused);
      result.has_unfused = true;
      result.check = compare(spec, data, unfused);
    }
  } else if (!spec.device_memory) {
    result.skipped = "no ceilings for host pointers (the time includes the library's copies)";
  } else {
    result.has_copy = time_device_copy(*cuda, bytes_moved(spec), settings.warmup, settings.repeats,
                                       &result.copy);
    if (has_gemms && cuda->has_cublas())
      result.has_gemms = time_cublas_gemms(*cuda, spec, settings.warmup, settings.repeats, &result.gemms);
    if (has_gemms && !cuda->has_cublas()) result.skipped = "GEMM ceiling skipped: libcublas not loaded";
  }
  return result;
}

// ---------------------------------------------------------------------------
// Reporting

std::string case_label(const CaseSpec& s) {
  char buf[160];
  std::snprintf(buf, sizeof buf, "%s %s %s %s %s R=%lld M=%lld%s%s", backend_name(s.backend),
                dtype_name(s.dtype), input_name(s.input), targets_name(s.targets),
                grads_name(s).c_str(), static_cast<long long>(s.rows), static_cast<long long>(s.cols),
                s.input == Input::embeddings ? (" D=" + std::to_string(s.dim)).c_str() : "",
                s.backend == NPAIRS_BACKEND_CUDA ? (s.device_memory ? " device" : " host") : "");
  return buf;
}

void print_progress(size_t index, size_t count, const CaseResult& r) {
  std::fprintf(stderr, "npairs_bench: [%zu/%zu] %s: ", index + 1, count, case_label(r.spec).c_str());
  if (!r.error.empty() || !r.unsupported.empty()) {
    std::fprintf(stderr, "%s (%s)\n", r.error.empty() ? "skipped" : "FAILED",
                 (r.error.empty() ? r.unsupported : r.error).c_str());
    return;
  }
  std::fprintf(stderr, "%.3f ms", r.library.median_ms);
  if (r.has_copy) std::fprintf(stderr, ", copy %.3f ms", r.copy.median_ms);
  if (r.has_gemms) std::fprintf(stderr, ", GEMMs %.3f ms", r.gemms.median_ms);
  if (r.has_unfused) std::fprintf(stderr, ", unfused %.3f ms", r.unfused.median_ms);
  std::fprintf(stderr, "\n");
}

std::string fixed(double v, int decimals, bool present = true) {
  if (!present || !std::isfinite(v)) return "-";
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", decimals, v);
  return buf;
}

double gb_per_s(double bytes, double ms) { return bytes / (ms * 1e6); }

void print_table(const std::vector<CaseResult>& results) {
  std::printf("\n%-10s %-8s %-5s %6s %6s %4s %6s | %9s %7s %7s %8s | %8s %6s | %8s %6s | %9s %6s | %s\n",
              "input", "grads", "dtype", "R", "M", "D", "memory", "median_ms", "GB/s", "GFLOP/s", "peak_MiB",
              "copy_ms", "xcopy", "gemm_ms", "xgemm", "unfused", "unf/x", "check");
  for (const CaseResult& r : results) {
    const CaseSpec& s = r.spec;
    const char* memory = s.backend == NPAIRS_BACKEND_CPU ? "host" : s.device_memory ? "device" : "host";
    std::printf("%-10s %-8s %-5s %6lld %6lld %4s %6s | ", input_name(s.input), grads_name(s).c_str(),
                dtype_name(s.dtype), static_cast<long long>(s.rows), static_cast<long long>(s.cols),
                s.input == Input::embeddings ? std::to_string(s.dim).c_str() : "-", memory);
    if (!r.error.empty()) {
      std::printf("FAILED: %s\n", r.error.c_str());
      continue;
    }
    if (!r.unsupported.empty()) {
      std::printf("skipped, UNSUPPORTED: %s\n", r.unsupported.c_str());
      continue;
    }
    const double ms = r.library.median_ms, flops = gemm_flops(s);
    std::printf("%9s %7s %7s %8s | %8s %6s | %8s %6s | %9s %6s | %s\n", fixed(ms, 3).c_str(),
                fixed(gb_per_s(bytes_moved(s), ms), 1).c_str(),
                fixed(flops / (ms * 1e6), 1, flops > 0).c_str(),
                fixed(r.peak_bytes / double(1 << 20), 1, r.peak_bytes >= 0).c_str(),
                fixed(r.copy.median_ms, 3, r.has_copy).c_str(),
                fixed(ms / r.copy.median_ms, 2, r.has_copy).c_str(),
                fixed(r.gemms.median_ms, 3, r.has_gemms).c_str(),
                fixed(ms / r.gemms.median_ms, 2, r.has_gemms).c_str(),
                fixed(r.unfused.median_ms, 3, r.has_unfused).c_str(),
                fixed(r.unfused.median_ms / ms, 2, r.has_unfused).c_str(),
                !r.has_unfused ? "-" : r.check.passed ? "ok" : "FAIL");
  }
  std::printf(
      "\nmedian_ms: npairs_loss + synchronize, median of the timed calls. GB/s: the bytes the\n"
      "case must move (read logits or embeddings and targets once, write the gradients once)\n"
      "per second; GFLOP/s: its GEMMs (2mnk each). peak_MiB: resident memory growth over one\n"
      "call. copy_ms: a memcpy moving as many bytes;\n"
      "xcopy = median_ms / copy_ms. gemm_ms: the same GEMMs alone through the same BLAS;\n"
      "xgemm = median_ms / gemm_ms. unfused: the framework-style baseline (CPU);\n"
      "unf/x = unfused / median_ms (the fused speed-up); check: it agrees with the library.\n");
}

std::string read_cpu_model() {
  std::ifstream cpuinfo("/proc/cpuinfo");
  std::string line;
  while (std::getline(cpuinfo, line)) {
    if (line.rfind("model name", 0) == 0) {
      const size_t colon = line.find(':');
      return colon == std::string::npos ? line : line.substr(line.find_first_not_of(' ', colon + 1));
    }
  }
  return "unknown";
}

std::string utc_now() {
  const std::time_t now = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&now, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

std::string command_line(int argc, char** argv) {
  std::string s;
  for (int i = 0; i < argc; ++i) {
    const std::string arg = argv[i];
    if (i > 0) s += ' ';
    s += arg.find_first_of(" \t'\"") == std::string::npos ? arg : "'" + arg + "'";
  }
  return s;
}

struct Machine {
  std::string cpu_model, blas, gpu, cudart, date, command;
  int cores = 0, threads = 0;
};

void write_stats(JsonWriter& json, const char* name, const Stats& stats, bool present) {
  json.key(name);
  if (!present) {
    json.null();
    return;
  }
  json.begin_object();
  json.field("median", stats.median_ms);
  json.field("min", stats.min_ms);
  json.end_object();
}

bool write_json(const std::string& path, const Machine& m, const Settings& settings,
                const std::vector<CaseResult>& results) {
  std::FILE* f = std::fopen(path.c_str(), "w");
  if (f == nullptr) {
    std::fprintf(stderr, "npairs_bench: cannot write %s: %s\n", path.c_str(), std::strerror(errno));
    return false;
  }
  JsonWriter json(f);
  json.begin_object();
  json.field("tool", "npairs_bench");
  json.field("library_version", npairs_version_string());
  json.field("date", m.date);
  json.field("command", m.command);
  json.key("machine");
  json.begin_object();
  json.field("cpu_model", m.cpu_model);
  json.field("cores", static_cast<long long>(m.cores));
  json.field("threads", static_cast<long long>(m.threads));
  json.field("blas", m.blas);
  json.field("gpu", m.gpu);
  json.field("cudart", m.cudart);
  json.end_object();
  json.field("warmup", static_cast<long long>(settings.warmup));
  json.field("repeats", static_cast<long long>(settings.repeats));
  json.key("cases");
  json.begin_array();
  for (const CaseResult& r : results) {
    const CaseSpec& s = r.spec;
    json.begin_object();
    json.field("backend", backend_name(s.backend));
    json.field("dtype", dtype_name(s.dtype));
    json.field("input", input_name(s.input));
    json.field("targets", targets_name(s.targets));
    json.field("grads", grads_name(s));
    json.field("rows", static_cast<long long>(s.rows));
    json.field("cols", static_cast<long long>(s.cols));
    json.field("dim", static_cast<long long>(s.dim));
    json.field("classes", static_cast<long long>(s.classes));
    json.field("memory", s.device_memory ? "device" : "host");
    json.field("tf32", s.allow_tf32);
    json.field("symmetric", s.symmetric);
    json.field("grad_temperature", s.grad_temperature);
    json.key("error");
    if (r.error.empty()) json.null(); else json.value(r.error);
    json.key("unsupported");
    if (r.unsupported.empty()) json.null(); else json.value(r.unsupported);
    const bool ran = r.error.empty() && r.unsupported.empty();
    const double ms = ran ? r.library.median_ms : NAN, bytes = bytes_moved(s), flops = gemm_flops(s);
    write_stats(json, "library_ms", r.library, ran);
    json.field("loss", r.loss);
    json.field("workspace_limit", static_cast<long long>(s.workspace_limit));
    json.field("peak_bytes", r.peak_bytes >= 0 ? r.peak_bytes : NAN);
    json.field("bytes", bytes);
    json.field("gemm_flop", flops);
    json.field("gb_per_s", gb_per_s(bytes, ms));
    json.field("gflop_per_s", flops > 0 ? flops / (ms * 1e6) : NAN);
    write_stats(json, "copy_ms", r.copy, r.has_copy);
    json.field("copy_gb_per_s", r.has_copy ? gb_per_s(bytes, r.copy.median_ms) : NAN);
    json.field("time_over_copy", r.has_copy ? ms / r.copy.median_ms : NAN);
    write_stats(json, "gemms_ms", r.gemms, r.has_gemms);
    json.field("gemms_gflop_per_s", r.has_gemms ? flops / (r.gemms.median_ms * 1e6) : NAN);
    json.field("time_over_gemms", r.has_gemms ? ms / r.gemms.median_ms : NAN);
    write_stats(json, "unfused_ms", r.unfused, r.has_unfused);
    json.field("unfused_over_fused", r.has_unfused ? r.unfused.median_ms / ms : NAN);
    json.key("check");
    if (r.has_unfused) {
      json.begin_object();
      json.field("loss_relative_error", r.check.loss_error);
      json.field("gradient_relative_error", r.check.gradient_error);
      json.field("passed", r.check.passed);
      json.end_object();
    } else {
      json.null();
    }
    json.field("note", r.skipped);
    json.end_object();
  }
  json.end_array();
  json.end_object();
  std::fputc('\n', f);
  return std::fclose(f) == 0;
}

int run(const Args& a, const std::string& command) {
  const npairs_backend wanted = a.backend == "cpu"    ? NPAIRS_BACKEND_CPU
                                : a.backend == "cuda" ? NPAIRS_BACKEND_CUDA
                                                      : NPAIRS_BACKEND_AUTO;
  npairs_context ctx = nullptr;
  if (!check(npairs_context_create(wanted, a.device, &ctx), "npairs_context_create")) return 1;
  std::unique_ptr<npairs_context_s, npairs_status (*)(npairs_context)> owned(ctx, npairs_context_destroy);
  npairs_backend backend = NPAIRS_BACKEND_AUTO;
  if (!check(npairs_context_backend(ctx, &backend), "npairs_context_backend")) return 1;
  const bool cuda = backend == NPAIRS_BACKEND_CUDA;
  if (!cuda && a.memory != "auto" && a.memory != "host") {
    std::fprintf(stderr, "npairs_bench: --memory %s needs the CUDA backend\n", a.memory.c_str());
    return 1;
  }
  if (!cuda && !check(npairs_context_set_threads(ctx, a.threads), "npairs_context_set_threads"))
    return 1;
  if (!check(npairs_context_set_workspace_limit(ctx, a.workspace_limit), "npairs_context_set_workspace_limit"))
    return 1;

  Settings settings;
  settings.repeats = a.repeats > 0 ? a.repeats : (cuda ? 20 : 10);
  settings.warmup = a.warmup >= 0 ? a.warmup : (cuda ? 3 : 2);
  settings.threads = a.threads > 0 ? a.threads : omp_get_num_procs();
  settings.baselines = a.baselines;

  Machine machine;
  machine.cpu_model = read_cpu_model();
  machine.cores = omp_get_num_procs();
  machine.threads = settings.threads;
  machine.blas = cblas_provider();
  machine.date = utc_now();
  machine.command = command;

  std::vector<CaseSpec> cases = make_cases(a, backend);
  CudaRuntime runtime;
  if (cuda) {
    std::string why;
    if (runtime.load(a.device, &why)) {
      machine.gpu = runtime.device_name();
      machine.cudart = runtime.library();
    } else {
      const bool only_device = a.memory == "device";
      std::fprintf(stderr, "npairs_bench: %s: device-memory cases %s\n", why.c_str(),
                   only_device ? "cannot run" : "skipped");
      if (only_device) return 1;
      cases.erase(std::remove_if(cases.begin(), cases.end(),
                                 [](const CaseSpec& s) { return s.device_memory; }),
                  cases.end());
    }
  }

  std::printf("libnpairs %s benchmark on %s (%s%s%s), %d warm-up + %d timed calls per figure\n",
              npairs_version_string(), backend_name(backend), cuda ? machine.gpu.c_str() : machine.cpu_model.c_str(),
              cuda ? "" : ", threads: ", cuda ? "" : std::to_string(settings.threads).c_str(),
              settings.warmup, settings.repeats);
  std::printf("BLAS (%s): %s\n", kSgemmSymbol, machine.blas.c_str());
  if (a.workspace_limit != 0) std::printf("workspace limit: %zu bytes\n", a.workspace_limit);
  if (cuda) std::printf("CUDA runtime: %s; GEMM ceiling: %s\n", machine.cudart.empty() ? "-" : machine.cudart.c_str(),
                        runtime.has_cublas() ? "cuBLAS" : "skipped (no libcublas)");
  std::fflush(stdout);

  std::vector<CaseResult> results;
  const CudaRuntime* on_gpu = cuda ? &runtime : nullptr;
  for (size_t i = 0; i < cases.size(); ++i) {
    results.push_back(cases[i].is_half()            ? run_case<HalfBits>(cases[i], ctx, settings, on_gpu)
                      : cases[i].dtype == NPAIRS_F64 ? run_case<double>(cases[i], ctx, settings, on_gpu)
                                                     : run_case<float>(cases[i], ctx, settings, on_gpu));
    print_progress(i, cases.size(), results.back());
  }
  print_table(results);
  // --symmetric both: each symmetric case after its non-symmetric twin.
  for (size_t i = 1; i < results.size(); ++i) {
    const CaseResult &rows_only = results[i - 1], &both = results[i];
    if (!both.spec.symmetric || rows_only.spec.symmetric || !both.error.empty() || !both.unsupported.empty() ||
        !rows_only.error.empty() || !rows_only.unsupported.empty())
      continue;
    std::printf("%s: symmetric / non-symmetric = %.3f (median %.3f ms / %.3f ms)\n", case_label(both.spec).c_str(),
                both.library.median_ms / rows_only.library.median_ms, both.library.median_ms,
                rows_only.library.median_ms);
  }
  for (const CaseResult& r : results)
    if (!r.skipped.empty()) std::printf("%s: %s\n", case_label(r.spec).c_str(), r.skipped.c_str());

  bool ok = std::all_of(results.begin(), results.end(), [](const CaseResult& r) {
    return r.error.empty() && (!r.has_unfused || r.check.passed);
  });
  if (!a.json.empty()) ok = write_json(a.json, machine, settings, results) && ok;
  if (!check(npairs_context_destroy(owned.release()), "npairs_context_destroy")) ok = false;
  return ok ? 0 : 1;
}

}  // namespace
}  // namespace bench

int main(int argc, char** argv) {
  bench::Args args;
  const int parsed = bench::parse_args(argc, argv, &args);
  if (parsed == 2) return 0;
  if (parsed != 0) return 1;
  return bench::run(args, bench::command_line(argc, argv));
}
