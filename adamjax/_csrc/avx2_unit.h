// One family of loops compiled for AVX2+FMA, which adam_kernel.cc runs on CPUs
// that have them: adam_loops_avx2.cc and quantized_loops_avx2.cc define
// ADAMJAX_LOOPS_IMPL (the loops' header) and include this file. x86-64 GCC and
// Clang only; elsewhere the unit compiles to nothing. (No include guard: each
// unit includes it once.)
//
// kernel_common.h, and with it every standard and FFI header, comes before the
// pragma: the inline functions and templates those define stay baseline code,
// so whichever copy of one the linker keeps runs on any CPU. Only what is
// defined inside the pragma, in namespace avx2, uses AVX2 and FMA.

#include "kernel_common.h"

#ifdef ADAMJAX_HAVE_AVX2
#pragma GCC push_options
#pragma GCC target("avx2,fma")
#define ADAMJAX_VECTOR_AVX2 1
namespace adamjax_kernel ADAMJAX_HIDDEN {
namespace avx2 {
#include "dtypes_impl.h"
#include ADAMJAX_LOOPS_IMPL
}  // namespace avx2
}  // namespace adamjax_kernel
#undef ADAMJAX_VECTOR_AVX2
#pragma GCC pop_options
#endif
