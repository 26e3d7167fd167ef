// Entry points of the CUDA backend, the only ones capi/ sees.
#pragma once

#include <memory>

#include "backend.hpp"

namespace npairs::cuda {

// Number of usable CUDA devices; 0 when there is no driver or no device.
// Never throws.
int device_count() noexcept;

// A backend on `device` (0 <= device < device_count()), with the legacy
// default stream. Throws Error (DEVICE, OUT_OF_MEMORY) on failure.
std::unique_ptr<Backend> make_backend(int device);

}  // namespace npairs::cuda
