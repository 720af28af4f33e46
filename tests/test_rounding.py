"""Stochastic rounding, Kahan summation and exact landing through optax.apply_updates.

References are float64 NumPy (means, sums, neighbours computed from bit
patterns with ml_dtypes) and a float32 Adam run built from
``optax.scale_by_adam``.
"""

from __future__ import annotations

import doctest

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import optax
import pytest

from adamjax import _rounding
from adamjax._rounding import kahan_add, landing_update, rounded_update, stochastic_round

LOW = [jnp.bfloat16, jnp.float16]
SIGNIFICAND = {jnp.dtype(jnp.bfloat16): 8, jnp.dtype(jnp.float16): 11}


def _neighbours(x: np.ndarray, dtype) -> tuple[np.ndarray, np.ndarray]:
    """The largest ``dtype`` value <= x and the smallest >= x, from bit patterns (float64)."""
    dtype = np.dtype(dtype)
    nearest = x.astype(dtype)
    bits = nearest.view(np.uint16).astype(np.int64)
    positive = nearest.astype(np.float64) >= 0
    up = np.where(positive, bits + 1, bits - 1)  # one step away from -inf
    down = np.where(positive, bits - 1, bits + 1)
    up = np.where(nearest.astype(np.float64) == 0, 1, up)  # above zero: the smallest positive subnormal
    down = np.where(nearest.astype(np.float64) == 0, 0x8001, down)
    up_value = up.astype(np.uint16).view(dtype).astype(np.float64)
    down_value = down.astype(np.uint16).view(dtype).astype(np.float64)
    n = nearest.astype(np.float64)
    below = np.where(n > x, down_value, n)
    above = np.where(n < x, up_value, n)
    return below, above


def _sample_values(n: int, dtype) -> np.ndarray:
    rng = np.random.default_rng(11)
    magnitudes = 2.0 ** rng.uniform(-10, 10, n) if dtype == jnp.float16 else 2.0 ** rng.uniform(-60, 60, n)
    x = (magnitudes * rng.choice([-1, 1], n)).astype(np.float32)
    x[:4] = np.array([1.0 + 2**-9, -(1.0 + 2**-9), 2.0 - 2**-10, 0.75], np.float32)  # incl. just below a binade
    return x


@pytest.mark.parametrize("dtype", LOW)
def test_stochastic_rounding_is_unbiased_against_float64(dtype):
    x = _sample_values(64, dtype)
    draws = 20_000
    keys = jax.random.split(jax.random.key(0), draws)
    rounded = jax.jit(jax.vmap(lambda k: stochastic_round(jnp.asarray(x), dtype, k)))(keys)
    values = np.asarray(rounded.astype(jnp.float32)).astype(np.float64)
    below, above = _neighbours(x.astype(np.float64), dtype)
    assert np.all((values == below) | (values == above)), "always one of the two bracketing values"
    p_up = np.where(above > below, (x - below) / np.where(above > below, above - below, 1), 0)
    sigma = (above - below) * np.sqrt(p_up * (1 - p_up) / draws)
    error = np.abs(values.mean(axis=0) - x.astype(np.float64))
    assert np.all(error <= 5 * sigma + 1e-9 * np.abs(x)), np.max(error / np.maximum(sigma, 1e-300))
    # Round-to-nearest is biased on the same values (so the test could fail).
    nearest = x.astype(ml_dtypes.bfloat16 if dtype == jnp.bfloat16 else np.float16).astype(np.float64)
    assert np.mean(np.abs(nearest - x) > 5 * sigma) > 0.5


@pytest.mark.parametrize("dtype", LOW)
def test_stochastic_rounding_is_deterministic_given_the_key_and_keeps_exact_and_special_values(dtype):
    x = jnp.asarray(_sample_values(1000, dtype))
    a = stochastic_round(x, dtype, jax.random.key(3))
    b = jax.jit(lambda v: stochastic_round(v, dtype, jax.random.key(3)))(x)
    c = stochastic_round(x, dtype, jax.random.key(4))
    assert a.dtype == jnp.dtype(dtype)
    np.testing.assert_array_equal(np.asarray(a.astype(jnp.float32)), np.asarray(b.astype(jnp.float32)))
    assert np.any(np.asarray(a != c))
    exact = x.astype(dtype).astype(jnp.float32)
    np.testing.assert_array_equal(
        np.asarray(stochastic_round(exact, dtype, jax.random.key(5))), np.asarray(exact.astype(dtype))
    )
    special = jnp.array([jnp.nan, jnp.inf, -jnp.inf, 0.0, -0.0], jnp.float32)
    out = np.asarray(stochastic_round(special, dtype, jax.random.key(6)).astype(jnp.float32))
    assert np.isnan(out[0]) and out[1] == np.inf and out[2] == -np.inf and np.all(out[3:] == 0)


def test_float16_overflow_rounds_to_infinity_like_nearest():
    x = jnp.array([1e5, -7e4, 65504.0], jnp.float32)
    out = np.asarray(stochastic_round(x, jnp.float16, jax.random.key(0)).astype(jnp.float32))
    np.testing.assert_array_equal(out, [np.inf, -np.inf, 65504.0])


def test_kahan_sum_tracks_the_float64_sum_where_nearest_stalls():
    rng = np.random.default_rng(2)
    steps = rng.uniform(0.0, 4e-4, (3000, 8)).astype(np.float32)  # below half a bfloat16 ulp at 1 (2^-8)
    start = np.array([1.0, 1.5, -1.25, 3.0, 0.75, -0.5, 6.0, 1e-3], np.float32)

    def run(carry, step):
        kahan, comp, nearest = carry
        kahan, comp = kahan_add(kahan, step, comp)
        nearest = (nearest.astype(jnp.float32) + step).astype(jnp.bfloat16)
        return (kahan, comp, nearest), None

    p0 = jnp.asarray(start).astype(jnp.bfloat16)
    (kahan, comp, nearest), _ = jax.lax.scan(run, (p0, jnp.zeros(8, jnp.bfloat16), p0), jnp.asarray(steps))
    exact = np.asarray(p0.astype(jnp.float32)).astype(np.float64) + steps.astype(np.float64).sum(axis=0)
    ulp = np.abs(np.spacing(exact.astype(ml_dtypes.bfloat16)).astype(np.float64))
    # The stored weight is the exact sum rounded (within half an ulp); weight + compensation is far closer.
    total = np.asarray(kahan.astype(jnp.float32)).astype(np.float64) + np.asarray(comp.astype(jnp.float32))
    assert np.all(np.abs(np.asarray(kahan.astype(jnp.float32)) - exact) <= 0.5 * ulp)
    assert np.all(np.abs(total - exact) <= 0.1 * ulp)
    stalled = np.asarray(nearest.astype(jnp.float32)) == np.asarray(p0.astype(jnp.float32))
    assert stalled[:7].all(), "round-to-nearest never moves these weights"


def _landing_cases(dtype) -> tuple[np.ndarray, np.ndarray]:
    """Every finite 16-bit weight in range, against 24 random and 16 structured targets."""
    with np.errstate(all="ignore"):  # the bit patterns include NaN and infinities, dropped below
        return _landing_pairs(np.dtype(dtype))


def _landing_pairs(dtype: np.dtype) -> tuple[np.ndarray, np.ndarray]:
    every = np.arange(2**16, dtype=np.uint16).view(dtype)
    value = every.astype(np.float64)
    low = 1e-30 if dtype == np.dtype(ml_dtypes.bfloat16) else 0.0
    in_range = np.isfinite(value) & (np.abs(value) >= low) & (np.abs(value) <= 1e38)
    params = every[in_range]
    rng = np.random.default_rng(4)
    pool = every[in_range | (value == 0)]
    random = pool[rng.integers(0, pool.size, (params.size, 24))]
    bits = params.view(np.uint16).astype(np.int64)[:, None]
    neighbours = np.concatenate([bits + d for d in (-2, -1, 1, 2)], axis=1).astype(np.uint16).view(dtype)
    p = params.astype(np.float64)[:, None]
    scaled = np.concatenate([p * s for s in (-1.0, 0.5, 2.0, -0.5, 0.999, 1.001, 2.0**-16, -(2.0**-12))], axis=1)
    structured = np.concatenate([neighbours, scaled.astype(dtype), np.zeros((params.size, 2), dtype)], axis=1)
    structured[:, -1] = -structured[:, -1]  # negative zero
    targets = np.concatenate([random, structured], axis=1)
    t = targets.astype(np.float64)
    keep = np.isfinite(t) & (((np.abs(t) >= low) & (np.abs(t) <= 1e38)) | (t == 0))
    params = np.broadcast_to(params[:, None], targets.shape)
    return params[keep], targets[keep]


@pytest.mark.parametrize("dtype", LOW)
def test_landing_update_makes_apply_updates_land_exactly(dtype):
    params, targets = _landing_cases(dtype)
    u = jax.jit(landing_update)(jnp.asarray(params), jnp.asarray(targets))
    assert u.dtype == jnp.float32
    with jax.numpy_dtype_promotion("standard"):
        landed = np.asarray(jax.jit(optax.apply_updates)(jnp.asarray(params), u).astype(jnp.float32))
    p, t = params.astype(np.float64), targets.astype(np.float64)
    bound = 2.0 ** (SIGNIFICAND[jnp.dtype(dtype)] - 24)
    promised = (t == 0) | (np.abs(t) >= bound * np.abs(p))
    assert promised.sum() > 1_000_000 and np.sum(promised & (np.sign(t) == -np.sign(p)) & (t != 0)) > 100_000
    np.testing.assert_array_equal(landed[promised], t[promised])
    # Shrinks by more than the bound cannot land exactly; they land within 2^-24 |param|.
    assert np.all(np.abs(landed[~promised] - t[~promised]) <= 2.0**-24 * np.abs(p[~promised]))


def test_rounded_update_modes_through_apply_updates():
    p = jnp.ones(1000, jnp.bfloat16)
    step = jnp.full(1000, 2.0**-9, jnp.float32)  # a quarter of the gap above 1
    with jax.numpy_dtype_promotion("standard"):
        u, comp = rounded_update(p, step, rounding="nearest")
        assert comp is None and np.all(np.asarray(optax.apply_updates(p, u)) == 1)
        u, _ = rounded_update(p, step, rounding="stochastic", key=jax.random.key(0))
        moved = np.asarray(optax.apply_updates(p, u).astype(jnp.float32))
        assert set(moved.tolist()) == {1.0, 1.0078125} and 0.2 < np.mean(moved > 1) < 0.3
        u, comp = rounded_update(p, step, rounding="kahan", compensation=jnp.zeros(1000, jnp.bfloat16))
        np.testing.assert_array_equal(np.asarray(optax.apply_updates(p, u)), np.asarray(p))
        np.testing.assert_array_equal(np.asarray(comp.astype(jnp.float32)), 2.0**-9)
    with pytest.raises(ValueError, match=r"`rounded_update\(rounding=...\)` must be one of .*; got 'up'"):
        rounded_update(p, step, rounding="up")
    with pytest.raises(ValueError, match=r"needs `key=`"):
        rounded_update(p, step, rounding="stochastic")
    with pytest.raises(ValueError, match=r"needs `compensation=`"):
        rounded_update(p, step, rounding="kahan")
    with pytest.raises(TypeError, match=r"`rounded_update\(param=...\)` must be bfloat16 or float16; got float32"):
        rounded_update(p.astype(jnp.float32), step, rounding="nearest")
    with pytest.raises(
        TypeError, match=r"`landing_update\(target=...\)` must have param's dtype bfloat16; got float16"
    ):
        landing_update(p, p.astype(jnp.float16))


# ---------------------------------------------------------------- a bfloat16 least-squares problem


def _least_squares():
    rng = np.random.default_rng(7)
    features = rng.standard_normal((128, 32)).astype(np.float32)
    w_star = rng.uniform(1.1, 1.9, 32).astype(np.float32)
    targets = features @ w_star
    w0 = np.full(32, 1.5, np.float32)  # in [1, 2): a bfloat16 ulp of 2^-7, half an ulp 0.0039
    return jnp.asarray(features), jnp.asarray(targets), jnp.asarray(w0), w_star


def _loss(w, features, targets):
    residual = features @ w.astype(jnp.float32) - targets
    return 0.5 * jnp.mean(residual * residual)


LEARNING_RATE = 1e-3  # Adam's steps are about the learning rate: below half an ulp (0.0039)
STEPS = 3000


def _train(rounding: str | None):
    features, targets, w0, _ = _least_squares()
    direction = optax.scale_by_adam()
    params = w0 if rounding is None else w0.astype(jnp.bfloat16)

    def step(carry, index):
        params, adam_state, compensation = carry
        grads = jax.grad(_loss)(params.astype(jnp.float32), features, targets)
        moves, adam_state = direction.update(grads, adam_state)
        moves = -LEARNING_RATE * moves
        if rounding is None:
            return (params + moves, adam_state, compensation), None
        key = jax.random.fold_in(jax.random.key(42), index)
        u, new_comp = rounded_update(params, moves, rounding=rounding, key=key, compensation=compensation)
        params = optax.apply_updates(params, u)
        return (params, adam_state, compensation if new_comp is None else new_comp), None

    carry = (params, direction.init(jnp.zeros(32, jnp.float32)), jnp.zeros(32, jnp.bfloat16))
    with jax.numpy_dtype_promotion("standard"):  # optax's bias correction mixes float and int32
        (params, _, _), _ = jax.jit(lambda c: jax.lax.scan(step, c, jnp.arange(STEPS)))(carry)
    return np.asarray(params.astype(jnp.float32)), float(_loss(params, features, targets))


@pytest.fixture(scope="module")
def float32_run():
    return _train(None)


def test_nearest_rounding_stalls_on_bfloat16(float32_run):
    params, loss = _train("nearest")
    _, _, w0, _ = _least_squares()
    np.testing.assert_array_equal(params, np.asarray(w0))
    assert loss > 100 * float32_run[1]


@pytest.mark.parametrize("rounding", ["stochastic", "kahan"])
def test_stochastic_and_kahan_track_the_float32_run(float32_run, rounding):
    reference_params, reference_loss = float32_run
    features, targets, w0, w_star = _least_squares()
    initial_loss = float(_loss(w0, features, targets))
    params, loss = _train(rounding)
    assert reference_loss < 1e-3 * initial_loss, "the float32 run converges (the problem is not trivial)"
    # Within two bfloat16 ulps (2^-6 in [1, 2)) of the float32 run, parameter by parameter ...
    np.testing.assert_allclose(params, reference_params, atol=2 * 2.0**-7)
    # ... and a final loss no worse than that of the float32 solution perturbed by one ulp.
    ulp_loss = float(_loss(jnp.asarray(reference_params + 2.0**-7), features, targets))
    assert loss <= max(reference_loss, ulp_loss), (loss, reference_loss, ulp_loss)


def test_docstring_examples_run():
    failures, tried = doctest.testmod(_rounding, optionflags=doctest.ELLIPSIS)
    assert tried >= 10 and failures == 0
