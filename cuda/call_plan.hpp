// Decisions of the CUDA backend's calls that are plain arithmetic on the
// task, kept free of CUDA headers so that CPU tests check them
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

}  // namespace npairs::cuda
