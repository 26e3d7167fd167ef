#include "workspace.hpp"

#include "cuda_check.hpp"

namespace npairs::cuda {

namespace {

// Alignment of every array in the workspace (cudaMalloc's own, enough for
// vector loads and cuBLAS).
constexpr std::size_t kAlignment = 256;

}  // namespace

bool is_device_memory(const void* pointer) {
  cudaPointerAttributes attributes{};
  if (cudaPointerGetAttributes(&attributes, pointer) != cudaSuccess) {
    (void)cudaGetLastError();  // older runtimes reject unregistered host memory
    return false;
  }
  return attributes.type == cudaMemoryTypeDevice || attributes.type == cudaMemoryTypeManaged;
}

DeviceWorkspace::~DeviceWorkspace() { (void)cudaFree(data_); }

char* DeviceWorkspace::reserve(std::size_t bytes, cudaStream_t stream) {
  if (bytes <= capacity_) return data_;
  NPAIRS_CUDA_CHECK(cudaStreamSynchronize(stream));
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
  size_ += (bytes + kAlignment - 1) / kAlignment * kAlignment;
}

void CallLayout::input(Buffer& buffer, const void* pointer, std::size_t bytes) {
  if (pointer == nullptr) return;
  if (is_device_memory(pointer)) {
    buffer.data = const_cast<void*>(pointer);  // read only: kernels take it as const
  } else {
    place(buffer, bytes, pointer, nullptr);
  }
}

void CallLayout::output(Buffer& buffer, void* pointer, std::size_t bytes) {
  if (pointer == nullptr) return;
  if (is_device_memory(pointer)) {
    buffer.data = pointer;
  } else {
    place(buffer, bytes, nullptr, pointer);
  }
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
  for (const Entry& entry : entries_)
    if (entry.host_input || entry.host_output) return true;
  return false;
}

}  // namespace npairs::cuda
