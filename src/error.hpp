// The one exception type of the library: a status plus a one-sentence message.
// Everything below the C API throws it; capi/ turns it into a return status.
#pragma once

#include <stdexcept>
#include <string>

#include "npairs/npairs.h"

namespace npairs {

class Error : public std::runtime_error {
 public:
  Error(npairs_status status, const std::string& message)
      : std::runtime_error(message), status_(status) {}
  npairs_status status() const noexcept { return status_; }

 private:
  npairs_status status_;
};

[[noreturn]] inline void fail(npairs_status status, const std::string& message) {
  throw Error(status, message);
}

}  // namespace npairs
