// The CUDA backend's streamed path (SPEC section 4): calls above the
// context's workspace limit, with host and device pointers, against the
// float64 reference and the CPU backend's streamed result. Skips without a
// GPU (the tile kernels also run on the CPU in tests/emulated/).
#include <cinttypes>
#include <cstdio>
#include <string>
#include <vector>

#include "cuda_util.hpp"

namespace {

struct StreamedCase {
  std::string name;
  npt::Spec spec;
  bool want_similarity = false, want_anchors = false, want_positives = false;
  bool device_memory = false;
  double limit_fraction = 0.5;  // of the whole call's workspace, above the smallest
};

std::vector<StreamedCase> make_cases() {
  std::vector<StreamedCase> cases;
  int index = 0;
  for (npairs_dtype dtype : {NPAIRS_F32, NPAIRS_F64, NPAIRS_BF16}) {
    for (bool multilabel : {false, true}) {
      if (multilabel && dtype == NPAIRS_BF16) continue;  // UNSUPPORTED streamed (StreamedHalfMultilabels)
      for (bool embeddings : {false, true}) {
        for (bool device_memory : {false, true}) {
          for (double fraction : {0.4, 0.01}) {  // blocks of whole rows; tiles of columns
            StreamedCase c;
            npt::Spec& s = c.spec;
            ++index;
            s.seed = static_cast<uint64_t>(index) * 104729u;
            s.dtype = dtype;
            s.multilabel = multilabel;
            s.embeddings = embeddings;
            s.rows = 301 + index % 7;
            s.column_targets = index % 2 == 0;
            s.cols = s.column_targets ? 263 + index % 5 : s.rows;
            s.dim = 9;
            s.classes = multilabel ? 5 : 17;
            s.label_dtype = index % 3 == 0 ? NPAIRS_I32 : NPAIRS_I64;
            s.reduction = index % 3 == 0   ? NPAIRS_REDUCTION_NONE
                          : index % 3 == 1 ? NPAIRS_REDUCTION_SUM
                                           : NPAIRS_REDUCTION_SUM_OVER_BATCH_SIZE;
            s.weights = index % 2 == 1;
            s.grad_loss = index % 4 < 2;
            s.temperature = 0.4;
            s.reg_lambda = embeddings && s.reduction != NPAIRS_REDUCTION_NONE ? 0.02 : 0.0;
            c.want_similarity = !embeddings || index % 4 == 0;
            c.want_anchors = embeddings;
            c.want_positives = embeddings && index % 3 != 0;
            c.device_memory = device_memory;
            c.limit_fraction = fraction;
            char name[160];
            std::snprintf(name, sizeof name, "s%02d_%s_%s_%s_R%" PRId64 "x%" PRId64 "_%s_%s", index,
                          npt::dtype_name(dtype), multilabel ? "multi" : "labels", embeddings ? "emb" : "sim", s.rows,
                          s.cols, fraction > 0.1 ? "rowblocks" : "coltiles", device_memory ? "device" : "host");
            c.name = name;
            cases.push_back(c);
          }
        }
      }
    }
  }
  return cases;
}

class CudaStreaming : public ::testing::TestWithParam<StreamedCase> {};

TEST_P(CudaStreaming, MatchesReferenceAndCpu) {
  NPT_REQUIRE_CUDA();
  const StreamedCase& c = GetParam();
  if (c.device_memory) NPT_REQUIRE_CUDART();
  const npt::Inputs in = npt::make_inputs(c.spec);
  const double rtol = npt::default_rtol(c.spec.dtype);
  npt::Context gpu(NPAIRS_BACKEND_CUDA, 0);
  ASSERT_NPAIRS_OK(gpu.status());

  npt::Outputs out(in, true, c.want_similarity, c.want_anchors, c.want_positives);
  std::size_t whole = 0;
  ASSERT_NPAIRS_OK(npt::workspace_size(gpu.get(), in, out, &whole));
  ASSERT_NPAIRS_OK(npairs_context_set_workspace_limit(gpu.get(), 1));
  std::size_t ignored = 0;
  ASSERT_EQ(npt::workspace_size(gpu.get(), in, out, &ignored), NPAIRS_ERROR_OUT_OF_MEMORY);
  const std::string message = npairs_last_error();
  const std::size_t at = message.find("smallest workspace this call can use (");
  ASSERT_NE(at, std::string::npos) << message;
  const std::size_t smallest = std::stoull(message.substr(at + 38));
  const std::size_t limit = smallest + static_cast<std::size_t>(c.limit_fraction * double(whole - smallest));
  ASSERT_NPAIRS_OK(npairs_context_set_workspace_limit(gpu.get(), limit));
  std::size_t used = 0;
  ASSERT_NPAIRS_OK(npt::workspace_size(gpu.get(), in, out, &used));
  EXPECT_LE(used, limit);

  npt::run_host_or_device(gpu.get(), c.device_memory, in, out);
  if (HasFatalFailure()) return;
  npt::expect_matches_reference(in, out, ref::compute<double>(in.reference()), rtol);
  npt::Outputs again(in, true, c.want_similarity, c.want_anchors, c.want_positives);
  npt::run_host_or_device(gpu.get(), c.device_memory, in, again);
  EXPECT_EQ(out.loss.bytes(), again.loss.bytes());
  EXPECT_EQ(out.grad_similarity.bytes(), again.grad_similarity.bytes());
  EXPECT_EQ(out.grad_anchors.bytes(), again.grad_anchors.bytes());
  EXPECT_EQ(out.grad_positives.bytes(), again.grad_positives.bytes());

  if (c.spec.dtype == NPAIRS_BF16) return;  // the CPU backend computes f32 and f64
  npt::Context cpu(NPAIRS_BACKEND_CPU);
  ASSERT_NPAIRS_OK(cpu.status());
  npt::Outputs expected(in, true, c.want_similarity, c.want_anchors, c.want_positives);
  ASSERT_NPAIRS_OK(npt::run_loss(cpu.get(), in, expected));
  EXPECT_TRUE(npt::all_close("loss vs CPU", out.loss.values(), expected.loss.values(), rtol));
  if (c.want_anchors) {
    EXPECT_TRUE(npt::all_close("grads.anchors vs CPU", out.grad_anchors.values(), expected.grad_anchors.values(), rtol));
  }
}

INSTANTIATE_TEST_SUITE_P(Cases, CudaStreaming, ::testing::ValuesIn(make_cases()),
                         [](const ::testing::TestParamInfo<StreamedCase>& param_info) { return param_info.param.name; });

TEST(CudaStreamingErrors, StreamedHalfMultilabelsAreUnsupported) {
  NPT_REQUIRE_CUDA();
  npt::Spec s;
  s.dtype = NPAIRS_F16;
  s.multilabel = true;
  s.embeddings = true;
  s.rows = 97;
  s.dim = 8;
  s.classes = 4;
  const npt::Inputs in = npt::make_inputs(s);
  npt::Context gpu(NPAIRS_BACKEND_CUDA, 0);
  ASSERT_NPAIRS_OK(gpu.status());
  npt::Outputs out(in, true, false, true, true);
  ASSERT_NPAIRS_OK(npairs_context_set_workspace_limit(gpu.get(), 4096));
  EXPECT_TRUE(npt::fails_leaving_outputs_untouched(gpu.get(), in, out, NPAIRS_ERROR_UNSUPPORTED));
}

TEST(CudaStreamingErrors, LimitBelowTheSmallestPieceLeavesOutputsUntouched) {
  NPT_REQUIRE_CUDA();
  const npt::Inputs in = npt::make_inputs(npt::all_features_spec(NPAIRS_F32, 20, 5));
  npt::Context gpu(NPAIRS_BACKEND_CUDA, 0);
  ASSERT_NPAIRS_OK(gpu.status());
  npt::Outputs out(in, true, false, true, true);
  ASSERT_NPAIRS_OK(npairs_context_set_workspace_limit(gpu.get(), 64));
  EXPECT_TRUE(npt::fails_leaving_outputs_untouched(gpu.get(), in, out, NPAIRS_ERROR_OUT_OF_MEMORY));
  EXPECT_NE(std::string(npairs_last_error()).find("limit (64 bytes)"), std::string::npos);
}

}  // namespace
