"""``rounding="stochastic" | "kahan"`` on the aliases: 16-bit weights that still learn.

A bfloat16 least-squares fit whose Adam steps are below half a unit in the
last place of the weights (weights near 8, steps of 2e-3 against an ulp of
2^-4): round-to-nearest never moves them, stochastic rounding and Kahan
summation track the float32 run. The update each alias returns lands
``optax.apply_updates`` exactly on the weight the rounding chose, checked
against the rounding primitives applied to the plain alias's update.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import adamjax
from adamjax._rounding import RoundingState, kahan_add

A = jax.random.normal(jax.random.key(0), (128, 16), jnp.float32)
W_TRUE = jax.random.normal(jax.random.key(1), (16,), jnp.float32) + 8.0
Y = A @ W_TRUE


@pytest.fixture(autouse=True)
def standard_promotion():
    """optax.apply_updates adds a float32 update to bfloat16 weights: JAX's standard promotion."""
    with jax.numpy_dtype_promotion("standard"):
        yield


def loss(w):
    return jnp.mean((A @ w.astype(jnp.float32) - Y) ** 2)


def train(tx, dtype, steps=1500):
    w = jnp.full((16,), 8.0, dtype)
    state = tx.init(w)

    @jax.jit
    def step(w, state):
        g = jax.grad(loss)(w).astype(dtype)
        updates, state = tx.update(g, state, w)
        return optax.apply_updates(w, updates), state

    for _ in range(steps):
        w, state = step(w, state)
    return float(loss(w)), w


def test_nearest_stalls_and_stochastic_and_kahan_track_float32():
    start = float(loss(jnp.full((16,), 8.0, jnp.float32)))
    fp32, _ = train(adamjax.adam(2e-3), jnp.float32)
    nearest, w = train(adamjax.adam(2e-3), jnp.bfloat16)
    assert nearest == start and bool(jnp.all(w == 8.0))  # every step rounds back to the same weight
    for rounding in ("stochastic", "kahan"):
        final, w = train(adamjax.adam(2e-3, rounding=rounding, seed=0), jnp.bfloat16)
        assert w.dtype == jnp.dtype(jnp.bfloat16)
        # measured: float32 0.085, stochastic 0.14, kahan 0.10, from 12.5
        assert final < 2.5 * fp32 and final < 0.02 * start, (rounding, final, fp32)


@pytest.mark.parametrize("name", ["adam", "adamw", "nadam", "radam", "lamb"])
def test_kahan_update_lands_on_kahans_weight(name):
    params = jnp.array([1.0, -3.0, 0.0, 8.0, -0.0078125, 250.0], jnp.bfloat16)
    grads = jnp.array([0.5, -1.0, 2.0, 1e-3, -0.1, 3.0], jnp.bfloat16)
    plain = getattr(adamjax, name)(0.01)
    rounded = getattr(adamjax, name)(0.01, rounding="kahan")
    ps, rs = plain.init(params), rounded.init(params)
    p, compensation = params, jnp.zeros_like(params)
    q = params
    for _ in range(5):
        u, ps = plain.update(grads, ps, p)
        want, compensation = kahan_add(p, u.astype(jnp.float32), compensation)
        v, rs = rounded.update(grads, rs, q)
        q = optax.apply_updates(q, v)
        np.testing.assert_array_equal(np.asarray(q, np.float32), np.asarray(want, np.float32))
        p = want
    assert isinstance(rs[-1], RoundingState)


def test_stochastic_rounding_is_deterministic_given_the_seed_and_unbiased():
    params = jnp.full((4096,), 1.0, jnp.bfloat16)
    grads = jnp.ones((4096,), jnp.bfloat16)

    def once(seed):
        tx = adamjax.adam(1e-3, rounding="stochastic", seed=seed)
        u, _ = tx.update(grads, tx.init(params), params)
        return np.asarray(optax.apply_updates(params, u), np.float64)

    a, b, c = once(0), once(0), once(1)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    # Every weight is one of the two bfloat16 neighbours of 1 - 1e-3, and their mean is 1 - 1e-3.
    assert set(np.unique(a)) <= {1.0, 1.0 - 2.0**-8}
    assert abs(a.mean() - (1.0 - 1e-3)) < 3 * np.sqrt(2.0**-8 * 1e-3 / 4096)


def test_other_dtypes_pass_unchanged_and_mixed_trees_work():
    params = {"w": jnp.ones((3,), jnp.bfloat16), "b": jnp.ones((2,), jnp.float32)}
    grads = {"w": jnp.ones((3,), jnp.bfloat16), "b": jnp.full((2,), 0.5, jnp.float32)}
    for rounding in ("stochastic", "kahan"):
        tx = adamjax.adamw(1e-3, rounding=rounding)
        u, _ = jax.jit(tx.update)(grads, tx.init(params), params)
        want, _ = adamjax.adamw(1e-3).update(grads, adamjax.adamw(1e-3).init(params), params)
        np.testing.assert_array_equal(u["b"], want["b"])
        assert u["w"].dtype == jnp.dtype(jnp.float32)


def test_the_fused_step_says_why_and_equals_the_two_call_path():
    tx = adamjax.adam(1e-3, rounding="kahan")
    params = jnp.full((8,), 2.0, jnp.bfloat16)
    assert 'rounding="kahan" of 16-bit weights has no native kernel' in adamjax.native_status(tx, params)
    grads = jnp.ones((8,), jnp.bfloat16)
    new, _ = adamjax.apply_step(tx, grads, tx.init(params), params)
    u, _ = tx.update(grads, tx.init(params), params)
    np.testing.assert_array_equal(np.asarray(new, np.float32), np.asarray(optax.apply_updates(params, u), np.float32))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"rounding": "up"}, r"rounding=\.\.\.\)` must be one of \('nearest', 'stochastic', 'kahan'\); got 'up'"),
        ({"rounding": "stochastic", "seed": -1}, r"seed=\.\.\.\)` must be a non-negative Python int or None; got -1"),
        ({"rounding": "stochastic", "seed": 1.5}, r"must be a non-negative Python int or None; got 1.5"),
    ],
)
def test_bad_rounding_settings_are_refused_at_construction(kwargs, match):
    with pytest.raises(ValueError, match=match):
        adamjax.adamw(1e-3, **kwargs)


def test_update_without_params_says_what_is_needed():
    tx = adamjax.adam(1e-3, rounding="kahan")
    params = jnp.ones((2,), jnp.bfloat16)
    with pytest.raises(ValueError, match="needs the parameters"):
        tx.update(params, tx.init(params))
