// Random sweeps through the C API on the CPU backend, against the float64
// reference. The full product of the main axes (dtype, targets kind,
// label_dtype, logits kind, reduction, gradients wanted) is enumerated; the
// other axes (shape, size, classes, temperature, weights, upstream gradient,
// L2 term, in-place dS, loss NULL, ...) are drawn per case from a fixed hash,
// and SweepCoverage checks that every value of every axis is exercised.
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <set>
#include <string>

#include "test_util.hpp"

namespace {

enum class Grads { None, Similarity, Embeddings, All };

struct SweepCase {
  int index = 0;
  npt::Spec spec;
  bool want_similarity = false, want_anchors = false, want_positives = false;
  bool in_place = false;          // grads.similarity == problem.similarity
  bool loss_null = false;         // gradients only
  bool empty_grads_struct = false;  // no gradients, but a grads struct with NULL members
  std::string name;
};

int pick(int index, int axis, int n) {
  const uint64_t h = npt::splitmix64(static_cast<uint64_t>(index) * 1000003u + static_cast<uint64_t>(axis) * 7919u);
  return static_cast<int>(h % static_cast<uint64_t>(n));
}

std::string case_name(const SweepCase& c) {
  const npt::Spec& s = c.spec;
  char buf[256];
  std::snprintf(buf, sizeof buf, "c%03d_%s_%s_%s_%s_R%" PRId64 "x%" PRId64 "%s_%s", c.index, npt::dtype_name(s.dtype),
                s.multilabel ? (std::string("multi") + std::to_string(s.classes)).c_str()
                             : (std::string(npt::dtype_name(s.label_dtype)) + (s.big_labels ? "big" : "")).c_str(),
                s.embeddings ? ("emb" + std::to_string(s.dim)).c_str() : "sim", s.column_targets ? "cols" : "sq",
                s.rows, s.column_targets ? s.cols : s.rows, s.multilabel ? "" : (s.classes <= 3 ? "_few" : "_many"),
                npt::reduction_name(s.reduction));
  std::string n = buf;
  n += "_d";
  if (c.want_similarity) n += "S";
  if (c.want_anchors) n += "A";
  if (c.want_positives) n += "P";
  if (!c.want_similarity && !c.want_anchors && !c.want_positives) n += "none";
  if (s.weights) n += "_w";
  if (s.grad_loss) n += "_g";
  if (s.temperature != 1.0) n += "_t037";
  if (s.reg_lambda != 0.0) n += "_l2";
  if (c.in_place) n += "_inplace";
  if (c.loss_null) n += "_noloss";
  return n;
}

std::vector<SweepCase> make_cases() {
  std::vector<SweepCase> cases;
  int idx = 0;
  for (npairs_dtype dtype : {NPAIRS_F32, NPAIRS_F64}) {
    for (bool multilabel : {false, true}) {
      for (npairs_dtype ldt : {NPAIRS_I32, NPAIRS_I64}) {
        for (bool emb : {false, true}) {
          for (npairs_reduction red :
               {NPAIRS_REDUCTION_NONE, NPAIRS_REDUCTION_SUM, NPAIRS_REDUCTION_SUM_OVER_BATCH_SIZE}) {
            for (Grads grads : {Grads::None, Grads::Similarity, Grads::Embeddings, Grads::All}) {
              SweepCase c;
              c.index = idx++;
              npt::Spec& s = c.spec;
              const int i = c.index;
              s.seed = static_cast<uint64_t>(i) + 1;
              s.dtype = dtype;
              s.multilabel = multilabel;
              // With multilabels the field is ignored: leave it at the init
              // default (0) or set some label dtype.
              s.label_dtype = multilabel ? (ldt == NPAIRS_I32 ? npairs_dtype(0) : NPAIRS_I64) : ldt;
              s.embeddings = emb;
              s.reduction = red;
              s.column_targets = pick(i, 0, 2) == 1;
              const bool large = pick(i, 1, 10) == 0;
              if (large) {
                s.rows = 257;
                s.cols = 263;
                s.dim = 65;
              } else {
                const int64_t rows[] = {1, 3, 7, 13, 31};
                const int64_t cols[] = {1, 2, 5, 9, 17, 40};
                const int64_t dims[] = {1, 2, 5, 16};
                s.rows = rows[pick(i, 2, 5)];
                s.cols = cols[pick(i, 3, 6)];
                s.dim = dims[pick(i, 4, 4)];
              }
              if (multilabel) {
                const int64_t ks[] = {1, 3, 5, 7};
                s.classes = large ? 7 : ks[pick(i, 5, 4)];
              } else {
                s.classes = pick(i, 5, 2) == 0 ? 3 : std::max(s.rows, s.column_targets ? s.cols : s.rows);
                s.big_labels = pick(i, 6, 3) == 0;
              }
              s.weights = pick(i, 7, 2) == 1;
              s.grad_loss = pick(i, 8, 2) == 1;
              s.temperature = pick(i, 9, 2) == 1 ? 0.37 : 1.0;
              s.reg_lambda = (emb && red != NPAIRS_REDUCTION_NONE && pick(i, 10, 2) == 1) ? 0.25 : 0.0;
              switch (grads) {
                case Grads::None:
                  c.empty_grads_struct = pick(i, 11, 2) == 1;
                  break;
                case Grads::Similarity:
                  c.want_similarity = true;
                  break;
                case Grads::Embeddings:
                  if (emb) {
                    const int which = pick(i, 13, 3);
                    c.want_anchors = which != 2;
                    c.want_positives = which != 1;
                  } else {  // no embeddings: dS computed in place instead
                    c.want_similarity = true;
                    c.in_place = true;
                  }
                  break;
                case Grads::All:
                  c.want_similarity = true;
                  c.want_anchors = c.want_positives = emb;
                  c.in_place = !emb && pick(i, 11, 2) == 1;
                  break;
              }
              c.loss_null = grads != Grads::None && pick(i, 12, 3) == 0;
              c.name = case_name(c);
              cases.push_back(c);
            }
          }
        }
      }
    }
  }
  return cases;
}

const std::vector<SweepCase>& all_cases() {
  static const std::vector<SweepCase> cases = make_cases();
  return cases;
}

// Every output of a problem (loss, dS, dA, dP), wanted or not, at its full
// size, as slices of one poisoned block with Array::kGuard poisoned elements
// between them. The library gets pointers to the wanted slices only, so a
// write past the end of a wanted output, or to an output not asked for
// (dA's place when only dP is wanted, the loss's when it is NULL), lands in
// poison that untouched_except() finds.
class OutputBlock {
 public:
  static constexpr std::size_t kLoss = 0, kSimilarity = 1, kAnchors = 2, kPositives = 3;
  explicit OutputBlock(const npt::Inputs& in)
      : size_{in.loss_count(), static_cast<std::size_t>(in.R * in.M), static_cast<std::size_t>(in.R * in.D),
              static_cast<std::size_t>(in.M * in.D)} {
    std::size_t at = 0;
    for (std::size_t k = 0; k < 4; ++k) {
      offset_[k] = at;
      at += size_[k] + npt::Array::kGuard;
    }
    block_ = npt::Array(in.spec.dtype, at - npt::Array::kGuard);
    block_.poison();
  }
  void* slice(std::size_t k) { return static_cast<unsigned char*>(block_.data()) + offset_[k] * elem(); }
  // Copies slice k and kGuard elements on each side into `a`, an output
  // Array of the slice's size (so that its guards are the block's).
  void copy_out(std::size_t k, npt::Array& a) const {
    ASSERT_EQ(a.size(), size_[k]);
    std::memcpy(a.raw_bytes(), block_.bytes().data() + offset_[k] * elem(), a.bytes().size());
  }
  // Every element of the block outside the wanted slices is still poison.
  ::testing::AssertionResult untouched_except(const bool (&wanted)[4]) const {
    static const char* const names[4] = {"loss", "grads.similarity", "grads.anchors", "grads.positives"};
    const auto g = static_cast<std::ptrdiff_t>(npt::Array::kGuard);
    for (std::ptrdiff_t i = -g; i < static_cast<std::ptrdiff_t>(block_.size()) + g; ++i) {
      int inside = -1;
      for (std::size_t k = 0; k < 4; ++k) {
        const auto lo = static_cast<std::ptrdiff_t>(offset_[k]);
        if (i >= lo && i < lo + static_cast<std::ptrdiff_t>(size_[k])) inside = static_cast<int>(k);
      }
      if (inside >= 0 && wanted[inside]) continue;
      if (!block_.is_poison(i)) {
        return ::testing::AssertionFailure()
               << "element " << i << " of the output block was written: "
               << (inside >= 0 ? std::string("in the place of ") + names[inside] + ", not asked for"
                               : std::string("between the outputs"));
      }
    }
    return ::testing::AssertionSuccess();
  }

 private:
  std::size_t elem() const { return npt::dtype_size(block_.dtype()); }
  std::size_t size_[4];
  std::size_t offset_[4] = {};
  npt::Array block_;
};

class Sweep : public ::testing::TestWithParam<SweepCase> {};

TEST_P(Sweep, MatchesReference) {
  const SweepCase& c = GetParam();
  npt::Context ctx(NPAIRS_BACKEND_CPU);
  ASSERT_NPAIRS_OK(ctx.status());
  const npt::Inputs in = npt::make_inputs(c.spec);
  npt::Outputs out(in, !c.loss_null, c.want_similarity, c.want_anchors, c.want_positives);

  npairs_problem p = in.problem();
  if (c.in_place) {
    // A writable copy of S that receives dS (guards poisoned).
    npt::Array s(c.spec.dtype, in.similarity.size());
    s.poison();
    for (std::size_t k = 0; k < s.size(); ++k) s.set(k, in.similarity.get(k));
    out.grad_similarity = s;
    p.similarity = out.grad_similarity.data();
  }
  const npairs_options o = in.options();
  OutputBlock block(in);
  const bool wanted[4] = {!c.loss_null, c.want_similarity && !c.in_place, c.want_anchors, c.want_positives};
  npairs_gradients g;
  npairs_gradients_init(&g);
  g.similarity = c.in_place ? out.grad_similarity.data()
                            : (c.want_similarity ? block.slice(OutputBlock::kSimilarity) : nullptr);
  g.anchors = c.want_anchors ? block.slice(OutputBlock::kAnchors) : nullptr;
  g.positives = c.want_positives ? block.slice(OutputBlock::kPositives) : nullptr;
  void* loss = c.loss_null ? nullptr : block.slice(OutputBlock::kLoss);
  ASSERT_TRUE(!c.in_place || g.similarity == p.similarity);
  const bool pass_grads = out.any_grads() || c.empty_grads_struct;

  // Inputs must come back bitwise unchanged.
  const npt::Array* inputs[] = {&in.labels, &in.column_labels, &in.multilabels, &in.column_multilabels,
                                &in.similarity, &in.anchors, &in.positives, &in.sample_weight, &in.grad_loss};
  std::vector<std::vector<unsigned char>> before;
  for (const npt::Array* a : inputs) before.push_back(a->bytes());

  ASSERT_NPAIRS_OK(npairs_loss(ctx.get(), &o, &p, in.grad_loss_ptr(), loss, pass_grads ? &g : nullptr));

  // The outputs not asked for, and the gaps between the outputs, stay poison.
  EXPECT_TRUE(block.untouched_except(wanted));
  if (wanted[OutputBlock::kLoss]) block.copy_out(OutputBlock::kLoss, out.loss);
  if (wanted[OutputBlock::kSimilarity]) block.copy_out(OutputBlock::kSimilarity, out.grad_similarity);
  if (wanted[OutputBlock::kAnchors]) block.copy_out(OutputBlock::kAnchors, out.grad_anchors);
  if (wanted[OutputBlock::kPositives]) block.copy_out(OutputBlock::kPositives, out.grad_positives);
  const ref::Result<double> expected = ref::compute<double>(in.reference());
  npt::expect_matches_reference(in, out, expected, npt::default_rtol(c.spec.dtype));
  for (std::size_t k = 0; k < before.size(); ++k) EXPECT_EQ(before[k], inputs[k]->bytes()) << "input " << k << " changed";
}

INSTANTIATE_TEST_SUITE_P(Cpu, Sweep, ::testing::ValuesIn(all_cases()),
                         [](const ::testing::TestParamInfo<SweepCase>& param_info) { return param_info.param.name; });

// The hashed choices really cover every value of every axis, per dtype.
TEST(SweepCoverage, EveryAxisValueIsExercised) {
  for (npairs_dtype dtype : {NPAIRS_F32, NPAIRS_F64}) {
    std::set<std::string> seen;
    for (const SweepCase& c : all_cases()) {
      const npt::Spec& s = c.spec;
      if (s.dtype != dtype) continue;
      const bool rect = s.column_targets && s.cols != s.rows;
      if (s.rows >= 257) seen.insert(std::string("large_") + (s.embeddings ? "emb" : "sim"));
      if (s.rows == 1) seen.insert("rows1");
      if (rect) seen.insert(std::string("rect_") + (s.multilabel ? "multi" : "labels"));
      if (!s.column_targets) seen.insert(std::string("square_") + (s.multilabel ? "multi" : "labels"));
      if (s.temperature != 1.0) seen.insert("temperature");
      if (s.weights) seen.insert(std::string("weights_") + npt::reduction_name(s.reduction));
      if (s.grad_loss && (c.want_similarity || c.want_anchors))
        seen.insert(std::string("grad_loss_") + npt::reduction_name(s.reduction));
      if (s.reg_lambda > 0 && (c.want_anchors || c.want_positives)) seen.insert("reg_lambda_grads");
      if (s.reg_lambda > 0 && !c.loss_null) seen.insert("reg_lambda_loss");
      if (c.in_place) seen.insert("in_place");
      if (c.loss_null) seen.insert(std::string("loss_null_") + (s.embeddings ? "emb" : "sim"));
      if (c.empty_grads_struct) seen.insert("empty_grads_struct");
      if (c.want_anchors && !c.want_positives) seen.insert("anchors_only");
      if (c.want_positives && !c.want_anchors) seen.insert("positives_only");
      if (!s.multilabel && s.big_labels) seen.insert(std::string("big_labels_") + npt::dtype_name(s.label_dtype));
      if (!s.multilabel && s.classes == 3) seen.insert("few_classes");
      if (!s.multilabel && s.classes > 3) seen.insert("many_classes");
      if (s.multilabel) seen.insert("K" + std::to_string(s.classes));
    }
    for (const char* want :
         {"large_emb", "large_sim", "rows1", "rect_multi", "rect_labels", "square_multi", "square_labels",
          "temperature", "weights_NONE", "weights_SUM", "weights_SOBS", "grad_loss_NONE", "grad_loss_SUM",
          "grad_loss_SOBS", "reg_lambda_grads", "reg_lambda_loss", "in_place", "loss_null_emb", "loss_null_sim",
          "empty_grads_struct", "anchors_only", "positives_only", "big_labels_i32", "big_labels_i64", "few_classes",
          "many_classes", "K1", "K3", "K5", "K7"}) {
      EXPECT_TRUE(seen.count(want)) << npt::dtype_name(dtype) << ": no sweep case with " << want;
    }
  }
}

// The label width never changes the result: the same small labels as i32
// and as i64 give the same outputs.
TEST(SweepCross, LabelWidthDoesNotMatter) {
  npt::Context ctx(NPAIRS_BACKEND_CPU);
  ASSERT_NPAIRS_OK(ctx.status());
  npt::Spec s;
  s.rows = 31;
  s.cols = 40;
  s.column_targets = true;
  s.classes = 5;
  s.weights = true;
  s.reduction = NPAIRS_REDUCTION_NONE;
  s.seed = 77;
  s.label_dtype = NPAIRS_I32;
  const npt::Inputs in32 = npt::make_inputs(s);
  s.label_dtype = NPAIRS_I64;
  const npt::Inputs in64 = npt::make_inputs(s);
  ASSERT_EQ(in32.labels.int_values(), in64.labels.int_values());
  npt::Outputs a(in32, true, true, false, false), b(in64, true, true, false, false);
  ASSERT_NPAIRS_OK(npt::run_loss(ctx.get(), in32, a));
  ASSERT_NPAIRS_OK(npt::run_loss(ctx.get(), in64, b));
  EXPECT_TRUE(npt::all_close("loss", a.loss.values(), b.loss.values(), 1e-15));
  EXPECT_TRUE(npt::all_close("grads.similarity", a.grad_similarity.values(), b.grad_similarity.values(), 1e-15));
}

// One-hot multilabels are the labels case: same loss and gradients.
TEST(SweepCross, OneHotMultilabelsEqualLabels) {
  npt::Context ctx(NPAIRS_BACKEND_CPU);
  ASSERT_NPAIRS_OK(ctx.status());
  npt::Spec s;
  s.rows = 13;
  s.cols = 17;
  s.column_targets = true;
  s.embeddings = true;
  s.dim = 5;
  s.classes = 4;
  s.reduction = NPAIRS_REDUCTION_SUM;
  s.temperature = 0.37;
  s.seed = 78;
  const npt::Inputs in = npt::make_inputs(s);
  // The labels are 3k - 5 for class k in [0, 4).
  const int64_t K = 4;
  auto one_hot = [&](const npt::Array& labels) {
    npt::Array y(NPAIRS_F64, labels.size() * K);
    for (std::size_t i = 0; i < labels.size(); ++i) {
      const int64_t k = (labels.get_int(i) + 5) / 3;
      EXPECT_TRUE(k >= 0 && k < K);
      y.set(i * K + static_cast<std::size_t>(k), 1.0);
    }
    return y;
  };
  const npt::Array y = one_hot(in.labels), yc = one_hot(in.column_labels);
  npairs_problem pm = in.problem();
  pm.labels = pm.column_labels = nullptr;
  pm.multilabels = y.data();
  pm.column_multilabels = yc.data();
  pm.num_classes = K;
  const npairs_options o = in.options();
  npt::Outputs a(in, true, true, true, true), b(in, true, true, true, true);
  ASSERT_NPAIRS_OK(npt::run_loss(ctx.get(), in, a));
  npairs_gradients gb = b.grads();
  ASSERT_NPAIRS_OK(npairs_loss(ctx.get(), &o, &pm, nullptr, b.loss_ptr(), &gb));
  EXPECT_TRUE(npt::all_close("loss", b.loss.values(), a.loss.values(), 1e-13));
  EXPECT_TRUE(npt::all_close("grads.similarity", b.grad_similarity.values(), a.grad_similarity.values(), 1e-13));
  EXPECT_TRUE(npt::all_close("grads.anchors", b.grad_anchors.values(), a.grad_anchors.values(), 1e-13));
  EXPECT_TRUE(npt::all_close("grads.positives", b.grad_positives.values(), a.grad_positives.values(), 1e-13));
}

}  // namespace
