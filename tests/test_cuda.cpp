// The CUDA backend against the float64 reference (and the CPU backend where
// it computes the dtype), on random problems across the feature combinations
// and every dtype, with host-memory inputs (staged) and device-memory inputs
// (asynchronous: synchronize before reading), and on row lengths around each
// of the row kernels' limits (cuda/row_kernel_plan.hpp), aligned or not.
// Every output is poisoned first. All tests skip without a GPU.
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <string>
#include <thread>
#include <utility>

#include "cuda_util.hpp"

namespace {

struct CudaCase {
  npt::Spec spec;
  bool device_memory = false;
  bool want_similarity = true, want_anchors = false, want_positives = false;
  bool in_place = false, loss_null = false;
  bool misaligned = false;  // similarity and dS one element past 16-byte alignment (device memory)
  std::string name;
};

int pick(int index, int axis, int n) {
  const uint64_t h = npt::splitmix64(static_cast<uint64_t>(index) * 2000003u + static_cast<uint64_t>(axis) * 104729u);
  return static_cast<int>(h % static_cast<uint64_t>(n));
}

// Feature combinations on small odd shapes.
void add_feature_cases(std::vector<CudaCase>& cases) {
  int i = 0;
  for (npairs_dtype dtype : {NPAIRS_F32, NPAIRS_F64, NPAIRS_F16, NPAIRS_BF16}) {
    for (bool multilabel : {false, true}) {
      for (bool emb : {false, true}) {
        for (npairs_reduction red :
             {NPAIRS_REDUCTION_NONE, NPAIRS_REDUCTION_SUM, NPAIRS_REDUCTION_SUM_OVER_BATCH_SIZE}) {
          for (bool device : {false, true}) {
            CudaCase c;
            npt::Spec& s = c.spec;
            s.seed = 5000 + static_cast<uint64_t>(i);
            s.dtype = dtype;
            s.multilabel = multilabel;
            s.label_dtype = pick(i, 0, 2) ? NPAIRS_I64 : NPAIRS_I32;
            s.embeddings = emb;
            s.reduction = red;
            c.device_memory = device;
            s.column_targets = pick(i, 1, 2) == 1;
            if (pick(i, 2, 4) == 0) {
              s.rows = 257;
              s.cols = 263;
              s.dim = 65;
            } else {
              const int64_t rows[] = {1, 3, 7, 13, 31}, cols[] = {1, 5, 9, 40}, dims[] = {1, 2, 5, 16};
              s.rows = rows[pick(i, 3, 5)];
              s.cols = cols[pick(i, 4, 4)];
              s.dim = dims[pick(i, 5, 4)];
            }
            s.classes = multilabel ? 5 : (pick(i, 6, 2) ? 3 : std::max(s.rows, s.cols));
            s.big_labels = !multilabel && pick(i, 7, 3) == 0;
            s.weights = pick(i, 8, 2) == 1;
            s.grad_loss = pick(i, 9, 2) == 1;
            s.temperature = pick(i, 10, 2) ? 0.37 : 1.0;
            s.reg_lambda = (emb && red != NPAIRS_REDUCTION_NONE && pick(i, 11, 2)) ? 0.25 : 0.0;
            c.want_anchors = c.want_positives = emb;
            c.want_similarity = !emb || pick(i, 12, 2) == 1;
            c.in_place = !emb && pick(i, 13, 2) == 1;
            c.loss_null = pick(i, 14, 4) == 0;
            char buf[160];
            std::snprintf(buf, sizeof buf, "c%02d_%s_%s_%s_%s_R%" PRId64 "x%" PRId64 "_%s%s%s%s", i,
                          npt::dtype_name(dtype), multilabel ? "multi" : npt::dtype_name(s.label_dtype),
                          emb ? "emb" : "sim", npt::reduction_name(red), s.rows, s.column_targets ? s.cols : s.rows,
                          device ? "device" : "host", c.in_place ? "_inplace" : "", c.loss_null ? "_noloss" : "",
                          s.reg_lambda > 0 ? "_l2" : "");
            c.name = buf;
            cases.push_back(c);
            ++i;
          }
        }
      }
    }
  }
}

// Three rows of each length around the limits of the warp, block and staged
// kernels for 2-, 4- and 8-byte elements (shared memory holds up to ~58K
// floats on an H200; longer rows are read twice), with lengths that are not
// whole 16-byte vectors; each length through staged host memory (aligned:
// 16-byte loads where the length allows) and through device pointers one
// element past alignment.
void add_row_length_cases(std::vector<CudaCase>& cases) {
  int i = 0;
  for (npairs_dtype dtype : {NPAIRS_F32, NPAIRS_F64, NPAIRS_F16, NPAIRS_BF16}) {
    for (int64_t cols : {int64_t(1), int64_t(7), int64_t(255), int64_t(256), int64_t(257), int64_t(512),
                         int64_t(513), int64_t(1025), int64_t(2048), int64_t(4099), int64_t(8192), int64_t(8193),
                         int64_t(16384), int64_t(16387), int64_t(40000), int64_t(70001), int64_t(131072)}) {
      for (bool misaligned : {false, true}) {
        CudaCase c;
        npt::Spec& s = c.spec;
        s.seed = 9000 + static_cast<uint64_t>(i);
        s.dtype = dtype;
        s.rows = 3;
        s.cols = cols;
        s.column_targets = true;
        s.classes = std::min<int64_t>(cols, 4);
        s.label_dtype = NPAIRS_I32;
        s.weights = true;
        s.grad_loss = true;
        s.reduction = NPAIRS_REDUCTION_NONE;
        s.temperature = 0.37;
        c.device_memory = misaligned;
        c.misaligned = misaligned;
        c.in_place = pick(i, 0, 2) == 1;
        char buf[96];
        std::snprintf(buf, sizeof buf, "row%03d_%s_cols%" PRId64 "_%s%s", i, npt::dtype_name(dtype), cols,
                      misaligned ? "device_misaligned" : "host", c.in_place ? "_inplace" : "");
        c.name = buf;
        cases.push_back(c);
        ++i;
      }
    }
  }
}

// More rows than the device holds blocks at once (an H200 has 132
// multiprocessors), so that each kernel's grid-stride loop goes round again
// and reuses its shared memory: warp, block and staged kernels, with
// multi-labels and the scalar reductions.
void add_many_row_cases(std::vector<CudaCase>& cases) {
  struct Shape {
    int64_t rows, cols;
  };
  int i = 0;
  for (npairs_dtype dtype : {NPAIRS_F32, NPAIRS_BF16}) {
    for (Shape shape : {Shape{20000, 64}, Shape{4500, 2048}, Shape{300, 16400}}) {
      CudaCase c;
      npt::Spec& s = c.spec;
      s.seed = 9500 + static_cast<uint64_t>(i);
      s.dtype = dtype;
      s.rows = shape.rows;
      s.cols = shape.cols;
      s.column_targets = true;
      s.multilabel = i % 2 == 1;
      s.classes = s.multilabel ? 5 : 7;
      s.label_dtype = NPAIRS_I64;
      s.weights = true;
      s.reduction = i % 3 == 0 ? NPAIRS_REDUCTION_SUM : NPAIRS_REDUCTION_SUM_OVER_BATCH_SIZE;
      s.temperature = 0.5;
      c.device_memory = true;
      char buf[96];
      std::snprintf(buf, sizeof buf, "grid%d_%s_%s_R%" PRId64 "x%" PRId64 "_device", i, npt::dtype_name(dtype),
                    s.multilabel ? "multi" : "i64", shape.rows, shape.cols);
      c.name = buf;
      cases.push_back(c);
      ++i;
    }
  }
}

std::vector<CudaCase> make_cases() {
  std::vector<CudaCase> cases;
  add_feature_cases(cases);
  add_row_length_cases(cases);
  add_many_row_cases(cases);
  return cases;
}

// The same elements, bit for bit (poison included), in an array whose data
// starts `guard` elements into its poisoned buffer: an odd guard moves it off
// 16-byte alignment.
npt::Array with_guard(const npt::Array& a, std::size_t guard) {
  npt::Array moved(a.dtype(), a.size(), guard);
  moved.poison();
  if (a.size() > 0) std::memcpy(moved.data(), a.data(), a.size() * npt::dtype_size(a.dtype()));
  return moved;
}

// Prepares outputs (poisoned; for in-place dS a copy of S with poisoned
// guards), dS misaligned when the case says so.
npt::Outputs make_outputs(const CudaCase& c, const npt::Inputs& in) {
  npt::Outputs out(in, !c.loss_null, c.want_similarity || c.in_place, c.want_anchors, c.want_positives);
  const std::size_t guard = npt::Array::kGuard + (c.misaligned ? 1 : 0);
  if (c.in_place || c.misaligned) out.grad_similarity = with_guard(c.in_place ? in.similarity : out.grad_similarity, guard);
  return out;
}

// Runs the case on `ctx`, with host pointers or device copies of every array.
void run_on_gpu(npairs_context ctx, const CudaCase& c, const npt::Inputs& in, npt::Outputs& out) {
  npairs_problem p = in.problem();
  const npairs_options o = in.options();
  if (!c.device_memory) {
    if (c.in_place) p.similarity = out.grad_similarity.data();
    npairs_gradients g = out.grads();
    ASSERT_NPAIRS_OK(npairs_loss(ctx, &o, &p, in.grad_loss_ptr(), out.loss_ptr(), out.any_grads() ? &g : nullptr));
    return;
  }
#ifdef NPAIRS_TEST_HAVE_CUDART
  npt::run_on_device_copies(ctx, in, out, c.in_place, c.loss_null);
#else
  (void)ctx;
  FAIL() << "device-memory case without the CUDA runtime";
#endif
}

class CudaBackend : public ::testing::TestWithParam<CudaCase> {};

TEST_P(CudaBackend, MatchesReference) {
  NPT_REQUIRE_CUDA();
  const CudaCase& c = GetParam();
  if (c.device_memory) NPT_REQUIRE_CUDART();
  npt::Inputs in = npt::make_inputs(c.spec);
  if (c.misaligned) in.similarity = with_guard(in.similarity, npt::Array::kGuard + 1);
  const double rtol = npt::default_rtol(c.spec.dtype);

  npt::Context gpu(NPAIRS_BACKEND_CUDA, 0);
  ASSERT_NPAIRS_OK(gpu.status());
  npt::Outputs out = make_outputs(c, in);
  run_on_gpu(gpu.get(), c, in, out);
  if (HasFatalFailure()) return;
  npt::expect_matches_reference(in, out, ref::compute<double>(in.reference()), rtol);
  if (c.loss_null) {
    EXPECT_EQ(out.loss.first_unwritten(), 0) << "loss written although NULL";
  }

  // The CPU backend computes float32 and float64 only.
  if (c.spec.dtype != NPAIRS_F32 && c.spec.dtype != NPAIRS_F64) return;
  npt::Context cpu(NPAIRS_BACKEND_CPU);
  ASSERT_NPAIRS_OK(cpu.status());
  npt::Outputs expected(in, true, true, c.want_anchors, c.want_positives);
  ASSERT_NPAIRS_OK(npt::run_loss(cpu.get(), in, expected));
  if (out.want_loss) {
    EXPECT_TRUE(npt::all_close("loss vs CPU", out.loss.values(), expected.loss.values(), rtol));
  }
  if (out.want_similarity) {
    EXPECT_TRUE(npt::all_close("grads.similarity vs CPU", out.grad_similarity.values(),
                               expected.grad_similarity.values(), rtol));
  }
  if (out.want_anchors) {
    EXPECT_TRUE(npt::all_close("grads.anchors vs CPU", out.grad_anchors.values(), expected.grad_anchors.values(), rtol));
  }
  if (out.want_positives) {
    EXPECT_TRUE(
        npt::all_close("grads.positives vs CPU", out.grad_positives.values(), expected.grad_positives.values(), rtol));
  }
}

INSTANTIATE_TEST_SUITE_P(Cases, CudaBackend, ::testing::ValuesIn(make_cases()),
                         [](const ::testing::TestParamInfo<CudaCase>& param_info) { return param_info.param.name; });

npt::Spec medium_spec(npairs_dtype dtype) { return npt::all_features_spec(dtype, 20, 99); }

TEST(Cuda, ContextBasics) {
  NPT_REQUIRE_CUDA();
  npt::Context gpu(NPAIRS_BACKEND_CUDA, 0);
  ASSERT_NPAIRS_OK(gpu.status());
  npairs_backend b = -1;
  ASSERT_NPAIRS_OK(npairs_context_backend(gpu.get(), &b));
  EXPECT_EQ(b, NPAIRS_BACKEND_CUDA);
  EXPECT_NPAIRS_OK(npairs_context_set_threads(gpu.get(), 3));  // ignored by CUDA
  EXPECT_NPAIRS_OK(npairs_context_set_stream(gpu.get(), nullptr));
  EXPECT_NPAIRS_OK(npairs_context_synchronize(gpu.get()));
  npt::Context autoc(NPAIRS_BACKEND_AUTO);
  ASSERT_NPAIRS_OK(autoc.status());
  ASSERT_NPAIRS_OK(npairs_context_backend(autoc.get(), &b));
  EXPECT_EQ(b, NPAIRS_BACKEND_CUDA);
  npairs_context sentinel = reinterpret_cast<npairs_context>(static_cast<uintptr_t>(0x1234)), c = sentinel;
  EXPECT_EQ(npairs_context_create(NPAIRS_BACKEND_CUDA, 1 << 20, &c), NPAIRS_ERROR_INVALID_ARGUMENT);
  EXPECT_EQ(c, sentinel);
  EXPECT_NE(std::string(npairs_last_error()).find("device"), std::string::npos) << npairs_last_error();
  EXPECT_EQ(npairs_context_create(NPAIRS_BACKEND_CUDA, -1, &c), NPAIRS_ERROR_INVALID_ARGUMENT);
}

TEST(Cuda, SameCallTwiceIsBitwiseIdentical) {
  NPT_REQUIRE_CUDA();
  npt::Context gpu(NPAIRS_BACKEND_CUDA, 0);
  ASSERT_NPAIRS_OK(gpu.status());
  for (npairs_dtype dt : {NPAIRS_F32, NPAIRS_F64, NPAIRS_F16, NPAIRS_BF16}) {
    SCOPED_TRACE(npt::dtype_name(dt));
    const npt::Inputs in = npt::make_inputs(medium_spec(dt));
    npt::Outputs a(in, true, true, true, true), b(in, true, true, true, true);
    ASSERT_NPAIRS_OK(npt::run_loss(gpu.get(), in, a));
    ASSERT_NPAIRS_OK(npt::run_loss(gpu.get(), in, b));
    EXPECT_TRUE(a.loss.bytes() == b.loss.bytes());
    EXPECT_TRUE(a.grad_similarity.bytes() == b.grad_similarity.bytes());
    EXPECT_TRUE(a.grad_anchors.bytes() == b.grad_anchors.bytes());
    EXPECT_TRUE(a.grad_positives.bytes() == b.grad_positives.bytes());
  }
}

// TF32 may be used for float32 GEMMs when allowed: ~1e-3 relative.
TEST(Cuda, AllowTf32StaysClose) {
  NPT_REQUIRE_CUDA();
  npt::Context gpu(NPAIRS_BACKEND_CUDA, 0);
  ASSERT_NPAIRS_OK(gpu.status());
  const npt::Inputs in = npt::make_inputs(medium_spec(NPAIRS_F32));
  npt::Outputs out(in, true, true, true, true);
  const npairs_problem p = in.problem();
  npairs_options o = in.options();
  o.flags = NPAIRS_FLAG_ALLOW_TF32;
  npairs_gradients g = out.grads();
  ASSERT_NPAIRS_OK(npairs_loss(gpu.get(), &o, &p, in.grad_loss_ptr(), out.loss.data(), &g));
  const auto expected = ref::compute<double>(in.reference());
  EXPECT_TRUE(npt::all_close("loss", out.loss.values(), expected.loss, 5e-3));
  EXPECT_TRUE(npt::all_close("grads.anchors", out.grad_anchors.values(), npt::to_double(expected.grad_anchors), 5e-3));
}

// Invalid target data is found on the device before any output is written.
TEST(Cuda, RowWithoutPositiveLeavesOutputsUntouched) {
  NPT_REQUIRE_CUDA();
  npt::Context gpu(NPAIRS_BACKEND_CUDA, 0);
  ASSERT_NPAIRS_OK(gpu.status());
  npt::Spec s;
  s.dtype = NPAIRS_F32;
  s.rows = 5;
  s.cols = 4;
  s.column_targets = true;
  s.classes = 2;
  s.seed = 7;
  npt::Inputs in = npt::make_inputs(s);
  in.labels.set_int(3, 1000);  // in no column
  in.labels.set_int(4, 1001);
  npt::Outputs out(in, true, true, false, false);
  const auto before = std::make_pair(out.loss.bytes(), out.grad_similarity.bytes());
  EXPECT_EQ(npt::run_loss(gpu.get(), in, out), NPAIRS_ERROR_INVALID_VALUE);
  EXPECT_NE(std::string(npairs_last_error()).find("row 3"), std::string::npos) << npairs_last_error();
  EXPECT_TRUE(before == std::make_pair(out.loss.bytes(), out.grad_similarity.bytes()));
#ifdef NPAIRS_TEST_HAVE_CUDART
  npt::DeviceArray labels(in.labels), cols(in.column_labels), sim(in.similarity), loss(out.loss),
      dS(out.grad_similarity);
  npairs_problem p = in.problem();
  p.labels = labels.data();
  p.column_labels = cols.data();
  p.similarity = sim.data();
  npairs_gradients g;
  npairs_gradients_init(&g);
  g.similarity = dS.data();
  EXPECT_EQ(npairs_loss(gpu.get(), nullptr, &p, nullptr, loss.data(), &g), NPAIRS_ERROR_INVALID_VALUE);
  EXPECT_NE(std::string(npairs_last_error()).find("row 3"), std::string::npos) << npairs_last_error();
  ASSERT_NPAIRS_OK(npairs_context_synchronize(gpu.get()));
  ASSERT_TRUE(loss.download(out.loss) && dS.download(out.grad_similarity));
  EXPECT_TRUE(before == std::make_pair(out.loss.bytes(), out.grad_similarity.bytes()));
#endif
}

// R = 0 with column multi-labels: they are still checked, as on the CPU.
TEST(Cuda, NoRowsStillChecksColumnMultilabels) {
  NPT_REQUIRE_CUDA();
  const double dummy[2] = {0, 0};
  const npairs_problem p = npt::no_rows_negative_column_problem(dummy, npt::kNoRowsColumnMultilabels);
  npt::Array loss(NPAIRS_F64, 1);
  loss.poison();
  for (npairs_backend backend : {NPAIRS_BACKEND_CPU, NPAIRS_BACKEND_CUDA}) {
    npt::Context ctx(backend, 0);
    ASSERT_NPAIRS_OK(ctx.status());
    EXPECT_EQ(npairs_loss(ctx.get(), nullptr, &p, nullptr, loss.data(), nullptr), NPAIRS_ERROR_INVALID_VALUE)
        << "backend " << backend;
    EXPECT_NE(std::string(npairs_last_error()).find("problem.column_multilabels row 1"), std::string::npos)
        << npairs_last_error();
    EXPECT_TRUE(loss.is_poison(0));
  }
}

// Device allocation failure: R = M = 2^19 float32 embeddings (a few MB of
// host inputs) need a 1 TiB logits workspace, more than any GPU has. The call
// fails with OUT_OF_MEMORY, a message and untouched outputs, and the context
// then computes a normal problem.
TEST(Cuda, DeviceAllocationFailureIsOutOfMemory) {
  NPT_REQUIRE_CUDA();
  npt::Context gpu(NPAIRS_BACKEND_CUDA, 0);
  ASSERT_NPAIRS_OK(gpu.status());
  npt::Spec huge;
  huge.dtype = NPAIRS_F32;
  huge.embeddings = true;
  huge.rows = int64_t(1) << 19;
  huge.dim = 1;
  const npt::Inputs large = npt::make_inputs(huge);
  npt::Outputs out(large, true, false, true, false);
  EXPECT_TRUE(npt::fails_leaving_outputs_untouched(gpu.get(), large, out, NPAIRS_ERROR_OUT_OF_MEMORY));

  const npt::Inputs in = npt::make_inputs(medium_spec(NPAIRS_F64));
  npt::Outputs after(in, true, true, true, true);
  ASSERT_NPAIRS_OK(npt::run_loss(gpu.get(), in, after));
  npt::expect_matches_reference(in, after, ref::compute<double>(in.reference()), 1e-12);
}

#ifdef NPAIRS_TEST_HAVE_CUDART
// Work queued on a user stream; synchronize through the context.
TEST(Cuda, UserStream) {
  NPT_REQUIRE_CUDA();
  npt::Context gpu(NPAIRS_BACKEND_CUDA, 0);
  ASSERT_NPAIRS_OK(gpu.status());
  cudaStream_t stream = nullptr;
  NPT_ASSERT_CUDA(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  ASSERT_NPAIRS_OK(npairs_context_set_stream(gpu.get(), stream));
  const npt::Inputs in = npt::make_inputs(medium_spec(NPAIRS_F64));
  npt::Outputs out(in, true, true, true, true);
  {
    npt::DeviceArray cl(in.column_labels), l(in.labels), a(in.anchors), pp(in.positives), w(in.sample_weight),
        gl(in.grad_loss), loss(out.loss), dS(out.grad_similarity), dA(out.grad_anchors), dP(out.grad_positives);
    npairs_problem p = in.problem();
    p.labels = l.data();
    p.column_labels = cl.data();
    p.anchors = a.data();
    p.positives = pp.data();
    p.sample_weight = w.data();
    npairs_gradients g;
    npairs_gradients_init(&g);
    g.similarity = dS.data();
    g.anchors = dA.data();
    g.positives = dP.data();
    const npairs_options o = in.options();
    ASSERT_NPAIRS_OK(npairs_loss(gpu.get(), &o, &p, gl.data(), loss.data(), &g));
    ASSERT_NPAIRS_OK(npairs_context_synchronize(gpu.get()));
    ASSERT_TRUE(loss.download(out.loss) && dS.download(out.grad_similarity) && dA.download(out.grad_anchors) &&
                dP.download(out.grad_positives));
  }
  npt::expect_matches_reference(in, out, ref::compute<double>(in.reference()), 1e-12);
  ASSERT_NPAIRS_OK(npairs_context_set_stream(gpu.get(), nullptr));
  NPT_ASSERT_CUDA(cudaStreamDestroy(stream));
}
#endif

}  // namespace

#ifdef NPAIRS_TEST_HAVE_CUDART
namespace {

// A similarity problem (labels, column labels when the spec has them) with
// its inputs and its loss and dS in device memory.
struct DeviceSimilarityCall {
  const npt::Inputs& in;
  npt::Outputs& out;
  npt::DeviceArray labels, column_labels, similarity, loss, grad;
  DeviceSimilarityCall(const npt::Inputs& inputs, npt::Outputs& outputs)
      : in(inputs), out(outputs), labels(in.labels), column_labels(in.column_labels),
        similarity(in.similarity), loss(out.loss), grad(out.grad_similarity) {}
  bool ok() const { return labels.ok() && column_labels.ok() && similarity.ok() && loss.ok() && grad.ok(); }
  npairs_problem problem() const {
    npairs_problem p = in.problem();
    p.labels = labels.data();
    p.column_labels = column_labels.data();
    p.similarity = similarity.data();
    return p;
  }
  npairs_gradients grads() const {
    npairs_gradients g;
    npairs_gradients_init(&g);
    g.similarity = grad.data();
    return g;
  }
  npairs_options options(uint32_t flags) const {
    npairs_options o = in.options();
    o.flags |= flags;
    return o;
  }
  npairs_status run(npairs_context ctx, uint32_t flags = 0) {
    const npairs_problem p = problem();
    npairs_gradients g = grads();
    const npairs_options o = options(flags);
    return npairs_loss(ctx, &o, &p, nullptr, loss.data(), &g);
  }
  // Reserves the workspace the call needs.
  npairs_status reserve(npairs_context ctx, uint32_t flags) const {
    const npairs_problem p = problem();
    const npairs_gradients g = grads();
    const npairs_options o = options(flags);
    std::size_t bytes = 0;
    const npairs_status status = npairs_workspace_size(ctx, &o, &p, &g, &bytes);
    return status != NPAIRS_OK ? status : npairs_context_reserve(ctx, bytes);
  }
  // New inputs of the same shapes into the same device memory.
  bool upload(const npt::Inputs& next) {
    return labels.upload(next.labels) && column_labels.upload(next.column_labels) &&
           similarity.upload(next.similarity);
  }
  bool download() { return loss.download(out.loss) && grad.download(out.grad_similarity); }
};

npt::Spec similarity_spec(npairs_dtype dtype, bool column_targets) {
  npt::Spec s;
  s.dtype = dtype;
  s.rows = 37;
  s.cols = 41;
  s.column_targets = column_targets;
  s.classes = 5;
  s.label_dtype = NPAIRS_I32;
  s.reduction = NPAIRS_REDUCTION_NONE;
  s.temperature = 0.7;
  s.seed = 1010;
  return s;
}

// A CUDA error the caller left pending (a failed cudaMalloc of its own) is
// not this library's: calls succeed, and the caller still finds its error.
TEST(Cuda, PendingCallerErrorIsNotReported) {
  NPT_REQUIRE_CUDA();
  npt::Context gpu(NPAIRS_BACKEND_CUDA, 0);
  ASSERT_NPAIRS_OK(gpu.status());
  const npt::Inputs in = npt::make_inputs(similarity_spec(NPAIRS_F32, true));
  npt::Outputs out(in, true, true, false, false);
  DeviceSimilarityCall call(in, out);
  ASSERT_TRUE(call.ok());
  void* too_much = nullptr;
  ASSERT_EQ(cudaMalloc(&too_much, std::size_t(1) << 60), cudaErrorMemoryAllocation);
  ASSERT_NPAIRS_OK(call.run(gpu.get()));
  ASSERT_NPAIRS_OK(npairs_context_synchronize(gpu.get()));
  const npt::Inputs embeddings = npt::make_inputs(medium_spec(NPAIRS_F32));
  npt::Outputs host_out(embeddings, true, true, true, true);
  ASSERT_NPAIRS_OK(npt::run_loss(gpu.get(), embeddings, host_out));
  EXPECT_EQ(cudaGetLastError(), cudaErrorMemoryAllocation) << "the caller's error, left for the caller";
  ASSERT_TRUE(call.download());
  npt::expect_matches_reference(in, out, ref::compute<double>(in.reference()), 1e-5);
  npt::expect_matches_reference(embeddings, host_out, ref::compute<double>(embeddings.reference()), 1e-5);
}

// The usual order at the end: the caller destroys its stream, then the
// context. synchronize and destroy wait on the last call's event, not on the
// destroyed stream handle.
TEST(Cuda, StreamDestroyedBeforeTheContext) {
  NPT_REQUIRE_CUDA();
  npairs_context ctx = nullptr;
  ASSERT_NPAIRS_OK(npairs_context_create(NPAIRS_BACKEND_CUDA, 0, &ctx));
  cudaStream_t stream = nullptr;
  NPT_ASSERT_CUDA(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  ASSERT_NPAIRS_OK(npairs_context_set_stream(ctx, stream));
  const npt::Inputs in = npt::make_inputs(similarity_spec(NPAIRS_F64, true));
  npt::Outputs out(in, true, true, false, false);
  {
    DeviceSimilarityCall call(in, out);
    ASSERT_TRUE(call.ok());
    ASSERT_NPAIRS_OK(call.run(ctx));
    NPT_ASSERT_CUDA(cudaStreamSynchronize(stream));
    NPT_ASSERT_CUDA(cudaStreamDestroy(stream));
    EXPECT_NPAIRS_OK(npairs_context_synchronize(ctx));
    EXPECT_NPAIRS_OK(npairs_context_destroy(ctx));
    ASSERT_TRUE(call.download());
  }
  npt::expect_matches_reference(in, out, ref::compute<double>(in.reference()), 1e-12);
  EXPECT_EQ(cudaGetLastError(), cudaSuccess);
}

// cudaStreamPerThread names the calling thread's stream: a context used from
// one thread, then another (one at a time), orders the second call after the
// first, which wrote the buffer the second reads.
TEST(Cuda, PerThreadStreamAcrossThreads) {
  NPT_REQUIRE_CUDA();
  npt::Context gpu(NPAIRS_BACKEND_CUDA, 0);
  ASSERT_NPAIRS_OK(gpu.status());
  ASSERT_NPAIRS_OK(npairs_context_set_stream(gpu.get(), cudaStreamPerThread));
  const npt::Inputs in = npt::make_inputs(similarity_spec(NPAIRS_F32, true));
  npt::Outputs first(in, true, true, false, false), second(in, true, true, false, false);
  DeviceSimilarityCall a(in, first), b(in, second);
  ASSERT_TRUE(a.ok() && b.ok());
  for (int round = 0; round < 3; ++round) {
    npairs_status status_a = NPAIRS_ERROR_INTERNAL, status_b = NPAIRS_ERROR_INTERNAL;
    std::thread([&] { status_a = a.run(gpu.get()); }).join();
    std::thread([&] {
      status_b = b.run(gpu.get());
      if (status_b == NPAIRS_OK) status_b = npairs_context_synchronize(gpu.get());
    }).join();
    ASSERT_NPAIRS_OK(status_a);
    ASSERT_NPAIRS_OK(status_b);
  }
  ASSERT_NPAIRS_OK(npairs_context_synchronize(gpu.get()));
  ASSERT_TRUE(a.download() && b.download());
  const auto expected = ref::compute<double>(in.reference());
  npt::expect_matches_reference(in, first, expected, 1e-5);
  npt::expect_matches_reference(in, second, expected, 1e-5);
  ASSERT_NPAIRS_OK(npairs_context_set_stream(gpu.get(), nullptr));
}

// Managed memory is used in place and the call is synchronous, as for host
// memory: the host reads the results as soon as the call returns.
TEST(Cuda, ManagedMemoryIsSynchronous) {
  NPT_REQUIRE_CUDA();
  int managed = 0;
  NPT_ASSERT_CUDA(cudaDeviceGetAttribute(&managed, cudaDevAttrManagedMemory, 0));
  if (!managed) GTEST_SKIP() << "device 0 has no managed memory";
  npt::Context gpu(NPAIRS_BACKEND_CUDA, 0);
  ASSERT_NPAIRS_OK(gpu.status());
  const npt::Inputs in = npt::make_inputs(similarity_spec(NPAIRS_F32, true));
  const std::size_t R = std::size_t(in.R), M = std::size_t(in.M);
  int32_t *labels = nullptr, *column_labels = nullptr;
  float *similarity = nullptr, *loss = nullptr, *grad = nullptr;
  NPT_ASSERT_CUDA(cudaMallocManaged(&labels, R * sizeof(int32_t)));
  NPT_ASSERT_CUDA(cudaMallocManaged(&column_labels, M * sizeof(int32_t)));
  NPT_ASSERT_CUDA(cudaMallocManaged(&similarity, R * M * sizeof(float)));
  NPT_ASSERT_CUDA(cudaMallocManaged(&loss, R * sizeof(float)));
  NPT_ASSERT_CUDA(cudaMallocManaged(&grad, R * M * sizeof(float)));
  std::memcpy(labels, in.labels.data(), R * sizeof(int32_t));
  std::memcpy(column_labels, in.column_labels.data(), M * sizeof(int32_t));
  std::memcpy(similarity, in.similarity.data(), R * M * sizeof(float));
  for (std::size_t i = 0; i < R; ++i) loss[i] = NAN;
  npairs_problem p = in.problem();
  p.labels = labels;
  p.column_labels = column_labels;
  p.similarity = similarity;
  npairs_gradients g;
  npairs_gradients_init(&g);
  g.similarity = grad;
  const npairs_options o = in.options();
  ASSERT_NPAIRS_OK(npairs_loss(gpu.get(), &o, &p, nullptr, loss, &g));
  // No synchronize: read at once.
  npt::Outputs out(in, true, true, false, false);
  std::memcpy(out.loss.data(), loss, R * sizeof(float));
  std::memcpy(out.grad_similarity.data(), grad, R * M * sizeof(float));
  npt::expect_matches_reference(in, out, ref::compute<double>(in.reference()), 1e-5);
  for (void* q : {static_cast<void*>(labels), static_cast<void*>(column_labels), static_cast<void*>(similarity),
                  static_cast<void*>(loss), static_cast<void*>(grad)})
    EXPECT_EQ(cudaFree(q), cudaSuccess);
}

// A device pointer of another GPU than the context's is an argument error
// naming the argument and both devices, before any work.
TEST(Cuda, OtherDevicePointerIsRejected) {
  NPT_REQUIRE_CUDA();
  int devices = 0;
  NPT_ASSERT_CUDA(cudaGetDeviceCount(&devices));
  if (devices < 2) GTEST_SKIP() << "needs two GPUs, found " << devices;
  npt::Context gpu(NPAIRS_BACKEND_CUDA, 0);
  ASSERT_NPAIRS_OK(gpu.status());
  const npt::Inputs in = npt::make_inputs(similarity_spec(NPAIRS_F32, true));
  npt::Outputs out(in, true, true, false, false);
  NPT_ASSERT_CUDA(cudaSetDevice(1));
  npt::DeviceArray on_device_1(in.similarity);
  NPT_ASSERT_CUDA(cudaSetDevice(0));
  ASSERT_TRUE(on_device_1.ok());
  npairs_problem p = in.problem();
  p.similarity = on_device_1.data();
  npairs_gradients g = out.grads();
  const npairs_options o = in.options();
  const auto before = std::make_pair(out.loss.bytes(), out.grad_similarity.bytes());
  EXPECT_EQ(npairs_loss(gpu.get(), &o, &p, nullptr, out.loss.data(), &g), NPAIRS_ERROR_INVALID_ARGUMENT);
  const std::string message = npairs_last_error();
  EXPECT_NE(message.find("problem.similarity"), std::string::npos) << message;
  EXPECT_NE(message.find("device 1"), std::string::npos) << message;
  EXPECT_NE(message.find("device 0"), std::string::npos) << message;
  EXPECT_TRUE(before == std::make_pair(out.loss.bytes(), out.grad_similarity.bytes()));
}

// float16 embeddings at R = M = 8192 with dS and dA wanted: the GEMMs read
// an unscaled dS, so that dA keeps every negative's term (r/tau folded into
// a stored float16 dS underflows; about 1% of max|dA| was lost).
TEST(Cuda, Float16LargeBatchGradientsWithDs) {
  NPT_REQUIRE_CUDA();
  npt::Context gpu(NPAIRS_BACKEND_CUDA, 0);
  ASSERT_NPAIRS_OK(gpu.status());
  npt::Spec s;
  s.dtype = NPAIRS_F16;
  s.embeddings = true;
  s.rows = 8192;
  s.dim = 32;
  s.classes = 8192;
  s.label_dtype = NPAIRS_I32;
  s.seed = 8192;
  const npt::Inputs in = npt::make_inputs(s);
  npt::Outputs out(in, true, true, true, true);
  ASSERT_NPAIRS_OK(npt::run_loss(gpu.get(), in, out));
  npt::expect_matches_reference(in, out, ref::compute<double>(in.reference()), npt::default_rtol(NPAIRS_F16));
}

// Rows 3 and 5 of a column-label problem match no column.
npt::Inputs with_lonely_rows(npt::Inputs in) {
  in.labels.set_int(3, 1000);
  in.labels.set_int(5, 1001);
  return in;
}

// Expects rows 3 and 5 of the NONE loss and of dS NaN, and every other row
// as in `valid` (the reference of the same problem with valid rows 3 and 5:
// rows are independent under NONE).
void expect_nan_rows(const npt::Inputs& valid, npt::Outputs& out) {
  const auto expected = ref::compute<double>(valid.reference());
  const std::size_t M = std::size_t(valid.M);
  for (std::size_t i = 0; i < std::size_t(valid.R); ++i) {
    const bool invalid = i == 3 || i == 5;
    const double loss = out.loss.get(i);
    EXPECT_TRUE(invalid ? std::isnan(loss) : std::fabs(loss - expected.loss[i]) <= 1e-5 * (1 + std::fabs(expected.loss[i])))
        << "loss row " << i << ": " << loss;
    for (std::size_t j = 0; j < M; ++j) {
      const double g = out.grad_similarity.get(i * M + j), e = double(expected.grad_similarity[i * M + j]);
      if (!(invalid ? std::isnan(g) : std::fabs(g - e) <= 1e-5)) {
        ADD_FAILURE() << "dS[" << i << "][" << j << "] = " << g;
        return;
      }
    }
  }
}

// NPAIRS_FLAG_DEFER_CHECKS, eager: the call returns OK at once, the invalid
// rows are NaN, and the next synchronize names the first one (then clears it).
TEST(Cuda, DeferredCheckReportsAtSynchronize) {
  NPT_REQUIRE_CUDA();
  npt::Context gpu(NPAIRS_BACKEND_CUDA, 0);
  ASSERT_NPAIRS_OK(gpu.status());
  const npt::Inputs valid = npt::make_inputs(similarity_spec(NPAIRS_F32, true));
  const npt::Inputs in = with_lonely_rows(valid);
  npt::Outputs out(in, true, true, false, false);
  DeviceSimilarityCall call(in, out);
  ASSERT_TRUE(call.ok());
  ASSERT_NPAIRS_OK(call.run(gpu.get(), NPAIRS_FLAG_DEFER_CHECKS));
  EXPECT_EQ(npairs_context_synchronize(gpu.get()), NPAIRS_ERROR_INVALID_VALUE);
  EXPECT_NE(std::string(npairs_last_error()).find("problem.labels row 3 "), std::string::npos) << npairs_last_error();
  EXPECT_NPAIRS_OK(npairs_context_synchronize(gpu.get()));  // cleared
  ASSERT_TRUE(call.download());
  expect_nan_rows(valid, out);
  // Without the flag the check fails the call itself.
  npt::Outputs host_out(in, true, true, false, false);
  EXPECT_TRUE(npt::fails_leaving_outputs_untouched(gpu.get(), in, host_out, NPAIRS_ERROR_INVALID_VALUE));
}

// A call captured into a CUDA graph (device pointers, reserved workspace,
// the flag) and replayed on new inputs written into the same buffers gives
// the eager results; a replay whose inputs fail the check gives NaN rows,
// and synchronize reports the row.
TEST(Cuda, CapturedCallReplaysOnNewInputs) {
  NPT_REQUIRE_CUDA();
  npt::Context gpu(NPAIRS_BACKEND_CUDA, 0), eager(NPAIRS_BACKEND_CUDA, 0);
  ASSERT_NPAIRS_OK(gpu.status());
  ASSERT_NPAIRS_OK(eager.status());
  cudaStream_t stream = nullptr;
  NPT_ASSERT_CUDA(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  ASSERT_NPAIRS_OK(npairs_context_set_stream(gpu.get(), stream));
  npt::Spec first_spec = similarity_spec(NPAIRS_F32, true), second_spec = first_spec;
  second_spec.seed += 1;
  const npt::Inputs first = npt::make_inputs(first_spec), second = npt::make_inputs(second_spec);
  npt::Outputs out(first, true, true, false, false);
  DeviceSimilarityCall call(first, out);
  ASSERT_TRUE(call.ok());
  ASSERT_NPAIRS_OK(call.reserve(gpu.get(), NPAIRS_FLAG_DEFER_CHECKS));

  cudaGraph_t graph = nullptr;
  NPT_ASSERT_CUDA(cudaStreamBeginCapture(stream, cudaStreamCaptureModeGlobal));
  const npairs_status captured = call.run(gpu.get(), NPAIRS_FLAG_DEFER_CHECKS);
  NPT_ASSERT_CUDA(cudaStreamEndCapture(stream, &graph));
  ASSERT_NPAIRS_OK(captured);
  cudaGraphExec_t exec = nullptr;
  NPT_ASSERT_CUDA(cudaGraphInstantiate(&exec, graph, 0));
  // Captured, not run: the outputs are still poison.
  ASSERT_TRUE(call.download());
  EXPECT_TRUE(out.loss.is_poison(0) && out.grad_similarity.is_poison(0));

  for (const npt::Inputs* inputs : {&second, &first}) {
    ASSERT_TRUE(call.upload(*inputs));
    NPT_ASSERT_CUDA(cudaGraphLaunch(exec, stream));
    ASSERT_NPAIRS_OK(npairs_context_synchronize(gpu.get()));
    ASSERT_TRUE(call.download());
    npt::expect_matches_reference(*inputs, out, ref::compute<double>(inputs->reference()), 1e-5);
    // The eager call on the same buffers gives the same bits.
    const std::vector<unsigned char> replayed_loss = out.loss.bytes(), replayed_grad = out.grad_similarity.bytes();
    ASSERT_NPAIRS_OK(call.run(eager.get()));
    ASSERT_NPAIRS_OK(npairs_context_synchronize(eager.get()));
    ASSERT_TRUE(call.download());
    EXPECT_TRUE(out.loss.bytes() == replayed_loss) << "the replay's loss is not the eager call's";
    EXPECT_TRUE(out.grad_similarity.bytes() == replayed_grad) << "the replay's dS is not the eager call's";
  }

  // A replay on inputs that fail the check.
  ASSERT_TRUE(call.upload(with_lonely_rows(second)));
  NPT_ASSERT_CUDA(cudaGraphLaunch(exec, stream));
  EXPECT_EQ(npairs_context_synchronize(gpu.get()), NPAIRS_ERROR_INVALID_VALUE);
  EXPECT_NE(std::string(npairs_last_error()).find("problem.labels row 3 "), std::string::npos) << npairs_last_error();
  ASSERT_TRUE(call.download());
  expect_nan_rows(second, out);
  EXPECT_NPAIRS_OK(npairs_context_synchronize(gpu.get()));

  NPT_ASSERT_CUDA(cudaGraphExecDestroy(exec));
  NPT_ASSERT_CUDA(cudaGraphDestroy(graph));
  ASSERT_NPAIRS_OK(npairs_context_set_stream(gpu.get(), nullptr));
  NPT_ASSERT_CUDA(cudaStreamDestroy(stream));
}

// Under capture, a call that would wait for the host fails before queuing
// anything (the capture stays valid) and says what to do.
TEST(Cuda, CaptureOfAWaitingCallFailsCleanly) {
  NPT_REQUIRE_CUDA();
  npt::Context gpu(NPAIRS_BACKEND_CUDA, 0);
  ASSERT_NPAIRS_OK(gpu.status());
  cudaStream_t stream = nullptr;
  NPT_ASSERT_CUDA(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  ASSERT_NPAIRS_OK(npairs_context_set_stream(gpu.get(), stream));
  const npt::Inputs in = npt::make_inputs(similarity_spec(NPAIRS_F32, true));
  npt::Outputs out(in, true, true, false, false);
  DeviceSimilarityCall call(in, out);
  ASSERT_TRUE(call.ok());
  struct Attempt {
    bool reserve;
    uint32_t flags;
    const char* hint;
  };
  for (const Attempt attempt : {Attempt{false, NPAIRS_FLAG_DEFER_CHECKS, "npairs_context_reserve"},
                                Attempt{true, 0u, "NPAIRS_FLAG_DEFER_CHECKS"}}) {
    if (attempt.reserve) ASSERT_NPAIRS_OK(call.reserve(gpu.get(), attempt.flags));
    cudaGraph_t graph = nullptr;
    NPT_ASSERT_CUDA(cudaStreamBeginCapture(stream, cudaStreamCaptureModeGlobal));
    const npairs_status status = call.run(gpu.get(), attempt.flags);
    const std::string message = npairs_last_error();
    NPT_ASSERT_CUDA(cudaStreamEndCapture(stream, &graph));
    EXPECT_EQ(status, NPAIRS_ERROR_UNSUPPORTED);
    EXPECT_NE(message.find(attempt.hint), std::string::npos) << message;
    NPT_ASSERT_CUDA(cudaGraphDestroy(graph));
  }
  ASSERT_NPAIRS_OK(npairs_context_set_stream(gpu.get(), nullptr));
  NPT_ASSERT_CUDA(cudaStreamDestroy(stream));
}

// A context on device 0 leaves the caller's current device (1) current,
// through create, compute, synchronize and destroy.
TEST(Cuda, CallersCurrentDeviceIsKept) {
  NPT_REQUIRE_CUDA();
  int devices = 0;
  NPT_ASSERT_CUDA(cudaGetDeviceCount(&devices));
  if (devices < 2) GTEST_SKIP() << "needs two GPUs, found " << devices;
  NPT_ASSERT_CUDA(cudaSetDevice(1));
  {
    npt::Context gpu(NPAIRS_BACKEND_CUDA, 0);
    ASSERT_NPAIRS_OK(gpu.status());
    const npt::Inputs in = npt::make_inputs(medium_spec(NPAIRS_F32));
    npt::Outputs out(in, true, true, true, true);
    ASSERT_NPAIRS_OK(npt::run_loss(gpu.get(), in, out));
    ASSERT_NPAIRS_OK(npairs_context_synchronize(gpu.get()));
    int current = -1;
    NPT_ASSERT_CUDA(cudaGetDevice(&current));
    EXPECT_EQ(current, 1);
  }
  int current = -1;
  NPT_ASSERT_CUDA(cudaGetDevice(&current));
  EXPECT_EQ(current, 1) << "after npairs_context_destroy";
  NPT_ASSERT_CUDA(cudaSetDevice(0));
}

}  // namespace
#endif
