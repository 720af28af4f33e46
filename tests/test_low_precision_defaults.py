"""float16 and bfloat16 parameters get float32 moments unless a dtype is asked for.

A bfloat16 second moment stalls: with a constant gradient of 1 and
``b2 = 0.999`` its increment ``(1 - b2) * g**2 = 0.001`` falls below half a
unit in the last place of ``v`` once ``v`` passes 0.25, so every later step is
about 1.9 times the learning rate. The reference is the closed form of the
float64 averages, ``v_t = 1 - b2**t`` and ``m_t = 1 - b1**t``, for which
Adam's step is exactly the learning rate (up to ``eps``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import adamjax
from adamjax import optimizers

STEPS = 3000
LR = 1e-3
B1, B2, EPS = 0.9, 0.999, 1e-8
LOW = [jnp.float16, jnp.bfloat16]
IDS = ["float16", "bfloat16"]


def expected_step() -> float:
    """Adam's step after STEPS constant unit gradients, in float64: lr * m_hat / (sqrt(v_hat) + eps)."""
    m_hat = (1.0 - B1**STEPS) / (1.0 - B1**STEPS)
    v_hat = (1.0 - B2**STEPS) / (1.0 - B2**STEPS)
    return LR * m_hat / (np.sqrt(v_hat) + EPS)


def run_transformation(tx, dtype, *, fused: bool):
    params = jnp.zeros(8, dtype)
    grads = jnp.ones(8, dtype)
    state = tx.init(params)

    def body(carry, _):
        params, state = carry
        if fused:
            new, state = adamjax.apply_step(tx, grads, state, params)
            step = (new.astype(jnp.float32) - params.astype(jnp.float32))[0]
        else:
            updates, state = tx.update(grads, state, params)
            new = optax.apply_updates(params, updates)
            step = updates[0].astype(jnp.float32)
        return (new, state), step

    (_, state), steps = jax.jit(lambda c: jax.lax.scan(body, c, None, length=STEPS))((params, state))
    return state, np.asarray(steps)


@pytest.mark.parametrize("dtype", LOW, ids=IDS)
@pytest.mark.parametrize("name", ["adam", "adamw", "amsgrad", "nadam", "adabelief", "radam"])
def test_moments_default_to_float32_for_16_bit_parameters(name, dtype):
    tx = getattr(adamjax, name)(LR)
    state = tx.init({"w": jnp.zeros((3, 2), dtype)})
    moments = [leaf for leaf in jax.tree.leaves(state) if jnp.ndim(leaf) > 0]
    assert moments and all(leaf.dtype == jnp.dtype(jnp.float32) for leaf in moments), [m.dtype for m in moments]


@pytest.mark.parametrize("dtype", LOW, ids=IDS)
def test_scale_by_adam_and_the_triples_default_to_float32_moments(dtype):
    x0 = jnp.zeros(4, dtype)
    state = adamjax.scale_by_adam().init(x0)
    assert state.mu.dtype == state.nu.dtype == jnp.dtype(jnp.float32)
    for init in (optimizers.adam(LR)[0], optimizers.from_transformation(adamjax.adam(LR))[0]):
        names = sorted(leaf.dtype.name for leaf in jax.tree.leaves(init(x0)) if jnp.ndim(leaf) > 0)
        assert names == sorted([jnp.dtype(dtype).name, "float32", "float32"]), names


def test_asked_for_dtypes_are_kept_for_each_moment():
    params = jnp.zeros(4, jnp.bfloat16)
    state = adamjax.scale_by_adam(mu_dtype=jnp.bfloat16).init(params)
    assert state.mu.dtype == jnp.dtype(jnp.bfloat16) and state.nu.dtype == jnp.dtype(jnp.float32)
    state = adamjax.scale_by_adam(nu_dtype=jnp.bfloat16).init(params)
    assert state.mu.dtype == jnp.dtype(jnp.float32) and state.nu.dtype == jnp.dtype(jnp.bfloat16)
    # float32 and float64 parameters keep optax's rule: the parameters' dtype.
    assert adamjax.scale_by_adam().init(jnp.zeros(2, jnp.float64)).nu.dtype == jnp.dtype(jnp.float64)


@pytest.mark.parametrize("dtype", LOW, ids=IDS)
@pytest.mark.parametrize("fused", [False, True], ids=["update+apply_updates", "apply_step"])
def test_step_equals_the_learning_rate_after_3000_constant_gradients(dtype, fused):
    state, steps = run_transformation(adamjax.adam(LR), dtype, fused=fused)
    nu = np.asarray(state[0].nu, np.float64)
    np.testing.assert_allclose(
        nu, 1.0 - B2**STEPS, rtol=1e-4
    )  # the float64 average (to float32's accumulated rounding), not a stalled one
    if fused:
        # The applied step is a difference of 16-bit parameters near 3: read the moments' step instead.
        mu = np.asarray(state[0].mu, np.float64)
        step = LR * (mu / (1 - B1**STEPS)) / (np.sqrt(nu / (1 - B2**STEPS)) + EPS)
        np.testing.assert_allclose(step, expected_step(), rtol=1e-3)
    else:
        np.testing.assert_allclose(-steps[-1], expected_step(), rtol=1e-3)


@pytest.mark.parametrize("dtype", LOW, ids=IDS)
def test_the_classic_triple_steps_by_the_learning_rate(dtype):
    init, update, _ = optimizers.adam(LR)
    grads = jnp.ones(8, dtype)

    def body(state, i):
        return update(i, grads, state), None

    state, _ = jax.jit(lambda s: jax.lax.scan(body, s, jnp.arange(STEPS)))(init(jnp.zeros(8, dtype)))
    _, m, v = (np.asarray(leaf, np.float64) for leaf in jax.tree.leaves(state))
    np.testing.assert_allclose(v, 1.0 - B2**STEPS, rtol=1e-4)
    step = LR * (m / (1 - B1**STEPS)) / (np.sqrt(v / (1 - B2**STEPS)) + EPS)
    np.testing.assert_allclose(step, expected_step(), rtol=1e-3)


def test_bfloat16_moments_when_asked_for_cost_what_the_docs_say():
    """The figure in docs/robustness.md: bfloat16 moments make the step about 1.9x the learning rate here."""
    tx = adamjax.adam(LR, mu_dtype=jnp.bfloat16, nu_dtype=jnp.bfloat16)
    state, steps = run_transformation(tx, jnp.bfloat16, fused=False)
    assert state[0].nu.dtype == jnp.dtype(jnp.bfloat16)
    stalled = float(state[0].nu[0])
    assert stalled == pytest.approx(0.25, abs=0.01)  # against 1 - 0.999**3000 = 0.950 in float64
    ratio = -steps[-1] / expected_step()
    assert 1.85 < ratio < 1.97, ratio


@pytest.mark.native
def test_bfloat16_parameters_with_float32_moments_take_the_kernel():
    status = adamjax.native_status(adamjax.adam(LR), jnp.zeros(8, jnp.bfloat16))
    assert status.startswith("fused"), status
