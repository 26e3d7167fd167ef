// Helpers of the CUDA tests: the skip when no GPU backend is usable, and
// device mirrors of npt::Array (whole buffer, guards included) when the CUDA
// runtime is linked (NPAIRS_TEST_HAVE_CUDART).
#pragma once

#include "test_util.hpp"

#ifdef NPAIRS_TEST_HAVE_CUDART
#include <cuda_runtime.h>
#endif

// Skips the current test, with the reason, when the library has no usable
// CUDA backend here.
#define NPT_REQUIRE_CUDA()                                                                         \
  do {                                                                                             \
    if (npairs_backend_available(NPAIRS_BACKEND_CUDA) != 1)                                        \
      GTEST_SKIP() << "CUDA backend not usable here: npairs_backend_available(NPAIRS_BACKEND_CUDA) " \
                      "is 0 (library built without CUDA, or no GPU present)";                      \
  } while (0)

#ifdef NPAIRS_TEST_HAVE_CUDART
#define NPT_REQUIRE_CUDART() \
  do {                       \
  } while (0)
#define NPT_ASSERT_CUDA(expr)                                                        \
  do {                                                                               \
    const cudaError_t npt_err_ = (expr);                                             \
    ASSERT_EQ(npt_err_, cudaSuccess) << #expr << ": " << cudaGetErrorString(npt_err_); \
  } while (0)

namespace npt {

// A device copy of a host Array's whole buffer (guards included), so that
// poison and guard checks work unchanged after download().
class DeviceArray {
 public:
  DeviceArray() = default;
  explicit DeviceArray(const Array& host) : bytes_(host.bytes().size()), offset_(host.data_offset()) {
    if (bytes_ == 0) return;
    if (cudaMalloc(&ptr_, bytes_) != cudaSuccess) {
      ptr_ = nullptr;
      return;
    }
    if (cudaMemcpy(ptr_, host.bytes().data(), bytes_, cudaMemcpyHostToDevice) != cudaSuccess) {
      cudaFree(ptr_);
      ptr_ = nullptr;
    }
  }
  ~DeviceArray() {
    if (ptr_ != nullptr) cudaFree(ptr_);
  }
  DeviceArray(const DeviceArray&) = delete;
  DeviceArray& operator=(const DeviceArray&) = delete;
  bool ok() const { return bytes_ == 0 || ptr_ != nullptr; }
  void* data() const { return ptr_ ? static_cast<char*>(ptr_) + offset_ : nullptr; }
  // Copies a host array of the same size over the device buffer (new inputs
  // in the same device memory, as for a CUDA graph's replay).
  bool upload(const Array& host) {
    if (bytes_ == 0) return true;
    return host.bytes().size() == bytes_ &&
           cudaMemcpy(ptr_, host.bytes().data(), bytes_, cudaMemcpyHostToDevice) == cudaSuccess;
  }
  // Copies the device buffer back over the host array's bytes.
  bool download(Array& host) const {
    if (bytes_ == 0) return true;
    return host.bytes().size() == bytes_ &&
           cudaMemcpy(host.raw_bytes(), ptr_, bytes_, cudaMemcpyDeviceToHost) == cudaSuccess;
  }

 private:
  void* ptr_ = nullptr;
  std::size_t bytes_ = 0;
  std::size_t offset_ = 0;
};

// Runs npairs_loss on `ctx` with device copies of every array of the call
// (the similarity replaced by the dS buffer when `in_place`; no loss when
// `loss_null`), waits, and copies the outputs back over `out`.
inline void run_on_device_copies(npairs_context ctx, const Inputs& in, Outputs& out, bool in_place = false,
                                 bool loss_null = false) {
  DeviceArray labels(in.labels), column_labels(in.column_labels), multilabels(in.multilabels),
      column_multilabels(in.column_multilabels), similarity(in.similarity), anchors(in.anchors),
      positives(in.positives), weights(in.sample_weight), grad_loss(in.grad_loss);
  DeviceArray loss(out.loss), dS(out.grad_similarity), dA(out.grad_anchors), dP(out.grad_positives),
      dtau(out.grad_temperature);
  for (const DeviceArray* d : {&labels, &column_labels, &multilabels, &column_multilabels, &similarity, &anchors,
                               &positives, &weights, &grad_loss, &loss, &dS, &dA, &dP, &dtau}) {
    ASSERT_TRUE(d->ok()) << "cudaMalloc/cudaMemcpy failed";
  }
  npairs_problem p = in.problem();
  const npairs_options o = in.options();
  auto dev = [](const void* host_ptr, const DeviceArray& d) -> const void* { return host_ptr ? d.data() : nullptr; };
  p.labels = dev(p.labels, labels);
  p.column_labels = dev(p.column_labels, column_labels);
  p.multilabels = dev(p.multilabels, multilabels);
  p.column_multilabels = dev(p.column_multilabels, column_multilabels);
  p.similarity = in_place ? dS.data() : dev(p.similarity, similarity);
  p.anchors = dev(p.anchors, anchors);
  p.positives = dev(p.positives, positives);
  p.sample_weight = dev(p.sample_weight, weights);
  npairs_gradients g;
  npairs_gradients_init(&g);
  g.similarity = out.want_similarity ? dS.data() : nullptr;
  g.anchors = out.want_anchors ? dA.data() : nullptr;
  g.positives = out.want_positives ? dP.data() : nullptr;
  g.temperature = out.want_temperature ? dtau.data() : nullptr;
  ASSERT_NPAIRS_OK(npairs_loss(ctx, &o, &p, in.spec.grad_loss ? grad_loss.data() : nullptr,
                               loss_null ? nullptr : loss.data(), out.any_grads() ? &g : nullptr));
  ASSERT_NPAIRS_OK(npairs_context_synchronize(ctx));
  ASSERT_TRUE(loss.download(out.loss) && dS.download(out.grad_similarity) && dA.download(out.grad_anchors) &&
              dP.download(out.grad_positives) && dtau.download(out.grad_temperature));
}

}  // namespace npt
#else
#define NPT_REQUIRE_CUDART() \
  GTEST_SKIP() << "tests built without the CUDA runtime (CUDA toolkit not found): device-pointer path not tested"
#endif

namespace npt {

// A problem without rows whose column 1 of problem.column_multilabels (3
// columns of 2 classes, kNoRowsColumnMultilabels) has a negative entry:
// `rows` stands for the multi-labels and the similarity (not read), all
// float64.
inline constexpr double kNoRowsColumnMultilabels[3 * 2] = {1, 0, 0, -1, 1, 1};
inline npairs_problem no_rows_negative_column_problem(const void* rows, const void* column_multilabels) {
  npairs_problem p;
  npairs_problem_init(&p);
  p.rows = 0;
  p.cols = 3;
  p.dtype = NPAIRS_F64;
  p.multilabels = rows;
  p.column_multilabels = column_multilabels;
  p.num_classes = 2;
  p.similarity = rows;
  return p;
}

// Runs the call with host pointers, or (device_memory) with device copies of
// every array.
inline void run_host_or_device(npairs_context ctx, bool device_memory, const Inputs& in, Outputs& out) {
  if (!device_memory) {
    ASSERT_NPAIRS_OK(run_loss(ctx, in, out));
    return;
  }
#ifdef NPAIRS_TEST_HAVE_CUDART
  run_on_device_copies(ctx, in, out);
#else
  (void)ctx;
  FAIL() << "device-memory case without the CUDA runtime";
#endif
}

}  // namespace npt
