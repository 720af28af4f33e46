"""The contract every adamjax optimizer keeps, as one table run over all of them.

Each row builds an optimizer from a learning rate and names the NumPy variant
(tests/numpy_reference.py) it must match. Every property is checked against a
number: the NumPy trajectory, an optax composition done by hand, a trace count.
Few-step checks run eagerly (each primitive compiles once for the whole
session); only the properties about ``jit`` compile.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from typing import Any, NamedTuple

import family_reference as fam
import jax
import jax.numpy as jnp
import numpy as np
import numpy_reference as ref
import optax
import optax.contrib
import pytest
from helpers import CORE_STATES

import adamjax

INT32_MAX = 2**31 - 1


class Case(NamedTuple):
    make: Callable[[Any], optax.GradientTransformation]  # learning rate -> optimizer
    variant: ref.Variant | None
    coupled_decay: float = 0.0
    decoupled_decay: float = 0.0
    # A newer member: (name, hyperparameters) of its transcription in tests/family_reference.py,
    # the reference instead of ``variant``.
    family: tuple[str, dict] | None = None
    # The steps (0-based) at which the 300-step closed loop is compared, and the loss it must reach.
    steps_compared: tuple[int, ...] = (0, 9, 99, 299)
    loss_ratio: float = 1e-3


def member(make, name, *, steps_compared=(0, 9, 99, 299), loss_ratio=1e-3, **hyper):
    """A row whose reference is member ``name`` of tests/family_reference.py with ``hyper``."""
    return Case(make, None, family=(name, hyper), steps_compared=steps_compared, loss_ratio=loss_ratio)


CASES = {
    "adam": Case(lambda learning_rate: adamjax.adam(learning_rate), ref.Variant()),
    "adam_weight_decay": Case(
        lambda learning_rate: adamjax.adam(learning_rate, weight_decay=1e-2), ref.Variant(), coupled_decay=1e-2
    ),
    "adamw": Case(lambda learning_rate: adamjax.adamw(learning_rate), ref.Variant(), decoupled_decay=1e-4),
    "amsgrad": Case(lambda learning_rate: adamjax.amsgrad(learning_rate), ref.Variant(amsgrad=True)),
    "adamax": Case(
        lambda learning_rate: adamjax.adamax(learning_rate), ref.Variant(power=math.inf, eps=0.0, eps_root=1e-8)
    ),
    "nadam": Case(lambda learning_rate: adamjax.nadam(learning_rate), ref.Variant(nesterov=True)),
    "adabelief": Case(
        lambda learning_rate: adamjax.adabelief(learning_rate), ref.Variant(centered=True, eps=1e-16, eps_root=1e-16)
    ),
    "scale_by_adam_then_scale": Case(
        lambda learning_rate: optax.chain(adamjax.scale_by_adam(), optax.scale(-learning_rate)), ref.Variant()
    ),
    "adam_power4": Case(lambda learning_rate: adamjax.adam(learning_rate, power=4.0), ref.Variant(power=4.0)),
    "adam_centered": Case(lambda learning_rate: adamjax.adam(learning_rate, centered=True), ref.Variant(centered=True)),
    "adam_no_bias_correction": Case(
        lambda learning_rate: adamjax.adam(learning_rate, bias_correction=False), ref.Variant(bias_correction=False)
    ),
    # The newer members, each against its NumPy transcription.
    "radam": member(lambda learning_rate: adamjax.radam(learning_rate), "radam"),
    "radam_torch_weight_decay": member(
        lambda learning_rate: adamjax.radam(learning_rate, eps_placement="torch", weight_decay=1e-2),
        "radam",
        convention="torch",
        weight_decay=1e-2,
    ),
    "nadam_momentum_decay": member(
        lambda learning_rate: adamjax.nadam(learning_rate, momentum_decay=4e-3), "nadam", momentum_decay=4e-3
    ),
    "adopt": member(lambda learning_rate: adamjax.adopt(learning_rate), "adopt"),
    "ademamix": member(lambda learning_rate: adamjax.ademamix(learning_rate, b3=0.999), "ademamix", b3=0.999),
    "stable_adamw": member(lambda learning_rate: adamjax.stable_adamw(learning_rate), "stable_adamw"),
    # LAMB's step stays lr * |theta| long: it does not settle at the minimum but keeps moving around it,
    # where the two runs part after about 130 steps (each step agrees to 1e-15 until then).
    "lamb": member(
        lambda learning_rate: adamjax.lamb(learning_rate, weight_decay=1e-2),
        "lamb",
        steps_compared=(0, 9, 99),
        loss_ratio=0.1,
        weight_decay=1e-2,
    ),
    "adam_mini": member(lambda learning_rate: adamjax.adam_mini(learning_rate), "adam_mini", weight_decay=1e-4),
    # Once an entry reaches its target of 0 (m[1, 1]), u * g is round-off and the mask flips on it, so the runs
    # part late; tests/test_family_against_references.py compares cautious runs to 1e-12 where no target is 0.
    "adamw_cautious": member(
        lambda learning_rate: adamjax.adamw(learning_rate, cautious=True),
        "adamw",
        steps_compared=(0, 9, 49),
        cautious=True,
    ),
}

every_optimizer = pytest.mark.parametrize("name", sorted(CASES))

TARGET = {"w": np.array([1.0, -2.0, 0.5]), "m": np.array([[0.3, -0.7], [1.2, 0.0]]), "s": np.array(-1.0)}
CURVATURE = {"w": np.array([1.0, 3.0, 0.5]), "m": np.array([[2.0, 0.5], [1.0, 4.0]]), "s": np.array(1.5)}
INIT = {"w": np.array([0.2, 0.1, -0.3]), "m": np.array([[1.0, 0.0], [-0.5, 0.25]]), "s": np.array(0.5)}


def params_in(dtype):
    return {key: jnp.asarray(value, dtype) for key, value in INIT.items()}


def grad_jax(params):
    """Gradient of sum(curvature/2 * (p - target)^2), in each leaf's dtype."""
    return {
        key: jnp.asarray(CURVATURE[key], p.dtype) * (p - jnp.asarray(TARGET[key], p.dtype)) for key, p in params.items()
    }


def grad_numpy(params):
    return {key: CURVATURE[key] * (p - TARGET[key]) for key, p in params.items()}


def loss_numpy(params):
    return sum(
        float(np.sum(0.5 * CURVATURE[k] * (np.asarray(p, np.float64) - TARGET[k]) ** 2)) for k, p in params.items()
    )


def gradient_sequence(num_steps, dtype, seed=0):
    rng = np.random.default_rng(seed)
    return [
        {key: jnp.asarray(rng.normal(0.2, 1.0, np.shape(v)), dtype) for key, v in INIT.items()}
        for _ in range(num_steps)
    ]


def reference_updates(case: Case, params, grads_list, learning_rate, first_step=1):
    """NumPy updates of ``case`` for a fixed ``params`` and a gradient stream (open loop)."""
    theta = {k: np.asarray(v, np.float64) for k, v in params.items()}
    if case.family is not None:
        name, hyper = case.family
        opt = fam.make(name, learning_rate=learning_rate, **hyper)
        state = dict(opt.init(theta), count=first_step - 1)
        out = []
        for grads in grads_list:
            updates, state = opt.update({k: np.asarray(g, np.float64) for k, g in grads.items()}, state, theta)
            out.append(updates)
        return out
    moments = {k: ref.zeros_like(v) for k, v in theta.items()}
    out = []
    for t, grads in enumerate(grads_list, start=first_step):
        updates = {}
        for key, value in theta.items():
            s = ref.step(np.asarray(grads[key], np.float64) + case.coupled_decay * value, moments[key], t, case.variant)
            moments[key] = ref.Moments(s.mu, s.nu, getattr(s, "nu_max", None))
            updates[key] = -learning_rate * (s.update + case.decoupled_decay * value)
        out.append(updates)
    return out


# The core's states: optax's own, and the newer members' (AdEMAMix's is optax.contrib's).
FAMILY_STATES = (*CORE_STATES, optax.contrib.ScaleByAdemamixState, adamjax.NadamState)


def is_adam_state(x):
    return isinstance(x, FAMILY_STATES)


def reference_closed_loop(case: Case, learning_rate, num_steps):
    """The reference's closed loop on the contract's quadratic (the NumPy variant, or the member's transcription)."""
    if case.family is not None:
        name, hyper = case.family
        return fam.run(name, lambda p, t: grad_numpy(p), INIT, num_steps, learning_rate=learning_rate, **hyper)
    return ref.closed_loop(
        grad_numpy,
        INIT,
        case.variant,
        learning_rate,
        num_steps,
        coupled_decay=case.coupled_decay,
        decoupled_decay=case.decoupled_decay,
    )


def adam_states(state):
    """Every adamjax core state inside an optax (chained, wrapped) state."""
    return [s for s in jax.tree.leaves(state, is_leaf=is_adam_state) if is_adam_state(s)]


def replace_adam_states(state, **fields):
    return jax.tree.map(lambda s: s._replace(**fields) if is_adam_state(s) else s, state, is_leaf=is_adam_state)


def assert_tree_close(actual, expected, rtol, atol=0.0):
    assert jax.tree.structure(actual) == jax.tree.structure(expected)
    for a, e in zip(jax.tree.leaves(actual), jax.tree.leaves(expected), strict=True):
        np.testing.assert_allclose(np.asarray(a, np.float64), np.asarray(e, np.float64), rtol=rtol, atol=atol)


def avals(tree):
    return jax.tree.structure(tree), [(jnp.shape(x), jnp.result_type(x)) for x in jax.tree.leaves(tree)]


@every_optimizer
def test_converges_along_the_numpy_trajectory(name):
    case = CASES[name]
    tx = case.make(0.05)

    @jax.jit
    def step(params, state):
        updates, state = tx.update(grad_jax(params), state, params)
        return optax.apply_updates(params, updates), state

    params = params_in(jnp.float64)
    state = tx.init(params)
    path = []
    for _ in range(300):
        params, state = step(params, state)
        path.append(params)
    expected = reference_closed_loop(case, 0.05, 300)
    for t in case.steps_compared:
        assert_tree_close(path[t], expected[t], rtol=1e-9, atol=1e-9)
    assert loss_numpy(path[-1]) < case.loss_ratio * loss_numpy(INIT)


DTYPE_TOLERANCE = {jnp.float64: 1e-12, jnp.float32: 1e-5, jnp.bfloat16: 2e-2, jnp.float16: 5e-3}


@every_optimizer
@pytest.mark.parametrize("dtype", list(DTYPE_TOLERANCE), ids=lambda d: jnp.dtype(d).name)
def test_updates_keep_the_gradient_dtype(name, dtype):
    case = CASES[name]
    tx = case.make(1e-2)
    params = params_in(dtype)
    state = tx.init(params)
    grads_list = gradient_sequence(3, dtype)
    expected = reference_updates(case, params, grads_list, 1e-2)
    for grads, want in zip(grads_list, expected, strict=True):
        updates, state = tx.update(grads, state, params)
        for key in params:
            assert updates[key].dtype == jnp.dtype(dtype)
            assert bool(jnp.all(jnp.isfinite(updates[key])))
            np.testing.assert_allclose(
                np.asarray(updates[key], np.float64),
                want[key],
                rtol=DTYPE_TOLERANCE[dtype],
                atol=1e-2 * DTYPE_TOLERANCE[dtype],
            )
        new_params = optax.apply_updates(params, updates)
        assert all(new_params[key].dtype == jnp.dtype(dtype) for key in params)


@every_optimizer
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16], ids=["float32", "bfloat16"])
def test_update_keeps_the_state_structure(name, dtype):
    case = CASES[name]
    tx = case.make(1e-2)
    params = params_in(dtype)
    state = tx.init(params)
    before = avals(state)
    for grads in gradient_sequence(2, dtype):
        _, new_state = tx.update(grads, state, params)
        assert avals(new_state) == before
        # ... and the update did move the state (the comparison is not of two identical objects).
        assert int(adam_states(new_state)[0].count) == int(adam_states(state)[0].count) + 1
        state = new_state


@every_optimizer
def test_no_recompilation_after_the_first_step(name):
    case = CASES[name]
    tx = case.make(1e-2)
    traces = []

    def step(params, state):
        traces.append(None)  # runs only while tracing
        updates, state = tx.update(grad_jax(params), state, params)
        return optax.apply_updates(params, updates), state

    step = jax.jit(step)
    params = params_in(jnp.float32)
    state = tx.init(params)
    counts = []
    for _ in range(4):
        params, state = step(params, state)
        counts.append(len(traces))
    assert counts == [1, 1, 1, 1]
    assert int(adam_states(state)[0].count) == 4


@every_optimizer
def test_inside_chain_with_clip_by_global_norm(name):
    case = CASES[name]
    max_norm = 0.5
    chained = optax.chain(optax.clip_by_global_norm(max_norm), case.make(1e-2))
    alone = case.make(1e-2)
    params = params_in(jnp.float64)
    chained_state, alone_state = chained.init(params), alone.init(params)
    for grads in gradient_sequence(3, jnp.float64):
        norm = math.sqrt(sum(float(jnp.sum(g**2)) for g in grads.values()))
        assert norm > max_norm
        clipped = {k: g * (max_norm / norm) for k, g in grads.items()}
        got, chained_state = chained.update(grads, chained_state, params)
        want, alone_state = alone.update(clipped, alone_state, params)
        assert_tree_close(got, want, rtol=1e-12, atol=1e-15)


@every_optimizer
def test_inside_optax_masked(name):
    case = CASES[name]
    mask = {"w": True, "m": False, "s": True}
    masked = optax.masked(case.make(1e-2), mask)
    alone = case.make(1e-2)
    params = params_in(jnp.float64)
    sub_params = {k: params[k] for k in ("w", "s")}
    masked_state, alone_state = masked.init(params), alone.init(sub_params)
    for grads in gradient_sequence(3, jnp.float64):
        got, masked_state = masked.update(grads, masked_state, params)
        want, alone_state = alone.update({k: grads[k] for k in ("w", "s")}, alone_state, sub_params)
        assert_tree_close({k: got[k] for k in ("w", "s")}, want, rtol=1e-14)
        # optax.masked passes the masked-out leaves through untouched.
        np.testing.assert_array_equal(got["m"], grads["m"])


PARAMETERS_OF_MULTISTEPS = inspect.signature(optax.MultiSteps).parameters


@every_optimizer
def test_inside_optax_multisteps(name):
    case = CASES[name]
    # optax 0.2.8 accumulates in float32 unless told; older releases in the parameters' dtype (float64 here).
    wide = {"accumulator_dtype": jnp.float64} if "accumulator_dtype" in PARAMETERS_OF_MULTISTEPS else {}
    multi = optax.MultiSteps(case.make(1e-2), every_k_schedule=2, **wide)
    alone = case.make(1e-2)
    params = params_in(jnp.float64)
    # MultiSteps divides float gradients by its int32 step counter, which strict
    # promotion rejects; jitted once, since eagerly its lax.cond compiles on every call.
    with jax.numpy_dtype_promotion("standard"):
        update = jax.jit(multi.update)
        multi_state, alone_state = multi.init(params), alone.init(params)
        grads_list = gradient_sequence(6, jnp.float64)
        for first, second in zip(grads_list[::2], grads_list[1::2], strict=True):
            skipped, multi_state = update(first, multi_state, params)
            assert all(not np.any(np.asarray(u)) for u in jax.tree.leaves(skipped))
            got, multi_state = update(second, multi_state, params)
            mean = jax.tree.map(lambda a, b: (a + b) / 2, first, second)
            want, alone_state = alone.update(mean, alone_state, params)
            assert_tree_close(got, want, rtol=1e-12, atol=1e-15)
    assert int(adam_states(multi_state)[0].count) == 3


@every_optimizer
def test_inside_optax_apply_if_finite_skips_a_nan_step(name):
    case = CASES[name]
    guarded = optax.apply_if_finite(case.make(1e-2), max_consecutive_errors=3)
    alone = case.make(1e-2)
    params = params_in(jnp.float64)
    update = jax.jit(guarded.update)
    guarded_state, alone_state = guarded.init(params), alone.init(params)
    g1, g2, g3 = gradient_sequence(3, jnp.float64)

    got, guarded_state = update(g1, guarded_state, params)
    want, alone_state = alone.update(g1, alone_state, params)
    assert_tree_close(got, want, rtol=1e-14)

    inner_before = guarded_state.inner_state
    poisoned = dict(g2, w=g2["w"].at[1].set(jnp.nan))
    skipped, guarded_state = update(poisoned, guarded_state, params)
    assert all(not np.any(np.asarray(u)) for u in jax.tree.leaves(skipped))
    assert int(guarded_state.notfinite_count) == 1
    assert int(adam_states(guarded_state.inner_state)[0].count) == 1
    assert_tree_close(guarded_state.inner_state, inner_before, rtol=0.0)

    got, guarded_state = update(g3, guarded_state, params)
    want, alone_state = alone.update(g3, alone_state, params)
    assert_tree_close(got, want, rtol=1e-14)
    assert int(adam_states(guarded_state.inner_state)[0].count) == 2


def check_injected_matches_plain(injected, plain, steps, rtol, atol):
    """Runs the injected optimizer under one jit beside the plain one; returns the last state.

    Each step also re-runs the injected update with the learning rate in its
    state scaled by 2: the update must scale by 2 with no new compilation.
    """
    params = params_in(jnp.float32)
    injected_state, plain_state = injected.init(params), plain.init(params)
    assert injected_state.hyperparams["learning_rate"].dtype == jnp.dtype(jnp.float32)
    traces = []

    def update(grads, state):
        traces.append(None)
        return injected.update(grads, state, params)

    update = jax.jit(update)
    for grads in gradient_sequence(steps, jnp.float32):
        got, next_state = update(grads, injected_state)
        want, plain_state = plain.update(grads, plain_state, params)
        assert_tree_close(got, want, rtol=rtol, atol=atol)
        rate = injected_state.hyperparams["learning_rate"]
        doubled_state = injected_state._replace(hyperparams=dict(injected_state.hyperparams, learning_rate=2 * rate))
        doubled, _ = update(grads, doubled_state)
        assert_tree_close(doubled, jax.tree.map(lambda u: 2 * u, got), rtol=1e-6, atol=1e-10)
        injected_state = next_state
    assert len(traces) == 1
    return injected_state


@every_optimizer
def test_inject_hyperparams_learning_rate(name):
    case = CASES[name]
    injected = optax.inject_hyperparams(case.make)(learning_rate=1e-3)
    check_injected_matches_plain(injected, case.make(1e-3), steps=3, rtol=1e-6, atol=1e-10)


ALIASES = {name: getattr(adamjax, name) for name in ("adam", "adamw", "amsgrad", "adamax", "nadam", "adabelief")}


@pytest.mark.parametrize("name", sorted(ALIASES))
def test_inject_hyperparams_of_the_alias_itself(name):
    # optax.inject_hyperparams(adamjax.adam)(learning_rate=1e-3) injects every numeric
    # argument (b1, b2, eps, ..., power), so all of them arrive traced in `update`.
    injected = optax.inject_hyperparams(ALIASES[name])(learning_rate=1e-3)
    assert "b2" in injected.init(params_in(jnp.float32)).hyperparams
    final_state = check_injected_matches_plain(injected, ALIASES[name](1e-3), steps=5, rtol=1e-5, atol=1e-9)
    assert int(adam_states(final_state)[0].count) == 5


@every_optimizer
def test_none_leaves_pass_through(name):
    case = CASES[name]
    tx = case.make(1e-2)
    params = dict(params_in(jnp.float64), frozen=None)
    dense = {k: v for k, v in params.items() if v is not None}
    state, dense_state = tx.init(params), tx.init(dense)
    for grads in gradient_sequence(2, jnp.float64):
        updates, state = tx.update(dict(grads, frozen=None), state, params)
        want, dense_state = tx.update(grads, dense_state, dense)
        assert updates["frozen"] is None
        assert_tree_close({k: v for k, v in updates.items() if k != "frozen"}, want, rtol=1e-14)
        new_params = optax.apply_updates(params, updates)
        assert new_params["frozen"] is None


def run_closed_loop(make, learning_rate, num_steps=3):
    """Builds the optimizer from ``learning_rate`` (perhaps traced) and takes ``num_steps`` steps."""
    tx = make(learning_rate)
    params = params_in(jnp.float64)
    state = tx.init(params)
    for _ in range(num_steps):
        updates, state = tx.update(grad_jax(params), state, params)
        params = optax.apply_updates(params, updates)
    return params


@every_optimizer
def test_vmap_over_a_traced_learning_rate_equals_separate_runs(name):
    case = CASES[name]
    rates = [1e-3, 2e-2, 0.1]
    batched = jax.vmap(lambda lr: run_closed_loop(case.make, lr))(jnp.asarray(rates, jnp.float64))
    for i, rate in enumerate(rates):
        separate = run_closed_loop(case.make, rate)
        assert_tree_close(jax.tree.map(lambda x, i=i: x[i], batched), separate, rtol=1e-12, atol=1e-15)
    # Different rates gave different runs.
    assert float(jnp.max(jnp.abs(batched["w"][0] - batched["w"][2]))) > 1e-3


def test_vmap_over_learning_rate_and_b1_for_adam():
    def run(lr, b1):
        return run_closed_loop(lambda rate: adamjax.adam(rate, b1=b1), lr)

    rates, b1s = [1e-2, 5e-2, 0.1], [0.0, 0.5, 0.95]
    batched = jax.vmap(run)(jnp.asarray(rates, jnp.float64), jnp.asarray(b1s, jnp.float64))
    for i, (rate, b1) in enumerate(zip(rates, b1s, strict=True)):
        separate = run_closed_loop(lambda r, b1=b1: adamjax.adam(r, b1=b1), rate)
        assert_tree_close(jax.tree.map(lambda x, i=i: x[i], batched), separate, rtol=1e-12, atol=1e-15)
        expected = ref.closed_loop(grad_numpy, INIT, ref.Variant(b1=b1), rate, 3)[-1]
        assert_tree_close(separate, expected, rtol=1e-12, atol=1e-15)


@every_optimizer
@pytest.mark.parametrize("dtype", [jnp.float16, jnp.bfloat16], ids=["float16", "bfloat16"])
def test_zero_gradients_in_low_precision_never_give_nan(name, dtype):
    case = CASES[name]
    tx = case.make(1e-2)
    params = params_in(dtype)
    state = tx.init(params)
    zeros = jax.tree.map(jnp.zeros_like, params)
    decays = case.coupled_decay or case.decoupled_decay
    if case.family is not None:
        decays = fam.make(case.family[0], **case.family[1]).hyper.get("weight_decay", 0.0)
    for _ in range(3):
        updates, state = tx.update(zeros, state, params)
        for key, u in updates.items():
            assert u.dtype == jnp.dtype(dtype)
            assert bool(jnp.all(jnp.isfinite(u))), key
            if not decays:
                np.testing.assert_array_equal(np.asarray(u, np.float32), 0.0)


def test_optax_adam_gives_nan_for_float16_zero_gradients():
    # Why adamjax computes in float32: in float16, optax's eps=1e-8 rounds to 0
    # and 0 / (sqrt(0) + 0) is NaN. adamjax gives exactly 0 (test above).
    params = params_in(jnp.float16)
    zeros = jax.tree.map(jnp.zeros_like, params)
    assert float(jnp.asarray(1e-8, jnp.float16)) == 0.0
    with jax.numpy_dtype_promotion("standard"):  # optax mixes Python floats with int32
        tx = optax.adam(1e-2)
        updates, _ = tx.update(zeros, tx.init(params), params)
    assert all(bool(jnp.all(jnp.isnan(u))) for u in updates.values())
    ours, _ = adamjax.adam(1e-2).update(zeros, adamjax.adam(1e-2).init(params), params)
    assert all(not np.any(np.asarray(u, np.float32)) for u in ours.values())


@every_optimizer
def test_step_counter_saturates_at_int32_max(name):
    case = CASES[name]
    tx = case.make(1e-2)
    params = params_in(jnp.float32)
    state = replace_adam_states(tx.init(params), count=jnp.asarray(INT32_MAX - 1, jnp.int32))
    grads_list = gradient_sequence(3, jnp.float32)
    # From here on every step is step 2**31 - 1 for adamjax; in float64 0.9**t and
    # 0.999**t are exactly 0 for any t this large, so the reference's own t does not matter.
    expected = reference_updates(case, params, grads_list, 1e-2, first_step=INT32_MAX)
    for t, grads in enumerate(grads_list):
        updates, state = tx.update(grads, state, params)
        assert int(adam_states(state)[0].count) == INT32_MAX
        assert adam_states(state)[0].count.dtype == jnp.int32
        for key, u in updates.items():
            assert bool(jnp.all(jnp.isfinite(u)))
            np.testing.assert_allclose(np.asarray(u, np.float64), expected[t][key], rtol=1e-5, atol=1e-9)


def float32(value):
    return jnp.asarray(value, jnp.float32)


ARRAY_HYPERPARAMETERS = {
    "adam_learning_rate": (lambda: adamjax.adam(float32(1e-2)), Case(None, ref.Variant())),
    "adam_weight_decay": (
        lambda: adamjax.adam(1e-2, weight_decay=float32(1e-2)),
        Case(None, ref.Variant(), coupled_decay=1e-2),
    ),
    "adamw_learning_rate": (lambda: adamjax.adamw(float32(1e-2)), Case(None, ref.Variant(), decoupled_decay=1e-4)),
    "adamw_weight_decay": (
        lambda: adamjax.adamw(1e-2, weight_decay=float32(1e-2)),
        Case(None, ref.Variant(), decoupled_decay=1e-2),
    ),
    # A schedule's value is a float32 array too (optax's schedules compute in float32).
    "adam_weight_decay_schedule": (
        lambda: adamjax.adam(1e-2, weight_decay=lambda count: float32(1e-2)),
        Case(None, ref.Variant(), coupled_decay=1e-2),
    ),
    "adamw_weight_decay_schedule": (
        lambda: adamjax.adamw(1e-2, weight_decay=lambda count: float32(1e-2)),
        Case(None, ref.Variant(), decoupled_decay=1e-2),
    ),
    "adam_learning_rate_schedule": (
        lambda: adamjax.adam(lambda count: float32(1e-2)),
        Case(None, ref.Variant()),
    ),
}


@pytest.mark.parametrize("row", sorted(ARRAY_HYPERPARAMETERS))
def test_float32_array_hyperparameters_keep_bfloat16_updates(row):
    # What optax.inject_hyperparams(..., hyperparam_dtype=jnp.float32) passes:
    # float32 scalars next to bfloat16 parameters. The updates stay bfloat16.
    make, reference = ARRAY_HYPERPARAMETERS[row]
    params = params_in(jnp.bfloat16)
    grads = gradient_sequence(1, jnp.bfloat16)[0]
    tx = make()
    updates, _ = tx.update(grads, tx.init(params), params)
    want = reference_updates(reference, params, [grads], 1e-2)[0]
    for key, u in updates.items():
        assert u.dtype == jnp.dtype(jnp.bfloat16), key
        np.testing.assert_allclose(np.asarray(u, np.float64), want[key], rtol=2e-2, atol=1e-4)
