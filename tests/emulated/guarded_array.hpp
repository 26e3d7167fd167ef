// Arrays of the emulated kernel tests: n elements between guard zones, so
// that a write outside an output shows.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

namespace emu {

// n elements of E between guard zones, starting 16-byte aligned or one element
// past that.
template <class E>
class GuardedArray {
 public:
  static constexpr unsigned char kGuardByte = 0xA5;
  static constexpr std::size_t kGuardBytes = 64;

  GuardedArray(std::size_t n, bool misaligned)
      : storage_(n * sizeof(E) + 2 * kGuardBytes + 32, kGuardByte), n_(n) {
    const std::uintptr_t start = reinterpret_cast<std::uintptr_t>(storage_.data());
    const std::uintptr_t first = (start + kGuardBytes + 15) / 16 * 16 + (misaligned ? sizeof(E) : 0);
    offset_ = first - start;
  }
  E* data() { return reinterpret_cast<E*>(storage_.data() + offset_); }
  std::size_t size() const { return n_; }
  unsigned char* bytes() { return storage_.data() + offset_; }
  std::vector<unsigned char> copy_bytes() { return {bytes(), bytes() + n_ * sizeof(E)}; }
  void fill_bytes(unsigned char b) { std::memset(bytes(), b, n_ * sizeof(E)); }
  void assign_bytes(const std::vector<unsigned char>& b) { std::memcpy(bytes(), b.data(), b.size()); }
  bool guards_intact() const {
    for (std::size_t k = 0; k < storage_.size(); ++k)
      if ((k < offset_ || k >= offset_ + n_ * sizeof(E)) && storage_[k] != kGuardByte) return false;
    return true;
  }

 private:
  std::vector<unsigned char> storage_;
  std::size_t n_;
  std::size_t offset_ = 0;
};

}  // namespace emu
