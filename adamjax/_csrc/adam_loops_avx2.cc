// The Adam loops (adam_kernel_impl.h) compiled for AVX2+FMA (avx2_unit.h).
// One of the kernel's translation units, which the build compiles in parallel
// (kernel_common.h).

#define ADAMJAX_LOOPS_IMPL "adam_kernel_impl.h"
#include "avx2_unit.h"
