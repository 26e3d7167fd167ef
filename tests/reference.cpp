#include "reference.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

namespace ref {

template <class Real>
Result<Real> compute(const Problem& p) {
  Result<Real> out;
  const int64_t R = p.rows;
  const int64_t M = p.cols;
  const int64_t D = p.dim;
  const int64_t K = p.num_classes;
  const std::size_t RM = static_cast<std::size_t>(R * M);

  // Logits z = S / tau.
  std::vector<Real> z(RM);
  for (int64_t i = 0; i < R; ++i) {
    for (int64_t j = 0; j < M; ++j) {
      Real s = 0;
      if (p.embeddings) {
        for (int64_t k = 0; k < D; ++k) {
          s += static_cast<Real>(p.anchors[i * D + k]) * static_cast<Real>(p.positives[j * D + k]);
        }
        if (p.round_similarity) s = static_cast<Real>(p.round_similarity(static_cast<double>(s)));
      } else {
        s = static_cast<Real>(p.similarity[i * M + j]);
      }
      z[i * M + j] = s / static_cast<Real>(p.temperature);
    }
  }

  out.logits = z;

  // Targets T, row-normalised.
  std::vector<Real>& T = out.targets;
  T.assign(RM, Real(0));
  if (p.multilabel) {
    const std::vector<double>& Y = p.multilabels;
    const std::vector<double>& Yc = p.column_multilabels.empty() ? p.multilabels : p.column_multilabels;
    for (double y : Y) {
      if (y < 0) {
        out.valid = false;
        out.error = "negative multilabel entry";
        return out;
      }
    }
    for (double y : Yc) {
      if (y < 0) {
        out.valid = false;
        out.error = "negative column multilabel entry";
        return out;
      }
    }
    for (int64_t i = 0; i < R; ++i) {
      Real row_sum = 0;
      for (int64_t j = 0; j < M; ++j) {
        Real g = 0;
        for (int64_t k = 0; k < K; ++k) {
          g += static_cast<Real>(Y[i * K + k]) * static_cast<Real>(Yc[j * K + k]);
        }
        T[i * M + j] = g;
        row_sum += g;
      }
      if (!(row_sum > 0)) {
        out.valid = false;
        out.first_bad_row = i;
        out.error = "row " + std::to_string(i) + " has no positive column";
        return out;
      }
      for (int64_t j = 0; j < M; ++j) T[i * M + j] /= row_sum;
    }
  } else {
    const std::vector<int64_t>& l = p.labels;
    const std::vector<int64_t>& c = p.column_labels.empty() ? p.labels : p.column_labels;
    for (int64_t i = 0; i < R; ++i) {
      int64_t n = 0;
      for (int64_t j = 0; j < M; ++j) n += (l[i] == c[j]) ? 1 : 0;
      if (n == 0) {
        out.valid = false;
        out.first_bad_row = i;
        out.error = "row " + std::to_string(i) + " has no positive column";
        return out;
      }
      for (int64_t j = 0; j < M; ++j) {
        T[i * M + j] = (l[i] == c[j]) ? Real(1) / static_cast<Real>(n) : Real(0);
      }
    }
  }

  // Row losses (max-shifted) and softmax.
  std::vector<Real> softmax(RM);
  out.row_loss.assign(R, Real(0));
  for (int64_t i = 0; i < R; ++i) {
    Real m = -std::numeric_limits<Real>::infinity();
    for (int64_t j = 0; j < M; ++j) m = std::max(m, z[i * M + j]);
    // A NaN anywhere must propagate; std::max may skip it, so add it back.
    bool has_nan = false;
    for (int64_t j = 0; j < M; ++j) has_nan = has_nan || std::isnan(z[i * M + j]);
    if (has_nan) m = std::numeric_limits<Real>::quiet_NaN();
    Real sum_exp = 0;
    for (int64_t j = 0; j < M; ++j) sum_exp += std::exp(z[i * M + j] - m);
    Real target_gap = 0;  // sum_j T_ij (m - z_ij) = m - sum_j T_ij z_ij (as T sums to 1)
    for (int64_t j = 0; j < M; ++j) {
      if (T[i * M + j] != Real(0)) target_gap += T[i * M + j] * (m - z[i * M + j]);
    }
    out.row_loss[i] = std::log(sum_exp) + target_gap;
    for (int64_t j = 0; j < M; ++j) softmax[i * M + j] = std::exp(z[i * M + j] - m) / sum_exp;
  }

  // Symmetric: the same loss over columns, with the targets normalised per
  // column: T'_ji = q_ij / sum_i q_ij, q the unnormalised targets.
  std::vector<Real> column_softmax, column_targets;
  if (p.symmetric) {
    column_softmax.assign(RM, Real(0));
    column_targets.assign(RM, Real(0));
    out.column_loss.assign(M, Real(0));
    for (int64_t j = 0; j < M; ++j) {
      // q_ij is T_ij times row i's normaliser; recompute it from the labels.
      Real n = 0;
      for (int64_t i = 0; i < R; ++i) {
        Real q = 0;
        if (p.multilabel) {
          const std::vector<double>& Yc = p.column_multilabels.empty() ? p.multilabels : p.column_multilabels;
          for (int64_t k = 0; k < K; ++k) {
            q += static_cast<Real>(p.multilabels[i * K + k]) * static_cast<Real>(Yc[j * K + k]);
          }
        } else {
          const std::vector<int64_t>& c = p.column_labels.empty() ? p.labels : p.column_labels;
          q = (p.labels[i] == c[j]) ? Real(1) : Real(0);
        }
        column_targets[i * M + j] = q;
        n += q;
      }
      if (!(n > 0)) {
        out.valid = false;
        out.first_bad_column = j;
        out.error = "column " + std::to_string(j) + " has no positive row";
        return out;
      }
      Real m = -std::numeric_limits<Real>::infinity();
      for (int64_t i = 0; i < R; ++i) m = std::max(m, z[i * M + j]);
      Real sum_exp = 0, target_gap = 0;
      for (int64_t i = 0; i < R; ++i) {
        column_targets[i * M + j] /= n;
        sum_exp += std::exp(z[i * M + j] - m);
        if (column_targets[i * M + j] != Real(0)) target_gap += column_targets[i * M + j] * (m - z[i * M + j]);
      }
      out.column_loss[j] = std::log(sum_exp) + target_gap;
      for (int64_t i = 0; i < R; ++i) column_softmax[i * M + j] = std::exp(z[i * M + j] - m) / sum_exp;
    }
  }
  // Each direction's weight in the loss.
  const Real half = p.symmetric ? Real(0.5) : Real(1);
  const Real column_r =
      (p.reduction == Reduction::SumOverBatchSize) ? (M > 0 ? Real(1) / static_cast<Real>(M) : Real(0)) : Real(1);

  auto weight = [&](int64_t i) -> Real {
    return p.sample_weight.empty() ? Real(1) : static_cast<Real>(p.sample_weight[i]);
  };
  const bool scalar = p.reduction != Reduction::None;

  // Reduction and the L2 term.
  if (!scalar) {
    out.loss.resize(R);
    for (int64_t i = 0; i < R; ++i) out.loss[i] = weight(i) * out.row_loss[i];
  } else {
    Real sum = 0;
    for (int64_t i = 0; i < R; ++i) sum += weight(i) * out.row_loss[i];
    if (p.reduction == Reduction::SumOverBatchSize) sum = R > 0 ? sum / static_cast<Real>(R) : Real(0);
    sum *= half;
    if (p.symmetric) {
      Real column_sum = 0;
      for (int64_t j = 0; j < M; ++j) column_sum += out.column_loss[j];
      sum += half * column_r * column_sum;
    }
    if (p.embeddings && p.reg_lambda != 0) {
      Real a2 = 0, p2 = 0;
      for (int64_t i = 0; i < R * D; ++i) a2 += static_cast<Real>(p.anchors[i]) * static_cast<Real>(p.anchors[i]);
      for (int64_t i = 0; i < M * D; ++i) p2 += static_cast<Real>(p.positives[i]) * static_cast<Real>(p.positives[i]);
      const Real mean_a = R > 0 ? a2 / static_cast<Real>(R) : Real(0);
      const Real mean_p = M > 0 ? p2 / static_cast<Real>(M) : Real(0);
      sum += Real(0.25) * static_cast<Real>(p.reg_lambda) * (mean_a + mean_p);
    }
    out.loss.assign(1, sum);
  }

  // Gradients.
  auto upstream = [&](int64_t i) -> Real {
    if (p.grad_loss.empty()) return Real(1);
    return static_cast<Real>(scalar ? p.grad_loss[0] : p.grad_loss[i]);
  };
  const Real r = (p.reduction == Reduction::SumOverBatchSize) ? (R > 0 ? Real(1) / static_cast<Real>(R) : Real(0))
                                                              : Real(1);
  const Real tau = static_cast<Real>(p.temperature);
  out.grad_similarity.assign(RM, Real(0));
  for (int64_t i = 0; i < R; ++i) {
    const Real c = upstream(i) * weight(i) * half * r / tau;
    for (int64_t j = 0; j < M; ++j) {
      out.grad_similarity[i * M + j] = c * (softmax[i * M + j] - T[i * M + j]);
      if (p.symmetric) {
        out.grad_similarity[i * M + j] += upstream(0) * half * column_r / tau *
                                          (column_softmax[i * M + j] - column_targets[i * M + j]);
      }
    }
  }
  // dL/dtau by its definition, from dL/dz = tau * dL/dS.
  Real moment = 0;
  for (std::size_t k = 0; k < RM; ++k) moment += tau * out.grad_similarity[k] * z[k];
  out.grad_temperature = -moment / tau;
  if (p.embeddings) {
    const Real g = upstream(0);
    const Real lambda = static_cast<Real>(p.reg_lambda);
    out.grad_anchors.assign(static_cast<std::size_t>(R * D), Real(0));
    out.grad_positives.assign(static_cast<std::size_t>(M * D), Real(0));
    for (int64_t i = 0; i < R; ++i) {
      for (int64_t k = 0; k < D; ++k) {
        Real s = 0;
        for (int64_t j = 0; j < M; ++j) s += out.grad_similarity[i * M + j] * static_cast<Real>(p.positives[j * D + k]);
        if (lambda != 0) s += Real(0.5) * lambda * g * static_cast<Real>(p.anchors[i * D + k]) / static_cast<Real>(R);
        out.grad_anchors[i * D + k] = s;
      }
    }
    for (int64_t j = 0; j < M; ++j) {
      for (int64_t k = 0; k < D; ++k) {
        Real s = 0;
        for (int64_t i = 0; i < R; ++i) s += out.grad_similarity[i * M + j] * static_cast<Real>(p.anchors[i * D + k]);
        if (lambda != 0) s += Real(0.5) * lambda * g * static_cast<Real>(p.positives[j * D + k]) / static_cast<Real>(M);
        out.grad_positives[j * D + k] = s;
      }
    }
  }
  return out;
}

template Result<double> compute<double>(const Problem&);
template Result<long double> compute<long double>(const Problem&);

double upstream_objective(const Problem& p, const Result<double>& result) {
  if (p.reduction != Reduction::None) {
    return (p.grad_loss.empty() ? 1.0 : p.grad_loss[0]) * result.loss[0];
  }
  double s = 0;
  for (std::size_t i = 0; i < result.loss.size(); ++i) {
    s += (p.grad_loss.empty() ? 1.0 : p.grad_loss[i]) * result.loss[i];
  }
  return s;
}

}  // namespace ref
