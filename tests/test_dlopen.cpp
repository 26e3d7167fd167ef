// The built library loaded with dlopen by path (as Python's ctypes or any FFI
// does): every public function resolves by name and computes SPEC's check
// value; only npairs_* symbols are exported; the SONAME carries the major
// version. This binary does not link the library.
#include <dlfcn.h>
#include <gtest/gtest.h>
#include <npairs/npairs.h>

#include "test_util.hpp"  // only its header-only constants: this binary does not link the library

#include <cmath>
#include <cstdlib>
#include <cstdio>
#include <sstream>
#include <string>
#include <vector>

#ifndef NPAIRS_TEST_LIBRARY_FILE
#error "NPAIRS_TEST_LIBRARY_FILE must name the built library"
#endif

namespace {

// The handle is not closed here: unloading is tested on its own, in a child
// process (Dlopen.UnloadAfterUseDoesNotCrash).
class Library {
 public:
  Library() : handle_(dlopen(NPAIRS_TEST_LIBRARY_FILE, RTLD_NOW | RTLD_LOCAL)) {}
  ~Library() = default;
  Library(const Library&) = delete;
  Library& operator=(const Library&) = delete;
  void* handle() const { return handle_; }
  template <class Fn>
  Fn get(const char* name) const {
    void* p = dlsym(handle_, name);
    return reinterpret_cast<Fn>(p);
  }

 private:
  void* handle_;
};

std::string run(const std::string& command, int* status) {
  std::string out;
  FILE* pipe = popen(command.c_str(), "r");
  if (pipe == nullptr) {
    *status = -1;
    return out;
  }
  char buf[4096];
  std::size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, pipe)) > 0) out.append(buf, n);
  *status = pclose(pipe);
  return out;
}

TEST(Dlopen, LoadsByPath) {
  Library lib;
  ASSERT_NE(lib.handle(), nullptr) << dlerror();
}

TEST(Dlopen, EveryPublicFunctionResolves) {
  Library lib;
  ASSERT_NE(lib.handle(), nullptr) << dlerror();
  for (const char* name :
       {"npairs_version_number", "npairs_version_string", "npairs_status_string", "npairs_last_error",
        "npairs_backend_available", "npairs_context_create", "npairs_context_destroy", "npairs_context_backend",
        "npairs_context_set_stream", "npairs_context_set_threads", "npairs_context_synchronize",
        "npairs_options_init", "npairs_problem_init", "npairs_gradients_init", "npairs_loss"}) {
    EXPECT_NE(dlsym(lib.handle(), name), nullptr) << name << " is not exported";
  }
}

TEST(Dlopen, CheckValueThroughFunctionPointers) {
  Library lib;
  ASSERT_NE(lib.handle(), nullptr) << dlerror();
  auto version = lib.get<uint32_t (*)(void)>("npairs_version_number");
  auto create = lib.get<npairs_status (*)(npairs_backend, int32_t, npairs_context*)>("npairs_context_create");
  auto destroy = lib.get<npairs_status (*)(npairs_context)>("npairs_context_destroy");
  auto problem_init = lib.get<void (*)(npairs_problem*)>("npairs_problem_init");
  auto options_init = lib.get<void (*)(npairs_options*)>("npairs_options_init");
  auto loss_fn = lib.get<npairs_status (*)(npairs_context, const npairs_options*, const npairs_problem*, const void*,
                                           void*, npairs_gradients*)>("npairs_loss");
  auto last_error = lib.get<const char* (*)(void)>("npairs_last_error");
  ASSERT_TRUE(version && create && destroy && problem_init && options_init && loss_fn && last_error);

  EXPECT_EQ(version(), static_cast<uint32_t>(NPAIRS_VERSION_NUMBER));
  npairs_context ctx = nullptr;
  ASSERT_EQ(create(NPAIRS_BACKEND_CPU, 0, &ctx), NPAIRS_OK) << last_error();
  npairs_problem p;
  problem_init(&p);
  p.rows = 4;
  p.dtype = NPAIRS_F64;
  p.labels = npt::kCheckLabels32;
  p.label_dtype = NPAIRS_I32;
  p.anchors = npt::kCheckPoints;
  p.positives = npt::kCheckPoints;
  p.dim = 2;
  npairs_options o;
  options_init(&o);
  double loss = NAN;
  EXPECT_EQ(loss_fn(ctx, &o, &p, nullptr, &loss, nullptr), NPAIRS_OK) << last_error();
  EXPECT_NEAR(loss, npt::kCheckValue, 1e-15);
  EXPECT_EQ(destroy(ctx), NPAIRS_OK);
}

// dlopen, one loss computation with the CPU backend, dlclose. 0 on success.
int load_compute_unload() {
  void* h = dlopen(NPAIRS_TEST_LIBRARY_FILE, RTLD_NOW | RTLD_LOCAL);
  if (h == nullptr) return 1;
  auto create = reinterpret_cast<npairs_status (*)(npairs_backend, int32_t, npairs_context*)>(
      dlsym(h, "npairs_context_create"));
  auto destroy = reinterpret_cast<npairs_status (*)(npairs_context)>(dlsym(h, "npairs_context_destroy"));
  auto problem_init = reinterpret_cast<void (*)(npairs_problem*)>(dlsym(h, "npairs_problem_init"));
  auto loss_fn = reinterpret_cast<npairs_status (*)(npairs_context, const npairs_options*, const npairs_problem*,
                                                    const void*, void*, npairs_gradients*)>(dlsym(h, "npairs_loss"));
  if (!create || !destroy || !problem_init || !loss_fn) return 1;
  npairs_context ctx = nullptr;
  if (create(NPAIRS_BACKEND_CPU, 0, &ctx) != NPAIRS_OK) return 1;
  const int64_t n = 64, d = 8;
  std::vector<double> a(static_cast<std::size_t>(n * d));
  for (std::size_t i = 0; i < a.size(); ++i) a[i] = std::sin(double(i));
  std::vector<int64_t> labels(static_cast<std::size_t>(n));
  for (int64_t i = 0; i < n; ++i) labels[static_cast<std::size_t>(i)] = i % 4;
  npairs_problem p;
  problem_init(&p);
  p.rows = n;
  p.dtype = NPAIRS_F64;
  p.labels = labels.data();
  p.label_dtype = NPAIRS_I64;
  p.anchors = a.data();
  p.positives = a.data();
  p.dim = d;
  double loss = 0;
  const npairs_status st = loss_fn(ctx, nullptr, &p, nullptr, &loss, nullptr);
  destroy(ctx);
  if (st != NPAIRS_OK || !std::isfinite(loss)) return 1;
  return dlclose(h) == 0 ? 0 : 1;
}

// Load, compute (so that the CPU backend's thread pools exist), unload, and
// keep running: a library must survive dlclose (FFI users such as R's
// dyn.unload do it). Runs in a child process so that a crash is a failure of
// this test only.
TEST(Dlopen, UnloadAfterUseDoesNotCrash) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(
      {
        // A few load/compute/unload cycles: a thread the library left
        // behind crashes once its code is unmapped. OpenMP threads that
        // wait actively (a common setting) make that deterministic.
        setenv("OMP_WAIT_POLICY", "active", 1);
        for (int cycle = 0; cycle < 5; ++cycle) {
          if (load_compute_unload() != 0) std::_Exit(2 + cycle);
        }
        std::fprintf(stderr, "unloaded\n");
        std::exit(0);
      },
      ::testing::ExitedWithCode(0), "unloaded");
}

TEST(Symbols, OnlyNpairsSymbolsAreExported) {
  int status = 0;
  const std::string out = run(std::string("'") + NPAIRS_TEST_NM + "' -D --defined-only '" NPAIRS_TEST_LIBRARY_FILE "'",
                              &status);
  ASSERT_EQ(status, 0) << "nm failed:\n" << out;
  std::istringstream lines(out);
  std::string line;
  std::vector<std::string> bad;
  int exported = 0;
  while (std::getline(lines, line)) {
    std::istringstream fields(line);
    std::string addr, type, name;
    if (!(fields >> addr >> type >> name)) continue;
    if (name.rfind("npairs_", 0) == 0) {
      ++exported;
      continue;
    }
    // A symbol-version node (e.g. "A NPAIRS_1") is not a symbol of code or data.
    if (type == "A" && name.rfind("NPAIRS_", 0) == 0) continue;
    bad.push_back(line);
  }
  EXPECT_GE(exported, 15) << out;
  std::string list;
  for (const std::string& b : bad) list += "\n  " + b;
  EXPECT_TRUE(bad.empty()) << "symbols exported without the npairs_ prefix:" << list;
}

TEST(Symbols, SonameCarriesTheMajorVersion) {
  const std::string expected = "libnpairs.so." + std::to_string(NPAIRS_VERSION_MAJOR);
  EXPECT_EQ(std::string(NPAIRS_TEST_SONAME), expected);
  int status = 0;
  const std::string out = run(std::string("'") + NPAIRS_TEST_READELF + "' -d '" NPAIRS_TEST_LIBRARY_FILE "'", &status);
  ASSERT_EQ(status, 0) << "readelf failed:\n" << out;
  EXPECT_NE(out.find("(SONAME)"), std::string::npos) << out;
  EXPECT_NE(out.find("[" + expected + "]"), std::string::npos) << out;
}

}  // namespace
