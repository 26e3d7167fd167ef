// The greedy rule of hard negative class mining (npairs.h, "Hard negative
// class mining"): the tie-breaking key and the order of candidates, shared by
// the CPU backend and the CUDA kernels (__host__ __device__), so that both
// pick the same class from the same scores.
#pragma once

#include <stdint.h>

#if !defined(NPAIRS_HD)
#if defined(__CUDACC__)
#define NPAIRS_HD __host__ __device__ __forceinline__
#else
#define NPAIRS_HD inline
#endif
#endif

namespace npairs {

// splitmix64's finaliser (Steele, Lea and Flood), after its golden-ratio step.
NPAIRS_HD uint64_t hard_class_mix(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

// key(seed, step, c): the smallest key wins among equal scores.
NPAIRS_HD uint64_t hard_class_key(uint64_t seed, uint64_t step, uint64_t index) {
  return hard_class_mix(hard_class_mix(hard_class_mix(seed) ^ step) ^ index);
}

// A candidate of one step: its running score (NaN once selected, so that it
// never wins again), its key and its index (-1: none yet).
struct HardClassCandidate {
  double score;
  uint64_t key;
  int64_t index;
};

// The candidate that is no candidate: every real one beats it.
NPAIRS_HD HardClassCandidate no_hard_class() {
  HardClassCandidate none;
  none.score = 0.0;
  none.key = 0;
  none.index = -1;
  return none;
}

// True when a is preferred to b: a higher score, then a smaller key, then a
// smaller index. A total order on the candidates, so that any reduction
// order (threads, blocks) finds the same one. Selected classes (NaN) and
// `none` lose to every real candidate.
NPAIRS_HD bool hard_class_before(const HardClassCandidate& a, const HardClassCandidate& b) {
  const bool a_real = a.index >= 0 && a.score == a.score;
  const bool b_real = b.index >= 0 && b.score == b.score;
  if (a_real != b_real) return a_real;
  if (!a_real) return false;
  if (a.score != b.score) return a.score > b.score;
  if (a.key != b.key) return a.key < b.key;
  return a.index < b.index;
}

// Offers candidate `index` of running score `score` to `best` at `step`,
// computing the key only when the scores tie (the key is needed only then,
// and for the winner).
NPAIRS_HD void offer_hard_class(HardClassCandidate& best, double score, int64_t index, uint64_t seed,
                                uint64_t step) {
  if (!(score == score)) return;  // selected already
  if (best.index >= 0 && score < best.score) return;
  HardClassCandidate c;
  c.score = score;
  c.key = hard_class_key(seed, step, static_cast<uint64_t>(index));
  c.index = index;
  if (hard_class_before(c, best)) best = c;
}

}  // namespace npairs
