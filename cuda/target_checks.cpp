#include "target_checks.hpp"

#include <string>

#include "error.hpp"

namespace npairs::cuda {

void report_bad_rows(const Task& task, const long long* first_bad) {
  if (first_bad[kNegativeMultilabel] != kNoBadRow)
    fail(NPAIRS_ERROR_INVALID_VALUE, "problem.multilabels row " +
                                         std::to_string(first_bad[kNegativeMultilabel]) +
                                         " has a negative or NaN entry");
  if (first_bad[kNegativeColumnMultilabel] != kNoBadRow)
    fail(NPAIRS_ERROR_INVALID_VALUE, "problem.column_multilabels row " +
                                         std::to_string(first_bad[kNegativeColumnMultilabel]) +
                                         " has a negative or NaN entry");
  if (first_bad[kNoPositive] != kNoBadRow) {
    const std::string row = std::to_string(first_bad[kNoPositive]);
    fail(NPAIRS_ERROR_INVALID_VALUE,
         task.multilabel()
             ? "problem.multilabels row " + row +
                   " has no positive column (its targets share no class with any column)"
             : "problem.labels row " + row + " has no positive column (no column label equals it)");
  }
}

}  // namespace npairs::cuda
