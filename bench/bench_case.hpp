// One benchmark case of npairs_bench: what is computed (input, targets,
// gradients, sizes, dtype, backend), its host data, the bytes it must move
// and the GEMMs it must run. Only the public header <npairs/npairs.h> is used.
#pragma once

#include <npairs/npairs.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "half.hpp"

namespace bench {

enum class Input { similarity, embeddings };
enum class Targets { labels, multilabels };

struct CaseSpec {
  npairs_backend backend = NPAIRS_BACKEND_CPU;
  npairs_dtype dtype = NPAIRS_F32;
  Input input = Input::similarity;
  Targets targets = Targets::labels;
  bool grad_similarity = false;  // dL/dS wanted
  bool grad_embeddings = false;  // dL/dA and dL/dP wanted (embeddings input only)
  int64_t rows = 0;              // R
  int64_t cols = 0;              // M
  int64_t dim = 0;               // D (embeddings input)
  int64_t classes = 0;           // distinct labels, or K for multilabels
  bool device_memory = false;    // CUDA: device buffers rather than host pointers
  bool allow_tf32 = false;
  size_t workspace_limit = 0;    // npairs_context_set_workspace_limit; 0: none
  bool symmetric = false;        // NPAIRS_FLAG_SYMMETRIC (CLIP's loss: both directions)
  bool grad_temperature = false; // dL/dtau wanted

  size_t value_size() const {
    return dtype == NPAIRS_F64 ? sizeof(double) : is_half() ? sizeof(HalfBits) : sizeof(float);
  }
  bool is_half() const { return dtype == NPAIRS_F16 || dtype == NPAIRS_BF16; }
  bool shared_targets() const { return rows == cols; }  // no column targets given
};

// Short names for tables: "similarity", "labels", "dS", "dA+dP", "sym:dS+dtau", ...
const char* input_name(Input input);
const char* targets_name(Targets targets);
std::string grads_name(const CaseSpec& spec);
const char* dtype_name(npairs_dtype dtype);  // "f32", "f64", "f16", "bf16"
bool dtype_from_name(const std::string& name, npairs_dtype* out);
const char* backend_name(npairs_backend backend);

// Bytes the case must move at least: read the logits (or the embeddings) and
// the targets once, write each wanted gradient once.
double bytes_moved(const CaseSpec& spec);

// The arrays of one npairs_loss call; inputs first, then the outputs.
enum Array {
  kLabels,
  kColumnLabels,
  kMultilabels,
  kColumnMultilabels,
  kSimilarity,
  kAnchors,
  kPositives,
  kGradSimilarity,
  kGradAnchors,
  kGradPositives,
  kLoss,
  kGradTemperature,
  kArrayCount
};
constexpr int kFirstOutput = kGradSimilarity;

// Where each array of a call lives (host or device), and its size in bytes;
// an array the case does not use has 0 bytes and a null pointer.
struct CaseArrays {
  std::array<void*, kArrayCount> ptr{};
  std::array<size_t, kArrayCount> bytes{};
};

npairs_problem make_problem(const CaseSpec& spec, const CaseArrays& arrays);
npairs_gradients make_gradients(const CaseArrays& arrays);

// The host data of a case: deterministic pseudo-random logits (unit-length
// embeddings, or similarities in [-1, 1)) and targets such that every row
// has a positive column. T is float, double, or HalfBits for F16 and BF16
// (the float data rounded to the case's dtype).
template <class T>
struct HostCase {
  std::vector<int32_t> labels, column_labels;
  std::vector<T> multilabels, column_multilabels, similarity, anchors, positives;
  std::vector<T> grad_similarity, grad_anchors, grad_positives;
  T loss = 0;
  std::vector<T> grad_temperature;  // [1] when dL/dtau is wanted

  explicit HostCase(const CaseSpec& spec);
  CaseArrays arrays();
};

// The row-major GEMMs C[m x n] = alpha op(A) op(B) the library runs for a
// case, in its order, naming the matrices they read and write ("logits" is
// the R x M logits, overwritten by dL/dS, that the gradient GEMMs read).
enum class Matrix { anchors, positives, logits, multilabels, column_multilabels, overlaps,
                    grad_anchors, grad_positives, count };
int64_t matrix_elements(const CaseSpec& spec, Matrix matrix);
struct Gemm {
  bool trans_a, trans_b;
  int64_t m, n, k;
  Matrix a, b, c;
  bool tf32_allowed;  // the library never uses TF32 for the label overlaps
};
std::vector<Gemm> library_gemms(const CaseSpec& spec);
double gemm_flops(const CaseSpec& spec);

// The pieces an embeddings call is cut into under spec.workspace_limit, as
// src/tiled_loss.cpp plans them when the R x M logits are the call's only
// large scratch (labels, no dL/dS output): blocks of `rows` whole rows, or
// blocks of `rows` rows in tiles of `cols` columns, whose logits the library
// computes twice (once for the statistics, once for the gradient).
struct Pieces {
  int64_t rows = 0, cols = 0;
  bool column_tiles() const { return cols > 0; }
};
Pieces pieces_of(const CaseSpec& spec);

// Deterministic uniform value in [-1, 1) for (stream, index): cheap, and the
// same whichever thread computes it.
double hash_uniform(uint64_t stream, uint64_t index);

}  // namespace bench
