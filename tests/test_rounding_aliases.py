"""``rounding="stochastic" | "kahan"`` on the aliases and ``optimizers.adam``: 16-bit weights that still learn.

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
from adamjax import optimizers
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


# ------------------------------------------------------------ the classic triple: optimizers.adam(rounding=...)


def train_triple(dtype, steps=1500, **kwargs):
    init, update, get_params = optimizers.adam(2e-3, **kwargs)

    @jax.jit
    def step(i, state):
        w = get_params(state)
        return update(i, jax.grad(loss)(w).astype(dtype), state)

    state = init(jnp.full((16,), 8.0, dtype))
    for i in range(steps):
        state = step(i, state)
    w = get_params(state)
    return float(loss(w)), w, state


def test_classic_triple_nearest_stalls_and_stochastic_and_kahan_track_float32():
    start = float(loss(jnp.full((16,), 8.0, jnp.float32)))
    fp32, _, _ = train_triple(jnp.float32)
    nearest, w, _ = train_triple(jnp.bfloat16)
    assert nearest == start and bool(jnp.all(w == 8.0))
    for rounding in ("stochastic", "kahan"):
        final, w, _ = train_triple(jnp.bfloat16, rounding=rounding, seed=0)
        assert w.dtype == jnp.dtype(jnp.bfloat16)
        assert final < 2.5 * fp32 and final < 0.02 * start, (rounding, final, fp32)


def test_classic_kahan_lands_on_kahans_weight_and_keeps_what_nearest_loses():
    """Each step is the Kahan sum of the float32 triple's own step, bit for bit.

    The float32 step is read exactly by stepping the float32 triple's moments
    from a zero weight (0 + delta is exact); the moments themselves are float32
    in both runs and must agree. Its gradients stay bfloat16 so that it takes
    the pure-JAX step, as the 16-bit run does (the kernel's float32 rounding
    differs in the last bit).
    """
    params = jnp.array([1.0, -3.0, 0.0, 8.0, -0.0078125, 250.0], jnp.bfloat16)
    grads = jnp.array([0.5, -1.0, 2.0, 1e-3, -0.1, 3.0], jnp.bfloat16)
    init, update, get_params = optimizers.adam(1e-3, rounding="kahan")
    init32, update32, get_params32 = optimizers.adam(1e-3)
    state, state32 = init(params), init32(jnp.zeros(6, jnp.float32))
    leaves = jax.tree.leaves(state)
    assert len(leaves) == 4 and leaves[3].dtype == jnp.dtype(jnp.bfloat16)  # (x, m, v, c): c in the weight's dtype
    want, compensation = params, jnp.zeros_like(params)
    exact = np.asarray(params, np.float64)
    step, step32 = jax.jit(update), jax.jit(update32)
    for i in range(200):
        state32 = step32(i, grads, state32)
        delta = get_params32(state32)
        _, m, v = jax.tree.leaves(state32)
        state32 = jax.tree.unflatten(jax.tree.structure(state32), [jnp.zeros_like(delta), m, v])
        want, compensation = kahan_add(want, delta, compensation)
        exact = exact + np.asarray(delta, np.float64)
        state = step(i, grads, state)
        x, m_k, v_k, c = jax.tree.leaves(state)
        np.testing.assert_array_equal(np.asarray(x, np.float32), np.asarray(want, np.float32))
        np.testing.assert_array_equal(np.asarray(c, np.float32), np.asarray(compensation, np.float32))
        np.testing.assert_array_equal(m_k, m)
        np.testing.assert_array_equal(v_k, v)
    # 200 steps of 1e-3 are below half an ulp of 250 and of 8: nearest never moves them, Kahan's x + c does.
    nearest_init, nearest_update, nearest_params = optimizers.adam(1e-3)
    nearest = nearest_init(params)
    for i in range(200):
        nearest = nearest_update(i, grads, nearest)
    stuck = np.asarray(nearest_params(nearest), np.float64)
    assert stuck[5] == 250.0 and stuck[3] == 8.0
    x, _, _, c = (np.asarray(a, np.float64) for a in jax.tree.leaves(state))
    assert np.abs(x + c - exact).max() < 0.05 * np.abs(stuck - exact).max()


def test_classic_stochastic_rounding_is_deterministic_given_the_seed_and_unbiased():
    params = jnp.full((4096,), 1.0, jnp.bfloat16)
    grads = jnp.ones((4096,), jnp.bfloat16)

    def once(seed, i=0):
        init, update, get_params = optimizers.adam(1e-3, rounding="stochastic", seed=seed)
        return np.asarray(get_params(update(i, grads, init(params))), np.float64)

    a, b, c, d = once(0), once(0), once(1), once(0, i=1)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c) and not np.array_equal(a, d)  # a new draw per seed and per step
    assert set(np.unique(a)) <= {1.0, 1.0 - 2.0**-8}
    assert abs(a.mean() - (1.0 - 1e-3)) < 3 * np.sqrt(2.0**-8 * 1e-3 / 4096)


def test_classic_rounding_leaves_float32_parameters_alone():
    params = {"w": jnp.linspace(-1.0, 1.0, 6, dtype=jnp.float32)}
    grads = {"w": jnp.array([0.5, -1.0, 2.0, 1e-3, -0.1, 3.0], jnp.float32)}
    plain_init, plain_update, _ = optimizers.adam(1e-2)
    want = jax.tree.leaves(plain_update(0, grads, plain_init(params)))
    for rounding in ("stochastic", "kahan"):
        init, update, _ = optimizers.adam(1e-2, rounding=rounding, seed=3)
        got = jax.tree.leaves(update(0, grads, init(params)))
        assert len(got) == 3  # (x, m, v): no buffer for a float32 weight
        for a, e in zip(got, want, strict=True):
            np.testing.assert_array_equal(a, e)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"rounding": "up"}, ValueError, r"`optimizers.adam\(rounding=\.\.\.\)` must be one of"),
        (
            {"rounding": "stochastic", "seed": -1},
            ValueError,
            r"`optimizers.adam\(seed=\.\.\.\)` must be a non-negative",
        ),
        ({"rounding": "stochastic", "seed": jnp.asarray(1)}, TypeError, r"must be a Python int, not an array"),
    ],
)
def test_classic_bad_rounding_settings_are_refused_at_construction(kwargs, error, match):
    with pytest.raises(error, match=match):
        optimizers.adam(1e-3, **kwargs)
