"""Numerics at the edges: low precision, zero, tiny and huge gradients, tiny eps, decays near 1, int32 steps.

Every check is against the NumPy float64 transcription (tests/numpy_reference.py)
fed the same (rounded) gradients, within what the dtype can hold, and every
parameter, update and moment must stay finite. adamjax computes in float32 or
wider whatever the parameters' dtype; tests/test_contract.py already checks
zero gradients in float16/bfloat16 for every optimizer and optax's NaN there,
so this file covers the rest of the range.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import numpy_reference as ref
import optax
import pytest
from helpers import CORE_STATES

import adamjax
from adamjax import optimizers

INT32_MAX = 2**31 - 1
LR = 1e-2

# name -> (learning rate, mu_dtype, nu_dtype -> optimizer; the NumPy variant; coupled decay)
FAMILY = {
    "adam": (lambda mu, nu: adamjax.adam(LR, mu_dtype=mu, nu_dtype=nu), ref.Variant(), 0.0),
    "adam_weight_decay": (
        lambda mu, nu: adamjax.adam(LR, weight_decay=1e-2, mu_dtype=mu, nu_dtype=nu),
        ref.Variant(),
        1e-2,
    ),
    "amsgrad": (lambda mu, nu: adamjax.amsgrad(LR, mu_dtype=mu, nu_dtype=nu), ref.Variant(amsgrad=True), 0.0),
    "adamax": (
        lambda mu, nu: adamjax.adamax(LR, mu_dtype=mu, nu_dtype=nu),
        ref.Variant(power=math.inf, eps=0.0, eps_root=1e-8),
        0.0,
    ),
    "nadam": (lambda mu, nu: adamjax.nadam(LR, mu_dtype=mu, nu_dtype=nu), ref.Variant(nesterov=True), 0.0),
    "adabelief": (
        lambda mu, nu: adamjax.adabelief(LR, mu_dtype=mu, nu_dtype=nu),
        ref.Variant(centered=True, eps=1e-16, eps_root=1e-16),
        0.0,
    ),
}

# dtype -> gradient scales that dtype holds (float16: subnormal 6e-8 .. max 65504; bfloat16: float32's range,
# where the float32 second moment g**2 still fits up to ~1e19)
SCALES = {
    jnp.float16: {"zero": 0.0, "tiny": 1e-7, "normal": 1.0, "huge": 1e4},
    jnp.bfloat16: {"zero": 0.0, "tiny": 1e-30, "normal": 1.0, "huge": 1e18},
}
# Relative tolerance of one rounding to the dtype, with room for a few.
RTOL = {jnp.float16: 4e-3, jnp.bfloat16: 2e-2, jnp.float32: 1e-5, jnp.float64: 1e-12}


def gradient_stream(dtype, scale, steps=3, seed=0):
    rng = np.random.default_rng(seed)
    return [jnp.asarray(scale * rng.normal(size=(4,)), dtype) for _ in range(steps)]


def all_finite(tree):
    return all(bool(jnp.all(jnp.isfinite(x))) for x in jax.tree.leaves(tree))


def is_adam_state(x):
    return isinstance(x, CORE_STATES)


def adam_state(state):
    return next(s for s in jax.tree.leaves(state, is_leaf=is_adam_state) if is_adam_state(s))


def reference_updates(variant, coupled, params, grads_list, learning_rate=LR, first_step=1):
    theta = np.asarray(params, np.float64)
    moments = ref.zeros_like(theta)
    out = []
    for t, g in enumerate(grads_list, start=first_step):
        step = ref.step(np.asarray(g, np.float64) + coupled * theta, moments, t, variant)
        moments = ref.Moments(step.mu, step.nu, step.nu_max)
        out.append(-learning_rate * step.update)
    return out


@pytest.mark.parametrize("name", sorted(FAMILY))
@pytest.mark.parametrize("dtype", [jnp.float16, jnp.bfloat16], ids=["float16", "bfloat16"])
@pytest.mark.parametrize("scale", ["zero", "tiny", "normal", "huge"])
def test_low_precision_params_with_float32_state(name, dtype, scale):
    make, variant, coupled = FAMILY[name]
    tx = make(jnp.float32, jnp.float32)
    params = jnp.asarray([0.5, -1.0, 2.0, 0.0], dtype)
    grads_list = gradient_stream(dtype, SCALES[dtype][scale])
    state = tx.init(params)
    expected = reference_updates(variant, coupled, params, grads_list)
    for grads, want in zip(grads_list, expected, strict=True):
        updates, state = tx.update(grads, state, params)
        core = adam_state(state)
        assert updates.dtype == jnp.dtype(dtype)
        assert core.mu.dtype == jnp.dtype(jnp.float32) and core.nu.dtype == jnp.dtype(jnp.float32)
        assert all_finite((updates, state))
        # The update is one rounding of the float64 value to the parameters' dtype.
        np.testing.assert_allclose(
            np.asarray(updates, np.float64), want, rtol=RTOL[dtype], atol=float(jnp.finfo(dtype).smallest_subnormal)
        )
    assert all_finite(optax.apply_updates(params, updates))


@pytest.mark.parametrize("dtype", [jnp.float16, jnp.bfloat16], ids=["float16", "bfloat16"])
@pytest.mark.parametrize("scale", ["zero", "tiny", "normal", "huge"])
def test_triple_adam_low_precision(dtype, scale):
    # The triple keeps float32 moments for 16-bit parameters: float16 cannot hold g**2, and a bfloat16
    # second moment stalls (tests/test_low_precision_defaults.py).
    init, update, get_params = optimizers.adam(LR)
    params = jnp.zeros(4, dtype)  # near 0 the parameters' own rounding is finer than the steps
    grads_list = gradient_stream(dtype, SCALES[dtype][scale])
    state = init(params)
    moment_dtype = jnp.float32
    assert [leaf.dtype for leaf in jax.tree.leaves(state)] == [jnp.dtype(dtype), *[jnp.dtype(moment_dtype)] * 2]
    expected = np.zeros(4)
    steps = reference_updates(ref.Variant(), 0.0, params, grads_list)
    for i, (grads, want) in enumerate(zip(grads_list, steps, strict=True)):
        state = update(i, grads, state)
        assert all_finite(state)
        expected = expected + want
        got = np.asarray(get_params(state), np.float64)
        # Roundings of the parameters (the moments are float32).
        np.testing.assert_allclose(got, expected, rtol=3 * RTOL[dtype], atol=float(jnp.finfo(dtype).smallest_subnormal))
    assert get_params(state).dtype == jnp.dtype(dtype)


def test_float16_triple_moments_stay_in_range():
    # g = 1e-3: (1 - b2) g**2 = 1e-9 underflows float16 to 0 (jax.example_libraries' float16 v is 0,
    # and every later step divides by eps alone); adamjax's float32 moments keep it.
    init, update, get_params = optimizers.adam(LR)
    g = jnp.asarray([1e-3, -1e-3], jnp.float16)
    state = init(jnp.zeros(2, jnp.float16))
    for i in range(20):
        state = update(i, g, state)
    _, m, v = jax.tree.leaves(state)
    np.testing.assert_allclose(np.asarray(v), 1e-6 * (1 - 0.999**20), rtol=2e-3)
    # A constant gradient moves every step by lr (m_hat / sqrt(v_hat) = 1), up to float16 rounding.
    np.testing.assert_allclose(np.asarray(get_params(state), np.float64), [-20 * LR, 20 * LR], rtol=1e-2)


@pytest.mark.parametrize("name", sorted(FAMILY))
def test_huge_and_tiny_gradients_in_float64_match_the_reference(name):
    make, variant, coupled = FAMILY[name]
    tx = make(None, None)
    params = jnp.asarray([0.5, -1.0, 2.0, 0.0], jnp.float64)
    for scale in (1e-30, 1e30, 1e150):
        grads_list = gradient_stream(jnp.float64, scale)
        state = tx.init(params)
        for grads, want in zip(grads_list, reference_updates(variant, coupled, params, grads_list), strict=True):
            updates, state = tx.update(grads, state, params)
            assert all_finite((updates, state))
            np.testing.assert_allclose(np.asarray(updates), want, rtol=1e-12)


def test_gradients_beyond_the_float32_second_moment():
    # 1e30**2 does not fit float32. A float64 second moment holds it (bfloat16 parameters,
    # float64 arithmetic); a float32 one overflows to inf and, as documented, those
    # coordinates take no step -- finite parameters, never NaN.
    params = jnp.asarray([0.5, -1.0, 2.0, 0.0], jnp.bfloat16)
    grads = jnp.asarray([1e30, -1e30, 1.0, 0.0], jnp.bfloat16)
    wide = adamjax.adam(LR, mu_dtype=jnp.float32, nu_dtype=jnp.float64)
    state = wide.init(params)
    for want in reference_updates(ref.Variant(), 0.0, params, [grads] * 3):
        updates, state = wide.update(grads, state, params)
        assert all_finite((updates, state))
        np.testing.assert_allclose(np.asarray(updates, np.float64), want, rtol=RTOL[jnp.bfloat16])
    narrow = adamjax.adam(LR, mu_dtype=jnp.float32, nu_dtype=jnp.float32)
    updates, state = narrow.update(grads, narrow.init(params), params)
    np.testing.assert_array_equal(np.asarray(updates, np.float32), [0.0, 0.0, -LR * 1.0009765625, 0.0])
    assert all_finite(optax.apply_updates(params, updates))


# --- eps below the dtype's resolution, eps = 0 ----------------------------------------------------------


@pytest.mark.parametrize(
    "dtype", [jnp.float16, jnp.bfloat16, jnp.float32, jnp.float64], ids=lambda d: jnp.dtype(d).name
)
@pytest.mark.parametrize("eps", [0.0, 1e-50, 1e-12])
def test_eps_at_or_below_the_resolution_gives_no_nan(dtype, eps):
    # Zero gradients with eps = 0 (or an eps that rounds to 0) were 0/0; now the
    # direction is sign(m_hat) = 0 there, and sign(g) on the first step elsewhere.
    tx = adamjax.adam(LR, eps=eps)
    params = jnp.asarray([0.5, -1.0, 2.0, 0.0], dtype)
    state = tx.init(params)
    grads = jnp.asarray([0.0, 0.25, -3.0, 0.0], dtype)
    with np.errstate(invalid="ignore"):  # the reference's 0/0 where eps is 0
        expected = reference_updates(ref.Variant(eps=eps), 0.0, params, [grads, np.zeros(4)])
    for step_grads, want in zip([grads, jnp.zeros_like(grads)], expected, strict=True):
        updates, state = tx.update(step_grads, state, params)
        assert all_finite((updates, state))
        np.testing.assert_allclose(np.asarray(updates, np.float64), np.nan_to_num(want), rtol=RTOL[dtype])


@pytest.mark.parametrize(
    "make",
    [
        lambda: adamjax.scale_by_adam(eps=0.0),
        lambda: adamjax.scale_by_adam(eps=0.0, amsgrad=True),
        lambda: adamjax.scale_by_adam(eps=0.0, nesterov=True),
        lambda: adamjax.scale_by_adam(eps=0.0, power=3.0),
        lambda: adamjax.scale_by_adam(eps=0.0, bias_correction=False),
        lambda: adamjax.scale_by_adam(eps=0.0, power=math.inf),
        lambda: adamjax.scale_by_adam(eps=0.0, centered=True),
    ],
    ids=["adam", "amsgrad", "nesterov", "power3", "no_bias_correction", "adamax", "centered"],
)
def test_every_variant_with_eps_zero_and_zero_gradients_stays_at_zero(make):
    tx = make()
    params = jnp.zeros(3, jnp.float32)
    state = tx.init(params)
    for _ in range(3):
        updates, state = tx.update(jnp.zeros(3, jnp.float32), state, params)
        np.testing.assert_array_equal(updates, 0.0)
        assert all_finite(state)


def test_triple_adam_with_eps_zero_and_zero_gradients_stays_put():
    init, update, get_params = optimizers.adam(LR, eps=0.0)
    state = init(jnp.asarray([1.0, -1.0], jnp.float32))
    for i in range(3):
        state = update(i, jnp.zeros(2, jnp.float32), state)
    np.testing.assert_array_equal(get_params(state), [1.0, -1.0])


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16], ids=["float32", "bfloat16"])
def test_gradient_too_small_to_square_gives_the_sign_with_eps_zero(dtype):
    # 1e-30**2 underflows float32; the float64 reference says m_hat / sqrt(v_hat) = sign(g)
    # for a constant gradient, at every step. adamjax gives exactly that, not x/0 = inf.
    tx = adamjax.scale_by_adam(eps=0.0)
    g = jnp.asarray([1e-30, -1e-30, 3e-25], dtype)
    state = tx.init(g)
    for t in range(1, 4):
        updates, state = tx.update(g, state)
        want = ref.open_loop(np.stack([np.asarray(g, np.float64)] * t), ref.Variant(eps=0.0)).update[-1]
        np.testing.assert_allclose(np.asarray(updates, np.float64), want, rtol=RTOL[dtype])


# --- decays that round to 1, bias correction at the int32 limit -----------------------------------------


@pytest.mark.parametrize("b", [1 - 1e-8, 1 - 1e-9, 1 - 1e-12])
@pytest.mark.parametrize("which", ["b1", "b2"])
@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float32, jnp.float64], ids=lambda d: jnp.dtype(d).name)
def test_decay_that_rounds_to_one_keeps_bias_correction_right(b, which, dtype):
    # In float32, 1 - 1e-9 is 1.0, so 1 - b**t was 0 and the step 0/0; it is t * 1e-9.
    # For a constant gradient, bias correction is exact: m_hat = g, v_hat = g**2 at every
    # step, so the update is -lr * g / (|g| + eps) whatever b1 and b2 are.
    g = np.asarray([1.0, -2.0, 0.5])
    want = -LR * g / (np.abs(g) + 1e-8)
    tx = adamjax.adam(LR, **{which: b})
    params = jnp.zeros(3, dtype)
    state = tx.init(params)
    init, update, get_params = optimizers.adam(LR, **{which: b})
    triple_state = init(params)
    for i in range(3):
        updates, state = tx.update(jnp.asarray(g, dtype), state, params)
        assert all_finite((updates, state))
        np.testing.assert_allclose(np.asarray(updates, np.float64), want, rtol=max(RTOL[dtype], 1e-6))
        triple_state = update(i, jnp.asarray(g, dtype), triple_state)
    np.testing.assert_allclose(np.asarray(get_params(triple_state), np.float64), 3 * want, rtol=max(RTOL[dtype], 1e-6))


def test_triple_step_index_saturates_at_the_int32_maximum():
    init, update, get_params = optimizers.adam(LR)
    params = jnp.asarray([0.5, -1.0], jnp.float32)
    g = jnp.asarray([0.3, -2.0], jnp.float32)
    # At t = 2**31 - 1, 0.9**t and 0.999**t are 0 in float64: bias correction is 1.
    want = reference_updates(ref.Variant(), 0.0, params, [g], first_step=INT32_MAX)[0]
    for i in (INT32_MAX - 1, INT32_MAX, INT32_MAX + 1, 2**40):
        moved = np.asarray(get_params(update(i, g, init(params))), np.float64) - np.asarray(params, np.float64)
        np.testing.assert_allclose(moved, want, rtol=1e-5)
