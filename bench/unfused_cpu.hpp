// The unfused baseline: the same loss and gradients computed the way a
// framework's eager ops compute them, one pass over the R x M matrix per op.
#pragma once

#include <vector>

#include "bench_case.hpp"

namespace bench {

template <class T>
class UnfusedCpu {
 public:
  // Allocates every buffer up front (as a framework's caching allocator
  // would have them), so that run() times the arithmetic and the traffic.
  UnfusedCpu(const CaseSpec& spec, const HostCase<T>& data, int threads);

  // The loss, then the gradients the case asks for, with the default options
  // (temperature 1, no weights, SUM_OVER_BATCH_SIZE, upstream gradient 1).
  void run();

  double loss() const { return loss_; }
  const std::vector<T>& grad_similarity() const { return grad_logits_; }
  const std::vector<T>& grad_anchors() const { return grad_anchors_; }
  const std::vector<T>& grad_positives() const { return grad_positives_; }

 private:
  template <class F>
  void for_each_row(F&& row_op) const;

  CaseSpec spec_;
  const HostCase<T>& data_;
  int threads_;
  std::vector<T> logits_;       // A P^T (embeddings input)
  std::vector<T> log_probs_;    // log_softmax(z)
  std::vector<T> targets_;      // dense T, row-normalised
  std::vector<T> scratch_;      // T * log_probs, then softmax(z)
  std::vector<T> grad_logits_;  // dL/dS
  std::vector<T> grad_anchors_, grad_positives_;
  std::vector<T> row_max_, row_log_sum_exp_, row_target_sum_, row_loss_;
  double loss_ = 0;
};

}  // namespace bench
