// The per-element Adam loop and its dtype/flag dispatch (`Pick`), compiled
// twice: in adam_loops_baseline.cc for the baseline instruction set and in
// adam_loops_avx2.cc for AVX2+FMA, chosen at run time by adam_kernel.cc. No
// #include here on purpose: this text is pasted inside a namespace, after
// dtypes_impl.h (F32, BF16). Hyper indices (kLr, ...) and Pointers come from
// kernel_common.h.

// Elements [begin, end) of one step. P: parameter/gradient/update type,
// M and V: moment storage types. All arithmetic is float32. kUpdates: write
// the update (what tx.update returns) instead of the new parameters.
template <typename P, typename M, typename V, bool kCoupled, bool kDecoupled, bool kUpdates>
void StepRange(const Pointers& ptr, const float* h, int64_t begin, int64_t end) {
  using PT = typename P::T;
  using MT = typename M::T;
  using VT = typename V::T;
  const PT* param = static_cast<const PT*>(ptr.param);
  const PT* grad = static_cast<const PT*>(ptr.grad);
  const MT* mu = static_cast<const MT*>(ptr.mu);
  const VT* nu = static_cast<const VT*>(ptr.nu);
  PT* out = static_cast<PT*>(ptr.out);
  MT* mu_out = static_cast<MT*>(ptr.mu_out);
  VT* nu_out = static_cast<VT*>(ptr.nu_out);
  const float neg_lr = -h[kLr], b1 = h[kB1], omb1 = h[kOneMinusB1], b2 = h[kB2], omb2 = h[kOneMinusB2];
  // The bias corrections divide, as the core and optax do (a reciprocal
  // multiply is 1 ulp off, visible as -0.10000001 for a first step of 0.1);
  // the step stays memory-bound on AVX2 (benchmarks/suite.py measures it).
  const float eps = h[kEps], eps_root = h[kEpsRoot], bc1 = h[kBc1], bc2 = h[kBc2];
  const float coupled = h[kCoupledWd], decoupled = h[kDecoupledWd];
  // Element i is read before it is written and no other element is touched,
  // so the in-place (aliased) buffers carry no dependence between iterations.
#pragma GCC ivdep
  for (int64_t i = begin; i < end; ++i) {
    const float p = P::Load(param[i]);
    float g = P::Load(grad[i]);
    if (kCoupled) g = P::Load(P::Store(g + P::Load(P::Store(coupled * p))));
    const float m = omb1 * g + b1 * M::Load(mu[i]);
    const float v = omb2 * (g * g) + b2 * V::Load(nu[i]);
    const float m_hat = m / bc1;
    const float denom = std::sqrt(v / bc2 + eps_root) + eps;
    // As the core: a zero denominator (eps = 0 and a zero or underflowed
    // second moment) gives sign(m_hat) instead of 0/0 or x/0.
    // (Written as selects, not branches, so the loop still vectorises.)
    const bool zero = denom == 0.0f;
    const float sign = static_cast<float>((m_hat > 0.0f) - (m_hat < 0.0f));
    float u = (zero ? sign : m_hat) / (zero ? 1.0f : denom);
    if (kDecoupled) u = P::Load(P::Store(u)) + P::Load(P::Store(decoupled * p));
    const PT step = P::Store(neg_lr * P::Load(P::Store(u)));
    out[i] = kUpdates ? step : P::Store(p + P::Load(step));
    mu_out[i] = M::Store(m);
    nu_out[i] = V::Store(v);
  }
}

template <typename P, typename M, typename V, bool kUpdates>
RangeFn PickDecays(bool coupled, bool decoupled) {
  if (coupled) {
    return decoupled ? &StepRange<P, M, V, true, true, kUpdates> : &StepRange<P, M, V, true, false, kUpdates>;
  }
  return decoupled ? &StepRange<P, M, V, false, true, kUpdates> : &StepRange<P, M, V, false, false, kUpdates>;
}

template <typename P, typename M, typename V>
RangeFn PickFlags(bool coupled, bool decoupled, bool updates) {
  return updates ? PickDecays<P, M, V, true>(coupled, decoupled) : PickDecays<P, M, V, false>(coupled, decoupled);
}

template <typename P, typename M>
RangeFn PickNu(XLA_FFI_DataType nu, bool coupled, bool decoupled, bool updates) {
  if (nu == XLA_FFI_DataType_F32) return PickFlags<P, M, F32>(coupled, decoupled, updates);
  if (nu == XLA_FFI_DataType_BF16) return PickFlags<P, M, BF16>(coupled, decoupled, updates);
  return nullptr;
}

template <typename P>
RangeFn PickMu(XLA_FFI_DataType mu, XLA_FFI_DataType nu, bool coupled, bool decoupled, bool updates) {
  if (mu == XLA_FFI_DataType_F32) return PickNu<P, F32>(nu, coupled, decoupled, updates);
  if (mu == XLA_FFI_DataType_BF16) return PickNu<P, BF16>(nu, coupled, decoupled, updates);
  return nullptr;
}

RangeFn Pick(XLA_FFI_DataType param, XLA_FFI_DataType mu, XLA_FFI_DataType nu, bool coupled, bool decoupled,
             bool updates) {
  if (param == XLA_FFI_DataType_F32) return PickMu<F32>(mu, nu, coupled, decoupled, updates);
  if (param == XLA_FFI_DataType_BF16) return PickMu<BF16>(mu, nu, coupled, decoupled, updates);
  return nullptr;
}

