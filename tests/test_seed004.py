"""Seed 004: shawwn's gist "Reformulating Adam optimizer to gain an intuition".

The gist (https://gist.github.com/shawwn/97811b6819a444ce92187532743a920e)
writes Adam three times against ``jax.example_libraries.optimizers``. Below it
is re-indented and otherwise unchanged (comments trimmed) except for the import
line, which is the one-line migration to ``adamjax.optimizers``, and one added
line after each revision keeping a handle on it, since the gist rebinds
``adam``. Every revision must give the same numbers as
``adamjax.optimizers.adam``.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from adamjax import optimizers
from adamjax.optimizers import OptimizerResult, make_schedule, optimizer

# --- the gist ----------------------------------------------------------------


def lerp(a, b, t):
    return (b - a) * t + a


def bias(i, x, beta):
    return 1 - jnp.asarray(beta, x.dtype) ** (i + 1)


@optimizer
def adam(step_size, b1=0.9, b2=0.999, eps=1e-8) -> OptimizerResult:
    """Construct optimizer triple for Adam.

    Args:
      step_size: positive scalar, or a callable representing a step size schedule
        that maps the iteration index to a positive scalar.
      b1: optional, a positive scalar value for beta_1, the exponential decay rate
        for the first moment estimates (default 0.9).
      b2: optional, a positive scalar value for beta_2, the exponential decay rate
        for the second moment estimates (default 0.999).
      eps: optional, a positive scalar value for epsilon, a small constant for
        numerical stability (default 1e-8).

    Returns:
      An (init_fun, update_fun, get_params) triple.
    """
    step_size = make_schedule(step_size)

    def init(x0):
        m0 = jnp.zeros_like(x0)
        M0 = jnp.zeros_like(x0)
        return x0, m0, M0

    def update(i, g, state):
        # Think of the gradient like a force (in the Newtonian physics sense).
        # It accelerates each weight in the direction of the gradient.
        #
        # Lowercase letters represent values, uppercase letters squared values.
        # x is the position (the current weight value), g the gradient, G the
        # gradient squared; m and M are moving averages of g and G.
        x, m, M = state
        G = jnp.square(g)
        # Accelerate each weight by pushing each weight's velocity along its gradient vector.
        m = lerp(g, m, b1)  # Push the velocity (m) toward its gradient (i.e. first moment estimate).
        M = lerp(G, M, b2)  # Push the squared velocity (M) toward its squared gradient (i.e. second moment estimate).
        m_ = m / bias(i, m, b1)  # Bias correction, since the moving averages start at zero.
        M_ = M / bias(i, M, b2)
        # Velocity is a change in position (dx) over a change in time (dt).
        dx = m_ / (jnp.sqrt(M_) + eps)  # A change in position (dx).
        dt = -step_size(i)  # A change in time (dt).
        # Since it's an offset, we can just add it to the old position to get the new position.
        x = x + dx * dt
        # We're done; return the new state.
        return x, m, M

    def get_params(state):
        x, _, _ = state
        return x

    return init, update, get_params


adam_commented = adam  # added: the gist rebinds `adam` below


# A second revision, with fewer comments but more descriptive variable names:
@optimizer
def adam(step_size, b1=0.9, b2=0.999, eps=1e-8) -> OptimizerResult:
    """Construct optimizer triple for Adam.

    Args:
      step_size: positive scalar, or a callable representing a step size schedule
        that maps the iteration index to a positive scalar.
      b1: optional, a positive scalar value for beta_1, the exponential decay rate
        for the first moment estimates (default 0.9).
      b2: optional, a positive scalar value for beta_2, the exponential decay rate
        for the second moment estimates (default 0.999).
      eps: optional, a positive scalar value for epsilon, a small constant for
        numerical stability (default 1e-8).

    Returns:
      An (init_fun, update_fun, get_params) triple.
    """
    step_size = make_schedule(step_size)

    def init(x0):
        m0 = jnp.zeros_like(x0)
        M0 = jnp.zeros_like(x0)
        return x0, m0, M0

    def update(i, g, state):
        x, m, M = state
        G = jnp.square(g)
        # Calculate acceleration.
        m = lerp(g, m, b1)  # First moment estimate.
        M = lerp(G, M, b2)  # Second moment estimate.
        m_ = m / bias(i, m, b1)
        M_ = M / bias(i, M, b2)
        # m_ is velocity (a vector)
        # M_ is squared speed (a directionless quantity)
        # sqrt(M_) is average speed over time
        velocity = m_
        speed = jnp.sqrt(M_)
        # Divide velocity by speed to get a normalized direction.
        normal = velocity / (speed + eps)
        # Push the weights in the direction of the (normalized) gradient.
        scale = -step_size(i)
        offset = normal * scale
        x = x + offset
        # Return the new state.
        return x, m, M

    def get_params(state):
        x, _, _ = state
        return x

    return init, update, get_params


adam_descriptive = adam  # added: the gist rebinds `adam` below


# The original Adam code, for comparison. Identical to the above two versions; it's what I started with.
@optimizer
def adam(step_size, b1=0.9, b2=0.999, eps=1e-8) -> OptimizerResult:
    """Construct optimizer triple for Adam.

    Args:
      step_size: positive scalar, or a callable representing a step size schedule
        that maps the iteration index to a positive scalar.
      b1: optional, a positive scalar value for beta_1, the exponential decay rate
        for the first moment estimates (default 0.9).
      b2: optional, a positive scalar value for beta_2, the exponential decay rate
        for the second moment estimates (default 0.999).
      eps: optional, a positive scalar value for epsilon, a small constant for
        numerical stability (default 1e-8).

    Returns:
      An (init_fun, update_fun, get_params) triple.
    """
    step_size = make_schedule(step_size)

    def init(x0):
        m0 = jnp.zeros_like(x0)
        v0 = jnp.zeros_like(x0)
        return x0, m0, v0

    def update(i, g, state):
        x, m, v = state
        m = (1 - b1) * g + b1 * m  # First moment estimate.
        v = (1 - b2) * jnp.square(g) + b2 * v  # Second moment estimate.
        mhat = m / (1 - jnp.asarray(b1, m.dtype) ** (i + 1))  # Bias correction.
        vhat = v / (1 - jnp.asarray(b2, m.dtype) ** (i + 1))
        x = x - step_size(i) * mhat / (jnp.sqrt(vhat) + eps)
        return x, m, v

    def get_params(state):
        x, _, _ = state
        return x

    return init, update, get_params


adam_original = adam  # added

# --- the tests ---------------------------------------------------------------

REVISIONS = {"commented": adam_commented, "descriptive": adam_descriptive, "original": adam_original}
TOLERANCE = {jnp.float32: 1e-6, jnp.float64: 1e-12}
DTYPES = pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64], ids=["float32", "float64"])


def _params(dtype):
    rng = np.random.default_rng(4)
    return {
        "w": jnp.asarray(rng.normal(size=(4, 3)), dtype),
        "b": jnp.asarray(rng.normal(size=3), dtype),
        "scale": jnp.asarray(1.5, dtype),
    }


def _gradient_stream(params, steps):
    """The same noisy gradients for every optimizer (a drifting mean plus noise)."""
    rng = np.random.default_rng(40)

    def sample(i):
        return jax.tree.map(lambda p: jnp.asarray(0.3 * np.sin(0.1 * i) + rng.normal(size=p.shape), p.dtype), params)

    return [sample(i) for i in range(steps)]


def _least_squares_grad(dtype):
    """The gradient of a small least-squares loss on the pytree of :func:`_params`."""
    rng = np.random.default_rng(5)
    inputs = jnp.asarray(rng.normal(size=(16, 4)), dtype)
    targets = jnp.asarray(rng.normal(size=(16, 3)), dtype)

    def loss(p):
        return jnp.mean((p["scale"] * (inputs @ p["w"]) + p["b"] - targets) ** 2)

    return jax.jit(jax.grad(loss))


def _run(triple, params, grads):
    """Runs ``len(grads)`` updates; ``grads`` is a list, or a function of the parameters."""
    init, update, get_params = triple
    state = init(params)
    for i in range(100 if callable(grads) else len(grads)):
        g = grads(get_params(state)) if callable(grads) else grads[i]
        state = update(i, g, state)
    return get_params(state)


def _assert_close(actual, expected, rtol):
    for a, e in zip(jax.tree.leaves(actual), jax.tree.leaves(expected), strict=True):
        assert a.dtype == e.dtype
        np.testing.assert_allclose(np.asarray(a), np.asarray(e), rtol=rtol, atol=rtol * float(jnp.max(jnp.abs(e))))


@DTYPES
@pytest.mark.parametrize("revision", list(REVISIONS))
def test_gist_matches_adamjax_adam_on_the_same_gradients(revision, dtype):
    params = _params(dtype)
    grads = _gradient_stream(params, 100)
    expected = _run(optimizers.adam(0.01), params, grads)
    actual = _run(REVISIONS[revision](0.01), params, grads)
    # The run moved the parameters, so agreeing is not agreeing on the start.
    assert float(jnp.max(jnp.abs(expected["w"] - params["w"]))) > 0.1
    _assert_close(actual, expected, TOLERANCE[dtype])


@pytest.mark.parametrize("revision", list(REVISIONS))
def test_gist_matches_adamjax_adam_when_training(revision):
    # Closed loop: the gradients depend on the parameters, so rounding
    # differences feed back. In float32 the gist's `lerp` form drifts ~5e-6 from
    # the textbook form over 100 steps (as jax.example_libraries' own eager and
    # jitted runs drift ~3e-6 apart), hence float64 here.
    params = _params(jnp.float64)
    grad_fn = _least_squares_grad(jnp.float64)
    expected = _run(optimizers.adam(0.01), params, grad_fn)
    actual = _run(REVISIONS[revision](0.01), params, grad_fn)
    assert float(jnp.max(jnp.abs(expected["w"] - params["w"]))) > 0.1
    _assert_close(actual, expected, 1e-12)


def test_gist_with_a_schedule_and_custom_betas():
    params = _params(jnp.float64)
    grads = _gradient_stream(params, 50)
    schedule = optimizers.exponential_decay(0.05, 20, 0.5)
    expected = _run(optimizers.adam(schedule, b1=0.8, b2=0.99, eps=1e-6), params, grads)
    for revision in REVISIONS.values():
        _assert_close(_run(revision(schedule, b1=0.8, b2=0.99, eps=1e-6), params, grads), expected, 1e-12)


def test_gist_keeps_its_name_and_docstring():
    assert adam_commented.__name__ == "adam"
    assert "Construct optimizer triple for Adam." in adam_descriptive.__doc__
