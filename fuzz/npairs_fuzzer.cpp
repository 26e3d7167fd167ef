// The libFuzzer target: decodes from the input one use of the C API (a
// context, its settings, and an npairs_loss call with every member of every
// struct chosen: sizes, enums valid and not, NULL or not, struct_size,
// options, data values) and checks the contract of SPEC section 2 on it:
//  - every buffer is a heap block of exactly its declared size, so that the
//    sanitizers report any access outside it;
//  - a failed call returns a documented status (never INTERNAL), leaves the
//    outputs, the inputs and the caller's structs bitwise untouched, and
//    records its own message;
//  - a call that breaks an argument rule the harness knows of fails with
//    INVALID_ARGUMENT or UNSUPPORTED, never INVALID_VALUE: arguments are
//    checked before any data is read;
//  - a successful call writes every output asked for, changes no input, keeps
//    the last error message, and gives the same bytes when repeated.
// The harness keeps its side of the contract: a non-NULL pointer always
// points to a buffer of the size its member declares; when that size is
// unknown (a bad dtype or reduction) or negative the buffer is empty, and
// when it is too large to allocate the pointer is NULL.
//
// Built with libFuzzer in the fuzz preset (fuzz/CMakeLists.txt), and with
// fuzz/replay_main.cpp as `fuzz_replay`, which replays fuzz/corpus and
// fuzz/regressions in the ordinary test builds. A broken check aborts.
#include <npairs/npairs.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iterator>
#include <limits>
#include <memory>
#include <string>
#include <vector>

namespace {

// Aborts, naming the broken rule, unless `condition` holds.
void check(bool condition, const char* what, npairs_status status = NPAIRS_OK) {
  if (condition) return;
  std::fprintf(stderr, "npairs_fuzzer: contract violated: %s (status %d: %s; last error: \"%s\")\n", what,
               static_cast<int>(status), npairs_status_string(status), npairs_last_error());
  std::abort();
}

// Reads decisions from the fuzz input. Once it is used up every byte is 0,
// and 0 always selects the first (most ordinary) choice.
class FuzzInput {
 public:
  FuzzInput(const uint8_t* data, std::size_t size) : data_(data), size_(size) {}
  uint8_t byte() { return pos_ < size_ ? data_[pos_++] : 0; }
  bool flag() { return (byte() & 1) != 0; }
  template <class T, std::size_t N>
  T pick(const T (&choices)[N]) {
    return choices[byte() % N];
  }

 private:
  const uint8_t* data_;
  std::size_t size_;
  std::size_t pos_ = 0;
};

constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr double kDenormal = std::numeric_limits<double>::denorm_min();
constexpr double kHuge = std::numeric_limits<double>::max();

// A size: mostly 0..40; sometimes larger, negative, or too large for any
// buffer (the members that depend on it are then NULL or empty).
int64_t size_value(FuzzInput& in) {
  constexpr int64_t kOther[] = {64,
                                200,
                                -1,
                                -(int64_t(1) << 31),
                                std::numeric_limits<int64_t>::min(),
                                std::numeric_limits<int32_t>::max(),
                                int64_t(1) << 31,
                                int64_t(1) << 40,
                                int64_t(1) << 62,
                                std::numeric_limits<int64_t>::max()};
  constexpr int kSmall = 256 - int(std::size(kOther));
  const int b = in.byte();
  return b < kSmall ? b % 41 : kOther[b - kSmall];
}

// A data value: ordinary ones in [-8, 8), and the extremes.
template <class T>
T data_value(uint8_t b) {
  using limits = std::numeric_limits<T>;
  switch (b) {
    case 0: return T(0);
    case 1: return T(1);
    case 2: return T(-1);
    case 3: return T(0.5);
    case 4: return T(2);
    case 5: return -T(0);
    case 6: return limits::quiet_NaN();
    case 7: return limits::infinity();
    case 8: return -limits::infinity();
    case 9: return T(1e30);
    case 10: return T(-1e30);
    case 11: return T(1e-30);
    case 12: return limits::denorm_min();
    case 13: return limits::max();
    case 14: return limits::lowest();
    case 15: return limits::min();
    default: return T((int(b) - 128) / 16.0);
  }
}

// A label: mostly 0..3 (so that rows share classes), and the extremes.
int64_t label_value(uint8_t b) {
  constexpr int64_t kSpecial[] = {-1,
                                  std::numeric_limits<int32_t>::min(),
                                  std::numeric_limits<int32_t>::max(),
                                  std::numeric_limits<int64_t>::min(),
                                  std::numeric_limits<int64_t>::max(),
                                  int64_t(1) << 60,
                                  (int64_t(1) << 60) + 1,
                                  int64_t(1) << 32,
                                  (int64_t(1) << 32) + 1,  // 1 once truncated to int32
                                  -(int64_t(1) << 60),
                                  4, 5, 6, 7, 8, 9};
  constexpr int kSmall = 256 - int(std::size(kSpecial));
  return b < kSmall ? b % 4 : kSpecial[b - kSmall];
}

std::size_t element_size(npairs_dtype dtype) {
  switch (dtype) {
    case NPAIRS_F32: return 4;
    case NPAIRS_F64: return 8;
    case NPAIRS_F16:
    case NPAIRS_BF16: return 2;
    case NPAIRS_I32: return 4;
    case NPAIRS_I64: return 8;
    default: return 0;  // unknown: the buffer is empty
  }
}

// A heap block of exactly `bytes` bytes, or none (NULL) when the declared
// size is too large to allocate.
class Block {
 public:
  static constexpr std::size_t kMaxBytes = std::size_t(1) << 20;
  Block() = default;
  explicit Block(std::size_t bytes) : data_(new unsigned char[bytes]), bytes_(bytes) {}
  unsigned char* data() const { return data_.get(); }
  std::size_t bytes() const { return bytes_; }
  std::vector<unsigned char> contents() const { return {data_.get(), data_.get() + bytes_}; }

 private:
  std::unique_ptr<unsigned char[]> data_;
  std::size_t bytes_ = 0;
};

// The block for a [rows x width] array of `element`-byte values: empty when
// a size is negative or the element size unknown (the call is then invalid
// and must not read it), none when too large.
Block array_block(int64_t rows, int64_t width, std::size_t element) {
  if (rows <= 0 || width <= 0 || element == 0) return Block(0);
  const auto limit = static_cast<int64_t>(Block::kMaxBytes / element);
  if (rows > limit || width > limit / rows) return Block();
  return Block(static_cast<std::size_t>(rows * width) * element);
}

// A block for a member the input asks for, else none.
Block wanted_block(bool wanted, int64_t rows, int64_t width, std::size_t element) {
  return wanted ? array_block(rows, width, element) : Block();
}

// Bit patterns no computed value has (NaNs with a payload the inputs never
// contain); integer and unknown dtypes get 0x5A bytes.
void poison(Block& block, npairs_dtype dtype) {
  constexpr uint32_t kPoison32 = 0x7FC0DEADu;
  constexpr uint64_t kPoison64 = 0x7FF8DEADBEEF0001ull;
  const std::size_t size = dtype == NPAIRS_F32 ? 4 : dtype == NPAIRS_F64 ? 8 : 1;
  for (std::size_t at = 0; at + size <= block.bytes(); at += size) {
    if (dtype == NPAIRS_F32) std::memcpy(block.data() + at, &kPoison32, 4);
    else if (dtype == NPAIRS_F64) std::memcpy(block.data() + at, &kPoison64, 8);
    else block.data()[at] = 0x5A;
  }
}

// True when no element of a float block still holds the poison.
bool fully_written(const Block& block, npairs_dtype dtype) {
  Block poisoned(block.bytes());
  poison(poisoned, dtype);
  const std::size_t size = dtype == NPAIRS_F32 ? 4 : 8;
  for (std::size_t at = 0; at + size <= block.bytes(); at += size) {
    if (std::memcmp(block.data() + at, poisoned.data() + at, size) == 0) return false;
  }
  return true;
}

template <class T>
void fill_values(FuzzInput& in, Block& block) {
  for (std::size_t at = 0; at + sizeof(T) <= block.bytes(); at += sizeof(T)) {
    const T v = data_value<T>(in.byte());
    std::memcpy(block.data() + at, &v, sizeof(T));
  }
}

void fill_floats(FuzzInput& in, Block& block, npairs_dtype dtype) {
  if (dtype == NPAIRS_F32) fill_values<float>(in, block);
  else if (dtype == NPAIRS_F64) fill_values<double>(in, block);
  else poison(block, dtype);  // F16, BF16 (UNSUPPORTED on the CPU) or unknown: never read
}

void fill_labels(FuzzInput& in, Block& block, npairs_dtype label_dtype) {
  const std::size_t size = element_size(label_dtype);
  for (std::size_t at = 0; size != 0 && at + size <= block.bytes(); at += size) {
    const int64_t v = label_value(in.byte());
    const auto narrow = static_cast<int32_t>(v);
    std::memcpy(block.data() + at, size == 8 ? static_cast<const void*>(&v) : &narrow, size);
  }
}

// The first published size of each struct (1.0's): npairs_gradients grew in
// 1.1 (`temperature`), and a 1.0 caller's smaller struct is still valid.
template <class Struct>
constexpr std::size_t first_published_size() {
  return sizeof(Struct);
}
template <>
constexpr std::size_t first_published_size<npairs_gradients>() {
  return offsetof(npairs_gradients, temperature);
}

// One of the caller's structs in a heap block of exactly struct_size bytes:
// the size this library knows, a larger one with a zero tail (accepted) or
// with a non-zero byte in it (UNSUPPORTED), or a smaller one (INVALID_ARGUMENT
// below the first published size, else an older caller's struct; the block
// still holds the struct_size field the library reads first).
template <class Struct>
class CallerStruct {
 public:
  CallerStruct(FuzzInput& in, const Struct& value) {
    std::size_t declared = sizeof(Struct);
    const int kind = in.byte() % 8;  // mostly the exact size
    if (kind == 5 || kind == 6) declared += 1 + in.byte() % 64;
    if (kind == 7) declared = in.byte() % sizeof(Struct);
    block_ = Block(std::max(declared, sizeof(std::size_t)));
    std::memset(block_.data(), 0, block_.bytes());
    std::memcpy(block_.data(), &value, std::min(declared, sizeof(Struct)));
    std::memcpy(block_.data(), &declared, sizeof(std::size_t));
    declared_ = declared;
    too_small_ = declared < first_published_size<Struct>();
    if (kind == 6) {
      block_.data()[sizeof(Struct) + in.byte() % (declared - sizeof(Struct))] = uint8_t(1 + in.byte() % 255);
      dirty_tail_ = true;
    }
  }
  Struct* get() const { return reinterpret_cast<Struct*>(block_.data()); }
  bool refused() const { return too_small_ || dirty_tail_; }
  // Whether the struct the library reads has the member ending at `end`.
  bool holds(std::size_t end) const { return declared_ >= end; }
  std::vector<unsigned char> contents() const { return block_.contents(); }

 private:
  Block block_;
  std::size_t declared_ = 0;
  bool too_small_ = false;
  bool dirty_tail_ = false;
};

// Creates a context of a decoded backend and device (checking the failures),
// then exercises the other context calls on it. Returns a usable context:
// a CPU one when the decoded creation is refused.
npairs_context make_context(FuzzInput& in) {
  const npairs_backend backend = in.pick({NPAIRS_BACKEND_CPU, NPAIRS_BACKEND_AUTO, NPAIRS_BACKEND_CUDA, 3, -1,
                                          std::numeric_limits<int32_t>::min()});
  const int32_t device = in.pick({0, 0, 1, -1, std::numeric_limits<int32_t>::max(), std::numeric_limits<int32_t>::min()});
  const bool null_out = in.byte() % 8 == 7;
  const bool bad_arguments = null_out || backend < NPAIRS_BACKEND_AUTO || backend > NPAIRS_BACKEND_CUDA || device < 0;
  static char marker;
  const auto sentinel = reinterpret_cast<npairs_context>(&marker);
  npairs_context ctx = sentinel;
  npairs_status st = npairs_context_create(backend, device, null_out ? nullptr : &ctx);
  switch (backend) {
    case NPAIRS_BACKEND_AUTO:
    case NPAIRS_BACKEND_CPU: check(npairs_backend_available(backend) == 1, "AUTO or CPU is unavailable"); break;
    case NPAIRS_BACKEND_CUDA: break;  // depends on the build and the machine
    default: check(npairs_backend_available(backend) == 0, "an unknown backend is available"); break;
  }
  if (st == NPAIRS_OK) {
    check(!bad_arguments, "npairs_context_create accepted bad arguments");
    check(ctx != sentinel && ctx != nullptr, "npairs_context_create succeeded without storing a context");
  } else {
    check(st == NPAIRS_ERROR_INVALID_ARGUMENT || st == NPAIRS_ERROR_BACKEND_UNAVAILABLE ||
              st == NPAIRS_ERROR_OUT_OF_MEMORY || st == NPAIRS_ERROR_DEVICE,
          "npairs_context_create returned an undocumented status", st);
    check(!bad_arguments || st == NPAIRS_ERROR_INVALID_ARGUMENT, "npairs_context_create: bad argument, wrong status", st);
    check(ctx == sentinel, "npairs_context_create wrote *out on failure", st);
    check(npairs_last_error()[0] != '\0', "npairs_context_create failed without a message", st);
    st = npairs_context_create(NPAIRS_BACKEND_CPU, 0, &ctx);
    check(st == NPAIRS_OK, "npairs_context_create(CPU) failed", st);
  }

  // The library's scratch stays far below the fuzzer's RSS limit: a call
  // above 64 MiB is streamed (SPEC section 4), which is fuzzed that way too.
  check(npairs_context_set_workspace_limit(ctx, std::size_t(64) << 20) == NPAIRS_OK,
        "npairs_context_set_workspace_limit failed");
  npairs_backend kind = -1;
  check(npairs_context_backend(ctx, &kind) == NPAIRS_OK, "npairs_context_backend failed");
  check(kind == NPAIRS_BACKEND_CPU || kind == NPAIRS_BACKEND_CUDA, "npairs_context_backend stored no concrete backend");
  npairs_backend untouched = -7;
  check(npairs_context_backend(nullptr, &untouched) == NPAIRS_ERROR_INVALID_ARGUMENT && untouched == -7,
        "npairs_context_backend(NULL ctx)");
  check(npairs_context_backend(ctx, nullptr) == NPAIRS_ERROR_INVALID_ARGUMENT, "npairs_context_backend(NULL out)");

  const int32_t threads = in.pick({0, 1, 2, 3, -1, std::numeric_limits<int32_t>::min()});
  st = npairs_context_set_threads(ctx, threads);
  check(st == (threads < 0 ? NPAIRS_ERROR_INVALID_ARGUMENT : NPAIRS_OK), "npairs_context_set_threads", st);
  check(npairs_context_set_threads(nullptr, threads) == NPAIRS_ERROR_INVALID_ARGUMENT, "set_threads(NULL ctx)");

  // A stream other than NULL only on a CPU context: a CUDA one would use it.
  static int not_a_stream;
  const int stream = in.byte() % 3;
  if (stream == 1) check(npairs_context_set_stream(ctx, nullptr) == NPAIRS_OK, "set_stream(NULL)");
  if (stream == 2 && kind == NPAIRS_BACKEND_CPU) {
    st = npairs_context_set_stream(ctx, &not_a_stream);
    check(st == NPAIRS_ERROR_UNSUPPORTED, "set_stream(non-NULL) on a CPU context", st);
  }
  check(npairs_context_set_stream(nullptr, nullptr) == NPAIRS_ERROR_INVALID_ARGUMENT, "set_stream(NULL ctx)");
  check(npairs_context_synchronize(ctx) == NPAIRS_OK, "npairs_context_synchronize");
  check(npairs_context_synchronize(nullptr) == NPAIRS_ERROR_INVALID_ARGUMENT, "synchronize(NULL ctx)");
  check(npairs_context_destroy(nullptr) == NPAIRS_OK, "npairs_context_destroy(NULL)");
  return ctx;
}

// Every buffer of one npairs_loss call.
struct Buffers {
  Block labels, column_labels, multilabels, column_multilabels, similarity, anchors, positives, sample_weight,
      grad_loss;
  Block loss, grad_similarity, grad_anchors, grad_positives, grad_temperature;
};

// The decoded call, and what the harness knows of it.
struct Call {
  npairs_options options{};
  npairs_problem problem{};
  npairs_gradients grads{};
  bool pass_options = true, pass_problem = true, pass_grads = false, null_ctx = false;
  bool similarity_in_place = false;
  int64_t rows = 0, cols = 0;  // R, and M as resolved (cols 0 means R)
  bool breaks_argument_rule = false;
};

void decode_options(FuzzInput& in, Call& c) {
  npairs_options_init(&c.options);
  c.pass_options = in.byte() % 8 != 7;
  c.options.reduction = in.pick({NPAIRS_REDUCTION_SUM_OVER_BATCH_SIZE, NPAIRS_REDUCTION_NONE, NPAIRS_REDUCTION_SUM,
                                 NPAIRS_REDUCTION_SUM_OVER_BATCH_SIZE, 3, -1});
  c.options.temperature =
      in.pick({1.0, 0.5, 2.0, 0.05, 1e-300, kDenormal, 1e300, kHuge, 0.0, -0.0, -1.0, kNaN, kInf, -kInf, 1.0, 1.0});
  c.options.reg_lambda = in.pick({0.0, 0.0, 0.002, 1.0, 1e300, kHuge, kDenormal, -0.0, -1.0, kNaN, kInf, -kInf});
  c.options.flags =
      in.pick({0u, NPAIRS_FLAG_DEFER_CHECKS, NPAIRS_FLAG_ALLOW_TF32, NPAIRS_FLAG_SYMMETRIC, 0x80000000u, 0xFFFFFFFFu});
  if (!c.pass_options) npairs_options_init(&c.options);  // what the library uses for NULL
}

void decode_problem(FuzzInput& in, Call& c) {
  npairs_problem& p = c.problem;
  npairs_problem_init(&p);
  c.pass_problem = in.byte() % 16 != 15;
  c.null_ctx = in.byte() % 16 == 15;
  p.rows = size_value(in);
  p.cols = in.flag() ? size_value(in) : 0;
  p.dtype = in.pick({NPAIRS_F32, NPAIRS_F64, NPAIRS_F32, NPAIRS_F64, NPAIRS_F16, NPAIRS_BF16, NPAIRS_I64, -1});
  p.label_dtype = in.pick({NPAIRS_I32, NPAIRS_I64, NPAIRS_I32, NPAIRS_I64, NPAIRS_F32, 18, -1, 0x7FFFFFFF});
  p.num_classes = size_value(in);
  p.dim = size_value(in);
  c.rows = p.rows;
  c.cols = p.cols == 0 ? p.rows : p.cols;
}

// Decides which members are set, allocates their buffers at their declared
// sizes, and fills the inputs.
void decode_buffers(FuzzInput& in, Call& c, Buffers& b) {
  npairs_problem& p = c.problem;
  const int64_t R = c.rows, M = c.cols;
  const std::size_t value = element_size(p.dtype), label = element_size(p.label_dtype);
  const npairs_reduction reduction = c.options.reduction;
  const bool known_reduction = reduction == NPAIRS_REDUCTION_NONE || reduction == NPAIRS_REDUCTION_SUM ||
                               reduction == NPAIRS_REDUCTION_SUM_OVER_BATCH_SIZE;
  // [R] for NONE, else one value; unknown for an unknown reduction.
  const int64_t loss_count = !known_reduction ? 0 : reduction == NPAIRS_REDUCTION_NONE ? R : 1;

  const int targets = in.byte() % 8;  // 0-4 labels, 5-6 multilabels, 7 both or neither
  const bool labels = targets <= 4 || (targets == 7 && in.flag());
  const bool multilabels = (targets >= 5 && targets <= 6) || (targets == 7 && labels);
  const int columns = in.byte() % 4;  // column targets: 0 none, 1-2 of the targets' kind, 3 of the other kind
  const bool column_labels = (columns == 1 || columns == 2) ? labels : columns == 3 && !labels;
  const bool column_multilabels = (columns == 1 || columns == 2) ? multilabels && !labels : columns == 3 && labels;
  const int logits = in.byte() % 8;  // 0-3 similarity, 4-5 embeddings, 6 both, 7 one of the embeddings or none
  const bool similarity = logits <= 3 || logits == 6 || (logits == 7 && in.byte() % 3 == 0);
  const int embedding_choice = in.byte() % 3;
  const bool anchors = (logits == 4 || logits == 5 || logits == 6) || (logits == 7 && embedding_choice == 1);
  const bool positives = (logits == 4 || logits == 5 || logits == 6) || (logits == 7 && embedding_choice == 2);
  const uint8_t optional = in.byte();  // sample_weight, grad_loss, loss, grads and their members, aliases
  const bool weights = optional & 1, grad_loss = optional & 2, loss = !(optional & 4);
  c.pass_grads = optional & 8;
  const uint8_t wanted_grads = in.byte();
  const uint8_t aliases = in.byte();

  b.labels = wanted_block(labels, R, 1, label);
  b.column_labels = wanted_block(column_labels, M, 1, label);
  b.multilabels = wanted_block(multilabels, R, p.num_classes, value);
  b.column_multilabels = wanted_block(column_multilabels, M, p.num_classes, value);
  b.similarity = wanted_block(similarity, R, M, value);
  b.anchors = wanted_block(anchors, R, p.dim, value);
  b.positives = wanted_block(positives, M, p.dim, value);
  b.sample_weight = wanted_block(weights, R, 1, value);
  b.grad_loss = wanted_block(grad_loss, loss_count, 1, value);
  b.loss = wanted_block(loss, loss_count, 1, value);
  b.grad_similarity = wanted_block(c.pass_grads && (wanted_grads & 1), R, M, value);
  b.grad_anchors = wanted_block(c.pass_grads && (wanted_grads & 2), R, p.dim, value);
  b.grad_positives = wanted_block(c.pass_grads && (wanted_grads & 4), M, p.dim, value);
  b.grad_temperature = wanted_block(c.pass_grads && (wanted_grads & 8), 1, 1, value);

  fill_labels(in, b.labels, p.label_dtype);
  fill_labels(in, b.column_labels, p.label_dtype);
  fill_floats(in, b.multilabels, p.dtype);
  fill_floats(in, b.column_multilabels, p.dtype);
  fill_floats(in, b.similarity, p.dtype);
  fill_floats(in, b.anchors, p.dtype);
  fill_floats(in, b.positives, p.dtype);
  fill_floats(in, b.sample_weight, p.dtype);
  fill_floats(in, b.grad_loss, p.dtype);

  p.labels = b.labels.data();
  p.column_labels = b.column_labels.data();
  p.multilabels = b.multilabels.data();
  p.column_multilabels = b.column_multilabels.data();
  p.similarity = b.similarity.data();
  p.anchors = b.anchors.data();
  p.positives = b.positives.data();
  p.sample_weight = b.sample_weight.data();
  npairs_gradients_init(&c.grads);
  c.grads.similarity = b.grad_similarity.data();
  c.grads.anchors = b.grad_anchors.data();
  c.grads.positives = b.grad_positives.data();
  c.grads.temperature = b.grad_temperature.data();

  // Aliases the API allows: dS in place of S; inputs shared (same size).
  if ((aliases & 1) && p.similarity && c.grads.similarity) {
    c.grads.similarity = const_cast<void*>(p.similarity);
    c.similarity_in_place = true;
  }
  if ((aliases & 2) && p.anchors && p.positives && R == M) p.positives = p.anchors;
  if ((aliases & 4) && p.labels && p.column_labels && R == M) p.column_labels = p.labels;
}

bool finite_positive(double x) { return std::isfinite(x) && x > 0.0; }

// The argument rules of SPEC section 2 that the decoded call breaks, as far
// as the harness tracks them (each one alone must make the call fail).
bool breaks_argument_rule(const Call& c, bool options_refused, bool problem_refused, bool grads_refused) {
  const npairs_options& o = c.options;
  const npairs_problem& p = c.problem;
  const bool has_labels = p.labels != nullptr, has_multilabels = p.multilabels != nullptr;
  const bool has_similarity = p.similarity != nullptr;
  const bool has_embeddings = p.anchors != nullptr || p.positives != nullptr;
  const bool column_targets = has_labels ? p.column_labels != nullptr : p.column_multilabels != nullptr;
  const bool grads_need_embeddings = c.pass_grads && (c.grads.anchors || c.grads.positives);
  return c.null_ctx || !c.pass_problem || (c.pass_options && options_refused) || problem_refused ||
         (c.pass_grads && grads_refused) ||
         !(o.reduction == NPAIRS_REDUCTION_NONE || o.reduction == NPAIRS_REDUCTION_SUM ||
           o.reduction == NPAIRS_REDUCTION_SUM_OVER_BATCH_SIZE) ||
         !finite_positive(o.temperature) || !(std::isfinite(o.reg_lambda) && o.reg_lambda >= 0.0) ||
         (o.flags & ~(NPAIRS_FLAG_ALLOW_TF32 | NPAIRS_FLAG_DEFER_CHECKS | NPAIRS_FLAG_SYMMETRIC)) != 0 ||
         ((o.flags & NPAIRS_FLAG_SYMMETRIC) && (o.reduction == NPAIRS_REDUCTION_NONE || p.sample_weight)) ||
         !(p.dtype == NPAIRS_F32 || p.dtype == NPAIRS_F64 || p.dtype == NPAIRS_F16 || p.dtype == NPAIRS_BF16) ||
         p.rows < 0 || p.cols < 0 || has_labels == has_multilabels ||
         (has_labels && !(p.label_dtype == NPAIRS_I32 || p.label_dtype == NPAIRS_I64)) ||
         (has_labels && p.column_multilabels) || (has_multilabels && p.column_labels) ||
         (has_multilabels && p.num_classes <= 0) || (c.cols != c.rows && !column_targets) ||
         has_similarity == has_embeddings || (has_embeddings && !(p.anchors && p.positives)) ||
         (has_embeddings && p.dim <= 0) || (o.reg_lambda > 0.0 && (has_similarity || o.reduction == NPAIRS_REDUCTION_NONE)) ||
         (grads_need_embeddings && !has_embeddings);
}

npairs_status call_loss(npairs_context ctx, const Call& c, const npairs_options* options,
                        const npairs_problem* problem, const Buffers& b, npairs_gradients* grads) {
  return npairs_loss(c.null_ctx ? nullptr : ctx, c.pass_options ? options : nullptr,
                     c.pass_problem ? problem : nullptr, b.grad_loss.data(), b.loss.data(),
                     c.pass_grads ? grads : nullptr);
}

void run(const uint8_t* data, std::size_t size) {
  FuzzInput in(data, size);
  npairs_context ctx = make_context(in);

  Call c;
  decode_options(in, c);
  decode_problem(in, c);
  Buffers b;
  decode_buffers(in, c, b);
  const CallerStruct<npairs_options> options(in, c.options);
  const CallerStruct<npairs_problem> problem(in, c.problem);
  const CallerStruct<npairs_gradients> grads(in, c.grads);
  c.breaks_argument_rule = breaks_argument_rule(c, options.refused(), problem.refused(), grads.refused());

  const npairs_dtype dtype = c.problem.dtype;
  Block* outputs[] = {&b.loss, &b.grad_similarity, &b.grad_anchors, &b.grad_positives, &b.grad_temperature};
  // A grads struct of the 1.0 size ends before `temperature`: never read.
  const bool temperature_read =
      grads.holds(offsetof(npairs_gradients, temperature) + sizeof(c.grads.temperature));
  const Block* inputs[] = {&b.labels,    &b.column_labels, &b.multilabels,    &b.column_multilabels, &b.similarity,
                           &b.anchors,   &b.positives,     &b.sample_weight,  &b.grad_loss};
  // Everything a failed call must leave as it was: the outputs (poisoned
  // first), the inputs and the caller's structs, in that order.
  auto snapshot = [&] {
    std::vector<std::vector<unsigned char>> state;
    for (const Block* block : outputs) state.push_back(block->contents());
    for (const Block* block : inputs) state.push_back(block->contents());
    state.push_back(options.contents());
    state.push_back(problem.contents());
    state.push_back(grads.contents());
    return state;
  };
  for (Block* out : outputs) poison(*out, dtype);
  const std::vector<std::vector<unsigned char>> before = snapshot();

  // A message no npairs_loss failure has: the call must replace it when it
  // fails and keep it when it succeeds.
  check(npairs_context_set_threads(ctx, -1) == NPAIRS_ERROR_INVALID_ARGUMENT, "set_threads(-1)");
  const std::string previous_message = npairs_last_error();

  const npairs_status st = call_loss(ctx, c, options.get(), problem.get(), b, grads.get());
  check(npairs_status_string(st) != nullptr, "npairs_status_string returned NULL", st);
  check(st != NPAIRS_ERROR_INTERNAL && st >= NPAIRS_OK && st <= NPAIRS_ERROR_INTERNAL,
        "npairs_loss returned INTERNAL or an unknown status", st);
  check(st != NPAIRS_ERROR_BACKEND_UNAVAILABLE, "npairs_loss returned BACKEND_UNAVAILABLE", st);
  if (c.breaks_argument_rule) {
    check(st == NPAIRS_ERROR_INVALID_ARGUMENT || st == NPAIRS_ERROR_UNSUPPORTED,
          "a call breaking an argument rule did not fail with INVALID_ARGUMENT or UNSUPPORTED", st);
  }

  const std::vector<std::vector<unsigned char>> after = snapshot();
  if (st != NPAIRS_OK) {
    check(after == before, "a failed call changed an output, an input or a struct", st);
    const char* message = npairs_last_error();
    check(message[0] != '\0' && previous_message != message, "a failed call left no message of its own", st);
    check(std::strchr(message, '\n') == nullptr, "the message is more than one line", st);
  } else {
    check(previous_message == npairs_last_error(), "a successful call changed the last error message", st);
    // Inputs (but S when dS was written in place) and structs unchanged.
    const std::size_t first_input = std::size(outputs), first_struct = first_input + std::size(inputs);
    for (std::size_t k = 0; k < std::size(inputs); ++k) {
      const bool in_place = c.similarity_in_place && inputs[k] == &b.similarity;
      check(in_place || before[first_input + k] == after[first_input + k], "a successful call changed an input", st);
    }
    check(std::equal(before.begin() + long(first_struct), before.end(), after.begin() + long(first_struct)),
          "a successful call changed a caller's struct", st);
    check(fully_written(b.loss, dtype), "a successful call left part of the loss unwritten", st);
    if (!c.similarity_in_place) {
      check(fully_written(b.grad_similarity, dtype), "a successful call left part of grads.similarity unwritten", st);
    }
    check(fully_written(b.grad_anchors, dtype), "a successful call left part of grads.anchors unwritten", st);
    check(fully_written(b.grad_positives, dtype), "a successful call left part of grads.positives unwritten", st);
    if (temperature_read) {
      check(fully_written(b.grad_temperature, dtype), "a successful call left grads.temperature unwritten", st);
    } else {
      check(before[4] == after[4], "a successful call wrote grads.temperature beyond a 1.0-sized struct", st);
    }
    // SPEC section 1: R = 0 is valid, and the scalar reductions give 0.
    if (c.rows == 0 && b.loss.bytes() > 0 && c.options.reduction != NPAIRS_REDUCTION_NONE) {
      const double loss = dtype == NPAIRS_F32 ? double(*reinterpret_cast<const float*>(b.loss.data()))
                                              : *reinterpret_cast<const double*>(b.loss.data());
      check(loss == 0.0, "the scalar loss of R = 0 is not 0", st);
    }
    // Bitwise reproducible: the same call again writes the same bytes.
    if (!c.similarity_in_place) {
      for (Block* out : outputs) poison(*out, dtype);
      const npairs_status again = call_loss(ctx, c, options.get(), problem.get(), b, grads.get());
      check(again == NPAIRS_OK, "the same call failed the second time", again);
      check(snapshot() == after, "the same call gave different bytes the second time", again);
    }
  }
  check(npairs_context_synchronize(ctx) == NPAIRS_OK, "npairs_context_synchronize after the call");
  check(npairs_context_destroy(ctx) == NPAIRS_OK, "npairs_context_destroy");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, std::size_t size) {
  run(data, size);
  return 0;
}
