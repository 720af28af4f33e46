"""The native step for quantized moments (``state_bits=8`` or ``4``): the kernel runs, and equals the pure path.

The kernel dequantizes a block, takes Adam's step, writes the parameters and
requantizes the block in one pass; the pure-JAX path
(``ADAMJAX_DISABLE_NATIVE=1``) does the same in several XLA passes. The
kernel's new moments round as XLA computes them on this CPU (a fused
multiply-add where XLA contracts one), so the codes and scales it writes are
compared for equality. Parameters are compared to 1e-6: XLA rewrites the
step's divisions by the bias corrections in ways that depend on the rest of
the program (a lone array and a tree of arrays get different forms), so a
parameter may sit one rounding away. For that reason the independent runs
below feed gradients that do not depend on the parameters; the run with a
feedback loop (a gradient of the parameters, a coupled decay) is compared one
step at a time from the same inputs. Every comparison checks that the compiled
step holds the kernel's custom call, so a path that fell back to JAX cannot
pass.
"""

from __future__ import annotations

import functools
from pathlib import Path

import baseline_kernel_worker
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from helpers import checkout_env, python_run, run_python
from test_quantize import reference_near_tie, unpack

import adamjax
from adamjax import _native, _quantize, optimizers
from adamjax._quantize import QuantizedArray

QUANTIZED = "adamjax_quantized_adam_step"
DENSE = "adamjax_adam_step"

pytestmark = pytest.mark.native


@pytest.fixture
def pure_path(monkeypatch):
    """``pure_path(True)``: adamjax takes its pure-JAX path from here on; ``False``: the kernel.

    adamjax reads ``ADAMJAX_DISABLE_NATIVE`` when it traces a step, so the
    switch holds for every function jitted afterwards. Each test jits a new
    function on each path (a new lambda, never one ``jax.jit`` of the same
    function object, whose traces JAX would reuse), and every comparison checks
    the custom call is in the kernel's compiled step (and, where stated, absent
    from the pure one). No ``jax.clear_caches()``: it made every program of the
    worker (the library's jitted quantizers, each eager op) compile again.
    """

    def switch(disabled: bool) -> None:
        monkeypatch.setenv("ADAMJAX_DISABLE_NATIVE", "1" if disabled else "0")

    yield switch


def calls(text: str, target: str) -> int:
    return text.count(f'custom_call_target="{target}"')


def mixed_params(dtype=jnp.float32, seed: int = 0) -> dict:
    """Rows ending in a short block (300 = 256 + 44; 128 + 128 + 44 at 4 bits), an odd row (301), a 4-D
    array whose rows are its last three axes, one exactly at the 4,096 threshold, and small float32 ones."""
    rng = np.random.default_rng(seed)
    shapes = {"short_rows": (40, 300), "odd_rows": (16, 301), "conv": (8, 3, 3, 64), "square": (64, 64)}
    tree = {name: jnp.asarray(rng.normal(size=shape), dtype) for name, shape in shapes.items()}
    tree["bias"] = jnp.asarray(rng.normal(size=(10,)), dtype)
    tree["scalar"] = jnp.asarray(0.5, dtype)
    return tree


def noise(tree: dict, t: int) -> dict:
    rng = np.random.default_rng(1000 + t)
    return jax.tree.map(lambda p: jnp.asarray(rng.normal(size=p.shape), p.dtype), tree)


def following(tree: dict, t: int) -> dict:
    """A gradient that depends on the parameters (0.3 p + noise), so a parameter difference would feed back."""
    return jax.tree.map(
        lambda p, n: (0.3 * p.astype(jnp.float32) + n.astype(jnp.float32)).astype(p.dtype), tree, noise(tree, t)
    )


def run_steps(tx, params, steps: int, gradient=noise, *, mode: str = "apply_step", state=None):
    """``steps`` jitted, donated steps; returns (params, state, the compiled step's HLO).

    ``mode="update"``: ``tx.update`` jitted alone and ``optax.apply_updates``
    after it, so both paths add the same rounded updates (inside one ``jit``
    XLA fuses the pure path's addition into a multiply-add, which the kernel's
    updates, already rounded, cannot join).
    """
    if mode == "apply_step":
        step = jax.jit(lambda p, s, g: adamjax.apply_step(tx, g, s, p), donate_argnums=(0, 1))
    else:
        update = jax.jit(lambda g, s, p: tx.update(g, s, p), donate_argnums=(1,))  # a new function: a new trace
        add = jax.jit(optax.apply_updates, donate_argnums=(0,))

        def step(p, s, g):
            updates, s = update(g, s, p)
            return add(p, updates), s

        step.lower = lambda p, s, g: update.lower(g, s, p)  # type: ignore[attr-defined]
    params = jax.tree.map(jnp.copy, params)
    state = tx.init(params) if state is None else jax.tree.map(jnp.copy, state)
    text = step.lower(params, state, gradient(params, 0)).compile().as_text()
    for t in range(steps):
        params, state = step(params, state, gradient(params, t))
    return params, state, text


def assert_same_result(kernel, pure) -> None:
    """Codes and scales equal; parameters and float32 moments to 1e-6 relative. NaNs compare equal to NaNs."""
    (kp, ks), (pp, ps) = kernel, pure
    assert jax.tree.structure((kp, ks)) == jax.tree.structure((pp, ps))
    for a, b in zip(jax.tree.leaves(kp), jax.tree.leaves(pp), strict=True):
        assert a.dtype == b.dtype and a.shape == b.shape
        np.testing.assert_allclose(np.asarray(a, np.float64), np.asarray(b, np.float64), rtol=1e-6, atol=1e-7)
    assert_same_state(ks, ps)


def assert_same_state(kernel_state, pure_state) -> None:
    """Codes, scales and counts equal; float32 moments (of the small arrays, the float32 kernel's) to 1e-6."""
    for (path, a), b in zip(
        jax.tree_util.tree_leaves_with_path(kernel_state), jax.tree.leaves(pure_state), strict=True
    ):
        assert a.dtype == b.dtype and a.shape == b.shape
        key = jax.tree_util.keystr(path)
        if key.endswith((".codes", ".scales")) or a.dtype == jnp.int32:
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg=key)
        else:
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6, atol=1e-7, err_msg=key)


def both_paths(pure_path, run):
    """``run()`` with the kernel (its HLO must call it) and on the pure path (its HLO must not)."""
    pure_path(False)
    *kernel, text = run()
    assert calls(text, QUANTIZED) >= 1, "the quantized kernel is not in the compiled step"
    pure_path(True)
    *pure, pure_text = run()
    assert QUANTIZED not in pure_text
    return kernel, pure


def quantized_leaves(state) -> list[QuantizedArray]:
    return [
        x
        for x in jax.tree.leaves(state, is_leaf=lambda x: isinstance(x, QuantizedArray))
        if isinstance(x, QuantizedArray)
    ]


# ---------------------------------------------------------------- the kernel runs


@pytest.mark.parametrize("bits", [8, 4])
def test_apply_step_compiles_to_the_quantized_kernel_and_the_plain_one_for_small_arrays(bits):
    params = mixed_params()
    tx = adamjax.adamw(1e-3, weight_decay=0.1, state_bits=bits)
    state = tx.init(params)
    assert len(quantized_leaves(state)) == 8  # mu and nu of the four large arrays
    text = jax.jit(functools.partial(adamjax.apply_step, tx)).lower(params, state, params).compile().as_text()
    assert calls(text, QUANTIZED) == 1 and calls(text, DENSE) == 1  # the two small arrays keep float32 moments
    assert adamjax.native_status(tx, params) == "fused: apply_step runs the native kernel for this transformation"
    # Groups of 16 arrays per call, as the float32 kernel.
    many = {f"w{i}": jnp.zeros((64, 64), jnp.float32) for i in range(20)}
    text = jax.jit(functools.partial(adamjax.apply_step, tx)).lower(many, tx.init(many), many).compile().as_text()
    assert calls(text, QUANTIZED) == 2 and calls(text, DENSE) == 0


def test_a_donated_step_writes_codes_and_scales_in_place():
    params = {"w": jnp.zeros((256, 1024), jnp.float32)}
    tx = adamjax.adam(1e-3, state_bits=8)
    step = jax.jit(lambda p, s, g: adamjax.apply_step(tx, g, s, p), donate_argnums=(0, 1))
    compiled = step.lower(params, tx.init(params), params).compile()
    assert " copy(" not in compiled.as_text()
    memory = compiled.memory_analysis()
    aliased = 4 * 256 * 1024 + 2 * (256 * 1024 + 4 * 256 * 4)  # parameters, both codes, both scales
    assert aliased <= memory.alias_size_in_bytes <= aliased + 64 and memory.temp_size_in_bytes < 4096


# ---------------------------------------------------------------- equal to the pure path


CONFIGS = {
    "adam8": lambda: adamjax.adam(3e-3, state_bits=8),
    "adam4": lambda: adamjax.adam(3e-3, state_bits=4),
    "adamw8": lambda: adamjax.adamw(3e-3, weight_decay=0.1, state_bits=8),
    "adam8-block64-eps-root": lambda: adamjax.adam(3e-3, b1=0.8, b2=0.95, eps_root=1e-9, state_bits=8, block_size=64),
    "adam4-block2048": lambda: adamjax.adam(3e-3, state_bits=4, block_size=2048),  # beyond the stack buffer
    "adam8-eps0-no-bias-correction": lambda: adamjax.adam(3e-3, eps=0.0, bias_correction=False, state_bits=8),
    "adamw4-schedules": lambda: adamjax.adamw(
        optax.linear_schedule(3e-3, 1e-4, 20), weight_decay=optax.linear_schedule(0.1, 0.0, 20), state_bits=4
    ),
    "clip+adamw8": lambda: optax.chain(
        optax.clip_by_global_norm(1.0), adamjax.adamw(3e-3, weight_decay=0.1, state_bits=8)
    ),
    "inject(adamw4)": lambda: optax.inject_hyperparams(adamjax.adamw, static_args=("state_bits",))(
        learning_rate=3e-3, weight_decay=0.1, state_bits=4
    ),
}


@pytest.mark.parametrize("name", list(CONFIGS))
def test_twenty_five_steps_equal_the_pure_path(name, pure_path):
    params = mixed_params()
    kernel, pure = both_paths(pure_path, lambda: run_steps(CONFIGS[name](), params, 25))
    assert_same_result(kernel, pure)
    codes = quantized_leaves(kernel[1])
    assert len(codes) == 8 and all(int(np.ptp(np.asarray(q.codes))) > 4 for q in codes)  # the codes moved


@pytest.mark.parametrize(
    "make",
    [
        lambda: adamjax.adam(3e-3, weight_decay=0.05, state_bits=4),
        lambda: adamjax.adamw(optax.linear_schedule(1e-2, 1e-3, 30), weight_decay=0.1, state_bits=8),
    ],
    ids=["adam4-coupled-l2", "adamw8-schedule"],
)
def test_a_feedback_loop_equals_the_pure_path_at_each_of_thirty_steps(make, pure_path):
    """The gradient is 0.3 p + noise (and a coupled decay adds to it): each step from the same inputs."""
    tx = make()
    params = mixed_params()
    state = tx.init(params)

    def step_of():
        return jax.jit(lambda p, s, g: adamjax.apply_step(tx, g, s, p))

    # Each path compiled once, in its mode; the loop calls the compiled steps (no retrace).
    pure_path(False)
    kernel_step = step_of().lower(params, state, params).compile()
    assert calls(kernel_step.as_text(), QUANTIZED) == 1
    pure_path(True)
    pure_step = step_of().lower(params, state, params).compile()
    assert QUANTIZED not in pure_step.as_text()
    for t in range(30):
        grads = following(params, t)
        kernel = kernel_step(params, state, grads)
        pure = pure_step(params, state, grads)
        assert_same_result(kernel, pure)
        params, state = pure


@pytest.mark.parametrize("bits", [8, 4])
def test_update_alone_runs_the_kernel_and_equals_the_pure_path(bits, pure_path):
    """tx.update (optax's protocol) takes the kernel at every size: XLA cannot fuse the pure path's passes."""
    params = mixed_params()
    tx = adamjax.adamw(3e-3, weight_decay=0.1, state_bits=bits)
    kernel, pure = both_paths(pure_path, lambda: run_steps(tx, params, 20, mode="update"))
    assert_same_result(kernel, pure)


def test_the_classic_triple_runs_the_kernel_and_equals_the_pure_path(pure_path):
    params = mixed_params()

    def run():
        init, update, get_params = optimizers.adam(optimizers.exponential_decay(3e-3, 5, 0.5), state_bits=8)
        step = jax.jit(update, donate_argnums=2)
        state = init(jax.tree.map(jnp.copy, params))
        text = step.lower(0, params, state).compile().as_text()
        for t in range(20):
            state = step(t, noise(get_params(state), t), state)
        return get_params(state), state, text

    kernel, pure = both_paths(pure_path, run)
    assert_same_result(kernel, pure)


def fused(a, b, c) -> np.ndarray:
    """``a * b + c`` rounded once to float32 (a fused multiply-add; exact in float64, then 80-bit)."""
    wide = np.longdouble
    return (np.asarray(a, wide) * np.asarray(b, wide) + np.asarray(c, wide)).astype(np.float32)


def kernel_moments(q_mu, q_nu, grad, b1=0.9, b2=0.999) -> tuple[np.ndarray, np.ndarray]:
    """The new moments as the kernel rounds them, in NumPy: ``fma(1 - b1, g, b1 m)`` and ``fma(1 - b2, g g, b2 v)``."""
    g = np.asarray(grad, np.float32)
    mu, nu = np.asarray(_quantize.dequantize(q_mu)), np.asarray(_quantize.dequantize(q_nu))
    f1, f2, c1, c2 = (np.float32(x) for x in (b1, b2, 1 - b1, 1 - b2))
    return fused(c1, g, f1 * mu), fused(c2, g * g, f2 * nu)


def assert_one_rounding_apart(kernel_q: QuantizedArray, pure_q: QuantizedArray, moment: np.ndarray) -> None:
    """Where XLA rounds ``a b + c d`` its own way, the two paths' moments may differ by a rounding.

    ``moment`` is the kernel's new moment (``kernel_moments``): the kernel's
    codes and scales must be exactly ``quantize(moment)``'s (the pure
    quantizer); the pure path's scales within one unit in the last place, and
    its codes the same except at a float32 tie, where the value lies so close
    to the midpoint of its two nearest codes (``reference_near_tie``) that a
    rounding picks either.
    """
    own = _quantize.quantize(
        jnp.asarray(moment), bits=kernel_q.bits, signed=kernel_q.signed, block_size=kernel_q.block_size
    )
    np.testing.assert_array_equal(np.asarray(kernel_q.codes), np.asarray(own.codes))
    np.testing.assert_array_equal(np.asarray(kernel_q.scales), np.asarray(own.scales))
    np.testing.assert_array_max_ulp(np.asarray(kernel_q.scales), np.asarray(pure_q.scales), maxulp=1)
    differ = unpack(kernel_q) != unpack(pure_q)
    tie = reference_near_tie(moment, kernel_q.bits, kernel_q.signed, kernel_q.block_size).reshape(differ.shape)
    assert not np.any(differ & ~tie), f"{int(np.sum(differ & ~tie))} codes differ away from a tie"


def test_bfloat16_parameters_equal_the_pure_path_up_to_a_rounding(pure_path):
    """bfloat16 weights (moments in float32 inside), one step from the same state.

    XLA compiles the pure path's ``(1 - b1) g + b1 m`` for bfloat16 gradients
    with the multiply-add fused on either product, array by array, so the new
    moments may differ by a rounding (:func:`assert_one_rounding_apart`). The
    parameters follow the float32 kernel's bfloat16 rounding (the learning rate
    in float32, where the chain rounds a Python learning rate to bfloat16
    first): they agree to bfloat16 precision.
    """
    params = mixed_params(jnp.bfloat16)
    tx = adamjax.adamw(1e-2, weight_decay=0.1, state_bits=8)
    pure_path(False)
    params, state, text = run_steps(tx, params, 5)
    assert calls(text, QUANTIZED) == 1
    grads = noise(params, 5)
    kp, ks = jax.jit(lambda p, s, g: adamjax.apply_step(tx, g, s, p))(params, state, grads)
    pure_path(True)
    pp, ps = jax.jit(lambda p, s, g: adamjax.apply_step(tx, g, s, p))(params, state, grads)
    for name in ("short_rows", "odd_rows", "conv", "square"):
        m, v = kernel_moments(state[0].mu[name], state[0].nu[name], grads[name])
        assert_one_rounding_apart(ks[0].mu[name], ps[0].mu[name], m)
        assert_one_rounding_apart(ks[0].nu[name], ps[0].nu[name], v)
    for a, b in zip(jax.tree.leaves(kp), jax.tree.leaves(pp), strict=True):
        assert a.dtype == jnp.bfloat16
        np.testing.assert_allclose(np.asarray(a, np.float64), np.asarray(b, np.float64), rtol=2e-2, atol=1e-2)


def test_a_vmapped_learning_rate_sweep_is_one_call_and_equals_separate_runs(pure_path):
    """Four learning rates in one vmapped step: bit for bit the separate runs; the pure path up to a rounding.

    Under ``vmap`` XLA rounds the pure path's moments its own way (see
    :func:`assert_one_rounding_apart`), so that comparison is one step from the
    same state.
    """
    params = {"w": jnp.asarray(np.random.default_rng(5).normal(size=(24, 300)), jnp.float32)}
    rates = jnp.asarray([1e-3, 3e-3, 1e-2, 3e-2], jnp.float32)

    def sweep(lr):
        tx = adamjax.adamw(lr, weight_decay=0.01, state_bits=4)
        p, s = params, tx.init(params)
        for t in range(6):
            p, s = adamjax.apply_step(tx, noise(params, t), s, p)
        return p, s

    pure_path(False)
    batched = jax.jit(jax.vmap(sweep))
    assert calls(batched.lower(rates).compile().as_text(), QUANTIZED) == 6
    p, s = batched(rates)
    for k, lr in enumerate(rates):
        alone = jax.jit(sweep)(lr)
        jax.tree.map(lambda a, b, k=k: np.testing.assert_array_equal(np.asarray(a)[k], np.asarray(b)), (p, s), alone)

    def one_step(lr, p, s):
        return adamjax.apply_step(adamjax.adamw(lr, weight_decay=0.01, state_bits=4), noise(params, 6), s, p)

    kp, ks = jax.jit(jax.vmap(one_step))(rates, p, s)
    pure_path(True)
    pp, ps = jax.jit(jax.vmap(one_step))(rates, p, s)
    np.testing.assert_allclose(np.asarray(kp["w"]), np.asarray(pp["w"]), rtol=1e-6, atol=1e-7)
    for k in range(len(rates)):
        member = [jax.tree.map(lambda x, k=k: x[k], tree) for tree in (s, ks, ps)]
        m, v = kernel_moments(member[0][0].mu["w"], member[0][0].nu["w"], noise(params, 6)["w"])
        for moment, field in ((m, "mu"), (v, "nu")):
            kernel_q, pure_q = (getattr(x[0], field)["w"] for x in member[1:])
            assert_one_rounding_apart(kernel_q, pure_q, moment)


def test_grad_through_a_quantized_step_differentiates_the_pure_path(pure_path):
    params = {"a": jnp.linspace(-1.0, 1.0, 5000, dtype=jnp.float32)}
    tx = adamjax.adamw(0.1, weight_decay=0.3, state_bits=8)
    grads = {"a": jnp.cos(jnp.arange(5000, dtype=jnp.float32))}
    state = adamjax.apply_step(tx, grads, tx.init(params), params)[1]

    def loss(p):
        new, _ = adamjax.apply_step(tx, grads, state, p)
        return jnp.sum(new["a"] ** 2)

    pure_path(False)
    assert calls(jax.jit(loss).lower(params).compile().as_text(), QUANTIZED) == 1
    native = jax.jit(jax.grad(loss))(params)["a"]
    pure_path(True)
    np.testing.assert_array_equal(native, jax.jit(jax.grad(loss))(params)["a"])


# ---------------------------------------------------------------- special values


def special(kind: str):
    """A gradient function that puts ``kind`` into some blocks of the mixed tree."""

    def gradient(tree: dict, t: int) -> dict:
        g = noise(tree, t)
        w = g["short_rows"]
        odd = g["odd_rows"]
        if kind == "zero blocks":  # whole blocks and whole rows of zeros: zero scales, the code of 0
            w = w.at[0:3].set(0.0).at[5, :256].set(0.0)
            odd = odd.at[2, 256:].set(0.0)
        elif kind == "one huge value":  # one element sets the block's scale; the rest round to tiny codes
            w = w.at[4, 17].set(1e15)
            odd = odd.at[3, 300].set(-3e12)
        elif kind == "nan and inf":  # without a guard, a non-finite block stays NaN (scale NaN) and spreads
            w = w.at[6, 3].set(jnp.nan).at[7, 290].set(jnp.inf)
            odd = odd.at[1, 0].set(-jnp.inf)
        elif kind == "overflowing square":  # g^2 overflows: the second moment's block goes NaN, the first not
            w = w.at[9, 100].set(3e20 if t == 0 else 0.0)
        elif kind == "subnormal":  # flushed to zero in both paths: zero blocks and ordinary ones
            w = w.at[10].set(1e-40).at[11, :128].set(3e-39)
            odd = odd.at[4].set(jnp.where(jnp.arange(301) % 2 == 0, 1e-41, 0.0))
        return dict(g, short_rows=w, odd_rows=odd)

    return gradient


@pytest.mark.parametrize("bits", [8, 4])
@pytest.mark.parametrize("kind", ["zero blocks", "one huge value", "nan and inf", "overflowing square", "subnormal"])
def test_special_values_equal_the_pure_path(kind, bits, pure_path):
    params = mixed_params()
    tx = adamjax.adam(1e-2, state_bits=bits)
    kernel, pure = both_paths(pure_path, lambda: run_steps(tx, params, 3, special(kind)))
    assert_same_result(kernel, pure)
    scales = np.asarray(kernel[1][0].nu["short_rows"].scales)
    if kind == "zero blocks":
        assert np.sum(scales == 0) >= 3 * scales.shape[1]
    if kind in ("nan and inf", "overflowing square"):
        assert np.isnan(scales).any() and not np.isnan(scales).all()
    if kind == "subnormal":
        assert np.all(np.asarray(kernel[1][0].mu["short_rows"].scales)[10] == 0)


@pytest.mark.parametrize("bits", [8, 4])
def test_apply_if_finite_skips_a_non_finite_step_leaving_every_code_and_scale(bits, pure_path):
    params = mixed_params()
    tx = optax.apply_if_finite(adamjax.adam(1e-2, state_bits=bits), max_consecutive_errors=3)

    def bad_at_two(tree, t):
        g = noise(tree, t)
        return dict(g, odd_rows=g["odd_rows"].at[3, 7].set(jnp.nan)) if t == 2 else g

    def run():
        before = run_steps(tx, params, 2)
        after = run_steps(tx, before[0], 1, lambda p, t: bad_at_two(p, t + 2), state=before[1])
        return before, after

    pure_path(False)
    (p2, s2, text), (p3, s3, _) = run()
    assert calls(text, QUANTIZED) >= 1
    assert int(s3.notfinite_count) == 1
    for a, b in zip(jax.tree.leaves((p2, s2.inner_state)), jax.tree.leaves((p3, s3.inner_state)), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    pure_path(True)
    (pp2, ps2, _), _ = run()
    assert_same_result((p2, s2), (pp2, ps2))


# ---------------------------------------------------------------- the nearest-code search


@pytest.mark.parametrize(("bits", "signed"), [(8, True), (8, False), (4, True), (4, False)])
def test_the_kernels_search_equals_quantizes_next_to_every_tie(bits, signed):
    """The kernel finds codes through thresholds; here, against the rule they come from and the pure path.

    Every float within 32 units in the last place of each midpoint between
    two codebook values is tried, so the float32 ties (the rule sends an
    exact tie to the lower code) are among them, with values spread over
    [-1, 1] and the codebook values themselves. The rule is the float32
    comparison of the two neighbouring entries (``_quantize._search_codes``,
    in NumPy); the pure path looks codes up in a table built from it.
    """
    table = _quantize.quantization_map(bits, signed)
    points = baseline_kernel_worker.search_points(table)
    want = _quantize._search_codes(points, table)
    np.testing.assert_array_equal(_native.nearest_codes(table, points), want)
    np.testing.assert_array_equal(np.asarray(jax.jit(lambda x: _quantize._nearest_codes(x, table))(points)), want)
    # Ties exist among the points, and both sides got the lower code.
    lower, upper = table[want.astype(np.int64)], table[np.minimum(want.astype(np.int64) + 1, table.size - 1)]
    ties = np.abs(points - lower) == np.abs(points - upper)
    assert np.any(ties & (lower != upper))


def test_the_kernel_refuses_a_codebook_it_cannot_search():
    with pytest.raises(ValueError, match="refuses a codebook of 16 values"):
        _native.nearest_codes(np.linspace(1.0, -1.0, 16), np.zeros(3, np.float32))  # decreasing


# ---------------------------------------------------------------- the baseline loops


@pytest.mark.slow
def test_the_baseline_loops_equal_the_pure_path(tmp_path, pure_path):
    """The kernel's non-AVX2 loops, forced on this CPU (ADAMJAX_KERNEL_BASELINE=1), bit for bit."""
    out = tmp_path / "baseline.npz"
    env = checkout_env(ADAMJAX_KERNEL_BASELINE="1", JAX_PLATFORMS="cpu")
    run_python(Path(__file__).with_name("baseline_kernel_worker.py"), out, "quantized", env=env, timeout=600)
    recorded = np.load(out)
    assert str(recorded["isa"]) == "baseline"
    for bits in (8, 4):
        for signed in (True, False):
            table = _quantize.quantization_map(bits, signed)
            points = baseline_kernel_worker.search_points(table)
            want = np.asarray(jax.jit(lambda x, t=table: _quantize._nearest_codes(x, t))(jnp.asarray(points)))
            np.testing.assert_array_equal(recorded[f"codes/{bits}/{signed}"], want)
    pure_path(True)
    for name, make in baseline_kernel_worker.QUANTIZED_CASES.items():
        for key, value in baseline_kernel_worker.quantized_trajectory(make).items():
            got = recorded[f"{name}/{key}"]
            assert got.dtype == value.dtype, f"{name} {key}"
            # The small array's float32 moments (and its parameters) take the float32 kernel: 1e-6.
            if "'w2'" in key and np.issubdtype(value.dtype, np.floating):
                np.testing.assert_allclose(got, value, rtol=1e-6, atol=1e-7, err_msg=f"{name} {key}")
            else:
                np.testing.assert_array_equal(got, value, err_msg=f"{name} {key}")


# ---------------------------------------------------------------- the benchmark scenario


@pytest.mark.slow
def test_the_benchmark_scenario_prints_its_rows_bytes_and_targets():
    """``benchmarks/suite.py --scenario quantized`` at a small size: the tables and targets, never the timings."""
    suite = Path(__file__).resolve().parents[1] / "benchmarks" / "suite.py"
    result = python_run(suite, "--quick", "--scenario", "quantized", "--large-log2", "16", "--rounds", "1", timeout=600)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "adamjax.native_status for 8 bits: fused: apply_step runs the native kernel" in out
    precomputed, in_step = out.split("Gradient computed in the step")[:2]
    bytes_by_mode = []
    for text, extra in ((precomputed, []), (in_step, ["floor: gradient + SGD"])):
        lines = text.splitlines()
        start = next(i for i, line in enumerate(lines) if line.startswith("| variant"))
        body = lines[start + 2 :]
        rows = [[cell.strip() for cell in line.strip().strip("|").split("|")] for line in body[: body.index("")]]
        names = [row[0] for row in rows]
        assert names[:8] == [
            "optax.adam",
            "apply_step, float32 state",
            "apply_step, 8-bit state",
            "apply_step, 4-bit state",
            "pure JAX apply_step, 8-bit state",
            "pure JAX apply_step, 4-bit state",
            "tx.update + apply_updates, 8-bit state",
            "pure JAX tx.update + apply_updates, 8-bit state",
        ]
        assert names[8:] == [*extra, "probe: p,m,v += f(g) (read 4, write 3)", "probe: a = 0.5 a + b (read 2, write 1)"]
        assert max(float(row[7]) for row in rows) == 1.0  # the roof is the best rate of the run
        assert next(row for row in rows if row[0] == "apply_step, float32 state")[5] == "1.00x"
        bytes_by_mode.append({row[0]: row[1] for row in rows})
    # One pass: 12 bytes of parameter and gradient, the state read and written, the gradient's pass in the step.
    assert [b["apply_step, float32 state"] for b in bytes_by_mode] == ["28.00", "36.00"]
    assert [b["apply_step, 8-bit state"] for b in bytes_by_mode] == ["16.06", "24.06"]
    assert [b["apply_step, 4-bit state"] for b in bytes_by_mode] == ["14.12", "22.12"]
    targets = [line for line in out.splitlines() if line.startswith("| one 2^16 array")]
    assert len(targets) == 8 and all(line.rstrip(" |").endswith(("PASS", "MISS")) for line in targets)
