// Trains nothing, but shows the C++ wrapper end to end: a context, the loss of
// four embeddings in two classes, and its gradients (SPEC's check value).
#include <cmath>
#include <cstdio>
#include <vector>

#include "npairs/npairs.hpp"

int main() {
  try {
    npairs::context ctx(NPAIRS_BACKEND_CPU);
    const std::vector<int32_t> labels = {0, 0, 1, 1};
    const std::vector<double> embeddings = {1, 1, 1, -1, -1, 1, -1, -1};
    std::vector<double> grad_anchors(8), grad_positives(8);
    const double loss = npairs::embeddings_loss<double, int32_t>(
        ctx, labels, embeddings, embeddings, 2, npairs::default_options(), grad_anchors, grad_positives);
    std::printf("loss %.15f, dL/da0 = (%.6f, %.6f)\n", loss, grad_anchors[0], grad_anchors[1]);
    return std::fabs(loss - 1.253856022085945) < 1e-12 ? 0 : 1;
  } catch (const npairs::error& e) {
    std::fprintf(stderr, "npairs error %d: %s\n", e.status(), e.what());
    return 1;
  }
}
