// The CUDA backend: stages host arrays, checks the targets on the device,
// then runs cuBLAS for the GEMMs and the fused row kernel for the loss and
// dL/dS, all queued on the context's stream.
#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include <cstring>
#include <string>

#include "call_plan.hpp"
#include "cuda_backend.hpp"
#include "cuda_check.hpp"
#include "deferred_check.cuh"
#include "dtype.cuh"
#include "error.hpp"
#include "first_row_with_negative.cuh"
#include "first_row_without_positive.cuh"
#include "gemm.hpp"
#include "hard_class_selection.hpp"
#include "l2_gradient.cuh"
#include "row_loss_kernel.cuh"
#include "scalar_loss.cuh"
#include "streamed_loss.hpp"
#include "sum_squares.cuh"
#include "target_checks.hpp"
#include "targets.cuh"
#include "workspace.hpp"

namespace npairs::cuda {

int device_count() noexcept {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    (void)cudaGetLastError();
    return 0;
  }
  return count;
}

namespace {

struct CublasDeleter {
  void operator()(cublasHandle_t handle) const noexcept { (void)cublasDestroy(handle); }
};
struct EventDeleter {
  void operator()(cudaEvent_t event) const noexcept { (void)cudaEventDestroy(event); }
};
struct DeviceDeleter {
  void operator()(void* pointer) const noexcept { (void)cudaFree(pointer); }
};
struct PinnedDeleter {
  void operator()(long long* pointer) const noexcept { (void)cudaFreeHost(pointer); }
};
struct SlotsDeleter {
  void operator()(long long* pointer) const noexcept { (void)cudaFree(pointer); }
};
struct StreamDeleter {
  void operator()(cudaStream_t stream) const noexcept { (void)cudaStreamDestroy(stream); }
};
constexpr std::size_t kBadRowBytes = kBadRowSlots * sizeof(long long);

// Calls f(targets) with the task's targets as the kernels read them.
template <class T, class F>
void with_targets(const Task& task, const Buffer& labels, const Buffer& column_labels,
                  const Buffer& gram, F&& f) {
  if (task.multilabel())
    f(GramTargets<T>{gram.as<const T>(), task.cols});
  else if (task.label_dtype == NPAIRS_I64)
    f(LabelTargets<T, int64_t>{labels.as<const int64_t>(), column_labels.as<const int64_t>()});
  else
    f(LabelTargets<T, int32_t>{labels.as<const int32_t>(), column_labels.as<const int32_t>()});
}

// Makes a device current for a scope, then the caller's again: a library
// leaves the caller's CUDA state as it found it.
class ScopedDevice {
 public:
  // Switches only when needed: setting a device initializes a context on it.
  explicit ScopedDevice(int device) {
    NPAIRS_CUDA_CHECK(cudaGetDevice(&caller_));
    if (caller_ != device) {
      NPAIRS_CUDA_CHECK(cudaSetDevice(device));
      switched_ = true;
    }
  }
  ~ScopedDevice() {
    if (switched_) (void)cudaSetDevice(caller_);
  }
  ScopedDevice(const ScopedDevice&) = delete;
  ScopedDevice& operator=(const ScopedDevice&) = delete;

 private:
  int caller_ = 0;
  bool switched_ = false;
};

// Sets the device it holds current when destroyed (-1: none).
struct DeviceRestorer {
  int device = -1;
  ~DeviceRestorer() {
    if (device >= 0) (void)cudaSetDevice(device);
  }
};

class CudaBackend final : public Backend {
 public:
  explicit CudaBackend(int device) : device_(device) {
    const ScopedDevice current(device_);
    NPAIRS_CUDA_CHECK(cudaDeviceGetAttribute(&limits_.multiprocessors,
                                             cudaDevAttrMultiProcessorCount, device_));
    int shared_bytes = 0;
    NPAIRS_CUDA_CHECK(
        cudaDeviceGetAttribute(&shared_bytes, cudaDevAttrMaxSharedMemoryPerBlockOptin, device_));
    limits_.shared_bytes_per_block = static_cast<std::size_t>(shared_bytes);
    void* cublas_workspace = nullptr;
    NPAIRS_CUDA_CHECK(cudaMalloc(&cublas_workspace, kCublasWorkspaceBytes));
    cublas_workspace_.reset(cublas_workspace);
    cublasHandle_t handle = nullptr;
    NPAIRS_CUDA_CHECK(cublasCreate(&handle));
    cublas_.reset(handle);
    // 16-bit GEMMs accumulate in float (SPEC): no split-K reduction in 16 bits.
    NPAIRS_CUDA_CHECK(
        cublasSetMathMode(handle, static_cast<cublasMath_t>(
                                      CUBLAS_DEFAULT_MATH |
                                      CUBLAS_MATH_DISALLOW_REDUCED_PRECISION_REDUCTION)));
    set_cublas_stream(stream_);
    cudaEvent_t event = nullptr;
    NPAIRS_CUDA_CHECK(cudaEventCreateWithFlags(&event, cudaEventDisableTiming));
    work_queued_.reset(event);
    void* pinned = nullptr;
    NPAIRS_CUDA_CHECK(cudaMallocHost(&pinned, kBadRowBytes));
    bad_rows_host_.reset(static_cast<long long*>(pinned));
    // The deferred checks' reports, read and cleared by synchronize on a
    // stream of the context's own.
    void* reports = nullptr;
    NPAIRS_CUDA_CHECK(cudaMalloc(&reports, kBadRowBytes));
    deferred_reports_.reset(static_cast<long long*>(reports));
    cudaStream_t report_stream = nullptr;
    NPAIRS_CUDA_CHECK(cudaStreamCreateWithFlags(&report_stream, cudaStreamNonBlocking));
    report_stream_.reset(report_stream);
    NPAIRS_CUDA_CHECK(cudaMemsetAsync(reports, kNoBadRowByte, kBadRowBytes, report_stream));
    NPAIRS_CUDA_CHECK(cudaStreamSynchronize(report_stream));
  }

  // The members then free the workspace (cudaFree waits for the device), the
  // pinned buffer, the event and the cuBLAS handle, on this device; the
  // restorer, destroyed last, makes the caller's device current again.
  ~CudaBackend() override {
    int caller = 0;
    if (cudaGetDevice(&caller) == cudaSuccess) caller_device_.device = caller;
    (void)cudaSetDevice(device_);
  }

  npairs_backend kind() const override { return NPAIRS_BACKEND_CUDA; }

  // Work queued by earlier calls may still use the workspace: the new stream
  // waits for it (the event marks the end of the last call), even when the
  // handle is the same: cudaStreamPerThread names another stream on another
  // thread, and compute() repeats the wait for it (wait_for_earlier_calls).
  // The legacy default stream (nullptr, cudaStreamLegacy) is one stream of
  // the device for every thread.
  void set_stream(void* stream) override {
    const ScopedDevice current(device_);
    const auto next = static_cast<cudaStream_t>(stream);
    NPAIRS_CUDA_CHECK(cudaStreamWaitEvent(next, work_queued_.get(), 0));
    set_cublas_stream(next);
    stream_ = next;
  }

  void set_threads(int /*threads*/) override {}  // CPU contexts only

  void set_workspace_limit(std::size_t bytes) override { workspace_limit_ = bytes; }

  void reserve(std::size_t bytes) override {
    const ScopedDevice current(device_);
    workspace_.reserve(bytes, work_queued_.get());
  }

  std::size_t workspace_size(const Task& task) override {
    std::size_t bytes = 0;
    switch (task.dtype) {
      case NPAIRS_F32:
        bytes = declared_bytes<float>(task);
        break;
      case NPAIRS_F64:
        bytes = declared_bytes<double>(task);
        break;
      case NPAIRS_F16:
        bytes = declared_bytes<__half>(task);
        break;
      default:
        bytes = declared_bytes<__nv_bfloat16>(task);  // make_task admits no other dtype
    }
    if (!streams(bytes) && !runs_tiles_only(task)) return bytes;
    return plan_streamed(task, workspace_limit_, device_).bytes;
  }

  // Waits for the end of the last call (its event, which a replayed graph
  // records too), not for the stream: the caller may have destroyed the
  // stream already. Then reports (and clears) what deferred checks found.
  void synchronize() override {
    const ScopedDevice current(device_);
    NPAIRS_CUDA_CHECK(cudaEventSynchronize(work_queued_.get()));
    if (!deferred_checks_used_) return;
    long long* reports = bad_rows_host_.get();
    NPAIRS_CUDA_CHECK(cudaMemcpyAsync(reports, deferred_reports_.get(), kBadRowBytes,
                                      cudaMemcpyDeviceToHost, report_stream_.get()));
    NPAIRS_CUDA_CHECK(cudaStreamSynchronize(report_stream_.get()));
    bool reported = false;
    for (int slot = 0; slot < kBadRowSlots; ++slot) reported |= reports[slot] != kNoBadRow;
    if (!reported) return;
    NPAIRS_CUDA_CHECK(cudaMemsetAsync(deferred_reports_.get(), kNoBadRowByte, kBadRowBytes,
                                      report_stream_.get()));
    NPAIRS_CUDA_CHECK(cudaStreamSynchronize(report_stream_.get()));
    report_bad_rows(reports);
  }

  void compute(const Task& task) override {
    one_call([&] {
      switch (task.dtype) {
        case NPAIRS_F32:
          run<float>(task);
          break;
        case NPAIRS_F64:
          run<double>(task);
          break;
        case NPAIRS_F16:
          run<__half>(task);
          break;
        default:
          run<__nv_bfloat16>(task);  // make_task admits no other dtype
      }
    });
  }

  // Column blocks, through the streamed path's pieces (streamed_loss.hpp).
  void block_stats(const Task& task) override { compute_block(task, false); }
  void block_gradients(const Task& task) override { compute_block(task, true); }

  void select_hard_classes(const HardClassTask& task) override {
    one_call([&] {
      cuda::select_hard_classes(task, HardClassDevice{device_, cublas_.get(), stream_, &workspace_,
                                                      work_queued_.get(), workspace_limit_, bad_rows_host_.get()});
    });
  }

 private:
  // cuBLAS computes reproducibly on any stream only with a workspace of the
  // handle's own (its default pool is shared between streams), so the
  // context gives it one, after every change of stream (which resets it).
  static constexpr std::size_t kCublasWorkspaceBytes = std::size_t(32) << 20;  // Hopper's advice
  void set_cublas_stream(cudaStream_t stream) {
    NPAIRS_CUDA_CHECK(cublasSetStream(cublas_.get(), stream));
    NPAIRS_CUDA_CHECK(
        cublasSetWorkspace(cublas_.get(), cublas_workspace_.get(), kCublasWorkspaceBytes));
  }
  // The per-thread default stream is the calling thread's: calls from
  // different threads of one context land on different streams, so each
  // call's stream waits for the last call (except under capture, which
  // cannot wait for work outside the graph).
  void wait_for_earlier_calls() {
    if (stream_ != cudaStreamPerThread) return;
    cudaStreamCaptureStatus capture = cudaStreamCaptureStatusNone;
    NPAIRS_CUDA_CHECK(cudaStreamIsCapturing(stream_, &capture));
    if (capture == cudaStreamCaptureStatusNone)
      NPAIRS_CUDA_CHECK(cudaStreamWaitEvent(stream_, work_queued_.get(), 0));
  }
  // Under capture the record becomes a node of the graph (external), so that
  // each replay marks its end for synchronize.
  cudaError_t record_end_of_call() {
    cudaStreamCaptureStatus capture = cudaStreamCaptureStatusNone;
    const cudaError_t status = cudaStreamIsCapturing(stream_, &capture);
    if (status != cudaSuccess) return status;
    return capture == cudaStreamCaptureStatusActive
               ? cudaEventRecordWithFlags(work_queued_.get(), stream_, cudaEventRecordExternal)
               : cudaEventRecord(work_queued_.get(), stream_);
  }
  // One call's work on the context's device, after the earlier calls', its
  // end recorded even when it failed (the call's queued work).
  template <class Work>
  void one_call(Work&& work) {
    const ScopedDevice current(device_);
    try {
      wait_for_earlier_calls();
      work();
    } catch (...) {
      (void)record_end_of_call();
      throw;
    }
    NPAIRS_CUDA_CHECK(record_end_of_call());
  }
  void compute_block(const Task& task, bool gradients) {
    one_call([&] {
      run_block(task, workspace_limit_, gradients,
                StreamedContext{device_, cublas_.get(), stream_, work_queued_.get(), limits_, &workspace_,
                                bad_rows_host_.get()});
    });
  }
  // Fails, before any work, a call that would wait for the host while its
  // stream is captured (which would invalidate the capture).
  void check_capturable(const HostWaits& waits, std::size_t workspace_bytes) const;
  template <class T>
  void run(const Task& task);
  template <class T>
  std::size_t declared_bytes(const Task& task) const;
  // A call whose whole workspace exceeds the limit goes to the streamed path.
  bool streams(std::size_t whole_bytes) const { return workspace_limit_ != 0 && whole_bytes > workspace_limit_; }
  void zero_output(void* pointer, std::size_t size, const char* name);

  DeviceRestorer caller_device_;  // first: destroyed after every other member
  int device_;
  DeviceLimits limits_;
  cudaStream_t stream_ = nullptr;  // nullptr: the legacy default stream
  std::unique_ptr<void, DeviceDeleter> cublas_workspace_;  // freed after the handle
  std::unique_ptr<cublasContext, CublasDeleter> cublas_;
  std::unique_ptr<CUevent_st, EventDeleter> work_queued_;
  std::unique_ptr<long long, PinnedDeleter> bad_rows_host_;
  std::unique_ptr<long long, SlotsDeleter> deferred_reports_;  // [kBadRowSlots]
  std::unique_ptr<CUstream_st, StreamDeleter> report_stream_;
  bool deferred_checks_used_ = false;
  DeviceWorkspace workspace_;
  std::size_t workspace_limit_ = 0;
};

void CudaBackend::zero_output(void* pointer, std::size_t size, const char* name) {
  if (!pointer || size == 0) return;
  if (pointer_kind(pointer, device_, name) != MemoryKind::host)
    NPAIRS_CUDA_CHECK(cudaMemsetAsync(pointer, 0, size, stream_));
  else
    std::memset(pointer, 0, size);
}

// The arrays of one call: the caller's inputs and outputs (in place when
// device memory, else staged) and the scratch ones.
struct CallArrays : CallerArrays {
  Buffer similarity, grad_similarity;
  Buffer bad_rows, gram, logits, gemm_input, row_losses, l2_partials;
};

// dL/dS = (r / tau) g_i w_i (softmax - T): where r / tau goes, and whether
// the embedding gradients' GEMMs read dS from a scratch array of their own.
GradientScaling gradient_scaling(const Task& task) {
  return plan_gradient_scaling(dtype_size(task.dtype), task.grad_similarity != nullptr,
                               task.wants_embedding_grads(),
                               task.reduction_factor() / task.temperature);
}

// Declares every array of the call in `layout`, which sizes the workspace.
template <class T>
void declare_arrays(const Task& task, CallLayout& layout, CallArrays& a) {
  using C = compute_t<T>;
  const int64_t R = task.rows, M = task.cols;
  const std::size_t value_size = sizeof(T);
  const bool scalar = task.scalar_loss();
  const bool l2 = task.reg_lambda > 0;
  declare_caller_arrays(task, value_size, layout, a, &a.similarity, &a.grad_similarity);

  // With shared single-label targets every row is its own positive.
  const bool check_targets = task.multilabel() || !task.shared_targets;
  const bool scalar_loss = task.loss && scalar;
  if (check_targets) layout.scratch(a.bad_rows, kBadRowBytes);
  if (task.multilabel()) layout.scratch(a.gram, bytes(R * M, sizeof(C)));
  // Embedding logits are computed where dL/dS goes (then overwritten in place
  // by it), or in scratch when dL/dS is not an output.
  if (task.embeddings() && !task.grad_similarity) layout.scratch(a.logits, bytes(R * M, value_size));
  if (gradient_scaling(task).separate_gemm_input) layout.scratch(a.gemm_input, bytes(R * M, value_size));
  if (scalar_loss) layout.scratch(a.row_losses, bytes(R, sizeof(C)));
  if (scalar_loss && l2) layout.scratch(a.l2_partials, 2 * kSumSquaresParts * sizeof(double));
}

template <class T>
std::size_t CudaBackend::declared_bytes(const Task& task) const {
  CallLayout layout(device_);
  CallArrays arrays;
  declare_arrays<T>(task, layout, arrays);
  return layout.bytes();
}

// T is the stored element type; sums, softmax and the label overlaps are in
// C = compute_t<T> (float for the 16-bit types).
template <class T>
void CudaBackend::run(const Task& task) {
  using C = compute_t<T>;
  const int64_t R = task.rows, M = task.cols, D = task.dim, K = task.classes;
  const std::size_t value_size = sizeof(T);
  const cudaStream_t stream = stream_;
  cublasHandle_t cublas = cublas_.get();
  const bool scalar = task.scalar_loss();
  const bool l2 = task.reg_lambda > 0;
  const bool allow_tf32 = (task.flags & NPAIRS_FLAG_ALLOW_TF32) != 0;

  // Every array of the call: the caller's (in place when device memory) and
  // the scratch ones in the workspace.
  CallLayout layout(device_);
  CallArrays a;
  declare_arrays<T>(task, layout, a);
  const bool check_targets = task.multilabel() || !task.shared_targets;
  const bool defer_checks = (task.flags & NPAIRS_FLAG_DEFER_CHECKS) != 0;
  if (runs_tiles_only(task) || streams(layout.bytes())) {
    const TilePlan plan = plan_streamed(task, workspace_limit_, device_);
    StreamedContext context{device_, cublas, stream, work_queued_.get(), limits_, &workspace_, bad_rows_host_.get()};
    // A symmetric or dL/dtau call in one piece waits (or defers its checks)
    // as a call of the row kernel does.
    if (runs_tiles_only(task) && one_piece(task, plan)) {
      const HostWaits waits =
          plan_host_waits(plan.bytes, workspace_.capacity(), check_targets, defer_checks, layout.uses_host_memory());
      if (waits.any()) check_capturable(waits, plan.bytes);
      if (check_targets && defer_checks) {
        context.deferred_reports = deferred_reports_.get();
        deferred_checks_used_ = true;
      }
    }
    run_streamed(task, plan, context);
    return;
  }
  const bool scalar_loss = task.loss && scalar;
  const HostWaits waits = plan_host_waits(layout.bytes(), workspace_.capacity(), check_targets,
                                          defer_checks, layout.uses_host_memory());
  if (waits.any()) check_capturable(waits, layout.bytes());
  const bool deferred_check = check_targets && !waits.wait_for_check;
  if (deferred_check) deferred_checks_used_ = true;

  layout.bind(workspace_.reserve(layout.bytes(), work_queued_.get()));
  layout.upload(stream);
  share_targets(task, a);

  // 1. The data checks: before any output is written, or (deferred) on the
  // device after the row kernel (deferred_check.cuh).
  long long* first_bad = a.bad_rows.as<long long>();
  if (check_targets) {
    NPAIRS_CUDA_CHECK(cudaMemsetAsync(first_bad, kNoBadRowByte, kBadRowBytes, stream));
    if (task.multilabel()) {
      if (!deferred_check)
        launch_first_row_with_negative(a.multilabels.as<const T>(), R, K,
                                       first_bad + kNegativeMultilabel, stream);
      if (!task.shared_targets)
        launch_first_row_with_negative(a.column_multilabels.as<const T>(), M, K,
                                       first_bad + kNegativeColumnMultilabel, stream);
      // G = Y Y'^T, always in full precision: TF32 is for the logits only.
      if (R > 0)
        gemm_row_major<T, C>(cublas, false, false, true, R, M, K, C(1),
                             a.multilabels.as<const T>(), a.column_multilabels.as<const T>(), C(0),
                             a.gram.as<C>());
    }
  }
  if (check_targets && !deferred_check) {
    with_targets<C>(task, a.labels, a.column_labels, a.gram, [&](const auto& targets) {
      launch_first_row_without_positive(
          targets, R, M, first_bad + (task.multilabel() ? kNoPositiveMultilabel : kNoPositiveLabel),
          stream);
    });
    NPAIRS_CUDA_CHECK(cudaMemcpyAsync(bad_rows_host_.get(), first_bad, kBadRowBytes,
                                      cudaMemcpyDeviceToHost, stream));
    NPAIRS_CUDA_CHECK(cudaStreamSynchronize(stream));
    report_bad_rows(bad_rows_host_.get());
  }
  // The deferred check of the rows, once the outputs it makes NaN are written.
  DeferredCheckArgs<T> deferred{};
  deferred.rows = R;
  deferred.cols = M;
  deferred.multilabels = a.multilabels.as<const T>();
  deferred.classes = K;
  deferred.column_negative =
      task.multilabel() && !task.shared_targets ? first_bad + kNegativeColumnMultilabel : nullptr;
  deferred.reports = deferred_reports_.get();
  auto launch_deferred_check_of_rows = [&] {
    if (!deferred_check) return;
    with_targets<C>(task, a.labels, a.column_labels, a.gram, [&](const auto& targets) {
      launch_deferred_check(deferred, targets, stream);
    });
  };
  if (R == 0) {
    launch_deferred_check_of_rows();  // the column check still reports
    // The scalar reductions give 0 and every gradient is zero; only the
    // scalar loss and dL/dP (M x D) have elements.
    if (scalar) zero_output(task.loss, value_size, "loss");
    zero_output(task.grad_positives, bytes(M * D, value_size), "grads.positives");
    return;
  }

  // 2. The similarities S: the input, or A P^T. The row kernel divides by
  // tau in C, so that 16-bit S only holds what the caller's S would.
  const T* similarities = a.similarity.as<const T>();
  if (task.embeddings()) {
    T* computed = task.grad_similarity ? a.grad_similarity.as<T>() : a.logits.as<T>();
    gemm_row_major<T>(cublas, allow_tf32, false, true, R, M, D, C(1), a.anchors.as<const T>(),
                      a.positives.as<const T>(), C(0), computed);
    similarities = computed;
  }
  T* grad_logits = task.grad_similarity           ? a.grad_similarity.as<T>()
                   : task.wants_embedding_grads() ? a.logits.as<T>()
                                                  : nullptr;
  // What the embedding gradients' GEMMs read.
  const GradientScaling scaling = gradient_scaling(task);
  const T* gemm_grad_logits = scaling.separate_gemm_input ? a.gemm_input.as<const T>() : grad_logits;

  // 3. The fused row kernel: w_i * loss_i per row, and dL/dS. With a separate
  // GEMM input, a first pass writes it (unscaled) before the second
  // overwrites the logits in place with the scaled dS output.
  if (a.loss.data || grad_logits) {
    RowLossArgs<T> args{};
    args.logits = similarities;
    args.logit_scale = logit_scale<C>(task.temperature);
    args.rows = R;
    args.cols = M;
    args.sample_weight = a.sample_weight.as<const T>();
    args.grad_loss = a.grad_loss.as<const T>();
    args.grad_loss_per_row = !scalar;
    with_targets<C>(task, a.labels, a.column_labels, a.gram, [&](const auto& targets) {
      if (scaling.separate_gemm_input) {
        RowLossArgs<T> unscaled = args;
        unscaled.grad_factor = static_cast<C>(scaling.gemm_input_factor);
        unscaled.grad_logits = a.gemm_input.as<T>();
        launch_row_loss(unscaled, targets, limits_, stream);
      }
      args.grad_factor = static_cast<C>(task.grad_similarity ? scaling.output_factor
                                                             : scaling.gemm_input_factor);
      args.row_losses = scalar ? nullptr : a.loss.as<T>();
      args.row_losses_to_sum = a.row_losses.as<C>();
      args.grad_logits = grad_logits;
      launch_row_loss(args, targets, limits_, stream);
    });
    deferred.row_losses = args.row_losses;
    deferred.row_losses_to_sum = args.row_losses_to_sum;
    deferred.grad_logits = grad_logits;
    deferred.gemm_grad_logits = scaling.separate_gemm_input ? a.gemm_input.as<T>() : nullptr;
  }
  launch_deferred_check_of_rows();

  // 4. The scalar reductions, with the L2 term.
  if (scalar_loss) {
    launch_scalar_loss_with_l2(a.row_losses.as<const C>(), R, M, D, task.reduction_factor(), task.reg_lambda,
                               a.anchors.as<const T>(), a.positives.as<const T>(), a.l2_partials.as<double>(),
                               a.loss.as<T>(), stream);
  }

  // 5. The embedding gradients: dA = dS P and dP = dS^T A, added by the GEMM
  // (beta = 1) to the L2 term written first.
  const C l2_beta = l2 ? C(1) : C(0);
  const C ds_alpha = static_cast<C>(scaling.gemm_alpha);
  if (task.grad_anchors) {
    if (l2)
      launch_l2_gradient(a.anchors.as<const T>(), R * D, 0.5 * task.reg_lambda / double(R),
                         a.grad_loss.as<const T>(), a.grad_anchors.as<T>(), stream);
    gemm_row_major<T>(cublas, allow_tf32, false, false, R, D, M, ds_alpha, gemm_grad_logits,
                      a.positives.as<const T>(), l2_beta, a.grad_anchors.as<T>());
  }
  if (task.grad_positives) {
    if (l2)
      launch_l2_gradient(a.positives.as<const T>(), M * D, 0.5 * task.reg_lambda / double(M),
                         a.grad_loss.as<const T>(), a.grad_positives.as<T>(), stream);
    gemm_row_major<T>(cublas, allow_tf32, true, false, M, D, R, ds_alpha, gemm_grad_logits,
                      a.anchors.as<const T>(), l2_beta, a.grad_positives.as<T>());
  }

  // 6. Host outputs are copied back; host memory is waited for either way, as
  // the caller may reuse it when the call returns.
  layout.download(stream);
  if (waits.wait_at_end) NPAIRS_CUDA_CHECK(cudaStreamSynchronize(stream));
}

void CudaBackend::check_capturable(const HostWaits& waits, std::size_t workspace_bytes) const {
  cudaStreamCaptureStatus capture = cudaStreamCaptureStatusNone;
  NPAIRS_CUDA_CHECK(cudaStreamIsCapturing(stream_, &capture));
  if (capture == cudaStreamCaptureStatusNone) return;
  const std::string why =
      waits.grow_workspace
          ? "it needs " + std::to_string(workspace_bytes) + " bytes of workspace and the context has " +
                std::to_string(workspace_.capacity()) + " (npairs_context_reserve them first)"
      : waits.wait_for_check ? "it checks its targets on the host (pass NPAIRS_FLAG_DEFER_CHECKS)"
                             : "it reads or writes host or managed memory (pass device pointers)";
  fail(NPAIRS_ERROR_UNSUPPORTED,
       "the context's stream is being captured, and the call would wait for the device: " + why);
}

}  // namespace

std::unique_ptr<Backend> make_backend(int device) { return std::make_unique<CudaBackend>(device); }

}  // namespace npairs::cuda
