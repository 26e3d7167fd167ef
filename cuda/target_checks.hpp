// The error that the data checks' report slots (deferred_check.cuh) turn
// into, shared by the whole-call and the streamed CUDA paths.
#pragma once

namespace npairs::cuda {

// Throws INVALID_VALUE for the first failed data check, in argument order;
// first_bad holds kBadRowSlots entries.
void report_bad_rows(const long long* first_bad);

}  // namespace npairs::cuda
