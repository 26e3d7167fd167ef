#include "hard_class_selection.hpp"

#include <string>

#include "cuda_check.hpp"
#include "error.hpp"
#include "first_row_out_of_bound.cuh"
#include "hard_class_pick.cuh"
#include "hard_class_scores.cuh"
#include "targets.cuh"

namespace npairs::cuda {

namespace {

// y[n] = E[n x d] x for a row-major E: the column-major E^T [d x n],
// transposed.
void gemv(cublasHandle_t handle, int64_t n, int64_t d, const float* e, const float* x, float* y) {
  const float one = 1.0f, zero = 0.0f;
  NPAIRS_CUDA_CHECK(cublasSgemv_64(handle, CUBLAS_OP_T, d, n, &one, e, d, x, 1, &zero, y, 1));
}
void gemv(cublasHandle_t handle, int64_t n, int64_t d, const double* e, const double* x, double* y) {
  const double one = 1.0, zero = 0.0;
  NPAIRS_CUDA_CHECK(cublasDgemv_64(handle, CUBLAS_OP_T, d, n, &one, e, d, x, 1, &zero, y, 1));
}

template <class T>
void select_typed(const HardClassTask& t, const HardClassDevice& context) {
  const int64_t C = t.classes, D = t.dim, N = t.count;
  const cudaStream_t stream = context.stream;
  cudaStreamCaptureStatus capture = cudaStreamCaptureStatusNone;
  NPAIRS_CUDA_CHECK(cudaStreamIsCapturing(stream, &capture));
  if (capture != cudaStreamCaptureStatusNone) {
    fail(NPAIRS_ERROR_UNSUPPORTED,
         "the context's stream is being captured, and npairs_select_hard_classes waits for its check of "
         "selection.class_embeddings");
  }
  const int blocks = hard_class_score_blocks(C);
  CallLayout layout(context.device);
  Buffer embeddings, selected, scores, products, next_row, block_best, bad_row;
  layout.input(embeddings, t.embeddings, std::size_t(C * D) * sizeof(T), "selection.class_embeddings");
  layout.output(selected, t.selected, std::size_t(N) * sizeof(int64_t), "selected");
  layout.scratch(scores, std::size_t(C) * sizeof(T));
  layout.scratch(products, std::size_t(C) * sizeof(T));
  layout.scratch(next_row, std::size_t(D) * sizeof(T));
  layout.scratch(block_best, std::size_t(blocks) * sizeof(HardClassCandidate));
  layout.scratch(bad_row, sizeof(long long));
  if (context.limit != 0 && layout.bytes() > context.limit) {
    fail(NPAIRS_ERROR_OUT_OF_MEMORY, "the context's workspace limit (" + std::to_string(context.limit) +
                                         " bytes) is below the workspace of npairs_select_hard_classes (" +
                                         std::to_string(layout.bytes()) + " bytes)");
  }
  layout.bind(context.workspace->reserve(layout.bytes(), context.last_use));
  layout.upload(stream);

  // The data check, waited for: nothing is written before it passes.
  NPAIRS_CUDA_CHECK(cudaMemsetAsync(bad_row.data, kNoBadRowByte, sizeof(long long), stream));
  const double bound = hard_class_entry_bound(t.dtype, D);
  launch_first_row_out_of_bound(embeddings.as<const T>(), C, D, bound, bad_row.as<long long>(), stream);
  NPAIRS_CUDA_CHECK(
      cudaMemcpyAsync(context.bad_row_host, bad_row.data, sizeof(long long), cudaMemcpyDeviceToHost, stream));
  NPAIRS_CUDA_CHECK(cudaStreamSynchronize(stream));
  if (*context.bad_row_host != kNoBadRow) fail_if_bad_embedding_row(*context.bad_row_host, bound);

  // Step 0 (every score -inf: the smallest key), then one GEMV and one pass
  // over the scores per selected class.
  auto* candidates = block_best.as<HardClassCandidate>();
  launch_hard_class_scores<T>(scores.as<T>(), nullptr, C, t.seed, 0, candidates, stream);
  for (int64_t step = 0;; ++step) {
    launch_hard_class_pick(candidates, blocks, scores.as<T>(), embeddings.as<const T>(), D, next_row.as<T>(),
                           selected.as<int64_t>(), step, stream);
    if (step + 1 == N) break;
    gemv(context.cublas, C, D, embeddings.as<const T>(), next_row.as<const T>(), products.as<T>());
    launch_hard_class_scores(scores.as<T>(), products.as<const T>(), C, t.seed, uint64_t(step + 1), candidates,
                             stream);
  }
  layout.download(stream);
  if (layout.uses_host_memory()) NPAIRS_CUDA_CHECK(cudaStreamSynchronize(stream));
}

}  // namespace

void select_hard_classes(const HardClassTask& task, const HardClassDevice& context) {
  if (task.dtype == NPAIRS_F32)
    select_typed<float>(task, context);
  else
    select_typed<double>(task, context);
}

}  // namespace npairs::cuda
