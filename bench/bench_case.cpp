#include "bench_case.hpp"

#include <algorithm>
#include <cmath>

namespace bench {

const char* input_name(Input input) {
  return input == Input::similarity ? "similarity" : "embeddings";
}

const char* targets_name(Targets targets) {
  return targets == Targets::labels ? "labels" : "multilabels";
}

std::string grads_name(const CaseSpec& spec) {
  std::string name;
  if (spec.grad_similarity) name = "dS";
  if (spec.grad_embeddings) name += name.empty() ? "dA+dP" : "+dA+dP";
  if (spec.grad_temperature) name += name.empty() ? "dtau" : "+dtau";
  if (name.empty()) name = "none";
  return spec.symmetric ? "sym:" + name : name;
}

namespace {
constexpr struct {
  npairs_dtype dtype;
  const char* name;
} kDtypes[] = {{NPAIRS_F32, "f32"}, {NPAIRS_F64, "f64"}, {NPAIRS_F16, "f16"}, {NPAIRS_BF16, "bf16"}};
}  // namespace

const char* dtype_name(npairs_dtype dtype) {
  for (const auto& d : kDtypes)
    if (d.dtype == dtype) return d.name;
  return "?";
}

bool dtype_from_name(const std::string& name, npairs_dtype* out) {
  for (const auto& d : kDtypes) {
    if (name == d.name) {
      *out = d.dtype;
      return true;
    }
  }
  return false;
}

const char* backend_name(npairs_backend backend) {
  return backend == NPAIRS_BACKEND_CUDA ? "cuda" : "cpu";
}

double bytes_moved(const CaseSpec& spec) {
  const double R = double(spec.rows), M = double(spec.cols), D = double(spec.dim),
               K = double(spec.classes), value = double(spec.value_size());
  const double column_targets = spec.shared_targets() ? 0.0 : 1.0;
  double elements_read = spec.input == Input::similarity ? R * M : (R + M) * D;
  double target_bytes = spec.targets == Targets::labels
                            ? double(sizeof(int32_t)) * (R + column_targets * M)
                            : value * K * (R + column_targets * M);
  double elements_written = 0;
  if (spec.grad_similarity) elements_written += R * M;
  if (spec.grad_embeddings) elements_written += (R + M) * D;
  return value * (elements_read + elements_written) + target_bytes;
}

npairs_problem make_problem(const CaseSpec& spec, const CaseArrays& arrays) {
  npairs_problem p;
  npairs_problem_init(&p);
  p.rows = spec.rows;
  p.cols = spec.cols;
  p.dtype = spec.dtype;
  p.labels = arrays.ptr[kLabels];
  p.column_labels = arrays.ptr[kColumnLabels];
  p.label_dtype = NPAIRS_I32;
  p.multilabels = arrays.ptr[kMultilabels];
  p.column_multilabels = arrays.ptr[kColumnMultilabels];
  if (spec.targets == Targets::multilabels) p.num_classes = spec.classes;
  p.similarity = arrays.ptr[kSimilarity];
  p.anchors = arrays.ptr[kAnchors];
  p.positives = arrays.ptr[kPositives];
  if (spec.input == Input::embeddings) p.dim = spec.dim;
  return p;
}

npairs_gradients make_gradients(const CaseArrays& arrays) {
  npairs_gradients g;
  npairs_gradients_init(&g);
  g.similarity = arrays.ptr[kGradSimilarity];
  g.anchors = arrays.ptr[kGradAnchors];
  g.positives = arrays.ptr[kGradPositives];
  g.temperature = arrays.ptr[kGradTemperature];
  return g;
}

double hash_uniform(uint64_t stream, uint64_t index) {
  // splitmix64 of (stream, index): well mixed, and free of sequential state.
  uint64_t x = stream * 0x9E3779B97F4A7C15ull + index + 0x632BE59BD9B4E019ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  x ^= x >> 31;
  return double(x >> 11) * 0x1.0p-52 - 1.0;
}

namespace {

enum Stream : uint64_t { kSimilarityStream = 1, kAnchorStream, kPositiveStream, kClassStream };

template <class T>
void fill_uniform(std::vector<T>* v, int64_t count, uint64_t stream) {
  v->resize(size_t(count));
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < count; ++i) (*v)[size_t(i)] = T(hash_uniform(stream, uint64_t(i)));
}

// Rows of uniform values scaled to unit length, as normalised embeddings are.
template <class T>
void fill_unit_rows(std::vector<T>* v, int64_t rows, int64_t width, uint64_t stream) {
  fill_uniform(v, rows * width, stream);
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < rows; ++i) {
    T* row = v->data() + i * width;
    double squares = 0;
    for (int64_t k = 0; k < width; ++k) squares += double(row[k]) * double(row[k]);
    const double scale = squares > 0 ? 1.0 / std::sqrt(squares) : 1.0;
    for (int64_t k = 0; k < width; ++k) row[k] = T(double(row[k]) * scale);
  }
}

// Multi-hot rows: class i % K, which makes every class occur when there are at
// least K rows, and one more pseudo-random class.
template <class T>
void fill_multi_hot(std::vector<T>* v, int64_t rows, int64_t classes, uint64_t stream) {
  v->assign(size_t(rows * classes), T(0));
  for (int64_t i = 0; i < rows; ++i) {
    const double u = 0.5 * (hash_uniform(stream, uint64_t(i)) + 1.0);
    const int64_t extra = std::min(classes - 1, int64_t(u * double(classes)));
    (*v)[size_t(i * classes + i % classes)] = T(1);
    (*v)[size_t(i * classes + extra)] = T(1);
  }
}

std::vector<HalfBits> to_half(const std::vector<float>& v, npairs_dtype dtype) {
  std::vector<HalfBits> out(v.size());
  const int64_t n = int64_t(v.size());
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) out[size_t(i)] = to_half_bits(v[size_t(i)], dtype);
  return out;
}

}  // namespace

template <class T>
HostCase<T>::HostCase(const CaseSpec& spec) {
  const int64_t R = spec.rows, M = spec.cols, D = spec.dim, K = spec.classes;
  // Labels i % classes: every label of a row occurs among the columns when
  // M >= classes (the default of min(R, M) / 2 classes puts each label twice).
  if (spec.targets == Targets::labels) {
    labels.resize(size_t(R));
    for (int64_t i = 0; i < R; ++i) labels[size_t(i)] = int32_t(i % K);
    if (!spec.shared_targets()) {
      column_labels.resize(size_t(M));
      for (int64_t j = 0; j < M; ++j) column_labels[size_t(j)] = int32_t(j % K);
    }
  } else {
    fill_multi_hot(&multilabels, R, K, kClassStream);
    if (!spec.shared_targets()) fill_multi_hot(&column_multilabels, M, K, kClassStream + 1);
  }
  if (spec.input == Input::similarity) {
    fill_uniform(&similarity, R * M, kSimilarityStream);
  } else {
    fill_unit_rows(&anchors, R, D, kAnchorStream);
    fill_unit_rows(&positives, M, D, kPositiveStream);
  }
  if (spec.grad_similarity) grad_similarity.assign(size_t(R * M), T(0));
  if (spec.grad_embeddings) {
    grad_anchors.assign(size_t(R * D), T(0));
    grad_positives.assign(size_t(M * D), T(0));
  }
  if (spec.grad_temperature) grad_temperature.assign(1, T(0));
}

// 16-bit floats: the float data, rounded to the case's dtype.
template <>
HostCase<HalfBits>::HostCase(const CaseSpec& spec) {
  const HostCase<float> source(spec);
  labels = source.labels;
  column_labels = source.column_labels;
  multilabels = to_half(source.multilabels, spec.dtype);
  column_multilabels = to_half(source.column_multilabels, spec.dtype);
  similarity = to_half(source.similarity, spec.dtype);
  anchors = to_half(source.anchors, spec.dtype);
  positives = to_half(source.positives, spec.dtype);
  grad_similarity = to_half(source.grad_similarity, spec.dtype);
  grad_anchors = to_half(source.grad_anchors, spec.dtype);
  grad_positives = to_half(source.grad_positives, spec.dtype);
  grad_temperature = to_half(source.grad_temperature, spec.dtype);
}

template <class T>
CaseArrays HostCase<T>::arrays() {
  CaseArrays a;
  auto set = [&a](Array which, auto& vector) {
    a.ptr[which] = vector.empty() ? nullptr : vector.data();
    a.bytes[which] = vector.size() * sizeof(vector[0]);
  };
  set(kLabels, labels);
  set(kColumnLabels, column_labels);
  set(kMultilabels, multilabels);
  set(kColumnMultilabels, column_multilabels);
  set(kSimilarity, similarity);
  set(kAnchors, anchors);
  set(kPositives, positives);
  set(kGradSimilarity, grad_similarity);
  set(kGradAnchors, grad_anchors);
  set(kGradPositives, grad_positives);
  a.ptr[kLoss] = &loss;
  a.bytes[kLoss] = sizeof(T);
  set(kGradTemperature, grad_temperature);
  return a;
}

template struct HostCase<float>;
template struct HostCase<double>;
template struct HostCase<HalfBits>;

int64_t matrix_elements(const CaseSpec& spec, Matrix matrix) {
  const int64_t R = spec.rows, M = spec.cols, D = spec.dim, K = spec.classes;
  switch (matrix) {
    case Matrix::anchors:
    case Matrix::grad_anchors:
      return R * D;
    case Matrix::positives:
    case Matrix::grad_positives:
      return M * D;
    case Matrix::logits:
    case Matrix::overlaps:
      return R * M;
    case Matrix::multilabels:
      return R * K;
    case Matrix::column_multilabels:
      return M * K;
    case Matrix::count:
      break;
  }
  return 0;
}

std::vector<Gemm> library_gemms(const CaseSpec& spec) {
  const int64_t R = spec.rows, M = spec.cols, D = spec.dim, K = spec.classes;
  std::vector<Gemm> gemms;
  // G = Y Y'^T, then S = A P^T, dA = dS P and dP = dS^T A.
  if (spec.targets == Targets::multilabels)
    gemms.push_back({false, true, R, M, K, Matrix::multilabels, Matrix::column_multilabels,
                     Matrix::overlaps, false});
  if (spec.input == Input::embeddings) {
    gemms.push_back({false, true, R, M, D, Matrix::anchors, Matrix::positives, Matrix::logits, true});
    if (spec.grad_embeddings) {
      gemms.push_back({false, false, R, D, M, Matrix::logits, Matrix::positives,
                       Matrix::grad_anchors, true});
      gemms.push_back({true, false, M, D, R, Matrix::logits, Matrix::anchors,
                       Matrix::grad_positives, true});
    }
  }
  return gemms;
}

double gemm_flops(const CaseSpec& spec) {
  double flops = 0;
  for (const Gemm& g : library_gemms(spec)) flops += 2.0 * double(g.m) * double(g.n) * double(g.k);
  // Tiles of columns compute the logits a second time for the gradients.
  if (pieces_of(spec).column_tiles() && spec.grad_embeddings)
    flops += 2.0 * double(spec.rows) * double(spec.cols) * double(spec.dim);
  return flops;
}

Pieces pieces_of(const CaseSpec& spec) {
  constexpr int64_t kMinWholeRowBlock = 64, kTileRows = 256;
  Pieces p;
  const int64_t element = int64_t(spec.value_size());
  const int64_t limit = int64_t(spec.workspace_limit);
  p.rows = spec.rows;
  if (limit == 0 || spec.rows * spec.cols * element <= limit) return p;
  p.rows = std::min(spec.rows, limit / (spec.cols * element));
  if (p.rows >= std::min(spec.rows, kMinWholeRowBlock)) return p;
  p.rows = std::min(spec.rows, kTileRows);
  p.cols = std::max<int64_t>(1, limit / (p.rows * element));
  return p;
}

}  // namespace bench
