// What the emulated kernel tests share: element types that report every
// read and write (Tracked), arrays between guard zones, the tolerances of
// each stored type, a log that shows the first few of many failures, the
// thread orders every case runs under, and the dispatch of a case to the
// element, label and target types it names.
// Include after cuda_shim.hpp and dtype.cuh, before the kernel source.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <exception>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "guarded_array.hpp"
#include "targets.cuh"

// Counts, while a launch runs, the writes to each element of the arrays the
// test watches, and the reads of an element of a watched array after it was
// written (with dS in place of the logits: a logit read after it was
// overwritten).
namespace tracking {

struct WatchedArray {
  std::uintptr_t begin = 0;
  std::size_t element_bytes = 1;
  std::vector<int> writes;  // per element; empty when not watched

  void watch(const void* data, std::size_t elements, std::size_t bytes_per_element) {
    begin = reinterpret_cast<std::uintptr_t>(data);
    element_bytes = bytes_per_element;
    writes.assign(elements, 0);
  }
  // The element at p, or -1 when p is not in the array.
  std::ptrdiff_t index(const void* p) const {
    const std::uintptr_t a = reinterpret_cast<std::uintptr_t>(p);
    if (a < begin || a >= begin + writes.size() * element_bytes) return -1;
    return std::ptrdiff_t((a - begin) / element_bytes);
  }
};

inline WatchedArray watched[2];
inline int64_t reads_after_write = 0;

inline void clear() {
  for (WatchedArray& array : watched) array = {};
  reads_after_write = 0;
}
inline void on_read(const void* p) {
  for (const WatchedArray& array : watched) {
    const std::ptrdiff_t k = array.index(p);
    if (k >= 0 && array.writes[std::size_t(k)] > 0) ++reads_after_write;
  }
}
inline void on_write(const void* p) {
  for (WatchedArray& array : watched) {
    const std::ptrdiff_t k = array.index(p);
    if (k >= 0) ++array.writes[std::size_t(k)];
  }
}

}  // namespace tracking

// S with every copy and assignment reported to `tracking`. Same size and
// values as S, so the kernels compute exactly what they compute for S.
template <class S>
struct Tracked {
  using Compute = npairs::cuda::compute_t<S>;
  S value;

  Tracked() = default;
  explicit Tracked(Compute x) : value(npairs::cuda::from_compute<S>(x)) {}
  Tracked(const Tracked& other) : value(other.value) { tracking::on_read(&other); }
  Tracked& operator=(const Tracked& other) {
    tracking::on_read(&other);
    tracking::on_write(this);
    value = other.value;
    return *this;
  }
  explicit operator Compute() const { return npairs::cuda::to_compute(value); }
};

namespace npairs::cuda {
template <class S>
struct DtypeTraits<Tracked<S>> : DtypeTraits<S> {};
}  // namespace npairs::cuda

namespace emulated {

using npairs::cuda::compute_t;

// The element type a test type stores.
template <class T>
struct Stored {
  using type = T;
};
template <class S>
struct Stored<Tracked<S>> {
  using type = S;
};

template <class T>
double to_double(const T& x) {
  return double(npairs::cuda::to_compute<T>(x));
}
template <class T>
T from_double(double x) {
  return npairs::cuda::from_compute<T>(compute_t<T>(x));
}

// The relative error of rounding to the stored type (0: outputs in the
// compute type), and half the smallest subnormal (the error of a tiny value).
template <class T>
double unit_roundoff() {
  using S = typename Stored<T>::type;
  if constexpr (std::is_same_v<S, __half>) return std::ldexp(1.0, -11);
  if constexpr (std::is_same_v<S, __nv_bfloat16>) return std::ldexp(1.0, -8);
  return 0;
}
template <class T>
double subnormal_floor() {
  using S = typename Stored<T>::type;
  if constexpr (std::is_same_v<S, __half>) return std::ldexp(1.0, -25);
  if constexpr (std::is_same_v<S, __nv_bfloat16>) return std::ldexp(1.0, -134);
  return 0;
}
// The error of the kernels' float or double arithmetic, relative to the
// row's scale.
template <class T>
double compute_tolerance() {
  return std::is_same_v<compute_t<T>, double> ? 1e-12 : 1e-5;
}

using emu::GuardedArray;

// Unwritten outputs read as NaN in every floating type.
constexpr unsigned char kPoisonByte = 0xFF;

inline uint64_t fnv1a(const std::string& s) {
  uint64_t h = 14695981039346656037ull;
  for (char ch : s) h = (h ^ static_cast<unsigned char>(ch)) * 1099511628211ull;
  return h;
}

// Reports the first few of many failures of one kind, then their count.
class FailureLog {
 public:
  explicit FailureLog(std::string what) : what_(std::move(what)) {}
  ~FailureLog() {
    if (count_ > kShown) ADD_FAILURE() << count_ << " " << what_ << " in all";
  }
  void add(const std::string& message) {
    if (++count_ <= kShown) ADD_FAILURE() << what_ << ": " << message;
  }

 private:
  static constexpr int kShown = 5;
  std::string what_;
  int count_ = 0;
};

constexpr emu::Schedule kSchedules[] = {emu::Schedule::in_order, emu::Schedule::reversed,
                                        emu::Schedule::warp_by_warp};

// Keeps the outputs of the first schedule in `first` and expects those of
// every later schedule to be the same bytes (a race between threads would
// make them differ).
inline void expect_same_as_first_schedule(emu::Schedule schedule, const std::vector<unsigned char>& outputs,
                                          std::vector<unsigned char>& first) {
  if (schedule == kSchedules[0])
    first = outputs;
  else
    EXPECT_TRUE(outputs == first) << "outputs differ from schedule 0's";
}

// Runs `launch_once` (which resets its outputs and launches) under every
// schedule, with an unrelated error pending that no launcher may report or
// clear (issue 10, item 2), and returns the launches of the last run.
// `outputs` returns the bytes that must not depend on the schedule.
template <class Launch, class Outputs>
std::vector<emu::Launch> run_under_every_schedule(Launch&& launch_once, Outputs&& outputs) {
  std::vector<unsigned char> first;
  for (emu::Schedule schedule : kSchedules) {
    SCOPED_TRACE("schedule " + std::to_string(int(schedule)));
    emu::schedule = schedule;
    emu::launches.clear();
    emu::errors.clear();
    emu::pending_error = cudaErrorMemoryAllocation;  // the caller's, not the launch's
    try {
      launch_once();
    } catch (const std::exception& e) {
      ADD_FAILURE() << "the launcher threw: " << e.what();
    }
    emu::pending_error = cudaSuccess;
    for (const std::string& e : emu::errors) ADD_FAILURE() << "emulator: " << e;
    expect_same_as_first_schedule(schedule, outputs(), first);
  }
  return emu::launches;
}

enum class Dtype { f32, f64, f16, bf16 };
enum class Targets { labels_i32, labels_i64, gram };

// The kernels' targets in compute type C: Gram targets (kGram) or labels of
// type Label.
template <class C, class Label, bool kGram>
using TargetsOf = std::conditional_t<kGram, npairs::cuda::GramTargets<C>, npairs::cuda::LabelTargets<C, Label>>;

template <class T>
struct TypeTag {
  using type = T;
};

namespace detail {

template <class T, class Run>
void with_targets(Targets targets, Run& run) {
  switch (targets) {
    case Targets::labels_i32: run(TypeTag<T>{}, TypeTag<int32_t>{}, std::false_type{}); break;
    case Targets::labels_i64: run(TypeTag<T>{}, TypeTag<int64_t>{}, std::false_type{}); break;
    case Targets::gram: run(TypeTag<T>{}, TypeTag<int32_t>{}, std::true_type{}); break;
  }
}

template <bool kTracked, class Run>
void with_types(Dtype dtype, Targets targets, Run& run) {
  auto element = [&](auto stored) {
    using S = typename decltype(stored)::type;
    with_targets<std::conditional_t<kTracked, Tracked<S>, S>>(targets, run);
  };
  switch (dtype) {
    case Dtype::f32: element(TypeTag<float>{}); break;
    case Dtype::f64: element(TypeTag<double>{}); break;
    case Dtype::f16: element(TypeTag<__half>{}); break;
    case Dtype::bf16: element(TypeTag<__nv_bfloat16>{}); break;
  }
}

}  // namespace detail

// Calls run(TypeTag<T>{}, TypeTag<Label>{}, std::bool_constant<kGram>{})
// with T the element type of `dtype` and Label that of the labels of
// `targets` (int32_t for Gram targets, kGram, where the labels go unused).
template <class Run>
void with_case_types(Dtype dtype, Targets targets, Run&& run) {
  detail::with_types<false>(dtype, targets, run);
}
// The same, with T = Tracked<S> of the stored type S where `tracked`.
template <class Run>
void with_case_types(Dtype dtype, bool tracked, Targets targets, Run&& run) {
  if (tracked)
    detail::with_types<true>(dtype, targets, run);
  else
    detail::with_types<false>(dtype, targets, run);
}

// The float64 statistics of a row (or column) over some of its elements.
struct RefStats {
  double max, lse, pos, mean;  // mean: sum q z / pos (0 without positives)
  double scale;                // 1 + the largest finite |z|: what errors are relative to
};

// |got - ref| <= tolerance, or both the same infinity.
inline bool near(double got, double ref, double tolerance) {
  if (std::isinf(ref)) return got == ref;
  return std::fabs(got - ref) <= tolerance;
}

// The name GoogleTest gives a case of INSTANTIATE_TEST_SUITE_P: its own.
struct CaseName {
  template <class Case>
  std::string operator()(const ::testing::TestParamInfo<Case>& info) const {
    return info.param.name;
  }
};

}  // namespace emulated
