#include <math.h>

#include <algorithm>

#include "hard_class_reduce.cuh"
#include "hard_class_scores.cuh"
#include "launch.cuh"
#include "row_math.hpp"

namespace npairs::cuda {

namespace {

constexpr int kBlock = 256;

template <class T>
__global__ __launch_bounds__(kBlock) void hard_class_scores_kernel(T* scores, const T* products, int64_t classes,
                                                                   uint64_t seed, uint64_t step,
                                                                   HardClassCandidate* block_best) {
  __shared__ HardClassCandidate reduce_storage[kBlock];
  HardClassCandidate mine = no_hard_class();
  const int64_t stride = int64_t(gridDim.x) * kBlock;
  for (int64_t c = int64_t(blockIdx.x) * kBlock + threadIdx.x; c < classes; c += stride) {
    T score;
    if (products == nullptr) {
      score = -static_cast<T>(INFINITY);
      scores[c] = score;
    } else {
      score = scores[c];
      const T product = products[c];
      if (product > score) {  // false for a NaN (selected) score
        score = product;
        scores[c] = score;
      }
    }
    offer_hard_class(mine, double(score), c, seed, step);
  }
  const HardClassCandidate best = block_best_class<kBlock>(reduce_storage, mine);
  if (threadIdx.x == 0) block_best[blockIdx.x] = best;
}

}  // namespace

int hard_class_score_blocks(int64_t classes) {
  return int(std::min<int64_t>(ceil_div(classes, kBlock), kHardClassScoreBlocks));
}

template <class T>
void launch_hard_class_scores(T* scores, const T* products, int64_t classes, uint64_t seed, uint64_t step,
                              HardClassCandidate* block_best, cudaStream_t stream) {
  launch(hard_class_scores_kernel<T>, unsigned(hard_class_score_blocks(classes)), kBlock, 0, stream, scores,
         products, classes, seed, step, block_best);
}

#define NPAIRS_INSTANTIATE(T)                                                                          \
  template void launch_hard_class_scores(T*, const T*, int64_t, uint64_t, uint64_t, HardClassCandidate*, \
                                         cudaStream_t);
NPAIRS_INSTANTIATE(float)
NPAIRS_INSTANTIATE(double)

}  // namespace npairs::cuda
