"""The native single-pass kernel and the flat triple: same numbers as the reference paths.

Every fast path is compared with (a) the pure-JAX path of the same call
(``ADAMJAX_DISABLE_NATIVE=1``), float32 to 1e-6 relative, and (b) an
independent reference: optax in float32, or the NumPy float64 transcription
of the paper. The tests also check that the kernel is really used where it
should be (the compiled HLO names it) and steps aside where it cannot run.
"""

from __future__ import annotations

import functools
from pathlib import Path

import baseline_kernel_worker
import jax
import jax.numpy as jnp
import numpy as np
import numpy_reference as ref
import optax
import pytest
from helpers import checkout_env, run_python
from jax.example_libraries import optimizers as example_optimizers

import adamjax
from adamjax import optimizers

KERNEL = "adamjax_adam_step"


@pytest.fixture
def pure_path(monkeypatch):
    """``pure_path(True)``: adamjax takes its pure-JAX path from here on; ``False``: the kernel.

    adamjax reads ``ADAMJAX_DISABLE_NATIVE`` when it traces a step, so the
    switch holds for every function jitted afterwards. The tests jit a new
    function on each path (a new closure, ``functools.partial`` or triple,
    never one ``jax.jit`` of the same function object, whose traces JAX would
    reuse). No ``jax.clear_caches()``: it made every program of the worker
    compile again.
    """

    def switch(disabled: bool) -> None:
        monkeypatch.setenv("ADAMJAX_DISABLE_NATIVE", "1" if disabled else "0")

    yield switch


def _params(dtype=jnp.float32, sizes=(70_000, 5, 1, 0)):
    rng = np.random.default_rng(0)
    tree = {f"w{i}": jnp.asarray(rng.normal(size=n), dtype) for i, n in enumerate(sizes)}
    tree["matrix"] = jnp.asarray(rng.normal(size=(6, 7)), dtype)
    tree["scalar"] = jnp.asarray(0.3, dtype)
    return tree


def _grads(params, t):
    rng = np.random.default_rng(100 + t)
    return jax.tree.map(
        lambda p: jnp.asarray(rng.normal(size=p.shape) + 0.1 * np.asarray(p, np.float64), p.dtype), params
    )


def _trajectory(tx, params, steps=12, *, fused=True):
    @jax.jit
    def apply(grads, state, params):
        return adamjax.apply_step(tx, grads, state, params)

    @jax.jit
    def two_calls(grads, state, params):
        updates, state = tx.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    step = apply if fused else two_calls
    state = tx.init(params)
    for t in range(steps):
        params, state = step(_grads(params, t), state, params)
    return params, state


def _assert_trees_close(actual, expected, rtol, atol=0.0):
    assert jax.tree.structure(actual) == jax.tree.structure(expected)
    for a, e in zip(jax.tree.leaves(actual), jax.tree.leaves(expected), strict=True):
        assert a.dtype == e.dtype and a.shape == e.shape
        np.testing.assert_allclose(np.asarray(a, np.float64), np.asarray(e, np.float64), rtol=rtol, atol=atol)


@pytest.mark.native
def test_the_kernel_is_built_and_loaded():
    # CI sets ADAMJAX_REQUIRE_NATIVE=1, so a broken build fails here instead of skipping (tests/conftest.py).
    assert adamjax.native_status() == "available"


def _hlo(fn, *args):
    return jax.jit(fn).lower(*args).compile().as_text()


@pytest.mark.slow
@pytest.mark.native
def test_the_baseline_loops_match_the_pure_path(tmp_path, pure_path):
    """The kernel's non-AVX2 loops, forced on this CPU, against the pure-JAX path (1e-6)."""
    out = tmp_path / "baseline.npz"
    env = checkout_env(ADAMJAX_KERNEL_BASELINE="1", JAX_PLATFORMS="cpu")
    run_python(Path(__file__).with_name("baseline_kernel_worker.py"), out, env=env, timeout=300)
    recorded = np.load(out)
    assert str(recorded["isa"]) == "baseline"
    assert adamjax._native.instruction_set() in ("avx2", "baseline")  # this process: the CPU's choice
    pure_path(True)
    for name, make in baseline_kernel_worker.CASES.items():
        for dtype_name, dtype in baseline_kernel_worker.DTYPES.items():
            expected = baseline_kernel_worker.trajectory(make, dtype)
            # A bfloat16 result can round the other way on a tie, and a last-bit difference (2**-8
            # relative) carries into later steps, as test_bfloat16_parameters_match_pure_path allows;
            # float32 parameters of order 1 that cancel to near 0 keep an absolute error of a few ulps.
            low = "bf16" in name or dtype_name == "bfloat16"
            rtol, atol = (2e-2, 1e-2) if low else (1e-6, 1e-6)
            for key, value in expected.items():
                np.testing.assert_allclose(
                    recorded[f"{name}/{dtype_name}/{key}"], value, rtol=rtol, atol=atol, err_msg=f"{name} {dtype_name}"
                )


def _classic_trajectory(triple, params, steps=8, *, user_jit=True):
    init, update, get_params = triple
    step = jax.jit(update, donate_argnums=2) if user_jit else update
    state = init(jax.tree.map(jnp.copy, params))  # the donated state would delete the caller's arrays
    for t in range(steps):
        state = step(t, _grads(get_params(state), t), state)
    return get_params(state), state


@pytest.mark.native
@pytest.mark.parametrize(
    "make",
    [
        lambda: optimizers.adam(3e-3),
        lambda: optimizers.adam(optimizers.exponential_decay(3e-3, 3, 0.5), b1=0.5, b2=0.9, eps=1e-6),
        lambda: optimizers.from_transformation(adamjax.adam(3e-3)),
        lambda: optimizers.from_transformation(adamjax.adamw(optax.linear_schedule(3e-3, 1e-4, 10), weight_decay=0.1)),
    ],
    ids=["adam", "adam-schedule", "from_transformation-adam", "from_transformation-adamw"],
)
@pytest.mark.parametrize("user_jit", [True, False], ids=["user-jit", "plain-loop"])
def test_classic_triples_run_the_kernel_and_match_the_pure_path(make, user_jit, pure_path):
    params = _params()
    init, update, get_params = make()
    text = _hlo(update, 0, params, init(params))
    assert text.count(f'custom_call_target="{KERNEL}"') == 1
    actual = _classic_trajectory(make(), params, user_jit=user_jit)
    pure_path(True)
    init, update, get_params = make()
    assert KERNEL not in _hlo(update, 0, params, init(params))
    expected = _classic_trajectory(make(), params, user_jit=user_jit)
    _assert_trees_close(actual, expected, rtol=1e-6, atol=1e-7)


def test_classic_adam_matches_example_libraries_over_a_whole_tree():
    """The tree-level step (shared scalars, the kernel) against ``jax.example_libraries.optimizers.adam``."""
    params = _params()
    ours = _classic_trajectory(optimizers.adam(optimizers.exponential_decay(3e-3, 3, 0.5), b1=0.8), params)
    theirs = _classic_trajectory(
        example_optimizers.adam(example_optimizers.exponential_decay(3e-3, 3, 0.5), b1=0.8), params
    )
    # example_libraries rounds 1 - 0.999**t in float32 (adamjax computes it to the last bit): 1e-5 relative.
    _assert_trees_close(ours[0], theirs[0], rtol=2e-5, atol=1e-7)


@pytest.mark.native
def test_apply_step_compiles_to_one_kernel_call_per_group_of_arrays():
    params = _params()
    tx = adamjax.adamw(1e-3, weight_decay=0.1)
    state = tx.init(params)
    text = _hlo(functools.partial(adamjax.apply_step, tx), params, state, params)
    assert text.count(f'custom_call_target="{KERNEL}"') == 1
    many = {f"p{i}": jnp.full((3,), float(i), jnp.float32) for i in range(40)}
    text = _hlo(functools.partial(adamjax.apply_step, tx), many, tx.init(many), many)
    assert text.count(f'custom_call_target="{KERNEL}"') == 3  # groups of 16


@pytest.mark.native
@pytest.mark.parametrize(
    "make_tx",
    [
        lambda: adamjax.adam(3e-3),
        lambda: adamjax.adam(3e-3, b1=0.5, b2=0.9, eps=1e-6, eps_root=1e-9),
        lambda: adamjax.adam(3e-3, weight_decay=0.05),
        lambda: adamjax.adamw(3e-3, weight_decay=0.1),
        lambda: adamjax.adamw(optax.linear_schedule(3e-3, 1e-4, 10), weight_decay=optax.constant_schedule(0.05)),
        lambda: adamjax.adam(3e-3, bias_correction=False),
        lambda: adamjax.adam(3e-3, mu_dtype=jnp.bfloat16, nu_dtype=jnp.bfloat16),
    ],
    ids=["adam", "adam-hyper", "adam-l2", "adamw", "adamw-schedules", "no-bias-correction", "bf16-state"],
)
def test_native_matches_pure_path_float32(make_tx, pure_path):
    params = _params()
    pure_path(True)
    expected = _trajectory(make_tx(), params)
    pure_path(False)
    actual = _trajectory(make_tx(), params)
    # bfloat16 moments can round the other way when the float32 value sits on a tie.
    bf16 = "bf16" in make_tx.__code__.co_consts.__repr__() or jax.tree.leaves(expected[1])[1].dtype == jnp.bfloat16
    _assert_trees_close(actual, expected, rtol=1e-6, atol=1e-2 if bf16 else 1e-7)


def test_native_matches_optax_and_numpy_float64_reference():
    params = {"a": jnp.asarray(np.random.default_rng(3).normal(size=4096), jnp.float32)}
    lr, wd, steps = 1e-2, 0.1, 25

    def grad_fn(theta):
        return {"a": np.cos(np.arange(4096) * 0.01) + 0.5 * theta["a"]}

    expected = ref.closed_loop(
        grad_fn, {"a": np.asarray(params["a"], np.float64)}, ref.Variant(), lr, steps, decoupled_decay=wd
    )[-1]["a"]
    tx = adamjax.adamw(lr, weight_decay=wd)
    state, theta = tx.init(params), params
    optax_tx = optax.adamw(lr, weight_decay=wd)
    optax_state, optax_theta = optax_tx.init(params), params
    step = jax.jit(functools.partial(adamjax.apply_step, tx))
    for _ in range(steps):
        grads = {"a": jnp.asarray(grad_fn({"a": np.asarray(theta["a"], np.float64)})["a"], jnp.float32)}
        theta, state = step(grads, state, theta)
        og = {"a": jnp.asarray(grad_fn({"a": np.asarray(optax_theta["a"], np.float64)})["a"], jnp.float32)}
        with jax.numpy_dtype_promotion("standard"):
            updates, optax_state = optax_tx.update(og, optax_state, optax_theta)
            optax_theta = optax.apply_updates(optax_theta, updates)
    np.testing.assert_allclose(np.asarray(theta["a"], np.float64), expected, rtol=2e-5, atol=2e-6)
    np.testing.assert_allclose(theta["a"], optax_theta["a"], rtol=1e-5, atol=1e-6)


@pytest.mark.native
def test_bfloat16_parameters_match_pure_path(pure_path):
    params = _params(jnp.bfloat16, sizes=(3000, 4))
    pure_path(True)
    expected = _trajectory(adamjax.adamw(1e-2, weight_decay=0.1), params, steps=6)
    pure_path(False)
    actual = _trajectory(adamjax.adamw(1e-2, weight_decay=0.1), params, steps=6)
    # One bfloat16 step is 2**-8 relative; a last-bit difference may carry into later steps.
    _assert_trees_close(actual, expected, rtol=2e-2, atol=1e-2)


def test_apply_step_equals_update_then_apply_updates():
    params = _params()
    tx = adamjax.adamw(1e-3, weight_decay=0.1)
    # XLA may contract a*b+c into one FMA where the kernel rounds twice: a last-bit difference.
    _assert_trees_close(_trajectory(tx, params, fused=True), _trajectory(tx, params, fused=False), rtol=1e-6, atol=1e-7)
    state = tx.init(params)
    # `update` alone runs the kernel too, writing the updates (not the parameters).
    assert "updates = true" in _hlo(tx.update, params, state, params)


@pytest.mark.native
@pytest.mark.parametrize(
    "make_tx",
    [lambda: adamjax.adam(1e-3), lambda: adamjax.adamw(optax.linear_schedule(1e-3, 1e-4, 10), weight_decay=0.1)],
    ids=["adam", "adamw-scheduled"],
)
def test_update_alone_steps_large_arrays_in_jax_and_small_ones_in_the_kernel(make_tx, pure_path):
    """Outside apply_step, an array of 2^16 elements or more is left to XLA, which fuses it with apply_updates."""
    tx = make_tx()
    big = 2**16  # adamjax._fused.UPDATES_KERNEL_MAX_SIZE: the first size stepped in JAX
    params = _params(sizes=(big, big - 1, 5))
    state = tx.init(params)
    text = _hlo(lambda p, s: optax.apply_updates(p, tx.update(p, s, p)[0]), params, state)
    (call,) = [line for line in text.splitlines() if KERNEL in line and "custom-call(" in line]
    assert f"f32[{big - 1}]" in call and f"f32[{big}]" not in call  # the one large array is not an operand
    only_big = {"w0": params["w0"]}
    assert KERNEL not in _hlo(lambda p, s: tx.update(p, s, p), only_big, tx.init(only_big))
    kernel_run = _trajectory(tx, params, steps=6, fused=False)
    pure_path(True)
    _assert_trees_close(kernel_run, _trajectory(tx, params, steps=6, fused=False), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize(
    "make_tx",
    [
        lambda: adamjax.amsgrad(1e-3),
        lambda: adamjax.nadam(1e-3),
        lambda: adamjax.adabelief(1e-3),
        lambda: adamjax.adamax(1e-3),
        lambda: adamjax.adam(1e-3, power=3.0),
    ],
    ids=["amsgrad", "nadam", "adabelief", "adamax", "power3"],
)
def test_variants_the_kernel_does_not_cover_take_the_chain(make_tx):
    params = _params()
    tx = make_tx()
    state = tx.init(params)
    text = _hlo(functools.partial(adamjax.apply_step, tx), params, state, params)
    assert KERNEL not in text


def test_float64_and_optax_transformations_take_the_generic_path():
    params = _params(jnp.float64)
    tx = adamjax.adam(1e-3)
    assert KERNEL not in _hlo(functools.partial(adamjax.apply_step, tx), params, tx.init(params), params)
    params32 = _params()
    optax_tx = optax.sgd(0.1)
    new, _ = adamjax.apply_step(optax_tx, params32, optax_tx.init(params32), params32)
    _assert_trees_close(new, jax.tree.map(lambda p: p - 0.1 * p, params32), rtol=1e-7)


def test_disable_switch_and_status(pure_path):
    pure_path(True)
    assert "ADAMJAX_DISABLE_NATIVE" in adamjax.native_status()
    params = _params()
    tx = adamjax.adam(1e-3)
    assert KERNEL not in _hlo(functools.partial(adamjax.apply_step, tx), params, tx.init(params), params)


@pytest.mark.native
def test_grad_through_a_step_differentiates_the_reference(pure_path):
    params = {"a": jnp.linspace(-1.0, 1.0, 64, dtype=jnp.float32)}
    tx = adamjax.adamw(0.1, weight_decay=0.3)
    state = tx.init(params)
    grads = {"a": jnp.cos(jnp.arange(64, dtype=jnp.float32))}

    def loss(p):
        new, _ = adamjax.apply_step(tx, grads, state, p)
        return jnp.sum(new["a"] ** 2)

    pure_path(False)
    native = jax.jit(jax.grad(loss))(params)["a"]
    pure_path(True)
    expected = jax.jit(jax.grad(loss))(params)["a"]
    np.testing.assert_allclose(native, expected, rtol=1e-6)
    # d/dp of (p - lr*(sign-like u + wd p))^2 at the first step: 2 * new * (1 - lr * wd)
    new, _ = adamjax.apply_step(tx, grads, state, params)
    np.testing.assert_allclose(native, 2 * new["a"] * (1 - 0.1 * 0.3), rtol=1e-5)


@pytest.mark.native
def test_vmapped_learning_rate_sweep_is_one_kernel_call_and_matches_separate_runs():
    params = {"a": jnp.asarray(np.random.default_rng(5).normal(size=300), jnp.float32)}
    rates = jnp.asarray([1e-3, 3e-3, 1e-2, 3e-2], jnp.float32)

    def run(lr):
        tx = adamjax.adamw(lr, weight_decay=0.01)
        p, s = params, tx.init(params)
        for t in range(5):
            p, s = adamjax.apply_step(tx, _grads(params, t), s, p)
        return p

    sweep = jax.jit(jax.vmap(run))
    assert sweep.lower(rates).compile().as_text().count(f'custom_call_target="{KERNEL}"') == 5
    batched = sweep(rates)
    for k, lr in enumerate(rates):
        single = jax.jit(run)(lr)
        np.testing.assert_allclose(batched["a"][k], single["a"], rtol=1e-6)


def test_vmapped_ensemble_matches_separate_runs():
    members = jnp.asarray(np.random.default_rng(6).normal(size=(3, 200)), jnp.float32)
    tx = adamjax.adam(1e-2)

    def run(p):
        s = tx.init(p)
        for t in range(4):
            p, s = adamjax.apply_step(tx, jnp.sin(p * (t + 1)), s, p)
        return p, s[0].mu

    batched = jax.jit(jax.vmap(run))(members)
    for k in range(3):
        single = jax.jit(run)(members[k])
        _assert_trees_close(jax.tree.map(lambda x, k=k: x[k], batched), single, rtol=1e-6)


@pytest.mark.native
def test_traced_hyperparameters_go_through_the_kernel_without_recompiling():
    params = _params(sizes=(1000,))
    traces = []

    @jax.jit
    def step(grads, state, params, lr, wd):
        traces.append(None)
        return adamjax.apply_step(adamjax.adamw(lr, weight_decay=wd), grads, state, params)

    state = adamjax.adamw(1e-3).init(params)
    lr0, wd0 = jnp.float32(1e-3), jnp.float32(0.01)
    assert KERNEL in step.lower(params, state, params, lr0, wd0).compile().as_text()
    expected_params, expected_state = params, state
    for t, lr in enumerate([1e-3, 3e-4, 1e-4]):
        grads = _grads(params, t)
        params, state = step(grads, state, params, jnp.float32(lr), wd0)
        tx = adamjax.adamw(lr, weight_decay=0.01)
        updates, expected_state = jax.jit(tx.update)(grads, expected_state, expected_params)
        expected_params = optax.apply_updates(expected_params, updates)
    assert len(traces) == 1  # new values never retrace
    _assert_trees_close(params, expected_params, rtol=1e-6, atol=1e-7)


@pytest.mark.native
def test_donated_step_updates_in_place():
    params = {"a": jnp.zeros(1 << 16, jnp.float32)}
    tx = adamjax.adam(1e-3)
    state = tx.init(params)

    # Written as a user would: donated inputs in the same order as the outputs,
    # so JAX pairs each donated buffer with the output of its own shape.
    def train_step(params, state, grads):
        return adamjax.apply_step(tx, grads, state, params)

    step = jax.jit(train_step, donate_argnums=(0, 1))
    compiled = step.lower(params, state, params).compile()
    text = compiled.as_text()
    assert KERNEL in text and " copy(" not in text
    memory = compiled.memory_analysis()
    array_bytes = 4 * (1 << 16)
    # parameters, mu and nu are written where they were read: three arrays aliased, nothing temporary
    assert 3 * array_bytes <= memory.alias_size_in_bytes <= 3 * array_bytes + 64  # (+ the step count)
    assert memory.temp_size_in_bytes < array_bytes // 8


def test_zero_size_scalar_and_empty_trees():
    tx = adamjax.adam(0.5)
    for params in ({"empty": jnp.zeros((0, 3), jnp.float32), "s": jnp.asarray(1.0, jnp.float32)}, {}):
        state = tx.init(params)
        new, state = adamjax.apply_step(tx, jax.tree.map(jnp.ones_like, params), state, params)
        if params:
            assert new["empty"].shape == (0, 3)
            np.testing.assert_allclose(new["s"], 0.5, rtol=1e-6)  # 1 - lr * sign(1)


# ---------------------------------------------------------------- flat triple


def _mixed_params():
    rng = np.random.default_rng(7)
    return {
        "emb": jnp.asarray(rng.normal(size=(10, 4)), jnp.float32),
        "blocks": [{"w": jnp.asarray(rng.normal(size=(4, 4)), jnp.float32), "b": jnp.zeros(4, jnp.float32)}] * 3,
        "half": jnp.asarray(rng.normal(size=6), jnp.bfloat16),
        "scalar": jnp.asarray(0.25, jnp.float32),
    }


def test_flat_triple_round_trips_parameters():
    params = _mixed_params()
    init, _, get_params = optimizers.from_transformation(adamjax.adam(1e-3), flat=True)
    state = init(params)
    assert isinstance(state.params, adamjax.FlatParams)
    assert len(state.params.buffers) == 2  # float32 and bfloat16
    _assert_trees_close(get_params(state), params, rtol=0.0)


@pytest.mark.parametrize(
    ("make_tx", "mixed"),
    [
        (lambda: adamjax.adamw(1e-2, weight_decay=0.1), True),
        # (optax's global norm cannot mix float32 and bfloat16 under strict promotion)
        (lambda: optax.chain(optax.clip_by_global_norm(1.0), adamjax.adam(1e-2)), False),
    ],
    ids=["adamw", "clip+adam"],
)
def test_flat_triple_matches_the_tree_triple(make_tx, mixed):
    params = _mixed_params()
    if not mixed:
        params = jax.tree.map(lambda p: p.astype(jnp.float32), params)
    flat = optimizers.from_transformation(make_tx(), flat=True)
    tree = optimizers.from_transformation(make_tx())
    flat_state, tree_state = flat.init_fn(params), tree.init_fn(params)
    for t in range(8):
        grads = jax.tree.map(
            lambda p, t=t: (jnp.sin(p.astype(jnp.float32) + t)).astype(p.dtype), tree.params_fn(tree_state)
        )
        flat_state = flat.update_fn(t, grads, flat_state)
        tree_state = tree.update_fn(t, grads, tree_state)
    _assert_trees_close(flat.params_fn(flat_state), tree.params_fn(tree_state), rtol=1e-6, atol=1e-7)


def test_flat_triple_refuses_mismatched_gradients():
    params = _mixed_params()
    init, update, _ = optimizers.from_transformation(adamjax.adam(1e-3), flat=True)
    state = init(params)
    with pytest.raises(TypeError, match="gradient tree does not match"):
        update(0, {"emb": params["emb"]}, state)
    bad_shape = dict(params, emb=jnp.zeros((4, 10), jnp.float32))
    with pytest.raises(ValueError, match=r"shape \(4, 10\) but the parameter there has shape \(10, 4\)"):
        update(0, bad_shape, state)
    bad_dtype = dict(params, half=params["half"].astype(jnp.float32))
    with pytest.raises(TypeError, match="dtype float32 but the parameter there has dtype bfloat16"):
        update(0, bad_dtype, state)
    with pytest.raises(TypeError, match=r"`from_transformation\(flat=...\)` must be True or False; got 'yes'"):
        optimizers.from_transformation(adamjax.adam(1e-3), flat="yes")


def test_flat_triple_takes_gradients_with_respect_to_the_flat_parameters():
    params = _mixed_params()
    init, update, get_params = optimizers.from_transformation(adamjax.adamw(1e-2, weight_decay=0.1), flat=True)

    def loss(tree):
        return sum(jnp.sum(jnp.sin(leaf.astype(jnp.float32))) for leaf in jax.tree.leaves(tree))

    state_flat, state_tree = init(params), init(params)
    for t in range(4):
        flat_grads = jax.grad(lambda flat: loss(flat.unflatten()))(state_flat.params)
        assert isinstance(flat_grads, adamjax.FlatParams)
        state_flat = update(t, flat_grads, state_flat)
        state_tree = update(t, jax.grad(loss)(get_params(state_tree)), state_tree)
    _assert_trees_close(get_params(state_flat), get_params(state_tree), rtol=0.0)
    other = optimizers.from_transformation(adamjax.adam(1e-3), flat=True).init_fn({"x": jnp.zeros(3, jnp.float32)})
    with pytest.raises(TypeError, match="flat gradients have another layout"):
        update(0, other.params, state_flat)


def test_flat_triple_state_is_a_few_buffers():
    params = {f"p{i}": jnp.zeros((8, 8), jnp.float32) for i in range(300)}
    init, update, _ = optimizers.from_transformation(adamjax.adam(1e-3), flat=True)
    state = init(params)
    assert len(jax.tree.leaves(state)) <= 6  # params, mu, nu and counts, not 3 x 300
    step = jax.jit(lambda g, s: update(0, g, s), donate_argnums=1)
    text = step.lower(params, state).compile().as_text()
    assert text.count(f'custom_call_target="{KERNEL}"') == 1
