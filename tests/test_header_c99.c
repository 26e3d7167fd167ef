/* The public header compiles as strict C99 (-pedantic -Werror) and the
   library links and runs from C: version, status strings, a context and
   SPEC's check value. Exit status 0 on success. */
#include <npairs/npairs.h>

#include <math.h>
#include <stdio.h>
#include <string.h>

static int failures = 0;

static void check(int ok, const char* what) {
  if (!ok) {
    fprintf(stderr, "FAILED: %s (last error: %s)\n", what, npairs_last_error());
    ++failures;
  }
}

int main(void) {
  npairs_context ctx = NULL;
  npairs_options options;
  npairs_problem problem;
  npairs_gradients grads;
  const double emb[8] = {1, 1, 1, -1, -1, 1, -1, -1};
  const int64_t labels[4] = {0, 0, 1, 1};
  double loss = 0.0;
  double dA[8];
  double dP[8];
  npairs_status status;

  check(npairs_version_number() == NPAIRS_VERSION_NUMBER, "npairs_version_number");
  check(npairs_version_string() != NULL && strlen(npairs_version_string()) >= 5, "npairs_version_string");
  check(npairs_status_string(NPAIRS_ERROR_INVALID_VALUE) != NULL, "npairs_status_string");
  check(npairs_backend_available(NPAIRS_BACKEND_CPU) == 1, "npairs_backend_available");

  status = npairs_context_create(NPAIRS_BACKEND_CPU, 0, &ctx);
  check(status == NPAIRS_OK && ctx != NULL, "npairs_context_create");
  if (status != NPAIRS_OK) return 1;

  npairs_options_init(&options);
  npairs_problem_init(&problem);
  npairs_gradients_init(&grads);
  problem.rows = 4;
  problem.dtype = NPAIRS_F64;
  problem.labels = labels;
  problem.label_dtype = NPAIRS_I64;
  problem.anchors = emb;
  problem.positives = emb;
  problem.dim = 2;
  grads.anchors = dA;
  grads.positives = dP;

  status = npairs_loss(ctx, &options, &problem, NULL, &loss, &grads);
  check(status == NPAIRS_OK, "npairs_loss");
  check(fabs(loss - 1.253856022085945) <= 1e-15, "check value");
  check(isfinite(dA[0]) && isfinite(dP[7]), "gradients written");

  options.temperature = -1.0;
  status = npairs_loss(ctx, &options, &problem, NULL, &loss, NULL);
  check(status == NPAIRS_ERROR_INVALID_ARGUMENT, "negative temperature rejected");
  check(strstr(npairs_last_error(), "temperature") != NULL, "message names the temperature");

  check(npairs_context_destroy(ctx) == NPAIRS_OK, "npairs_context_destroy");
  if (failures == 0) printf("C99 header test passed: loss %.15f\n", loss);
  return failures == 0 ? 0 : 1;
}
