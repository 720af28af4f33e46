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
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

// Layout of the float32 hyperparameter buffer; keep in sync with _native.py.
enum Hyper : int {
  kLr = 0,       // learning rate (the step is -lr * update)
  kB1,           // beta1
  kOneMinusB1,   // 1 - beta1, rounded once from the caller's precision
  kB2,           // beta2
  kOneMinusB2,   // 1 - beta2
  kEps,          // eps, outside the root
  kEpsRoot,      // eps_root, inside the root
  kBc1,          // 1 - beta1**t (1 when bias correction is off)
  kBc2,          // 1 - beta2**t
  kCoupledWd,    // L2 decay added to the gradient before the moments
  kDecoupledWd,  // decay added to the update (AdamW)
  kNumHyper,
};

struct Pointers {
  const void* param;
  const void* grad;
  const void* mu;
  const void* nu;
  void* out;  // new parameters
  void* mu_out;
  void* nu_out;
};

using RangeFn = void (*)(const Pointers&, const float*, int64_t, int64_t);

namespace baseline {
#include "adam_kernel_impl.h"
}  // namespace baseline

#if defined(__x86_64__) && defined(__GNUC__)
#define ADAMJAX_HAVE_AVX2 1
#pragma GCC push_options
#pragma GCC target("avx2,fma")
namespace avx2 {
#include "adam_kernel_impl.h"
}  // namespace avx2
#pragma GCC pop_options
#endif

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

RangeFn Pick(ffi::DataType param, ffi::DataType mu, ffi::DataType nu, bool coupled, bool decoupled, bool updates) {
#ifdef ADAMJAX_HAVE_AVX2
  if (UsesAvx2()) return avx2::Pick(param, mu, nu, coupled, decoupled, updates);
#endif
  return baseline::Pick(param, mu, nu, coupled, decoupled, updates);
}

// One array of the step: its loop (chosen for its dtypes), its buffers, its
// size and, under jax.vmap, the size of one batch member's slice (member k
// owns elements [k * member, (k + 1) * member) and reads hyperparameter row k).
struct Leaf {
  RangeFn fn;
  Pointers ptr;
  int64_t n;
  int64_t member;
};

// Work shared between the calling thread and pool threads. The arrays are laid
// end to end and cut into equal chunks, claimed from an atomic counter: many
// small arrays share a chunk, a large one spans many. The caller does every
// chunk nobody else picked up and only waits for chunks already running
// elsewhere, so there is no deadlock even when the pool has no free thread.
struct Shared {
  std::vector<Leaf> leaves;
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
      const Leaf& leaf = leaves[i];
      int64_t lo = std::max(begin, starts[i]) - starts[i];
      const int64_t hi = std::min(end, starts[i] + leaf.n) - starts[i];
      while (lo < hi) {
        const int64_t row = lo / leaf.member;
        const int64_t stop = std::min(hi, (row + 1) * leaf.member);
        leaf.fn(leaf.ptr, hyper + row * kNumHyper, lo, stop);
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
  auto shared = std::make_shared<Shared>();
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
  for (int64_t t = 0; t < helpers; ++t) {
    pool.Schedule([shared] { shared->Work(); });
  }
  shared->Work();
  std::unique_lock<std::mutex> lock(shared->mutex);
  shared->finished.wait(lock, [&] { return shared->done.load() == shared->num_chunks; });
  return ffi::Error::Success();
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(AdamjaxAdamStep, AdamImpl,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::Buffer<ffi::F32>>()  // hyperparameters
                                  .RemainingArgs()               // params, grads, mus, nus
                                  .RemainingRets()               // params, mus, nus
                                  .Attr<bool>("coupled")
                                  .Attr<bool>("decoupled")
                                  .Attr<bool>("updates"));

// "avx2" or "baseline": which loops the steps run (adamjax._native.instruction_set).
extern "C" const char* AdamjaxKernelIsa() { return UsesAvx2() ? "avx2" : "baseline"; }
