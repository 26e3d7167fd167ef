// Shared helpers of the libnpairs tests: a RAII context, typed host arrays
// with poisoned guard elements, random problem generation (with the matching
// float64 reference problem), and tolerance comparisons.
#pragma once

#include <gtest/gtest.h>
#include <npairs/npairs.h>

#include <cstdint>
#include <cstring>
#include <functional>
#include <initializer_list>
#include <random>
#include <string>
#include <vector>

#include "reference.hpp"

// Asserts that an npairs call returned NPAIRS_OK, printing the status and
// npairs_last_error() otherwise. Evaluates `expr` once.
#define ASSERT_NPAIRS_OK(expr)                                                          \
  do {                                                                                  \
    const npairs_status npt_status_ = (expr);                                           \
    ASSERT_EQ(npt_status_, NPAIRS_OK) << #expr << " -> " << npairs_status_string(npt_status_) \
                                      << ": " << npairs_last_error();                   \
  } while (0)
#define EXPECT_NPAIRS_OK(expr)                                                          \
  do {                                                                                  \
    const npairs_status npt_status_ = (expr);                                           \
    EXPECT_EQ(npt_status_, NPAIRS_OK) << #expr << " -> " << npairs_status_string(npt_status_) \
                                      << ": " << npairs_last_error();                   \
  } while (0)

namespace npt {

std::size_t dtype_size(npairs_dtype dtype);
const char* dtype_name(npairs_dtype dtype);

// Bit conversions of the 16-bit float dtypes (round to nearest, ties to even).
double half_to_double(uint16_t bits);
uint16_t double_to_half(double v);
double bfloat16_to_double(uint16_t bits);
uint16_t double_to_bfloat16(double v);
double round_to_half(double v);
double round_to_bfloat16(double v);
const char* reduction_name(npairs_reduction reduction);
ref::Reduction to_ref(npairs_reduction reduction);

// SPEC section 1's check value, the one definition every test uses:
// anchors = positives = kCheckPoints (4 x 2), labels [0, 0, 1, 1], the
// default reduction. Header-only, so that test_dlopen (which does not link
// the library) uses it too.
inline constexpr double kCheckValue = 1.253856022085945;
inline constexpr double kCheckPoints[8] = {1, 1, 1, -1, -1, 1, -1, -1};
inline constexpr int64_t kCheckLabels[4] = {0, 0, 1, 1};
inline constexpr int32_t kCheckLabels32[4] = {0, 0, 1, 1};
inline constexpr double kCheckOneHot[8] = {1, 0, 1, 0, 0, 1, 0, 1};  // one-hot rows of kCheckLabels

// The check problem over `embeddings` (kCheckPoints in the problem's dtype)
// with `labels` of `label_dtype`; callers swap in other targets or logits.
npairs_problem check_problem(npairs_dtype dtype, const void* labels, npairs_dtype label_dtype, const void* embeddings);
// S = A A^T of kCheckPoints, computed here by its definition (row-major 4 x 4).
std::vector<double> check_similarity();

// A context that is destroyed at scope exit. status() tells whether
// npairs_context_create succeeded.
class Context {
 public:
  explicit Context(npairs_backend backend = NPAIRS_BACKEND_CPU, int32_t device = 0) {
    status_ = npairs_context_create(backend, device, &ctx_);
    if (status_ != NPAIRS_OK) ctx_ = nullptr;
  }
  ~Context() {
    if (ctx_ != nullptr) npairs_context_destroy(ctx_);
  }
  Context(const Context&) = delete;
  Context& operator=(const Context&) = delete;
  npairs_context get() const { return ctx_; }
  npairs_status status() const { return status_; }

 private:
  npairs_context ctx_ = nullptr;
  npairs_status status_ = NPAIRS_OK;
};

// Deterministic random numbers.
class Rng {
 public:
  explicit Rng(uint64_t seed) : gen_(seed) {}
  double uniform(double lo, double hi) { return std::uniform_real_distribution<double>(lo, hi)(gen_); }
  double normal() { return std::normal_distribution<double>(0.0, 1.0)(gen_); }
  int64_t integer(int64_t lo, int64_t hi) {  // inclusive
    return std::uniform_int_distribution<int64_t>(lo, hi)(gen_);
  }
  bool bernoulli(double p) { return uniform(0.0, 1.0) < p; }

 private:
  std::mt19937_64 gen_;
};

// splitmix64's finaliser: a well-mixed 64-bit hash of x, for choices that
// depend on a case's index only.
inline uint64_t splitmix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

// A host array of one npairs dtype (F32, F64, I32, I64) with `guard` extra
// elements on each side. poison() fills everything (guards too) with a NaN
// with a distinctive payload (integers: 0x5A bytes), so a test can tell which
// elements a call wrote and whether it wrote outside the array.
class Array {
 public:
  static constexpr std::size_t kGuard = 8;
  Array() = default;
  Array(npairs_dtype dtype, std::size_t count, std::size_t guard = kGuard);

  npairs_dtype dtype() const { return dtype_; }
  std::size_t size() const { return count_; }
  bool empty_array() const { return bytes_.empty(); }
  // Never NULL for a constructed array (even with size() == 0).
  void* data() { return bytes_.empty() ? nullptr : bytes_.data() + guard_ * elem_; }
  const void* data() const { return bytes_.empty() ? nullptr : bytes_.data() + guard_ * elem_; }

  double get(std::size_t i) const;
  void set(std::size_t i, double v);  // rounds to the dtype
  int64_t get_int(std::size_t i) const;
  void set_int(std::size_t i, int64_t v);
  std::vector<double> values() const;
  std::vector<int64_t> int_values() const;
  void fill(double v);

  void poison();
  // True when element i (-guard <= i < size + guard) still holds the poison.
  bool is_poison(std::ptrdiff_t i) const;
  bool guards_intact() const;
  // Index of the first element still poisoned, or -1 when every one was written.
  std::ptrdiff_t first_unwritten() const;
  // The raw bytes, guards included (for bitwise comparisons and for copies
  // to and from device memory); data() is raw_bytes() + data_offset().
  const std::vector<unsigned char>& bytes() const { return bytes_; }
  unsigned char* raw_bytes() { return bytes_.data(); }
  std::size_t data_offset() const { return guard_ * elem_; }

 private:
  const unsigned char* elem_ptr(std::ptrdiff_t i) const {
    return bytes_.data() + static_cast<std::ptrdiff_t>(guard_ * elem_) + i * static_cast<std::ptrdiff_t>(elem_);
  }
  npairs_dtype dtype_ = NPAIRS_F64;
  std::size_t count_ = 0;
  std::size_t guard_ = 0;
  std::size_t elem_ = 0;
  std::vector<unsigned char> bytes_;
};

// Compares `got` with `ref` elementwise: |got - ref| <= rtol * (|ref| + scale),
// scale = max(max_i |ref_i|, min_scale). Reports the worst elements.
::testing::AssertionResult all_close(const std::string& what, const std::vector<double>& got,
                                     const std::vector<double>& ref, double rtol, double min_scale = 0.0);
template <class Real>
std::vector<double> to_double(const std::vector<Real>& v) {
  return std::vector<double>(v.begin(), v.end());
}

// Checks that an output array was fully written (no poisoned element left)
// and that its guards are intact.
::testing::AssertionResult fully_written(const std::string& what, const Array& a);

// Description of a random problem.
struct Spec {
  npairs_dtype dtype = NPAIRS_F64;
  npairs_dtype label_dtype = NPAIRS_I64;  // with multilabels: the value put in the (ignored) field
  bool multilabel = false;
  bool embeddings = false;
  bool column_targets = false;  // separate column targets (rectangular when cols != rows)
  int64_t rows = 4;
  int64_t cols = 4;     // used only with column_targets
  int64_t dim = 3;      // embeddings only
  int64_t classes = 3;  // labels: number of distinct labels; multilabels: K
  bool big_labels = false;  // labels near the integer type's extremes (not exact in float/double)
  bool weights = false;
  bool grad_loss = false;
  npairs_reduction reduction = NPAIRS_REDUCTION_SUM_OVER_BATCH_SIZE;
  double temperature = 1.0;
  double reg_lambda = 0.0;
  bool symmetric = false;  // NPAIRS_FLAG_SYMMETRIC (column targets then give every column a positive row)
  uint64_t seed = 1;
};

// The inputs of a random problem, stored in the problem's dtypes, plus the
// matching float64 reference problem (built from the stored, rounded values).
struct Inputs {
  Spec spec;
  int64_t R = 0, M = 0, D = 0, K = 0;
  Array labels, column_labels, multilabels, column_multilabels;
  Array similarity, anchors, positives, sample_weight, grad_loss;

  npairs_problem problem() const;  // pointers into the arrays above
  npairs_options options() const;
  const void* grad_loss_ptr() const { return spec.grad_loss ? grad_loss.data() : nullptr; }
  ref::Problem reference() const;
  std::size_t loss_count() const { return spec.reduction == NPAIRS_REDUCTION_NONE ? static_cast<std::size_t>(R) : 1; }
};
Inputs make_inputs(const Spec& spec);

// A similarity problem with the given values: S (R x M, row-major), row
// labels [R] and column labels [M] (int64), the other options as in Spec.
Inputs similarity_inputs(npairs_dtype dtype, int64_t rows, int64_t cols, const std::vector<double>& similarity,
                         const std::vector<int64_t>& labels, const std::vector<int64_t>& column_labels);

// A few-hundred-row rectangular embeddings problem with every option on
// (column labels, weights, grad_loss, temperature, L2).
Spec all_features_spec(npairs_dtype dtype, int64_t classes, uint64_t seed);

// SPEC section 5's sweep of cases: every input kind (similarity or
// embeddings, labels or multi-labels, square or rectangular with column
// targets) in each of `dtypes` (no multi-labels in a 16-bit dtype:
// UNSUPPORTED), both scalar reductions; symmetric, and (not symmetric)
// dL/dtau alone with weights and NONE too. The options cycle with the case's
// index (from 1), the sizes as `SymmetricSizes` says.
struct SymmetricSizes {
  uint64_t seed_step;                               // seed = index * seed_step
  int64_t rows;                                     // rows + 2 (index % 5)
  int64_t even_cols, odd_cols;                      // rectangular, by the index's parity
  int64_t dim, dim_cycle;                           // dim + index % dim_cycle
  int64_t multilabel_classes, rectangular_classes;  // a square labels case has a class a row
  bool big_labels;  // labels near the integer type's extremes in every fourth labels case
};
struct SymmetricCase {
  int index = 0;
  std::string name;
  Spec spec;
  bool want_similarity = false, want_anchors = false, want_positives = false;
};
std::vector<SymmetricCase> symmetric_sweep(std::initializer_list<npairs_dtype> dtypes, const SymmetricSizes& sizes);

// SPEC section 5 at R = 0 without column targets (M = 0): a symmetric call
// on `ctx` gives a loss and dL/dtau of 0.
void expect_symmetric_no_rows_gives_zeros(npairs_context ctx);

// Whether `message` contains every one of `parts`.
bool mentions(const std::string& message, std::initializer_list<const char*> parts);

// A small symmetric problem whose column 4 (and nothing else) has no
// positive row: a label of no row, or no class; the first seed whose rows
// all keep a positive.
Inputs symmetric_column_without_positive(bool multilabel, npairs_dtype dtype = NPAIRS_F64);

// SPEC section 5's bad input on `ctx`, dense and streamed, labels and
// multi-labels: a column without a positive row is INVALID_VALUE naming the
// column and its argument, outputs untouched (the same input is valid
// without the flag); without rows, column 0 is named.
void expect_symmetric_column_without_positive_fails(npairs_context ctx);

// Output buffers (each poisoned on creation) for the outputs wanted; the
// loss is always allocated, a gradient only when wanted (empty otherwise), so
// that a large problem need not hold an R x M dS it does not ask for.
struct Outputs {
  Array loss, grad_similarity, grad_anchors, grad_positives, grad_temperature;
  bool want_loss = false, want_similarity = false, want_anchors = false, want_positives = false;
  bool want_temperature = false;

  Outputs() = default;
  Outputs(const Inputs& in, bool loss, bool similarity, bool anchors, bool positives, bool temperature = false);
  void poison();
  void* loss_ptr() { return want_loss ? loss.data() : nullptr; }
  npairs_gradients grads();
  bool any_grads() const { return want_similarity || want_anchors || want_positives || want_temperature; }
};

// Calls npairs_loss on `ctx` with the inputs and outputs.
npairs_status run_loss(npairs_context ctx, const Inputs& in, Outputs& out);

// npairs_workspace_size of run_loss(ctx, in, out) under the context's limit.
npairs_status workspace_size(npairs_context ctx, const Inputs& in, Outputs& out, std::size_t* bytes);

// The smallest workspace limit that call runs under, read from the
// OUT_OF_MEMORY message of a one-byte limit (which must name both); leaves
// the context without a limit.
std::size_t smallest_workspace(npairs_context ctx, const Inputs& in, Outputs& out);

// Poisons `outputs`, runs `call`, and checks that it returned `expected`
// with a one-line message from npairs_last_error() and every output bitwise
// untouched (guards included). The message stays in npairs_last_error().
::testing::AssertionResult fails_leaving_untouched(const std::function<npairs_status()>& call,
                                                   std::initializer_list<Array*> outputs, npairs_status expected);

// fails_leaving_untouched for run_loss(ctx, in, out) and the four outputs.
::testing::AssertionResult fails_leaving_outputs_untouched(npairs_context ctx, const Inputs& in, Outputs& out,
                                                           npairs_status expected);

// Compares every wanted output (fully written, guards intact) with the
// reference result, at rtol.
void expect_matches_reference(const Inputs& in, Outputs& out, const ref::Result<double>& expected, double rtol);

// The natural tolerance of a dtype for results compared with the float64
// reference: float64 1e-12, float32 1e-5 (relative, with the output's scale).
// The 16-bit dtypes store the logits and every output rounded (unit
// roundoff 2^-11 and 2^-8): 10 and 8 units.
inline double default_rtol(npairs_dtype dtype) {
  switch (dtype) {
    case NPAIRS_F32: return 1e-5;
    case NPAIRS_F16: return 5e-3;
    case NPAIRS_BF16: return 3e-2;
    default: return 1e-12;
  }
}

// The unit roundoff of float32 (2^-24) and float64 (2^-53).
inline double unit_roundoff(npairs_dtype dtype) { return dtype == NPAIRS_F32 ? 0x1p-24 : 0x1p-53; }

}  // namespace npt
