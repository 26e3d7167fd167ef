#include "workspace.hpp"

#include <string>

#include "cuda_check.hpp"
#include "error.hpp"
#include "row_math.hpp"

namespace npairs::cuda {

namespace {

// Alignment of every array in the workspace (cudaMalloc's own, enough for
// vector loads and cuBLAS).
constexpr std::size_t kAlignment = 256;

}  // namespace

MemoryKind pointer_kind(const void* pointer, int context_device, const char* name) {
  cudaPointerAttributes attributes{};
  // CUDA >= 11 reports unregistered host memory as such (the error state is
  // neither read nor cleared: it may hold the caller's pending error).
  NPAIRS_CUDA_CHECK(cudaPointerGetAttributes(&attributes, pointer));
  const MemoryKind kind = memory_kind(attributes, context_device);
  if (kind == MemoryKind::other_device)
    fail(NPAIRS_ERROR_INVALID_ARGUMENT, std::string(name) + " is memory of CUDA device " +
                                            std::to_string(attributes.device) +
                                            ", but the context is on device " +
                                            std::to_string(context_device));
  return kind;
}

DeviceWorkspace::~DeviceWorkspace() { (void)cudaFree(data_); }

char* DeviceWorkspace::reserve(std::size_t bytes, cudaEvent_t last_use) {
  if (bytes <= capacity_) return data_;
  NPAIRS_CUDA_CHECK(cudaEventSynchronize(last_use));
  NPAIRS_CUDA_CHECK(cudaFree(data_));
  data_ = nullptr;
  capacity_ = 0;
  void* data = nullptr;
  NPAIRS_CUDA_CHECK(cudaMalloc(&data, bytes));
  data_ = static_cast<char*>(data);
  capacity_ = bytes;
  return data_;
}

void CallLayout::place(Buffer& buffer, std::size_t bytes, const void* host_input,
                       void* host_output) {
  entries_.push_back(Entry{&buffer, size_, bytes, host_input, host_output});
  size_ += round_up(bytes, kAlignment);
}

bool CallLayout::in_place(Buffer& buffer, const void* pointer, const char* name) {
  const MemoryKind kind = pointer_kind(pointer, device_, name);
  if (kind == MemoryKind::host) return false;
  uses_managed_memory_ |= kind == MemoryKind::managed;
  buffer.data = const_cast<void*>(pointer);  // inputs stay read only: kernels take them as const
  return true;
}

void CallLayout::input(Buffer& buffer, const void* pointer, std::size_t bytes, const char* name) {
  if (pointer != nullptr && !in_place(buffer, pointer, name)) place(buffer, bytes, pointer, nullptr);
}

void CallLayout::output(Buffer& buffer, void* pointer, std::size_t bytes, const char* name) {
  if (pointer != nullptr && !in_place(buffer, pointer, name)) place(buffer, bytes, nullptr, pointer);
}

void CallLayout::scratch(Buffer& buffer, std::size_t bytes) {
  place(buffer, bytes, nullptr, nullptr);
}

void CallLayout::bind(char* workspace) const {
  for (const Entry& entry : entries_) entry.buffer->data = workspace + entry.offset;
}

void CallLayout::upload(cudaStream_t stream) const {
  for (const Entry& entry : entries_)
    if (entry.host_input && entry.bytes > 0)
      NPAIRS_CUDA_CHECK(cudaMemcpyAsync(entry.buffer->data, entry.host_input, entry.bytes,
                                        cudaMemcpyHostToDevice, stream));
}

void CallLayout::download(cudaStream_t stream) const {
  for (const Entry& entry : entries_)
    if (entry.host_output && entry.bytes > 0)
      NPAIRS_CUDA_CHECK(cudaMemcpyAsync(entry.host_output, entry.buffer->data, entry.bytes,
                                        cudaMemcpyDeviceToHost, stream));
}

bool CallLayout::uses_host_memory() const {
  if (uses_managed_memory_) return true;
  for (const Entry& entry : entries_)
    if (entry.host_input || entry.host_output) return true;
  return false;
}

void declare_caller_arrays(const Task& task, std::size_t value_size, CallLayout& layout, CallerArrays& a,
                           Buffer* similarity, Buffer* grad_similarity) {
  const int64_t R = task.rows, M = task.cols, D = task.dim, K = task.classes;
  const std::size_t label_size = dtype_size(task.label_dtype);
  const int64_t loss_count = task.scalar_loss() ? 1 : R;
  layout.input(a.labels, task.labels, bytes(R, label_size), "problem.labels");
  layout.input(a.multilabels, task.multilabels, bytes(R * K, value_size), "problem.multilabels");
  if (!task.shared_targets) {
    layout.input(a.column_labels, task.column_labels, bytes(M, label_size), "problem.column_labels");
    layout.input(a.column_multilabels, task.column_multilabels, bytes(M * K, value_size),
                 "problem.column_multilabels");
  }
  if (similarity) layout.input(*similarity, task.similarity, bytes(R * M, value_size), "problem.similarity");
  layout.input(a.anchors, task.anchors, bytes(R * D, value_size), "problem.anchors");
  layout.input(a.positives, task.positives, bytes(M * D, value_size), "problem.positives");
  layout.input(a.sample_weight, task.sample_weight, bytes(R, value_size), "problem.sample_weight");
  layout.input(a.grad_loss, task.grad_loss, bytes(loss_count, value_size), "grad_loss");
  layout.output(a.loss, task.loss, bytes(loss_count, value_size), "loss");
  if (grad_similarity)
    layout.output(*grad_similarity, task.grad_similarity, bytes(R * M, value_size), "grads.similarity");
  layout.output(a.grad_anchors, task.grad_anchors, bytes(R * D, value_size), "grads.anchors");
  layout.output(a.grad_positives, task.grad_positives, bytes(M * D, value_size), "grads.positives");
}

void share_targets(const Task& task, CallerArrays& a) {
  if (!task.shared_targets) return;
  a.column_labels = a.labels;
  a.column_multilabels = a.multilabels;
}

}  // namespace npairs::cuda
