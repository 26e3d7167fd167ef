// The data checks' result slots (the first bad row each check found) and the
// error they turn into, shared by the dense and the streamed CUDA paths.
#pragma once

#include "task.hpp"

namespace npairs::cuda {

enum BadRowSlot : int { kNegativeMultilabel, kNegativeColumnMultilabel, kNoPositive, kBadRowSlots };

// The data checks report the first bad row with atomicMin into a device
// slot that starts at kNoBadRow, larger than any row: the value of eight 0x7F
// bytes, so that cudaMemsetAsync(slots, 0x7F, bytes) resets the slots.
constexpr long long kNoBadRow = 0x7F7F7F7F7F7F7F7FLL;
constexpr int kNoBadRowByte = 0x7F;

// Throws INVALID_VALUE for the first failed data check, in argument order.
void report_bad_rows(const Task& task, const long long* first_bad);

}  // namespace npairs::cuda
