// Hard negative class mining on the CUDA backend: cuBLAS GEMVs and the
// kernels of hard_class_scores.cuh and hard_class_pick.cuh, queued on the
// context's stream after the data check (which the call waits for).
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include <cstddef>

#include "hard_classes.hpp"
#include "workspace.hpp"

namespace npairs::cuda {

// What a selection uses of its context.
struct HardClassDevice {
  int device;
  cublasHandle_t cublas;  // on `stream`
  cudaStream_t stream;
  DeviceWorkspace* workspace;
  cudaEvent_t last_use;        // the end of the context's last call
  std::size_t limit;           // the context's workspace limit; 0: none
  long long* bad_row_host;     // pinned, one entry at least
};

// Checks the embeddings, then selects into task.selected (device memory:
// queued; host memory: copied back, and the call waits).
void select_hard_classes(const HardClassTask& task, const HardClassDevice& context);

}  // namespace npairs::cuda
