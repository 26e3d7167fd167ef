// XLA FFI handlers of npairs.jax: one npairs_loss call per custom call, over
// the library's C API only. Compiled against the FFI header that jaxlib ships
// (jax.ffi.include_dir()); registered from Python with
// jax.ffi.register_ffi_target("npairs_loss", ..., platform="cpu" | "CUDA").
//
// Operands, in order (attributes say which are present): targets (labels or
// multi-labels), column targets, the logits (similarity, or anchors and
// positives), sample_weight, grad_loss. Results, in order: the loss, then the
// gradients asked for (similarity, anchors, positives). npairs.jax has
// checked shapes and dtypes before staging the call; the library checks them
// again, and the values, and its message comes back as the XLA error.

#include <npairs/npairs.h>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

// Bits of the want_grads attribute.
constexpr int32_t kGradSimilarity = 1;
constexpr int32_t kGradAnchors = 2;
constexpr int32_t kGradPositives = 4;

// The library's status as an XLA error carrying its message.
ffi::Error library_error(npairs_status status) {
  std::string message = std::string("libnpairs: ") + npairs_last_error() + " [" + npairs_status_string(status) + "]";
  switch (status) {
    case NPAIRS_ERROR_INVALID_ARGUMENT:
    case NPAIRS_ERROR_INVALID_VALUE:
      return ffi::Error(ffi::ErrorCode::kInvalidArgument, std::move(message));
    case NPAIRS_ERROR_UNSUPPORTED:
      return ffi::Error(ffi::ErrorCode::kUnimplemented, std::move(message));
    case NPAIRS_ERROR_OUT_OF_MEMORY:
      return ffi::Error(ffi::ErrorCode::kResourceExhausted, std::move(message));
    case NPAIRS_ERROR_BACKEND_UNAVAILABLE:
      return ffi::Error(ffi::ErrorCode::kUnavailable, std::move(message));
    default:
      return ffi::Error(ffi::ErrorCode::kInternal, std::move(message));
  }
}

// One thread's contexts, by backend and device, destroyed when the thread
// ends. XLA calls a handler from its own threads; a context is used by one
// thread at a time (SPEC section 2), so each thread has its own.
struct CachedContext {
  npairs_backend backend;
  int32_t device;
  npairs_context handle;
  size_t reserved;  // bytes of workspace reserved on it (CUDA)
  int32_t threads;  // the CPU thread count set on it (0: every core, the library's default)
};

class ContextCache {
 public:
  ContextCache() = default;
  ContextCache(const ContextCache&) = delete;
  ContextCache& operator=(const ContextCache&) = delete;
  ~ContextCache() {
    for (CachedContext& c : contexts_) {
      if (c.backend == NPAIRS_BACKEND_CUDA) npairs_context_set_stream(c.handle, nullptr);
      npairs_context_destroy(c.handle);
    }
  }

  npairs_status get(npairs_backend backend, int32_t device, CachedContext** out) {
    for (CachedContext& c : contexts_) {
      if (c.backend == backend && c.device == device) {
        *out = &c;
        return NPAIRS_OK;
      }
    }
    npairs_context handle = nullptr;
    npairs_status status = npairs_context_create(backend, device, &handle);
    if (status != NPAIRS_OK) return status;
    contexts_.push_back(CachedContext{backend, device, handle, 0, 0});
    *out = &contexts_.back();
    return NPAIRS_OK;
  }

 private:
  std::vector<CachedContext> contexts_;
};

thread_local ContextCache tls_contexts;

bool float_code(ffi::DataType type, npairs_dtype* out) {
  switch (type) {
    case ffi::DataType::F32: *out = NPAIRS_F32; return true;
    case ffi::DataType::F64: *out = NPAIRS_F64; return true;
    case ffi::DataType::F16: *out = NPAIRS_F16; return true;
    case ffi::DataType::BF16: *out = NPAIRS_BF16; return true;
    default: return false;
  }
}

int64_t dim(const ffi::AnyBuffer& b, size_t i) { return b.dimensions().size() > i ? b.dimensions()[i] : 1; }

struct Attributes {
  int32_t reduction;
  double temperature;
  double reg_lambda;
  int32_t multilabel;
  int32_t embeddings;
  int32_t column_targets;
  int32_t sample_weight;
  int32_t grad_loss;
  int32_t want_loss;
  int32_t want_grads;
  int32_t threads;
};

// Fills the call's structs from the operands; the library checks their contents.
ffi::Error describe(const Attributes& a, const ffi::RemainingArgs& args, const ffi::RemainingRets& rets,
                    npairs_options* options, npairs_problem* problem, npairs_gradients* grads, bool* has_grads,
                    const void** grad_loss, void** loss) {
  npairs_options_init(options);
  options->reduction = a.reduction;
  options->temperature = a.temperature;
  options->reg_lambda = a.reg_lambda;
  npairs_problem_init(problem);
  npairs_gradients_init(grads);

  const size_t expected_args = 1 + (a.column_targets ? 1u : 0u) + (a.embeddings ? 2u : 1u) +
                               (a.sample_weight ? 1u : 0u) + (a.grad_loss ? 1u : 0u);
  if (args.size() != expected_args) {
    return ffi::Error::InvalidArgument("npairs_loss custom call: expected " + std::to_string(expected_args) +
                                       " operands, got " + std::to_string(args.size()));
  }
  size_t next = 0;
  auto arg = [&]() { return args.get<ffi::AnyBuffer>(next++); };

  auto targets = arg();
  if (!targets.has_value()) return targets.error();
  std::optional<ffi::AnyBuffer> column_targets;
  if (a.column_targets) {
    auto c = arg();
    if (!c.has_value()) return c.error();
    column_targets = *c;
  }
  auto first = arg();
  if (!first.has_value()) return first.error();
  const ffi::AnyBuffer logits = *first;
  if (!float_code(logits.element_type(), &problem->dtype)) {
    return ffi::Error::InvalidArgument("npairs_loss custom call: the logits must be float16, bfloat16, float32 or float64");
  }
  problem->rows = dim(logits, 0);
  if (a.embeddings) {
    auto positives = arg();
    if (!positives.has_value()) return positives.error();
    problem->anchors = logits.untyped_data();
    problem->positives = positives->untyped_data();
    problem->dim = dim(logits, 1);
    problem->cols = dim(*positives, 0);
  } else {
    problem->similarity = logits.untyped_data();
    problem->cols = dim(logits, 1);
  }
  if (a.multilabel) {
    problem->multilabels = targets->untyped_data();
    problem->column_multilabels = column_targets ? column_targets->untyped_data() : nullptr;
    problem->num_classes = dim(*targets, 1);
  } else {
    problem->labels = targets->untyped_data();
    problem->column_labels = column_targets ? column_targets->untyped_data() : nullptr;
    problem->label_dtype = targets->element_type() == ffi::DataType::S64 ? NPAIRS_I64 : NPAIRS_I32;
    if (column_targets && column_targets->element_type() != targets->element_type()) {
      return ffi::Error::InvalidArgument("npairs_loss custom call: labels and column labels differ in dtype");
    }
  }
  if (a.sample_weight) {
    auto w = arg();
    if (!w.has_value()) return w.error();
    problem->sample_weight = w->untyped_data();
  }
  *grad_loss = nullptr;
  if (a.grad_loss) {
    auto g = arg();
    if (!g.has_value()) return g.error();
    *grad_loss = g->untyped_data();
  }

  const int32_t wanted[] = {kGradSimilarity, kGradAnchors, kGradPositives};
  size_t expected_rets = a.want_loss ? 1u : 0u;
  for (int32_t bit : wanted) expected_rets += (a.want_grads & bit) ? 1u : 0u;
  if (rets.size() != expected_rets) {
    return ffi::Error::InvalidArgument("npairs_loss custom call: expected " + std::to_string(expected_rets) +
                                       " results, got " + std::to_string(rets.size()));
  }
  size_t out = 0;
  *loss = nullptr;
  if (a.want_loss) {
    auto r = rets.get<ffi::AnyBuffer>(out++);
    if (!r.has_value()) return r.error();
    *loss = (*r)->untyped_data();
  }
  void** slots[] = {&grads->similarity, &grads->anchors, &grads->positives};
  *has_grads = false;
  for (size_t i = 0; i < 3; ++i) {
    if (!(a.want_grads & wanted[i])) continue;
    auto r = rets.get<ffi::AnyBuffer>(out++);
    if (!r.has_value()) return r.error();
    *slots[i] = (*r)->untyped_data();
    *has_grads = true;
  }
  return ffi::Error::Success();
}

ffi::Error loss_call(npairs_backend backend, void* stream, int32_t device, const Attributes& a,
                     const ffi::RemainingArgs& args, const ffi::RemainingRets& rets) {
  npairs_options options;
  npairs_problem problem;
  npairs_gradients grads;
  bool has_grads = false;
  const void* grad_loss = nullptr;
  void* loss = nullptr;
  ffi::Error described = describe(a, args, rets, &options, &problem, &grads, &has_grads, &grad_loss, &loss);
  if (described.failure()) return described;
  npairs_gradients* wanted = has_grads ? &grads : nullptr;

  CachedContext* ctx = nullptr;
  npairs_status status = tls_contexts.get(backend, device, &ctx);
  if (status != NPAIRS_OK) return library_error(status);
  if (backend == NPAIRS_BACKEND_CPU && a.threads != ctx->threads) {
    status = npairs_context_set_threads(ctx->handle, a.threads);
    if (status != NPAIRS_OK) return library_error(status);
    ctx->threads = a.threads;
  }
  if (backend == NPAIRS_BACKEND_CUDA) {
    // XLA's stream orders the work; the call only queues it there (SPEC
    // section 4): workspace reserved ahead (allocated on the first call of a
    // size only), and the data checks deferred to the device, where an
    // invalid row gives NaN loss and gradient rows instead of a wait.
    status = npairs_context_set_stream(ctx->handle, stream);
    if (status != NPAIRS_OK) return library_error(status);
    options.flags |= NPAIRS_FLAG_DEFER_CHECKS;
    size_t needed = 0;
    status = npairs_workspace_size(ctx->handle, &options, &problem, wanted, &needed);
    if (status != NPAIRS_OK) return library_error(status);
    if (needed > ctx->reserved) {
      status = npairs_context_reserve(ctx->handle, needed);
      if (status != NPAIRS_OK) return library_error(status);
      ctx->reserved = needed;
    }
  }
  status = npairs_loss(ctx->handle, &options, &problem, grad_loss, loss, wanted);
  return status == NPAIRS_OK ? ffi::Error::Success() : library_error(status);
}

ffi::Error cpu_loss(ffi::RemainingArgs args, ffi::RemainingRets rets, int32_t reduction, double temperature,
                    double reg_lambda, int32_t multilabel, int32_t embeddings, int32_t column_targets,
                    int32_t sample_weight, int32_t grad_loss, int32_t want_loss, int32_t want_grads,
                    int32_t threads) {
  const Attributes a{reduction, temperature, reg_lambda, multilabel, embeddings, column_targets,
                     sample_weight, grad_loss, want_loss, want_grads, threads};
  return loss_call(NPAIRS_BACKEND_CPU, nullptr, 0, a, args, rets);
}

#ifdef NPAIRS_JAX_CUDA
ffi::Error cuda_loss(void* stream, int32_t device, ffi::RemainingArgs args, ffi::RemainingRets rets,
                     int32_t reduction, double temperature, double reg_lambda, int32_t multilabel,
                     int32_t embeddings, int32_t column_targets, int32_t sample_weight, int32_t grad_loss,
                     int32_t want_loss, int32_t want_grads, int32_t threads) {
  const Attributes a{reduction, temperature, reg_lambda, multilabel, embeddings, column_targets,
                     sample_weight, grad_loss, want_loss, want_grads, threads};
  return loss_call(NPAIRS_BACKEND_CUDA, stream, device, a, args, rets);
}
#endif

}  // namespace

#define NPAIRS_JAX_EXPORT __attribute__((visibility("default")))

#define NPAIRS_JAX_BIND_ATTRS(binding)                                                                   \
  binding.RemainingArgs()                                                                                \
      .RemainingRets()                                                                                   \
      .Attr<int32_t>("reduction")                                                                        \
      .Attr<double>("temperature")                                                                       \
      .Attr<double>("reg_lambda")                                                                        \
      .Attr<int32_t>("multilabel")                                                                       \
      .Attr<int32_t>("embeddings")                                                                       \
      .Attr<int32_t>("column_targets")                                                                   \
      .Attr<int32_t>("sample_weight")                                                                    \
      .Attr<int32_t>("grad_loss")                                                                        \
      .Attr<int32_t>("want_loss")                                                                        \
      .Attr<int32_t>("want_grads")                                                                       \
      .Attr<int32_t>("threads")

extern "C" NPAIRS_JAX_EXPORT XLA_FFI_Error* npairs_jax_loss_cpu(XLA_FFI_CallFrame* call_frame);
XLA_FFI_DEFINE_HANDLER_SYMBOL(npairs_jax_loss_cpu, cpu_loss, NPAIRS_JAX_BIND_ATTRS(ffi::Ffi::Bind()));

#ifdef NPAIRS_JAX_CUDA
extern "C" NPAIRS_JAX_EXPORT XLA_FFI_Error* npairs_jax_loss_cuda(XLA_FFI_CallFrame* call_frame);
XLA_FFI_DEFINE_HANDLER_SYMBOL(npairs_jax_loss_cuda, cuda_loss,
                              NPAIRS_JAX_BIND_ATTRS(ffi::Ffi::Bind()
                                                        .Ctx<ffi::PlatformStream<void*>>()
                                                        .Ctx<ffi::DeviceOrdinal>()));
#endif
