#include "target_checks.hpp"

#include <string>
#include <utility>

#include "deferred_check.cuh"
#include "error.hpp"
#include "targets.cuh"

namespace npairs::cuda {

void report_bad_rows(const long long* first_bad) {
  if (first_bad[kNegativeMultilabel] != kNoBadRow)
    fail(NPAIRS_ERROR_INVALID_VALUE, "problem.multilabels row " +
                                         std::to_string(first_bad[kNegativeMultilabel]) +
                                         " has a negative or NaN entry");
  if (first_bad[kNegativeColumnMultilabel] != kNoBadRow)
    fail(NPAIRS_ERROR_INVALID_VALUE, "problem.column_multilabels row " +
                                         std::to_string(first_bad[kNegativeColumnMultilabel]) +
                                         " has a negative or NaN entry");
  if (first_bad[kNoPositiveLabel] != kNoBadRow)
    fail(NPAIRS_ERROR_INVALID_VALUE, "problem.labels row " +
                                         std::to_string(first_bad[kNoPositiveLabel]) +
                                         " has no positive column (no column label equals it)");
  if (first_bad[kNoPositiveMultilabel] != kNoBadRow)
    fail(NPAIRS_ERROR_INVALID_VALUE,
         "problem.multilabels row " + std::to_string(first_bad[kNoPositiveMultilabel]) +
             " has no positive column (its targets share no class with any column)");
  for (const auto& [slot, argument] : {std::pair{kNoPositiveColumnLabel, "problem.column_labels"},
                                       std::pair{kNoPositiveColumnMultilabel, "problem.column_multilabels"}}) {
    if (first_bad[slot] != kNoBadRow)
      fail(NPAIRS_ERROR_INVALID_VALUE, std::string(argument) + " column " + std::to_string(first_bad[slot]) +
                                           " has no positive row, which NPAIRS_FLAG_SYMMETRIC needs");
  }
}

}  // namespace npairs::cuda
