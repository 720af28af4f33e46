// The entry points of one instruction set's loops (defined by adam_kernel_impl.h
// and quantized_kernel_impl.h), declared inside that instruction set's namespace
// by kernel_common.h (no include guard: it is included once per namespace): the
// loop for an array's dtypes and flags (nullptr for an unsupported combination),
// and the nearest-code search on its own. A dtype is the C API's
// XLA_FFI_DataType, whose values ffi::DataType's are.

RangeFn Pick(XLA_FFI_DataType param, XLA_FFI_DataType mu, XLA_FFI_DataType nu, bool coupled, bool decoupled,
             bool updates);
QRangeFn QPick(XLA_FFI_DataType param, int bits, bool fma, bool coupled, bool decoupled, bool updates);
void NearestCodesOf(const Codebook& book, const float* x, int64_t n, uint8_t* out);
