#include "tiled_loss.hpp"

#include <algorithm>
#include <string>

#include "error.hpp"

namespace npairs {
namespace {

// Blocks of whole rows are used down to this many rows; below it GEMMs lose
// their speed, and tiles of columns with taller blocks are faster.
constexpr int64_t kMinWholeRowBlock = 64;
// The block height of tiles of columns.
constexpr int64_t kTileRows = 256;

// The largest n in [1, max] with fits(n), or 0 when fits(1) fails. fits must
// be monotone (true up to some n, false after).
template <class Fits>
int64_t largest_fitting(int64_t max, Fits fits) {
  if (max < 1 || !fits(1)) return 0;
  int64_t lo = 1, hi = max;
  while (lo < hi) {
    const int64_t mid = lo + (hi - lo + 1) / 2;
    if (fits(mid)) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}

}  // namespace

TilePlan plan_tiles(const Task& task, std::size_t limit, const WorkspaceModel& bytes) {
  const int64_t R = task.rows, M = task.cols;
  const int64_t all_rows = std::max<int64_t>(R, 1), all_cols = std::max<int64_t>(M, 1);
  const std::size_t whole = bytes(all_rows, all_cols);
  if (limit == 0 || whole <= limit) return TilePlan{all_rows, all_cols, whole};

  const int64_t row_block =
      largest_fitting(all_rows, [&](int64_t rows) { return bytes(rows, all_cols) <= limit; });
  if (row_block >= std::min(all_rows, kMinWholeRowBlock)) {
    return TilePlan{row_block, all_cols, bytes(row_block, all_cols)};
  }
  for (int64_t rows = std::min(all_rows, kTileRows); rows >= 1; rows /= 2) {
    const int64_t col_tile =
        largest_fitting(all_cols, [&](int64_t cols) { return bytes(rows, cols) <= limit; });
    if (col_tile >= 1) return TilePlan{rows, col_tile, bytes(rows, col_tile)};
  }
  const std::size_t smallest = std::min(bytes(1, all_cols), bytes(1, 1));
  fail(NPAIRS_ERROR_OUT_OF_MEMORY,
       "the context's workspace limit (" + std::to_string(limit) +
           " bytes) is below the smallest workspace this call can use (" + std::to_string(smallest) +
           " bytes)");
}

void run_tiled(const Task& task, const TilePlan& plan, TileOps& ops) {
  const int64_t R = task.rows, M = task.cols;
  const bool symmetric = task.symmetric();
  // Whole rows of a non-symmetric call: statistics, loss and gradient in one
  // pass per block. Else a statistics sweep, then a gradient sweep: per block,
  // or (symmetric) after every block, with the columns' final statistics.
  const bool one_pass = plan.whole_rows(task) && !symmetric;
  // A call in one piece keeps its loaded tile for the gradient sweep.
  const bool one_piece = R <= plan.row_block && M <= plan.col_tile;
  auto for_each_tile = [&](int64_t r0, int64_t r1, bool load, auto&& work) {
    for (int64_t c0 = 0; c0 < M; c0 += plan.col_tile) {
      const Tile tile{r0, r1, c0, std::min(M, c0 + plan.col_tile)};
      if (load) ops.load(tile);
      work(tile);
    }
  };
  auto gradient_sweep = [&](int64_t r0, int64_t r1, bool load) {
    for_each_tile(r0, r1, load, [&](const Tile& tile) {
      ops.tile_gradient(tile);
      if (task.wants_embedding_grads()) ops.embedding_gradients(tile);
    });
  };
  auto for_each_block = [&](auto&& work) {
    for (int64_t r0 = 0; r0 < R; r0 += plan.row_block) work(r0, std::min(R, r0 + plan.row_block));
  };
  for_each_block([&](int64_t r0, int64_t r1) {
    if (one_pass) {
      const Tile block{r0, r1, 0, M};
      ops.load(block);
      ops.whole_rows(block);
      if (task.wants_embedding_grads()) ops.embedding_gradients(block);
      return;
    }
    for_each_tile(r0, r1, true, [&](const Tile& tile) { ops.tile_stats(tile); });
    ops.finish_rows(Tile{r0, r1, 0, M});
    if (!symmetric && task.wants_gradient_pass()) gradient_sweep(r0, r1, true);
  });
  if (!symmetric) return;
  ops.finish_columns();
  if (task.wants_gradient_pass()) {
    for_each_block([&](int64_t r0, int64_t r1) { gradient_sweep(r0, r1, !one_piece); });
  }
}

}  // namespace npairs
