// Median-of-runs timing with the host's steady clock.
#pragma once

#include <algorithm>
#include <chrono>
#include <vector>

namespace bench {

struct Stats {
  double median_ms = 0;
  double min_ms = 0;
};

inline double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 == 1 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// Calls `run` warmup times untimed, then `repeats` times timed; `run` returns
// false on failure (which stops the timing and is returned). `run` must
// return only when its work is done (synchronize first on a GPU).
template <class F>
bool time_runs(int warmup, int repeats, F&& run, Stats* out) {
  using clock = std::chrono::steady_clock;
  std::vector<double> ms;
  for (int it = 0; it < warmup + repeats; ++it) {
    const auto start = clock::now();
    if (!run()) return false;
    const auto stop = clock::now();
    if (it >= warmup) ms.push_back(std::chrono::duration<double, std::milli>(stop - start).count());
  }
  out->median_ms = median(ms);
  out->min_ms = *std::min_element(ms.begin(), ms.end());
  return true;
}

}  // namespace bench
