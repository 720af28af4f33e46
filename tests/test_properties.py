"""Properties of the Adam core over random hyperparameters, shapes and dtypes (hypothesis).

* agreement with the NumPy float64 transcription (tests/numpy_reference.py) for
  every variant switch;
* the first step of bias-corrected Adam with ``eps = 0`` is ``-lr * sign(g)``;
* with ``eps = eps_root = 0`` the update does not change when the gradients are
  rescaled (bit for bit when the scale is a power of two);
* negating the gradients negates the update, bit for bit;
* a jitted step equals an un-jitted one, up to the rounding of a fused
  multiply-add.

Examples are few and derandomized (the same ones every run), so the suite's
time and outcome are fixed; shapes come from a small set so that eager
dispatch compiles each primitive once.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import numpy_reference as ref
import pytest
from helpers import scale_by_adam_for
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import adamjax
from adamjax import optimizers

SETTINGS = settings(
    max_examples=30,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
SHAPES = [(), (3,), (2, 3)]
ALL_DTYPES = [jnp.float16, jnp.bfloat16, jnp.float32, jnp.float64]


def gradients(seed, shape, steps, dtype, *, zeros=False):
    """Random signs and magnitudes 1e-3 .. 1e3 (squares fit every dtype's compute type); optionally some zeros."""
    rng = np.random.default_rng(seed)
    size = (steps, *shape)
    values = rng.choice([-1.0, 1.0], size) * 10.0 ** rng.uniform(-3, 3, size)
    if zeros:
        values = np.where(rng.random(size) < 0.25, 0.0, values)
    return [jnp.asarray(v, dtype) for v in values]


@st.composite
def variants(draw):
    power = draw(st.sampled_from([2.0, 3.0, math.inf]))
    centered = draw(st.booleans())
    eps = draw(st.sampled_from([0.0, 1e-8, 1e-3]))
    if centered and eps == 0.0:
        eps = 1e-8  # with b1 = 0 the centered moment is exactly 0; then only eps keeps the reference finite
    return ref.Variant(
        b1=draw(st.floats(0.0, 0.99)),
        b2=draw(st.floats(0.0, 0.9999)),
        eps=eps,
        eps_root=draw(st.sampled_from([0.0, 1e-8])),
        power=power,
        centered=centered,
        amsgrad=draw(st.booleans()),
        nesterov=draw(st.booleans()),
        bias_correction=draw(st.booleans()),
    )


def run(tx, grads_list, update=None):
    update = tx.update if update is None else update
    state = tx.init(grads_list[0])
    out = []
    for g in grads_list:
        u, state = update(g, state)
        out.append(u)
    return out


COMMON = {
    "variant": variants(),
    "shape": st.sampled_from(SHAPES),
    "steps": st.integers(1, 4),
    "seed": st.integers(0, 2**32 - 1),
}


@SETTINGS
@given(**COMMON, dtype=st.sampled_from([jnp.float32, jnp.float64]))
def test_agrees_with_the_numpy_reference(variant, shape, steps, seed, dtype):
    grads_list = gradients(seed, shape, steps, dtype)
    got = run(scale_by_adam_for(variant), grads_list)
    moments = ref.zeros_like(np.zeros(shape))
    for t, (g, u) in enumerate(zip(grads_list, got, strict=True), start=1):
        step = ref.step(np.asarray(g, np.float64), moments, t, variant)
        moments = ref.Moments(step.mu, step.nu, step.nu_max)
        assert u.dtype == jnp.dtype(dtype) and u.shape == shape
        # float32: a few roundings of each term, relative to the size of the update.
        rtol = 1e-10 if dtype == jnp.float64 else 2e-4
        scale = max(1.0, float(np.max(np.abs(step.update), initial=0.0)))
        np.testing.assert_allclose(np.asarray(u, np.float64), step.update, rtol=rtol, atol=rtol * scale)


@SETTINGS
@given(
    learning_rate=st.floats(1e-4, 1.0),
    b1=st.floats(0.0, 0.99),
    b2=st.floats(0.0, 0.9999),
    power=st.sampled_from([2.0, 3.0, math.inf]),
    amsgrad=st.booleans(),
    shape=st.sampled_from(SHAPES),
    dtype=st.sampled_from(ALL_DTYPES),
    seed=st.integers(0, 2**32 - 1),
)
def test_first_bias_corrected_step_with_eps_zero_is_lr_times_sign(
    learning_rate, b1, b2, power, amsgrad, shape, dtype, seed
):
    # m_hat = g and v_hat = |g|^p, so the step is -lr * g / |g| -- also where g**2 underflows
    # (the core's sign rule) and 0 where g = 0.
    tx = adamjax.adam(learning_rate, b1, b2, eps=0.0, power=power, amsgrad=amsgrad)
    (g,) = gradients(seed, shape, 1, dtype, zeros=True)
    updates, _ = tx.update(g, tx.init(g), g)
    want = -learning_rate * np.sign(np.asarray(g, np.float64))
    # One rounding of lr * (1 +- 2 float32 ulps) to the dtype.
    rtol = 4 * max(float(jnp.finfo(dtype).eps), float(jnp.finfo(jnp.float32).eps))
    np.testing.assert_allclose(np.asarray(updates, np.float64), want, rtol=rtol, atol=0)


@settings(SETTINGS, max_examples=10)  # each triple compiles its own update
@given(
    learning_rate=st.floats(1e-4, 1.0),
    b1=st.floats(0.0, 0.99),
    b2=st.floats(0.0, 0.9999),
    dtype=st.sampled_from([jnp.float32, jnp.float64]),
    seed=st.integers(0, 2**32 - 1),
)
def test_first_triple_step_with_eps_zero_is_lr_times_sign(learning_rate, b1, b2, dtype, seed):
    init, update, get_params = optimizers.adam(learning_rate, b1, b2, eps=0.0)
    (g,) = gradients(seed, (3,), 1, dtype, zeros=True)
    moved = np.asarray(get_params(update(0, g, init(jnp.zeros(3, dtype)))), np.float64)
    np.testing.assert_allclose(moved, -learning_rate * np.sign(np.asarray(g, np.float64)), rtol=1e-6, atol=0)


@SETTINGS
@given(
    **COMMON,
    dtype=st.sampled_from([jnp.float32, jnp.float64]),
    exponent=st.integers(-20, 20),
    factor=st.floats(1e-3, 1e3),
)
def test_update_does_not_change_when_the_gradients_are_rescaled(variant, shape, steps, seed, dtype, exponent, factor):
    variant = dataclasses.replace(variant, eps=0.0, eps_root=0.0)
    grads_list = gradients(seed, shape, steps, dtype)
    base = run(scale_by_adam_for(variant), grads_list)
    doubled = run(scale_by_adam_for(variant), [g * jnp.asarray(2.0**exponent, dtype) for g in grads_list])
    scaled = run(scale_by_adam_for(variant), [g * jnp.asarray(factor, dtype) for g in grads_list])
    rtol = 1e-10 if dtype == jnp.float64 else 2e-4
    for u, u2, us in zip(base, doubled, scaled, strict=True):
        scale = max(1.0, float(jnp.max(jnp.abs(u), initial=0.0)))
        if variant.power in (2.0, math.inf):
            # Scaling by a power of two is exact, and so is every operation on it.
            np.testing.assert_array_equal(np.asarray(u2), np.asarray(u))
        else:
            np.testing.assert_allclose(np.asarray(u2), np.asarray(u), rtol=rtol, atol=rtol * scale)
        np.testing.assert_allclose(np.asarray(us), np.asarray(u), rtol=rtol, atol=rtol * scale)


@SETTINGS
@given(**COMMON, dtype=st.sampled_from(ALL_DTYPES), alias=st.booleans())
def test_negated_gradients_give_the_negated_update(variant, shape, steps, seed, dtype, alias):
    tx = adamjax.adam(1e-2, variant.b1, variant.b2, variant.eps) if alias else scale_by_adam_for(variant)
    grads_list = gradients(seed, shape, steps, dtype, zeros=True)
    forward = run(tx, grads_list, lambda g, s: tx.update(g, s, g))
    backward = run(tx, [-g for g in grads_list], lambda g, s: tx.update(g, s, -g))
    for u, v in zip(forward, backward, strict=True):
        np.testing.assert_array_equal(np.asarray(-v, np.float64), np.asarray(u, np.float64))


@settings(SETTINGS, max_examples=15)
@given(**COMMON, dtype=st.sampled_from(ALL_DTYPES))
def test_a_jitted_step_equals_an_unjitted_one(variant, shape, steps, seed, dtype):
    tx = scale_by_adam_for(variant)
    grads_list = gradients(seed, shape, steps, dtype)
    eager = run(tx, grads_list)
    jitted = run(tx, grads_list, jax.jit(tx.update))
    # XLA may fuse a * b + c into one rounding under jit: a few ulps of the update's scale.
    rtol = {jnp.float64: 1e-13, jnp.float32: 1e-5}.get(dtype, 2 * float(jnp.finfo(dtype).eps))
    for u, v in zip(eager, jitted, strict=True):
        assert u.dtype == v.dtype
        # (A float16 update can overflow to inf -- a direction of 1e5 with a tiny centered
        # moment -- in both runs alike; the scale is taken over the finite entries.)
        magnitudes = np.abs(np.asarray(u, np.float64))
        scale = max(1.0, float(np.max(magnitudes[np.isfinite(magnitudes)], initial=0.0)))
        np.testing.assert_allclose(np.asarray(v, np.float64), np.asarray(u, np.float64), rtol=rtol, atol=rtol * scale)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64], ids=["float32", "float64"])
def test_a_jitted_adam_training_loop_equals_the_eager_one(dtype):
    # The same check on the alias and on whole parameter trees (a fixed example).
    tx = adamjax.adamw(1e-2, weight_decay=1e-2)
    params = {"w": jnp.asarray([0.5, -1.0, 2.0], dtype), "b": jnp.asarray(0.25, dtype)}
    grads_list = [{k: v * (i + 1) - 0.3 for k, v in params.items()} for i in range(5)]

    def step(params, state, grads):
        updates, state = tx.update(grads, state, params)
        return jax.tree.map(lambda p, u: p + u, params, updates), state

    eager, jitted = (params, tx.init(params)), (params, tx.init(params))
    jit_step = jax.jit(step)
    for grads in grads_list:
        eager = step(*eager, grads)
        jitted = jit_step(*jitted, grads)
    rtol = 1e-6 if dtype == jnp.float32 else 1e-14
    for a, b in zip(jax.tree.leaves(eager), jax.tree.leaves(jitted), strict=True):
        np.testing.assert_allclose(np.asarray(b, np.float64), np.asarray(a, np.float64), rtol=rtol, atol=rtol)
