/*
 * libnpairs: the N-pairs metric-learning loss, forward and backward, on the
 * CPU and on CUDA GPUs, behind a stable C ABI.
 *
 * It computes the loss of TensorFlow Addons' npairs_loss /
 * npairs_multilabel_loss (and tf.contrib's embeddings form with its L2 term):
 * a softmax cross-entropy of the similarity logits z = S / temperature against
 * row-normalised targets built from labels. SPEC.md section 1 gives the math.
 *
 * Conventions of every function below:
 *  - Functions returning npairs_status return NPAIRS_OK (0) on success. On
 *    failure they leave every output untouched, and npairs_last_error() on the
 *    calling thread returns one sentence naming the offending argument.
 *  - Nothing here prints, exits, aborts, or lets a C++ exception escape.
 *  - A context is used by one thread at a time; distinct contexts are
 *    independent and may be used concurrently.
 *  - Results are bitwise reproducible for the same inputs, backend, device and
 *    thread count.
 *
 * ABI: enum values and struct field orders never change; structs only grow at
 * the end, and their first field struct_size tells the library which version
 * of the struct the caller was compiled against.
 */
#ifndef NPAIRS_NPAIRS_H
#define NPAIRS_NPAIRS_H

#include <stddef.h>
#include <stdint.h>

#if defined(_WIN32)
#  if defined(NPAIRS_BUILDING_LIBRARY)
#    define NPAIRS_API __declspec(dllexport)
#  else
#    define NPAIRS_API __declspec(dllimport)
#  endif
#elif defined(__GNUC__)
#  define NPAIRS_API __attribute__((visibility("default")))
#else
#  define NPAIRS_API
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------ */
/* Versions                                                                  */
/* ------------------------------------------------------------------------ */

#define NPAIRS_VERSION_MAJOR 1
#define NPAIRS_VERSION_MINOR 1
#define NPAIRS_VERSION_PATCH 0
#define NPAIRS_VERSION_NUMBER \
  (NPAIRS_VERSION_MAJOR * 10000 + NPAIRS_VERSION_MINOR * 100 + NPAIRS_VERSION_PATCH)

/* Returns NPAIRS_VERSION_NUMBER of the library actually loaded (which may be
   newer than the header the caller was compiled with). Never fails. */
NPAIRS_API uint32_t npairs_version_number(void);

/* Returns the version as static text, "MAJOR.MINOR.PATCH". Never fails. */
NPAIRS_API const char* npairs_version_string(void);

/* ------------------------------------------------------------------------ */
/* Statuses and error messages                                               */
/* ------------------------------------------------------------------------ */

typedef int32_t npairs_status;
#define NPAIRS_OK                         0
#define NPAIRS_ERROR_INVALID_ARGUMENT     1 /* NULL, size, enum or shape mismatch */
#define NPAIRS_ERROR_INVALID_VALUE        2 /* input data: a row without positive, a negative target */
#define NPAIRS_ERROR_UNSUPPORTED          3 /* valid request this build or backend cannot do */
#define NPAIRS_ERROR_OUT_OF_MEMORY        4 /* host or device allocation failed */
#define NPAIRS_ERROR_BACKEND_UNAVAILABLE  5 /* backend not compiled in, or no device present */
#define NPAIRS_ERROR_DEVICE               6 /* CUDA runtime or cuBLAS failure */
#define NPAIRS_ERROR_INTERNAL             7 /* a bug in the library: please report it */

/* Returns a static description of any status value (unknown values get
   "unknown status"). Never fails, never NULL. */
NPAIRS_API const char* npairs_status_string(npairs_status status);

/* Returns the message of the calling thread's last failed call, or "" when
   none failed yet. The text stays valid until this thread's next failing
   call. Never NULL. */
NPAIRS_API const char* npairs_last_error(void);

/* ------------------------------------------------------------------------ */
/* Backends and contexts                                                     */
/* ------------------------------------------------------------------------ */

typedef int32_t npairs_backend;
#define NPAIRS_BACKEND_AUTO 0 /* CUDA when available, else CPU */
#define NPAIRS_BACKEND_CPU  1
#define NPAIRS_BACKEND_CUDA 2

/* Returns 1 when a context of this backend can be created now (CUDA: compiled
   in and at least one device present; AUTO and CPU: always), else 0 (also
   for unknown values). Never fails. */
NPAIRS_API int32_t npairs_backend_available(npairs_backend backend);

/* A context owns a backend, its settings (threads, CUDA device and stream)
   and its reusable workspace. */
typedef struct npairs_context_s* npairs_context;

/* Creates a context on `backend` (AUTO picks CUDA when available, else CPU).
   `device` is the CUDA device ordinal (ignored by the CPU backend; must be
   >= 0). On success stores the new context in *out.
   Fails with INVALID_ARGUMENT (out NULL, unknown backend, device < 0 or not
   present), BACKEND_UNAVAILABLE (CUDA not compiled in or no GPU),
   OUT_OF_MEMORY, DEVICE. */
NPAIRS_API npairs_status npairs_context_create(npairs_backend backend, int32_t device,
                                              npairs_context* out);

/* Waits for the context's queued work, then frees it and its workspace.
   NULL is fine (returns NPAIRS_OK). Fails with DEVICE if the queued work
   failed; the context is freed all the same. */
NPAIRS_API npairs_status npairs_context_destroy(npairs_context ctx);

/* Stores the backend the context runs on (never AUTO) in *out.
   Fails with INVALID_ARGUMENT when ctx or out is NULL. */
NPAIRS_API npairs_status npairs_context_backend(npairs_context ctx, npairs_backend* out);

/* Sets the cudaStream_t on which a CUDA context queues its work (NULL: the
   legacy default stream). On a CPU context NULL succeeds and any other
   stream fails with UNSUPPORTED. Fails with INVALID_ARGUMENT when ctx is
   NULL. */
NPAIRS_API npairs_status npairs_context_set_stream(npairs_context ctx, void* cuda_stream);

/* Sets how many CPU threads a CPU context uses for its rows and its GEMMs
   (0: all cores for the rows, OpenBLAS's own setting for the GEMMs).
   Ignored by CUDA contexts. Fails with INVALID_ARGUMENT when ctx is NULL or
   threads < 0. The rows' count, and the GEMMs' with OpenBLAS's OpenMP build,
   hold for the calling thread only; a pthreads OpenBLAS (scipy-openblas32,
   the wheel's) has one count for the whole process, which each call sets and
   then restores, so concurrent calls of contexts with different counts may
   run their GEMMs on either count. */
NPAIRS_API npairs_status npairs_context_set_threads(npairs_context ctx, int32_t threads);

/* Waits until the context's queued work is done (CPU: returns at once).
   Fails with INVALID_ARGUMENT when ctx is NULL, DEVICE when queued work
   failed, INVALID_VALUE when a call made with NPAIRS_FLAG_DEFER_CHECKS since
   the last synchronize found invalid targets (the message names the first
   invalid row; the report is then cleared). */
NPAIRS_API npairs_status npairs_context_synchronize(npairs_context ctx);

/* ------------------------------------------------------------------------ */
/* Problem description                                                       */
/* ------------------------------------------------------------------------ */

typedef int32_t npairs_dtype;
#define NPAIRS_F32  0
#define NPAIRS_F64  1
/* F16 (IEEE binary16) and BF16 (bfloat16): CUDA contexts only; the CPU
   backend answers UNSUPPORTED. Every floating array of the call is then
   16-bit; the GEMMs run on tensor cores with float32 accumulation, the logits
   are stored in the dtype, and the softmax and sums are float32. */
#define NPAIRS_F16  2
#define NPAIRS_BF16 3
#define NPAIRS_I32  16
#define NPAIRS_I64  17

/* Keras' reduction names. */
typedef int32_t npairs_reduction;
#define NPAIRS_REDUCTION_NONE                0 /* loss[i] = w_i * loss_i */
#define NPAIRS_REDUCTION_SUM                 1 /* sum_i w_i * loss_i */
#define NPAIRS_REDUCTION_SUM_OVER_BATCH_SIZE 2 /* sum_i w_i * loss_i / R (default) */

/* Lets CUDA float32 GEMMs use TF32 tensor cores (faster, ~1e-3 relative). */
#define NPAIRS_FLAG_ALLOW_TF32 1u
/* (1.1) A CUDA call does not wait for its check of the targets: the check
   runs on the device, the loss and gradient rows of invalid rows are NaN,
   and the context's next npairs_context_synchronize returns INVALID_VALUE
   naming the first invalid row (and clears it). A call with device pointers,
   reserved workspace and this flag only queues work on the context's stream,
   so it can be captured into a CUDA graph. Accepted by CPU contexts, where it
   changes nothing. */
#define NPAIRS_FLAG_DEFER_CHECKS 2u
/* (1.1) CLIP's symmetric loss (open_clip's ClipLoss with labels 0..R-1): the
   mean of the row-wise loss and the same loss taken over columns, loss'_j =
   logsumexp_i(z_ij) - sum_i T'_ji z_ij with T' the column-normalised targets
   ([c_j == l_i] / n'_j; multi-labels: Y' Y^T normalised per column). SUM
   gives (sum_i loss_i + sum_j loss'_j) / 2, SUM_OVER_BATCH_SIZE
   (sum_i loss_i / R + sum_j loss'_j / M) / 2; the L2 term is added once, and
   the gradients are those of this loss. Each logit is read once for both
   directions. Needs a scalar reduction and no sample_weight (else
   INVALID_ARGUMENT); a column without a positive row is INVALID_VALUE naming
   the first such column. */
#define NPAIRS_FLAG_SYMMETRIC 4u

typedef struct npairs_options {
  size_t struct_size;         /* sizeof(npairs_options) */
  npairs_reduction reduction; /* default NPAIRS_REDUCTION_SUM_OVER_BATCH_SIZE */
  double temperature;         /* logits are S / temperature; finite, > 0; default 1 */
  double reg_lambda;          /* tf.contrib L2 term, embeddings and scalar reductions
                                 only; finite, >= 0; default 0 */
  uint32_t flags;             /* NPAIRS_FLAG_*; unknown bits are invalid */
} npairs_options;

/* R = rows (anchors), M = cols (positives), D = dim, K = num_classes.
   All matrices are dense and row-major. Give exactly one kind of targets
   (labels or multilabels) and one kind of logits (similarity, or anchors
   with positives). */
typedef struct npairs_problem {
  size_t struct_size;             /* sizeof(npairs_problem) */
  int64_t rows;                   /* R >= 0 */
  int64_t cols;                   /* M; 0 means M = R */
  npairs_dtype dtype;             /* NPAIRS_F32 or NPAIRS_F64: every floating input
                                     and output, sample_weight and grad_loss too */
  /* targets: labels, or multilabels */
  const void* labels;             /* [R] integers of label_dtype */
  const void* column_labels;      /* [M]; NULL: same as labels (needs M = R) */
  npairs_dtype label_dtype;       /* NPAIRS_I32 or NPAIRS_I64 */
  const void* multilabels;        /* [R, K] non-negative, of dtype */
  const void* column_multilabels; /* [M, K]; NULL: same as multilabels (needs M = R) */
  int64_t num_classes;            /* K > 0 with multilabels */
  /* logits: similarity, or anchors and positives */
  const void* similarity;         /* [R, M] */
  const void* anchors;            /* [R, D] */
  const void* positives;          /* [M, D] */
  int64_t dim;                    /* D > 0 with anchors and positives */
  const void* sample_weight;      /* NULL (all ones), or [R] */
} npairs_problem;

/* Where to write gradients; NULL members are not computed. A caller
   compiled against the 1.0 header passes the 1.0 struct_size (without
   `temperature`) and is read as before. */
typedef struct npairs_gradients {
  size_t struct_size; /* sizeof(npairs_gradients) */
  void* similarity;   /* [R, M] dL/dS; may alias problem.similarity */
  void* anchors;      /* [R, D] dL/dA; needs anchors and positives */
  void* positives;    /* [M, D] dL/dP; needs anchors and positives */
  void* temperature;  /* (1.1) [1] dL/dtau = -(1/tau) sum_ij (dL/dz_ij) z_ij, of
                         problem->dtype, for the loss as computed (symmetric or
                         not; grad_loss applied; the L2 term does not depend on
                         tau), so that a learnable temperature or logit scale
                         trains through the library */
} npairs_gradients;

/* Fill the structs with their defaults (options) or zeros (problem,
   gradients), and set struct_size. NULL is ignored. */
NPAIRS_API void npairs_options_init(npairs_options* options);
NPAIRS_API void npairs_problem_init(npairs_problem* problem);
/* npairs_gradients grew in 1.1, and a caller compiled against the 1.0 header
   (or a binding that declares the 1.0 struct, like the Python package) holds
   only the 1.0 struct: the function npairs_gradients_init fills that much
   (struct_size = the 1.0 size, no `temperature`) and writes no further. A
   caller of this header reaches npairs_gradients_init_sized through the macro
   below instead, which fills the struct it was compiled with. */
NPAIRS_API void npairs_gradients_init(npairs_gradients* grads);
/* (1.1) Zeros the first `size` bytes of *grads and sets struct_size = size,
   for any size from the 1.0 size up (a newer caller's larger struct too);
   NULL and smaller sizes are ignored. */
NPAIRS_API void npairs_gradients_init_sized(npairs_gradients* grads, size_t size);
#define npairs_gradients_init(grads) npairs_gradients_init_sized((grads), sizeof *(grads))

/* ------------------------------------------------------------------------ */
/* The loss                                                                  */
/* ------------------------------------------------------------------------ */

/* Computes the N-pairs loss of `problem`, its gradients, or both in one pass.

   ctx        a context.
   options    NULL for the defaults.
   problem    the inputs (see npairs_problem).
   grad_loss  the upstream gradient, of problem->dtype: one value for SUM and
              SUM_OVER_BATCH_SIZE, [R] for NONE; NULL means ones.
   loss       output of problem->dtype: [R] for NONE, else one value; NULL
              when only gradients are wanted.
   grads      NULL, or where to write the gradients wanted.

   Memory: on a CPU context every pointer is host memory. On a CUDA context
   pointers may be device memory of the context's device (the work is queued
   on the context's stream and the call returns without waiting for it, as
   cuBLAS does), managed memory (used in place; the call waits, so that a
   host reader sees the results) or host memory (staged through the device;
   the call then waits). Device memory of another device is INVALID_ARGUMENT.
   The CUDA backend checks the targets (see INVALID_VALUE) on the device
   before it writes any output, and waits for that check unless the flag
   NPAIRS_FLAG_DEFER_CHECKS is set. Above the context's workspace limit a
   call is computed in pieces (npairs_context_set_workspace_limit). Outputs
   never overlap inputs, except that grads->similarity may be
   problem->similarity.

   Returns NPAIRS_OK, or with outputs untouched:
   INVALID_ARGUMENT  ctx or problem NULL, another CUDA device's pointer, a struct_size below the first
                     published size, an unknown enum or flag, a bad
                     temperature or reg_lambda, missing or ambiguous targets or
                     logits, cols != rows without column targets, a negative
                     or zero size, reg_lambda > 0 with NONE or similarity
                     input, gradients for embeddings without embeddings,
                     NPAIRS_FLAG_SYMMETRIC with NONE or sample_weight;
   INVALID_VALUE     a row with no positive column (the first one is named),
                     a negative multi-label entry, or with
                     NPAIRS_FLAG_SYMMETRIC a column with no positive row;
   UNSUPPORTED       dtype F16/BF16 on a CPU context, a struct larger than this library knows
                     whose extra bytes are not zero; on a CUDA context,
                     NPAIRS_FLAG_SYMMETRIC or grads.temperature with F16/BF16
                     multilabels;
   OUT_OF_MEMORY     host or device memory exhausted, or the smallest piece of
                     the call does not fit the context's workspace limit
                     (npairs_context_set_workspace_limit);
   DEVICE, INTERNAL. */
NPAIRS_API npairs_status npairs_loss(npairs_context ctx, const npairs_options* options,
                                     const npairs_problem* problem, const void* grad_loss,
                                     void* loss, npairs_gradients* grads);

/* ------------------------------------------------------------------------ */
/* Workspace (version 1.1)                                                   */
/* ------------------------------------------------------------------------ */

/* The workspace is the library's own scratch memory for a call: host memory
   on a CPU context, device memory on a CUDA context (the staging of host
   pointers included). A context keeps it between calls and reuses it.

   Sets the most workspace a call of this context may use, in bytes (0: no
   limit, the default). A call whose workspace would exceed the limit is
   computed in pieces that fit (streaming, SPEC.md section 4): an embeddings
   input in blocks of rows, or in tiles of columns when not even one row
   fits, so that no R x M array is held by the library; a multi-label
   input's overlaps in blocks of rows; host pointers on CUDA staged in row
   blocks. Results agree with the unlimited call to rounding and are bitwise
   reproducible for the same limit. A call whose smallest piece does not fit
   fails with OUT_OF_MEMORY (outputs untouched), naming the limit and the
   smallest size that would work. Workspace kept from earlier calls beyond a
   new, non-zero limit is freed by this call.
   Fails with INVALID_ARGUMENT when ctx is NULL. */
NPAIRS_API npairs_status npairs_context_set_workspace_limit(npairs_context ctx, size_t bytes);

/* Stores in *bytes the workspace that npairs_loss(ctx, options, problem, ...,
   grads) would use under the context's current limit, without computing
   anything. The arguments are checked exactly as npairs_loss checks them
   (same statuses and messages; the data itself is not read); a call whose
   smallest piece does not fit the limit fails with OUT_OF_MEMORY as
   npairs_loss would. `grads` NULL means no gradients; the loss is taken as
   wanted.
   Fails with INVALID_ARGUMENT (ctx, problem or bytes NULL, and every
   argument rule of npairs_loss), UNSUPPORTED, OUT_OF_MEMORY. */
NPAIRS_API npairs_status npairs_workspace_size(npairs_context ctx, const npairs_options* options,
                                              const npairs_problem* problem,
                                              const npairs_gradients* grads, size_t* bytes);

/* Allocates at least `bytes` of workspace now (a context keeps more when it
   has more, never less), so that later calls that fit allocate nothing; on
   CUDA with device pointers such a call then never waits for the device to
   allocate. A reserve above the limit is allowed (the limit still caps what
   a call uses).
   Fails with INVALID_ARGUMENT when ctx is NULL; OUT_OF_MEMORY when the
   memory cannot be allocated (the old workspace is kept); DEVICE. */
NPAIRS_API npairs_status npairs_context_reserve(npairs_context ctx, size_t bytes);

/* ------------------------------------------------------------------------ */
/* Hard negative class mining (version 1.1)                                  */
/* ------------------------------------------------------------------------ */

/* Sohn, "Improved Deep Metric Learning with Multi-class N-pair Loss
   Objective" (NIPS 2016), section 3.2: "we evaluate the embedding vectors
   [of a large pool of classes], then greedily add a new class that violates
   the triplet constraint the most w.r.t. the selected classes until we reach
   N classes"; then two examples are drawn from each selected class. The
   class that violates the constraint the most is the one closest to the
   selected set: with e_c the embedding of class c and S the classes selected
   so far, the score of an unselected candidate c is
       score(c) = max over s in S of <e_c, e_s>   (-infinity while S is empty)
   and each step selects the unselected candidate of the highest score.
   Ties (every candidate at step 0, equal or duplicated embeddings later) go
   to the smallest key(seed, step, c), a 64-bit hash, then to the smallest
   index, so the first class is uniform at random from the seed and the
   result does not depend on the thread count or the order of the work:
       mix(x):  x += 0x9E3779B97F4A7C15; x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9;
                x = (x ^ (x >> 27)) * 0x94D049BB133111EB; return x ^ (x >> 31);
       key(seed, step, c) = mix(mix(mix(seed) ^ step) ^ c)
   (uint64_t arithmetic modulo 2^64; step counts from 0). The scores are the
   inner products as the backend's GEMV computes them in the dtype (OpenBLAS
   on the CPU, cuBLAS on CUDA): candidates whose scores differ only by
   rounding may be ordered differently by the two backends.

   Cost: one GEMV of the C x D embeddings per selected class, each followed
   by one pass over the C running scores (the max with the new inner
   products, fused with the next step's arg max): O(N C D) time in all, and a
   workspace of C running scores plus a block of GEMV outputs. */
typedef struct npairs_class_selection {
  size_t struct_size;            /* sizeof(npairs_class_selection) */
  const void* class_embeddings;  /* [C, D] row-major, of dtype: one row per candidate class */
  int64_t classes;               /* C >= 1 */
  int64_t dim;                   /* D >= 1 */
  npairs_dtype dtype;            /* NPAIRS_F32 or NPAIRS_F64 */
  int64_t count;                 /* N, 1 <= N <= C: how many classes to select */
  uint64_t seed;                 /* the tie-breaking keys' seed */
} npairs_class_selection;

/* Fills *selection with zeros, dtype NPAIRS_F32, and sets struct_size. NULL
   is ignored. */
NPAIRS_API void npairs_class_selection_init(npairs_class_selection* selection);

/* Selects selection->count classes of selection->class_embeddings by the
   greedy rule above and writes their indices (0 <= index < C, distinct) to
   `selected` [N], in the order they were selected.

   Memory: as for npairs_loss. On a CUDA context class_embeddings and
   selected may be device memory of the context's device (the selection is
   queued on the context's stream after the data check, which the call waits
   for), managed memory or host memory (staged; the call waits). The
   workspace of a CPU context is C running scores plus a block of GEMV
   outputs (up to 65536 of them, fewer to fit the context's limit, at least
   min(C, 64)); that of a CUDA context is C running scores, C inner products,
   one embedding row and the staging of host arrays, and is not streamed.
   Deterministic for the same inputs, seed, backend, device and thread count.

   Returns NPAIRS_OK, or with `selected` untouched:
   INVALID_ARGUMENT  ctx, selection, selection->class_embeddings or selected
                     NULL, a struct_size below the first published size,
                     classes or dim below 1, count below 1 or above classes,
                     dtype not a floating npairs_dtype, another CUDA device's
                     pointer;
   INVALID_VALUE     an embedding entry that is NaN, infinite, or larger in
                     magnitude than sqrt(max / (4 D)), with max the dtype's
                     largest finite value (then no inner product, nor any
                     partial sum of one, can overflow); the first such row is
                     named;
   UNSUPPORTED       dtype NPAIRS_F16 or NPAIRS_BF16, C or D above 2^31 - 1 on
                     the CPU, a struct larger than this library knows whose
                     extra bytes are not zero;
   OUT_OF_MEMORY     memory exhausted, or the workspace does not fit the
                     context's limit (the message names the limit);
   DEVICE, INTERNAL. */
NPAIRS_API npairs_status npairs_select_hard_classes(npairs_context ctx,
                                                    const npairs_class_selection* selection,
                                                    int64_t* selected);

/* Column blocks (version 1.1)                                               */
/* ------------------------------------------------------------------------ */

/* For a loss whose columns arrive in blocks, e.g. the positives of other
   processes passed around a ring (Inf-CL), so that no caller ever holds
   every column: each block is an ordinary problem (the rows against this
   block's columns, with the block's column targets), and the rows' running
   statistics, kept by the caller, are merged block by block. These are the
   statistics and the per-tile work of the streaming path (section 4): the
   results equal npairs_loss on the concatenated columns to rounding, and are
   bitwise reproducible for the same blocks, order and workspace limit.

   Row statistics: row_stats is [R][NPAIRS_ROW_STATS_WIDTH] in the problem's
   dtype (memory of the context's kind, as the other arrays), per row of
   logits z_ij = S_ij / tau over the columns merged so far and target
   weights q_ij (1 or 0 for labels, G_ij = Y_i . Y'_j for multi-labels):
     [0] m = max_j z_ij,  [1] sum_j exp(z_ij - m),  [2] sum_j q_ij,
     [3] sum_j q_ij (m - z_ij).
   Before the first block a row's statistics are {-inf, 0, 0, 0}. The row
   loss is log([1]) + [3] / [2] (the target weights row-normalised, as in
   section 1), defined once some merged block held a positive of the row
   ([2] > 0). The order in which blocks are merged changes only rounding.

   Both calls take the arguments of npairs_loss and check them as it does
   (same statuses and messages), except that options.reg_lambda must be 0
   (the L2 term is no sum over columns: the caller adds it) and no row needs
   a positive column within the block. On CUDA contexts row_stats may be
   device or host memory (staged as the other arrays), and a block call
   returns once its results are written (it waits for the device). */
#define NPAIRS_ROW_STATS_WIDTH 4

/* Merges the block's statistics into row_stats (read and written). loss:
   NULL, or [R] out: w_i * loss_i of each row over every column merged so
   far (options.reduction is not applied; sample_weight is), which needs a
   positive for every row by then.
   Fails, with outputs untouched (row_stats included), with
   INVALID_ARGUMENT (as npairs_loss; row_stats NULL; reg_lambda > 0;
   gradients cannot be asked for), INVALID_VALUE (a negative multi-label
   entry; with loss, a row that no merged block gave a positive, the first
   one named), UNSUPPORTED (also: a backend without column blocks, this
   version computing them on CPU and CUDA contexts; on CUDA, float16 and
   bfloat16, whose running statistics CUDA keeps in float32, and a stream
   being captured, as a CUDA block call waits for its data checks;
   NPAIRS_FLAG_SYMMETRIC), OUT_OF_MEMORY, DEVICE, INTERNAL. */
NPAIRS_API npairs_status npairs_block_stats(npairs_context ctx, const npairs_options* options,
                                           const npairs_problem* problem, void* row_stats,
                                           void* loss);

/* The gradients of the loss with respect to this block's logits, given the
   rows' final statistics over every column (row_stats, read only): dL/dS
   of the block, dL/dA = (dL/dS) P_block (this block's share: the caller
   sums the blocks') and dL/dP_block = (dL/dS)^T A, with grad_loss,
   sample_weight and options.reduction applied as npairs_loss applies them
   (r = 1/R for SUM_OVER_BATCH_SIZE), and grads.temperature [1]: this
   block's share of dL/dtau, -(1/tau) sum_ij (dL/dz_ij) (z_ij - m_i) over the
   block's columns with m_i = row_stats[i][0], so that the shares of all the
   blocks sum to dL/dtau (the m_i cancel in the sum). Any subset of grads;
   grads NULL or with no member is invalid.
   Fails, with outputs untouched, with INVALID_ARGUMENT (as npairs_loss;
   row_stats NULL; reg_lambda > 0; no gradient asked for), INVALID_VALUE (a
   negative multi-label entry; a row whose statistics hold no positive,
   [2] == 0, the first one named), UNSUPPORTED (as npairs_block_stats),
   OUT_OF_MEMORY, DEVICE, INTERNAL. */
NPAIRS_API npairs_status npairs_block_gradients(npairs_context ctx, const npairs_options* options,
                                               const npairs_problem* problem, const void* row_stats,
                                               const void* grad_loss, npairs_gradients* grads);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* NPAIRS_NPAIRS_H */
