#include <math.h>

#include "hard_class_pick.cuh"
#include "hard_class_reduce.cuh"
#include "launch.cuh"

namespace npairs::cuda {

namespace {

constexpr int kBlock = 256;

template <class T>
__global__ __launch_bounds__(kBlock) void hard_class_pick_kernel(const HardClassCandidate* block_best, int blocks,
                                                                 T* scores, const T* embeddings, int64_t dim,
                                                                 T* next_row, int64_t* selected, int64_t step) {
  __shared__ HardClassCandidate reduce_storage[kBlock];
  HardClassCandidate mine = no_hard_class();
  for (int b = int(threadIdx.x); b < blocks; b += kBlock)
    if (hard_class_before(block_best[b], mine)) mine = block_best[b];
  const int64_t winner = block_best_class<kBlock>(reduce_storage, mine).index;
  if (threadIdx.x == 0) {
    selected[step] = winner;
    scores[winner] = static_cast<T>(NAN);
  }
  for (int64_t k = threadIdx.x; k < dim; k += kBlock) next_row[k] = embeddings[winner * dim + k];
}

}  // namespace

template <class T>
void launch_hard_class_pick(const HardClassCandidate* block_best, int blocks, T* scores, const T* embeddings,
                            int64_t dim, T* next_row, int64_t* selected, int64_t step, cudaStream_t stream) {
  launch(hard_class_pick_kernel<T>, 1, kBlock, 0, stream, block_best, blocks, scores, embeddings, dim, next_row,
         selected, step);
}

#define NPAIRS_INSTANTIATE(T)                                                                                 \
  template void launch_hard_class_pick(const HardClassCandidate*, int, T*, const T*, int64_t, T*, int64_t*, \
                                       int64_t, cudaStream_t);
NPAIRS_INSTANTIATE(float)
NPAIRS_INSTANTIATE(double)

}  // namespace npairs::cuda
