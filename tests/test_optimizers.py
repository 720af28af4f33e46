"""``adamjax.optimizers`` against ``jax.example_libraries.optimizers``, its reference.

Every optimizer and schedule is run next to the upstream one on the same
inputs; the contract (names, signatures, state pytree, serialisation, error
types) is checked name by name; and the jitted ``update`` is checked to compile
once in a Python loop and to fall back to eager mode when it cannot be traced.
"""

import ast
import builtins
import inspect
import pathlib
import subprocess
import sys

import jax
import jax.example_libraries.optimizers as upstream
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import adamjax
from adamjax import optimizers

# --- helpers -------------------------------------------------------------------

TOLERANCE = {jnp.float32: 1e-6, jnp.float64: 1e-12}
DTYPES = pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64], ids=["float32", "float64"])

# name -> (positional args, keyword args), all non-default where possible.
OPTIMIZERS = {
    "sgd": ((0.1,), {}),
    "momentum": ((0.1, 0.8), {}),
    "nesterov": ((0.1, 0.8), {}),
    "adagrad": ((0.3,), {"momentum": 0.7}),
    "rmsprop": ((0.01,), {"gamma": 0.8, "eps": 1e-6}),
    "rmsprop_momentum": ((0.01,), {"gamma": 0.8, "eps": 1e-6, "momentum": 0.5}),
    "sm3": ((0.3,), {"momentum": 0.7}),
    "adam": ((0.01,), {"b1": 0.8, "b2": 0.99, "eps": 1e-6}),
    "adamax": ((0.01,), {"b1": 0.8, "b2": 0.99, "eps": 1e-6}),
}


def _params(dtype):
    """A matrix, a scalar and a vector inside a list."""
    rng = np.random.default_rng(0)
    return {
        "matrix": jnp.asarray(rng.normal(size=(3, 4)), dtype),
        "scalar": jnp.asarray(0.5, dtype),
        "nested": [jnp.asarray(rng.normal(size=5), dtype)],
    }


def _gradients(params, steps=32):
    rng = np.random.default_rng(1)
    return [jax.tree.map(lambda p: jnp.asarray(rng.normal(size=p.shape), p.dtype), params) for _ in range(steps)]


def _run(triple, params, grads, *, jit=False):
    init, update, get_params = triple
    update = jax.jit(update) if jit else update
    state = init(params)
    for i, g in enumerate(grads):
        state = update(i, g, state)
    return state, get_params(state)


def _assert_trees_close(actual, expected, rtol):
    """Elementwise within ``rtol`` of each leaf's largest magnitude, same dtypes."""
    assert jax.tree.structure(actual) == jax.tree.structure(expected)
    for a, e in zip(jax.tree.leaves(actual), jax.tree.leaves(expected), strict=True):
        assert jnp.result_type(a) == jnp.result_type(e)
        scale = max(float(jnp.max(jnp.abs(e))), 1e-30)
        np.testing.assert_allclose(np.asarray(a), np.asarray(e), rtol=rtol, atol=rtol * scale)


def _counting(schedule):
    """``schedule`` plus the number of times it was called (once per leaf per trace)."""
    calls = []

    def counted(i):
        calls.append(i)
        return schedule(i)

    return counted, calls


# --- the public surface ----------------------------------------------------------


def _upstream_public_names():
    """Top-level names that upstream defines itself (not imports, not builtin shadows)."""
    tree = ast.parse(pathlib.Path(upstream.__file__).read_text())
    names = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
    # `map = safe_map`, `zip = safe_zip` rebind builtins for upstream's own use.
    return {n for n in names if not n.startswith("_") and not hasattr(builtins, n)}


def test_every_upstream_name_is_exported():
    names = _upstream_public_names()
    assert {"adam", "optimizer", "OptimizerState", "Schedule", "JoinPoint"} <= names  # the parse worked
    assert names <= set(optimizers.__all__)
    assert {"OptimizerResult", "from_transformation", "TransformationState"} <= set(optimizers.__all__)
    for name in optimizers.__all__:
        assert hasattr(optimizers, name), name


@pytest.mark.parametrize(
    "name", sorted(n for n in _upstream_public_names() if inspect.isfunction(getattr(upstream, n)))
)
def test_signatures_match_upstream(name):
    # Annotations are left out: upstream's are strings (postponed evaluation).
    def parameters(func):
        return [(p.name, p.kind, p.default) for p in inspect.signature(func).parameters.values()]

    ours, theirs = parameters(getattr(optimizers, name)), parameters(getattr(upstream, name))
    assert ours[: len(theirs)] == theirs
    # adamjax's additions (adam's state_bits / block_size) are keyword-only, so upstream calls are unchanged.
    assert all(kind == inspect.Parameter.KEYWORD_ONLY for _, kind, _ in ours[len(theirs) :]), ours


def test_named_tuples_have_upstream_fields():
    assert optimizers.Optimizer._fields == upstream.Optimizer._fields
    assert optimizers.OptimizerState._fields == upstream.OptimizerState._fields


def test_adamjax_does_not_import_example_libraries():
    code = "import sys, adamjax, adamjax.optimizers; print('jax.example_libraries' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


# --- the state and the contract ------------------------------------------------------


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_get_params_of_init_is_the_params(name):
    args, kwargs = OPTIMIZERS[name]
    init, _, get_params = getattr(optimizers, name)(*args, **kwargs)
    params = _params(jnp.float32)
    recovered = get_params(init(params))
    assert jax.tree.structure(recovered) == jax.tree.structure(params)
    for r, p in zip(jax.tree.leaves(recovered), jax.tree.leaves(params), strict=True):
        assert r.shape == p.shape and r.dtype == p.dtype
        np.testing.assert_array_equal(r, p)


def test_optimizer_state_is_a_pytree_with_static_tree_defs():
    init, update, get_params = optimizers.adam(0.1)
    params = _params(jnp.float32)
    state = init(params)
    assert isinstance(state, optimizers.OptimizerState)
    assert state.tree_def == jax.tree.structure(params)
    assert len(jax.tree.leaves(state)) == 3 * len(jax.tree.leaves(params))
    doubled = jax.tree.map(lambda x: 2 * x, state)
    assert isinstance(doubled, optimizers.OptimizerState) and doubled.subtree_defs == state.subtree_defs
    through_jit = jax.jit(lambda s: s)(state)
    assert through_jit.tree_def == state.tree_def
    np.testing.assert_array_equal(get_params(through_jit)["matrix"], params["matrix"])


def test_old_states_stay_valid():
    init, update, get_params = optimizers.adam(0.1)
    old = init(_params(jnp.float32))
    grads = _gradients(_params(jnp.float32), 1)[0]
    new = update(0, grads, old)
    again = update(0, grads, old)  # the old buffers were not donated
    np.testing.assert_array_equal(get_params(new)["matrix"], get_params(again)["matrix"])


def test_update_inside_a_user_jit_and_scan_matches_the_python_loop():
    init, update, get_params = optimizers.adam(0.05)
    params = _params(jnp.float32)
    grads = _gradients(params, 10)
    _, expected = _run((init, update, get_params), params, grads)
    stacked = jax.tree.map(lambda *leaves: jnp.stack(leaves), *grads)

    @jax.jit
    def train(state):
        def body(state, step):
            i, g = step
            return update(i, g, state), None

        return jax.lax.scan(body, state, (jnp.arange(10), stacked))[0]

    _assert_trees_close(get_params(train(init(params))), expected, 1e-6)


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_bfloat16_parameters_stay_bfloat16(name):
    args, kwargs = OPTIMIZERS[name]
    params = _params(jnp.bfloat16)
    state, result = _run(getattr(optimizers, name)(*args, **kwargs), params, _gradients(params, 5))
    assert all(leaf.dtype == jnp.bfloat16 for leaf in jax.tree.leaves(result))
    # The Adam family keeps float32 moments for 16-bit parameters (tests/test_low_precision_defaults.py);
    # the others keep jax.example_libraries' layout, all in the parameters' dtype.
    moments = jnp.float32 if name in ("adam", "adamax") else jnp.bfloat16
    assert {leaf.dtype for leaf in jax.tree.leaves(state)} == {jnp.dtype(jnp.bfloat16), jnp.dtype(moments)}
    assert all(bool(jnp.all(jnp.isfinite(leaf))) for leaf in jax.tree.leaves(result))
    assert not bool(jnp.all(result["matrix"] == params["matrix"]))


def test_float64_schedule_keeps_float32_parameters():
    # Under x64 piecewise_constant's values are float64; upstream would widen
    # (or, with strict promotion, fail); the step size is applied in float32+.
    schedule = optimizers.piecewise_constant([2], [0.1, 0.01])
    init, update, get_params = optimizers.adam(schedule)
    _, params = _run((init, update, get_params), _params(jnp.float32), _gradients(_params(jnp.float32), 4))
    assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(params))


# --- numbers against jax.example_libraries -----------------------------------------------


@DTYPES
@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_matches_upstream(name, dtype):
    args, kwargs = OPTIMIZERS[name]
    params = _params(dtype)
    grads = _gradients(params)
    ours_state, ours = _run(getattr(optimizers, name)(*args, **kwargs), params, grads)
    # Upstream jitted (as in a training loop; also much faster than eagerly):
    # its eager and jitted runs differ by up to ~6e-7 in float32.
    theirs_state, theirs = _run(getattr(upstream, name)(*args, **kwargs), params, grads, jit=True)
    assert float(jnp.max(jnp.abs(ours["matrix"] - params["matrix"]))) > 1e-2  # it moved
    _assert_trees_close(ours, theirs, TOLERANCE[dtype])
    if name != "sm3":  # sm3 keeps no Python shape tuple in its state (documented)
        _assert_trees_close(ours_state.packed_state, theirs_state.packed_state, TOLERANCE[dtype])


def test_adam_matches_upstream_run_eagerly():
    # How upstream users ran it: a Python loop without jit (slow: it compiles
    # every step), in float32 where eager and jitted rounding differ most.
    params = _params(jnp.float32)
    grads = _gradients(params)
    _assert_trees_close(
        _run(optimizers.adam(0.01), params, grads)[1], _run(upstream.adam(0.01), params, grads)[1], 1e-6
    )


SCHEDULES = {
    "constant": (0.1,),
    "exponential_decay": (0.1, 7, 0.5),
    "inverse_time_decay": (0.1, 7, 0.5),
    "inverse_time_decay_staircase": (0.1, 7, 0.5, True),
    "polynomial_decay": (0.1, 20, 0.001, 2.0),
    "piecewise_constant": ([5, 12], [0.1, 0.05, 0.01]),
}


@pytest.mark.parametrize("key", list(SCHEDULES))
def test_schedules_match_upstream(key):
    name = key.removesuffix("_staircase")
    ours = getattr(optimizers, name)(*SCHEDULES[key])
    theirs = getattr(upstream, name)(*SCHEDULES[key])
    steps = range(40)
    expected = np.array([float(theirs(i)) for i in steps])
    assert len(set(expected)) > (1 if name != "constant" else 0)
    np.testing.assert_allclose([float(ours(i)) for i in steps], expected, rtol=1e-12)
    traced = jax.jit(jax.vmap(ours))(jnp.arange(40))  # as inside the jitted update
    np.testing.assert_allclose(np.asarray(traced, np.float64), expected, rtol=1e-12)


@pytest.mark.parametrize("key", ["exponential_decay", "polynomial_decay", "piecewise_constant"])
@pytest.mark.parametrize("name", ["sgd", "momentum", "adam", "adamax"])
def test_optimizers_with_schedules_match_upstream(name, key):
    args, kwargs = OPTIMIZERS[name]
    params = _params(jnp.float64)
    grads = _gradients(params)
    results = []
    for module in (optimizers, upstream):
        schedule = getattr(module, key)(*SCHEDULES[key])
        triple = getattr(module, name)(schedule, *args[1:], **kwargs)
        results.append(_run(triple, params, grads, jit=module is upstream)[1])
    _assert_trees_close(*results, 1e-12)


def test_seed003_scalar_problem_through_the_triple():
    # w <- adam on (w - 1)^2 from w = 0; the value after 257 updates (seed 003).
    init, update, get_params = optimizers.adam(0.01)
    state = init(jnp.asarray(0.0, jnp.float64))
    for i in range(257):
        state = update(i, 2 * get_params(state) - 2, state)
    assert get_params(state).dtype == jnp.float64
    np.testing.assert_allclose(float(get_params(state)), 0.9983202346112277, rtol=0, atol=1e-12)


def test_l2_norm_and_clip_grads_match_upstream():
    tree = _gradients(_params(jnp.float64), 1)[0]
    np.testing.assert_allclose(optimizers.l2_norm(tree), upstream.l2_norm(tree), rtol=1e-14)
    norm = float(upstream.l2_norm(tree))
    for max_norm in (0.5 * norm, 2.0 * norm):
        _assert_trees_close(optimizers.clip_grads(tree, max_norm), upstream.clip_grads(tree, max_norm), 1e-14)
    assert float(optimizers.l2_norm(optimizers.clip_grads(tree, 0.5 * norm))) == pytest.approx(0.5 * norm)


# --- serialisation --------------------------------------------------------------------


def _assert_unpacked_equal(ours, theirs):
    assert jax.tree.structure(ours) == jax.tree.structure(theirs, is_leaf=lambda x: isinstance(x, upstream.JoinPoint))
    for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(theirs), strict=True):
        assert type(a).__name__ == type(b).__name__ == "JoinPoint"
        assert jax.tree.structure(a.subtree) == jax.tree.structure(b.subtree)
        _assert_trees_close(a.subtree, b.subtree, 1e-12)


def test_unpack_has_upstreams_format_and_round_trips():
    params = _params(jnp.float64)
    grads = _gradients(params, 3)
    ours, _ = _run(optimizers.momentum(0.1, 0.9), params, grads)
    theirs, _ = _run(upstream.momentum(0.1, 0.9), params, grads)
    unpacked = optimizers.unpack_optimizer_state(ours)
    _assert_unpacked_equal(unpacked, upstream.unpack_optimizer_state(theirs))
    repacked = optimizers.pack_optimizer_state(unpacked)
    assert repacked.tree_def == ours.tree_def and repacked.subtree_defs == ours.subtree_defs
    for x, y in zip(jax.tree.leaves(repacked), jax.tree.leaves(ours), strict=True):
        np.testing.assert_array_equal(x, y)


def test_resume_an_upstream_checkpoint():
    params = _params(jnp.float64)
    grads = _gradients(params, 12)
    init, update, get_params = upstream.adam(0.01)
    state = init(params)
    for i, g in enumerate(grads[:6]):
        state = update(i, g, state)
    checkpoint = upstream.unpack_optimizer_state(state)
    resumed = optimizers.pack_optimizer_state(checkpoint)  # upstream JoinPoints are accepted
    ours_update = optimizers.adam(0.01).update_fn
    for i, g in enumerate(grads[6:], start=6):
        state = update(i, g, state)
        resumed = ours_update(i, g, resumed)
    _assert_trees_close(get_params(resumed), get_params(state), 1e-12)


def test_pack_rejects_a_tree_without_join_points():
    marked = optimizers.unpack_optimizer_state(optimizers.sgd(0.1).init_fn([jnp.zeros(2, jnp.float32)] * 2))
    marked[1] = jnp.zeros(2, jnp.float32)
    with pytest.raises(TypeError, match=r"leaf at \[1\] is a .*Array"):
        optimizers.pack_optimizer_state(marked)


# --- compile once, fall back when untraceable ----------------------------------------


def test_user_optimizer_compiles_once_in_a_python_loop():
    traces = []

    @optimizers.optimizer
    def scaled_sgd(step_size):
        def update(i, g, x):
            traces.append(i)  # runs only while tracing
            return x - step_size / (1 + i) * g

        return (lambda x: x), update, (lambda x: x)

    init, update, get_params = scaled_sgd(0.5)
    params = _params(jnp.float32)
    state = init(params)
    for i in range(20):
        state = update(i, params, state)
    n_leaves = len(jax.tree.leaves(params))
    assert len(traces) == n_leaves and all(isinstance(i, jax.core.Tracer) for i in traces)
    expected = params["scalar"] * (1 - 0.5 * sum(1 / (1 + i) for i in range(20)))
    np.testing.assert_allclose(get_params(state)["scalar"], expected, rtol=1e-6)


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_builtin_optimizers_compile_once(name):
    args, kwargs = OPTIMIZERS[name]
    schedule, calls = _counting(optimizers.constant(args[0]))
    init, update, _ = getattr(optimizers, name)(schedule, *args[1:], **kwargs)
    params = _params(jnp.float32)
    state = init(params)
    for i, g in enumerate(_gradients(params, 8)):
        state = update(i, g, state)
    # One trace for all eight steps: the Adam family evaluates its step size once
    # per step for the whole tree, the others once per array.
    assert len(calls) == (1 if name in ("adam", "adamax") else len(jax.tree.leaves(params)))


def test_untraceable_update_falls_back_to_eager_for_good():
    seen = []

    @optimizers.optimizer
    def warmup_sgd(step_size):
        def update(i, g, x):
            seen.append(i)
            if i < 2:  # Python control flow on `i`: cannot be traced
                return x
            return x - step_size * g

        return (lambda x: x), update, (lambda x: x)

    init, update, get_params = warmup_sgd(0.25)
    state = init(jnp.ones(3, jnp.float32))
    for i in range(5):
        state = update(i, jnp.ones(3, jnp.float32), state)
    np.testing.assert_allclose(get_params(state), np.full(3, 1 - 3 * 0.25, np.float32))
    assert isinstance(seen[0], jax.core.Tracer)  # the one failed trace
    assert seen[1:] == [0, 1, 2, 3, 4]  # then eager, with i as given, never traced again


def test_other_errors_are_not_swallowed_by_the_fallback():
    @optimizers.optimizer
    def broken(step_size):
        def update(i, g, x):
            raise ValueError("broken update")

        return (lambda x: x), update, (lambda x: x)

    init, update, _ = broken(0.1)
    with pytest.raises(ValueError, match="broken update"):
        update(0, jnp.ones(2, jnp.float32), init(jnp.ones(2, jnp.float32)))


# --- from_transformation ---------------------------------------------------------------


@pytest.mark.parametrize(
    "make_tx",
    [
        lambda: adamjax.adam(0.05),
        lambda: adamjax.adamw(0.05, weight_decay=0.1),
        lambda: optax.sgd(0.1, momentum=0.9),
        lambda: adamjax.adam(optax.exponential_decay(0.1, 5, 0.5)),
        lambda: optax.sgd(optax.linear_schedule(0.1, 0.01, 8)),
    ],
    # (optax.adam itself fails under strict dtype promotion: float ** int32 count)
    ids=["adamjax.adam", "adamjax.adamw", "optax.sgd", "adamjax.adam+schedule", "optax.sgd+schedule"],
)
def test_from_transformation_matches_optax_apply_updates(make_tx):
    params = _params(jnp.float32)
    grads = _gradients(params, 12)
    tx = make_tx()

    @jax.jit
    def reference_step(params, inner, g):
        updates, inner = tx.update(g, inner, params)
        return optax.apply_updates(params, updates), inner

    expected, inner = params, tx.init(params)
    for g in grads:
        expected, inner = reference_step(expected, inner, g)

    init, update, get_params = optimizers.from_transformation(make_tx())
    state = init(params)
    for i, g in enumerate(grads):
        state = update(i, g, state)
    assert isinstance(state, optimizers.TransformationState)
    for a, e in zip(jax.tree.leaves(get_params(state)), jax.tree.leaves(expected), strict=True):
        assert a.dtype == e.dtype
        # adamjax's Adam runs the native kernel here, which rounds `p + (-lr * u)` twice where
        # XLA may fuse one FMA: equal to float32 rounding, not bit for bit.
        np.testing.assert_allclose(a, e, rtol=1e-6, atol=1e-7)
    # `i` is ignored: the transformation counts its own steps.
    state_fixed_i = init(params)
    for g in grads:
        state_fixed_i = update(1000, g, state_fixed_i)
    np.testing.assert_array_equal(get_params(state_fixed_i)["matrix"], get_params(state)["matrix"])


def test_from_transformation_errors():
    with pytest.raises(TypeError, match=r"needs an optax.GradientTransformation .* got function"):
        optimizers.from_transformation(lambda g: g)
    init, update, _ = optimizers.from_transformation(adamjax.adam(0.1))
    state = init({"a": jnp.zeros(2, jnp.float32)})
    with pytest.raises(TypeError, match=r"(?s)parameters: PyTreeDef\(\{'a': \*\}\).*gradients:  PyTreeDef\(\[\*\]\)"):
        update(0, [jnp.zeros(2, jnp.float32)], state)


# --- errors ------------------------------------------------------------------------------


def test_tree_mismatch_shows_both_structures():
    init, update, _ = optimizers.adam(0.1)
    state = init({"a": jnp.zeros(2, jnp.float32), "b": jnp.zeros(2, jnp.float32)})
    with pytest.raises(
        TypeError, match=r"(?s)parameters: PyTreeDef\(\{'a': \*, 'b': \*\}\).*gradients:  PyTreeDef\(\{'a': \*\}\)"
    ):
        update(0, {"a": jnp.zeros(2, jnp.float32)}, state)


def test_state_structure_change_is_a_type_error():
    @optimizers.optimizer
    def grows(step_size):
        return (lambda x: (x,)), (lambda i, g, s: (s[0], g)), (lambda s: s[0])

    init, update, _ = grows(0.1)
    with pytest.raises(TypeError, match=r"(?s)input:  PyTreeDef\(\(\*,\)\).*output: PyTreeDef\(\(\*, \*\)\)"):
        update(0, jnp.zeros(2, jnp.float32), init(jnp.zeros(2, jnp.float32)))


def test_maker_must_return_a_triple():
    @optimizers.optimizer
    def pair(step_size):
        return (lambda x: x), (lambda i, g, x: x)

    with pytest.raises(TypeError, match=r"`pair` to return an \(init, update, get_params\) triple; got tuple"):
        pair(0.1)


@pytest.mark.parametrize(
    ("build", "error", "match"),
    [
        (lambda: optimizers.adam(0.1, b1=1.5), ValueError, r"`adam\(b1=...\)` must be in \[0, 1\); got 1.5"),
        (lambda: optimizers.adam(0.1, b2=-0.1), ValueError, r"`adam\(b2=...\)` must be in \[0, 1\); got -0.1"),
        (lambda: optimizers.adam(0.1, eps=-1.0), ValueError, r"`adam\(eps=...\)` must be in \[0, inf\); got -1.0"),
        (lambda: optimizers.adamax(0.1, b2=1.0), ValueError, r"`adamax\(b2=...\)` must be in \[0, 1\); got 1.0"),
        (lambda: optimizers.adam(-0.1), ValueError, r"`adam\(step_size=...\)` must be in \[0, inf\); got -0.1"),
        (lambda: optimizers.sgd("fast"), TypeError, r"`sgd\(step_size=...\)` must be a number >= 0 or a callable"),
        (lambda: optimizers.sgd(jnp.ones(2)), TypeError, r"`sgd\(step_size=...\)` must be a scalar .* shape \(2,\)"),
        (lambda: optimizers.momentum(0.1, 1.5), ValueError, r"`momentum\(mass=...\)` must be in \[0, 1\)"),
        (lambda: optimizers.nesterov(0.1, -0.5), ValueError, r"`nesterov\(mass=...\)` must be in \[0, 1\)"),
        (lambda: optimizers.adagrad(0.1, momentum=1.0), ValueError, r"`adagrad\(momentum=...\)`"),
        (lambda: optimizers.rmsprop(0.1, gamma=2.0), ValueError, r"`rmsprop\(gamma=...\)` must be in \[0, 1\)"),
        (lambda: optimizers.rmsprop(0.1, eps=float("nan")), ValueError, r"`rmsprop\(eps=...\)` .* got nan"),
        (lambda: optimizers.rmsprop_momentum(0.1, momentum=3), ValueError, r"`rmsprop_momentum\(momentum=...\)`"),
        (lambda: optimizers.sm3(0.1, momentum=-1), ValueError, r"`sm3\(momentum=...\)` must be in \[0, 1\)"),
        (lambda: optimizers.make_schedule("a"), TypeError, r"`make_schedule\(scalar_or_schedule=...\)` must be a real"),
        (lambda: optimizers.make_schedule(None), TypeError, r"got NoneType None. A callable schedule"),
        (lambda: optimizers.make_schedule(np.ones(3)), TypeError, r"must be a scalar or a callable .* shape \(3,\)"),
        (lambda: optimizers.exponential_decay(0.1, 0, 0.5), ValueError, r"`exponential_decay\(decay_steps=...\)`"),
        (lambda: optimizers.inverse_time_decay(0.1, 5, -1.0), ValueError, r"`inverse_time_decay\(decay_rate=...\)`"),
        (lambda: optimizers.piecewise_constant([1, 2], [0.1, 0.2]), ValueError, r"one more value than boundaries"),
        (lambda: optimizers.piecewise_constant(1, [0.1]), ValueError, r"two 1-D sequences; got shapes \(\) and"),
    ],
)
def test_bad_hyperparameters_fail_at_construction(build, error, match):
    with pytest.raises(error, match=match):
        build()


def test_make_schedule_passes_callables_and_wraps_scalars():
    def schedule(i):
        return 0.1 / (i + 1)

    assert optimizers.make_schedule(schedule) is schedule
    assert optimizers.make_schedule(0.3)(7) == 0.3
    assert float(optimizers.make_schedule(jnp.asarray(0.3, jnp.float32))(7)) == pytest.approx(0.3)


def test_traced_hyperparameters_are_accepted():
    params = _params(jnp.float64)
    grads = _gradients(params, 5)

    @jax.jit
    def run(step_size, b1):
        return _run(optimizers.adam(step_size, b1=b1), params, grads)[1]

    expected = _run(optimizers.adam(0.01, b1=0.8), params, grads)[1]
    _assert_trees_close(run(jnp.asarray(0.01, jnp.float64), jnp.asarray(0.8, jnp.float64)), expected, 1e-12)
