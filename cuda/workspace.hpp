// Device memory of the CUDA backend: the workspace a context keeps between
// calls, and the per-call layout of the arrays staged or scratched in it.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "task.hpp"

namespace npairs::cuda {

// How a call uses a caller's array. Device memory of the context's device is
// used in place and the call does not wait for it. Host memory, pageable or
// pinned, is copied through the workspace (pinned memory by DMA, with no
// staging of the driver's) and the call waits before it returns. Managed
// memory is used in place, and the call waits too: managed memory is read
// by the host as well, and a host reader must not see stale values, so it
// is synchronous like host memory. Device memory of another device is
// rejected (its use would be an illegal address, sticky for the process).
enum class MemoryKind { host, device, managed, other_device };

inline MemoryKind memory_kind(const cudaPointerAttributes& attributes, int context_device) {
  switch (attributes.type) {
    case cudaMemoryTypeDevice:
      return attributes.device == context_device ? MemoryKind::device : MemoryKind::other_device;
    case cudaMemoryTypeManaged:
      return MemoryKind::managed;
    default:
      return MemoryKind::host;
  }
}

// The kind of `pointer` for a context on `context_device`; throws
// INVALID_ARGUMENT naming `name` and both devices for another device's memory.
MemoryKind pointer_kind(const void* pointer, int context_device, const char* name);

// A device buffer that only grows; reused by every call of one context.
class DeviceWorkspace {
 public:
  DeviceWorkspace() = default;
  DeviceWorkspace(const DeviceWorkspace&) = delete;
  DeviceWorkspace& operator=(const DeviceWorkspace&) = delete;
  ~DeviceWorkspace();
  // Returns at least `bytes` of device memory. When it has to grow, it first
  // waits for `last_use`, the event that marks the end of the last call that
  // used it (not its stream, which the caller may have destroyed).
  char* reserve(std::size_t bytes, cudaEvent_t last_use);
  std::size_t capacity() const { return capacity_; }

 private:
  char* data_ = nullptr;
  std::size_t capacity_ = 0;
};

// An array as the kernels see it: the caller's device pointer, or its place
// in the workspace.
struct Buffer {
  void* data = nullptr;
  template <class U>
  U* as() const {
    return static_cast<U*>(data);
  }
};

// The arrays of one call. First every array is declared (which sizes the
// workspace), then bind() gives each its address in the workspace.
class CallLayout {
 public:
  // The arrays of a context on `device`.
  explicit CallLayout(int device) : device_(device) {}
  // A caller's input, `name` in messages: used in place when device or
  // managed memory, else staged by upload().
  void input(Buffer& buffer, const void* pointer, std::size_t bytes, const char* name);
  // A caller's output: written in place when device or managed memory, else
  // copied back by download().
  void output(Buffer& buffer, void* pointer, std::size_t bytes, const char* name);
  // Scratch memory of the call.
  void scratch(Buffer& buffer, std::size_t bytes);

  std::size_t bytes() const { return size_; }
  void bind(char* workspace) const;
  // Queues the copies of the host inputs into the workspace.
  void upload(cudaStream_t stream) const;
  // Queues the copies of the workspace into the host outputs.
  void download(cudaStream_t stream) const;
  // True when any array is the caller's host or managed memory: the call
  // must then wait for its stream before returning, as the caller may reuse
  // or read that memory (see MemoryKind).
  bool uses_host_memory() const;

 private:
  struct Entry {
    Buffer* buffer;
    std::size_t offset;
    std::size_t bytes;
    const void* host_input;
    void* host_output;
  };
  void place(Buffer& buffer, std::size_t bytes, const void* host_input, void* host_output);
  // Uses device or managed memory in place and returns true, else false.
  bool in_place(Buffer& buffer, const void* pointer, const char* name);

  int device_;
  std::vector<Entry> entries_;
  std::size_t size_ = 0;
  bool uses_managed_memory_ = false;
};

// The bytes of `count` elements of `element_size` bytes.
inline std::size_t bytes(int64_t count, std::size_t element_size) {
  return static_cast<std::size_t>(count) * element_size;
}

// The caller's arrays that both CUDA paths (the whole call and the streamed
// one) take.
struct CallerArrays {
  Buffer labels, column_labels, multilabels, column_multilabels, anchors, positives, sample_weight, grad_loss;
  Buffer loss, grad_anchors, grad_positives;
};

// Declares the caller's arrays of `task` (values of `value_size` bytes) in
// argument order, which decides the argument a bad pointer's message names:
// `similarity` and `grad_similarity` in their places, unless nullptr (the
// streamed path tiles them). Shared targets declare no column arrays.
void declare_caller_arrays(const Task& task, std::size_t value_size, CallLayout& layout, CallerArrays& a,
                           Buffer* similarity, Buffer* grad_similarity);
// After bind(): with shared targets, the columns' target arrays are the rows'.
void share_targets(const Task& task, CallerArrays& a);

}  // namespace npairs::cuda
