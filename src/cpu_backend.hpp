// The CPU backend: OpenBLAS for the GEMMs, OpenMP threads for the rows.
#pragma once

#include <memory>

#include "backend.hpp"

namespace npairs {

std::unique_ptr<Backend> make_cpu_backend();

}  // namespace npairs
