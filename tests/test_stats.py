"""Live statistics against values computed by hand from a simulator trace."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import numpy_reference as ref
import optax
import pytest

import adamjax

GRADS = jnp.array(
    [
        [0.5, -1.0, 2.0, 0.0],
        [0.4, 1.0, 2.2, 0.0],
        [0.6, -1.0, 1.8, 0.0],
        [0.5, 1.0, 2.1, 0.0],
    ],
    jnp.float64,
)


def run(tx, steps):
    """Steps ``tx`` by hand through ``steps`` (gradient trees, or the rows of an array) from zeros."""
    params = jax.tree.map(jnp.zeros_like, steps[0])
    state = tx.init(params)
    update = jax.jit(tx.update)
    for grad in steps:
        updates, state = update(grad, state, params)
        params = optax.apply_updates(params, updates)
    return state, updates


def test_stats_match_the_trace_by_hand():
    b1, b2 = 0.8, 0.95
    tx = adamjax.adam(0.1, b1, b2)
    trace = adamjax.simulate(tx, GRADS)
    state, updates = run(tx, GRADS)
    stats = jax.jit(lambda s, u: adamjax.adam_stats(s, u, b1=b1, b2=b2))(state, updates)

    mu_hat, nu_hat, update = (np.asarray(x[-1], np.float64) for x in (trace.mu_hat, trace.nu_hat, trace.update))
    # The last coordinate never saw a gradient: its snr is defined as 0.
    snr = np.array([abs(mu_hat[i]) / math.sqrt(nu_hat[i]) for i in range(3)] + [0.0])
    assert 0.0 < snr[1] < 0.2 < 0.9 < snr[0]  # the swinging coordinate has a low snr
    assert int(stats.count) == 4
    np.testing.assert_allclose(stats.update_rms, math.sqrt(np.mean(update**2)), rtol=1e-12)
    np.testing.assert_allclose(stats.step_mean, np.mean(np.abs(update)), rtol=1e-12)
    np.testing.assert_allclose(stats.step_max, np.max(np.abs(update)), rtol=1e-12)
    np.testing.assert_allclose(stats.snr_mean, snr.mean(), rtol=1e-12)
    np.testing.assert_allclose(
        [stats.snr_q10, stats.snr_median, stats.snr_q90], np.quantile(snr, [0.1, 0.5, 0.9]), rtol=1e-12
    )
    np.testing.assert_allclose(stats.mu_correction_gap, 1 / (1 - b1**4) - 1, rtol=1e-12)
    np.testing.assert_allclose(stats.nu_correction_gap, 1 / (1 - b2**4) - 1, rtol=1e-12)
    assert all(np.shape(value) == () for value in stats)
    assert stats.update_rms.dtype == jnp.float64


def test_stats_pool_a_tree_inside_a_chain():
    grads = {"w": GRADS[:, :2], "b": GRADS[:, 2:]}
    tx = optax.chain(optax.clip(1.5), adamjax.adam(0.1, 0.9, 0.99))
    flat = adamjax.simulate(optax.chain(optax.clip(1.5), adamjax.adam(0.1, 0.9, 0.99)), GRADS)
    steps = [{"w": g[:2], "b": g[2:]} for g in GRADS]
    state, updates = run(tx, steps)
    stats = adamjax.adam_stats(state, updates, b1=0.9, b2=0.99)
    mu_hat, nu_hat = np.asarray(flat.mu_hat[-1]), np.asarray(flat.nu_hat[-1])
    snr = np.where(nu_hat > 0, np.abs(mu_hat) / np.sqrt(np.where(nu_hat > 0, nu_hat, 1)), 0)
    np.testing.assert_allclose(stats.snr_mean, snr.mean(), rtol=1e-12)
    np.testing.assert_allclose(stats.step_max, np.max(np.abs(np.asarray(flat.update[-1]))), rtol=1e-12)
    assert grads["w"].shape == (4, 2)


def test_amsgrad_stats_use_the_running_maximum():
    tx = adamjax.amsgrad(0.1, 0.9, 0.5)
    grads = jnp.array([[3.0], [0.1], [0.1]], jnp.float64)
    trace = adamjax.simulate(tx, grads)
    state, updates = run(tx, grads)
    stats = adamjax.adam_stats(state, updates, b1=0.9, b2=0.5)
    expected = abs(float(trace.mu_hat[-1, 0])) / math.sqrt(float(trace.nu_hat[-1, 0]))
    np.testing.assert_allclose(stats.snr_mean, expected, rtol=1e-12)
    # nu_hat here is the maximum's: without it the snr would be larger.
    plain = abs(float(trace.mu_hat[-1, 0])) / math.sqrt(float(trace.nu[-1, 0]) / (1 - 0.5**3))
    assert plain > 1.5 * expected


def test_power_and_adamax():
    grads = GRADS[:, :3]
    tx = adamjax.adam(0.1, power=4.0)
    trace = adamjax.simulate(tx, grads)
    state, updates = run(tx, grads)
    stats = adamjax.adam_stats(state, updates, b1=0.9, b2=0.999, power=4.0)
    expected = np.abs(np.asarray(trace.mu_hat[-1])) / np.asarray(trace.nu_hat[-1]) ** 0.25
    np.testing.assert_allclose(stats.snr_mean, expected.mean(), rtol=1e-12)

    tx = adamjax.adamax(0.1)
    trace = adamjax.simulate(tx, grads)
    state, updates = run(tx, grads)
    stats = adamjax.adam_stats(state, updates, b1=0.9, b2=0.999, power=math.inf)
    np.testing.assert_allclose(
        stats.snr_mean, np.mean(np.abs(np.asarray(trace.mu_hat[-1])) / np.asarray(trace.nu[-1])), rtol=1e-12
    )
    assert float(stats.nu_correction_gap) == 0.0


def test_traced_hyperparameters_under_jit():
    tx = adamjax.adam(0.1, 0.8, 0.95)
    state, updates = run(tx, GRADS)
    eager = adamjax.adam_stats(state, updates, b1=0.8, b2=0.95)
    traced = jax.jit(lambda s, u, b1, b2: adamjax.adam_stats(s, u, b1=b1, b2=b2))(
        state, updates, jnp.float64(0.8), jnp.float64(0.95)
    )
    for a, b in zip(eager, traced, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12)


def test_before_the_first_step():
    tx = adamjax.adam(0.1)
    state = tx.init(jnp.zeros(3, jnp.float32))
    stats = adamjax.adam_stats(state, jnp.zeros(3, jnp.float32), b1=0.9, b2=0.999)
    assert int(stats.count) == 0
    assert math.isinf(float(stats.nu_correction_gap))
    assert float(stats.snr_mean) == 0.0
    assert stats.snr_mean.dtype == jnp.float32


def test_errors():
    with pytest.raises(ValueError, match="found no Adam state"):
        adamjax.adam_stats(optax.sgd(0.1).init(jnp.zeros(2, jnp.float32)), jnp.zeros(2, jnp.float32), b1=0.9, b2=0.999)
    state = adamjax.adam(0.1).init(jnp.zeros(2, jnp.float32))
    with pytest.raises(ValueError, match=r"`adam_stats\(b2=...\)` must be in \[0, 1\); got 1.0"):
        adamjax.adam_stats(state, jnp.zeros(2, jnp.float32), b1=0.9, b2=1.0)
    with pytest.raises(ValueError, match=r"the state does not store b1 .* pass `b1=` or the optimizer as `tx=`"):
        adamjax.adam_stats(state, jnp.zeros(2, jnp.float32), b2=0.999)


def reference_snr(grads, variant):
    """|m_hat| / v_hat^(1/p) after the last step, from the NumPy float64 transcription."""
    last = ref.open_loop(np.asarray(grads, np.float64), variant)
    mu_hat, nu_hat = last.mu_hat[-1], last.nu_hat[-1]
    root = nu_hat ** (1 / variant.power)
    return np.where(root > 0, np.abs(mu_hat) / np.where(root > 0, root, 1), 0)


def test_hyperparameters_come_from_an_injected_state():
    tx = optax.inject_hyperparams(adamjax.adam)(0.1, b1=0.8, b2=0.95)
    state, updates = run(tx, GRADS)
    stats = adamjax.adam_stats(state, updates)
    np.testing.assert_allclose(stats.snr_mean, reference_snr(GRADS, ref.Variant(b1=0.8, b2=0.95)).mean(), rtol=1e-6)
    np.testing.assert_allclose(stats.mu_correction_gap, 1 / (1 - 0.8**4) - 1, rtol=1e-6)
    np.testing.assert_allclose(stats.nu_correction_gap, 1 / (1 - 0.95**4) - 1, rtol=1e-6)
    # An argument still wins over the stored value.
    other = adamjax.adam_stats(state, updates, b2=0.5)
    np.testing.assert_allclose(other.nu_correction_gap, 1 / (1 - 0.5**4) - 1, rtol=1e-12)


@pytest.mark.parametrize(
    ("make", "variant"),
    [
        (lambda: adamjax.adam(0.1, 0.8, 0.95), ref.Variant(b1=0.8, b2=0.95)),
        (lambda: adamjax.adam(0.1, 0.85, 0.9, power=4.0), ref.Variant(b1=0.85, b2=0.9, power=4.0)),
        (lambda: optax.chain(optax.clip(10.0), adamjax.amsgrad(0.1, 0.7, 0.9)), ref.Variant(0.7, 0.9, amsgrad=True)),
    ],
)
def test_hyperparameters_come_from_the_optimizer(make, variant):
    tx = make()
    state, updates = run(tx, GRADS)
    stats = adamjax.adam_stats(state, updates, tx=tx)
    np.testing.assert_allclose(stats.snr_mean, reference_snr(GRADS, variant).mean(), rtol=1e-10)
    np.testing.assert_allclose(stats.mu_correction_gap, 1 / (1 - variant.b1**4) - 1, rtol=1e-12)


def test_flax_nnx_optimizer_and_its_state():
    from flax import nnx

    model = nnx.Linear(4, 1, use_bias=False, param_dtype=jnp.float64, rngs=nnx.Rngs(0))
    optimizer = nnx.Optimizer(model, adamjax.adam(0.1, 0.8, 0.95), wrt=nnx.Param)
    for grad in GRADS:
        optimizer.update(model, nnx.State({"kernel": nnx.Param(grad.reshape(4, 1))}))
    updates = jnp.zeros((4, 1), jnp.float64)
    expected = reference_snr(GRADS, ref.Variant(b1=0.8, b2=0.95)).mean()
    for stats in (
        adamjax.adam_stats(optimizer, updates),
        adamjax.adam_stats(optimizer.opt_state, updates, b1=0.8, b2=0.95),
        adamjax.adam_stats(nnx.state(optimizer, nnx.optimizer.OptState), updates, b1=0.8, b2=0.95),
    ):
        assert int(stats.count) == 4
        np.testing.assert_allclose(stats.snr_mean, expected, rtol=1e-6)
