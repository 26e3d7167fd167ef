#include <stdio.h>
#include <stdlib.h>

#include <npairs/npairs.h>

int main(void) {
  /* Four 2-D points; the anchors and the positives are the same points. */
  const float points[4 * 2] = {1, 1, 1, -1, -1, 1, -1, -1};
  const int32_t labels[4] = {0, 0, 1, 1};
  const double expected = 1.253856022085945;
  float loss = 0.0f;
  float grad_anchors[4 * 2];
  float grad_positives[4 * 2];
  npairs_context ctx = NULL;
  npairs_options options;
  npairs_problem problem;
  npairs_gradients grads;
  npairs_status status;
  double error;

  status = npairs_context_create(NPAIRS_BACKEND_CPU, 0, &ctx);
  if (status != NPAIRS_OK) {
    fprintf(stderr, "npairs_context_create: %s\n", npairs_last_error());
    return EXIT_FAILURE;
  }

  npairs_options_init(&options); /* SUM_OVER_BATCH_SIZE, temperature 1 */

  npairs_problem_init(&problem);
  problem.rows = 4; /* cols 0: as many columns as rows */
  problem.dtype = NPAIRS_F32;
  problem.labels = labels;
  problem.label_dtype = NPAIRS_I32;
  problem.anchors = points;
  problem.positives = points;
  problem.dim = 2;

  npairs_gradients_init(&grads);
  grads.anchors = grad_anchors;
  grads.positives = grad_positives;

  status = npairs_loss(ctx, &options, &problem, NULL, &loss, &grads);
  if (status != NPAIRS_OK) {
    fprintf(stderr, "npairs_loss: %s: %s\n", npairs_status_string(status),
            npairs_last_error());
    npairs_context_destroy(ctx);
    return EXIT_FAILURE;
  }
  npairs_context_destroy(ctx);

  printf("loss = %.7f\n", loss);
  printf("dL/dA[0] = (%.7f, %.7f)\n", grad_anchors[0], grad_anchors[1]);
  error = (double)loss - expected;
  if (error < 0) error = -error;
  if (error >= 1e-5) {
    fprintf(stderr, "expected %.7f\n", expected);
    return EXIT_FAILURE;
  }
  return EXIT_SUCCESS;
}
