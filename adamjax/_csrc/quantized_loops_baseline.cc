// The quantized step's loops (quantized_kernel_impl.h)
// for the baseline instruction set (whatever the compiler targets by default):
// they run on any CPU, and wherever ADAMJAX_KERNEL_BASELINE=1. One of the
// kernel's translation units, which the build compiles in parallel
// (kernel_common.h).

#include "kernel_common.h"

namespace adamjax_kernel ADAMJAX_HIDDEN {
namespace baseline {
#include "dtypes_impl.h"
#include "quantized_kernel_impl.h"
}  // namespace baseline
}  // namespace adamjax_kernel
