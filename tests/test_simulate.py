"""The simulator against NumPy float64 transcriptions of the seeds' loops."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import seed_transcriptions as seeds

import adamjax
from adamjax import signals

# XLA on CPU contracts a*b + c into fused multiply-adds and rewrites (a/b)/c as
# a/(b*c), so float64 traces agree with NumPy's step-by-step arithmetic to a
# few ulps, not bit for bit (examples/seed003_quadratic.py turns both off and
# reproduces the seed's digits exactly).
RTOL = 1e-12
ATOL = 1e-14


def close(actual, expected, rtol=RTOL, atol=ATOL):
    np.testing.assert_allclose(np.asarray(actual, np.float64), np.asarray(expected, np.float64), rtol=rtol, atol=atol)


SEED000_SIGNALS = {
    "uniform": lambda: signals.uniform(200, seed=3, dtype=jnp.float64),
    "patterns": lambda: signals.patterns(dtype=jnp.float64),
    "pulses": lambda: signals.pulses(dtype=jnp.float64),
    "sine": lambda: signals.sine(300, dtype=jnp.float64),
}


@pytest.mark.parametrize("name", sorted(SEED000_SIGNALS))
def test_seed000_adam_matches_transcription(name):
    grads = SEED000_SIGNALS[name]()
    ref = seeds.seed000_plot(np.asarray(grads), 0.9, 0.999, 1e-8)
    trace = adamjax.simulate(adamjax.scale_by_adam(0.9, 0.999, 1e-8), grads)
    assert trace.mu.dtype == jnp.float64
    close(trace.grad, grads)
    close(trace.mu, ref["m"])
    close(trace.nu, ref["v"])
    close(trace.mu_hat, ref["m_hat"])
    close(trace.nu_hat, ref["v_hat"])
    close(trace.denom, ref["v_hat_root"] + 1e-8)
    close(trace.direction, ref["adam_step"])
    # scale_by_adam alone has no learning rate: the update is the direction.
    close(trace.update, ref["adam_step"])


@pytest.mark.parametrize(
    ("name", "npow"),
    [("sine", 4), ("patterns", 4), ("uniform", 3), ("pulses", 3)],
)
def test_seed000_pth_power_moment_matches_transcription(name, npow):
    # The seed's moment is an EMA of g**npow; adamjax's of |g|**p. They agree
    # for even powers and for non-negative signals (uniform, pulses).
    grads = SEED000_SIGNALS[name]()
    ref = seeds.seed000_plot(np.asarray(grads), 0.9, 0.999, 1e-8, nbeta=0.99, npow=npow)
    trace = adamjax.simulate(adamjax.scale_by_adam(0.9, 0.99, 1e-8, power=float(npow)), grads)
    close(trace.mu_hat, ref["m_hat"])
    close(trace.nu, ref["vp"])
    close(trace.nu_hat, ref["vp_hat"])
    close(trace.denom, ref["vp_hat_root"] + 1e-8)
    close(trace.direction, ref["adam_npow_step"])


def test_pth_power_uses_absolute_value_for_odd_powers():
    grads = signals.sine(300, dtype=jnp.float64)
    trace = adamjax.simulate(adamjax.scale_by_adam(0.9, 0.99, 1e-8, power=3.0), grads)
    ref = seeds.seed000_plot(np.abs(np.asarray(grads)), 0.9, 0.999, 1e-8, nbeta=0.99, npow=3)
    close(trace.nu, ref["vp"])
    assert np.all(np.asarray(trace.nu) >= 0)


SEED002_SIGNALS = {
    "swinging": lambda: signals.swinging(10_000, seed=1, dtype=jnp.float64),
    "swinging_soft": lambda: signals.swinging_soft(10_000, seed=1, dtype=jnp.float64),
}


@pytest.mark.parametrize("name", sorted(SEED002_SIGNALS))
def test_seed002_simulate_adam_matches_transcription(name):
    grads = SEED002_SIGNALS[name]()
    ref = seeds.seed002_simulate_adam(np.asarray(grads), 0.9, 0.999, 1e-7)
    trace = adamjax.simulate(adamjax.scale_by_adam(0.9, 0.999, 1e-7), grads)
    close(trace.grad, ref["dW"])
    close(trace.mu, ref["v"])
    close(trace.nu, ref["s"])
    close(trace.mu_hat, ref["v_corr"])
    close(trace.nu_hat, ref["s_corr"])
    close(trace.direction, ref["dW_reg"])


@pytest.mark.parametrize("name", sorted(SEED002_SIGNALS))
def test_seed002_centered_moments_match_modified_adam(name):
    grads = SEED002_SIGNALS[name]()
    modified = seeds.seed002_simulate_modified_adam(np.asarray(grads), 0.9, 0.999, 1e-7)
    centered = seeds.centered_adam(np.asarray(grads), 0.9, 0.999, 1e-7)
    trace = adamjax.simulate(adamjax.scale_by_adam(0.9, 0.999, 1e-7, centered=True), grads)
    # The seed's experiment and the centered Adam share their moments ...
    close(trace.mu, modified["v"])
    close(trace.nu, modified["s"])
    close(trace.mu_hat, modified["v_corr"])
    close(trace.nu_hat, modified["s_corr"])
    # ... but not their step: adamjax's is the centered (AdaBelief) rule.
    close(trace.direction, centered["step"])
    assert not np.allclose(np.asarray(trace.direction), modified["dW_reg"], rtol=1e-3)


def test_centered_step_with_eps_root_matches_adabelief_transcription():
    grads = signals.noisy_line(500, seed=2, dtype=jnp.float64)
    ref = seeds.centered_adam(np.asarray(grads), 0.9, 0.999, 1e-16, eps_root=1e-16)
    trace = adamjax.simulate(adamjax.adabelief(0.01), grads)
    close(trace.nu, ref["s"])
    close(trace.direction, ref["step"])
    close(trace.update, -0.01 * ref["step"])


def test_bias_correction_makes_the_first_step_the_gradient_sign():
    grads = jnp.array([0.5, -3.0, 2.0], jnp.float64)
    trace = adamjax.simulate(adamjax.scale_by_adam(eps=0.0), grads)
    assert float(trace.mu_hat[0]) == pytest.approx(0.5, rel=1e-15)
    assert float(trace.nu_hat[0]) == pytest.approx(0.25, rel=1e-12)
    assert float(trace.direction[0]) == pytest.approx(1.0, rel=1e-12)
    uncorrected = adamjax.simulate(adamjax.scale_by_adam(eps=0.0, bias_correction=False), grads)
    assert float(uncorrected.direction[0]) == pytest.approx(0.1 / math.sqrt(0.001), rel=1e-12)


def test_update_is_after_the_learning_rate_and_params_integrate_it():
    grads = signals.sine(300, dtype=jnp.float64)
    trace = adamjax.simulate(adamjax.adam(0.05), grads, params=jnp.asarray(2.0, jnp.float64))
    close(trace.update, -0.05 * np.asarray(trace.direction))
    close(trace.params, 2.0 + np.cumsum(np.asarray(trace.update)), rtol=1e-12, atol=1e-12)


def test_core_inside_a_chain_sees_the_transformed_gradients():
    grads = signals.swinging(400, seed=4, dtype=jnp.float64)
    tx = optax.chain(optax.clip(2.5), adamjax.scale_by_adam(0.8, 0.99, 1e-8), optax.scale(-0.1))
    trace = adamjax.simulate(tx, grads)
    clipped = np.clip(np.asarray(grads), -2.5, 2.5)
    ref = seeds.seed000_plot(clipped, 0.8, 0.99, 1e-8)
    close(trace.grad, grads)
    close(trace.mu, ref["m"])
    close(trace.direction, ref["adam_step"])
    close(trace.update, -0.1 * ref["adam_step"])


def test_array_gradients_run_coordinate_by_coordinate():
    grads = jax.random.normal(jax.random.key(0), (50, 2, 3), jnp.float32)
    tx = adamjax.adam(1e-2)
    trace = adamjax.simulate(tx, grads)
    assert trace.nu.shape == (50, 2, 3)
    assert trace.params.shape == (50, 2, 3)
    single = adamjax.simulate(tx, grads[:, 1, 2])
    np.testing.assert_allclose(trace.direction[:, 1, 2], single.direction, rtol=1e-6)
    np.testing.assert_allclose(trace.params[:, 1, 2], single.params, rtol=1e-6, atol=1e-7)


def test_closed_loop_matches_seed003():
    tx = adamjax.adam(0.01)
    trace = adamjax.simulate(tx, grad_fn=lambda w: 2 * w - 2, params=jnp.zeros([], jnp.float64), steps=800)
    ref = seeds.seed003_adam(800)
    assert trace.params.dtype == jnp.float64
    close(trace.params, ref, rtol=1e-14, atol=0)
    # The gradient is read at the parameters before each step.
    close(trace.grad, 2 * np.concatenate([[0.0], ref[:-1]]) - 2, rtol=1e-14, atol=1e-15)
    assert float(trace.params[256]) == pytest.approx(0.9983202346112277, rel=1e-15)


def test_closed_loop_with_array_params_reaches_the_minimum():
    target = jnp.array([1.0, -2.0, 3.0], jnp.float32)
    trace = adamjax.simulate(
        adamjax.adam(0.1), grad_fn=lambda p: 2 * (p - target), params=jnp.zeros(3, jnp.float32), steps=400
    )
    assert trace.params.shape == (400, 3)
    np.testing.assert_allclose(trace.params[-1], target, atol=2e-2)


def test_dtypes():
    assert adamjax.simulate(adamjax.adam(1e-3), [1.0, 0.0, 1.0]).mu.dtype == jnp.float32
    assert adamjax.simulate(adamjax.adam(1e-3), np.ones(4, np.float64)).mu.dtype == jnp.float64
    assert adamjax.simulate(adamjax.adam(1e-3), jnp.ones(4, jnp.float32)).update.dtype == jnp.float32
    forced = adamjax.simulate(adamjax.adam(1e-3), jnp.ones(4, jnp.float32), dtype=jnp.float64)
    assert forced.params.dtype == jnp.float64
    with pytest.raises(TypeError, match="floating dtype"):
        adamjax.simulate(adamjax.adam(1e-3), [1.0], dtype=jnp.int32)


def test_amsgrad_records_the_running_maximum():
    grads = signals.swinging_soft(300, seed=0, dtype=jnp.float64)
    trace = adamjax.simulate(adamjax.amsgrad(1e-3), grads)
    assert trace.nu_max is not None
    nu_max = np.maximum.accumulate(np.asarray(trace.nu))
    close(trace.nu_max, nu_max)
    close(trace.nu_hat, nu_max / (1 - 0.999 ** np.arange(1, 301)))
    assert adamjax.simulate(adamjax.adam(1e-3), grads).nu_max is None


def test_vmap_over_traced_hyperparameters_matches_single_runs():
    grads = signals.swinging(2000, seed=1)
    settings = {
        "b1": jnp.array([0.9, 0.8, 0.9, 0.5], jnp.float32),
        "b2": jnp.array([0.999, 0.99, 0.9, 0.999], jnp.float32),
        "eps": jnp.array([1e-8, 1e-6, 1e-8, 1e-3], jnp.float32),
        "power": jnp.array([2.0, 2.0, 4.0, 3.0], jnp.float32),
    }

    def run(b1, b2, eps, power):
        return adamjax.simulate(adamjax.adam(1e-3, b1, b2, eps, power=power), grads)

    grid = jax.jit(jax.vmap(run))(**settings)
    assert grid.direction.shape == (4, 2000)
    for i in range(4):
        one = adamjax.simulate(
            adamjax.adam(
                1e-3,
                float(settings["b1"][i]),
                float(settings["b2"][i]),
                float(settings["eps"][i]),
                power=float(settings["power"][i]),
            ),
            grads,
        )
        np.testing.assert_allclose(grid.direction[i], one.direction, rtol=2e-4, atol=1e-6)
        np.testing.assert_allclose(grid.denom[i], one.denom, rtol=2e-4)


def test_vmap_over_gradient_streams():
    streams = jnp.stack([signals.sine(100), signals.alternating(100), signals.blocks(100)])
    tx = adamjax.adam(1e-3)
    grid = jax.vmap(lambda g: adamjax.simulate(tx, g))(streams)
    for i in range(3):
        np.testing.assert_allclose(grid.direction[i], adamjax.simulate(tx, streams[i]).direction, rtol=1e-6)


def test_transformation_without_an_adamjax_core_is_refused():
    with pytest.raises(ValueError, match="contains no adamjax Adam core"):
        adamjax.simulate(optax.sgd(0.1), jnp.ones(5, jnp.float32))


def test_two_cores_are_refused():
    tx = optax.chain(adamjax.scale_by_adam(), adamjax.scale_by_adam())
    with pytest.raises(ValueError, match="ran the adamjax Adam core 2 times"):
        adamjax.simulate(tx, jnp.ones(5, jnp.float32))


def test_wrappers_that_hide_the_core_in_control_flow_are_refused():
    tx = optax.apply_if_finite(adamjax.adam(1e-3), 3)
    with pytest.raises(ValueError, match="cannot be simulated; simulate the optimizer they wrap"):
        adamjax.simulate(tx, jnp.ones(5, jnp.float32))


def test_optax_wrappers_and_schedules():
    grads = signals.swinging(200, seed=3)
    plain = adamjax.simulate(adamjax.adam(1e-3), grads)
    injected = adamjax.simulate(optax.inject_hyperparams(adamjax.adam)(learning_rate=1e-3), grads)
    # inject_hyperparams stores b1, b2 as float32 arrays, which rounds the bias corrections differently.
    np.testing.assert_allclose(injected.direction, plain.direction, rtol=2e-4, atol=1e-6)
    masked = adamjax.simulate(optax.masked(adamjax.adam(1e-3), True), grads)
    np.testing.assert_array_equal(masked.update, plain.update)
    scheduled = adamjax.simulate(adamjax.adam(optax.linear_schedule(1e-3, 0.0, 200)), grads)
    np.testing.assert_array_equal(scheduled.direction, plain.direction)
    rates = 1e-3 * (1 - np.arange(200) / 200)
    np.testing.assert_allclose(scheduled.update, -rates * np.asarray(plain.direction), rtol=1e-5, atol=1e-12)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({}, ValueError, "exactly one of `grads`"),
        ({"grads": [1.0], "grad_fn": lambda w: w}, ValueError, "exactly one of `grads`"),
        ({"grads": [1.0, 2.0], "steps": 2}, ValueError, "number of steps is `len"),
        ({"grads": 1.0}, ValueError, r"shape \[T\]"),
        ({"grads": jnp.zeros((0, 2), jnp.float32)}, ValueError, r"T >= 1"),
        ({"grads": jnp.zeros((3, 2), jnp.float32), "params": jnp.zeros(3, jnp.float32)}, ValueError, "shape of one"),
        ({"grad_fn": lambda w: w, "steps": 3}, ValueError, "initial parameters"),
        ({"grad_fn": lambda w: w, "params": 0.0, "steps": 0}, ValueError, "positive integer; got 0"),
        ({"grad_fn": lambda w: w, "params": 0.0}, ValueError, "positive integer; got None"),
        ({"grad_fn": 3.0, "params": 0.0, "steps": 3}, TypeError, "must be callable"),
        ({"grad_fn": lambda w: jnp.stack([w, w]), "params": 0.0, "steps": 3}, ValueError, "shaped like `params`"),
    ],
)
def test_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        adamjax.simulate(adamjax.adam(1e-3), **kwargs)


def test_not_a_transformation():
    with pytest.raises(TypeError, match="optax.GradientTransformation"):
        adamjax.simulate(0.001, [1.0])


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda: adamjax.adam(0.01, b2=0.99), {"optimizer": "adam", "learning_rate": 0.01, "b2": 0.99, "power": 2.0}),
        (lambda: adamjax.amsgrad(0.1), {"optimizer": "amsgrad", "amsgrad": True, "centered": False}),
        (lambda: adamjax.scale_by_adam(power=4.0, bias_correction=False), {"power": 4.0, "bias_correction": False}),
        (lambda: optax.chain(optax.clip(1.0), adamjax.adam(1e-3, centered=True)), {"centered": True, "b1": 0.9}),
        (lambda: optax.inject_hyperparams(adamjax.adam)(1e-3, b2=0.95, centered=True), {"b2": 0.95, "centered": True}),
        (lambda: adamjax.adam(optax.linear_schedule(1e-3, 0.0, 10)), {"learning_rate": None, "eps": 1e-8}),
    ],
)
def test_trace_records_the_settings_it_ran_with(make, expected):
    trace = adamjax.simulate(make(), signals.sine(20))
    for name, value in expected.items():
        assert getattr(trace.settings, name) == (pytest.approx(value) if isinstance(value, float) else value), name
    # A settings object is no pytree leaf: mapping over a trace keeps it.
    assert jax.tree.map(lambda x: x[:3], trace).settings == trace.settings


def test_settings_of_traced_hyperparameters_are_unknown():
    grads = signals.sine(30)
    stacked = jax.vmap(lambda b2: adamjax.simulate(adamjax.adam(1e-3, b2=b2), grads))(jnp.array([0.9, 0.99]))
    assert stacked.settings.b2 is None and stacked.settings.b1 == 0.9
    assert stacked.settings.describe() == "adam, lr=0.001, b1=0.9, eps=1e-08"
