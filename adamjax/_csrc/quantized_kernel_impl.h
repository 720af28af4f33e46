// The fused step for blockwise-quantized moments (adamjax/_quantize.py), and
// its dispatch (`QPick`), compiled twice: in quantized_loops_baseline.cc for the
// baseline instruction set and in quantized_loops_avx2.cc for AVX2+FMA
// (ADAMJAX_VECTOR_AVX2 set), chosen at run time by adam_kernel.cc.
// No #include here on purpose: this text is pasted inside a namespace, after
// dtypes_impl.h (F32, BF16 and the bfloat16 conversions). Hyper indices,
// Codebook, QPointers and QGeometry come from kernel_common.h.
//
// One block at a time, in one pass over memory: the block's codes are read and
// dequantized (map[code] * scale), the Adam step runs in float32 and writes the
// new parameters, the new moments wait in a small buffer while their absmax is
// found, and then the block is requantized (nearest code, ties to the lower
// index) and written back over the codes it was read from.
//
// Rounding follows the pure-JAX step as XLA compiles it on this CPU:
// * where the host has FMA, XLA contracts `a * b + c` into one fused
//   multiply-add (the moments' `(1 - b1) g + b1 m`, a coupled or decoupled
//   decay, `p + (-lr) u`); with kFma the kernel does the same, and without FMA
//   both round twice. So the new moments, and the codes and scales made from
//   them, are the pure path's bit for bit;
// * quantize's `x / scale` becomes `x * (1 / scale)` per block (XLA rewrites a
//   division by a broadcast value so there); the kernel multiplies too;
// * the direction: XLA turns `(m / bc1) / d` into `m / (bc1 * d)` and keeps
//   `v / bc2`, as it compiles a tree of arrays that share the bias
//   corrections; with eps <= 0 (or traced) the zero-denominator guard keeps
//   `(m / bc1) / d`. A lone array may instead get `m * (1 / bc1)` and
//   `v * (1 / bc2)`: its parameters then differ from the pure path's by a
//   rounding (1e-7 relative), while its moments stay equal.
// bfloat16 parameters keep the float32 kernel's rounding of the update
// (adam_kernel_impl.h).

template <bool kFma>
inline float MulAdd(float a, float b, float c) {
  if (kFma) return std::fma(a, b, c);
  return a * b + c;
}

// The step's hyperparameters, read once per range from this batch member's row.
struct QHyper {
  float neg_lr, b1, omb1, b2, omb2, eps, eps_root, bc1, bc2, coupled, decoupled;
  explicit QHyper(const float* h)
      : neg_lr(-h[kLr]),
        b1(h[kB1]),
        omb1(h[kOneMinusB1]),
        b2(h[kB2]),
        omb2(h[kOneMinusB2]),
        eps(h[kEps]),
        eps_root(h[kEpsRoot]),
        bc1(h[kBc1]),
        bc2(h[kBc2]),
        coupled(h[kCoupledWd]),
        decoupled(h[kDecoupledWd]) {}
};

// One element of the step from dequantized moments: returns the new parameter
// (or update) and sets the new moments. The scalar reference of the vector loop.
template <typename P, bool kCoupled, bool kDecoupled, bool kUpdates, bool kFma>
inline typename P::T StepOne(const QHyper& q, typename P::T param, typename P::T grad, float mu, float nu,
                             float* m_out, float* v_out) {
  constexpr bool kF32 = std::is_same<P, F32>::value;
  const float p = P::Load(param);
  float g = P::Load(grad);
  if (kCoupled) g = kF32 ? MulAdd<kFma>(q.coupled, p, g) : P::Load(P::Store(g + P::Load(P::Store(q.coupled * p))));
  const float m = MulAdd<kFma>(q.omb1, g, q.b1 * mu);
  const float v = MulAdd<kFma>(q.omb2, g * g, q.b2 * nu);
  const float denom = std::sqrt(v / q.bc2 + q.eps_root) + q.eps;
  float u;
  if (q.eps > 0.0f) {  // the denominator is never 0: no guard, and `m / (bc1 * d)` (see above)
    u = m / (q.bc1 * denom);
  } else {
    const float m_hat = m / q.bc1;
    const bool zero = denom == 0.0f;
    const float sign = static_cast<float>((m_hat > 0.0f) - (m_hat < 0.0f));
    u = (zero ? sign : m_hat) / (zero ? 1.0f : denom);
  }
  *m_out = m;
  *v_out = v;
  if (kF32) {
    if (kDecoupled) u = MulAdd<kFma>(q.decoupled, p, u);
    return P::Store(kUpdates ? q.neg_lr * u : MulAdd<kFma>(q.neg_lr, u, p));
  }
  if (kDecoupled) u = P::Load(P::Store(u)) + P::Load(P::Store(q.decoupled * p));
  const typename P::T step = P::Store(q.neg_lr * P::Load(P::Store(u)));
  return kUpdates ? step : P::Store(p + P::Load(step));
}

// The code of element i of a block (4 bits: two a byte, the first in the high nibble).
template <int kBits>
inline int CodeAt(const uint8_t* codes, int64_t i) {
  if (kBits == 8) return codes[i];
  const int byte = codes[i >> 1];
  return (i & 1) ? (byte & 15) : (byte >> 4);
}

// Order key of a float: integers compare as the floats do (-0 < +0 here; callers pass +0).
inline int32_t OrderKey(float x) {
  int32_t bits;
  std::memcpy(&bits, &x, sizeof(bits));
  return bits ^ ((bits >> 31) & 0x7fffffff);
}

// The code nearest x (|x| <= 1), as `_quantize._nearest_codes` gives it: the
// number of thresholds at or below x (Codebook says why that is the same).
inline int NearestCode(const Codebook& book, float x) {
  uint32_t bits;
  std::memcpy(&bits, &x, sizeof(bits));
  const int32_t entry = book.bucket_entry[bits >> book.shift];
  return static_cast<int>(static_cast<uint32_t>(entry) >> 23) -
         ((entry & 0x7fffff) > ThresholdPlace(bits, book.low_mask) ? 1 : 0);
}

// The scale a block stores: its absmax, or NaN when it holds a NaN or an infinity.
inline float BlockScale(float absmax, bool finite) { return finite ? absmax : std::numeric_limits<float>::quiet_NaN(); }

// Writes the codes of `len` values of one block, normalised by `scale` (times its reciprocal, as XLA does).
template <int kBits>
inline void QuantizeScalar(const Codebook& book, const float* x, int64_t begin, int64_t len, float scale,
                           uint8_t* codes) {
  const bool positive = scale > 0.0f;  // false for a zero block and for NaN
  const float inverse = 1.0f / (positive ? scale : 1.0f);
  for (int64_t i = begin; i < len; ++i) {
    const int code = positive ? NearestCode(book, x[i] * inverse) : book.zero_code;
    if (kBits == 8) {
      codes[i] = static_cast<uint8_t>(code);
    } else if (i & 1) {
      codes[i >> 1] = static_cast<uint8_t>((codes[i >> 1] & 0xf0) | code);
    } else {
      // A row of odd length pads its last byte with code 0, as quantize does.
      codes[i >> 1] = static_cast<uint8_t>(code << 4);
    }
  }
}

#ifdef ADAMJAX_VECTOR_AVX2

// Eight elements at a time. Each line is the scalar StepOne's arithmetic on
// eight lanes (correctly rounded divisions, square roots and fused
// multiply-adds are the same operations), so results equal the scalar ones.

inline __m256 LoadParams(const float* p) { return _mm256_loadu_ps(p); }
inline __m256 LoadParams(const uint16_t* p) {
  const __m256i wide = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  return _mm256_castsi256_ps(_mm256_slli_epi32(wide, 16));
}

inline __m256 RoundToBf16(__m256 x) {  // F32ToBf16 then back to float32, on eight lanes
  const __m256i bits = _mm256_castps_si256(x);
  const __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(bits, 16), _mm256_set1_epi32(1));
  __m256i rounded = _mm256_add_epi32(bits, _mm256_add_epi32(_mm256_set1_epi32(0x7fff), lsb));
  rounded = _mm256_and_si256(rounded, _mm256_set1_epi32(static_cast<int>(0xffff0000u)));
  const __m256i quiet = _mm256_and_si256(_mm256_or_si256(bits, _mm256_set1_epi32(0x00400000)),
                                         _mm256_set1_epi32(static_cast<int>(0xffff0000u)));
  const __m256 nan = _mm256_cmp_ps(x, x, _CMP_UNORD_Q);
  return _mm256_blendv_ps(_mm256_castsi256_ps(rounded), _mm256_castsi256_ps(quiet), nan);
}

inline void StoreParams(float* p, __m256 x) { _mm256_storeu_ps(p, x); }
inline void StoreParams(uint16_t* p, __m256 x) {  // x already holds bfloat16 values
  const __m256i high = _mm256_srli_epi32(_mm256_castps_si256(x), 16);
  const __m128i packed = _mm_packus_epi32(_mm256_castsi256_si128(high), _mm256_extracti128_si256(high, 1));
  _mm_storeu_si128(reinterpret_cast<__m128i*>(p), packed);
}

template <bool kFma>
inline __m256 MulAdd8(__m256 a, __m256 b, __m256 c) {
  if (kFma) return _mm256_fmadd_ps(a, b, c);
  return _mm256_add_ps(_mm256_mul_ps(a, b), c);
}

// The 4-bit codes of elements [i, i + 8) of a block, as eight int32 lanes: the
// four bytes go to every lane, which shifts its own nibble down (code 2k is the
// high nibble of byte k).
inline __m256i LoadNibbles(const uint8_t* codes, int64_t i) {
  int32_t word;
  std::memcpy(&word, codes + (i >> 1), sizeof(word));
  const __m256i shifted = _mm256_srlv_epi32(_mm256_set1_epi32(word), _mm256_setr_epi32(4, 0, 12, 8, 20, 16, 28, 24));
  return _mm256_and_si256(shifted, _mm256_set1_epi32(15));
}

// map[code] * scale for the codes of elements [i, i + 8). 8 bits: eight scalar
// loads put together, which run faster than a gather on the CPUs measured (a
// Zen 4 gathers eight floats in about twice the time); 4 bits: two permutes of
// the 16 values and a blend.
template <int kBits>
inline __m256 Dequantize(const Codebook& book, const uint8_t* codes, int64_t i, __m256 scale) {
  if (kBits == 8) {
    const float* t = book.values;
    const uint8_t* c = codes + i;
    const __m256 values = _mm256_setr_ps(t[c[0]], t[c[1]], t[c[2]], t[c[3]], t[c[4]], t[c[5]], t[c[6]], t[c[7]]);
    return _mm256_mul_ps(values, scale);
  }
  const __m256i code = LoadNibbles(codes, i);
  const __m256 low = _mm256_permutevar8x32_ps(_mm256_loadu_ps(book.values), code);
  const __m256 high = _mm256_permutevar8x32_ps(_mm256_loadu_ps(book.values + 8), code);
  return _mm256_mul_ps(_mm256_blendv_ps(low, high, _mm256_castsi256_ps(_mm256_slli_epi32(code, 28))), scale);
}

// The code of eight values from their buckets' entries, for a 256-code map
// (kNegative: it has negative thresholds, so a negative value's place is reversed).
template <bool kNegative>
inline __m256i CodesFromEntries(const Codebook& book, __m256i bits, __m256i entry) {
  __m256i place = _mm256_and_si256(bits, _mm256_set1_epi32(book.low_mask));
  if (kNegative) {
    place = _mm256_xor_si256(place, _mm256_and_si256(_mm256_srai_epi32(bits, 31), _mm256_set1_epi32(0x7fffff)));
  }
  // (entry >> 23) - (threshold > place)
  return _mm256_add_epi32(_mm256_srli_epi32(entry, 23),
                          _mm256_cmpgt_epi32(_mm256_and_si256(entry, _mm256_set1_epi32(0x7fffff)), place));
}

// NearestCode on eight lanes for a 16-code map: four bisection steps, each a
// permute of thresholds (Codebook::levels).
inline __m256i NearestCodes16(const Codebook& book, __m256 x) {
  const __m256i bits = _mm256_castps_si256(x);
  const __m256i key = _mm256_xor_si256(bits, _mm256_and_si256(_mm256_srai_epi32(bits, 31), _mm256_set1_epi32(0x7fffffff)));
  // The code's bits so far; each step doubles it and adds the next bit (key >= threshold).
  __m256i code =
      _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_cmpgt_epi32(key, _mm256_set1_epi32(book.levels[0][0])));
  for (int k = 1; k < 4; ++k) {
    const __m256i threshold =
        _mm256_permutevar8x32_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(book.levels[k])), code);
    code = _mm256_sub_epi32(_mm256_add_epi32(code, code), _mm256_cmpgt_epi32(key, threshold));
  }
  return code;
}

// Stores the codes of elements [i, i + 16) (eight bytes at 4 bits).
template <int kBits>
inline void StoreCodes16(uint8_t* codes, int64_t i, __m256i first, __m256i second) {
  // In-lane packs give elements (0-3, 8-11, 4-7, 12-15) as 16-bit words; a permute orders them.
  const __m256i words =
      _mm256_permute4x64_epi64(_mm256_packus_epi32(first, second), _MM_SHUFFLE(3, 1, 2, 0));
  if (kBits == 8) {
    const __m256i bytes = _mm256_packus_epi16(words, words);
    const __m128i ordered = _mm256_castsi256_si128(_mm256_permute4x64_epi64(bytes, _MM_SHUFFLE(3, 1, 2, 0)));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(codes + i), ordered);
    return;
  }
  // Each 32-bit lane holds codes (2k, 2k + 1): the byte is (first << 4) | second.
  const __m256i pairs = _mm256_or_si256(_mm256_slli_epi32(_mm256_and_si256(words, _mm256_set1_epi32(0xffff)), 4),
                                        _mm256_srli_epi32(words, 16));
  const __m128i half = _mm_packus_epi32(_mm256_castsi256_si128(pairs), _mm256_extracti128_si256(pairs, 1));
  _mm_storel_epi64(reinterpret_cast<__m128i*>(codes + (i >> 1)), _mm_packus_epi16(half, half));
}

// Stores the codes of elements [i, i + 8) (four bytes at 4 bits).
template <int kBits>
inline void StoreCodes(uint8_t* codes, int64_t i, __m256i code) {
  const __m128i words = _mm_packus_epi32(_mm256_castsi256_si128(code), _mm256_extracti128_si256(code, 1));
  if (kBits == 8) {
    _mm_storel_epi64(reinterpret_cast<__m128i*>(codes + i), _mm_packus_epi16(words, words));
    return;
  }
  const __m128i pairs = _mm_or_si128(_mm_slli_epi32(_mm_and_si128(words, _mm_set1_epi32(0xffff)), 4),
                                     _mm_srli_epi32(words, 16));
  const __m128i bytes = _mm_packus_epi16(_mm_packus_epi32(pairs, pairs), _mm_setzero_si128());
  const int32_t word = _mm_cvtsi128_si32(bytes);
  std::memcpy(codes + (i >> 1), &word, sizeof(word));
}

// 16 bits of a float, read in place (a type that may alias it).
typedef uint16_t Half __attribute__((__may_alias__));

// Requantizes `len` new values of a moment: codes of elements [0, len - len % 8),
// from the block's buffer `x`, which 8 bits overwrite with x / scale.
template <int kBits, bool kNegative>
inline int64_t QuantizeVector(const Codebook& book, float* x, int64_t len, float scale, uint8_t* codes) {
  int64_t i = 0;
  if (!(scale > 0.0f)) return i;  // zero and non-finite blocks: QuantizeScalar writes the code of 0
  const __m256 inverse = _mm256_set1_ps(1.0f / scale);
  if (kBits == 8) {
    // Normalise the block in place, then read each value's bucket (its high 16 bits: BuildCodebook
    // gives 256-code maps shift 16) from memory and its entry with a scalar load (see Dequantize).
    const int64_t whole = len & ~int64_t{7};
    for (int64_t k = 0; k < whole; k += 8) _mm256_storeu_ps(x + k, _mm256_mul_ps(_mm256_loadu_ps(x + k), inverse));
    const int32_t* e = book.bucket_entry.data();
    for (; i < whole; i += 8) {
      const Half* h = reinterpret_cast<const Half*>(x + i) + 1;  // the high half of each float
      const __m256i entry = _mm256_setr_epi32(e[h[0]], e[h[2]], e[h[4]], e[h[6]], e[h[8]], e[h[10]], e[h[12]], e[h[14]]);
      StoreCodes<kBits>(codes, i, CodesFromEntries<kNegative>(book, _mm256_castps_si256(_mm256_loadu_ps(x + i)), entry));
    }
    // QuantizeScalar normalises the tail itself, from values left as they were.
    return i;
  }
  for (; i + 16 <= len; i += 16) {
    const __m256i first = NearestCodes16(book, _mm256_mul_ps(_mm256_loadu_ps(x + i), inverse));
    const __m256i second = NearestCodes16(book, _mm256_mul_ps(_mm256_loadu_ps(x + i + 8), inverse));
    StoreCodes16<kBits>(codes, i, first, second);
  }
  for (; i + 8 <= len; i += 8) {
    StoreCodes<kBits>(codes, i, NearestCodes16(book, _mm256_mul_ps(_mm256_loadu_ps(x + i), inverse)));
  }
  return i;
}

#endif  // ADAMJAX_VECTOR_AVX2

// Blocks [begin, end) of one array. Block b is block b % blocks_per_row of row
// b / blocks_per_row; a row's last block may be short. `h` is this batch
// member's hyperparameter row.
template <typename P, bool kCoupled, bool kDecoupled, bool kUpdates, int kBits, bool kFma>
void QuantizedBlocks(const QPointers& ptr, const QGeometry& geo, const Codebook& mu_book, const Codebook& nu_book,
                     const float* h, int64_t begin, int64_t end) {
  using PT = typename P::T;
  const QHyper q(h);
  const PT* param = static_cast<const PT*>(ptr.param);
  const PT* grad = static_cast<const PT*>(ptr.grad);
  PT* out = static_cast<PT*>(ptr.out);
  // New moments of one block wait here while the block's absmax is found.
  float stack_buffer[2 * kStackBlock];
  std::vector<float> heap_buffer;  // blocks larger than kStackBlock (a custom block_size)
  float* m_new = stack_buffer;
  if (geo.block > kStackBlock) {
    heap_buffer.resize(2 * geo.block);
    m_new = heap_buffer.data();
  }
  float* v_new = m_new + std::max<int64_t>(geo.block, kStackBlock);
  const int64_t code_shift = kBits == 8 ? 0 : 1;

  for (int64_t b = begin; b < end; ++b) {
    const int64_t row = b / geo.blocks_per_row;
    const int64_t start = (b - row * geo.blocks_per_row) * geo.block;
    const int64_t len = std::min(geo.block, geo.row - start);
    const int64_t first = row * geo.row + start;
    const int64_t code_offset = row * geo.code_bytes + (start >> code_shift);
    const uint8_t* mu_codes = ptr.mu_codes + code_offset;
    const uint8_t* nu_codes = ptr.nu_codes + code_offset;
    const float mu_scale = ptr.mu_scales[b];
    const float nu_scale = ptr.nu_scales[b];
    const PT* p = param + first;
    const PT* g = grad + first;
    PT* o = out + first;

    float m_max = 0.0f, v_max = 0.0f;
    bool m_finite = true, v_finite = true;
    int64_t i = 0;
#ifdef ADAMJAX_VECTOR_AVX2
    {
      const __m256 neg_lr = _mm256_set1_ps(q.neg_lr), b1 = _mm256_set1_ps(q.b1), omb1 = _mm256_set1_ps(q.omb1);
      const __m256 b2 = _mm256_set1_ps(q.b2), omb2 = _mm256_set1_ps(q.omb2), eps = _mm256_set1_ps(q.eps);
      const __m256 eps_root = _mm256_set1_ps(q.eps_root), bc1 = _mm256_set1_ps(q.bc1), bc2 = _mm256_set1_ps(q.bc2);
      const __m256 coupled = _mm256_set1_ps(q.coupled), decoupled = _mm256_set1_ps(q.decoupled);
      const __m256 mu_s = _mm256_set1_ps(mu_scale), nu_s = _mm256_set1_ps(nu_scale);
      const __m256 zero = _mm256_setzero_ps(), one = _mm256_set1_ps(1.0f);
      const __m256i magnitude = _mm256_set1_epi32(0x7fffffff);
      // With eps > 0 the denominator is never 0 (or NaN, which the guard leaves alone): no guard (StepOne).
      const bool guard = !(q.eps > 0.0f);
      // v_hat >= 0 (or NaN), so adding an eps_root of 0 changes nothing.
      const bool with_eps_root = q.eps_root != 0.0f;
      __m256i m_max8 = _mm256_setzero_si256(), v_max8 = _mm256_setzero_si256();
      constexpr bool kF32 = std::is_same<P, F32>::value;
      for (; i + 8 <= len; i += 8) {
        const __m256 pv = LoadParams(p + i);
        __m256 gv = LoadParams(g + i);
        const __m256 mu = Dequantize<kBits>(mu_book, mu_codes, i, mu_s);
        const __m256 nu = Dequantize<kBits>(nu_book, nu_codes, i, nu_s);
        if (kCoupled) {
          gv = kF32 ? MulAdd8<kFma>(coupled, pv, gv)
                    : RoundToBf16(_mm256_add_ps(gv, RoundToBf16(_mm256_mul_ps(coupled, pv))));
        }
        const __m256 m = MulAdd8<kFma>(omb1, gv, _mm256_mul_ps(b1, mu));
        const __m256 v = MulAdd8<kFma>(omb2, _mm256_mul_ps(gv, gv), _mm256_mul_ps(b2, nu));
        __m256 v_hat = _mm256_div_ps(v, bc2);
        if (with_eps_root) v_hat = _mm256_add_ps(v_hat, eps_root);
        const __m256 denom = _mm256_add_ps(_mm256_sqrt_ps(v_hat), eps);
        __m256 u;
        if (guard) {
          const __m256 m_hat = _mm256_div_ps(m, bc1);
          const __m256 is_zero = _mm256_cmp_ps(denom, zero, _CMP_EQ_OQ);
          const __m256 sign = _mm256_sub_ps(_mm256_and_ps(_mm256_cmp_ps(m_hat, zero, _CMP_GT_OQ), one),
                                            _mm256_and_ps(_mm256_cmp_ps(m_hat, zero, _CMP_LT_OQ), one));
          u = _mm256_div_ps(_mm256_blendv_ps(m_hat, sign, is_zero), _mm256_blendv_ps(denom, one, is_zero));
        } else {
          u = _mm256_div_ps(m, _mm256_mul_ps(bc1, denom));
        }
        __m256 result;
        if (kF32) {
          if (kDecoupled) u = MulAdd8<kFma>(decoupled, pv, u);
          result = kUpdates ? _mm256_mul_ps(neg_lr, u) : MulAdd8<kFma>(neg_lr, u, pv);
        } else {
          if (kDecoupled) u = _mm256_add_ps(RoundToBf16(u), RoundToBf16(_mm256_mul_ps(decoupled, pv)));
          const __m256 step = RoundToBf16(_mm256_mul_ps(neg_lr, RoundToBf16(u)));
          result = kUpdates ? step : RoundToBf16(_mm256_add_ps(pv, step));
        }
        StoreParams(o + i, result);
        _mm256_storeu_ps(m_new + i, m);
        _mm256_storeu_ps(v_new + i, v);
        // The largest magnitude as integer bits: infinities and NaNs sort above every finite
        // value, so one maximum finds the absmax and whether the block is finite.
        m_max8 = _mm256_max_epi32(_mm256_and_si256(_mm256_castps_si256(m), magnitude), m_max8);
        v_max8 = _mm256_max_epi32(_mm256_and_si256(_mm256_castps_si256(v), magnitude), v_max8);
      }
      alignas(32) int32_t lanes[8];
      int32_t m_bits = 0, v_bits = 0;
      _mm256_store_si256(reinterpret_cast<__m256i*>(lanes), m_max8);
      for (int32_t x : lanes) m_bits = std::max(m_bits, x);
      _mm256_store_si256(reinterpret_cast<__m256i*>(lanes), v_max8);
      for (int32_t x : lanes) v_bits = std::max(v_bits, x);
      m_finite = m_bits < 0x7f800000;
      v_finite = v_bits < 0x7f800000;
      std::memcpy(&m_max, &m_bits, sizeof(m_max));  // a magnitude: a float of the same order
      std::memcpy(&v_max, &v_bits, sizeof(v_max));
    }
#endif
    for (; i < len; ++i) {
      float m, v;
      const float mu = mu_book.values[CodeAt<kBits>(mu_codes, i)] * mu_scale;
      const float nu = nu_book.values[CodeAt<kBits>(nu_codes, i)] * nu_scale;
      o[i] = StepOne<P, kCoupled, kDecoupled, kUpdates, kFma>(q, p[i], g[i], mu, nu, &m, &v);
      m_new[i] = m;
      v_new[i] = v;
      const float m_abs = std::fabs(m), v_abs = std::fabs(v);
      m_max = m_abs > m_max ? m_abs : m_max;
      v_max = v_abs > v_max ? v_abs : v_max;
      m_finite = m_finite && std::isfinite(m);
      v_finite = v_finite && std::isfinite(v);
    }

    // Requantize the block over the codes it was read from (all of them are read by now).
    const float m_scale = BlockScale(m_max, m_finite);
    const float v_scale = BlockScale(v_max, v_finite);
    ptr.mu_scales_out[b] = m_scale;
    ptr.nu_scales_out[b] = v_scale;
    uint8_t* mu_out = ptr.mu_codes_out + code_offset;
    uint8_t* nu_out = ptr.nu_codes_out + code_offset;
    int64_t m_done = 0, v_done = 0;
#ifdef ADAMJAX_VECTOR_AVX2
    m_done = mu_book.negative ? QuantizeVector<kBits, true>(mu_book, m_new, len, m_scale, mu_out)
                              : QuantizeVector<kBits, false>(mu_book, m_new, len, m_scale, mu_out);
    v_done = nu_book.negative ? QuantizeVector<kBits, true>(nu_book, v_new, len, v_scale, nu_out)
                              : QuantizeVector<kBits, false>(nu_book, v_new, len, v_scale, nu_out);
#endif
    QuantizeScalar<kBits>(mu_book, m_new, m_done, len, m_scale, mu_out);
    QuantizeScalar<kBits>(nu_book, v_new, v_done, len, v_scale, nu_out);
  }
}

template <typename P, int kBits, bool kFma, bool kUpdates>
QRangeFn QPickDecays(bool coupled, bool decoupled) {
  if (coupled) {
    return decoupled ? &QuantizedBlocks<P, true, true, kUpdates, kBits, kFma>
                     : &QuantizedBlocks<P, true, false, kUpdates, kBits, kFma>;
  }
  return decoupled ? &QuantizedBlocks<P, false, true, kUpdates, kBits, kFma>
                   : &QuantizedBlocks<P, false, false, kUpdates, kBits, kFma>;
}

template <typename P, int kBits, bool kFma>
QRangeFn QPickUpdates(bool coupled, bool decoupled, bool updates) {
  return updates ? QPickDecays<P, kBits, kFma, true>(coupled, decoupled)
                 : QPickDecays<P, kBits, kFma, false>(coupled, decoupled);
}

template <typename P>
QRangeFn QPickBits(int bits, bool fma, bool coupled, bool decoupled, bool updates) {
#ifdef ADAMJAX_VECTOR_AVX2
  // adam_kernel.cc runs these loops only where the CPU has FMA: no loops without it (half the compile time).
  if (!fma) return nullptr;
  if (bits == 8) return QPickUpdates<P, 8, true>(coupled, decoupled, updates);
  if (bits == 4) return QPickUpdates<P, 4, true>(coupled, decoupled, updates);
  return nullptr;
#else
  if (bits == 8) {
    return fma ? QPickUpdates<P, 8, true>(coupled, decoupled, updates)
               : QPickUpdates<P, 8, false>(coupled, decoupled, updates);
  }
  if (bits == 4) {
    return fma ? QPickUpdates<P, 4, true>(coupled, decoupled, updates)
               : QPickUpdates<P, 4, false>(coupled, decoupled, updates);
  }
  return nullptr;
#endif
}

QRangeFn QPick(XLA_FFI_DataType param, int bits, bool fma, bool coupled, bool decoupled, bool updates) {
  if (param == XLA_FFI_DataType_F32) return QPickBits<F32>(bits, fma, coupled, decoupled, updates);
  if (param == XLA_FFI_DataType_BF16) return QPickBits<BF16>(bits, fma, coupled, decoupled, updates);
  return nullptr;
}

// NearestCode over an array of values in [-1, 1] (the tests compare it with the
// pure path's search), through the loops the requantization runs, with scale 1.
void NearestCodesOf(const Codebook& book, const float* x, int64_t n, uint8_t* out) {
  std::vector<float> values(x, x + n);  // the 8-bit loop normalises in place
  int64_t i = 0;
#ifdef ADAMJAX_VECTOR_AVX2
  if (book.size == 256) {
    i = book.negative ? QuantizeVector<8, true>(book, values.data(), n, 1.0f, out)
                      : QuantizeVector<8, false>(book, values.data(), n, 1.0f, out);
  } else {
    for (; i + 8 <= n; i += 8) StoreCodes<8>(out, i, NearestCodes16(book, _mm256_loadu_ps(x + i)));
  }
#endif
  for (; i < n; ++i) out[i] = static_cast<uint8_t>(NearestCode(book, x[i]));
}
