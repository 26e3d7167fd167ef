// The CUDA row kernels (cuda/row_loss_kernel.cu, as it is now) run on the CPU
// by the emulator of cuda_shim.hpp, against a float64 reference written from
// SPEC section 1 on the stored (rounded) inputs. Each case runs three times,
// under the three thread orders of emu::Schedule, and checks:
// - every output within tolerance of the reference, and bitwise the same
//   under every order (a race between threads would make them differ);
// - the launch is the one cuda/row_kernel_plan.cpp planned (kernel, block
//   size, dynamic shared memory) and its grid-stride loop goes round at least
//   twice where the case says so;
// - every thread of a row's warp or block merged the same row statistics,
//   and every row was finished exactly once;
// - nothing is written outside the outputs (guard zones), the inputs are
//   left alone, and, with the Tracked element types, every dS and row_losses
//   element is written exactly once and no logit is read after its dS
//   overwrote it (in place);
// - no 16-byte vector access is misaligned (tests/CMakeLists.txt builds this
//   test with -fsanitize=alignment, which aborts on one; x86 would not fault).
// The cases cover every kernel (warp, block, staged in shared memory, staged
// and read twice) on both sides of each switch point, every stored dtype,
// aligned and misaligned rows, in place and loss-only calls, label (int32,
// int64) and Gram targets, -inf and huge logits.
//
// It shows that the kernels' logic is right, not that the GPU runs it as
// fast or exactly like this: see cuda_shim.hpp for what emulation cannot
// show (bench/gpu-check.sh runs the real thing on a GPU).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <exception>
#include <iterator>
#include <ostream>
#include <random>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

// First: the CUDA keywords, launches and barriers the kernel source needs.
#include "cuda_shim.hpp"
#include "dtype.cuh"
#include "emulated_test_support.hpp"

#include "row_loss_kernel_emulated.inc"

namespace {

using namespace emulated;
using npairs::cuda::DeviceLimits;
using npairs::cuda::RowKernel;
using npairs::cuda::RowKernelPlan;

enum class Values { normal, minus_infinity, huge, tiny_temperature };  // huge: |z| ~ 1e30; tiny: tau = 1e-40
enum class Upstream { ones, scalar, per_row };        // grad_loss

constexpr std::size_t kSharedH100 = 232448;  // opt-in shared memory per block of an H100/H200
constexpr std::size_t kShared48K = 48 * 1024;

struct Case {
  std::string name;
  Dtype dtype = Dtype::f32;
  bool tracked = false;  // Tracked<T> elements: write counts and in-place reads checked
  int64_t rows = 1, cols = 1;
  Targets targets = Targets::labels_i32;
  bool misaligned = false;       // logits one element past 16-byte alignment
  bool grad_misaligned = false;  // dS aligned differently from the logits
  bool in_place = false;         // dS written over the logits
  bool want_grad = true;
  bool want_row_losses = true, want_losses_to_sum = true;
  bool weights = false;
  Upstream upstream = Upstream::ones;
  Values values = Values::normal;
  bool grid_stride = true;  // rows enough for the grid-stride loop to go round twice
  DeviceLimits limits{2, kSharedH100};
};

std::size_t value_size(Dtype d) {
  return d == Dtype::f64 ? 8 : d == Dtype::f32 ? 4 : 2;
}
// The shared memory the staged kernel keeps for itself (as launch_row_loss).
std::size_t reserved_shared(Dtype d) {
  const std::size_t stats_size =
      d == Dtype::f64 ? sizeof(npairs::RowStats<double>) : sizeof(npairs::RowStats<float>);
  return stats_size * (npairs::cuda::kMaxRowThreads / npairs::cuda::kWarpSize);
}
RowKernelPlan plan_for(const Case& c) {
  return npairs::cuda::plan_row_kernel(c.cols, value_size(c.dtype), c.limits,
                                       reserved_shared(c.dtype));
}

// Rows for which the grid-stride loop goes round twice, the second time with
// most of the grid idle (cudaOccupancyMaxActiveBlocksPerMultiprocessor of
// cuda_shim.hpp: 2 blocks per multiprocessor, 1 of 1024 threads).
int64_t rows_for_two_rounds(const RowKernelPlan& plan, const DeviceLimits& limits) {
  const int64_t resident = (plan.threads >= 1024 ? 1 : 2) * int64_t(limits.multiprocessors);
  const int64_t per_round = resident * plan.rows_per_block;
  return per_round + (plan.rows_per_block > 1 ? 5 : 1);
}

std::string kernel_name(const RowKernelPlan& plan) {
  switch (plan.kernel) {
    case RowKernel::warp: return "warp";
    case RowKernel::block: return "block";
    case RowKernel::staged: return plan.shared_bytes ? "smem" : "read2";
  }
  return "?";
}

std::string case_name(const Case& c) {
  static const char* const dtypes[] = {"f32", "f64", "f16", "bf16"};
  static const char* const targets[] = {"i32", "i64", "gram"};
  std::string n = std::string(dtypes[int(c.dtype)]) + (c.tracked ? "tracked" : "") + "_" +
                  kernel_name(plan_for(c)) + "_M" + std::to_string(c.cols) + "_R" +
                  std::to_string(c.rows) + "_" + targets[int(c.targets)];
  n += c.misaligned ? (c.grad_misaligned ? "_misaligned_gradaligned" : "_misaligned")
                    : (c.grad_misaligned ? "_gradmisaligned" : "_aligned");
  if (c.in_place) n += "_inplace";
  if (!c.want_grad) n += "_lossonly";
  if (!c.want_row_losses) n += "_nolosses";
  if (!c.want_losses_to_sum) n += "_nosum";
  if (c.weights) n += "_weights";
  if (c.upstream == Upstream::scalar) n += "_gScalar";
  if (c.upstream == Upstream::per_row) n += "_gRow";
  if (c.values == Values::minus_infinity) n += "_neginf";
  if (c.values == Values::huge) n += "_huge";
  if (c.values == Values::tiny_temperature) n += "_tinytau";
  if (c.limits.shared_bytes_per_block != kSharedH100)
    n += "_smem" + std::to_string(c.limits.shared_bytes_per_block / 1024) + "K";
  if (c.limits.multiprocessors != 2) n += "_mp" + std::to_string(c.limits.multiprocessors);
  return n;
}

// The cases: for each dtype, row lengths on both sides of every switch point
// of the plan, each in three variants, plus loss-only calls, dS aligned
// unlike the logits and huge logits once per kernel.
std::vector<Case> make_cases() {
  std::vector<Case> cases;
  auto add = [&cases](Case c) {
    if (c.grid_stride) c.rows = rows_for_two_rounds(plan_for(c), c.limits);
    c.name = case_name(c);
    cases.push_back(c);
  };
  for (Dtype dtype : {Dtype::f32, Dtype::f64, Dtype::f16, Dtype::bf16}) {
    const int64_t per_thread = npairs::cuda::row_elements_per_thread(value_size(dtype));
    const int64_t vector = npairs::cuda::kVectorBytes / int64_t(value_size(dtype));
    const int64_t warp_max = npairs::cuda::kWarpSize * per_thread;
    const int64_t block_max = npairs::cuda::kMaxRegisterRowThreads * per_thread;
    // The longest row the staged kernel keeps in 48 KiB of shared memory.
    const int64_t smem_max =
        int64_t((kShared48K - reserved_shared(dtype)) / npairs::cuda::kVectorBytes) * vector;
    struct Length {
      int64_t cols;
      std::size_t shared;
    };
    const Length lengths[] = {
        {1, kSharedH100},                      // warp: a single column
        {7, kSharedH100},                      // warp: a partial vector
        {25 * vector, kSharedH100},            // warp: whole vectors, some threads without any
        {warp_max, kSharedH100},               // warp: its longest row
        {warp_max + 1, kSharedH100},           // block: its shortest row
        {3 * warp_max + vector, kSharedH100},  // block: whole vectors, some threads without any
        {block_max, kSharedH100},              // block: its longest row
        {block_max + 1, kSharedH100},          // staged in shared memory: the shortest row
        {smem_max, kShared48K},                // staged in shared memory: the longest row in 48 KiB
        {smem_max + vector, kShared48K},       // read twice: one vector more
        {block_max + 1, kShared48K / 4},       // read twice: shared memory too small
    };
    for (std::size_t k = 0; k < std::size(lengths); ++k) {
      Case base;
      base.dtype = dtype;
      base.cols = lengths[k].cols;
      base.limits = DeviceLimits{2, lengths[k].shared};
      // Labels, aligned or not in turn, weights and a per-row upstream
      // gradient.
      Case a = base;
      a.misaligned = k % 2 == 1;
      a.weights = true;
      a.upstream = Upstream::per_row;
      add(a);
      // int64 labels, misaligned, in place, scalar upstream gradient, 3 SMs.
      Case b = base;
      b.tracked = true;
      b.targets = Targets::labels_i64;
      b.misaligned = true;
      b.in_place = true;
      b.upstream = Upstream::scalar;
      b.limits.multiprocessors = 3;
      add(b);
      // Gram targets, aligned, in place, -inf logits, only the per-row losses.
      Case c = base;
      c.tracked = true;
      c.targets = Targets::gram;
      c.in_place = true;
      c.values = Values::minus_infinity;
      c.want_losses_to_sum = false;
      add(c);
    }
    // Once per kernel: loss only; dS aligned unlike the logits on few rows
    // (a grid smaller than the device); huge logits, misaligned.
    for (const Length& length : {Length{warp_max - 3, kSharedH100}, Length{2 * warp_max, kSharedH100},
                                 Length{block_max + 8 * vector, kSharedH100},
                                 Length{block_max + 8 * vector, kShared48K / 4}}) {
      Case base;
      base.dtype = dtype;
      base.cols = length.cols;
      base.limits = DeviceLimits{2, length.shared};
      Case loss_only = base;
      loss_only.tracked = true;
      loss_only.targets = Targets::gram;
      loss_only.want_grad = false;
      loss_only.weights = true;
      loss_only.upstream = Upstream::per_row;
      add(loss_only);
      Case grad_misaligned = base;
      grad_misaligned.tracked = true;
      grad_misaligned.grad_misaligned = true;
      grad_misaligned.grid_stride = false;
      grad_misaligned.rows = 2;
      grad_misaligned.targets = Targets::labels_i64;
      grad_misaligned.want_row_losses = false;
      add(grad_misaligned);
      if (dtype == Dtype::f32 || dtype == Dtype::f64) {
        Case huge = base;
        huge.misaligned = true;
        huge.values = Values::huge;
        huge.weights = true;
        add(huge);
      }
      // 1/tau = 1e40 overflows float; z = S/tau ~ 1e28 does not (float16
      // cannot hold S ~ 1e-12).
      if (dtype != Dtype::f16) {
        Case tiny = base;
        tiny.values = Values::tiny_temperature;
        tiny.upstream = Upstream::scalar;
        add(tiny);
      }
    }
  }
  return cases;
}

template <class T, class TargetsT>
void (*planned_kernel(RowKernel kernel))() {
  switch (kernel) {
    case RowKernel::warp:
      return reinterpret_cast<void (*)()>(&npairs::cuda::row_loss_warp_kernel<T, TargetsT>);
    case RowKernel::block:
      return reinterpret_cast<void (*)()>(&npairs::cuda::row_loss_block_kernel<T, TargetsT>);
    case RowKernel::staged:
      return reinterpret_cast<void (*)()>(&npairs::cuda::row_loss_staged_kernel<T, TargetsT>);
  }
  return nullptr;
}

// Label is the label type, also for Gram targets (kGram), where the labels
// go unused.
template <class T, class Label, bool kGram>
void run_case(const Case& c, TypeTag<T>, TypeTag<Label>, std::bool_constant<kGram>) {
  using C = compute_t<T>;
  using TargetsT = TargetsOf<C, Label, kGram>;
  constexpr bool kTracked = !std::is_same_v<T, typename Stored<T>::type>;
  const std::size_t rows = std::size_t(c.rows), cols = std::size_t(c.cols), n = rows * cols;
  std::mt19937_64 rng(fnv1a(c.name));
  std::uniform_real_distribution<double> uniform(0, 1);
  std::normal_distribution<double> normal(0, 3);

  // Targets: every row has a positive column.
  std::vector<Label> column_labels(cols), labels(rows);
  const Label label_step = sizeof(Label) == 8 ? Label(1) << 40 : Label(100003);  // beyond int32 for int64
  for (Label& l : column_labels) l = Label(rng() % 5) * label_step + 3;
  for (Label& l : labels) l = column_labels[rng() % cols];
  std::vector<C> gram;
  if (kGram) {
    gram.assign(n, C(0));
    for (std::size_t i = 0; i < rows; ++i) {
      for (std::size_t j = 0; j < cols; ++j)
        if (uniform(rng) < 0.3) gram[i * cols + j] = C(int(uniform(rng) * 4));
      gram[i * cols + rng() % cols] += C(1.5);
    }
  }
  auto q = [&](std::size_t i, std::size_t j) -> double {
    return kGram ? double(gram[i * cols + j]) : (labels[i] == column_labels[j] ? 1 : 0);
  };

  GuardedArray<T> logits(n, c.misaligned);
  GuardedArray<T> separate_grad(c.want_grad && !c.in_place ? n : 0, c.misaligned != c.grad_misaligned);
  GuardedArray<T> row_losses(rows, false), weights(rows, false);
  GuardedArray<T> upstream(c.upstream == Upstream::per_row ? rows : 1, false);
  GuardedArray<C> losses_to_sum(rows, false);
  const double temperature = c.values == Values::huge               ? 1.0
                             : c.values == Values::tiny_temperature ? 1e-40
                                                                    : 0.3;
  const C grad_factor = C(0.37);
  for (std::size_t i = 0; i < rows; ++i)
    for (std::size_t j = 0; j < cols; ++j) {
      double x = c.values == Values::huge               ? normal(rng) * 1e29
                 : c.values == Values::tiny_temperature ? normal(rng) * 1e-12
                                                        : normal(rng);
      if (c.values == Values::minus_infinity && q(i, j) == 0 && uniform(rng) < 0.15) x = -INFINITY;
      logits.data()[i * cols + j] = from_double<T>(x);
    }
  for (std::size_t i = 0; i < weights.size(); ++i) weights.data()[i] = from_double<T>(0.25 + 2 * uniform(rng));
  for (std::size_t i = 0; i < upstream.size(); ++i) upstream.data()[i] = from_double<T>(-2 + 4 * uniform(rng));
  const std::vector<unsigned char> logits_bytes = logits.copy_bytes();

  // The float64 reference from the stored values (SPEC section 1):
  // loss_i = w_i (logsumexp_j z_ij - sum_j T_ij z_ij), T row-normalised;
  // dL/dS_ij = grad_factor g_i w_i (softmax(z_i)_j - T_ij).
  std::vector<double> ref_loss(rows), ref_grad(n), loss_scale(rows), grad_scale(rows), z(cols);
  for (std::size_t i = 0; i < rows; ++i) {
    double max = -INFINITY, largest_finite = 0, normaliser = 0;
    for (std::size_t j = 0; j < cols; ++j) {
      z[j] = to_double(logits.data()[i * cols + j]) / temperature;
      max = std::max(max, z[j]);
      if (std::isfinite(z[j])) largest_finite = std::max(largest_finite, std::fabs(z[j]));
      normaliser += q(i, j);
    }
    double sum_exp = 0, target_term = 0;
    for (std::size_t j = 0; j < cols; ++j) {
      sum_exp += std::exp(z[j] - max);
      if (q(i, j) != 0) target_term += q(i, j) / normaliser * z[j];
    }
    const double w = c.weights ? to_double(weights.data()[i]) : 1.0;
    const double g = c.upstream == Upstream::ones
                         ? 1.0
                         : to_double(upstream.data()[c.upstream == Upstream::per_row ? i : 0]);
    ref_loss[i] = w * (max + std::log(sum_exp) - target_term);
    loss_scale[i] = std::fabs(w) * (1 + largest_finite);
    grad_scale[i] = double(grad_factor) * g * w;
    for (std::size_t j = 0; j < cols; ++j)
      ref_grad[i * cols + j] = grad_scale[i] * (std::exp(z[j] - max) / sum_exp - q(i, j) / normaliser);
  }

  T* const grad = !c.want_grad ? nullptr : c.in_place ? logits.data() : separate_grad.data();
  npairs::cuda::RowLossArgs<T> args{};
  args.logits = logits.data();
  args.logit_scale = npairs::logit_scale<C>(temperature);
  args.rows = c.rows;
  args.cols = c.cols;
  args.sample_weight = c.weights ? weights.data() : nullptr;
  args.grad_loss = c.upstream == Upstream::ones ? nullptr : upstream.data();
  args.grad_loss_per_row = c.upstream == Upstream::per_row;
  args.grad_factor = grad_factor;
  args.row_losses = c.want_row_losses ? row_losses.data() : nullptr;
  args.row_losses_to_sum = c.want_losses_to_sum ? losses_to_sum.data() : nullptr;
  args.grad_logits = grad;

  const RowKernelPlan plan = plan_for(c);
  const int64_t blocks_wanted = (c.rows + plan.rows_per_block - 1) / plan.rows_per_block;
  const std::vector<unsigned char> untouched_row_losses(rows * sizeof(T), kPoisonByte);
  const std::vector<unsigned char> untouched_losses_to_sum(rows * sizeof(C), kPoisonByte);
  std::vector<unsigned char> first_outputs;  // under kSchedules[0]
  for (emu::Schedule schedule : kSchedules) {
    SCOPED_TRACE("schedule " + std::to_string(int(schedule)));
    logits.assign_bytes(logits_bytes);
    separate_grad.fill_bytes(kPoisonByte);
    row_losses.fill_bytes(kPoisonByte);
    losses_to_sum.fill_bytes(kPoisonByte);
    emu::schedule = schedule;
    emu::row_group_threads = plan.kernel == RowKernel::warp ? emu::kWarpSize : unsigned(plan.threads);
    emu::launches.clear();
    emu::errors.clear();
    emu::rows_finished = 0;
    emu::max_dynamic_shared_attribute = 0;
    tracking::clear();
    if constexpr (kTracked) {
      if (grad) tracking::watched[0].watch(grad, n, sizeof(T));
      if (c.want_row_losses) tracking::watched[1].watch(row_losses.data(), rows, sizeof(T));
    }

    try {
      if constexpr (kGram)
        npairs::cuda::launch_row_loss<T>(args, TargetsT{gram.data(), c.cols}, c.limits, nullptr);
      else
        npairs::cuda::launch_row_loss<T>(args, TargetsT{labels.data(), column_labels.data()}, c.limits,
                                         nullptr);
    } catch (const std::exception& e) {
      ADD_FAILURE() << "launch_row_loss threw: " << e.what();
    }

    for (const std::string& e : emu::errors) ADD_FAILURE() << "emulator: " << e;
    ASSERT_EQ(emu::launches.size(), 1u);
    const emu::Launch& launch = emu::launches[0];
    EXPECT_EQ(launch.kernel, (planned_kernel<T, TargetsT>(plan.kernel))) << "not the planned kernel";
    EXPECT_EQ(launch.threads, unsigned(plan.threads));
    EXPECT_EQ(launch.shared_bytes, plan.shared_bytes);
    EXPECT_LE(int64_t(launch.grid), blocks_wanted);
    if (c.grid_stride) {
      EXPECT_LT(int64_t(launch.grid), blocks_wanted) << "the grid-stride loop never goes round";
    }
    EXPECT_EQ(emu::rows_finished, c.rows) << "rows a group finished (each row once)";

    if constexpr (kTracked) {
      const std::vector<int>& grad_writes = tracking::watched[0].writes;
      const std::vector<int>& row_loss_writes = tracking::watched[1].writes;
      FailureLog wrong_count("dS elements not written exactly once");
      for (std::size_t k = 0; k < grad_writes.size(); ++k)
        if (grad_writes[k] != 1)
          wrong_count.add("element " + std::to_string(k) + " written " + std::to_string(grad_writes[k]) + " times");
      for (std::size_t k = 0; k < row_loss_writes.size(); ++k)
        EXPECT_EQ(row_loss_writes[k], 1) << "row_losses[" << k << "] writes";
      EXPECT_EQ(tracking::reads_after_write, 0) << "reads of dS or row_losses elements after they were written";
    }
    tracking::clear();
    EXPECT_TRUE(logits.guards_intact()) << "write next to the logits";
    EXPECT_TRUE(separate_grad.guards_intact()) << "write next to dS";
    EXPECT_TRUE(row_losses.guards_intact()) << "write next to row_losses";
    EXPECT_TRUE(losses_to_sum.guards_intact()) << "write next to row_losses_to_sum";
    if (!(c.in_place && c.want_grad)) {
      EXPECT_TRUE(logits.copy_bytes() == logits_bytes) << "logits changed";
    }
    if (!c.want_row_losses) {
      EXPECT_TRUE(row_losses.copy_bytes() == untouched_row_losses) << "row_losses written";
    }
    if (!c.want_losses_to_sum) {
      EXPECT_TRUE(losses_to_sum.copy_bytes() == untouched_losses_to_sum) << "row_losses_to_sum written";
    }

    const double u = unit_roundoff<T>(), tolerance = compute_tolerance<T>();
    FailureLog loss_errors("losses off the reference"), grad_errors("dS off the reference");
    for (std::size_t i = 0; i < rows; ++i) {
      const double ref = ref_loss[i];
      const double loss_tolerance = tolerance * loss_scale[i];
      if (c.want_row_losses) {
        const double got = to_double(row_losses.data()[i]);
        if (!(std::fabs(got - ref) <= loss_tolerance + 2 * u * std::fabs(ref)))
          loss_errors.add("row_losses[" + std::to_string(i) + "] = " + std::to_string(got) + ", reference " +
                          std::to_string(ref));
      }
      if (c.want_losses_to_sum) {
        const double got = double(losses_to_sum.data()[i]);
        if (!(std::fabs(got - ref) <= loss_tolerance))
          loss_errors.add("row_losses_to_sum[" + std::to_string(i) + "] = " + std::to_string(got) +
                          ", reference " + std::to_string(ref));
      }
      if (!grad) continue;
      const double grad_tolerance = tolerance * std::fabs(grad_scale[i]) + subnormal_floor<T>();
      for (std::size_t j = 0; j < cols; ++j) {
        const double r = ref_grad[i * cols + j];
        const double got = to_double(grad[i * cols + j]);
        if (!(std::fabs(got - r) <= grad_tolerance + 2 * u * std::fabs(r)))
          grad_errors.add("dS[" + std::to_string(i) + "][" + std::to_string(j) + "] = " + std::to_string(got) +
                          ", reference " + std::to_string(r));
      }
    }

    // Every schedule must give the same bytes.
    std::vector<unsigned char> outputs = row_losses.copy_bytes();
    const std::vector<unsigned char> sums = losses_to_sum.copy_bytes();
    outputs.insert(outputs.end(), sums.begin(), sums.end());
    if (grad) {
      const auto* grad_bytes = reinterpret_cast<const unsigned char*>(grad);
      outputs.insert(outputs.end(), grad_bytes, grad_bytes + n * sizeof(T));
    }
    expect_same_as_first_schedule(schedule, outputs, first_outputs);
  }
}

// What GoogleTest prints for a failing case.
void PrintTo(const Case& c, std::ostream* os) { *os << c.name; }

class EmulatedRowKernels : public ::testing::TestWithParam<Case> {};

TEST_P(EmulatedRowKernels, MatchTheReference) {
  const Case& c = GetParam();
  with_case_types(c.dtype, c.tracked, c.targets, [&c](auto... types) { run_case(c, types...); });
}

INSTANTIATE_TEST_SUITE_P(Cases, EmulatedRowKernels, ::testing::ValuesIn(make_cases()), CaseName());

}  // namespace
