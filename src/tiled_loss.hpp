// How a call is cut into pieces that fit the context's workspace limit, and
// the one loop over those pieces that every backend runs (SPEC section 4).
//
// A piece is a block of rows, whole or cut into tiles of columns:
//  - whole rows (one block of all R rows when everything fits: the dense
//    path): per block the logits S_b = A_b P^T, the row pass in place (loss
//    and dL/dS_b), then dA_b = dS_b P and dP += dS_b^T A_b; each logit is
//    computed once;
//  - tiles of columns, when not even a small block of whole rows fits: per
//    block a first sweep over the tiles merges each row's running max, sum of
//    exponentials and target term (an online log-sum-exp), a second sweep
//    recomputes each tile's logits and writes its gradient.
// A symmetric call (NPAIRS_FLAG_SYMMETRIC) also needs each column's running
// max, sum of exponentials and target term over all rows: the statistics
// sweep of every block merges its columns' statistics into them (blocks in
// order), and the gradient sweep, which needs the final statistics of both
// directions, follows once all blocks are done, even for whole rows (the
// dense path: one block, loaded once).
// The backend provides the per-tile work (TileOps); the order of the pieces,
// and so of every sum across them, is fixed here, which makes a result
// bitwise reproducible for a given limit.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>

#include "task.hpp"

namespace npairs {

// Rows [row_begin, row_end) and columns [col_begin, col_end) of the logits.
struct Tile {
  int64_t row_begin = 0;
  int64_t row_end = 0;
  int64_t col_begin = 0;
  int64_t col_end = 0;
  int64_t rows() const { return row_end - row_begin; }
  int64_t cols() const { return col_end - col_begin; }
};

// Rows per block and columns per tile (col_tile == task.cols: whole rows),
// and the workspace that takes.
struct TilePlan {
  int64_t row_block = 0;
  int64_t col_tile = 0;
  std::size_t bytes = 0;
  bool whole_rows(const Task& task) const { return col_tile >= task.cols; }
};

// The workspace, in bytes, that a backend needs for a call cut into blocks of
// `row_block` rows and tiles of `col_tile` columns. Must not decrease when
// either grows.
using WorkspaceModel = std::function<std::size_t(int64_t row_block, int64_t col_tile)>;

// The whole call when it fits the limit (0: no limit); else the largest
// blocks of whole rows that fit, if they hold at least a few rows; else
// tiles of columns. Throws Error(OUT_OF_MEMORY) naming the limit and the
// smallest workspace that would work when not even one element fits.
TilePlan plan_tiles(const Task& task, std::size_t limit, const WorkspaceModel& bytes);

// The work of one tile, done by a backend in its own memory.
class TileOps {
 public:
  virtual ~TileOps() = default;
  // Makes the tile's logits (and multi-label overlaps) ready for what follows.
  virtual void load(const Tile& tile) = 0;
  // Whole rows: their losses and dL/dS in one pass.
  virtual void whole_rows(const Tile& tile) = 0;
  // Tiles of columns (and every symmetric call): merges the tile's row
  // statistics into the block's running ones (reset first when
  // tile.col_begin == 0); symmetric: also its column statistics into the
  // columns' running ones (reset first when tile.row_begin == 0).
  virtual void tile_stats(const Tile& tile) = 0;
  // Tiles of columns: the block's row losses from its final statistics.
  virtual void finish_rows(const Tile& block) = 0;
  // Symmetric: the column losses (and gradient coefficients) from the
  // columns' final statistics, after every block's statistics sweep.
  virtual void finish_columns() = 0;
  // Tiles of columns: the tile's dL/dS (and its share of dL/dtau) from the
  // final statistics (symmetric: of both directions).
  virtual void tile_gradient(const Tile& tile) = 0;
  // dA[rows] (+)= dS_tile P[cols] and dP[cols] (+)= dS_tile^T A[rows]: the
  // first tile of a block row (col_begin == 0) writes dA, the first block
  // (row_begin == 0) writes dP, later ones add.
  virtual void embedding_gradients(const Tile& tile) = 0;
};

// Runs the call's pieces in their fixed order. The caller has checked the
// data and reduces the row losses afterwards.
void run_tiled(const Task& task, const TilePlan& plan, TileOps& ops);

}  // namespace npairs
