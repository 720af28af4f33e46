// The storage types the loops read and write (float32, bfloat16) and the
// bfloat16 conversions, pasted into each instruction set's namespace ahead of
// adam_kernel_impl.h or quantized_kernel_impl.h (see kernel_common.h for the
// translation units that do). No #include here on purpose: this text is pasted
// inside a namespace.

inline float Bf16ToF32(uint16_t h) {
  uint32_t bits = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &bits, sizeof(f));
  return f;
}

// Round to nearest even, as XLA's convert does; NaN stays a quiet NaN.
inline uint16_t F32ToBf16(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, sizeof(bits));
  if ((bits & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((bits >> 16) | 0x40u);
  bits += 0x7fffu + ((bits >> 16) & 1u);
  return static_cast<uint16_t>(bits >> 16);
}

struct F32 {
  using T = float;
  static inline float Load(float x) { return x; }
  static inline float Store(float x) { return x; }
};

struct BF16 {
  using T = uint16_t;
  static inline float Load(uint16_t x) { return Bf16ToF32(x); }
  static inline uint16_t Store(float x) { return F32ToBf16(x); }
};
