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
#include <cstring>
#include <memory>
#include <mutex>

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

RangeFn Pick(ffi::DataType param, ffi::DataType mu, ffi::DataType nu, bool coupled, bool decoupled) {
#ifdef ADAMJAX_HAVE_AVX2
  static const bool has_avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  if (has_avx2) return avx2::Pick(param, mu, nu, coupled, decoupled);
#endif
  return baseline::Pick(param, mu, nu, coupled, decoupled);
}

// Work shared between the calling thread and pool threads. Chunks are claimed
// from an atomic counter, so the caller does every chunk nobody else picked up
// and only waits for chunks already running elsewhere: no deadlock even when
// the pool has no free thread.
//
// Under jax.vmap every operand carries the batch dimensions in front and the
// hyperparameters come as one row per batch member: member k owns elements
// [k * member, (k + 1) * member) and reads row k.
struct Shared {
  RangeFn fn;
  Pointers ptr;
  const float* hyper;
  int64_t n, member, chunk, num_chunks;
  std::atomic<int64_t> next{0};
  std::atomic<int64_t> done{0};
  std::mutex mutex;
  std::condition_variable finished;

  void Range(int64_t begin, int64_t end) const {
    while (begin < end) {
      const int64_t row = begin / member;
      const int64_t stop = std::min(end, (row + 1) * member);
      fn(ptr, hyper + row * kNumHyper, begin, stop);
      begin = stop;
    }
  }

  void Work() {
    int64_t mine = 0;
    for (int64_t c = next.fetch_add(1); c < num_chunks; c = next.fetch_add(1)) {
      Range(c * chunk, std::min(n, (c + 1) * chunk));
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

ffi::Error AdamImpl(ffi::ThreadPool pool, ffi::AnyBuffer param, ffi::AnyBuffer grad, ffi::AnyBuffer mu,
                    ffi::AnyBuffer nu, ffi::Buffer<ffi::F32> hyper, ffi::Result<ffi::AnyBuffer> out,
                    ffi::Result<ffi::AnyBuffer> mu_out, ffi::Result<ffi::AnyBuffer> nu_out, bool coupled,
                    bool decoupled) {
  const int64_t n = static_cast<int64_t>(param.element_count());
  if (grad.element_count() != param.element_count() || mu.element_count() != param.element_count() ||
      nu.element_count() != param.element_count() || out->element_count() != param.element_count()) {
    return ffi::Error::InvalidArgument("adamjax adam kernel: operands have different sizes");
  }
  const int64_t rows = static_cast<int64_t>(hyper.element_count()) / kNumHyper;
  if (rows < 1 || rows * kNumHyper != static_cast<int64_t>(hyper.element_count()) || n % rows != 0) {
    return ffi::Error::InvalidArgument("adamjax adam kernel: hyperparameters do not match the batch");
  }
  if (grad.element_type() != param.element_type() || out->element_type() != param.element_type() ||
      mu_out->element_type() != mu.element_type() || nu_out->element_type() != nu.element_type()) {
    return ffi::Error::InvalidArgument("adamjax adam kernel: operand dtypes do not match");
  }
  RangeFn fn = Pick(param.element_type(), mu.element_type(), nu.element_type(), coupled, decoupled);
  if (fn == nullptr) {
    return ffi::Error::InvalidArgument("adamjax adam kernel: unsupported dtype combination");
  }
  if (n == 0) return ffi::Error::Success();

  auto shared = std::make_shared<Shared>();
  shared->fn = fn;
  shared->ptr = Pointers{param.untyped_data(), grad.untyped_data(), mu.untyped_data(), nu.untyped_data(),
                         out->untyped_data(), mu_out->untyped_data(), nu_out->untyped_data()};
  shared->hyper = hyper.typed_data();
  shared->n = n;
  shared->member = n / rows;
  shared->chunk = kChunk;
  shared->num_chunks = (n + kChunk - 1) / kChunk;

  const int64_t helpers = n >= kParallelMin ? std::min<int64_t>(pool.num_threads(), shared->num_chunks - 1) : 0;
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
                                  .Arg<ffi::AnyBuffer>()  // param
                                  .Arg<ffi::AnyBuffer>()  // grad
                                  .Arg<ffi::AnyBuffer>()  // mu
                                  .Arg<ffi::AnyBuffer>()  // nu
                                  .Arg<ffi::Buffer<ffi::F32>>()  // hyperparameters
                                  .Ret<ffi::AnyBuffer>()  // new param
                                  .Ret<ffi::AnyBuffer>()  // new mu
                                  .Ret<ffi::AnyBuffer>()  // new nu
                                  .Attr<bool>("coupled")
                                  .Attr<bool>("decoupled"));
