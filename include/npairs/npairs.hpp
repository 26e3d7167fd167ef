// Header-only C++17 wrapper over the C API of npairs.h: a RAII context,
// exceptions that carry the status and the library's message, and typed
// views so that sizes are checked before the call. It adds no behaviour: every
// call is one call of the C API.
#ifndef NPAIRS_NPAIRS_HPP
#define NPAIRS_NPAIRS_HPP

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "npairs/npairs.h"

namespace npairs {

// A failed call: status() is the npairs_status, what() the library's message.
class error : public std::runtime_error {
 public:
  error(npairs_status status, const std::string& message)
      : std::runtime_error(message), status_(status) {}
  npairs_status status() const noexcept { return status_; }

 private:
  npairs_status status_;
};

// Throws npairs::error for any status but NPAIRS_OK.
inline void check(npairs_status status) {
  if (status != NPAIRS_OK) throw error(status, npairs_last_error());
}

// A contiguous, non-owning view of `size` elements.
template <class T>
class span {
 public:
  span() = default;
  span(T* data, std::size_t size) : data_(data), size_(size) {}
  template <class U, class = std::enable_if_t<std::is_convertible_v<U*, T*>>>
  span(std::vector<U>& v) : data_(v.data()), size_(v.size()) {}
  template <class U, class = std::enable_if_t<std::is_convertible_v<const U*, T*>>>
  span(const std::vector<U>& v) : data_(v.data()), size_(v.size()) {}
  T* data() const { return data_; }
  std::size_t size() const { return size_; }

 private:
  T* data_ = nullptr;
  std::size_t size_ = 0;
};

template <class T> struct dtype_of;
template <> struct dtype_of<float> { static constexpr npairs_dtype value = NPAIRS_F32; };
template <> struct dtype_of<double> { static constexpr npairs_dtype value = NPAIRS_F64; };
template <> struct dtype_of<int32_t> { static constexpr npairs_dtype value = NPAIRS_I32; };
template <> struct dtype_of<int64_t> { static constexpr npairs_dtype value = NPAIRS_I64; };

// Owns an npairs_context; move-only.
class context {
 public:
  explicit context(npairs_backend backend = NPAIRS_BACKEND_AUTO, int32_t device = 0) {
    check(npairs_context_create(backend, device, &ctx_));
  }
  context(context&& other) noexcept : ctx_(std::exchange(other.ctx_, nullptr)) {}
  context& operator=(context&& other) noexcept {
    std::swap(ctx_, other.ctx_);
    return *this;
  }
  context(const context&) = delete;
  context& operator=(const context&) = delete;
  ~context() { npairs_context_destroy(ctx_); }

  npairs_backend backend() const {
    npairs_backend b;
    check(npairs_context_backend(ctx_, &b));
    return b;
  }
  void set_stream(void* cuda_stream) { check(npairs_context_set_stream(ctx_, cuda_stream)); }
  void set_threads(int32_t threads) { check(npairs_context_set_threads(ctx_, threads)); }
  void synchronize() { check(npairs_context_synchronize(ctx_)); }
  npairs_context get() const { return ctx_; }

 private:
  npairs_context ctx_ = nullptr;
};

// npairs_options with its defaults.
inline npairs_options default_options() {
  npairs_options o;
  npairs_options_init(&o);
  return o;
}

namespace detail {
inline void require_size(std::size_t size, int64_t expected, const char* name) {
  if (size != std::size_t(expected)) {
    throw error(NPAIRS_ERROR_INVALID_ARGUMENT, std::string(name) + " has " + std::to_string(size) +
                                                   " elements, expected " + std::to_string(expected));
  }
}
// A problem with labels set: rows = labels.size(), cols = column_labels.size()
// (or rows when column_labels is empty).
template <class T, class L>
npairs_problem labelled_problem(span<const L> labels, span<const L> column_labels) {
  npairs_problem p;
  npairs_problem_init(&p);
  p.rows = int64_t(labels.size());
  p.cols = column_labels.data() ? int64_t(column_labels.size()) : p.rows;
  p.dtype = dtype_of<T>::value;
  p.labels = labels.data();
  p.column_labels = column_labels.data();
  p.label_dtype = dtype_of<L>::value;
  return p;
}
}  // namespace detail

// The scalar loss of a [rows x cols] similarity with integer labels
// (rows = labels.size(), cols = column_labels.size() or rows). Writes dL/dS
// to grad_similarity when it is not empty. Needs a scalar reduction.
template <class T, class L>
T similarity_loss(context& ctx, span<const L> labels, span<const T> similarity,
                  const npairs_options& options = default_options(), span<T> grad_similarity = {},
                  span<const L> column_labels = {}) {
  npairs_problem p = detail::labelled_problem<T>(labels, column_labels);
  detail::require_size(similarity.size(), p.rows * p.cols, "similarity");
  if (grad_similarity.data()) detail::require_size(grad_similarity.size(), p.rows * p.cols, "grad_similarity");
  p.similarity = similarity.data();
  npairs_gradients g;
  npairs_gradients_init(&g);
  g.similarity = grad_similarity.data();
  T loss{};
  check(npairs_loss(ctx.get(), &options, &p, nullptr, &loss, &g));
  return loss;
}

// The scalar loss of anchors [rows x dim] and positives [cols x dim] with
// integer labels; writes dL/dA and dL/dP where the spans are not empty.
// Needs a scalar reduction.
template <class T, class L>
T embeddings_loss(context& ctx, span<const L> labels, span<const T> anchors, span<const T> positives,
                  int64_t dim, const npairs_options& options = default_options(),
                  span<T> grad_anchors = {}, span<T> grad_positives = {},
                  span<const L> column_labels = {}) {
  npairs_problem p = detail::labelled_problem<T>(labels, column_labels);
  detail::require_size(anchors.size(), p.rows * dim, "anchors");
  detail::require_size(positives.size(), p.cols * dim, "positives");
  if (grad_anchors.data()) detail::require_size(grad_anchors.size(), p.rows * dim, "grad_anchors");
  if (grad_positives.data()) detail::require_size(grad_positives.size(), p.cols * dim, "grad_positives");
  p.anchors = anchors.data();
  p.positives = positives.data();
  p.dim = dim;
  npairs_gradients g;
  npairs_gradients_init(&g);
  g.anchors = grad_anchors.data();
  g.positives = grad_positives.data();
  T loss{};
  check(npairs_loss(ctx.get(), &options, &p, nullptr, &loss, &g));
  return loss;
}

}  // namespace npairs

#endif  // NPAIRS_NPAIRS_HPP
