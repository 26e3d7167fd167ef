// Host allocation failure: a problem whose workspace cannot be allocated
// fails with NPAIRS_ERROR_OUT_OF_MEMORY, a message and its outputs untouched,
// and the same context then computes a small problem as before. The address
// space is limited (RLIMIT_AS) in a child process, after a warm-up call has
// created the thread pools of OpenMP and OpenBLAS. And any other allocation
// of the library that fails (std::bad_alloc from operator new, replaced here)
// is OUT_OF_MEMORY too. Label `rlimit`: not run under ASan, whose shadow
// memory alone needs terabytes of address space (and which replaces operator
// new itself).
#include <sys/resource.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <new>
#include <string>

#include "test_util.hpp"

// While set, operator new fails: the library's calls to it too, as it takes
// the executable's replacement.
namespace {
bool g_fail_allocations = false;
}  // namespace

// GCC cannot see that these replacements pair malloc with free.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
void* operator new(std::size_t size) {
  if (!g_fail_allocations) {
    if (void* p = std::malloc(size == 0 ? 1 : size)) return p;
  }
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
#pragma GCC diagnostic pop

namespace {

npt::Spec embeddings_spec(int64_t rows) {
  npt::Spec s;
  s.embeddings = true;
  s.rows = rows;
  s.dim = 2;
  s.classes = 5;
  return s;
}

// Bytes of address space the process uses now.
std::size_t address_space_in_use() {
  std::ifstream statm("/proc/self/statm");
  std::size_t pages = 0;
  statm >> pages;
  return pages * static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
}

// The child's part: "" when every check holds, else what failed.
std::string out_of_memory_then_recovers() {
  npt::Context ctx(NPAIRS_BACKEND_CPU);
  if (ctx.status() != NPAIRS_OK) return std::string("npairs_context_create: ") + npairs_last_error();
  const npt::Inputs small = npt::make_inputs(embeddings_spec(64));
  npt::Outputs warm_up(small, true, true, true, true);
  if (npt::run_loss(ctx.get(), small, warm_up) != NPAIRS_OK) return std::string("warm-up: ") + npairs_last_error();

  // R = M = 20000 embeddings of width 2 (2 MB of inputs and outputs): the
  // float64 logits workspace alone is 3.2 GB, and 1 GiB of room is left.
  const npt::Inputs large = npt::make_inputs(embeddings_spec(20000));
  npt::Outputs out(large, true, false, true, true);
  rlimit limit{};
  if (getrlimit(RLIMIT_AS, &limit) != 0) return "getrlimit failed";
  limit.rlim_cur = address_space_in_use() + (std::size_t(1) << 30);
  if (setrlimit(RLIMIT_AS, &limit) != 0) return "setrlimit failed";
  const ::testing::AssertionResult failed =
      npt::fails_leaving_outputs_untouched(ctx.get(), large, out, NPAIRS_ERROR_OUT_OF_MEMORY);
  if (!failed) return std::string("large problem: ") + failed.message();

  npt::Outputs again(small, true, true, true, true);
  if (npt::run_loss(ctx.get(), small, again) != NPAIRS_OK) {
    return std::string("small problem after the failure: ") + npairs_last_error();
  }
  if (again.loss.bytes() != warm_up.loss.bytes() || again.grad_similarity.bytes() != warm_up.grad_similarity.bytes() ||
      again.grad_anchors.bytes() != warm_up.grad_anchors.bytes() ||
      again.grad_positives.bytes() != warm_up.grad_positives.bytes()) {
    return "small problem after the failure: results differ from the warm-up call's";
  }
  return "";
}

TEST(OutOfMemory, HostWorkspaceAllocationFailsCleanly) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");  // the child re-runs this binary: a fresh process
  EXPECT_EXIT(
      {
        const std::string failure = out_of_memory_then_recovers();
        std::fprintf(stderr, "%s\n", failure.empty() ? "recovered" : failure.c_str());
        std::exit(failure.empty() ? 0 : 1);
      },
      ::testing::ExitedWithCode(0), "recovered");
}

// The library builds its argument messages with std::string, so a call
// allocates even when it succeeds: every failed allocation must come back as
// OUT_OF_MEMORY, never INTERNAL, with the outputs untouched.
TEST(OutOfMemory, FailedOperatorNewIsOutOfMemory) {
  const npt::Inputs in = npt::make_inputs(embeddings_spec(7));
  npt::Context ctx;
  ASSERT_NPAIRS_OK(ctx.status());
  npt::Outputs out(in, true, false, true, true);
  out.poison();
  const std::vector<unsigned char> before = out.loss.bytes();
  const npairs_options options = in.options();
  const npairs_problem problem = in.problem();
  npairs_gradients grads = out.grads();
  g_fail_allocations = true;
  const npairs_status status = npairs_loss(ctx.get(), &options, &problem, nullptr, out.loss_ptr(), &grads);
  g_fail_allocations = false;
  EXPECT_EQ(status, NPAIRS_ERROR_OUT_OF_MEMORY) << npairs_status_string(status);
  EXPECT_STREQ(npairs_last_error(), "out of host memory");
  EXPECT_EQ(out.loss.bytes(), before);
  ASSERT_NPAIRS_OK(npt::run_loss(ctx.get(), in, out));
}

}  // namespace
