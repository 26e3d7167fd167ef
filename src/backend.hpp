// The interface every backend implements. A backend instance belongs to one
// context and is used by one thread at a time.
#pragma once

#include <cstddef>

#include "error.hpp"
#include "npairs/npairs.h"
#include "hard_classes.hpp"
#include "task.hpp"

namespace npairs {

class Backend {
 public:
  virtual ~Backend() = default;
  virtual npairs_backend kind() const = 0;
  // Throws Error(UNSUPPORTED) for a stream the backend cannot use.
  virtual void set_stream(void* stream) = 0;
  // CPU threads for the rows; 0 means all cores.
  virtual void set_threads(int threads) = 0;
  // Waits for queued work; throws Error(DEVICE) if it failed.
  virtual void synchronize() = 0;
  // The most workspace (scratch memory) a call may use; 0: no limit.
  virtual void set_workspace_limit(std::size_t bytes) = 0;
  // Allocates at least `bytes` of workspace now; throws Error(OUT_OF_MEMORY)
  // and keeps the old workspace when it cannot.
  virtual void reserve(std::size_t bytes) = 0;
  // The workspace compute(task) would use under the limit, without reading
  // the data; throws what compute would when its smallest piece does not fit.
  virtual std::size_t workspace_size(const Task& task) = 0;
  // Checks the task's data, then writes the outputs the task asks for. Throws
  // Error before writing any output when the data is invalid.
  virtual void compute(const Task& task) = 0;
  // Hard negative class mining: checks the embeddings, then writes
  // task.selected. Throws Error before writing it when the data is invalid.
  virtual void select_hard_classes(const HardClassTask& task) = 0;
  // Column blocks (task.row_stats set): merges the block's row statistics
  // into the caller's (and writes the row losses when task.loss is set), or
  // writes the block's gradients from the caller's final statistics. Checks
  // the data first, as compute does. A backend without them says so.
  virtual void block_stats(const Task& task) { unsupported_blocks(task); }
  virtual void block_gradients(const Task& task) { unsupported_blocks(task); }

 private:
  [[noreturn]] static void unsupported_blocks(const Task&) {
    fail(NPAIRS_ERROR_UNSUPPORTED,
         "column blocks (npairs_block_stats, npairs_block_gradients) are computed by CPU and CUDA contexts only "
         "in this version of libnpairs");
  }
};

}  // namespace npairs
