// The CUDA backend's streamed path (SPEC section 4): a call whose whole
// workspace exceeds the context's limit runs in the pieces src/tiled_loss
// plans, through the loop it runs, with cuBLAS for each piece's GEMMs, the
// row kernel for blocks of whole rows and the tile kernels for tiles of
// columns. Host arrays are staged: the embeddings, targets and small outputs
// whole, a similarity input and its dL/dS output piece by piece.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include <cstddef>

#include "row_kernel_plan.hpp"
#include "task.hpp"
#include "tiled_loss.hpp"
#include "workspace.hpp"

namespace npairs::cuda {

// What a streamed call uses of its context.
struct StreamedContext {
  int device;
  cublasHandle_t cublas;
  cudaStream_t stream;
  cudaEvent_t work_queued;   // the end of the context's last call
  DeviceLimits limits;
  DeviceWorkspace* workspace;
  long long* bad_rows_host;  // pinned, kBadRowSlots entries
  // NPAIRS_FLAG_DEFER_CHECKS on a call in one piece: the context's report
  // slots (deferred_check.cuh), which the call's checks lower without a
  // wait; nullptr: the call waits for its checks.
  long long* deferred_reports = nullptr;
};

// Whether a call runs through the tile kernels even when it fits: the row
// kernel computes neither a symmetric loss nor dL/dtau.
bool runs_tiles_only(const Task& task);

// Whether `plan` takes the call in one piece (no streaming).
bool one_piece(const Task& task, const TilePlan& plan);

// The pieces of `task` under `limit` with this path's workspace (`device`:
// the context's, whose pointers are used in place); throws
// Error(OUT_OF_MEMORY) as plan_tiles does, and UNSUPPORTED for what this
// path cannot stream (16-bit multi-labels).
TilePlan plan_streamed(const Task& task, std::size_t limit, int device);

// Checks the targets (waiting for the device, unless context.deferred_reports
// is set), then queues every piece. Waits for the stream before returning
// when any array is host memory. Refuses a captured stream, except for a
// call that runs_tiles_only in one piece, whose caller checks that.
void run_streamed(const Task& task, const TilePlan& plan, const StreamedContext& context);

// Column blocks (task.row_stats set; npairs_block_stats when !gradients,
// else npairs_block_gradients): the pieces of the block under `limit`, run by
// run_block_stats / run_block_gradients. The caller's row statistics (device
// or host memory) are copied into scratch, merged or read there, and copied
// back only after the data checks passed; the call waits for the device.
// Throws UNSUPPORTED for float16 and bfloat16 (their running statistics are
// float, not the caller's dtype) and for a captured stream.
void run_block(const Task& task, std::size_t limit, bool gradients, const StreamedContext& context);

}  // namespace npairs::cuda
