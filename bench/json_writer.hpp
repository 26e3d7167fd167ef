// A minimal streaming JSON writer: objects, arrays, strings, numbers, null.
#pragma once

#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

namespace bench {

class JsonWriter {
 public:
  explicit JsonWriter(std::FILE* out) : out_(out) {}

  void begin_object() { open('{'); }
  void end_object() { close('}'); }
  void begin_array() { open('['); }
  void end_array() { close(']'); }
  // Inside an object, key() comes before each value.
  void key(const std::string& name) {
    separate();
    write_string(name);
    std::fputc(':', out_);
    after_key_ = true;
  }
  void value(const std::string& s) {
    separate();
    write_string(s);
  }
  void value(const char* s) { value(std::string(s)); }
  void value(double x) {  // non-finite numbers have no JSON form: null
    separate();
    if (std::isfinite(x)) std::fprintf(out_, "%.10g", x);
    else std::fputs("null", out_);
  }
  void value(long long x) {
    separate();
    std::fprintf(out_, "%lld", x);
  }
  void value(bool b) {
    separate();
    std::fputs(b ? "true" : "false", out_);
  }
  void null() {
    separate();
    std::fputs("null", out_);
  }
  template <class V>
  void field(const std::string& name, const V& v) {
    key(name);
    value(v);
  }

 private:
  void open(char c) {
    separate();
    std::fputc(c, out_);
    first_.push_back(true);
  }
  void close(char c) {
    first_.pop_back();
    std::fputc('\n', out_);
    std::fputc(c, out_);
  }
  // A comma before every element but the first, and none after a key.
  void separate() {
    if (after_key_) {
      after_key_ = false;
      return;
    }
    if (first_.empty()) return;
    if (!first_.back()) std::fputc(',', out_);
    first_.back() = false;
    std::fputc('\n', out_);
    std::fputs(std::string(2 * first_.size(), ' ').c_str(), out_);
  }
  void write_string(const std::string& s) {
    std::fputc('"', out_);
    for (unsigned char c : s) {
      if (c == '"' || c == '\\') std::fprintf(out_, "\\%c", c);
      else if (c < 0x20) std::fprintf(out_, "\\u%04x", c);
      else std::fputc(c, out_);
    }
    std::fputc('"', out_);
  }

  std::FILE* out_;
  std::vector<bool> first_;
  bool after_key_ = false;
};

}  // namespace bench
