// Decisions of the CUDA backend's calls that are plain logic on the task,
// kept free of CUDA headers so that CPU tests check them
// (tests/test_cuda_host_rules.cpp) on machines without a GPU.
#pragma once

#include <cstddef>

namespace npairs::cuda {

// Where the factor r/tau of dL/dS = (r/tau) g_i w_i (softmax - T) goes: into
// the row kernel's stored dS, or into the alpha of the embedding gradients'
// GEMMs (dA = dS P, dP = dS^T A). The GEMMs read dS as stored; in a 16-bit
// type its entries ~ r/(M tau) fall below float16's smallest subnormal for
// large batches (R = M = 8192: every negative's term of dA is lost), so for
// 16-bit types the GEMMs always read the unscaled dS and take r/tau as alpha.
struct GradientScaling {
  double output_factor = 1;  // the row kernel's grad_factor for the dS output
  // The GEMMs' input is a scratch array of its own (the dS output is also
  // wanted but must hold the scaled values).
  bool separate_gemm_input = false;
  double gemm_input_factor = 1;  // the row kernel's grad_factor for the GEMMs' input
  double gemm_alpha = 1;
};
inline GradientScaling plan_gradient_scaling(std::size_t value_size, bool grad_similarity,
                                             bool embedding_grads, double ds_factor) {
  GradientScaling s;
  s.output_factor = ds_factor;
  if (!embedding_grads) return s;
  if (grad_similarity && value_size > 2) return s;  // the GEMMs read the dS output
  s.separate_gemm_input = grad_similarity;
  s.gemm_input_factor = 1;
  s.gemm_alpha = ds_factor;
  return s;
}

// The host waits of a call: each makes the call wait for the device (or
// allocate), and each is illegal while the stream is captured into a CUDA
// graph. A call with device pointers, workspace reserved and
// NPAIRS_FLAG_DEFER_CHECKS makes none: it only queues work on the stream.
struct HostWaits {
  bool grow_workspace = false;  // wait for the last call, then cudaMalloc a larger workspace
  bool wait_for_check = false;  // read the target check back before any output is written
  bool wait_at_end = false;     // host or managed memory, which the caller may use at return
  bool any() const { return grow_workspace || wait_for_check || wait_at_end; }
};
inline HostWaits plan_host_waits(std::size_t workspace_bytes, std::size_t workspace_reserved,
                                 bool check_targets, bool defer_checks, bool host_memory) {
  HostWaits w;
  w.grow_workspace = workspace_bytes > workspace_reserved;
  w.wait_for_check = check_targets && !defer_checks;
  w.wait_at_end = host_memory;
  return w;
}

}  // namespace npairs::cuda
