"""adamjax against its optax namesakes, step by step.

Each optimizer runs closed loop (the parameters it produces feed the next
gradient) for 60 steps on a pytree with a vector, a matrix and a scalar, next to
the optax optimizer of the same name. optax's own arithmetic mixes Python floats
with int32 counts, which strict dtype promotion (tests/conftest.py) rejects, so
the optax side is traced under standard promotion; adamjax runs strict.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import adamjax

NUM_STEPS = 60
TOLERANCE = {jnp.float64: 1e-10, jnp.float32: 1e-5}

TARGET = {
    "vector": np.array([1.0, -2.0, 0.5, 0.0]),
    "matrix": np.array([[0.3, -0.7, 1.1], [1.2, 0.0, -0.4], [0.6, 0.9, -1.3]]),
    "scalar": np.array(-1.0),
}
CURVATURE = {"vector": np.array([1.0, 3.0, 0.3, 2.0]), "matrix": np.full((3, 3), 1.5), "scalar": np.array(0.7)}
INIT = {
    "vector": np.array([0.2, 0.1, -0.3, 0.4]),
    "matrix": np.array([[1.0, 0.0, 0.2], [-0.5, 0.25, 0.0], [0.1, -0.1, 0.3]]),
    "scalar": np.array(0.5),
}


def loss(params):
    """A smooth, mildly non-quadratic objective, so the gradients do not just decay geometrically."""
    total = 0.0
    for key, value in params.items():
        dtype = value.dtype
        deviation = value - jnp.asarray(TARGET[key], dtype)
        total = total + jnp.sum(0.5 * jnp.asarray(CURVATURE[key], dtype) * deviation**2 + 0.1 * jnp.sin(3 * value))
    return total


def trajectory(tx: optax.GradientTransformation, dtype, num_steps: int = NUM_STEPS, promotion: str = "strict"):
    """The parameters after each of ``num_steps`` closed-loop steps, traced under ``promotion``.

    One jitted step called in a loop: it compiles about twice as fast as a ``lax.scan``.
    """

    @jax.jit
    def step(params, state):
        updates, state = tx.update(jax.grad(loss)(params), state, params)
        return optax.apply_updates(params, updates), state

    with jax.numpy_dtype_promotion(promotion):
        params = {key: jnp.asarray(value, dtype) for key, value in INIT.items()}
        state = tx.init(params)
        path = []
        for _ in range(num_steps):
            params, state = step(params, state)
            path.append(params)
    return jax.tree.map(lambda *xs: np.stack(xs), *path)


def strict_schedule(schedule):
    """Wraps an optax schedule so it can be called under strict promotion (its arithmetic mixes dtypes)."""

    def evaluate(count):
        with jax.numpy_dtype_promotion("standard"):
            return schedule(count)

    return evaluate


SCHEDULE = optax.warmup_cosine_decay_schedule(
    init_value=0.0, peak_value=3e-2, warmup_steps=10, decay_steps=50, end_value=1e-3
)
DECAY_MASK = {"vector": True, "matrix": True, "scalar": False}


def matrices_only(params):
    return jax.tree.map(lambda p: p.ndim == 2, params)


CASES = {
    "adam": (lambda: adamjax.adam(2e-2), lambda: optax.adam(2e-2)),
    "adam_nesterov": (lambda: adamjax.adam(2e-2, nesterov=True), lambda: optax.adam(2e-2, nesterov=True)),
    "adam_schedule": (lambda: adamjax.adam(strict_schedule(SCHEDULE)), lambda: optax.adam(SCHEDULE)),
    "adamw_mask_pytree": (
        lambda: adamjax.adamw(2e-2, weight_decay=0.1, mask=DECAY_MASK),
        lambda: optax.adamw(2e-2, weight_decay=0.1, mask=DECAY_MASK),
    ),
    "adamw_mask_callable": (
        lambda: adamjax.adamw(strict_schedule(SCHEDULE), weight_decay=0.1, mask=matrices_only),
        lambda: optax.adamw(SCHEDULE, weight_decay=0.1, mask=matrices_only),
    ),
    "nadam": (lambda: adamjax.nadam(2e-2), lambda: optax.nadam(2e-2)),
    "adabelief": (lambda: adamjax.adabelief(2e-2), lambda: optax.adabelief(2e-2)),
    "adabelief_nesterov": (
        lambda: adamjax.adabelief(2e-2, nesterov=True, eps_root=1e-8),
        lambda: optax.adabelief(2e-2, nesterov=True, eps_root=1e-8),
    ),
    "adamax": (lambda: adamjax.adamax(2e-2, b2=0.99, eps=1e-3), lambda: optax.adamax(2e-2, b2=0.99, eps=1e-3)),
}


@pytest.mark.parametrize("dtype", [jnp.float64, jnp.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("name", sorted(CASES))
def test_closed_loop_matches_optax(name, dtype):
    make_adamjax, make_optax = CASES[name]
    ours = trajectory(make_adamjax(), dtype)
    theirs = trajectory(make_optax(), dtype, promotion="standard")
    tolerance = TOLERANCE[dtype]
    for key in INIT:
        assert ours[key].dtype == jnp.dtype(dtype)
        np.testing.assert_allclose(ours[key], theirs[key], rtol=tolerance, atol=tolerance, err_msg=key)
    # The problem moves the parameters well away from where they started.
    assert float(jnp.max(jnp.abs(ours["vector"][-1] - jnp.asarray(INIT["vector"], dtype)))) > 0.5


def test_the_run_is_long_enough_to_separate_close_optimizers():
    # nadam and adam agree to first order; 60 steps must tell them apart by far
    # more than the parity tolerance, or the table above could pass for the wrong optimizer.
    adam = trajectory(adamjax.adam(2e-2), jnp.float64)
    nadam = trajectory(adamjax.nadam(2e-2), jnp.float64)
    assert float(jnp.max(jnp.abs(adam["vector"] - nadam["vector"]))) > 1e-4


def gradient_stream(dtype, num_steps: int = 50):
    """Open-loop gradients: noise around a drifting mean, with a magnitude that shrinks and grows."""
    rng = np.random.default_rng(0)
    scale = np.exp(np.sin(np.linspace(0.0, 3.0 * np.pi, num_steps)))
    return {
        "vector": jnp.asarray(scale[:, None] * rng.normal(0.3, 1.0, (num_steps, 4)), dtype),
        "matrix": jnp.asarray(scale[:, None, None] * rng.normal(-0.2, 1.0, (num_steps, 2, 3)), dtype),
        "scalar": jnp.asarray(scale * rng.normal(0.1, 1.0, num_steps), dtype),
    }


def open_loop(tx: optax.GradientTransformation, grads, promotion: str = "strict"):
    """The updates and states of ``tx`` fed ``grads[t]`` at step ``t``, stacked."""
    num_steps = len(grads["scalar"])
    with jax.numpy_dtype_promotion(promotion):
        step = jax.jit(tx.update)
        state = tx.init(jax.tree.map(lambda g: g[0], grads))
        outputs = []
        for t in range(num_steps):
            updates, state = step(jax.tree.map(lambda g, t=t: g[t], grads), state)
            outputs.append((updates, state))
    return jax.tree.map(lambda *xs: np.stack(xs), *outputs)


SCALE_BY_ADAM_CASES = {
    "default": {},
    "b1_b2_eps_root": {"b1": 0.5, "b2": 0.95, "eps": 1e-3, "eps_root": 1e-4},
    "eps_root_large": {"eps_root": 0.5, "eps": 0.0},
    "nesterov_eps_root": {"nesterov": True, "eps_root": 1e-3, "b1": 0.8},
}


@pytest.mark.parametrize("dtype", [jnp.float64, jnp.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("name", sorted(SCALE_BY_ADAM_CASES))
def test_scale_by_adam_matches_optax(name, dtype):
    kwargs = SCALE_BY_ADAM_CASES[name]
    grads = gradient_stream(dtype)
    ours, our_states = open_loop(adamjax.scale_by_adam(**kwargs), grads)
    theirs, their_states = open_loop(optax.scale_by_adam(**kwargs), grads, promotion="standard")
    tolerance = TOLERANCE[dtype]
    for key in grads:
        assert ours[key].dtype == jnp.dtype(dtype)
        np.testing.assert_allclose(ours[key], theirs[key], rtol=tolerance, atol=tolerance, err_msg=key)
        np.testing.assert_allclose(our_states.mu[key], their_states.mu[key], rtol=tolerance, atol=tolerance)
        np.testing.assert_allclose(our_states.nu[key], their_states.nu[key], rtol=tolerance, atol=tolerance)
    np.testing.assert_array_equal(our_states.count, their_states.count)


def test_scale_by_adam_matches_optax_with_bfloat16_first_moment():
    # optax multiplies the stored bf16 moment by b1 in bf16 before widening it;
    # adamjax widens first. Both store mu in bf16 and bias-correct the unrounded
    # mu, so the updates agree to bf16 precision, not beyond.
    grads = gradient_stream(jnp.float32)
    ours, our_states = open_loop(adamjax.scale_by_adam(mu_dtype=jnp.bfloat16), grads)
    theirs, their_states = open_loop(optax.scale_by_adam(mu_dtype=jnp.bfloat16), grads, promotion="standard")
    exact, _ = open_loop(adamjax.scale_by_adam(), grads)
    for key in grads:
        assert our_states.mu[key].dtype == their_states.mu[key].dtype == jnp.dtype(jnp.bfloat16)
        assert our_states.nu[key].dtype == their_states.nu[key].dtype == jnp.dtype(jnp.float32)
        assert ours[key].dtype == jnp.dtype(jnp.float32)
        np.testing.assert_allclose(ours[key], theirs[key], rtol=2e-2, atol=2e-2, err_msg=key)
        # ... and the bf16 rounding is visible, so the comparison above is not vacuous.
        assert float(jnp.max(jnp.abs(ours[key] - exact[key]))) > 1e-5
