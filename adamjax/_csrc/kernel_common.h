// What the kernel's translation units share: the layouts of the step's
// operands, the codebook, and the entry points of each instruction set's loops.
//
// The loops are compiled twice, for the baseline instruction set and for
// AVX2+FMA, in four translation units: adam_loops_baseline.cc and
// adam_loops_avx2.cc (adam_kernel_impl.h), quantized_loops_baseline.cc and
// quantized_loops_avx2.cc (quantized_kernel_impl.h). adam_kernel.cc holds the
// FFI handlers, the codebooks, and picks one instruction set at run time. They
// are separate so that the build (setup.py) compiles them in parallel; the
// quantized loops are the heaviest part.
//
// Everything here is in namespace adamjax_kernel with hidden visibility: the
// loops of the two instruction sets live in adamjax_kernel::baseline and
// adamjax_kernel::avx2, so their instantiations never clash, and none of them
// is exported from the shared library (which exports only the handlers and the
// extern "C" functions of adam_kernel.cc). Every inline function here is
// defined before the AVX2 files' `#pragma GCC target`, so all translation
// units compile it for the baseline instruction set.

#ifndef ADAMJAX_CSRC_KERNEL_COMMON_H_
#define ADAMJAX_CSRC_KERNEL_COMMON_H_

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>
#include <vector>

// Only the FFI's C API, for XLA_FFI_DataType: the loops need no more, and
// ffi.h's C++ would cost each translation unit a second more to parse.
#include "xla/ffi/api/c_api.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
// kernel_avx2.cc compiles the AVX2+FMA loops, and adam_kernel.cc dispatches to them.
#define ADAMJAX_HAVE_AVX2 1
#endif

#if defined(__GNUC__)
#define ADAMJAX_HIDDEN __attribute__((visibility("hidden")))
#else
#define ADAMJAX_HIDDEN
#endif

namespace adamjax_kernel ADAMJAX_HIDDEN {

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

// ---- quantized moments (adamjax/_quantize.py) -------------------------------

// A codebook (the sorted map a code indexes) and what finds the nearest code.
//
// The nearest-code rule (`_quantize._search_codes`) takes below = the last
// entry <= x (clipped to [0, size - 2]) and moves up to below + 1 when
// |x - map[below + 1]| < |x - map[below]| in float32. That choice only grows
// with x, so code(x) = the number of thresholds t_j <= x, where t_j is the
// least float whose code is above j; BuildCodebook finds each t_j by bisection
// with that very float32 test, as the pure path's `_quantize._thresholds`
// does, so the kernel's codes are the pure path's, ties included.
// Thresholds are compared as order keys (OrderKey). To count them fast, a
// float falls in a bucket by its top bits (sign, exponent, the first mantissa
// bits), fine enough that a bucket holds at most one threshold (the pure path
// looks codes up in the same 16-bit buckets, `_quantize._bucket_table`). The
// floats of one bucket differ only in their low bits, so one 32-bit entry
// says it all: with a threshold inside, (base + 1) << 23 | its place among
// those low bits, and the code is base + 1, less one before the threshold;
// without, base << 23, and the code is the base. A 16-code map is searched in
// four bisection steps instead (`levels`).
struct Codebook {
  int size = 0;                       // 16 or 256 codes
  float values[256] = {};             // the map
  int32_t thresholds[256] = {};       // [j] = order key of t_j (j < size - 1), then INT32_MAX
  int shift = 0;                      // bucket = float bits >> shift (sign included)
  int32_t low_mask = 0;               // (1 << shift) - 1: the bits within a bucket
  std::vector<int32_t> bucket_entry;  // see above; the place is ThresholdPlace's
  bool negative = false;              // whether a threshold is negative (else negative places need no care)
  int32_t levels[4][8] = {};          // 16 codes: thresholds - 1 of each bisection step, by the code so far
  int zero_code = 0;                  // the code of 0 (zero blocks and non-finite blocks)
};

// Where x lies within its bucket, increasing with x in both signs: its low bits,
// reversed (0x7fffff - low, which is low ^ 0x7fffff) for a negative x, whose
// key falls as they grow.
inline int32_t ThresholdPlace(uint32_t bits, int32_t low_mask) {
  return (static_cast<int32_t>(bits) & low_mask) ^ ((bits >> 31) ? 0x7fffff : 0);
}

// What one array of the quantized step reads and writes.
struct QPointers {
  const void* param;
  const void* grad;
  const uint8_t* mu_codes;
  const float* mu_scales;
  const uint8_t* nu_codes;
  const float* nu_scales;
  void* out;  // new parameters (or updates)
  uint8_t* mu_codes_out;
  float* mu_scales_out;
  uint8_t* nu_codes_out;
  float* nu_scales_out;
};

// An array's layout (quantize's): rows of `row` elements, each cut into
// `blocks_per_row` blocks of `block` elements (the last one possibly short),
// `code_bytes` bytes of codes per row.
struct QGeometry {
  int64_t row, blocks_per_row, code_bytes, block;
};

using QRangeFn = void (*)(const QPointers&, const QGeometry&, const Codebook&, const Codebook&, const float*,
                          int64_t, int64_t);

// A block's new moments wait in a stack buffer of this many floats each.
constexpr int64_t kStackBlock = 1024;

// Each instruction set's entry points, in a namespace of its own.
namespace baseline {
#include "loop_entry_points.h"
}  // namespace baseline

#ifdef ADAMJAX_HAVE_AVX2
namespace avx2 {
#include "loop_entry_points.h"
}  // namespace avx2
#endif

}  // namespace adamjax_kernel

#endif  // ADAMJAX_CSRC_KERNEL_COMMON_H_
