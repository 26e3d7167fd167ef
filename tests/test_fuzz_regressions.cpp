// The library bugs the fuzzer (fuzz/npairs_fuzzer.cpp) found, each as a
// readable call. Every buffer ends where an inaccessible page begins, so that
// a read or write one element past its end faults in every build (not only
// the ASan one); the calls run in a child process, so that a fault fails the
// test with its signal. Their results are checked against the reference.
// The minimized fuzz inputs themselves are in fuzz/regressions/, replayed by
// the fuzz_replay test.
#include <sys/mman.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>

#include "test_util.hpp"

namespace {

// `count` doubles (or int64s) flush against a PROT_NONE page; count 0 gives
// a pointer to the start of that page.
class PageEndBuffer {
 public:
  explicit PageEndBuffer(std::size_t count) : bytes_(count * 8) {
    const std::size_t page = static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
    const std::size_t data_pages = (bytes_ + page - 1) / page;
    mapped_ = (data_pages + 1) * page;
    void* base = mmap(nullptr, mapped_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (base == MAP_FAILED) return;
    base_ = static_cast<unsigned char*>(base);
    if (mprotect(base_ + data_pages * page, page, PROT_NONE) != 0) return;
    data_ = base_ + data_pages * page - bytes_;
  }
  ~PageEndBuffer() {
    if (base_) munmap(base_, mapped_);
  }
  PageEndBuffer(const PageEndBuffer&) = delete;
  PageEndBuffer& operator=(const PageEndBuffer&) = delete;
  bool ok() const { return data_ != nullptr; }
  double* f64() const { return reinterpret_cast<double*>(data_); }
  int64_t* i64() const { return reinterpret_cast<int64_t*>(data_); }

 private:
  std::size_t bytes_ = 0, mapped_ = 0;
  unsigned char* base_ = nullptr;
  unsigned char* data_ = nullptr;
};

// NONE reduction, embeddings, grad_loss [R], grads.anchors only, reg_lambda
// 0, R = M rows: "" when the call succeeds with the reference's values.
std::string none_reduction_embedding_gradients(int64_t R) {
  const int64_t D = 2;
  const std::size_t n = static_cast<std::size_t>(R), nd = static_cast<std::size_t>(R * D);
  PageEndBuffer labels(n), anchors(nd), positives(nd), grad_loss(n), loss(n), grad_anchors(nd);
  if (!(labels.ok() && anchors.ok() && positives.ok() && grad_loss.ok() && loss.ok() && grad_anchors.ok())) {
    return "mmap failed";
  }
  ref::Problem rp;
  rp.rows = rp.cols = R;
  rp.embeddings = true;
  rp.dim = D;
  rp.reduction = ref::Reduction::None;
  for (std::size_t i = 0; i < n; ++i) {
    labels.i64()[i] = static_cast<int64_t>(i % 2);
    grad_loss.f64()[i] = 0.5 + double(i);
  }
  for (std::size_t k = 0; k < nd; ++k) {
    anchors.f64()[k] = 0.3 * double(k) - 0.7;
    positives.f64()[k] = 1.1 - 0.2 * double(k);
  }
  rp.labels.assign(labels.i64(), labels.i64() + n);
  rp.anchors.assign(anchors.f64(), anchors.f64() + nd);
  rp.positives.assign(positives.f64(), positives.f64() + nd);
  rp.grad_loss.assign(grad_loss.f64(), grad_loss.f64() + n);

  npt::Context ctx;
  if (ctx.status() != NPAIRS_OK) return "npairs_context_create failed";
  npairs_problem p;
  npairs_problem_init(&p);
  p.rows = R;
  p.dtype = NPAIRS_F64;
  p.labels = labels.i64();
  p.label_dtype = NPAIRS_I64;
  p.anchors = anchors.f64();
  p.positives = positives.f64();
  p.dim = D;
  npairs_options o;
  npairs_options_init(&o);
  o.reduction = NPAIRS_REDUCTION_NONE;
  npairs_gradients g;
  npairs_gradients_init(&g);
  g.anchors = grad_anchors.f64();
  if (npairs_loss(ctx.get(), &o, &p, grad_loss.f64(), loss.f64(), &g) != NPAIRS_OK) {
    return std::string("npairs_loss: ") + npairs_last_error();
  }
  const ref::Result<double> expected = ref::compute<double>(rp);
  const ::testing::AssertionResult loss_ok = npt::all_close(
      "loss", std::vector<double>(loss.f64(), loss.f64() + n), expected.loss, npt::default_rtol(NPAIRS_F64));
  if (!loss_ok) return loss_ok.message();
  const ::testing::AssertionResult grad_ok =
      npt::all_close("grads.anchors", std::vector<double>(grad_anchors.f64(), grad_anchors.f64() + nd),
                     expected.grad_anchors, npt::default_rtol(NPAIRS_F64));
  if (!grad_ok) return grad_ok.message();
  return "";
}

// NONE reduction and R = 0: grad_loss is [R], an empty array. The CPU backend
// read grad_loss[0] (one element past its end) for the L2 factor of the
// embedding gradients, although there is no L2 term with NONE. Also R = 3,
// where every grad_loss element is used.
TEST(FuzzRegressions, EmptyPerRowGradLossIsNotRead) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  for (int64_t rows : {0, 3}) {
    SCOPED_TRACE(rows);
    EXPECT_EXIT(
        {
          const std::string failure = none_reduction_embedding_gradients(rows);
          std::fprintf(stderr, "%s\n", failure.empty() ? "as expected" : failure.c_str());
          std::exit(failure.empty() ? 0 : 1);
        },
        ::testing::ExitedWithCode(0), "as expected");
  }
}

}  // namespace
