// Every bad input of SPEC section 2: its status, a message from
// npairs_last_error() that names the argument, and outputs left bitwise
// untouched. Also the context functions, status strings, versions, the init
// functions and the per-thread error message.
#include <cctype>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <memory>
#include <set>
#include <string>
#include <thread>

#include "test_util.hpp"

namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr double kInf = std::numeric_limits<double>::infinity();

::testing::AssertionResult mentions_any(const std::string& msg, std::initializer_list<const char*> names) {
  for (const char* n : names) {
    if (msg.find(n) != std::string::npos) return ::testing::AssertionSuccess();
  }
  auto f = ::testing::AssertionFailure() << "message \"" << msg << "\" names none of:";
  for (const char* n : names) f << " \"" << n << "\"";
  return f;
}

// True when `msg` names row k ("row 3", not "row 30").
::testing::AssertionResult names_row(const std::string& msg, int64_t k) {
  const std::string needle = "row " + std::to_string(k);
  for (std::size_t at = msg.find(needle); at != std::string::npos; at = msg.find(needle, at + 1)) {
    const std::size_t after = at + needle.size();
    if (after == msg.size() || !std::isdigit(static_cast<unsigned char>(msg[after]))) {
      return ::testing::AssertionSuccess();
    }
  }
  return ::testing::AssertionFailure() << "message \"" << msg << "\" does not name " << needle;
}

// A valid baseline (SPEC's check problem: float64, its similarity, its
// embeddings or its one-hot multilabels) that each test breaks in one way.
class Errors : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_NPAIRS_OK(ctx_.status());
    npairs_options_init(&opts_);
    npairs_problem_init(&prob_);
    prob_.rows = 4;
    prob_.dtype = NPAIRS_F64;
    prob_.labels = labels_;
    prob_.label_dtype = NPAIRS_I64;
    prob_.similarity = sim_.data();
    npairs_gradients_init(&grads_);
    grads_.similarity = dS_.data();
  }

  void use_embeddings() {
    prob_.similarity = nullptr;
    prob_.anchors = emb_;
    prob_.positives = emb_;
    prob_.dim = 2;
  }
  void use_multilabels() {
    prob_.labels = nullptr;
    prob_.label_dtype = 0;
    prob_.multilabels = onehot_;
    prob_.num_classes = 2;
  }

  // Calls npairs_loss (with structs whose struct_size may differ from
  // sizeof: the callers copy them into larger zeroed buffers when needed)
  // and checks the status, a one-line message naming one of `names`, and
  // every output untouched.
  void expect_error(npairs_status want, std::initializer_list<const char*> names,
                    const npairs_options* opts, const npairs_problem* prob, npairs_gradients* grads,
                    npairs_context ctx_override = nullptr, bool use_ctx_override = false) {
    const npairs_context ctx = use_ctx_override ? ctx_override : ctx_.get();
    EXPECT_TRUE(npt::fails_leaving_untouched(
        [&] { return npairs_loss(ctx, opts, prob, nullptr, loss_.data(), grads); }, {&loss_, &dS_, &dA_, &dP_}, want));
    EXPECT_TRUE(mentions_any(npairs_last_error(), names));
  }
  void expect_error(npairs_status want, std::initializer_list<const char*> names) {
    expect_error(want, names, &opts_, &prob_, &grads_);
  }
  npairs_status call() {
    loss_.poison();
    dS_.poison();
    return npairs_loss(ctx_.get(), &opts_, &prob_, nullptr, loss_.data(), &grads_);
  }

  npt::Context ctx_{NPAIRS_BACKEND_CPU};
  npairs_options opts_{};
  npairs_problem prob_{};
  npairs_gradients grads_{};
  const int64_t* labels_ = npt::kCheckLabels;
  const std::vector<double> sim_ = npt::check_similarity();
  const double* emb_ = npt::kCheckPoints;
  const double* onehot_ = npt::kCheckOneHot;
  npt::Array loss_{NPAIRS_F64, 8}, dS_{NPAIRS_F64, 64}, dA_{NPAIRS_F64, 16}, dP_{NPAIRS_F64, 16};
};

TEST_F(Errors, BaselineIsValid) {
  ASSERT_NPAIRS_OK(call());
  EXPECT_NEAR(loss_.get(0), npt::kCheckValue, 1e-15);
  use_embeddings();
  ASSERT_NPAIRS_OK(call());
  use_multilabels();
  ASSERT_NPAIRS_OK(call());
}

TEST_F(Errors, NullContextAndProblem) {
  expect_error(NPAIRS_ERROR_INVALID_ARGUMENT, {"ctx"}, &opts_, &prob_, &grads_, nullptr, true);
  expect_error(NPAIRS_ERROR_INVALID_ARGUMENT, {"problem"}, &opts_, nullptr, &grads_);
}

TEST_F(Errors, NullOptionsMeansDefaults) {
  loss_.poison();
  ASSERT_NPAIRS_OK(npairs_loss(ctx_.get(), nullptr, &prob_, nullptr, loss_.data(), nullptr));
  EXPECT_NEAR(loss_.get(0), npt::kCheckValue, 1e-15);
}

// struct_size: below the published size -> INVALID_ARGUMENT; larger with a
// zero tail -> accepted; larger with a non-zero tail -> UNSUPPORTED.
template <class Struct>
struct Grown {
  explicit Grown(const Struct& s, std::size_t extra) : bytes(sizeof(Struct) + extra, 0) {
    std::memcpy(bytes.data(), &s, sizeof(Struct));
    get()->struct_size = sizeof(Struct) + extra;
  }
  Struct* get() { return reinterpret_cast<Struct*>(bytes.data()); }
  std::vector<unsigned char> bytes;
};

TEST_F(Errors, OptionsStructSize) {
  for (std::size_t size : {std::size_t(0), std::size_t(8), offsetof(npairs_options, flags)}) {
    SCOPED_TRACE(size);
    npairs_options o = opts_;
    o.struct_size = size;
    expect_error(NPAIRS_ERROR_INVALID_ARGUMENT, {"struct_size"}, &o, &prob_, &grads_);
    EXPECT_TRUE(mentions_any(npairs_last_error(), {"options"}));
  }
  Grown<npairs_options> zero_tail(opts_, 64);
  loss_.poison();
  ASSERT_NPAIRS_OK(npairs_loss(ctx_.get(), zero_tail.get(), &prob_, nullptr, loss_.data(), nullptr));
  EXPECT_NEAR(loss_.get(0), npt::kCheckValue, 1e-15);
  Grown<npairs_options> dirty_tail(opts_, 64);
  dirty_tail.bytes[sizeof(npairs_options) + 10] = 1;
  expect_error(NPAIRS_ERROR_UNSUPPORTED, {"struct_size", "options"}, dirty_tail.get(), &prob_, &grads_);
}

TEST_F(Errors, ProblemStructSize) {
  for (std::size_t size : {std::size_t(0), std::size_t(8), offsetof(npairs_problem, sample_weight)}) {
    SCOPED_TRACE(size);
    npairs_problem p = prob_;
    p.struct_size = size;
    expect_error(NPAIRS_ERROR_INVALID_ARGUMENT, {"struct_size"}, &opts_, &p, &grads_);
    EXPECT_TRUE(mentions_any(npairs_last_error(), {"problem"}));
  }
  Grown<npairs_problem> zero_tail(prob_, 64);
  loss_.poison();
  ASSERT_NPAIRS_OK(npairs_loss(ctx_.get(), &opts_, zero_tail.get(), nullptr, loss_.data(), nullptr));
  EXPECT_NEAR(loss_.get(0), npt::kCheckValue, 1e-15);
  Grown<npairs_problem> dirty_tail(prob_, 64);
  dirty_tail.bytes[sizeof(npairs_problem) + 63] = 0x80;
  expect_error(NPAIRS_ERROR_UNSUPPORTED, {"struct_size", "problem"}, &opts_, dirty_tail.get(), &grads_);
}

TEST_F(Errors, GradientsStructSize) {
  for (std::size_t size : {std::size_t(0), std::size_t(8), offsetof(npairs_gradients, positives)}) {
    SCOPED_TRACE(size);
    npairs_gradients g = grads_;
    g.struct_size = size;
    expect_error(NPAIRS_ERROR_INVALID_ARGUMENT, {"struct_size"}, &opts_, &prob_, &g);
    EXPECT_TRUE(mentions_any(npairs_last_error(), {"grads", "gradients"}));
  }
  Grown<npairs_gradients> zero_tail(grads_, 64);
  dS_.poison();
  ASSERT_NPAIRS_OK(npairs_loss(ctx_.get(), &opts_, &prob_, nullptr, nullptr, zero_tail.get()));
  for (std::ptrdiff_t k = 0; k < 64; ++k) {
    EXPECT_EQ(dS_.is_poison(k), k >= 16) << "grads.similarity[" << k << "]: R x M = 16 written, no more";
  }
  Grown<npairs_gradients> dirty_tail(grads_, 64);
  dirty_tail.bytes[sizeof(npairs_gradients)] = 1;
  expect_error(NPAIRS_ERROR_UNSUPPORTED, {"struct_size", "grads", "gradients"}, &opts_, &prob_, dirty_tail.get());
}

TEST_F(Errors, UnknownReduction) {
  for (npairs_reduction r : {3, -1, 100}) {
    SCOPED_TRACE(r);
    opts_.reduction = r;
    expect_error(NPAIRS_ERROR_INVALID_ARGUMENT, {"options.reduction"});
  }
}

TEST_F(Errors, BadDtype) {
  for (npairs_dtype d : {9, -1, NPAIRS_I32, NPAIRS_I64}) {
    SCOPED_TRACE(d);
    prob_.dtype = d;
    expect_error(NPAIRS_ERROR_INVALID_ARGUMENT, {"problem.dtype"});
  }
}

// Half precision is a CUDA feature: valid arguments, but the CPU backend
// says so, after every argument rule has been checked.
TEST_F(Errors, HalfDtypesUnsupportedOnCpu) {
  for (npairs_dtype d : {NPAIRS_F16, NPAIRS_BF16}) {
    SCOPED_TRACE(d);
    prob_.dtype = d;
    expect_error(NPAIRS_ERROR_UNSUPPORTED, {"problem.dtype"});
    EXPECT_TRUE(mentions_any(npairs_last_error(), {"CPU backend"})) << npairs_last_error();
    opts_.temperature = 0;
    expect_error(NPAIRS_ERROR_INVALID_ARGUMENT, {"options.temperature"});
    opts_.temperature = 1;
  }
}

TEST_F(Errors, BadLabelDtype) {
  for (npairs_dtype d : {NPAIRS_F32, NPAIRS_F64, NPAIRS_F16, 9, 18}) {
    SCOPED_TRACE(d);
    prob_.label_dtype = d;
    expect_error(NPAIRS_ERROR_INVALID_ARGUMENT, {"problem.label_dtype"});
  }
}

TEST_F(Errors, LabelDtypeIgnoredWithMultilabels) {
  use_multilabels();
  prob_.label_dtype = 9;
  ASSERT_NPAIRS_OK(call());
}

TEST_F(Errors, UnknownFlags) {
  for (uint32_t f : {8u, 16u, 0x80000000u, 15u}) {
    SCOPED_TRACE(f);
    opts_.flags = f;
    expect_error(NPAIRS_ERROR_INVALID_ARGUMENT, {"options.flags"});
  }
  // Known: fine on the CPU.
  for (uint32_t f : {NPAIRS_FLAG_ALLOW_TF32, NPAIRS_FLAG_DEFER_CHECKS, NPAIRS_FLAG_SYMMETRIC, 7u}) {
    opts_.flags = f;
    ASSERT_NPAIRS_OK(call());
  }
}

TEST_F(Errors, BadTemperature) {
  for (double t : {0.0, -0.0, -1.0, kNaN, kInf, -kInf}) {
    SCOPED_TRACE(t);
    opts_.temperature = t;
    expect_error(NPAIRS_ERROR_INVALID_ARGUMENT, {"options.temperature"});
  }
}

TEST_F(Errors, BadRegLambda) {
  use_embeddings();
  for (double l : {-1.0, -1e-300, kNaN, kInf}) {
    SCOPED_TRACE(l);
    opts_.reg_lambda = l;
    expect_error(NPAIRS_ERROR_INVALID_ARGUMENT, {"options.reg_lambda"});
  }
}

TEST_F(Errors, RegLambdaWithNoneReduction) {
  use_embeddings();
  opts_.reg_lambda = 0.5;
  opts_.reduction = NPAIRS_REDUCTION_NONE;
  expect_error(NPAIRS_ERROR_INVALID_ARGUMENT, {"reg_lambda"});
  opts_.reg_lambda = 0.0;  // zero is fine with NONE
  ASSERT_NPAIRS_OK(call());
}

TEST_F(Errors, RegLambdaWithSimilarityInput) {
  opts_.reg_lambda = 0.5;
  expect_error(NPAIRS_ERROR_INVALID_ARGUMENT, {"reg_lambda"});
}

TEST_F(Errors, TargetsBothOrNeither) {
  prob_.multilabels = onehot_;
  prob_.num_classes = 2;
  expect_error(NPAIRS_ERROR_INVALID_ARGUMENT, {"problem.labels", "problem.multilabels"});
  prob_.multilabels = nullptr;
  prob_.labels = nullptr;
  expect_error(NPAIRS_ERROR_INVALID_ARGUMENT, {"problem.labels", "problem.multilabels"});
  // Column labels alone are not row targets.
  prob_.column_labels = labels_;
  expect_error(NPAIRS_ERROR_INVALID_ARGUMENT, {"problem.labels", "problem.multilabels"});
}

// Column targets of the other kind: labels with column_multilabels, and
// multilabels with column_labels (whatever cols is).
TEST_F(Errors, MixedColumnTargets) {
  for (int64_t cols : {0, 4}) {
    SCOPED_TRACE(cols);
    prob_.cols = cols;
    prob_.column_multilabels = onehot_;
    prob_.num_classes = 2;
    expect_error(NPAIRS_ERROR_INVALID_ARGUMENT, {"problem.column_multilabels"});
    EXPECT_TRUE(mentions_any(npairs_last_error(), {"problem.labels"}));
    prob_.column_multilabels = nullptr;
    prob_.num_classes = 0;
    use_multilabels();
    prob_.column_labels = labels_;
    expect_error(NPAIRS_ERROR_INVALID_ARGUMENT, {"problem.column_labels"});
    EXPECT_TRUE(mentions_any(npairs_last_error(), {"problem.multilabels"}));
    prob_.column_labels = nullptr;
    ASSERT_NPAIRS_OK(call());  // the baseline without the mix is valid
    prob_.multilabels = nullptr;
    prob_.num_classes = 0;
    prob_.labels = labels_;
    prob_.label_dtype = NPAIRS_I64;
  }
}

// Sizes whose products overflow the library's indexing (int64 element
// counts kept below INT64_MAX / 16), each below INT_MAX so that only this
// rule applies, and sizes above INT_MAX, which the CPU backend cannot hand
// to BLAS: NPAIRS_ERROR_UNSUPPORTED before anything is read. The pointers
// are dummies (nothing is allocated): a negative first multi-label entry, so
// that a library that skipped the check would fail reading the data with
// NPAIRS_ERROR_INVALID_VALUE instead of touching gigabytes.
TEST_F(Errors, SizesTooLargeToIndex) {
  const int64_t big = int64_t(1) << 30;  // big * big = 2^60 > INT64_MAX / 16
  const double negative_first[4] = {-1, 1, 1, 1};
  double dummy[4] = {};
  struct Case {
    const char* what;
    int64_t rows, cols, dim, classes;
  };
  for (const Case& c : {Case{"rows x cols", big, big, 0, 1}, Case{"rows x num_classes", big, 1, 0, big},
                        Case{"rows x dim", big, 1, big, 1}, Case{"cols x dim", 1, big, big, 1},
                        Case{"cols x num_classes", 1, big, 0, big}}) {
    SCOPED_TRACE(c.what);
    npairs_problem p;
    npairs_problem_init(&p);
    p.rows = c.rows;
    p.cols = c.cols;
    p.dtype = NPAIRS_F64;
    p.multilabels = negative_first;
    p.column_multilabels = c.rows == c.cols ? nullptr : negative_first;
    p.num_classes = c.classes;
    if (c.dim > 0) {
      p.anchors = p.positives = dummy;
      p.dim = c.dim;
    } else {
      p.similarity = dummy;
    }
    npairs_gradients g;
    npairs_gradients_init(&g);
    expect_error(NPAIRS_ERROR_UNSUPPORTED, {"too large"}, &opts_, &p, &g);
  }
}

// Sizes above INT_MAX whose products are fine: the CPU backend says it
// cannot do them (its BLAS takes int sizes) rather than passing a negative
// int to BLAS. Labels and embeddings: R = M = 4 real rows, a width of 2^31.
TEST_F(Errors, CpuBackendSizesAboveIntMax) {
  const int64_t above = int64_t(1) << 31;
  use_embeddings();
  prob_.dim = above;
  grads_.similarity = nullptr;
  expect_error(NPAIRS_ERROR_UNSUPPORTED, {"2^31-1"});
  EXPECT_TRUE(mentions_any(npairs_last_error(), {"CPU backend"}));
  // K = 2^31 multi-labels (their first entry negative: see above).
  const double negative_first[4] = {-1, 1, 1, 1};
  use_multilabels();
  prob_.multilabels = negative_first;
  prob_.num_classes = above;
  prob_.dim = 2;
  expect_error(NPAIRS_ERROR_UNSUPPORTED, {"2^31-1"});
  // R = 2^31 rows against M = 1 column: the labels of row 0 have no
  // positive, which a library without the guard reports.
  const int64_t column_label[1] = {7};
  prob_.multilabels = nullptr;
  prob_.num_classes = 0;
  prob_.labels = labels_;
  prob_.label_dtype = NPAIRS_I64;
  prob_.column_labels = column_label;
  prob_.rows = above;
  prob_.cols = 1;
  expect_error(NPAIRS_ERROR_UNSUPPORTED, {"2^31-1"});
}

TEST_F(Errors, LogitsBothOrNeither) {
  prob_.anchors = emb_;
  prob_.positives = emb_;
  prob_.dim = 2;
  expect_error(NPAIRS_ERROR_INVALID_ARGUMENT, {"problem.similarity", "problem.anchors"});
  prob_.anchors = prob_.positives = nullptr;
  prob_.similarity = nullptr;
  expect_error(NPAIRS_ERROR_INVALID_ARGUMENT, {"problem.similarity", "problem.anchors"});
}

TEST_F(Errors, AnchorsWithoutPositives) {
  use_embeddings();
  prob_.positives = nullptr;
  expect_error(NPAIRS_ERROR_INVALID_ARGUMENT, {"problem.positives"});
  prob_.positives = emb_;
  prob_.anchors = nullptr;
  expect_error(NPAIRS_ERROR_INVALID_ARGUMENT, {"problem.anchors"});
}

TEST_F(Errors, NegativeSizes) {
  prob_.rows = -1;
  expect_error(NPAIRS_ERROR_INVALID_ARGUMENT, {"problem.rows"});
  prob_.rows = 4;
  prob_.cols = -4;
  prob_.column_labels = labels_;
  expect_error(NPAIRS_ERROR_INVALID_ARGUMENT, {"problem.cols"});
}

TEST_F(Errors, ColsWithoutColumnTargets) {
  prob_.cols = 3;
  expect_error(NPAIRS_ERROR_INVALID_ARGUMENT, {"problem.cols", "problem.column_labels"});
  use_multilabels();
  expect_error(NPAIRS_ERROR_INVALID_ARGUMENT, {"problem.cols", "problem.column_multilabels"});
}

TEST_F(Errors, NumClassesWithMultilabels) {
  use_multilabels();
  for (int64_t k : {0, -2}) {
    SCOPED_TRACE(k);
    prob_.num_classes = k;
    expect_error(NPAIRS_ERROR_INVALID_ARGUMENT, {"problem.num_classes"});
  }
}

TEST_F(Errors, DimWithEmbeddings) {
  use_embeddings();
  for (int64_t d : {0, -2}) {
    SCOPED_TRACE(d);
    prob_.dim = d;
    expect_error(NPAIRS_ERROR_INVALID_ARGUMENT, {"problem.dim"});
  }
}

TEST_F(Errors, EmbeddingGradientsWithSimilarityInput) {
  grads_.anchors = dA_.data();
  expect_error(NPAIRS_ERROR_INVALID_ARGUMENT, {"grads.anchors"});
  grads_.anchors = nullptr;
  grads_.positives = dP_.data();
  expect_error(NPAIRS_ERROR_INVALID_ARGUMENT, {"grads.positives"});
}

// Rows 3 and 4 have labels that appear in no column: the first (3) is named.
TEST_F(Errors, RowWithoutPositiveLabels) {
  const int64_t rows[5] = {0, 1, 0, 7, 8};
  const int64_t cols[4] = {0, 1, 0, 1};
  double s[20] = {};
  prob_.rows = 5;
  prob_.cols = 4;
  prob_.labels = rows;
  prob_.column_labels = cols;
  prob_.similarity = s;
  expect_error(NPAIRS_ERROR_INVALID_VALUE, {"row 3"});
  EXPECT_TRUE(names_row(npairs_last_error(), 3));
  EXPECT_FALSE(names_row(npairs_last_error(), 4));
  // Also for int32 labels and with embeddings.
  const int32_t rows32[5] = {0, 1, 0, 7, 8};
  const int32_t cols32[4] = {0, 1, 0, 1};
  prob_.labels = rows32;
  prob_.column_labels = cols32;
  prob_.label_dtype = NPAIRS_I32;
  prob_.similarity = nullptr;
  double a[10] = {}, p[8] = {};
  prob_.anchors = a;
  prob_.positives = p;
  prob_.dim = 2;
  expect_error(NPAIRS_ERROR_INVALID_VALUE, {"row 3"});
}

// Labels compare as exact integers: 2^60 + 1 is not 2^60.
TEST_F(Errors, RowWithoutPositiveExactLabels) {
  const int64_t big = int64_t(1) << 60;
  const int64_t rows[4] = {big, big, big, big + 1};
  const int64_t cols[2] = {big, big + 2};
  double s[8] = {};
  prob_.cols = 2;
  prob_.labels = rows;
  prob_.column_labels = cols;
  prob_.similarity = s;
  expect_error(NPAIRS_ERROR_INVALID_VALUE, {"row 3"});
}

TEST_F(Errors, RowWithoutPositiveMultilabels) {
  // Square: rows 3 and 4 are all-zero, so even their own column is no positive.
  const double y[10] = {1, 0, 0, 1, 1, 1, 0, 0, 0, 0};
  double s[25] = {};
  prob_.rows = 5;
  prob_.labels = nullptr;
  prob_.multilabels = y;
  prob_.num_classes = 2;
  prob_.similarity = s;
  expect_error(NPAIRS_ERROR_INVALID_VALUE, {"row 3"});
  // Rectangular: row 3's only class (1) appears in no column.
  const double yr[10] = {1, 0, 1, 0, 1, 1, 0, 1, 1, 0};
  const double yc[6] = {1, 0, 1, 0, 2, 0};
  prob_.multilabels = yr;
  prob_.column_multilabels = yc;
  prob_.cols = 3;
  expect_error(NPAIRS_ERROR_INVALID_VALUE, {"row 3"});
}

// Many rows (validated in parallel, perhaps): still the first bad row is
// named, for labels and multilabels.
TEST_F(Errors, FirstOfManyBadRowsIsNamed) {
  const int64_t R = 3000, M = 10;
  std::vector<int64_t> rows(R), cols(M);
  for (int64_t j = 0; j < M; ++j) cols[static_cast<std::size_t>(j)] = j;
  for (int64_t i = 0; i < R; ++i) rows[static_cast<std::size_t>(i)] = i % M;
  rows[2900] = 77;
  rows[1517] = 55;
  rows[2000] = 66;
  std::vector<double> sim(static_cast<std::size_t>(R * M), 0.0);
  prob_.rows = R;
  prob_.cols = M;
  prob_.labels = rows.data();
  prob_.column_labels = cols.data();
  prob_.similarity = sim.data();
  grads_.similarity = nullptr;
  expect_error(NPAIRS_ERROR_INVALID_VALUE, {"row 1517"});
  EXPECT_TRUE(names_row(npairs_last_error(), 1517));

  // Multilabels: one-hot rows, three of them all-zero.
  std::vector<double> y(static_cast<std::size_t>(R * M), 0.0), yc(static_cast<std::size_t>(M * M), 0.0);
  for (int64_t i = 0; i < R; ++i) y[static_cast<std::size_t>(i * M + i % M)] = 1.0;
  for (int64_t j = 0; j < M; ++j) yc[static_cast<std::size_t>(j * M + j)] = 1.0;
  for (int64_t bad : {2900, 1517, 2000}) y[static_cast<std::size_t>(bad * M + bad % M)] = 0.0;
  prob_.labels = prob_.column_labels = nullptr;
  prob_.multilabels = y.data();
  prob_.column_multilabels = yc.data();
  prob_.num_classes = M;
  expect_error(NPAIRS_ERROR_INVALID_VALUE, {"row 1517"});
  EXPECT_TRUE(names_row(npairs_last_error(), 1517));
}

TEST_F(Errors, NegativeMultilabel) {
  use_multilabels();
  double y[8] = {1, 0, 1, 0, 0, 1, 0, 1};
  y[4] = 1;  // row 2 = [1, -0.5]: still a positive G_22 > 0, but a negative entry
  y[5] = -0.5;
  prob_.multilabels = y;
  expect_error(NPAIRS_ERROR_INVALID_VALUE, {"multilabels"});
  // In the column targets.
  double yc[8] = {1, 0, 1, 0, 0, 1, 0, -1};
  prob_.multilabels = onehot_;
  prob_.column_multilabels = yc;
  expect_error(NPAIRS_ERROR_INVALID_VALUE, {"column_multilabels"});
}

TEST_F(Errors, ContextStillUsableAfterErrors) {
  opts_.temperature = -1;
  expect_error(NPAIRS_ERROR_INVALID_ARGUMENT, {"options.temperature"});
  opts_.temperature = 1;
  ASSERT_NPAIRS_OK(call());
  EXPECT_NEAR(loss_.get(0), npt::kCheckValue, 1e-15);
}

// ---------------------------------------------------------------------------
// Contexts

TEST(ContextErrors, CreateRejectsBadArguments) {
  npairs_context sentinel = reinterpret_cast<npairs_context>(static_cast<uintptr_t>(0x1234));
  for (npairs_backend b : {3, -1, 99}) {
    SCOPED_TRACE(b);
    npairs_context c = sentinel;
    EXPECT_EQ(npairs_context_create(b, 0, &c), NPAIRS_ERROR_INVALID_ARGUMENT);
    EXPECT_EQ(c, sentinel) << "out written on failure";
    EXPECT_TRUE(mentions_any(npairs_last_error(), {"backend"}));
    EXPECT_EQ(npairs_backend_available(b), 0);
  }
  EXPECT_EQ(npairs_context_create(NPAIRS_BACKEND_CPU, 0, nullptr), NPAIRS_ERROR_INVALID_ARGUMENT);
  EXPECT_TRUE(mentions_any(npairs_last_error(), {"out"}));
  npairs_context c = sentinel;
  EXPECT_EQ(npairs_context_create(NPAIRS_BACKEND_CPU, -1, &c), NPAIRS_ERROR_INVALID_ARGUMENT);
  EXPECT_EQ(c, sentinel);
  EXPECT_TRUE(mentions_any(npairs_last_error(), {"device"}));
}

TEST(ContextErrors, CudaUnavailable) {
  if (npairs_backend_available(NPAIRS_BACKEND_CUDA)) GTEST_SKIP() << "a CUDA device is available here";
  npairs_context sentinel = reinterpret_cast<npairs_context>(static_cast<uintptr_t>(0x1234));
  npairs_context c = sentinel;
  EXPECT_EQ(npairs_context_create(NPAIRS_BACKEND_CUDA, 0, &c), NPAIRS_ERROR_BACKEND_UNAVAILABLE);
  EXPECT_EQ(c, sentinel);
  EXPECT_FALSE(std::string(npairs_last_error()).empty());
}

TEST(Contexts, BackendsAndAuto) {
  EXPECT_EQ(npairs_backend_available(NPAIRS_BACKEND_CPU), 1);
  EXPECT_EQ(npairs_backend_available(NPAIRS_BACKEND_AUTO), 1);
  npt::Context cpu(NPAIRS_BACKEND_CPU);
  ASSERT_NPAIRS_OK(cpu.status());
  npairs_backend b = -5;
  ASSERT_NPAIRS_OK(npairs_context_backend(cpu.get(), &b));
  EXPECT_EQ(b, NPAIRS_BACKEND_CPU);
  npt::Context autoc(NPAIRS_BACKEND_AUTO);
  ASSERT_NPAIRS_OK(autoc.status());
  ASSERT_NPAIRS_OK(npairs_context_backend(autoc.get(), &b));
  EXPECT_EQ(b, npairs_backend_available(NPAIRS_BACKEND_CUDA) ? NPAIRS_BACKEND_CUDA : NPAIRS_BACKEND_CPU);
  EXPECT_EQ(npairs_context_backend(nullptr, &b), NPAIRS_ERROR_INVALID_ARGUMENT);
  EXPECT_TRUE(mentions_any(npairs_last_error(), {"ctx"}));
  EXPECT_EQ(npairs_context_backend(cpu.get(), nullptr), NPAIRS_ERROR_INVALID_ARGUMENT);
  EXPECT_TRUE(mentions_any(npairs_last_error(), {"out"}));
}

TEST(Contexts, DestroyNullIsFine) { EXPECT_EQ(npairs_context_destroy(nullptr), NPAIRS_OK); }

TEST(Contexts, SetThreads) {
  npt::Context ctx(NPAIRS_BACKEND_CPU);
  ASSERT_NPAIRS_OK(ctx.status());
  EXPECT_EQ(npairs_context_set_threads(ctx.get(), -1), NPAIRS_ERROR_INVALID_ARGUMENT);
  EXPECT_TRUE(mentions_any(npairs_last_error(), {"threads"}));
  EXPECT_EQ(npairs_context_set_threads(nullptr, 1), NPAIRS_ERROR_INVALID_ARGUMENT);
  EXPECT_TRUE(mentions_any(npairs_last_error(), {"ctx"}));
  EXPECT_NPAIRS_OK(npairs_context_set_threads(ctx.get(), 0));
  EXPECT_NPAIRS_OK(npairs_context_set_threads(ctx.get(), 1));
  EXPECT_NPAIRS_OK(npairs_context_set_threads(ctx.get(), 1000));
}

TEST(Contexts, SetStreamOnCpu) {
  npt::Context ctx(NPAIRS_BACKEND_CPU);
  ASSERT_NPAIRS_OK(ctx.status());
  EXPECT_NPAIRS_OK(npairs_context_set_stream(ctx.get(), nullptr));
  int dummy = 0;
  EXPECT_EQ(npairs_context_set_stream(ctx.get(), &dummy), NPAIRS_ERROR_UNSUPPORTED);
  EXPECT_FALSE(std::string(npairs_last_error()).empty());
  EXPECT_EQ(npairs_context_set_stream(nullptr, nullptr), NPAIRS_ERROR_INVALID_ARGUMENT);
  EXPECT_TRUE(mentions_any(npairs_last_error(), {"ctx"}));
}

TEST(Contexts, Synchronize) {
  npt::Context ctx(NPAIRS_BACKEND_CPU);
  ASSERT_NPAIRS_OK(ctx.status());
  EXPECT_NPAIRS_OK(npairs_context_synchronize(ctx.get()));
  EXPECT_EQ(npairs_context_synchronize(nullptr), NPAIRS_ERROR_INVALID_ARGUMENT);
  EXPECT_TRUE(mentions_any(npairs_last_error(), {"ctx"}));
}

// ---------------------------------------------------------------------------
// Statuses, versions, init functions, per-thread messages

TEST(Statuses, EveryStatusHasText) {
  std::set<std::string> seen;
  for (npairs_status s = NPAIRS_OK; s <= NPAIRS_ERROR_INTERNAL; ++s) {
    const char* t = npairs_status_string(s);
    ASSERT_NE(t, nullptr);
    EXPECT_GT(std::strlen(t), 0u);
    EXPECT_STRNE(t, "unknown status") << s;
    EXPECT_TRUE(seen.insert(t).second) << "duplicate text for status " << s << ": " << t;
  }
  for (npairs_status s : {8, -1, 1000, std::numeric_limits<int32_t>::min()}) {
    const char* t = npairs_status_string(s);
    ASSERT_NE(t, nullptr);
    EXPECT_STREQ(t, "unknown status");
  }
}

TEST(Versions, MatchTheHeader) {
  EXPECT_EQ(npairs_version_number(), static_cast<uint32_t>(NPAIRS_VERSION_NUMBER));
  EXPECT_EQ(NPAIRS_VERSION_NUMBER, NPAIRS_VERSION_MAJOR * 10000 + NPAIRS_VERSION_MINOR * 100 + NPAIRS_VERSION_PATCH);
  const std::string expected = std::to_string(NPAIRS_VERSION_MAJOR) + "." + std::to_string(NPAIRS_VERSION_MINOR) +
                               "." + std::to_string(NPAIRS_VERSION_PATCH);
  ASSERT_NE(npairs_version_string(), nullptr);
  EXPECT_EQ(std::string(npairs_version_string()), expected);
}

TEST(Init, Defaults) {
  npairs_options o;
  std::memset(&o, 0xAB, sizeof o);
  npairs_options_init(&o);
  EXPECT_EQ(o.struct_size, sizeof(npairs_options));
  EXPECT_EQ(o.reduction, NPAIRS_REDUCTION_SUM_OVER_BATCH_SIZE);
  EXPECT_EQ(o.temperature, 1.0);
  EXPECT_EQ(o.reg_lambda, 0.0);
  EXPECT_EQ(o.flags, 0u);

  npairs_problem p;
  std::memset(&p, 0xAB, sizeof p);
  npairs_problem_init(&p);
  EXPECT_EQ(p.struct_size, sizeof(npairs_problem));
  EXPECT_EQ(p.rows, 0);
  EXPECT_EQ(p.cols, 0);
  EXPECT_EQ(p.dtype, 0);
  EXPECT_EQ(p.labels, nullptr);
  EXPECT_EQ(p.column_labels, nullptr);
  EXPECT_EQ(p.label_dtype, 0);
  EXPECT_EQ(p.multilabels, nullptr);
  EXPECT_EQ(p.column_multilabels, nullptr);
  EXPECT_EQ(p.num_classes, 0);
  EXPECT_EQ(p.similarity, nullptr);
  EXPECT_EQ(p.anchors, nullptr);
  EXPECT_EQ(p.positives, nullptr);
  EXPECT_EQ(p.dim, 0);
  EXPECT_EQ(p.sample_weight, nullptr);

  npairs_gradients g;
  std::memset(&g, 0xAB, sizeof g);
  npairs_gradients_init(&g);
  EXPECT_EQ(g.struct_size, sizeof(npairs_gradients));
  EXPECT_EQ(g.similarity, nullptr);
  EXPECT_EQ(g.anchors, nullptr);
  EXPECT_EQ(g.positives, nullptr);

  npairs_options_init(nullptr);
  npairs_problem_init(nullptr);
  npairs_gradients_init(nullptr);
}

void fail_with_bad_temperature() {
  npt::Context ctx(NPAIRS_BACKEND_CPU);
  ASSERT_NPAIRS_OK(ctx.status());
  const int64_t labels[2] = {0, 1};
  const double s[4] = {0, 0, 0, 0};
  npairs_problem p;
  npairs_problem_init(&p);
  p.rows = 2;
  p.dtype = NPAIRS_F64;
  p.labels = labels;
  p.label_dtype = NPAIRS_I64;
  p.similarity = s;
  npairs_options o;
  npairs_options_init(&o);
  o.temperature = -3;
  double loss = 0;
  EXPECT_EQ(npairs_loss(ctx.get(), &o, &p, nullptr, &loss, nullptr), NPAIRS_ERROR_INVALID_ARGUMENT);
  // A success afterwards keeps the message of the last failure.
  o.temperature = 1;
  EXPECT_NPAIRS_OK(npairs_loss(ctx.get(), &o, &p, nullptr, &loss, nullptr));
}

TEST(LastError, IsPerThread) {
  fail_with_bad_temperature();
  const std::string mine = npairs_last_error();
  EXPECT_TRUE(mentions_any(mine, {"options.temperature"}));

  std::string other_initial, other_after;
  std::thread t([&] {
    other_initial = npairs_last_error();
    npairs_backend b;
    EXPECT_EQ(npairs_context_backend(nullptr, &b), NPAIRS_ERROR_INVALID_ARGUMENT);
    other_after = npairs_last_error();
  });
  t.join();
  EXPECT_EQ(other_initial, "") << "a fresh thread sees no message";
  EXPECT_TRUE(mentions_any(other_after, {"ctx"}));
  EXPECT_EQ(std::string(npairs_last_error()), mine) << "another thread's failure changed this thread's message";
}

}  // namespace
