// SPEC section 5 on CUDA contexts: NPAIRS_FLAG_SYMMETRIC and
// grads.temperature (dL/dtau, symmetric or not) for every input kind, in
// every dtype (16-bit against a looser tolerance), from host and from device
// memory, dense and under workspace limits that force blocks of rows and
// tiles of columns: against the float64 reference and the CPU backend,
// bitwise reproducible for a limit. The bad inputs: a column without a
// positive row (checked before any output is written, or deferred), 16-bit
// multi-labels. Skips without a GPU (the kernels also run on the CPU in
// tests/emulated/test_symmetric_kernels_emulated.cpp).
#include <cmath>
#include <initializer_list>
#include <string>
#include <vector>

#include "cuda_util.hpp"

namespace {

struct CudaSymCase : npt::SymmetricCase {
  bool device_memory = false;
};

// npt::symmetric_sweep in every dtype (16-bit against a looser tolerance),
// from host memory and (odd index) from device memory.
std::vector<CudaSymCase> make_cases() {
  const npt::SymmetricSizes sizes{/*seed_step=*/7919, /*rows=*/203, /*even_cols=*/157, /*odd_cols=*/261,
                                  /*dim=*/7, /*dim_cycle=*/5, /*multilabel_classes=*/5,
                                  /*rectangular_classes=*/11, /*big_labels=*/false};
  std::vector<CudaSymCase> cases;
  for (const npt::SymmetricCase& sweep :
       npt::symmetric_sweep({NPAIRS_F32, NPAIRS_F64, NPAIRS_F16, NPAIRS_BF16}, sizes)) {
    CudaSymCase c{sweep, sweep.index % 2 == 1};
    c.name += c.device_memory ? "_device" : "_host";
    cases.push_back(c);
  }
  return cases;
}

npt::Outputs outputs_of(const CudaSymCase& c, const npt::Inputs& in) {
  return npt::Outputs(in, true, c.want_similarity, c.want_anchors, c.want_positives, true);
}

class CudaSymmetric : public ::testing::TestWithParam<CudaSymCase> {};

// Unlimited (dense), then limits that force blocks of rows and tiles of
// columns (streamed): each against the reference and the CPU backend's
// result, bitwise reproducible.
TEST_P(CudaSymmetric, MatchesReferenceAndCpuDenseAndStreamed) {
  NPT_REQUIRE_CUDA();
  const CudaSymCase& c = GetParam();
  if (c.device_memory) NPT_REQUIRE_CUDART();
  const npt::Inputs in = npt::make_inputs(c.spec);
  const ref::Result<double> expected = ref::compute<double>(in.reference());
  ASSERT_TRUE(expected.valid) << expected.error;
  const double rtol = npt::default_rtol(c.spec.dtype);
  const bool half = c.spec.dtype == NPAIRS_F16 || c.spec.dtype == NPAIRS_BF16;
  npt::Context gpu(NPAIRS_BACKEND_CUDA, 0);
  ASSERT_NPAIRS_OK(gpu.status());
  npt::Outputs cpu_out = outputs_of(c, in);
  if (!half) {
    npt::Context cpu(NPAIRS_BACKEND_CPU);
    ASSERT_NPAIRS_OK(cpu.status());
    ASSERT_NPAIRS_OK(npt::run_loss(cpu.get(), in, cpu_out));
  }

  npt::Outputs probe = outputs_of(c, in);
  std::size_t whole = 0;
  ASSERT_NPAIRS_OK(npt::workspace_size(gpu.get(), in, probe, &whole));
  const std::size_t smallest = npt::smallest_workspace(gpu.get(), in, probe);
  ASSERT_GT(smallest, 0u);
  std::vector<std::size_t> limits = {0};
  for (double f : {0.4, 0.01}) {  // blocks of whole rows; tiles of columns
    if (smallest < whole) limits.push_back(smallest + static_cast<std::size_t>(f * double(whole - smallest)));
  }
  for (std::size_t limit : limits) {
    SCOPED_TRACE("limit " + std::to_string(limit) + " of " + std::to_string(whole));
    ASSERT_NPAIRS_OK(npairs_context_set_workspace_limit(gpu.get(), limit));
    npt::Outputs out = outputs_of(c, in);
    std::size_t used = 0;
    ASSERT_NPAIRS_OK(npt::workspace_size(gpu.get(), in, out, &used));
    if (limit != 0) {
      EXPECT_LE(used, limit);
    }
    npt::run_host_or_device(gpu.get(), c.device_memory, in, out);
    if (HasFatalFailure()) return;
    npt::expect_matches_reference(in, out, expected, rtol);
    npt::Outputs again = outputs_of(c, in);
    npt::run_host_or_device(gpu.get(), c.device_memory, in, again);
    EXPECT_EQ(out.loss.bytes(), again.loss.bytes());
    EXPECT_EQ(out.grad_similarity.bytes(), again.grad_similarity.bytes());
    EXPECT_EQ(out.grad_anchors.bytes(), again.grad_anchors.bytes());
    EXPECT_EQ(out.grad_positives.bytes(), again.grad_positives.bytes());
    EXPECT_EQ(out.grad_temperature.bytes(), again.grad_temperature.bytes());
    if (half) continue;  // the CPU backend computes f32 and f64
    EXPECT_TRUE(npt::all_close("loss vs CPU", out.loss.values(), cpu_out.loss.values(), rtol));
    EXPECT_TRUE(npt::all_close("grads.temperature vs CPU", out.grad_temperature.values(),
                               cpu_out.grad_temperature.values(), rtol));
    if (c.want_similarity) {
      EXPECT_TRUE(npt::all_close("grads.similarity vs CPU", out.grad_similarity.values(),
                                 cpu_out.grad_similarity.values(), rtol));
    }
    if (c.want_anchors) {
      EXPECT_TRUE(
          npt::all_close("grads.anchors vs CPU", out.grad_anchors.values(), cpu_out.grad_anchors.values(), rtol));
    }
  }
}

// dL/dtau alone (no other gradient): the same values as with everything.
TEST_P(CudaSymmetric, TemperatureGradientAlone) {
  NPT_REQUIRE_CUDA();
  const CudaSymCase& c = GetParam();
  if (c.device_memory) NPT_REQUIRE_CUDART();
  const npt::Inputs in = npt::make_inputs(c.spec);
  npt::Context gpu(NPAIRS_BACKEND_CUDA, 0);
  ASSERT_NPAIRS_OK(gpu.status());
  npt::Outputs only_tau(in, false, false, false, false, true);
  npt::run_host_or_device(gpu.get(), c.device_memory, in, only_tau);
  if (HasFatalFailure()) return;
  npt::expect_matches_reference(in, only_tau, ref::compute<double>(in.reference()), npt::default_rtol(c.spec.dtype));
  EXPECT_TRUE(only_tau.loss.is_poison(0));
}

INSTANTIATE_TEST_SUITE_P(Cases, CudaSymmetric, ::testing::ValuesIn(make_cases()),
                         [](const ::testing::TestParamInfo<CudaSymCase>& param_info) { return param_info.param.name; });

TEST(CudaSymmetricErrors, ColumnWithoutPositiveRowIsInvalidValueNamingIt) {
  NPT_REQUIRE_CUDA();
  npt::Context gpu(NPAIRS_BACKEND_CUDA, 0);
  ASSERT_NPAIRS_OK(gpu.status());
  npt::expect_symmetric_column_without_positive_fails(gpu.get());
}

#ifdef NPAIRS_TEST_HAVE_CUDART
// NPAIRS_FLAG_DEFER_CHECKS with device memory: the call returns OK without
// waiting, the loss and dL/dtau are NaN, and the next synchronize reports the
// column (and clears it).
TEST(CudaSymmetricErrors, DeferredColumnCheckReportsAtSynchronize) {
  NPT_REQUIRE_CUDA();
  npt::Context gpu(NPAIRS_BACKEND_CUDA, 0);
  ASSERT_NPAIRS_OK(gpu.status());
  for (bool multilabel : {false, true}) {
    SCOPED_TRACE(multilabel ? "multi" : "labels");
    const npt::Inputs in = npt::symmetric_column_without_positive(multilabel, NPAIRS_F32);
    npt::Outputs out(in, true, true, false, false, true);
    npt::DeviceArray labels(in.labels), column_labels(in.column_labels), multilabels(in.multilabels),
        column_multilabels(in.column_multilabels), similarity(in.similarity), loss(out.loss),
        dS(out.grad_similarity), dtau(out.grad_temperature);
    npairs_problem p = in.problem();
    p.labels = multilabel ? nullptr : labels.data();
    p.column_labels = multilabel ? nullptr : column_labels.data();
    p.multilabels = multilabel ? multilabels.data() : nullptr;
    p.column_multilabels = multilabel ? column_multilabels.data() : nullptr;
    p.similarity = similarity.data();
    npairs_options o = in.options();
    o.flags |= NPAIRS_FLAG_DEFER_CHECKS;
    npairs_gradients g;
    npairs_gradients_init(&g);
    g.similarity = dS.data();
    g.temperature = dtau.data();
    ASSERT_NPAIRS_OK(npairs_loss(gpu.get(), &o, &p, nullptr, loss.data(), &g));
    EXPECT_EQ(npairs_context_synchronize(gpu.get()), NPAIRS_ERROR_INVALID_VALUE);
    EXPECT_TRUE(npt::mentions(npairs_last_error(), {"column 4"})) << npairs_last_error();
    EXPECT_NPAIRS_OK(npairs_context_synchronize(gpu.get()));  // cleared
    ASSERT_TRUE(loss.download(out.loss) && dtau.download(out.grad_temperature) && dS.download(out.grad_similarity));
    EXPECT_TRUE(std::isnan(out.loss.values()[0]));
    EXPECT_TRUE(std::isnan(out.grad_temperature.values()[0]));
    const std::vector<double> ds = out.grad_similarity.values();
    for (int64_t i = 0; i < in.R; ++i) EXPECT_TRUE(std::isnan(ds[std::size_t(i * in.M + 4)])) << "row " << i;
  }
}

// DEFER_CHECKS without rows, dL/dtau of a non-symmetric call: no row check
// runs to read the columns' signs, so the negative column multi-label is
// reported at synchronize, with the message the CPU backend gives at the call.
TEST(CudaSymmetricErrors, DeferredNoRowsReportsNegativeColumnMultilabel) {
  npt::Array dummy(NPAIRS_F64, 2), column_multilabels(NPAIRS_F64, 3 * 2), loss(NPAIRS_F64, 1),
      dtau(NPAIRS_F64, 1);
  dummy.fill(0);
  for (std::size_t k = 0; k < 6; ++k) column_multilabels.set(k, npt::kNoRowsColumnMultilabels[k]);
  npairs_options o;
  npairs_options_init(&o);
  o.flags |= NPAIRS_FLAG_DEFER_CHECKS;

  npt::Context cpu(NPAIRS_BACKEND_CPU, 0);
  ASSERT_NPAIRS_OK(cpu.status());
  const npairs_problem host = npt::no_rows_negative_column_problem(dummy.data(), column_multilabels.data());
  npairs_gradients g;
  npairs_gradients_init(&g);
  g.temperature = dtau.data();
  ASSERT_EQ(npairs_loss(cpu.get(), &o, &host, nullptr, loss.data(), &g), NPAIRS_ERROR_INVALID_VALUE);
  const std::string cpu_message = npairs_last_error();
  EXPECT_TRUE(npt::mentions(cpu_message, {"problem.column_multilabels", "row 1"})) << cpu_message;

  NPT_REQUIRE_CUDA();
  npt::Context gpu(NPAIRS_BACKEND_CUDA, 0);
  ASSERT_NPAIRS_OK(gpu.status());
  npt::DeviceArray rows_on_device(dummy), columns_on_device(column_multilabels), loss_on_device(loss),
      dtau_on_device(dtau);
  const npairs_problem device = npt::no_rows_negative_column_problem(rows_on_device.data(), columns_on_device.data());
  g.temperature = dtau_on_device.data();
  ASSERT_NPAIRS_OK(npairs_loss(gpu.get(), &o, &device, nullptr, loss_on_device.data(), &g));
  EXPECT_EQ(npairs_context_synchronize(gpu.get()), NPAIRS_ERROR_INVALID_VALUE);
  EXPECT_EQ(std::string(npairs_last_error()), cpu_message);
  EXPECT_NPAIRS_OK(npairs_context_synchronize(gpu.get()));  // cleared
}
#endif

TEST(CudaSymmetricErrors, HalfMultilabelsAreUnsupported) {
  NPT_REQUIRE_CUDA();
  npt::Context gpu(NPAIRS_BACKEND_CUDA, 0);
  ASSERT_NPAIRS_OK(gpu.status());
  for (bool symmetric : {true, false}) {
    npt::Spec s;
    s.dtype = NPAIRS_F16;
    s.multilabel = true;
    s.symmetric = symmetric;
    s.rows = 13;
    s.classes = 3;
    const npt::Inputs in = npt::make_inputs(s);
    npt::Outputs out(in, true, true, false, false, true);
    EXPECT_TRUE(npt::fails_leaving_outputs_untouched(gpu.get(), in, out, NPAIRS_ERROR_UNSUPPORTED));
    EXPECT_TRUE(npt::mentions(npairs_last_error(), {"grads.temperature", "multi-labels"})) << npairs_last_error();
  }
}

// R = 0 without column targets (M = 0): the loss and dL/dtau are 0.
TEST(CudaSymmetric, NoRowsGivesZeros) {
  NPT_REQUIRE_CUDA();
  npt::Context gpu(NPAIRS_BACKEND_CUDA, 0);
  ASSERT_NPAIRS_OK(gpu.status());
  npt::expect_symmetric_no_rows_gives_zeros(gpu.get());
}

}  // namespace
