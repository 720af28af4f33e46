"""The newer members against optax's own implementations, in float64, closed loop.

RAdam = ``optax.radam``, ADOPT = ``optax.contrib.adopt`` (clipping included),
AdEMAMix = ``optax.contrib.ademamix`` (with alpha and beta3 schedules), LAMB =
``optax.lamb``; each run is 80 steps of a loss whose gradient depends on the
parameters, so a difference in one step moves every later one. States must
have optax's tree. Members without an optax implementation (cautious
masking, StableAdamW, Adam-mini, PyTorch's NAdam and RAdam) are checked here
for what optax-free facts pin down; tests/test_family_against_references.py
compares every member to the NumPy transcriptions of the papers and to the
recorded torch runs.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import optax.contrib
import pytest

import adamjax

STEPS = 80
TARGET = {"w": np.array([1.0, -2.0, 0.5]), "m": np.array([[0.3, -0.7], [1.2, 0.0]]), "s": np.array(-1.0)}
INIT = {"w": np.array([0.2, 0.1, -0.3]), "m": np.array([[1.0, 0.0], [-0.5, 0.25]]), "s": np.array(0.5)}


def grad_fn(params):
    """A non-quadratic loss, so the gradient changes direction and size as the parameters move."""
    return {k: 2 * (p - TARGET[k]) + 0.5 * jnp.sin(7 * p) for k, p in params.items()}


def trajectory(tx, steps=STEPS):
    @jax.jit  # one compiled step, called `steps` times
    def step(params, state):
        with jax.numpy_dtype_promotion("standard"):  # optax's own code mixes int32 counts and floats
            updates, state = tx.update(grad_fn(params), state, params)
        return optax.apply_updates(params, updates), state

    params = {k: jnp.asarray(v, jnp.float64) for k, v in INIT.items()}
    state = tx.init(params)
    path = []
    for _ in range(steps):
        params, state = step(params, state)
        path.append(params)
    return path, state


ALPHA = optax.linear_schedule(0.0, 8.0, 50)
B3 = optax.linear_schedule(0.9, 0.999, 40)

PAIRS = {
    "radam": (lambda: adamjax.radam(0.05), lambda: optax.radam(0.05)),
    "radam_nesterov": (lambda: adamjax.radam(0.05, nesterov=True), lambda: optax.radam(0.05, nesterov=True)),
    "radam_threshold": (lambda: adamjax.radam(0.05, threshold=8.0), lambda: optax.radam(0.05, threshold=8.0)),
    "adopt": (lambda: adamjax.adopt(0.05), lambda: optax.contrib.adopt(0.05)),
    "adopt_b2": (lambda: adamjax.adopt(0.05, b2=0.5), lambda: optax.contrib.adopt(0.05, b2=0.5)),
    "adopt_nesterov_unclipped": (
        lambda: adamjax.adopt(0.05, nesterov=True, use_clipping=False),
        lambda: optax.contrib.adopt(0.05, nesterov=True, use_clipping=False),
    ),
    "adopt_clip_fn": (
        lambda: adamjax.adopt(0.05, clip_value_fn=lambda c: 0.1 * (c + 1)),
        lambda: optax.contrib.adopt(0.05, clip_value_fn=lambda c: 0.1 * (c + 1)),
    ),
    "ademamix": (lambda: adamjax.ademamix(0.05), lambda: optax.contrib.ademamix(0.05)),
    "ademamix_schedules": (
        lambda: adamjax.ademamix(0.05, b3=B3, alpha=ALPHA, weight_decay=0.01),
        lambda: optax.contrib.ademamix(0.05, b3=B3, alpha=ALPHA, weight_decay=0.01),
    ),
    "lamb": (lambda: adamjax.lamb(0.05), lambda: optax.lamb(0.05)),
    "lamb_decay_mask": (
        lambda: adamjax.lamb(0.05, weight_decay=0.1, mask={"w": True, "m": False, "s": True}),
        lambda: optax.lamb(0.05, weight_decay=0.1, mask={"w": True, "m": False, "s": True}),
    ),
    "nadam_default_is_optax": (lambda: adamjax.nadam(0.05), lambda: optax.nadam(0.05)),
}


@pytest.mark.parametrize("name", sorted(PAIRS))
def test_matches_optax_in_float64_closed_loop(name):
    ours, theirs = PAIRS[name]
    got, got_state = trajectory(ours())
    want, want_state = trajectory(theirs())
    assert jax.tree.structure(got_state) == jax.tree.structure(want_state)
    for a, b in zip(got, want, strict=True):
        for key in a:
            np.testing.assert_allclose(np.asarray(a[key]), np.asarray(b[key]), rtol=1e-10, atol=1e-12)
    # ... and the run went somewhere (the comparison is not of two motionless trajectories).
    assert max(float(jnp.max(jnp.abs(got[-1][k] - INIT[k]))) for k in INIT) > 0.05


def test_radam_takes_plain_momentum_steps_until_rho_reaches_the_threshold():
    b2 = 0.999
    rho_inf = 2 / (1 - b2) - 1
    rho = [rho_inf - 2 * t * b2**t / (1 - b2**t) for t in range(1, 8)]
    first_rectified = next(t for t, r in enumerate(rho, start=1) if r >= 5.0)
    tx = adamjax.scale_by_radam()
    state = tx.init(jnp.zeros(1))
    for t in range(1, first_rectified + 1):
        updates, state = tx.update(jnp.array([2.0]), state)
        if t < first_rectified:
            assert float(updates[0]) == pytest.approx(2.0, rel=1e-12)  # a constant gradient: m_hat = g
    r = math.sqrt((rho[t - 1] - 4) * (rho[t - 1] - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho[t - 1]))
    assert float(updates[0]) == pytest.approx(r * 2.0 / (2.0 + 1e-8), rel=1e-12)


def test_radam_torch_eps_placement_is_eps_before_bias_correction():
    eps = 1e-3
    optax_form = adamjax.scale_by_radam(eps=eps)
    torch_form = adamjax.scale_by_radam(eps=eps, eps_placement="torch")
    s1, s2 = optax_form.init(jnp.zeros(1)), torch_form.init(jnp.zeros(1))
    for t in range(1, 8):
        g = jnp.array([0.5 + 0.1 * t])
        u1, s1 = optax_form.update(g, s1)
        u2, s2 = torch_form.update(g, s2)
    nu, bc2 = float(s2.nu[0]), 1 - 0.999**7
    # u = r m_hat / d: the two forms differ only in d.
    ratio = (math.sqrt(nu / bc2) + eps) / ((math.sqrt(nu) + eps) / math.sqrt(bc2))
    assert float(u2[0]) / float(u1[0]) == pytest.approx(ratio, rel=1e-12)
    assert ratio != pytest.approx(1.0, rel=1e-6)


def test_nadam_momentum_decay_state_keeps_the_running_product():
    tx = adamjax.nadam(0.1, momentum_decay=4e-3)
    state = tx.init(jnp.zeros(2))
    for _ in range(5):
        _, state = tx.update(jnp.array([1.0, -1.0]), state)
    core = state[0]
    assert type(core).__name__ == "NadamState"
    expected = math.prod(0.9 * (1 - 0.5 * 0.96 ** (t * 4e-3)) for t in range(1, 6))
    assert float(core.mu_product) == pytest.approx(expected, rel=1e-14)


def test_cautious_zeroes_disagreeing_entries_and_rescales_the_rest():
    tx = adamjax.adam(1.0, cautious=True)
    plain = adamjax.adam(1.0)
    params = jnp.zeros(4)
    s, p = tx.init(params), plain.init(params)
    first = jnp.array([1.0, 1.0, -1.0, 2.0])
    for _ in range(5):  # the momentum builds up along `first`
        _, s = tx.update(first, s, params)
        _, p = plain.update(first, p, params)
    second = jnp.array([-1.0, 1.0, -1.0, -3.0])  # entries 0 and 3 flip sign; their momentum does not
    got, _ = tx.update(second, s, params)
    want, _ = plain.update(second, p, params)
    want = np.asarray(want)
    # Adam's update is -lr * u; the mask keeps u where u * g > 0.
    agree = (-want) * np.asarray(second) > 0
    scale = 4 / (agree.sum() + 1)
    np.testing.assert_allclose(np.asarray(got), np.where(agree, want * scale, 0.0), rtol=1e-12)
    assert 0 < agree.sum() < 4


def test_stable_adamw_clips_a_step_whose_gradient_jumps_and_leaves_steady_ones():
    steady, plain = adamjax.stable_adamw(0.1, weight_decay=0.0), adamjax.adamw(0.1, weight_decay=0.0)
    params = jnp.zeros(3)
    s, p = steady.init(params), plain.init(params)
    for _ in range(5):  # a constant gradient: g^2 / v_hat = 1, RMS = 1, no clipping
        g = jnp.array([1.0, -2.0, 0.5])
        a, s = steady.update(g, s, params)
        b, p = plain.update(g, p, params)
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-12)
    jump = jnp.array([100.0, -2.0, 0.5])
    a, s = steady.update(jump, s, params)
    b, p = plain.update(jump, p, params)
    nu_hat = np.asarray(s[0].nu) / (1 - 0.999**6)
    rms = math.sqrt(np.mean(np.asarray(jump) ** 2 / np.maximum(nu_hat, 1e-16)))
    assert rms > 1
    np.testing.assert_allclose(np.asarray(a), np.asarray(b) / rms, rtol=1e-12)


def test_adam_mini_keeps_one_second_moment_per_row_and_matches_adam_on_scalars():
    params = {"w": jnp.ones((4, 3)), "b": jnp.ones(3), "s": jnp.ones(())}
    tx = adamjax.adam_mini(0.1, weight_decay=0.0)
    state = tx.init(params)
    assert jax.tree.map(jnp.shape, state[0].nu) == {"w": (4, 1), "b": (1,), "s": ()}
    grads = {"w": jnp.arange(12.0).reshape(4, 3), "b": jnp.array([1.0, 2.0, 3.0]), "s": jnp.array(2.0)}
    updates, state = tx.update(grads, state, params)
    np.testing.assert_allclose(
        np.asarray(state[0].nu["w"])[:, 0], 0.001 * np.mean(np.arange(12.0).reshape(4, 3) ** 2, axis=1)
    )
    # A scalar is its own block: Adam's first step, -lr * sign(g).
    assert float(updates["s"]) == pytest.approx(-0.1 * 2 / (2 + 1e-8), rel=1e-12)
    columns = adamjax.adam_mini(0.1, block_axes=lambda p: (0,) if jnp.ndim(p) == 2 else tuple(range(jnp.ndim(p))))
    assert columns.init(params)[0].nu["w"].shape == (1, 3)


BAD = [
    (lambda: adamjax.radam(0.1, eps_placement="pytorch"), ValueError, r"`radam\(eps_placement=...\)`"),
    (lambda: adamjax.radam(0.1, threshold="5"), TypeError, r"`radam\(threshold=...\)`"),
    (lambda: adamjax.radam(0.1, b2=1.0), ValueError, r"`radam\(b2=...\)`"),
    (lambda: adamjax.nadam(0.1, momentum_decay=-1.0), ValueError, r"`nadam\(momentum_decay=...\)`"),
    (lambda: adamjax.adopt(0.1, clip_value_fn=3.0), TypeError, r"`adopt\(clip_value_fn=...\)`"),
    (lambda: adamjax.adopt(0.1, use_clipping=1), TypeError, r"`adopt\(use_clipping=...\)`"),
    (lambda: adamjax.ademamix(0.1, b3=1.5), ValueError, r"`ademamix\(b3=...\)`"),
    (lambda: adamjax.ademamix(0.1, alpha=-1.0), ValueError, r"`ademamix\(alpha=...\)`"),
    (lambda: adamjax.lamb(0.1, eps=-1.0), ValueError, r"`lamb\(eps=...\)`"),
    (lambda: adamjax.stable_adamw(0.1, b1=2.0), ValueError, r"`stable_adamw\(b1=...\)`"),
    (lambda: adamjax.adam_mini(0.1, block_axes=3), TypeError, r"`adam_mini\(block_axes=...\)`"),
    (lambda: adamjax.adamw(0.1, cautious="yes"), TypeError, r"`adamw\(cautious=...\)`"),
]


@pytest.mark.parametrize("make, error, message", BAD)
def test_bad_hyperparameters_fail_at_construction(make, error, message):
    with pytest.raises(error, match=message):
        make()


NEW = {
    "radam": lambda: adamjax.radam(0.01),
    "nadam_momentum_decay": lambda: adamjax.nadam(0.01, momentum_decay=4e-3),
    "adopt": lambda: adamjax.adopt(0.01),
    "ademamix": lambda: adamjax.ademamix(0.01),
    "lamb": lambda: adamjax.lamb(0.01),
    "stable_adamw": lambda: adamjax.stable_adamw(0.01),
    "adam_mini": lambda: adamjax.adam_mini(0.01),
    "adamw_cautious": lambda: adamjax.adamw(0.01, cautious=True),
}


@pytest.mark.parametrize("name", sorted(NEW))
def test_native_status_says_why_the_kernel_does_not_apply(name):
    status = adamjax.native_status(NEW[name](), jnp.zeros(3, jnp.float32))
    assert status.startswith("not fused: ") and "no native kernel" in status


@pytest.mark.parametrize("name", sorted(NEW))
def test_simulatable_and_the_direction_is_what_the_update_applies(name):
    trace = adamjax.simulate(NEW[name](), np.sin(np.arange(30.0)))
    assert trace.direction.shape == (30,)
    np.testing.assert_allclose(np.asarray(trace.params[-1]), np.asarray(jnp.sum(trace.update)), rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("name", ["radam", "adopt", "ademamix", "lamb", "stable_adamw", "adam_mini", "nadam"])
def test_classic_triple_follows_the_transformation(name):
    init, update, get_params = getattr(adamjax.optimizers, name)(0.05)
    tx = {"nadam": lambda: adamjax.nadam(0.05)}.get(name, lambda: getattr(adamjax, name)(0.05))()
    params = {k: jnp.asarray(v, jnp.float64) for k, v in INIT.items()}
    state, opt_state, theirs = init(params), tx.init(params), params
    for i in range(5):
        state = update(i, grad_fn(get_params(state)), state)
        updates, opt_state = tx.update(grad_fn(theirs), opt_state, theirs)
        theirs = optax.apply_updates(theirs, updates)
    for key in INIT:
        np.testing.assert_allclose(np.asarray(get_params(state)[key]), np.asarray(theirs[key]), rtol=1e-12)
