// Device memory of the CUDA backend: the workspace a context keeps between
// calls, and the per-call layout of the arrays staged or scratched in it.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <vector>

namespace npairs::cuda {

// True for device and managed memory (usable by kernels as is); false for
// host memory, pageable or pinned, which is staged through the workspace.
bool is_device_memory(const void* pointer);

// A device buffer that only grows; reused by every call of one context.
class DeviceWorkspace {
 public:
  DeviceWorkspace() = default;
  DeviceWorkspace(const DeviceWorkspace&) = delete;
  DeviceWorkspace& operator=(const DeviceWorkspace&) = delete;
  ~DeviceWorkspace();
  // Returns at least `bytes` of device memory. When it has to grow, it first
  // waits for `stream`, the only stream that may still be using the old one.
  char* reserve(std::size_t bytes, cudaStream_t stream);

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
  // A caller's input: used in place when device memory, else staged by upload().
  void input(Buffer& buffer, const void* pointer, std::size_t bytes);
  // A caller's output: written in place when device memory, else copied back
  // by download().
  void output(Buffer& buffer, void* pointer, std::size_t bytes);
  // Scratch memory of the call.
  void scratch(Buffer& buffer, std::size_t bytes);

  std::size_t bytes() const { return size_; }
  void bind(char* workspace) const;
  // Queues the copies of the host inputs into the workspace.
  void upload(cudaStream_t stream) const;
  // Queues the copies of the workspace into the host outputs.
  void download(cudaStream_t stream) const;
  // True when any array is the caller's host memory: the call must then wait
  // for its stream before returning, as the caller may reuse that memory.
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

  std::vector<Entry> entries_;
  std::size_t size_ = 0;
};

}  // namespace npairs::cuda
