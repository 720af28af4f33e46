"""Long runs: a million steps on seed 003's quadratic, ten thousand on seed 002's swinging signal.

Each run is one ``lax.scan``. The quadratic :math:`(w - 1)^2` (seed 003: ``w0 =
0``, gradient ``2w - 2``, Adam with ``lr = 0.01``) must stay finite at every step
and end at the optimum, for both APIs; the swinging gradient stream of seed 002
must give finite moments and steps for every variant, in float32 and bfloat16,
and float32 must track the NumPy float64 transcription over all 10,000 steps.
(tests/test_simulate.py checks the float64 run against seed 002's own loop.)
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

MILLION = 1_000_000
TAIL = 1_000  # the last steps, over which the largest distance to the optimum is kept


def quadratic_grad(w):
    return 2 * w - 2


def scan_transformation(tx, w0, num_steps):
    """``num_steps`` closed-loop steps; returns the final w, state, all-finite flag and the tail's max |w - 1|."""

    def body(carry, t):
        w, state, finite, tail = carry
        updates, state = tx.update(quadratic_grad(w), state, w)
        w = optax.apply_updates(w, updates)
        finite = finite & jnp.isfinite(w) & jnp.isfinite(updates)
        tail = jnp.where(t >= num_steps - TAIL, jnp.maximum(tail, jnp.abs(w - 1)), tail)
        return (w, state, finite, tail), None

    carry = (w0, tx.init(w0), jnp.asarray(True), jnp.zeros([], w0.dtype))
    return jax.jit(lambda c: jax.lax.scan(body, c, jnp.arange(num_steps))[0])(carry)


@pytest.mark.slow
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64], ids=["float32", "float64"])
def test_a_million_adam_steps_on_the_seed003_quadratic(dtype):
    w, state, finite, tail = scan_transformation(adamjax.adam(0.01), jnp.zeros([], dtype), MILLION)
    assert bool(finite)
    core = next(s for s in state if isinstance(s, CORE_STATES))
    assert int(core.count) == MILLION
    assert all(bool(jnp.all(jnp.isfinite(x))) for x in jax.tree.leaves(state))
    # At the optimum the gradient is 0 up to rounding: m and v decay to (almost) nothing
    # and the steps with them. Over the last 1000 steps w never leaves the optimum.
    resolution = float(jnp.finfo(dtype).eps)
    assert float(tail) <= 4 * resolution, float(tail)
    assert abs(float(w) - 1.0) <= 4 * resolution


@pytest.mark.slow
def test_a_million_triple_steps_on_the_seed003_quadratic():
    init, update, get_params = optimizers.adam(0.01)

    def body(carry, i):
        state, finite = carry
        state = update(i, quadratic_grad(get_params(state)), state)
        return (state, finite & jnp.isfinite(get_params(state))), None

    state = init(jnp.zeros([], jnp.float64))
    state, finite = jax.jit(lambda s: jax.lax.scan(body, (s, jnp.asarray(True)), jnp.arange(MILLION))[0])(state)
    assert bool(finite)
    assert abs(float(get_params(state)) - 1.0) <= 1e-12
    assert all(bool(jnp.all(jnp.isfinite(x))) for x in jax.tree.leaves(state))


def test_the_first_seed003_steps_of_the_long_run_match_the_reference():
    # The long run's loop is the seed's loop: its first 300 steps are the NumPy transcription's.
    tx = adamjax.adam(0.01)

    def body(carry, _):
        w, state = carry
        updates, state = tx.update(quadratic_grad(w), state, w)
        w = optax.apply_updates(w, updates)
        return (w, state), w

    w0 = jnp.zeros([], jnp.float64)
    _, path = jax.jit(lambda w0: jax.lax.scan(body, (w0, tx.init(w0)), length=300))(w0)
    expected = ref.closed_loop(lambda p: {"w": 2 * p["w"] - 2}, {"w": np.zeros(())}, ref.Variant(), 0.01, 300)
    np.testing.assert_allclose(np.asarray(path), [step["w"] for step in expected], rtol=1e-12, atol=1e-14)


VARIANTS = {
    "adam": (lambda: adamjax.scale_by_adam(), ref.Variant()),
    "amsgrad": (lambda: adamjax.scale_by_adam(amsgrad=True), ref.Variant(amsgrad=True)),
    "nadam": (lambda: adamjax.scale_by_adam(nesterov=True), ref.Variant(nesterov=True)),
    "adabelief": (
        lambda: adamjax.scale_by_adam(eps=1e-16, eps_root=1e-16, centered=True),
        ref.Variant(centered=True, eps=1e-16, eps_root=1e-16),
    ),
    "adamax": (
        lambda: adamjax.scale_by_adam(eps=0.0, eps_root=1e-8, power=math.inf),
        ref.Variant(power=math.inf, eps=0.0, eps_root=1e-8),
    ),
    "power4": (lambda: adamjax.scale_by_adam(power=4.0), ref.Variant(power=4.0)),
}
SWINGING_STEPS = 10_000


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_ten_thousand_steps_of_the_seed002_swinging_signal(name):
    make, variant = VARIANTS[name]
    grads = adamjax.signals.swinging(SWINGING_STEPS, seed=1, dtype=jnp.float32)
    trace = adamjax.simulate(make(), grads)
    for field in ("mu", "nu", "mu_hat", "nu_hat", "denom", "direction", "params"):
        values = np.asarray(getattr(trace, field))
        assert values.shape[0] == SWINGING_STEPS
        assert np.all(np.isfinite(values)), field
    want = ref.open_loop(np.asarray(grads, np.float64), variant)
    # Relative to the size of each series: the moments forget old rounding errors (b < 1).
    for field, expected in (("nu", want.nu), ("denom", want.denom), ("direction", want.update)):
        got = np.asarray(getattr(trace, field), np.float64)
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5 * np.max(np.abs(expected)), err_msg=field)


BFLOAT16_WITH_FLOAT32_STATE = {
    "adam": lambda: adamjax.adam(1e-3, mu_dtype=jnp.float32, nu_dtype=jnp.float32),
    "adabelief": lambda: adamjax.adabelief(1e-3, mu_dtype=jnp.float32, nu_dtype=jnp.float32),
}


@pytest.mark.parametrize("name", sorted(BFLOAT16_WITH_FLOAT32_STATE))
def test_ten_thousand_bfloat16_steps_with_float32_state(name):
    grads = adamjax.signals.swinging(SWINGING_STEPS, seed=1, dtype=jnp.bfloat16)
    trace = adamjax.simulate(BFLOAT16_WITH_FLOAT32_STATE[name](), grads)
    assert trace.params.dtype == jnp.dtype(jnp.bfloat16)
    for field in ("mu", "nu", "denom", "direction", "update", "params"):
        assert bool(jnp.all(jnp.isfinite(getattr(trace, field)))), field
    # The bfloat16 gradients are the reference's inputs; with float32 moments the only
    # bfloat16 rounding left is the update's own.
    want = -1e-3 * ref.open_loop(np.asarray(grads, np.float64), VARIANTS[name][1]).update
    got = np.asarray(trace.update, np.float64)
    np.testing.assert_allclose(got, want, rtol=1e-2, atol=1e-4 * np.max(np.abs(want)))
