// Column blocks (npairs_block_stats, npairs_block_gradients) on the CPU
// backend, and on the CUDA backend with host arrays (staged) where a device
// is present: a problem's columns cut into blocks, the row statistics merged
// block by block, then each block's gradients from the final statistics,
// against the float64 reference of the whole problem (tests/reference.cpp)
// and against statistics computed here by their definition; and their
// argument and data errors, outputs untouched.
#include <cmath>
#include <functional>
#include <limits>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "cuda_util.hpp"
#include "test_util.hpp"

namespace {

// A block's view of the problem: columns [begin, end) of the positives and column targets.
npairs_problem block_problem(const npt::Inputs& in, int64_t begin, int64_t end) {
  npairs_problem p = in.problem();
  const std::size_t value = npt::dtype_size(in.spec.dtype);
  p.cols = end - begin;
  p.positives = static_cast<const unsigned char*>(in.positives.data()) + begin * in.D * value;
  if (in.spec.multilabel) {
    p.column_multilabels = static_cast<const unsigned char*>(in.column_multilabels.data()) + begin * in.K * value;
  } else {
    p.column_labels = static_cast<const unsigned char*>(in.column_labels.data()) +
                      begin * npt::dtype_size(in.spec.label_dtype);
  }
  return p;
}

npt::Array empty_stats(const npt::Inputs& in) {
  npt::Array stats(in.spec.dtype, static_cast<std::size_t>(in.R) * NPAIRS_ROW_STATS_WIDTH);
  for (int64_t i = 0; i < in.R; ++i) {
    stats.set(i * NPAIRS_ROW_STATS_WIDTH, -std::numeric_limits<double>::infinity());
    for (int f = 1; f < NPAIRS_ROW_STATS_WIDTH; ++f) stats.set(i * NPAIRS_ROW_STATS_WIDTH + f, 0.0);
  }
  return stats;
}

struct BlockCase {
  std::string name;
  npt::Spec spec;
  std::vector<int64_t> cuts;  // block boundaries inside [0, M]
  std::size_t workspace_limit = 0;
  npairs_backend backend = NPAIRS_BACKEND_CPU;
};

npt::Spec spec_of(npairs_dtype dtype, bool multilabel, npairs_reduction reduction, bool weights, bool grad_loss,
                  double temperature, uint64_t seed) {
  npt::Spec s;
  s.dtype = dtype;
  s.multilabel = multilabel;
  s.embeddings = true;
  s.column_targets = true;
  s.rows = 7;
  s.cols = 13;
  s.dim = 5;
  s.classes = 4;
  s.weights = weights;
  s.grad_loss = grad_loss;
  s.reduction = reduction;
  s.temperature = temperature;
  s.seed = seed;
  return s;
}

std::vector<BlockCase> block_cases() {
  std::vector<BlockCase> cases;
  uint64_t seed = 40;
  for (npairs_dtype dtype : {NPAIRS_F64, NPAIRS_F32}) {
    for (bool multilabel : {false, true}) {
      for (npairs_reduction reduction :
           {NPAIRS_REDUCTION_NONE, NPAIRS_REDUCTION_SUM, NPAIRS_REDUCTION_SUM_OVER_BATCH_SIZE}) {
        const std::string name = std::string(npt::dtype_name(dtype)) + (multilabel ? "_multilabel_" : "_labels_") +
                                 npt::reduction_name(reduction);
        cases.push_back({name, spec_of(dtype, multilabel, reduction, false, false, 1.0, ++seed), {4, 5, 9}});
        cases.push_back({name + "_weights_grad_loss_temperature",
                         spec_of(dtype, multilabel, reduction, true, true, 0.37, ++seed), {1, 12}});
      }
    }
    // Every block one column, and a workspace limit that cuts a block into tiles.
    cases.push_back({std::string(npt::dtype_name(dtype)) + "_single_columns",
                     spec_of(dtype, false, NPAIRS_REDUCTION_SUM, true, false, 2.0, ++seed),
                     {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}});
    cases.push_back({std::string(npt::dtype_name(dtype)) + "_tiled_under_a_limit",
                     spec_of(dtype, true, NPAIRS_REDUCTION_SUM_OVER_BATCH_SIZE, true, true, 0.5, ++seed), {6},
                     1024});
  }
  return cases;
}

// The same cases on a CUDA context.
std::vector<BlockCase> cuda_block_cases() {
  std::vector<BlockCase> cases = block_cases();
  for (BlockCase& c : cases) c.backend = NPAIRS_BACKEND_CUDA;
  return cases;
}

class BlockColumns : public ::testing::TestWithParam<BlockCase> {};

TEST_P(BlockColumns, MatchTheWholeProblemReference) {
  const BlockCase& c = GetParam();
  if (c.backend == NPAIRS_BACKEND_CUDA) NPT_REQUIRE_CUDA();
  const npt::Inputs in = npt::make_inputs(c.spec);
  const ref::Result<double> expected = ref::compute<double>(in.reference());
  ASSERT_TRUE(expected.valid) << expected.error;
  npt::Context ctx(c.backend);
  ASSERT_NPAIRS_OK(ctx.status());
  ASSERT_NPAIRS_OK(npairs_context_set_workspace_limit(ctx.get(), c.workspace_limit));
  const double rtol = npt::default_rtol(c.spec.dtype);
  const npairs_options options = in.options();
  std::vector<int64_t> bounds{0};
  bounds.insert(bounds.end(), c.cuts.begin(), c.cuts.end());
  bounds.push_back(in.M);

  // Statistics, block by block; the row losses with the last block.
  npt::Array stats = empty_stats(in);
  npt::Array rows(c.spec.dtype, static_cast<std::size_t>(in.R));
  rows.poison();
  for (std::size_t b = 0; b + 1 < bounds.size(); ++b) {
    const npairs_problem block = block_problem(in, bounds[b], bounds[b + 1]);
    const bool last = b + 2 == bounds.size();
    ASSERT_NPAIRS_OK(npairs_block_stats(ctx.get(), &options, &block, stats.data(), last ? rows.data() : nullptr));
  }
  EXPECT_TRUE(npt::fully_written("loss", rows));
  std::vector<double> weighted(expected.row_loss.begin(), expected.row_loss.end());
  for (int64_t i = 0; i < in.R; ++i) weighted[i] *= c.spec.weights ? in.sample_weight.get(i) : 1.0;
  EXPECT_TRUE(npt::all_close("row losses", rows.values(), weighted, rtol, 1.0));

  // The statistics by their definition: max_j z_ij and sum_j exp(z_ij - max).
  std::vector<double> got_max, got_sum, want_max, want_sum;
  for (int64_t i = 0; i < in.R; ++i) {
    double m = -std::numeric_limits<double>::infinity(), s = 0.0;
    for (int64_t j = 0; j < in.M; ++j) m = std::max(m, expected.logits[i * in.M + j]);
    for (int64_t j = 0; j < in.M; ++j) s += std::exp(expected.logits[i * in.M + j] - m);
    want_max.push_back(m);
    want_sum.push_back(s);
    got_max.push_back(stats.get(i * NPAIRS_ROW_STATS_WIDTH));
    got_sum.push_back(stats.get(i * NPAIRS_ROW_STATS_WIDTH + 1));
  }
  EXPECT_TRUE(npt::all_close("row_stats max", got_max, want_max, rtol, 1.0));
  EXPECT_TRUE(npt::all_close("row_stats sum of exponentials", got_sum, want_sum, rtol, 1.0));

  // Gradients, block by block, from the final statistics; the blocks'
  // shares of dL/dA and dL/dtau summed.
  std::vector<double> grad_anchors(static_cast<std::size_t>(in.R * in.D), 0.0);
  double grad_temperature = 0.0;
  for (std::size_t b = 0; b + 1 < bounds.size(); ++b) {
    const int64_t begin = bounds[b], width = bounds[b + 1] - bounds[b];
    const npairs_problem block = block_problem(in, begin, bounds[b + 1]);
    npt::Array ds(c.spec.dtype, static_cast<std::size_t>(in.R * width));
    npt::Array da(c.spec.dtype, static_cast<std::size_t>(in.R * in.D));
    npt::Array dp(c.spec.dtype, static_cast<std::size_t>(width * in.D));
    npt::Array dt(c.spec.dtype, 1);
    for (npt::Array* a : {&ds, &da, &dp, &dt}) a->poison();
    npairs_gradients grads;
    npairs_gradients_init(&grads);
    grads.similarity = ds.data();
    grads.anchors = da.data();
    grads.positives = dp.data();
    grads.temperature = dt.data();
    ASSERT_NPAIRS_OK(
        npairs_block_gradients(ctx.get(), &options, &block, stats.data(), in.grad_loss_ptr(), &grads));
    for (npt::Array* a : {&ds, &da, &dp, &dt}) EXPECT_TRUE(npt::fully_written("block gradient", *a));
    grad_temperature += dt.get(0);
    std::vector<double> want_ds, want_dp;
    for (int64_t i = 0; i < in.R; ++i) {
      for (int64_t j = 0; j < width; ++j) want_ds.push_back(expected.grad_similarity[i * in.M + begin + j]);
    }
    for (int64_t j = 0; j < width * in.D; ++j) want_dp.push_back(expected.grad_positives[begin * in.D + j]);
    const std::string what = "block " + std::to_string(b);
    EXPECT_TRUE(npt::all_close(what + " dL/dS", ds.values(), want_ds, rtol));
    EXPECT_TRUE(npt::all_close(what + " dL/dP", dp.values(), want_dp, rtol));
    for (std::size_t k = 0; k < grad_anchors.size(); ++k) grad_anchors[k] += da.get(k);
  }
  EXPECT_TRUE(npt::all_close("sum of the blocks' dL/dA", grad_anchors, expected.grad_anchors, rtol));
  EXPECT_TRUE(npt::all_close("sum of the blocks' dL/dtau", {grad_temperature}, {double(expected.grad_temperature)},
                             rtol));
}

INSTANTIATE_TEST_SUITE_P(Cpu, BlockColumns, ::testing::ValuesIn(block_cases()),
                         [](const ::testing::TestParamInfo<BlockCase>& case_info) { return case_info.param.name; });
INSTANTIATE_TEST_SUITE_P(Cuda, BlockColumns, ::testing::ValuesIn(cuda_block_cases()),
                         [](const ::testing::TestParamInfo<BlockCase>& case_info) { return case_info.param.name; });

// The row statistics, last block's row losses and every block's gradients
// (dS, dA, dP in order) of a problem cut at `cut`.
struct BlockResults {
  std::vector<double> stats, rows, grads;
};

#ifdef NPAIRS_TEST_HAVE_CUDART
// Device copies of the problem's arrays: a host pointer into one of them
// maps to the same offset in its copy.
struct DeviceInputs {
  explicit DeviceInputs(const npt::Inputs& in)
      : labels(in.labels), column_labels(in.column_labels), multilabels(in.multilabels),
        column_multilabels(in.column_multilabels), anchors(in.anchors), positives(in.positives),
        weights(in.sample_weight), grad_loss(in.grad_loss) {}
  bool ok() const {
    for (const npt::DeviceArray* d :
         {&labels, &column_labels, &multilabels, &column_multilabels, &anchors, &positives, &weights, &grad_loss}) {
      if (!d->ok()) return false;
    }
    return true;
  }
  static const void* mapped(const void* host, const npt::Array& array, const npt::DeviceArray& copy) {
    if (host == nullptr) return nullptr;
    return static_cast<const unsigned char*>(copy.data()) +
           (static_cast<const unsigned char*>(host) - static_cast<const unsigned char*>(array.data()));
  }
  npairs_problem map(const npt::Inputs& in, npairs_problem p) const {
    p.labels = mapped(p.labels, in.labels, labels);
    p.column_labels = mapped(p.column_labels, in.column_labels, column_labels);
    p.multilabels = mapped(p.multilabels, in.multilabels, multilabels);
    p.column_multilabels = mapped(p.column_multilabels, in.column_multilabels, column_multilabels);
    p.anchors = mapped(p.anchors, in.anchors, anchors);
    p.positives = mapped(p.positives, in.positives, positives);
    p.sample_weight = mapped(p.sample_weight, in.sample_weight, weights);
    return p;
  }
  npt::DeviceArray labels, column_labels, multilabels, column_multilabels, anchors, positives, weights, grad_loss;
};
#endif

// The blocks [0, cut) and [cut, M) on `backend`, with every array in device
// memory when `device_memory` (CUDA runtime linked), else in host memory.
void run_two_blocks(npairs_backend backend, bool device_memory, const npt::Inputs& in, int64_t cut,
                    BlockResults& out) {
  npt::Context ctx(backend);
  ASSERT_NPAIRS_OK(ctx.status());
  const npairs_options options = in.options();
  const npairs_dtype dtype = in.spec.dtype;
  npt::Array stats = empty_stats(in);
  npt::Array rows(dtype, static_cast<std::size_t>(in.R));
  // Host pointers as they are, or their device copies.
  std::function<npairs_problem(const npairs_problem&)> problem_of = [](const npairs_problem& p) { return p; };
  std::function<void*(npt::Array&)> buffer_of = [](npt::Array& a) -> void* { return a.data(); };
  std::function<bool(npt::Array&)> fetch = [](npt::Array&) { return true; };
  const void* grad_loss = in.grad_loss_ptr();
#ifdef NPAIRS_TEST_HAVE_CUDART
  std::unique_ptr<DeviceInputs> inputs;
  std::vector<std::pair<npt::Array*, std::unique_ptr<npt::DeviceArray>>> outputs;
  if (device_memory) {
    inputs = std::make_unique<DeviceInputs>(in);
    ASSERT_TRUE(inputs->ok()) << "cudaMalloc/cudaMemcpy failed";
    if (grad_loss) grad_loss = inputs->grad_loss.data();
    problem_of = [&](const npairs_problem& p) { return inputs->map(in, p); };
    buffer_of = [&](npt::Array& a) -> void* {
      outputs.emplace_back(&a, std::make_unique<npt::DeviceArray>(a));
      return outputs.back().second->ok() ? outputs.back().second->data() : nullptr;
    };
    fetch = [&](npt::Array& a) {
      // The latest copy of `a`: an earlier array at the same address is gone.
      for (auto it = outputs.rbegin(); it != outputs.rend(); ++it) {
        if (it->first == &a) return it->second->download(a);
      }
      return false;
    };
  }
#else
  if (device_memory) FAIL() << "device-memory case without the CUDA runtime";
#endif
  void* stats_buffer = buffer_of(stats);
  void* rows_buffer = buffer_of(rows);
  ASSERT_NE(stats_buffer, nullptr);
  ASSERT_NE(rows_buffer, nullptr);
  for (int64_t begin : {int64_t(0), cut}) {
    const npairs_problem block = problem_of(block_problem(in, begin, begin == 0 ? cut : in.M));
    ASSERT_NPAIRS_OK(
        npairs_block_stats(ctx.get(), &options, &block, stats_buffer, begin == 0 ? nullptr : rows_buffer));
  }
  for (int64_t begin : {int64_t(0), cut}) {
    const int64_t end = begin == 0 ? cut : in.M;
    const npairs_problem block = problem_of(block_problem(in, begin, end));
    npt::Array ds(dtype, static_cast<std::size_t>(in.R * (end - begin)));
    npt::Array da(dtype, static_cast<std::size_t>(in.R * in.D));
    npt::Array dp(dtype, static_cast<std::size_t>((end - begin) * in.D));
    npairs_gradients g;
    npairs_gradients_init(&g);
    g.similarity = buffer_of(ds);
    g.anchors = buffer_of(da);
    g.positives = buffer_of(dp);
    ASSERT_NPAIRS_OK(npairs_block_gradients(ctx.get(), &options, &block, stats_buffer, grad_loss, &g));
    for (npt::Array* a : {&ds, &da, &dp}) {
      ASSERT_TRUE(fetch(*a)) << "cudaMemcpy failed";
      const std::vector<double> v = a->values();
      out.grads.insert(out.grads.end(), v.begin(), v.end());
    }
  }
  ASSERT_TRUE(fetch(stats) && fetch(rows)) << "cudaMemcpy failed";
  out.stats = stats.values();
  out.rows = rows.values();
}

// The statistics, row losses and gradients of the same blocks on a CUDA
// context, from host and from device memory, agree with a CPU context's to
// the dtype's tolerance.
TEST(CudaBlockColumns, AgreeWithTheCpuBackend) {
  NPT_REQUIRE_CUDA();
  NPT_REQUIRE_CUDART();
  for (npairs_dtype dtype : {NPAIRS_F64, NPAIRS_F32}) {
    for (bool multilabel : {false, true}) {
      const npt::Inputs in =
          npt::make_inputs(spec_of(dtype, multilabel, NPAIRS_REDUCTION_SUM_OVER_BATCH_SIZE, true, true, 0.6, 11));
      const double rtol = npt::default_rtol(dtype);
      BlockResults cpu, cuda_host, cuda_device;
      ASSERT_NO_FATAL_FAILURE(run_two_blocks(NPAIRS_BACKEND_CPU, false, in, 6, cpu));
      ASSERT_NO_FATAL_FAILURE(run_two_blocks(NPAIRS_BACKEND_CUDA, false, in, 6, cuda_host));
      ASSERT_NO_FATAL_FAILURE(run_two_blocks(NPAIRS_BACKEND_CUDA, true, in, 6, cuda_device));
      for (const auto& [where, got] : {std::pair<const char*, const BlockResults*>{"host", &cuda_host},
                                       std::pair<const char*, const BlockResults*>{"device", &cuda_device}}) {
        const std::string what = std::string(npt::dtype_name(dtype)) + (multilabel ? " multi-labels " : " labels ") +
                                 where + " memory";
        EXPECT_TRUE(npt::all_close(what + " row_stats", got->stats, cpu.stats, rtol, 1.0));
        EXPECT_TRUE(npt::all_close(what + " row losses", got->rows, cpu.rows, rtol, 1.0));
        EXPECT_TRUE(npt::all_close(what + " gradients", got->grads, cpu.grads, rtol, 1.0));
      }
    }
  }
}

// CUDA contexts keep 16-bit running statistics in float32, which the
// caller's row_stats cannot hold: UNSUPPORTED, outputs untouched.
TEST(CudaBlockColumns, SixteenBitDtypesAreUnsupported) {
  NPT_REQUIRE_CUDA();
  npt::Context ctx(NPAIRS_BACKEND_CUDA);
  ASSERT_NPAIRS_OK(ctx.status());
  for (npairs_dtype dtype : {NPAIRS_F16, NPAIRS_BF16}) {
    const npt::Inputs in = npt::make_inputs(spec_of(dtype, false, NPAIRS_REDUCTION_SUM, false, false, 1.0, 5));
    const npairs_options options = in.options();
    const npairs_problem problem = in.problem();
    npt::Array stats = empty_stats(in);
    const std::vector<unsigned char> before = stats.bytes();
    EXPECT_EQ(npairs_block_stats(ctx.get(), &options, &problem, stats.data(), nullptr), NPAIRS_ERROR_UNSUPPORTED);
    EXPECT_EQ(stats.bytes(), before);
  }
}

// The blocks' result does not depend on how the columns are cut, to rounding; the same cut is bitwise the same.
TEST(BlockColumns, SameCutIsBitwiseReproducible) {
  const npt::Inputs in = npt::make_inputs(spec_of(NPAIRS_F32, true, NPAIRS_REDUCTION_SUM, true, false, 0.7, 7));
  npt::Context ctx;
  ASSERT_NPAIRS_OK(ctx.status());
  const npairs_options options = in.options();
  std::vector<std::vector<unsigned char>> runs;
  for (int run = 0; run < 2; ++run) {
    npt::Array stats = empty_stats(in);
    for (int64_t begin : {0, 5}) {
      const npairs_problem block = block_problem(in, begin, begin == 0 ? 5 : in.M);
      ASSERT_NPAIRS_OK(npairs_block_stats(ctx.get(), &options, &block, stats.data(), nullptr));
    }
    runs.push_back(stats.bytes());
  }
  EXPECT_EQ(runs[0], runs[1]);
}

// On each backend (CUDA: where a device is present).
class BlockErrors : public ::testing::TestWithParam<npairs_backend> {
 protected:
  void SetUp() override {
    if (GetParam() == NPAIRS_BACKEND_CUDA) NPT_REQUIRE_CUDA();
    ASSERT_NPAIRS_OK(ctx.status());
    in = npt::make_inputs(spec_of(NPAIRS_F64, false, NPAIRS_REDUCTION_SUM, false, false, 1.0, 3));
    stats = empty_stats(in);
    rows = npt::Array(NPAIRS_F64, static_cast<std::size_t>(in.R));
    dp = npt::Array(NPAIRS_F64, static_cast<std::size_t>(in.M * in.D));
    npairs_gradients_init(&grads);
    grads.positives = dp.data();
  }
  // The statistics over every column, computed by the library.
  void merge_all() {
    const npairs_options options = in.options();
    const npairs_problem problem = in.problem();
    ASSERT_NPAIRS_OK(npairs_block_stats(ctx.get(), &options, &problem, stats.data(), nullptr));
  }
  npt::Context ctx{GetParam()};
  npt::Inputs in;
  npt::Array stats, rows, dp;
  npairs_gradients grads;
};

TEST_P(BlockErrors, RegLambdaIsInvalid) {
  npairs_options options = in.options();
  options.reg_lambda = 0.01;
  const npairs_problem problem = in.problem();
  EXPECT_TRUE(npt::fails_leaving_untouched(
      [&] { return npairs_block_stats(ctx.get(), &options, &problem, stats.data(), rows.data()); }, {&stats, &rows},
      NPAIRS_ERROR_INVALID_ARGUMENT));
  EXPECT_NE(std::string(npairs_last_error()).find("options.reg_lambda"), std::string::npos);
  merge_all();
  EXPECT_TRUE(npt::fails_leaving_untouched(
      [&] { return npairs_block_gradients(ctx.get(), &options, &problem, stats.data(), nullptr, &grads); }, {&dp},
      NPAIRS_ERROR_INVALID_ARGUMENT));
}

TEST_P(BlockErrors, NullStatsAndNoGradientsAreInvalid) {
  const npairs_options options = in.options();
  const npairs_problem problem = in.problem();
  EXPECT_TRUE(npt::fails_leaving_untouched(
      [&] { return npairs_block_stats(ctx.get(), &options, &problem, nullptr, rows.data()); }, {&rows},
      NPAIRS_ERROR_INVALID_ARGUMENT));
  EXPECT_STREQ(npairs_last_error(), "row_stats is NULL");
  npairs_gradients none;
  npairs_gradients_init(&none);
  EXPECT_TRUE(npt::fails_leaving_untouched(
      [&] { return npairs_block_gradients(ctx.get(), &options, &problem, stats.data(), nullptr, &none); }, {&stats},
      NPAIRS_ERROR_INVALID_ARGUMENT));
  EXPECT_STREQ(npairs_last_error(), "grads asks for no gradient");
  EXPECT_TRUE(npt::fails_leaving_untouched(
      [&] { return npairs_block_gradients(ctx.get(), &options, &problem, stats.data(), nullptr, nullptr); }, {&stats},
      NPAIRS_ERROR_INVALID_ARGUMENT));
}

// A block need not hold a row's positive; the loss needs one in some merged block.
TEST_P(BlockErrors, RowWithoutPositiveInTheMergedBlocks) {
  const npairs_options options = in.options();
  npairs_problem block = in.problem();
  std::vector<int64_t> other(static_cast<std::size_t>(in.M), 1000);  // a class no row has
  block.column_labels = other.data();
  block.label_dtype = NPAIRS_I64;
  std::vector<int64_t> labels = in.labels.int_values();
  block.labels = labels.data();
  ASSERT_NPAIRS_OK(npairs_block_stats(ctx.get(), &options, &block, stats.data(), nullptr));
  EXPECT_TRUE(npt::fails_leaving_untouched(
      [&] { return npairs_block_stats(ctx.get(), &options, &block, stats.data(), rows.data()); }, {&stats, &rows},
      NPAIRS_ERROR_INVALID_VALUE));
  EXPECT_EQ(std::string(npairs_last_error()), "problem.labels row 0 has no positive column in any block merged so far");
  EXPECT_TRUE(npt::fails_leaving_untouched(
      [&] { return npairs_block_gradients(ctx.get(), &options, &block, stats.data(), nullptr, &grads); }, {&dp},
      NPAIRS_ERROR_INVALID_VALUE));
  EXPECT_NE(std::string(npairs_last_error()).find("row_stats row 0 holds no positive"), std::string::npos);
}

TEST_P(BlockErrors, NegativeMultilabelIsInvalid) {
  in = npt::make_inputs(spec_of(NPAIRS_F64, true, NPAIRS_REDUCTION_SUM, false, false, 1.0, 5));
  in.column_multilabels.set(2 * in.K + 1, -1.0);
  stats = empty_stats(in);
  const npairs_options options = in.options();
  const npairs_problem problem = in.problem();
  EXPECT_TRUE(npt::fails_leaving_untouched(
      [&] { return npairs_block_stats(ctx.get(), &options, &problem, stats.data(), nullptr); }, {&stats},
      NPAIRS_ERROR_INVALID_VALUE));
  EXPECT_EQ(std::string(npairs_last_error()), "problem.column_multilabels row 2 has a negative or NaN entry");
}

INSTANTIATE_TEST_SUITE_P(Backends, BlockErrors, ::testing::Values(NPAIRS_BACKEND_CPU, NPAIRS_BACKEND_CUDA),
                         [](const ::testing::TestParamInfo<npairs_backend>& backend) {
                           return backend.param == NPAIRS_BACKEND_CPU ? "Cpu" : "Cuda";
                         });

}  // namespace
