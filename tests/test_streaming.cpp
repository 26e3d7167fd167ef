// The streaming path of SPEC section 4 on the CPU backend: calls under a
// workspace limit, cut into blocks of rows or tiles of columns, against the
// float64 reference and against the unlimited call; the workspace API's
// sizes, errors and allocations.
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <new>
#include <string>
#include <vector>

#include "test_util.hpp"

// Counts the library's workspace allocations: the CPU backend takes its
// workspace with the aligned, non-throwing array new, replaced here.
namespace {
std::size_t g_workspace_allocations = 0;
std::size_t g_workspace_bytes = 0;
}  // namespace

void* operator new[](std::size_t size, std::align_val_t alignment, const std::nothrow_t&) noexcept {
  ++g_workspace_allocations;
  g_workspace_bytes = size;
  // Beyond any machine's memory: fail as the system allocator would (ASan's
  // aligned_alloc would abort the test instead of returning NULL).
  if (size > (std::size_t(1) << 44)) return nullptr;
  const std::size_t a = static_cast<std::size_t>(alignment);
  return std::aligned_alloc(a, (size + a - 1) / a * a);
}
void operator delete[](void* p, std::align_val_t) noexcept { std::free(p); }

namespace {

struct StreamCase {
  std::string name;
  npt::Spec spec;
  bool want_similarity = false, want_anchors = false, want_positives = false;
};

std::vector<StreamCase> make_cases() {
  std::vector<StreamCase> cases;
  int index = 0;
  for (npairs_dtype dtype : {NPAIRS_F32, NPAIRS_F64}) {
    for (bool multilabel : {false, true}) {
      for (bool embeddings : {false, true}) {
        for (npairs_reduction reduction :
             {NPAIRS_REDUCTION_NONE, NPAIRS_REDUCTION_SUM, NPAIRS_REDUCTION_SUM_OVER_BATCH_SIZE}) {
          StreamCase c;
          npt::Spec& s = c.spec;
          s.seed = static_cast<uint64_t>(++index) * 7919u;
          s.dtype = dtype;
          s.multilabel = multilabel;
          s.embeddings = embeddings;
          s.reduction = reduction;
          // Odd sizes, above the smallest block of whole rows (64), so that
          // limits give one, two and many blocks.
          s.rows = 131 + 2 * (index % 5);
          s.column_targets = index % 2 == 0;
          s.cols = s.column_targets ? 97 + 3 * (index % 7) : s.rows;
          s.dim = 5 + index % 4;
          s.classes = multilabel ? 4 : 9;
          s.label_dtype = index % 3 == 0 ? NPAIRS_I32 : NPAIRS_I64;
          s.weights = reduction == NPAIRS_REDUCTION_NONE || index % 3 == 1;
          s.grad_loss = index % 2 == 1;
          s.temperature = index % 4 == 0 ? 1.0 : 0.37;
          s.reg_lambda = embeddings && reduction != NPAIRS_REDUCTION_NONE && index % 3 != 2 ? 0.01 : 0.0;
          // Every subset of the gradients across the cases.
          c.want_similarity = !embeddings || index % 2 == 0;
          c.want_anchors = embeddings && index % 3 != 1;
          c.want_positives = embeddings && index % 3 != 0;
          char name[160];
          std::snprintf(name, sizeof name, "c%02d_%s_%s_%s_%s_R%" PRId64 "x%" PRId64 "_d%s%s%s", index,
                        npt::dtype_name(dtype), multilabel ? "multi" : "labels", embeddings ? "emb" : "sim",
                        npt::reduction_name(reduction), s.rows, s.cols, c.want_similarity ? "S" : "",
                        c.want_anchors ? "A" : "", c.want_positives ? "P" : "");
          c.name = name;
          cases.push_back(c);
        }
      }
    }
  }
  return cases;
}

class Streaming : public ::testing::TestWithParam<StreamCase> {};

// Limits from the whole call's workspace down to the smallest one: one piece,
// blocks of whole rows (two, then many), tiles of columns, single elements.
TEST_P(Streaming, MatchesReferenceAndUnlimitedAtEveryLimit) {
  const StreamCase& c = GetParam();
  const npt::Inputs in = npt::make_inputs(c.spec);
  const ref::Result<double> expected = ref::compute<double>(in.reference());
  ASSERT_TRUE(expected.valid) << expected.error;
  const double rtol = npt::default_rtol(c.spec.dtype);
  npt::Context ctx;
  ASSERT_NPAIRS_OK(ctx.status());

  npt::Outputs unlimited(in, true, c.want_similarity, c.want_anchors, c.want_positives);
  ASSERT_NPAIRS_OK(npt::run_loss(ctx.get(), in, unlimited));
  std::size_t whole = 0;
  ASSERT_NPAIRS_OK(npt::workspace_size(ctx.get(), in, unlimited, &whole));
  const std::size_t smallest = npt::smallest_workspace(ctx.get(), in, unlimited);
  ASSERT_GT(smallest, 0u);
  ASSERT_LE(smallest, whole);

  // Without an R x M array of its own (labels, with a similarity input or a
  // dL/dS output) the whole call is already its smallest piece.
  const bool holds_logits = c.spec.multilabel || (c.spec.embeddings && !c.want_similarity);
  EXPECT_EQ(smallest < whole, holds_logits);
  std::vector<std::size_t> limits = {whole};
  for (double f : {0.6, 0.3, 0.1, 0.02, 0.004, 0.0}) {
    if (smallest < whole) limits.push_back(smallest + static_cast<std::size_t>(f * double(whole - smallest)));
  }
  for (std::size_t limit : limits) {
    SCOPED_TRACE("limit " + std::to_string(limit) + " of " + std::to_string(whole));
    ASSERT_NPAIRS_OK(npairs_context_set_workspace_limit(ctx.get(), limit));
    npt::Outputs out(in, true, c.want_similarity, c.want_anchors, c.want_positives);
    std::size_t used = 0;
    ASSERT_NPAIRS_OK(npt::workspace_size(ctx.get(), in, out, &used));
    EXPECT_LE(used, limit);
    ASSERT_NPAIRS_OK(npt::run_loss(ctx.get(), in, out));
    npt::expect_matches_reference(in, out, expected, rtol);
    // Against the unlimited call: the same math, summed in other orders.
    EXPECT_TRUE(npt::all_close("loss vs unlimited", out.loss.values(), unlimited.loss.values(), rtol));
    if (c.want_similarity) {
      EXPECT_TRUE(npt::all_close("dS vs unlimited", out.grad_similarity.values(),
                                 unlimited.grad_similarity.values(), rtol));
    }
    if (c.want_anchors) {
      EXPECT_TRUE(npt::all_close("dA vs unlimited", out.grad_anchors.values(), unlimited.grad_anchors.values(), rtol));
    }
    if (c.want_positives) {
      EXPECT_TRUE(
          npt::all_close("dP vs unlimited", out.grad_positives.values(), unlimited.grad_positives.values(), rtol));
    }
    // Bitwise the same for the same limit.
    npt::Outputs again(in, true, c.want_similarity, c.want_anchors, c.want_positives);
    ASSERT_NPAIRS_OK(npt::run_loss(ctx.get(), in, again));
    EXPECT_EQ(out.loss.bytes(), again.loss.bytes());
    EXPECT_EQ(out.grad_similarity.bytes(), again.grad_similarity.bytes());
    EXPECT_EQ(out.grad_anchors.bytes(), again.grad_anchors.bytes());
    EXPECT_EQ(out.grad_positives.bytes(), again.grad_positives.bytes());
  }
}

INSTANTIATE_TEST_SUITE_P(Cases, Streaming, ::testing::ValuesIn(make_cases()),
                         [](const ::testing::TestParamInfo<StreamCase>& param_info) { return param_info.param.name; });

npt::Spec embeddings_spec() {
  npt::Spec s;
  s.dtype = NPAIRS_F32;
  s.embeddings = true;
  s.column_targets = true;
  s.rows = 157;
  s.cols = 211;
  s.dim = 7;
  s.classes = 11;
  s.seed = 42;
  return s;
}

TEST(StreamingErrors, LimitBelowTheSmallestPieceFailsLeavingOutputsUntouched) {
  const npt::Inputs in = npt::make_inputs(embeddings_spec());
  npt::Context ctx;
  ASSERT_NPAIRS_OK(ctx.status());
  npt::Outputs out(in, true, false, true, true);
  const std::size_t smallest = npt::smallest_workspace(ctx.get(), in, out);
  ASSERT_NPAIRS_OK(npairs_context_set_workspace_limit(ctx.get(), smallest - 1));
  EXPECT_TRUE(npt::fails_leaving_outputs_untouched(ctx.get(), in, out, NPAIRS_ERROR_OUT_OF_MEMORY));
  const std::string message = npairs_last_error();
  EXPECT_NE(message.find("limit (" + std::to_string(smallest - 1) + " bytes)"), std::string::npos) << message;
  EXPECT_NE(message.find(std::to_string(smallest) + " bytes"), std::string::npos) << message;
  // The context is still usable, at the smallest limit and without one.
  for (std::size_t limit : {smallest, std::size_t(0)}) {
    ASSERT_NPAIRS_OK(npairs_context_set_workspace_limit(ctx.get(), limit));
    out.poison();
    ASSERT_NPAIRS_OK(npt::run_loss(ctx.get(), in, out));
    npt::expect_matches_reference(in, out, ref::compute<double>(in.reference()), 1e-5);
  }
}

TEST(StreamingErrors, WorkspaceSizeRejectsWhatTheLossRejects) {
  const npt::Inputs in = npt::make_inputs(embeddings_spec());
  npt::Context ctx;
  ASSERT_NPAIRS_OK(ctx.status());
  npairs_options options = in.options();
  npairs_problem problem = in.problem();
  std::size_t bytes = 12345;
  EXPECT_EQ(npairs_workspace_size(nullptr, &options, &problem, nullptr, &bytes), NPAIRS_ERROR_INVALID_ARGUMENT);
  EXPECT_EQ(npairs_workspace_size(ctx.get(), &options, &problem, nullptr, nullptr), NPAIRS_ERROR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(npairs_last_error()).find("bytes"), std::string::npos);
  EXPECT_EQ(npairs_workspace_size(ctx.get(), &options, nullptr, nullptr, &bytes), NPAIRS_ERROR_INVALID_ARGUMENT);
  // Each broken argument: the same status and message from both calls.
  auto same_as_loss = [&](const char* what) {
    SCOPED_TRACE(what);
    float loss = 0;
    const npairs_status from_loss = npairs_loss(ctx.get(), &options, &problem, nullptr, &loss, nullptr);
    const std::string loss_message = npairs_last_error();
    const npairs_status from_size = npairs_workspace_size(ctx.get(), &options, &problem, nullptr, &bytes);
    EXPECT_NE(from_loss, NPAIRS_OK);
    EXPECT_EQ(from_size, from_loss);
    EXPECT_EQ(std::string(npairs_last_error()), loss_message);
    EXPECT_EQ(bytes, 12345u);  // untouched
    options = in.options();
    problem = in.problem();
  };
  options.temperature = 0;
  same_as_loss("temperature");
  problem.labels = nullptr;
  same_as_loss("labels");
  problem.dtype = NPAIRS_F16;
  same_as_loss("f16 on the CPU");
  problem.struct_size = 8;
  same_as_loss("struct_size");
}

TEST(StreamingErrors, NullContextAndReserveFailures) {
  EXPECT_EQ(npairs_context_set_workspace_limit(nullptr, 1), NPAIRS_ERROR_INVALID_ARGUMENT);
  EXPECT_EQ(npairs_context_reserve(nullptr, 1), NPAIRS_ERROR_INVALID_ARGUMENT);
  npt::Context ctx;
  ASSERT_NPAIRS_OK(ctx.status());
  EXPECT_EQ(npairs_context_reserve(ctx.get(), SIZE_MAX / 2), NPAIRS_ERROR_OUT_OF_MEMORY);
  EXPECT_NE(std::string(npairs_last_error()).find("workspace"), std::string::npos);
  // The context keeps working.
  const npt::Inputs in = npt::make_inputs(embeddings_spec());
  npt::Outputs out(in, true, false, true, true);
  ASSERT_NPAIRS_OK(npt::run_loss(ctx.get(), in, out));
}

// The workspace a call allocates is what npairs_workspace_size reported;
// after a reserve of that size the call allocates nothing.
TEST(StreamingWorkspace, AllocatesWhatItReportsAndNothingAfterReserve) {
  const npt::Inputs in = npt::make_inputs(embeddings_spec());
  for (bool column_tiles : {false, true}) {
    SCOPED_TRACE(column_tiles ? "tiles of columns" : "blocks of rows");
    npt::Context ctx;
    ASSERT_NPAIRS_OK(ctx.status());
    npt::Outputs out(in, true, false, true, true);
    std::size_t whole = 0;
    ASSERT_NPAIRS_OK(npt::workspace_size(ctx.get(), in, out, &whole));
    const std::size_t smallest = npt::smallest_workspace(ctx.get(), in, out);
    const std::size_t limit = column_tiles ? smallest + (whole - smallest) / 50 : whole / 2;
    ASSERT_NPAIRS_OK(npairs_context_set_workspace_limit(ctx.get(), limit));
    std::size_t reported = 0;
    ASSERT_NPAIRS_OK(npt::workspace_size(ctx.get(), in, out, &reported));
    ASSERT_LE(reported, limit);

    g_workspace_allocations = 0;
    ASSERT_NPAIRS_OK(npt::run_loss(ctx.get(), in, out));
    EXPECT_EQ(g_workspace_allocations, 1u);
    EXPECT_EQ(g_workspace_bytes, reported);
    g_workspace_allocations = 0;
    ASSERT_NPAIRS_OK(npt::run_loss(ctx.get(), in, out));
    EXPECT_EQ(g_workspace_allocations, 0u);  // kept from the first call

    npt::Context reserved;
    ASSERT_NPAIRS_OK(reserved.status());
    ASSERT_NPAIRS_OK(npairs_context_set_workspace_limit(reserved.get(), limit));
    ASSERT_NPAIRS_OK(npairs_context_reserve(reserved.get(), reported));
    g_workspace_allocations = 0;
    npt::Outputs out2(in, true, false, true, true);
    ASSERT_NPAIRS_OK(npt::run_loss(reserved.get(), in, out2));
    EXPECT_EQ(g_workspace_allocations, 0u);
    EXPECT_EQ(out.grad_anchors.bytes(), out2.grad_anchors.bytes());
  }
}

// A limit releases workspace held above it; no limit keeps what a call took.
TEST(StreamingWorkspace, LowerLimitReleasesWorkspace) {
  const npt::Inputs in = npt::make_inputs(embeddings_spec());
  npt::Context ctx;
  ASSERT_NPAIRS_OK(ctx.status());
  npt::Outputs out(in, true, false, true, true);
  std::size_t whole = 0;
  ASSERT_NPAIRS_OK(npt::workspace_size(ctx.get(), in, out, &whole));
  ASSERT_NPAIRS_OK(npt::run_loss(ctx.get(), in, out));
  ASSERT_NPAIRS_OK(npairs_context_set_workspace_limit(ctx.get(), whole / 3));
  std::size_t reported = 0;
  ASSERT_NPAIRS_OK(npt::workspace_size(ctx.get(), in, out, &reported));
  g_workspace_allocations = 0;
  ASSERT_NPAIRS_OK(npt::run_loss(ctx.get(), in, out));
  EXPECT_EQ(g_workspace_allocations, 1u);  // the whole-call workspace was freed
  EXPECT_EQ(g_workspace_bytes, reported);
}

}  // namespace
