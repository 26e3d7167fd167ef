// Hard negative class mining (npairs.h, "Hard negative class mining"): the
// selection request as the backends see it, checked against every argument
// rule, the check of the embeddings' values, and the CPU implementation.
#pragma once

#include <cstddef>
#include <cstdint>

#include "npairs/npairs.h"

namespace npairs {

struct HardClassTask {
  const void* embeddings = nullptr;  // [classes, dim], row-major
  int64_t classes = 0;               // C
  int64_t dim = 0;                   // D
  int64_t count = 0;                 // N
  npairs_dtype dtype = NPAIRS_F32;
  uint64_t seed = 0;
  int64_t* selected = nullptr;       // [count], the output
};

// Builds the task from the caller's struct (a full-size copy made by capi).
// Throws Error for every violated argument rule; reads no data.
HardClassTask make_hard_class_task(const npairs_class_selection& selection, int64_t* selected);

// The largest magnitude an embedding entry may have: sqrt(max / (4 D)), with
// max the dtype's largest finite value, so that no inner product of two rows
// (nor a partial sum of one) exceeds max / 4.
double hard_class_entry_bound(npairs_dtype dtype, int64_t dim);

// Throws Error(INVALID_VALUE) naming `row`, the first row with an entry that
// is NaN, infinite or above hard_class_entry_bound; does nothing for row < 0.
void fail_if_bad_embedding_row(int64_t row, double bound);

// The CPU's workspace for the task under `limit` (0: none): C running scores
// and a block of GEMV outputs; `block` receives the block's length. Throws
// Error(OUT_OF_MEMORY) when not even the smallest block fits.
std::size_t cpu_hard_class_workspace(const HardClassTask& task, std::size_t limit, int64_t* block);

// Checks the embeddings, then selects (OpenBLAS GEMVs and `threads` OpenMP
// threads) into task.selected. `workspace` holds
// cpu_hard_class_workspace(task, limit, &block) bytes, 64-byte aligned.
void cpu_select_hard_classes(const HardClassTask& task, int threads, unsigned char* workspace,
                             int64_t block);

}  // namespace npairs
