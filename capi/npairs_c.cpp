// The extern "C" layer: reads the caller's structs (NULLs, struct_size),
// picks the backend, and turns every exception into a status plus a
// thread-local message. It is the only place that knows every backend.
#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdio>
#include <cstring>
#include <memory>
#include <new>
#include <string>

#include "npairs/npairs.h"
#include "src/cpu_backend.hpp"
#include "src/error.hpp"
#include "src/hard_classes.hpp"
#include "src/task.hpp"
#if defined(NPAIRS_WITH_CUDA)
#include "cuda/cuda_backend.hpp"
#endif

struct npairs_context_s {
  std::unique_ptr<npairs::Backend> backend;
};

namespace {

using npairs::fail;

// A fixed buffer, so that recording an error can never throw.
thread_local char last_error_message[512] = "";

void set_last_error(const char* message) noexcept {
  std::snprintf(last_error_message, sizeof last_error_message, "%s", message);
}

// Runs `body` and returns its status: NPAIRS_OK, or the status of whatever it
// threw, with the message recorded for npairs_last_error().
template <class Body>
npairs_status translate_exceptions(Body&& body) noexcept {
  try {
    body();
    return NPAIRS_OK;
  } catch (const npairs::Error& e) {
    set_last_error(e.what());
    return e.status();
  } catch (const std::bad_alloc&) {
    set_last_error("out of host memory");
    return NPAIRS_ERROR_OUT_OF_MEMORY;
  } catch (const std::exception& e) {
    set_last_error(e.what());
    return NPAIRS_ERROR_INTERNAL;
  } catch (...) {
    set_last_error("unknown internal error");
    return NPAIRS_ERROR_INTERNAL;
  }
}

void require_arg(bool condition, const char* message) {
  if (!condition) fail(NPAIRS_ERROR_INVALID_ARGUMENT, message);
}

// The sizes each struct has been published with, oldest first: a caller
// compiled against an older header passes one of them. A struct that grows
// appends its new size.
template <class Struct>
struct PublishedSizes {
  static constexpr std::array<std::size_t, 1> sizes{sizeof(Struct)};
};
template <>
struct PublishedSizes<npairs_gradients> {  // 1.1 appended `temperature`
  static constexpr std::array<std::size_t, 2> sizes{offsetof(npairs_gradients, temperature),
                                                    sizeof(npairs_gradients)};
};

template <class Struct>
constexpr std::size_t first_published_size() {
  return PublishedSizes<Struct>::sizes[0];
}

// The largest published size that is at most `size` (>= the first): the
// caller's whole fields, never part of one.
template <class Struct>
std::size_t readable_size(std::size_t size) {
  std::size_t readable = first_published_size<Struct>();
  for (std::size_t published : PublishedSizes<Struct>::sizes) {
    if (published <= size) readable = published;
  }
  return readable;
}

// Copies a caller's struct of any published size into the one this library
// knows, over `defaults` (which keep the fields an older caller lacks).
// Smaller than the first published size is invalid; larger than sizeof is
// accepted only when the bytes this library does not know are zero, so that
// a newer caller's unused new fields are harmless.
template <class Struct>
Struct read_struct(const Struct* caller, const Struct& defaults, const char* name) {
  const std::size_t size = caller->struct_size;
  constexpr std::size_t first = first_published_size<Struct>();
  if (size < first) {
    fail(NPAIRS_ERROR_INVALID_ARGUMENT, std::string(name) + ".struct_size (" + std::to_string(size) +
                                            ") is smaller than the first published size of " + name + " (" +
                                            std::to_string(first) + ")");
  }
  const auto* bytes = reinterpret_cast<const unsigned char*>(caller);
  if (std::any_of(bytes + std::min(size, sizeof(Struct)), bytes + size, [](unsigned char b) { return b != 0; })) {
    fail(NPAIRS_ERROR_UNSUPPORTED, std::string(name) + ".struct_size (" + std::to_string(size) +
                                       ") has fields unknown to this library set to non-zero values");
  }
  Struct copy = defaults;
  std::memcpy(&copy, caller, readable_size<Struct>(size));
  return copy;
}

// The task of an npairs_loss (or npairs_workspace_size) call, every argument
// rule checked.
npairs::Task read_task(const npairs_options* options, const npairs_problem* problem,
                       const void* grad_loss, void* loss, const npairs_gradients* grads) {
  require_arg(problem != nullptr, "problem is NULL");
  npairs_options opts;
  npairs_options_init(&opts);
  if (options) opts = read_struct(options, opts, "options");
  npairs_problem prob;
  npairs_problem_init(&prob);
  prob = read_struct(problem, prob, "problem");
  npairs_gradients wanted;
  npairs_gradients_init(&wanted);
  if (grads) wanted = read_struct(grads, wanted, "grads");
  return npairs::make_task(opts, prob, grad_loss, loss, wanted);
}

// The task of a column-block call: npairs_loss's rules, and those of blocks.
npairs::Task read_block_task(const npairs_options* options, const npairs_problem* problem,
                             const void* grad_loss, void* loss, const npairs_gradients* grads,
                             const void* row_stats) {
  npairs::Task t = read_task(options, problem, grad_loss, loss, grads);
  require_arg(row_stats != nullptr, "row_stats is NULL");
  require_arg(t.reg_lambda == 0.0,
              "options.reg_lambda must be 0 for column blocks (the L2 term is no sum over columns; the "
              "caller adds it)");
  if (t.symmetric()) {
    npairs::fail(NPAIRS_ERROR_UNSUPPORTED,
                 "options.flags has NPAIRS_FLAG_SYMMETRIC, which column blocks do not compute in this version");
  }
  t.row_stats = const_cast<void*>(row_stats);  // only npairs_block_stats writes them
  return t;
}

npairs::Backend& backend_of(npairs_context ctx) {
  require_arg(ctx != nullptr, "ctx is NULL");
  return *ctx->backend;
}

int cuda_device_count() noexcept {
#if defined(NPAIRS_WITH_CUDA)
  return npairs::cuda::device_count();
#else
  return 0;
#endif
}

std::unique_ptr<npairs::Backend> make_backend(npairs_backend backend, int32_t device) {
  require_arg(backend == NPAIRS_BACKEND_AUTO || backend == NPAIRS_BACKEND_CPU ||
                  backend == NPAIRS_BACKEND_CUDA,
              "backend is not a valid npairs_backend");
  require_arg(device >= 0, "device must not be negative");
  const int devices = cuda_device_count();
  if (backend == NPAIRS_BACKEND_CPU || (backend == NPAIRS_BACKEND_AUTO && devices == 0)) {
    return npairs::make_cpu_backend();
  }
#if defined(NPAIRS_WITH_CUDA)
  if (devices == 0) fail(NPAIRS_ERROR_BACKEND_UNAVAILABLE, "backend CUDA: no CUDA device is present");
  if (device >= devices) {
    fail(NPAIRS_ERROR_INVALID_ARGUMENT, "device " + std::to_string(device) + " is not present (" +
                                            std::to_string(devices) + " CUDA devices)");
  }
  return npairs::cuda::make_backend(device);
#else
  fail(NPAIRS_ERROR_BACKEND_UNAVAILABLE, "backend CUDA: this build of libnpairs has no CUDA backend");
#endif
}

}  // namespace

extern "C" {

uint32_t npairs_version_number(void) { return NPAIRS_VERSION_NUMBER; }

const char* npairs_version_string(void) {
#define NPAIRS_STR_(x) #x
#define NPAIRS_STR(x) NPAIRS_STR_(x)
  return NPAIRS_STR(NPAIRS_VERSION_MAJOR) "." NPAIRS_STR(NPAIRS_VERSION_MINOR) "." NPAIRS_STR(
      NPAIRS_VERSION_PATCH);
#undef NPAIRS_STR
#undef NPAIRS_STR_
}

const char* npairs_status_string(npairs_status status) {
  switch (status) {
    case NPAIRS_OK: return "success";
    case NPAIRS_ERROR_INVALID_ARGUMENT: return "invalid argument";
    case NPAIRS_ERROR_INVALID_VALUE: return "invalid value in the input data";
    case NPAIRS_ERROR_UNSUPPORTED: return "unsupported by this build or backend";
    case NPAIRS_ERROR_OUT_OF_MEMORY: return "out of memory";
    case NPAIRS_ERROR_BACKEND_UNAVAILABLE: return "backend unavailable";
    case NPAIRS_ERROR_DEVICE: return "CUDA device or cuBLAS failure";
    case NPAIRS_ERROR_INTERNAL: return "internal error";
    default: return "unknown status";
  }
}

const char* npairs_last_error(void) { return last_error_message; }

int32_t npairs_backend_available(npairs_backend backend) {
  switch (backend) {
    case NPAIRS_BACKEND_AUTO:
    case NPAIRS_BACKEND_CPU: return 1;
    case NPAIRS_BACKEND_CUDA: return cuda_device_count() > 0 ? 1 : 0;
    default: return 0;
  }
}

npairs_status npairs_context_create(npairs_backend backend, int32_t device, npairs_context* out) {
  return translate_exceptions([&] {
    require_arg(out != nullptr, "out is NULL");
    auto ctx = std::make_unique<npairs_context_s>();
    ctx->backend = make_backend(backend, device);
    *out = ctx.release();
  });
}

npairs_status npairs_context_destroy(npairs_context ctx) {
  const std::unique_ptr<npairs_context_s> owned(ctx);
  return translate_exceptions([&] {
    if (owned) owned->backend->synchronize();
  });
}

npairs_status npairs_context_backend(npairs_context ctx, npairs_backend* out) {
  return translate_exceptions([&] {
    npairs::Backend& backend = backend_of(ctx);
    require_arg(out != nullptr, "out is NULL");
    *out = backend.kind();
  });
}

npairs_status npairs_context_set_stream(npairs_context ctx, void* cuda_stream) {
  return translate_exceptions([&] { backend_of(ctx).set_stream(cuda_stream); });
}

npairs_status npairs_context_set_threads(npairs_context ctx, int32_t threads) {
  return translate_exceptions([&] {
    npairs::Backend& backend = backend_of(ctx);
    require_arg(threads >= 0, "threads must not be negative");
    backend.set_threads(threads);
  });
}

npairs_status npairs_context_synchronize(npairs_context ctx) {
  return translate_exceptions([&] { backend_of(ctx).synchronize(); });
}

void npairs_options_init(npairs_options* options) {
  if (!options) return;
  std::memset(options, 0, sizeof *options);
  options->struct_size = sizeof *options;
  options->reduction = NPAIRS_REDUCTION_SUM_OVER_BATCH_SIZE;
  options->temperature = 1.0;
}

void npairs_problem_init(npairs_problem* problem) {
  if (!problem) return;
  std::memset(problem, 0, sizeof *problem);
  problem->struct_size = sizeof *problem;
}

// The function itself (the header's macro of the same name calls
// npairs_gradients_init_sized): a 1.0 caller's struct ends at the 1.0 size.
void(npairs_gradients_init)(npairs_gradients* grads) {
  npairs_gradients_init_sized(grads, first_published_size<npairs_gradients>());
}

void npairs_gradients_init_sized(npairs_gradients* grads, size_t size) {
  if (!grads || size < first_published_size<npairs_gradients>()) return;
  std::memset(grads, 0, size);
  grads->struct_size = size;
}

npairs_status npairs_loss(npairs_context ctx, const npairs_options* options,
                          const npairs_problem* problem, const void* grad_loss, void* loss,
                          npairs_gradients* grads) {
  return translate_exceptions([&] {
    npairs::Backend& backend = backend_of(ctx);
    backend.compute(read_task(options, problem, grad_loss, loss, grads));
  });
}

npairs_status npairs_context_set_workspace_limit(npairs_context ctx, size_t bytes) {
  return translate_exceptions([&] { backend_of(ctx).set_workspace_limit(bytes); });
}

npairs_status npairs_workspace_size(npairs_context ctx, const npairs_options* options,
                                    const npairs_problem* problem, const npairs_gradients* grads,
                                    size_t* bytes) {
  return translate_exceptions([&] {
    npairs::Backend& backend = backend_of(ctx);
    require_arg(bytes != nullptr, "bytes is NULL");
    // The loss is taken as wanted; its address is never written through.
    unsigned char loss_wanted = 0;
    *bytes = backend.workspace_size(read_task(options, problem, nullptr, &loss_wanted, grads));
  });
}

npairs_status npairs_context_reserve(npairs_context ctx, size_t bytes) {
  return translate_exceptions([&] { backend_of(ctx).reserve(bytes); });
}

void npairs_class_selection_init(npairs_class_selection* selection) {
  if (!selection) return;
  std::memset(selection, 0, sizeof *selection);
  selection->struct_size = sizeof *selection;
  selection->dtype = NPAIRS_F32;
}

npairs_status npairs_select_hard_classes(npairs_context ctx, const npairs_class_selection* selection,
                                         int64_t* selected) {
  return translate_exceptions([&] {
    npairs::Backend& backend = backend_of(ctx);
    require_arg(selection != nullptr, "selection is NULL");
    npairs_class_selection defaults;
    npairs_class_selection_init(&defaults);
    backend.select_hard_classes(
        npairs::make_hard_class_task(read_struct(selection, defaults, "selection"), selected));
  });
}

npairs_status npairs_block_stats(npairs_context ctx, const npairs_options* options,
                                const npairs_problem* problem, void* row_stats, void* loss) {
  return translate_exceptions([&] {
    npairs::Backend& backend = backend_of(ctx);
    backend.block_stats(read_block_task(options, problem, nullptr, loss, nullptr, row_stats));
  });
}

npairs_status npairs_block_gradients(npairs_context ctx, const npairs_options* options,
                                     const npairs_problem* problem, const void* row_stats,
                                     const void* grad_loss, npairs_gradients* grads) {
  return translate_exceptions([&] {
    npairs::Backend& backend = backend_of(ctx);
    require_arg(grads != nullptr, "grads is NULL; ask for at least one gradient");
    const npairs::Task t = read_block_task(options, problem, grad_loss, nullptr, grads, row_stats);
    require_arg(t.wants_grad_similarity(), "grads asks for no gradient");
    backend.block_gradients(t);
  });
}

}  // extern "C"
