// One Adam step in one pass over memory, for XLA's CPU backend (jax.ffi).
//
// XLA on CPU has no multi-output loop fusion, so a pure-JAX Adam step becomes
// three loops that read and write the arrays about ten times. This kernel reads
// each element of the parameters, gradients and both moments once and writes
// the new values back in place (the buffers are aliased by the caller), which
// is the memory-traffic minimum: 28 bytes per float32 parameter.
//
// The arithmetic is the one in adamjax/_core.py `adam_step` (float32, the same
// order of operations), so results match the pure-JAX path to float32
// rounding. Hyperparameters arrive as a small float32 buffer, so traced values
// (schedules, inject_hyperparams) need no recompilation.

#include <algorithm>
#include <atomic>
#include <cmath>
#include <condition_variable>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <memory>
#include <mutex>
#include <string>
#include <type_traits>
#include <vector>

#include "kernel_common.h"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

// The shared layouts and both instruction sets' loops are kernel_common.h's,
// the loops compiled in kernel_baseline.cc and kernel_avx2.cc.
namespace adamjax_kernel ADAMJAX_HIDDEN {
namespace {

// Whether the steps run the AVX2+FMA loops. ADAMJAX_KERNEL_BASELINE=1 runs the
// baseline loops on any CPU (the tests check them on AVX2 machines too); it is
// read once, at the first step.
bool UsesAvx2() {
#ifdef ADAMJAX_HAVE_AVX2
  static const bool uses = [] {
    const char* forced = std::getenv("ADAMJAX_KERNEL_BASELINE");
    if (forced != nullptr && std::string(forced) == "1") return false;
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  }();
  return uses;
#else
  return false;
#endif
}

// The C API's name for a dtype, which the loops take (kernel_common.h).
static_assert(static_cast<int>(ffi::DataType::F32) == XLA_FFI_DataType_F32 &&
                  static_cast<int>(ffi::DataType::BF16) == XLA_FFI_DataType_BF16,
              "ffi::DataType is the C API's XLA_FFI_DataType");
XLA_FFI_DataType CType(ffi::DataType dtype) { return static_cast<XLA_FFI_DataType>(dtype); }

RangeFn Pick(ffi::DataType param, ffi::DataType mu, ffi::DataType nu, bool coupled, bool decoupled, bool updates) {
#ifdef ADAMJAX_HAVE_AVX2
  if (UsesAvx2()) return avx2::Pick(CType(param), CType(mu), CType(nu), coupled, decoupled, updates);
#endif
  return baseline::Pick(CType(param), CType(mu), CType(nu), coupled, decoupled, updates);
}

// Whether XLA's CPU code on this host contracts `a * b + c` into a fused
// multiply-add: XLA lets LLVM fuse them wherever the CPU has FMA instructions.
bool HostHasFma() {
#if defined(__x86_64__) && defined(__GNUC__)
  static const bool has = __builtin_cpu_supports("fma");
  return has;
#elif defined(__aarch64__)
  return true;
#else
  return false;
#endif
}

QRangeFn QPick(ffi::DataType param, int bits, bool coupled, bool decoupled, bool updates) {
#ifdef ADAMJAX_HAVE_AVX2
  if (UsesAvx2()) return avx2::QPick(CType(param), bits, true, coupled, decoupled, updates);
#endif
  return baseline::QPick(CType(param), bits, HostHasFma(), coupled, decoupled, updates);
}

// XLA's CPU code runs with denormals flushed to zero (inputs and results); the
// quantized step does the same, so a subnormal moment becomes a zero block in
// both paths, whatever thread the pool runs it on.
class FlushDenormals {
 public:
#if defined(__x86_64__) && defined(__GNUC__)
  FlushDenormals() : saved_(_mm_getcsr()) { _mm_setcsr(saved_ | 0x8040u); }  // FTZ | DAZ
  ~FlushDenormals() { _mm_setcsr(saved_); }

 private:
  unsigned int saved_;
#elif defined(__aarch64__)
  FlushDenormals() {
    __asm__ __volatile__("mrs %0, fpcr" : "=r"(saved_));
    __asm__ __volatile__("msr fpcr, %0" : : "r"(saved_ | (uint64_t{1} << 24)));  // FZ
  }
  ~FlushDenormals() { __asm__ __volatile__("msr fpcr, %0" : : "r"(saved_)); }

 private:
  uint64_t saved_;
#endif
};

// The pure path's code for x (see Codebook).
int ReferenceCode(const float* values, int size, float x) {
  const int count = static_cast<int>(std::upper_bound(values, values + size, x) - values);  // side="right"
  const int below = std::min(std::max(count - 1, 0), size - 2);
  return std::fabs(x - values[below + 1]) < std::fabs(x - values[below]) ? below + 1 : below;
}

int32_t KeyOf(float x) {
  int32_t bits;
  std::memcpy(&bits, &x, sizeof(bits));
  return bits ^ ((bits >> 31) & 0x7fffffff);
}

float FloatOfKey(int32_t key) {  // KeyOf is its own inverse on the bits
  const int32_t bits = key ^ ((key >> 31) & 0x7fffffff);
  float x;
  std::memcpy(&x, &bits, sizeof(x));
  return x;
}

// Thresholds and buckets for a map; an error message when the map is not one
// the kernel can search (not 16 or 256 sorted finite values).
std::string BuildCodebook(const float* values, int64_t size, Codebook* book) {
  if (size != 16 && size != 256) return "a codebook must hold 16 or 256 values";
  book->size = static_cast<int>(size);
  for (int64_t j = 0; j < size; ++j) {
    if (!std::isfinite(values[j]) || (j > 0 && !(values[j] > values[j - 1]))) {
      return "a codebook must hold increasing finite values";
    }
    book->values[j] = values[j];
  }
  const int n = book->size;
  for (int j = 0; j + 1 < n; ++j) {
    int32_t lo = KeyOf(values[j]), hi = KeyOf(values[j + 1]);  // code(lo) = j, code(hi) = j + 1
    if (ReferenceCode(values, n, values[j]) != j || ReferenceCode(values, n, values[j + 1]) != j + 1) {
      return "a codebook value is not its own nearest code";
    }
    while (hi - lo > 1) {  // the least key whose code is above j lies in (lo, hi]
      const int32_t mid = lo + (hi - lo) / 2;
      (ReferenceCode(values, n, FloatOfKey(mid)) > j ? hi : lo) = mid;
    }
    book->thresholds[j] = hi;
  }
  for (int j = n - 1; j < 256; ++j) book->thresholds[j] = std::numeric_limits<int32_t>::max();
  book->zero_code = ReferenceCode(values, n, 0.0f);

  const int32_t* t = book->thresholds;
  if (n == 16) {  // bisection: step k (k = 0..3) finds bit 3 - k of the code, given the bits above it
    for (int k = 0, step = 8; k < 4; ++k, step /= 2) {
      for (int prefix = 0; prefix < (1 << k); ++prefix) {
        book->levels[k][prefix] = t[prefix * step * 2 + step - 1] - 1;  // key >= t  <=>  key > t - 1
      }
    }
  }
  // 256 codes: buckets of 7 mantissa bits (shift 16), whose index is a float's high half, which
  // the AVX2 loops read straight from memory (quantized_kernel_impl.h); 16 codes: the fewest bits.
  for (int mantissa_bits = n == 256 ? 7 : 4; mantissa_bits <= (n == 256 ? 7 : 8); ++mantissa_bits) {
    const int shift = 23 - mantissa_bits;
    const int64_t half = int64_t{1} << (31 - shift);  // buckets per sign
    std::vector<int32_t> entry(2 * half, 0);
    bool fits = true;
    for (int64_t i = 0; i < 2 * half && fits; ++i) {
      const int64_t mag_lo = (i % half) << shift, mag_hi = mag_lo + (int64_t{1} << shift) - 1;
      const int64_t key_lo = i < half ? mag_lo : -1 - mag_hi;
      const int64_t key_hi = i < half ? mag_hi : -1 - mag_lo;
      const int64_t below = std::upper_bound(t, t + n - 1, key_lo, [](int64_t k, int32_t x) { return k < x; }) - t;
      const int64_t upto = std::upper_bound(t, t + n - 1, key_hi, [](int64_t k, int32_t x) { return k < x; }) - t;
      fits = upto - below <= 1;
      entry[i] = static_cast<int32_t>(below << 23);
      if (upto > below) {
        uint32_t threshold_bits;
        const float threshold = FloatOfKey(t[below]);
        std::memcpy(&threshold_bits, &threshold, sizeof(threshold_bits));
        entry[i] = static_cast<int32_t>((below + 1) << 23) | ThresholdPlace(threshold_bits, (1 << shift) - 1);
      }
    }
    // -0 shares +0's code (the search compares values): no threshold between them.
    if (fits && (static_cast<uint32_t>(entry[half]) >> 23) != static_cast<uint32_t>(book->zero_code)) {
      return "a codebook threshold lies at zero";
    }
    if (fits) {
      book->shift = shift;
      book->low_mask = (1 << shift) - 1;
      book->bucket_entry = std::move(entry);
      book->negative = t[0] < 0;
      return "";
    }
  }
  return "a codebook's thresholds are too close for its buckets";
}

// Codebooks built so far, found by their values (each step passes its maps;
// building one takes about 10 microseconds, finding it far less).
const Codebook* FindCodebook(const float* values, int64_t size, std::string* error) {
  static std::mutex mutex;
  static std::vector<std::unique_ptr<Codebook>> books;
  std::lock_guard<std::mutex> lock(mutex);
  for (const auto& book : books) {
    if (book->size == size && std::memcmp(book->values, values, size * sizeof(float)) == 0) return book.get();
  }
  auto book = std::make_unique<Codebook>();
  *error = BuildCodebook(values, size, book.get());
  if (!error->empty()) return nullptr;
  books.push_back(std::move(book));
  return books.back().get();
}

// One array of the step: its loop (chosen for its dtypes), its buffers, its
// size and, under jax.vmap, the size of one batch member's slice (member k
// owns elements [k * member, (k + 1) * member) and reads hyperparameter row k).
struct Leaf {
  RangeFn fn;
  Pointers ptr;
  int64_t n;
  int64_t member;

  void Run(const float* hyper, int64_t begin, int64_t end) const { fn(ptr, hyper, begin, end); }
};

// One array of the quantized step; its units are blocks, not elements.
struct QLeaf {
  QRangeFn fn;
  QPointers ptr;
  QGeometry geo;
  const Codebook* mu_book;
  const Codebook* nu_book;
  int64_t n;       // blocks
  int64_t member;  // blocks per batch member

  void Run(const float* hyper, int64_t begin, int64_t end) const {
    FlushDenormals flush;
    fn(ptr, geo, *mu_book, *nu_book, hyper, begin, end);
  }
};

// Work shared between the calling thread and pool threads. The arrays are laid
// end to end and cut into equal chunks, claimed from an atomic counter: many
// small arrays share a chunk, a large one spans many. The caller does every
// chunk nobody else picked up and only waits for chunks already running
// elsewhere, so there is no deadlock even when the pool has no free thread.
template <typename LeafT>
struct Shared {
  std::vector<LeafT> leaves;
  std::vector<int64_t> starts;  // starts[i]: offset of leaf i; starts.back(): total
  const float* hyper;
  int64_t total, chunk, num_chunks;
  std::atomic<int64_t> next{0};
  std::atomic<int64_t> done{0};
  std::mutex mutex;
  std::condition_variable finished;

  void Range(int64_t begin, int64_t end) const {
    size_t i = std::upper_bound(starts.begin(), starts.end(), begin) - starts.begin() - 1;
    for (; i < leaves.size() && starts[i] < end; ++i) {
      const LeafT& leaf = leaves[i];
      int64_t lo = std::max(begin, starts[i]) - starts[i];
      const int64_t hi = std::min(end, starts[i] + leaf.n) - starts[i];
      while (lo < hi) {
        const int64_t row = lo / leaf.member;
        const int64_t stop = std::min(hi, (row + 1) * leaf.member);
        leaf.Run(hyper + row * kNumHyper, lo, stop);
        lo = stop;
      }
    }
  }

  void Work() {
    int64_t mine = 0;
    for (int64_t c = next.fetch_add(1); c < num_chunks; c = next.fetch_add(1)) {
      Range(c * chunk, std::min(total, (c + 1) * chunk));
      ++mine;
    }
    if (mine > 0 && done.fetch_add(mine) + mine == num_chunks) {
      std::lock_guard<std::mutex> lock(mutex);
      finished.notify_all();
    }
  }
};

constexpr int64_t kChunk = 1 << 15;        // elements per claimed chunk
constexpr int64_t kParallelMin = 1 << 16;  // below this, one thread is faster

// Runs every chunk of `shared` on the calling thread and up to `helpers` pool threads.
template <typename LeafT>
void RunShared(ffi::ThreadPool& pool, const std::shared_ptr<Shared<LeafT>>& shared, int64_t helpers) {
  for (int64_t t = 0; t < helpers; ++t) {
    pool.Schedule([shared] { shared->Work(); });
  }
  shared->Work();
  std::unique_lock<std::mutex> lock(shared->mutex);
  shared->finished.wait(lock, [&] { return shared->done.load() == shared->num_chunks; });
}

// Operands: the hyperparameters, then L parameters, L gradients, L first and
// L second moments; results: L new parameters (or, with `updates`, L updates
// in a new buffer), L first and L second moments, each aliased to its operand.
ffi::Error AdamImpl(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> hyper, ffi::RemainingArgs args,
                    ffi::RemainingRets rets, bool coupled, bool decoupled, bool updates) {
  const int64_t rows = static_cast<int64_t>(hyper.element_count()) / kNumHyper;
  if (rows < 1 || rows * kNumHyper != static_cast<int64_t>(hyper.element_count())) {
    return ffi::Error::InvalidArgument("adamjax adam kernel: malformed hyperparameters");
  }
  if (args.size() % 4 != 0 || rets.size() * 4 != args.size() * 3) {
    return ffi::Error::InvalidArgument("adamjax adam kernel: expected 4 operands and 3 results per array");
  }
  const size_t count = args.size() / 4;
  auto shared = std::make_shared<Shared<Leaf>>();
  shared->leaves.reserve(count);
  shared->starts.reserve(count + 1);
  int64_t total = 0;
  for (size_t i = 0; i < count; ++i) {
    auto param = args.get<ffi::AnyBuffer>(i);
    auto grad = args.get<ffi::AnyBuffer>(count + i);
    auto mu = args.get<ffi::AnyBuffer>(2 * count + i);
    auto nu = args.get<ffi::AnyBuffer>(3 * count + i);
    auto out = rets.get<ffi::AnyBuffer>(i);
    auto mu_out = rets.get<ffi::AnyBuffer>(count + i);
    auto nu_out = rets.get<ffi::AnyBuffer>(2 * count + i);
    if (!param.has_value() || !grad.has_value() || !mu.has_value() || !nu.has_value() || !out.has_value() ||
        !mu_out.has_value() || !nu_out.has_value()) {
      return ffi::Error::InvalidArgument("adamjax adam kernel: could not decode a buffer");
    }
    const int64_t n = static_cast<int64_t>(param->element_count());
    if (static_cast<int64_t>(grad->element_count()) != n || static_cast<int64_t>(mu->element_count()) != n ||
        static_cast<int64_t>(nu->element_count()) != n || static_cast<int64_t>((*out)->element_count()) != n ||
        n % rows != 0) {
      return ffi::Error::InvalidArgument("adamjax adam kernel: operands of one array have different sizes");
    }
    if (grad->element_type() != param->element_type() || (*out)->element_type() != param->element_type() ||
        (*mu_out)->element_type() != mu->element_type() || (*nu_out)->element_type() != nu->element_type()) {
      return ffi::Error::InvalidArgument("adamjax adam kernel: operand dtypes do not match");
    }
    RangeFn fn = Pick(param->element_type(), mu->element_type(), nu->element_type(), coupled, decoupled, updates);
    if (fn == nullptr) {
      return ffi::Error::InvalidArgument("adamjax adam kernel: unsupported dtype combination");
    }
    if (n == 0) continue;
    shared->starts.push_back(total);
    shared->leaves.push_back(Leaf{fn,
                                  Pointers{param->untyped_data(), grad->untyped_data(), mu->untyped_data(),
                                           nu->untyped_data(), (*out)->untyped_data(), (*mu_out)->untyped_data(),
                                           (*nu_out)->untyped_data()},
                                  n, n / rows});
    total += n;
  }
  if (total == 0) return ffi::Error::Success();
  shared->starts.push_back(total);
  shared->hyper = hyper.typed_data();
  shared->total = total;
  shared->chunk = kChunk;
  shared->num_chunks = (total + kChunk - 1) / kChunk;

  // The calling thread works too, so it takes one thread fewer than the pool
  // has: one more thread than cores only adds contention (0.83-0.85 of the
  // bandwidth roof against 0.90 measured on 2 cores).
  const int64_t helpers =
      total >= kParallelMin ? std::min<int64_t>(pool.num_threads() - 1, shared->num_chunks - 1) : 0;
  RunShared(pool, shared, helpers);
  return ffi::Error::Success();
}

// The quantized step. Operands: the hyperparameters, then L parameters, L
// gradients, L first-moment codes, L first-moment scales, L second-moment codes
// and L second-moment scales; results: L new parameters (or updates), then the
// new codes and scales in the operands' order, each aliased to its operand.
// Attributes: the bits and block size every array shares, and the two maps.
ffi::Error QuantizedAdamImpl(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> hyper, ffi::RemainingArgs args,
                             ffi::RemainingRets rets, bool coupled, bool decoupled, bool updates, int64_t bits,
                             int64_t block, ffi::Span<const float> mu_map, ffi::Span<const float> nu_map) {
  const int64_t rows = static_cast<int64_t>(hyper.element_count()) / kNumHyper;
  if (rows < 1 || rows * kNumHyper != static_cast<int64_t>(hyper.element_count())) {
    return ffi::Error::InvalidArgument("adamjax quantized kernel: malformed hyperparameters");
  }
  if (args.size() % 6 != 0 || rets.size() * 6 != args.size() * 5) {
    return ffi::Error::InvalidArgument("adamjax quantized kernel: expected 6 operands and 5 results per array");
  }
  if ((bits != 8 && bits != 4) || block < 1 || (bits == 4 && block % 2 != 0)) {
    return ffi::Error::InvalidArgument("adamjax quantized kernel: bits must be 8 or 4, and the block even at 4");
  }
  if (static_cast<int64_t>(mu_map.size()) != (int64_t{1} << bits) ||
      static_cast<int64_t>(nu_map.size()) != (int64_t{1} << bits)) {
    return ffi::Error::InvalidArgument("adamjax quantized kernel: a map does not have 2^bits values");
  }
  std::string error;
  const Codebook* mu_book = FindCodebook(mu_map.begin(), mu_map.size(), &error);
  const Codebook* nu_book = mu_book == nullptr ? nullptr : FindCodebook(nu_map.begin(), nu_map.size(), &error);
  if (mu_book == nullptr || nu_book == nullptr) {
    return ffi::Error::InvalidArgument("adamjax quantized kernel: " + error);
  }
  const size_t count = args.size() / 6;
  auto shared = std::make_shared<Shared<QLeaf>>();
  shared->leaves.reserve(count);
  shared->starts.reserve(count + 1);
  int64_t total = 0, elements = 0;
  for (size_t i = 0; i < count; ++i) {
    auto param = args.get<ffi::AnyBuffer>(i);
    auto grad = args.get<ffi::AnyBuffer>(count + i);
    auto mu_codes = args.get<ffi::AnyBuffer>(2 * count + i);
    auto mu_scales = args.get<ffi::AnyBuffer>(3 * count + i);
    auto nu_codes = args.get<ffi::AnyBuffer>(4 * count + i);
    auto nu_scales = args.get<ffi::AnyBuffer>(5 * count + i);
    auto out = rets.get<ffi::AnyBuffer>(i);
    auto mu_codes_out = rets.get<ffi::AnyBuffer>(count + i);
    auto mu_scales_out = rets.get<ffi::AnyBuffer>(2 * count + i);
    auto nu_codes_out = rets.get<ffi::AnyBuffer>(3 * count + i);
    auto nu_scales_out = rets.get<ffi::AnyBuffer>(4 * count + i);
    if (!param.has_value() || !grad.has_value() || !mu_codes.has_value() || !mu_scales.has_value() ||
        !nu_codes.has_value() || !nu_scales.has_value() || !out.has_value() || !mu_codes_out.has_value() ||
        !mu_scales_out.has_value() || !nu_codes_out.has_value() || !nu_scales_out.has_value()) {
      return ffi::Error::InvalidArgument("adamjax quantized kernel: could not decode a buffer");
    }
    const ffi::DataType dtype = param->element_type();
    if (grad->element_type() != dtype || (*out)->element_type() != dtype ||
        mu_codes->element_type() != ffi::DataType::U8 || nu_codes->element_type() != ffi::DataType::U8 ||
        (*mu_codes_out)->element_type() != ffi::DataType::U8 || (*nu_codes_out)->element_type() != ffi::DataType::U8 ||
        mu_scales->element_type() != ffi::DataType::F32 || nu_scales->element_type() != ffi::DataType::F32 ||
        (*mu_scales_out)->element_type() != ffi::DataType::F32 ||
        (*nu_scales_out)->element_type() != ffi::DataType::F32) {
      return ffi::Error::InvalidArgument("adamjax quantized kernel: operand dtypes do not match");
    }
    QRangeFn fn = QPick(dtype, static_cast<int>(bits), coupled, decoupled, updates);
    if (fn == nullptr) return ffi::Error::InvalidArgument("adamjax quantized kernel: unsupported parameter dtype");
    const int64_t n = static_cast<int64_t>(param->element_count());
    const int64_t codes = static_cast<int64_t>(mu_codes->element_count());
    const int64_t scales = static_cast<int64_t>(mu_scales->element_count());
    if (mu_codes->dimensions().size() == 0 || mu_scales->dimensions().size() == 0) {
      return ffi::Error::InvalidArgument("adamjax quantized kernel: codes and scales must have a row axis");
    }
    const int64_t code_bytes = mu_codes->dimensions().back();
    const int64_t blocks_per_row = mu_scales->dimensions().back();
    const int64_t lines = code_bytes == 0 ? 0 : codes / code_bytes;
    const int64_t row = lines == 0 ? 0 : n / lines;
    const bool layout_ok =
        static_cast<int64_t>(grad->element_count()) == n && static_cast<int64_t>((*out)->element_count()) == n &&
        static_cast<int64_t>(nu_codes->element_count()) == codes &&
        static_cast<int64_t>(nu_scales->element_count()) == scales &&
        static_cast<int64_t>((*mu_codes_out)->element_count()) == codes &&
        static_cast<int64_t>((*nu_codes_out)->element_count()) == codes &&
        static_cast<int64_t>((*mu_scales_out)->element_count()) == scales &&
        static_cast<int64_t>((*nu_scales_out)->element_count()) == scales && lines * row == n &&
        lines * blocks_per_row == scales && blocks_per_row == (row + block - 1) / block &&
        code_bytes == (bits == 8 ? row : (row + 1) / 2) && lines % rows == 0;
    if (!layout_ok) {
      return ffi::Error::InvalidArgument("adamjax quantized kernel: codes and scales do not fit the parameters");
    }
    if (n == 0) continue;
    shared->starts.push_back(total);
    shared->leaves.push_back(
        QLeaf{fn,
              QPointers{param->untyped_data(), grad->untyped_data(),
                        static_cast<const uint8_t*>(mu_codes->untyped_data()),
                        static_cast<const float*>(mu_scales->untyped_data()),
                        static_cast<const uint8_t*>(nu_codes->untyped_data()),
                        static_cast<const float*>(nu_scales->untyped_data()), (*out)->untyped_data(),
                        static_cast<uint8_t*>((*mu_codes_out)->untyped_data()),
                        static_cast<float*>((*mu_scales_out)->untyped_data()),
                        static_cast<uint8_t*>((*nu_codes_out)->untyped_data()),
                        static_cast<float*>((*nu_scales_out)->untyped_data())},
              QGeometry{row, blocks_per_row, code_bytes, block}, mu_book, nu_book, scales, scales / rows});
    total += scales;
    elements += n;
  }
  if (total == 0) return ffi::Error::Success();
  shared->starts.push_back(total);
  shared->hyper = hyper.typed_data();
  shared->total = total;
  shared->chunk = std::max<int64_t>(1, kChunk / block);  // in blocks
  shared->num_chunks = (total + shared->chunk - 1) / shared->chunk;
  const int64_t helpers =
      elements >= kParallelMin ? std::min<int64_t>(pool.num_threads() - 1, shared->num_chunks - 1) : 0;
  RunShared(pool, shared, helpers);
  return ffi::Error::Success();
}

}  // namespace
}  // namespace adamjax_kernel

XLA_FFI_DEFINE_HANDLER_SYMBOL(AdamjaxAdamStep, adamjax_kernel::AdamImpl,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::Buffer<ffi::F32>>()  // hyperparameters
                                  .RemainingArgs()               // params, grads, mus, nus
                                  .RemainingRets()               // params, mus, nus
                                  .Attr<bool>("coupled")
                                  .Attr<bool>("decoupled")
                                  .Attr<bool>("updates"));

XLA_FFI_DEFINE_HANDLER_SYMBOL(AdamjaxQuantizedAdamStep, adamjax_kernel::QuantizedAdamImpl,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::Buffer<ffi::F32>>()  // hyperparameters
                                  .RemainingArgs()               // params, grads, codes and scales of mu and nu
                                  .RemainingRets()               // params, codes and scales of mu and nu
                                  .Attr<bool>("coupled")
                                  .Attr<bool>("decoupled")
                                  .Attr<bool>("updates")
                                  .Attr<int64_t>("bits")
                                  .Attr<int64_t>("block_size")
                                  .Attr<ffi::Span<const float>>("mu_map")
                                  .Attr<ffi::Span<const float>>("nu_map"));

// "avx2" or "baseline": which loops the steps run (adamjax._native.instruction_set).
extern "C" const char* AdamjaxKernelIsa() { return adamjax_kernel::UsesAvx2() ? "avx2" : "baseline"; }

// The quantized step's nearest-code search on its own, over `n` values in
// [-1, 1] with the loops the steps run (the tests compare it with the pure
// path's search near every threshold). Returns 0, or -1 for a map the kernel
// refuses.
extern "C" int AdamjaxNearestCodes(const float* map, int64_t size, const float* x, int64_t n, uint8_t* out) {
  using namespace adamjax_kernel;
  std::string error;
  const Codebook* book = FindCodebook(map, size, &error);
  if (book == nullptr) return -1;
  FlushDenormals flush;
#ifdef ADAMJAX_HAVE_AVX2
  if (UsesAvx2()) {
    avx2::NearestCodesOf(*book, x, n, out);
    return 0;
  }
#endif
  baseline::NearestCodesOf(*book, x, n, out);
  return 0;
}
