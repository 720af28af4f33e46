"""Hyperparameters as data: changed between steps without recompiling, and batched with ``jax.vmap``.

The optimizers are built with ``optax.inject_hyperparams``, and
``adamjax.set_hyperparams`` writes new values into their states. Every run is
checked against an independent one: the plain alias rebuilt with each step's
values (Python floats, no injection), optax's own ``adamw``, or the separate,
unbatched run of each member of a batch. The hyperparameter values are
dyadic (0.875, 1 - 2**-7, ...), so float32 and Python floats agree exactly and
float32 runs can be compared at 1e-6.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import adamjax
from adamjax import optimizers

TARGET = {"w": np.array([[1.0, -2.0, 0.5], [0.3, 0.0, -0.7]]), "b": np.array([0.4, -1.1, 2.0])}
CURVATURE = {"w": np.array([[1.0, 3.0, 0.5], [2.0, 0.25, 1.5]]), "b": np.array([0.7, 1.2, 4.0])}
NUM_STEPS = 6
RTOL = 1e-6
ATOL = 1e-7  # parameters crossing zero

# One setting per step; each changes every hyperparameter the aliases share.
SCHEDULE = [
    {"learning_rate": 2.0**-5, "b1": 0.875, "b2": 0.9921875, "eps": 1e-8, "weight_decay": 2.0**-7},
    {"learning_rate": 2.0**-4, "b1": 0.75, "b2": 0.984375, "eps": 1e-6, "weight_decay": 2.0**-5},
    {"learning_rate": 2.0**-6, "b1": 0.9375, "b2": 0.99609375, "eps": 1e-7, "weight_decay": 0.0},
    {"learning_rate": 2.0**-3, "b1": 0.5, "b2": 0.96875, "eps": 1e-5, "weight_decay": 2.0**-4},
    {"learning_rate": 2.0**-5, "b1": 0.875, "b2": 0.9921875, "eps": 1e-8, "weight_decay": 2.0**-6},
    {"learning_rate": 2.0**-4, "b1": 0.0, "b2": 0.5, "eps": 1e-3, "weight_decay": 2.0**-7},
]
ALIASES = ("adabelief", "adam", "adamax", "adamw", "amsgrad", "nadam")


def make_params(seed: int = 0, dtype=jnp.float32):
    rng = np.random.default_rng(seed)
    return {key: jnp.asarray(rng.normal(0.0, 1.0, value.shape), dtype) for key, value in TARGET.items()}


def grad_fn(params):
    """Gradient of sum(curvature/2 (p - target)^2 + 0.1 sin(3 p)), in each leaf's dtype."""
    return {
        key: jnp.asarray(CURVATURE[key], p.dtype) * (p - jnp.asarray(TARGET[key], p.dtype)) + 0.3 * jnp.cos(3 * p)
        for key, p in params.items()
    }


def stack(trees):
    return jax.tree.map(lambda *xs: jnp.stack(xs), *trees)


def member(tree, index):
    return jax.tree.map(lambda x: x[index], tree)


def assert_close(actual, expected, rtol=RTOL, atol=ATOL):
    assert jax.tree.structure(actual) == jax.tree.structure(expected)
    for a, e in zip(jax.tree.leaves(actual), jax.tree.leaves(expected), strict=True):
        np.testing.assert_allclose(np.asarray(a, np.float64), np.asarray(e, np.float64), rtol=rtol, atol=atol)


def counted_step(tx):
    """A jitted closed-loop step and the list it appends to each time it is traced."""
    traces = []

    def step(params, state):
        traces.append(None)  # runs only while tracing
        updates, state = tx.update(grad_fn(params), state, params)
        return optax.apply_updates(params, updates), state

    return jax.jit(step), traces


def plain_run(name, settings, params):
    """The reference: the alias rebuilt from Python floats at every step, state carried over, eagerly."""
    state = getattr(adamjax, name)(**settings[0]).init(params)
    for values in settings:
        tx = getattr(adamjax, name)(**values)
        updates, state = tx.update(grad_fn(params), state, params)
        params = optax.apply_updates(params, updates)
    return params


@pytest.mark.parametrize("name", ALIASES)
def test_changing_every_hyperparameter_between_steps_does_not_recompile(name):
    tx = optax.inject_hyperparams(getattr(adamjax, name))(**SCHEDULE[0])
    step, traces = counted_step(tx)
    params = make_params()
    state = tx.init(params)
    for values in SCHEDULE:
        state = adamjax.set_hyperparams(state, **values)
        params, state = step(params, state)
    assert len(traces) == 1
    assert step._cache_size() == 1
    assert_close(params, plain_run(name, SCHEDULE, make_params()))
    # The changes mattered: holding the first setting gives other numbers.
    held = plain_run(name, SCHEDULE[:1] * NUM_STEPS, make_params())
    assert float(jnp.max(jnp.abs(params["w"] - held["w"]))) > 1e-2
    stored = adamjax.get_hyperparams(state)
    assert {k: float(stored[k]) for k in SCHEDULE[-1]} == {k: float(np.float32(v)) for k, v in SCHEDULE[-1].items()}


def test_changing_hyperparameters_matches_optax_adamw():
    tx = optax.inject_hyperparams(adamjax.adamw)(**SCHEDULE[0])
    step, _ = counted_step(tx)
    with jax.numpy_dtype_promotion("standard"):  # optax's arithmetic mixes Python floats and int32
        reference = optax.inject_hyperparams(optax.adamw)(**SCHEDULE[0])
        reference_step, _ = counted_step(reference)
        params = expected = make_params()
        state, expected_state = tx.init(params), reference.init(expected)
        for values in SCHEDULE:
            params, state = step(params, adamjax.set_hyperparams(state, **values))
            expected_state = optax.tree.set(expected_state, **{k: jnp.float32(v) for k, v in values.items()})
            expected, expected_state = reference_step(expected, expected_state)
    assert_close(params, expected)


def test_triple_with_hyperparameters_in_its_state():
    traces = []
    injected = optax.inject_hyperparams(adamjax.adamw)(**SCHEDULE[0])

    def update(updates, state, params=None):
        traces.append(None)  # runs only while the triple's update is traced
        return injected.update(updates, state, params)

    init_fn, update_fn, get_params = optimizers.from_transformation(optax.GradientTransformation(injected.init, update))
    opt_state = init_fn(make_params())
    for i, values in enumerate(SCHEDULE):
        opt_state = adamjax.set_hyperparams(opt_state, **values)
        opt_state = update_fn(i, grad_fn(get_params(opt_state)), opt_state)
    assert len(traces) == 1
    assert_close(get_params(opt_state), plain_run("adamw", SCHEDULE, make_params()))
    assert float(adamjax.get_hyperparams(opt_state)["learning_rate"]) == SCHEDULE[-1]["learning_rate"]


def batched_settings(settings):
    return {key: jnp.asarray([s[key] for s in settings], jnp.float32) for key in settings[0]}


def test_sweep_over_hyperparameters_in_one_compiled_step():
    sweep = SCHEDULE[:4]
    tx = optax.inject_hyperparams(adamjax.adamw)(**sweep[0])
    params = make_params()
    state = tx.init(params)
    states = jax.vmap(lambda values: adamjax.set_hyperparams(state, **values))(batched_settings(sweep))
    batch_params = stack([params] * len(sweep))
    step, traces = counted_step(tx)
    batch_step = jax.jit(jax.vmap(step.__wrapped__))
    for _ in range(NUM_STEPS):
        batch_params, states = batch_step(batch_params, states)
    assert len(traces) == 1 and batch_step._cache_size() == 1

    for index, values in enumerate(sweep):
        separate, separate_state = params, adamjax.set_hyperparams(state, **values)
        for _ in range(NUM_STEPS):
            separate, separate_state = step(separate, separate_state)
        assert_close(member(batch_params, index), separate)
        assert_close(member(states, index), separate_state)
        assert_close(member(batch_params, index), plain_run("adamw", [values] * NUM_STEPS, params))
    assert len(traces) == 2  # the batched trace, and one for all the separate runs


def test_ensemble_of_models_in_one_compiled_step():
    tx = adamjax.adamw(2.0**-5, weight_decay=2.0**-6)
    models = [make_params(seed) for seed in range(4)]
    step, traces = counted_step(tx)
    batch_step = jax.jit(jax.vmap(step.__wrapped__))
    batch_params = stack(models)
    states = jax.vmap(tx.init)(batch_params)
    for _ in range(NUM_STEPS):
        batch_params, states = batch_step(batch_params, states)
    assert batch_step._cache_size() == 1
    for index, model in enumerate(models):
        separate, separate_state = model, tx.init(model)
        for _ in range(NUM_STEPS):
            separate, separate_state = step(separate, separate_state)
        assert_close(member(batch_params, index), separate)
        assert_close(member(states, index), separate_state)
    assert len(traces) == 2


def test_sweep_and_ensemble_with_the_triple_api():
    init_fn, update_fn, get_params = optimizers.from_transformation(
        optax.inject_hyperparams(adamjax.adam)(**SCHEDULE[0])
    )
    sweep = SCHEDULE[:3]
    models = [make_params(seed) for seed in range(len(sweep))]
    # Each member: its own model and its own hyperparameters.
    states = jax.vmap(lambda p, values: adamjax.set_hyperparams(init_fn(p), **values))(
        stack(models), batched_settings(sweep)
    )
    traces = []

    def step(i, opt_state):
        traces.append(None)
        return update_fn(i, grad_fn(get_params(opt_state)), opt_state)

    batch_step = jax.jit(jax.vmap(step, in_axes=(None, 0)))
    for i in range(NUM_STEPS):
        states = batch_step(i, states)
    assert len(traces) == 1 and batch_step._cache_size() == 1
    for index, (model, values) in enumerate(zip(models, sweep, strict=True)):
        expected = plain_run("adam", [values] * NUM_STEPS, model)
        assert_close(member(get_params(states), index), expected)


def test_ensemble_with_a_classic_triple():
    init_fn, update_fn, get_params = optimizers.adam(2.0**-5, b1=0.875, b2=0.9921875)
    models = [make_params(seed) for seed in range(3)]
    traces = []

    def step(i, opt_state):
        traces.append(None)
        return update_fn(i, grad_fn(get_params(opt_state)), opt_state)

    batch_step = jax.jit(jax.vmap(step, in_axes=(None, 0)))
    states = jax.vmap(init_fn)(stack(models))
    for i in range(NUM_STEPS):
        states = batch_step(i, states)
    assert len(traces) == 1
    for index, model in enumerate(models):
        separate = init_fn(model)
        for i in range(NUM_STEPS):
            separate = update_fn(i, grad_fn(get_params(separate)), separate)
        assert_close(member(get_params(states), index), get_params(separate))
        # example_libraries' Adam is optax's with eps outside the root, so the alias is a reference too.
        expected = plain_run("adam", [{"learning_rate": 2.0**-5, "b1": 0.875, "b2": 0.9921875}] * NUM_STEPS, model)
        assert_close(get_params(separate), expected)


def test_get_hyperparams_finds_them_anywhere_in_a_state():
    inner = optax.inject_hyperparams(adamjax.adamw)(learning_rate=2.0**-5, weight_decay=2.0**-7)
    tx = optax.chain(optax.clip_by_global_norm(1.0), inner)
    params = make_params()
    state = tx.init(params)
    hyperparams = adamjax.get_hyperparams(state)
    assert sorted(hyperparams) == ["b1", "b2", "eps", "eps_root", "learning_rate", "weight_decay"]
    assert float(hyperparams["weight_decay"]) == 2.0**-7 and hyperparams["weight_decay"].dtype == jnp.float32
    state = adamjax.set_hyperparams(state, b1=0.5)
    assert float(adamjax.get_hyperparams(state)["b1"]) == 0.5
    # The chain's state still works with the chain, with the new b1.
    with jax.numpy_dtype_promotion("standard"):
        clipped, _ = optax.clip_by_global_norm(1.0).update(grad_fn(params), optax.EmptyState())
    updates, _ = tx.update(grad_fn(params), state, params)
    expected, _ = adamjax.adamw(2.0**-5, b1=0.5, weight_decay=2.0**-7).update(
        clipped, adamjax.adamw(1.0).init(params), params
    )
    assert_close(updates, expected)


def test_a_scheduled_hyperparameter_is_read_but_not_set():
    schedule = optax.linear_schedule(2.0**-4, 2.0**-6, 4)
    tx = optax.inject_hyperparams(adamjax.adam, hyperparam_dtype=jnp.float32)(learning_rate=schedule)
    params = make_params()
    state = tx.init(params)
    for _ in range(3):
        _, state = tx.update(grad_fn(params), state, params)
    # The value used at the last of the three steps (count 2).
    assert float(adamjax.get_hyperparams(state)["learning_rate"]) == pytest.approx(float(schedule(2)), rel=1e-7)
    with pytest.raises(ValueError, match=r"`set_hyperparams\(learning_rate=...\)`: 'learning_rate' follows a schedule"):
        adamjax.set_hyperparams(state, learning_rate=1e-3)
    assert float(adamjax.get_hyperparams(adamjax.set_hyperparams(state, b2=0.5))["b2"]) == 0.5


def test_set_keeps_the_stored_dtype_and_shape():
    tx = optax.inject_hyperparams(adamjax.adam)(learning_rate=1e-3)
    state = tx.init(make_params(dtype=jnp.float64))
    # x64 is on in the tests: a Python float would otherwise arrive as float64 or weakly typed.
    state32 = tx.init(make_params())
    new = adamjax.set_hyperparams(state32, learning_rate=2.0**-3, b2=np.float64(0.5))
    for key in ("learning_rate", "b2"):
        value = adamjax.get_hyperparams(new)[key]
        assert value.dtype == jnp.float32 and value.shape == () and not value.weak_type
    assert float(adamjax.get_hyperparams(new)["learning_rate"]) == 0.125
    assert adamjax.get_hyperparams(state)["learning_rate"].dtype == jnp.float64
    # A traced value (inside jit) is accepted unchecked and cast the same way.
    traced = jax.jit(lambda s, rate: adamjax.set_hyperparams(s, learning_rate=rate))(state32, jnp.float64(0.25))
    assert adamjax.get_hyperparams(traced)["learning_rate"].dtype == jnp.float32
    assert float(adamjax.get_hyperparams(traced)["learning_rate"]) == 0.25
    # set_hyperparams on a batch of states: a scalar fills the batch.
    batch = jax.vmap(lambda rate: adamjax.set_hyperparams(state32, learning_rate=rate))(jnp.arange(3.0) / 8)
    filled = adamjax.set_hyperparams(batch, eps=1e-6)
    np.testing.assert_array_equal(adamjax.get_hyperparams(filled)["eps"], np.full(3, 1e-6, np.float32))
    np.testing.assert_array_equal(adamjax.get_hyperparams(filled)["learning_rate"], [0.0, 0.125, 0.25])


@pytest.fixture(scope="module")
def injected_state():
    return optax.inject_hyperparams(adamjax.adamw)(learning_rate=1e-3).init(make_params())


@pytest.mark.parametrize(
    ("values", "error", "match"),
    [
        ({"b1": 1.0}, ValueError, r"`set_hyperparams\(b1=...\)` must be in \[0, 1\); got 1.0\."),
        ({"b2": -0.5}, ValueError, r"`set_hyperparams\(b2=...\)` must be in \[0, 1\); got -0.5\."),
        ({"learning_rate": -1e-3}, ValueError, r"`set_hyperparams\(learning_rate=...\)` must be in \[0, inf\)"),
        ({"eps": float("nan")}, ValueError, r"`set_hyperparams\(eps=...\)` must be in \[0, inf\); got nan\."),
        ({"weight_decay": float("inf")}, ValueError, r"`set_hyperparams\(weight_decay=...\)` must be finite"),
        ({"b1": np.array([0.5, 0.9, 1.5])}, ValueError, r"`set_hyperparams\(b1=...\)` must be in \[0, 1\); got 1.5\."),
        ({"b1": "0.9"}, TypeError, r"`set_hyperparams\(b1=...\)` must be a real number or an array of them"),
        ({"b1": True}, TypeError, r"`set_hyperparams\(b1=...\)` must be a real number"),
        ({"lr": 1e-3}, TypeError, r"`set_hyperparams` got 'lr', which the state does not hold .* 'learning_rate'"),
        ({"learning_rate": np.ones(3)}, ValueError, r"has shape \(3,\) but the state stores shape \(\)\. .*jax\.vmap"),
    ],
)
def test_bad_values_are_rejected_naming_the_argument(injected_state, values, error, match):
    with pytest.raises(error, match=match):
        adamjax.set_hyperparams(injected_state, **values)


def test_states_without_injected_hyperparameters_are_rejected():
    params = make_params()
    for state in (adamjax.adam(1e-3).init(params), optimizers.adam(1e-3).init_fn(params)):
        with pytest.raises(ValueError, match=r"`set_hyperparams`: the state holds no injected hyperparameters"):
            adamjax.set_hyperparams(state, learning_rate=1e-3)
        with pytest.raises(ValueError, match=r"`get_hyperparams`: the state holds no injected .*inject_hyperparams"):
            adamjax.get_hyperparams(state)


def test_a_name_held_twice_is_ambiguous():
    inject = optax.inject_hyperparams(adamjax.adam)
    tx = optax.chain(inject(learning_rate=1e-3), inject(learning_rate=1e-2))
    state = tx.init(make_params())
    with pytest.raises(
        ValueError, match=r"'learning_rate' is a hyperparameter of two injected .*\(at \[0\] and at \[1\]\)"
    ):
        adamjax.set_hyperparams(state, learning_rate=1e-3)
    # Each part on its own is unambiguous.
    assert float(adamjax.get_hyperparams(state[1])["learning_rate"]) == pytest.approx(1e-2, rel=1e-7)


def test_low_precision_rounding_and_python_ints_are_explained():
    bf16_state = optax.inject_hyperparams(adamjax.adam)(learning_rate=1e-3, b2=0.99).init(
        make_params(dtype=jnp.bfloat16)
    )
    assert adamjax.get_hyperparams(bf16_state)["b2"].dtype == jnp.bfloat16
    with pytest.raises(ValueError, match=r"stores 'b2' as bfloat16.*hyperparam_dtype=jnp.float32"):
        adamjax.set_hyperparams(bf16_state, b2=0.999)  # 0.999 rounds to 1.0 in bfloat16
    int_state = optax.inject_hyperparams(adamjax.adam)(learning_rate=1).init(make_params())
    with pytest.raises(TypeError, match=r"stores 'learning_rate' as int\d+ because it was given as a Python int"):
        adamjax.set_hyperparams(int_state, learning_rate=1e-3)
    assert int(adamjax.get_hyperparams(adamjax.set_hyperparams(int_state, learning_rate=2))["learning_rate"]) == 2
