"""The core against a plain NumPy float64 transcription of each variant (tests/numpy_reference.py).

Open loop: the same gradient stream (seed 000's sine, seed 002's swinging soft
signal) goes through both, and every recorded internal (``mu_hat``, ``nu_hat``,
``denom``, the update, the stored moments) must agree to 1e-12. Closed loop:
each alias optimises a small problem and the parameters must follow the NumPy
trajectory.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import numpy_reference as ref
import optax
import pytest
from helpers import scale_by_adam_for

import adamjax
from adamjax._core import record_steps


def assert_close(actual, expected, rtol, err_msg=""):
    """Relative to the largest reference value, so entries that cross zero do not need their own tolerance."""
    expected = np.asarray(expected, np.float64)
    scale = float(np.max(np.abs(expected))) if expected.size else 0.0
    np.testing.assert_allclose(np.asarray(actual, np.float64), expected, rtol=rtol, atol=rtol * scale, err_msg=err_msg)


STREAMS = {
    "sine": ref.sine(300),
    "swinging_soft": ref.swinging_soft(10_000)[:1_000],
}

VARIANTS = {
    "adam": ref.Variant(),
    "eps_root": ref.Variant(eps_root=1e-3),
    "power3": ref.Variant(power=3.0),
    "power4": ref.Variant(power=4.0, b2=0.99),
    "power4_eps_root": ref.Variant(power=4.0, eps_root=1e-4),
    "centered": ref.Variant(centered=True, eps=1e-12, eps_root=1e-6),
    "centered_nesterov": ref.Variant(centered=True, nesterov=True, eps=1e-16, eps_root=1e-16),
    "no_bias_correction": ref.Variant(bias_correction=False),
    "nesterov": ref.Variant(nesterov=True),
    "nesterov_no_bias_correction": ref.Variant(nesterov=True, bias_correction=False),
    "amsgrad": ref.Variant(amsgrad=True),
    "amsgrad_power3": ref.Variant(amsgrad=True, power=3.0, eps_root=1e-6),
    "amsgrad_no_bias_correction": ref.Variant(amsgrad=True, bias_correction=False),
    "adamax": ref.Variant(power=math.inf, eps=0.0, eps_root=1e-8),
    "adamax_eps_outside": ref.Variant(power=math.inf, eps=1e-3, eps_root=0.0),
}


def recorded_update(tx, g, state):
    with record_steps() as recorded:
        update, state = tx.update(g, state)
    assert len(recorded) == 1
    return update, state, recorded[0]


def run_steps(step, tx, grads):
    """Feeds ``grads[t]`` to a jitted ``step`` in a loop; stacks what it returns.

    A jitted step called in a loop compiles about twice as fast as a
    ``lax.scan`` of it, and a second stream of the same shape reuses it.
    """
    grads = jnp.asarray(grads, jnp.float64)
    state = tx.init(grads[0])
    outputs = []
    for g in grads:
        update, state, recorded = step(g, state)
        outputs.append((update, state, recorded))
    return stack(outputs)


def stack(outputs):
    return jax.tree.map(lambda *xs: np.stack(xs), *outputs)


def run_core_open_loop(tx: optax.GradientTransformation, grads: np.ndarray):
    """The updates, states and recorded :class:`adamjax.AdamStep` of ``tx`` on a gradient stream."""
    return run_steps(jax.jit(functools.partial(recorded_update, tx)), tx, grads)


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_core_internals_match_numpy(name):
    variant = VARIANTS[name]
    tx = scale_by_adam_for(variant)
    step = jax.jit(functools.partial(recorded_update, tx))
    for stream, grads in STREAMS.items():
        expected = ref.open_loop(grads, variant)
        updates, states, steps = run_steps(step, tx, grads)

        np.testing.assert_array_equal(states.count, np.arange(1, len(grads) + 1))
        for field in ("mu_hat", "nu_hat", "denom", "update", "mu", "nu"):
            assert_close(getattr(steps, field), getattr(expected, field), 1e-12, err_msg=f"{stream}: {field}")
        assert_close(updates, expected.update, 1e-12, err_msg=stream)
        assert_close(states.mu, expected.mu, 1e-12, err_msg=stream)
        assert_close(states.nu, expected.nu, 1e-12, err_msg=stream)
        if variant.amsgrad:
            assert_close(steps.nu_max, expected.nu_max, 1e-12, err_msg=stream)
            assert_close(states.nu_max, expected.nu_max, 1e-12, err_msg=stream)
        else:
            assert not hasattr(states, "nu_max") and steps.nu_max is None


@pytest.mark.parametrize("name", sorted(set(VARIANTS) - {"adam"}))
def test_each_variant_differs_from_adam_on_the_streams(name):
    # Guards the table above: a variant that coincides with Adam on these
    # streams would not test its switch.
    for grads in STREAMS.values():
        plain = ref.open_loop(grads, VARIANTS["adam"]).update
        variant = ref.open_loop(grads, VARIANTS[name]).update
        assert np.max(np.abs(variant - plain)) > 1e-6 * np.max(np.abs(plain))


def test_power_two_is_adam_in_the_reference():
    # The p-th power/p-th root path at p = 2 against Kingma & Ba's Algorithm 1 written out.
    grads = STREAMS["sine"]
    general = ref.open_loop(grads, ref.Variant(power=2.0)).update
    m = v = 0.0
    kingma_ba = []
    for t, g in enumerate(grads, start=1):
        m = 0.9 * m + 0.1 * g
        v = 0.999 * v + 0.001 * g * g
        kingma_ba.append((m / (1 - 0.9**t)) / (np.sqrt(v / (1 - 0.999**t)) + 1e-8))
    assert_close(general, kingma_ba, 1e-14)


def test_traced_power_two_equals_static_adam():
    # A traced power takes the general |g|^p, p-th root path; at p = 2 it must give Adam.
    grads = STREAMS["swinging_soft"]

    @jax.jit
    def traced_step(power, g, state):
        update, state = adamjax.scale_by_adam(power=power).update(g, state)
        return update, state, None

    power = jnp.asarray(2.0, jnp.float64)
    traced = run_steps(functools.partial(traced_step, power), adamjax.scale_by_adam(), grads)[0]
    static = run_core_open_loop(adamjax.scale_by_adam(power=2.0), grads)[0]
    expected = ref.open_loop(grads, ref.Variant()).update
    assert_close(traced, expected, 1e-12)
    assert_close(static, expected, 1e-12)


def test_centered_uses_the_new_first_moment_and_stores_eps_root():
    # One step by hand: m_1 = 0.1 g, s_1 = 0.001 (g - m_1)^2 + eps_root.
    tx = adamjax.scale_by_adam(eps=0.0, eps_root=0.25, centered=True)
    g = jnp.asarray([2.0], jnp.float64)
    update, state = tx.update(g, tx.init(g))
    m1 = 0.1 * 2.0
    s1 = 0.001 * (2.0 - m1) ** 2 + 0.25
    np.testing.assert_allclose(state.nu, [s1], rtol=1e-15)
    np.testing.assert_allclose(update, [(m1 / 0.1) / np.sqrt(s1 / 0.001)], rtol=1e-14)


def test_adamax_state_is_the_decayed_running_maximum():
    tx = adamjax.scale_by_adam(b2=0.5, eps=0.0, eps_root=0.125, power=math.inf)
    state = tx.init(jnp.zeros(2, jnp.float64))
    for g, nu in (([4.0, -1.0], [4.125, 1.125]), ([1.0, 0.0], [2.0625, 0.5625]), ([-3.0, 1.0], [3.125, 1.125])):
        _, state = tx.update(jnp.asarray(g, jnp.float64), state)
        np.testing.assert_array_equal(state.nu, nu)


def test_amsgrad_takes_the_maximum_before_bias_correction():
    # g = 1 then 0: v_1 = 0.001, v_2 = 0.000999 < v_1, so the step-2 denominator uses
    # v_1 / (1 - 0.999^2) -- not v_1 / (1 - 0.999^1) (optax's order).
    tx = adamjax.scale_by_adam(amsgrad=True, eps=0.0)
    state = tx.init(jnp.zeros((), jnp.float64))
    _, state = tx.update(jnp.asarray(1.0, jnp.float64), state)
    update, state = tx.update(jnp.asarray(0.0, jnp.float64), state)
    mu_hat = 0.09 / (1 - 0.9**2)
    nu_hat = 0.001 / (1 - 0.999**2)
    np.testing.assert_allclose(update, mu_hat / np.sqrt(nu_hat), rtol=1e-14)
    np.testing.assert_allclose(state.nu_max, 0.001, rtol=1e-15)
    np.testing.assert_allclose(state.nu, 0.000999, rtol=1e-15)


STATE_DTYPES = [
    (jnp.float64, jnp.bfloat16, jnp.float32),
    (jnp.float32, jnp.float16, jnp.bfloat16),
    (jnp.float32, jnp.float64, jnp.float64),
    (jnp.bfloat16, jnp.float32, jnp.float32),
    (jnp.float16, None, jnp.float32),
]


@pytest.mark.parametrize("amsgrad", [False, True])
@pytest.mark.parametrize("param_dtype, mu_dtype, nu_dtype", STATE_DTYPES)
def test_state_dtypes_are_honoured_every_step(param_dtype, mu_dtype, nu_dtype, amsgrad):
    tx = adamjax.scale_by_adam(mu_dtype=mu_dtype, nu_dtype=nu_dtype, amsgrad=amsgrad)
    grads = STREAMS["sine"][:20] + 0.5
    state = tx.init({"w": jnp.zeros(2, param_dtype)})
    # Unless given, a moment takes the parameters' dtype, float32 for 16-bit parameters.
    own = jnp.float32 if param_dtype in (jnp.float16, jnp.bfloat16) else param_dtype
    expected_mu = jnp.dtype(own if mu_dtype is None else mu_dtype)
    expected_nu = jnp.dtype(own if nu_dtype is None else nu_dtype)
    reference = ref.open_loop(grads, ref.Variant(amsgrad=amsgrad))
    update = jax.jit(tx.update)
    for t, g in enumerate(grads):
        updates, state = update({"w": jnp.full(2, g, param_dtype)}, state)
        assert state.mu["w"].dtype == expected_mu
        assert state.nu["w"].dtype == expected_nu
        if amsgrad:
            assert state.nu_max["w"].dtype == expected_nu
        assert updates["w"].dtype == jnp.dtype(param_dtype)
        assert state.count.dtype == jnp.int32
        # The stored moments round to their dtype; the numbers stay those of Adam.
        np.testing.assert_allclose(np.asarray(updates["w"], np.float64), reference.update[t], rtol=3e-2, atol=1e-2)


@pytest.mark.parametrize("mu_dtype", [jnp.bfloat16, jnp.float16])
def test_low_precision_first_moment_is_rounded_once_per_step(mu_dtype):
    # mu_t = round(0.9 * mu_{t-1} + 0.1 g) in mu_dtype, the arithmetic in float32.
    tx = adamjax.scale_by_adam(mu_dtype=mu_dtype)
    grads = STREAMS["sine"][:30]
    state = tx.init(jnp.zeros((), jnp.float32))
    mu = np.float32(0.0)
    for g in grads:
        _, state = tx.update(jnp.asarray(g, jnp.float32), state)
        mu = np.float32(np.float32(0.1) * np.float32(g) + np.float32(0.9) * mu)
        mu = np.float32(np.asarray(mu).astype(mu_dtype))
        # One unit in the last place of mu_dtype: float32 arithmetic in another order may round the other way.
        np.testing.assert_allclose(np.float32(state.mu), mu, rtol=float(jnp.finfo(mu_dtype).eps), atol=0)


def closed_loop_problem():
    """A small ill-conditioned quadratic on a pytree (vector, matrix, scalar) in float64."""
    curvature = {"vector": np.array([1.0, 3.0, 0.3]), "matrix": np.array([[2.0, 0.5], [1.0, 4.0]]), "scalar": 1.5}
    target = {"vector": np.array([1.0, -2.0, 0.5]), "matrix": np.array([[0.3, -0.7], [1.2, 0.0]]), "scalar": -1.0}
    init = {"vector": np.array([0.2, 0.1, -0.3]), "matrix": np.array([[1.0, 0.0], [-0.5, 0.25]]), "scalar": 0.5}

    def grad_numpy(theta):
        return {k: curvature[k] * (theta[k] - target[k]) for k in theta}

    def loss_jax(theta):
        return sum(
            0.5
            * jnp.sum(jnp.asarray(curvature[k], jnp.float64) * (theta[k] - jnp.asarray(target[k], jnp.float64)) ** 2)
            for k in theta
        )

    return init, grad_numpy, jax.grad(loss_jax)


def run_jax_closed_loop(tx, init, grad_fn, num_steps):
    @jax.jit
    def step(params, state):
        updates, state = tx.update(grad_fn(params), state, params)
        return optax.apply_updates(params, updates), state

    params = {k: jnp.asarray(v, jnp.float64) for k, v in init.items()}
    state = tx.init(params)
    trajectory = []
    for _ in range(num_steps):
        params, state = step(params, state)
        trajectory.append(params)
    return stack(trajectory)


SCHEDULE = dict(init_value=0.0, peak_value=0.05, warmup_steps=10, decay_steps=80, end_value=1e-3)


def jax_warmup_cosine_decay(init_value, peak_value, warmup_steps, decay_steps, end_value):
    """The same schedule in float64 jnp (optax's own schedules compute in float32)."""

    def schedule(count):
        count = count.astype(jnp.float64)
        warmup = init_value + (peak_value - init_value) * count / warmup_steps
        progress = jnp.clip((count - warmup_steps) / (decay_steps - warmup_steps), 0.0, 1.0)
        cosine = end_value + (peak_value - end_value) * 0.5 * (1.0 + jnp.cos(jnp.pi * progress))
        return jnp.where(count < warmup_steps, warmup, cosine)

    return schedule


ALIASES = {
    "adam": (lambda: adamjax.adam(0.05), ref.Variant(), {}),
    "adam_schedule": (
        lambda: adamjax.adam(jax_warmup_cosine_decay(**SCHEDULE)),
        ref.Variant(),
        {"learning_rate": ref.warmup_cosine_decay(**SCHEDULE)},
    ),
    "adam_l2": (lambda: adamjax.adam(0.05, weight_decay=0.1), ref.Variant(), {"coupled_decay": 0.1}),
    "adamw": (lambda: adamjax.adamw(0.05, weight_decay=0.1), ref.Variant(), {"decoupled_decay": 0.1}),
    "adamw_mask": (
        lambda: adamjax.adamw(0.05, weight_decay=0.1, mask={"vector": True, "matrix": False, "scalar": True}),
        ref.Variant(),
        {"decoupled_decay": 0.1, "decay_mask": {"vector": True, "matrix": False, "scalar": True}},
    ),
    "amsgrad": (lambda: adamjax.amsgrad(0.05, weight_decay=0.01), ref.Variant(amsgrad=True), {"coupled_decay": 0.01}),
    "adamax": (lambda: adamjax.adamax(0.05, eps=1e-3), ref.Variant(power=math.inf, eps=0.0, eps_root=1e-3), {}),
    "nadam": (lambda: adamjax.nadam(0.05, eps_root=1e-6), ref.Variant(nesterov=True, eps_root=1e-6), {}),
    "adabelief": (lambda: adamjax.adabelief(0.05), ref.Variant(centered=True, eps=1e-16, eps_root=1e-16), {}),
    "adabelief_nesterov": (
        lambda: adamjax.adabelief(0.05, nesterov=True, eps_root=1e-8),
        ref.Variant(centered=True, nesterov=True, eps=1e-16, eps_root=1e-8),
        {},
    ),
    "adam_power4": (lambda: adamjax.adam(0.05, power=4.0), ref.Variant(power=4.0), {}),
    "adam_power3_amsgrad": (
        lambda: adamjax.adam(0.05, power=3.0, amsgrad=True),
        ref.Variant(power=3.0, amsgrad=True),
        {},
    ),
    "adam_centered": (lambda: adamjax.adam(0.05, centered=True), ref.Variant(centered=True), {}),
    "adam_no_bias_correction": (
        lambda: adamjax.adam(0.05, bias_correction=False),
        ref.Variant(bias_correction=False),
        {},
    ),
    "adam_nesterov_no_bias_correction": (
        lambda: adamjax.adam(0.05, nesterov=True, bias_correction=False),
        ref.Variant(nesterov=True, bias_correction=False),
        {},
    ),
}


@pytest.mark.parametrize("name", sorted(ALIASES))
def test_alias_closed_loop_follows_numpy(name):
    make, variant, options = ALIASES[name]
    options = dict(options)
    learning_rate = options.pop("learning_rate", 0.05)
    init, grad_numpy, grad_jax = closed_loop_problem()
    num_steps = 100
    expected = ref.closed_loop(grad_numpy, init, variant, learning_rate, num_steps, **options)
    trajectory = run_jax_closed_loop(make(), init, grad_jax, num_steps)
    for key in init:
        assert_close(trajectory[key], np.stack([theta[key] for theta in expected]), 1e-10, err_msg=key)
