"""Quantized moments (``state_bits=8`` or ``4``) in the Adam family, against a float64 transcription.

The reference step (NumPy, float64) dequantizes the stored codes with the
published codebooks, takes Adam's step and requantizes with the blockwise
rule of Dettmers et al. (2022); the transcription of the quantizer itself is
``tests/test_quantize.py``'s, checked there against bitsandbytes' outputs.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from test_quantize import reference_map, reference_near_tie, reference_quantize, unpack

import adamjax
from adamjax import _quantize, optimizers
from adamjax._quantize import QuantizedArray

BITS = [8, 4]
SHAPE = (64, 128)  # 8,192 elements: quantized (the threshold is 4,096)


def is_q(x) -> bool:
    return isinstance(x, QuantizedArray)


def params_tree(key: int = 0) -> dict:
    k1, k2 = jax.random.split(jax.random.key(key))
    return {"w": jax.random.normal(k1, SHAPE, jnp.float32), "b": jax.random.normal(k2, (10,), jnp.float32)}


def grads_at(step: int, params: dict) -> dict:
    key = jax.random.fold_in(jax.random.key(7), step)
    return jax.tree.map(lambda p: 0.3 * p + jax.random.normal(key, p.shape, p.dtype), params)


def ref_dequantize(q: QuantizedArray) -> np.ndarray:
    table = reference_map(q.bits, q.signed).astype(np.float32).astype(np.float64)
    codes = unpack(q)
    scales = np.asarray(q.scales, np.float64)
    scale_each = np.repeat(scales, q.block_size, axis=-1)[..., : codes.shape[-1]]
    return (table[codes] * scale_each).reshape(q.shape)


def run(tx, steps: int, params: dict | None = None):
    params = params_tree() if params is None else params
    state = tx.init(params)
    update = jax.jit(tx.update)
    for t in range(steps):
        updates, state = update(grads_at(t, params), state, params)
        params = optax.apply_updates(params, updates)
    return params, state


# ---------------------------------------------------------------- the state


@pytest.mark.parametrize("bits", BITS)
@pytest.mark.parametrize("name", ["adam", "adamw", "amsgrad", "nadam", "adabelief", "radam", "ademamix", "adopt"])
def test_large_arrays_get_quantized_moments_and_small_ones_float32(name, bits):
    state = getattr(adamjax, name)(1e-3, state_bits=bits).init(params_tree())
    core = state[0]
    moments = [getattr(core, f) for f in core._fields if f not in ("count",) and isinstance(getattr(core, f), dict)]
    assert moments
    for moment in moments:
        assert is_q(moment["w"]) and moment["w"].bits == bits and moment["w"].shape == SHAPE
        assert moment["b"].dtype == jnp.dtype(jnp.float32)
    signed = {f: getattr(core, f)["w"].signed for f in core._fields if f in ("mu", "nu", "nu_max", "m1", "m2")}
    assert signed.get("mu", True) and not signed.get("nu", False) and not signed.get("nu_max", False)


@pytest.mark.parametrize(("bits", "bound"), [(8, 2.1), (4, 1.1)])
def test_state_bytes_per_parameter_from_the_arrays_and_xla(bits, bound):
    params = {"w": jnp.zeros((1024, 1024), jnp.float32)}
    tx = adamjax.adam(1e-3, state_bits=bits)
    state = tx.init(params)
    held = sum(leaf.nbytes for leaf in jax.tree.leaves(state))
    per_param = held / 1024**2
    assert per_param <= bound, per_param
    compiled = jax.jit(tx.update, donate_argnums=(1,)).lower(params, state, params).compile()
    analysis = compiled.memory_analysis()
    if analysis is not None:
        arguments = analysis.argument_size_in_bytes - 2 * 4 * 1024**2  # minus gradients and parameters
        assert arguments / 1024**2 <= bound, arguments / 1024**2
    fp32 = sum(leaf.nbytes for leaf in jax.tree.leaves(adamjax.adam(1e-3).init(params))) / 1024**2
    assert fp32 == pytest.approx(8.0, abs=1e-3) and per_param < fp32 / 3.5


# ---------------------------------------------------------------- one step against float64


def reference_step(name, bits, core, grads, params, lr, t):
    """Adam / AdamW / AMSGrad from dequantized codes, in float64; returns updates and new stored moments."""
    b1, b2, eps, wd = 0.9, 0.999, 1e-8, 0.1
    out_updates, new = {}, {"mu": {}, "nu": {}, "nu_max": {}}
    for key in params:
        read = {f: getattr(core, f)[key] for f in ("mu", "nu", "nu_max") if hasattr(core, f)}
        values = {f: ref_dequantize(q) if is_q(q) else np.asarray(q, np.float64) for f, q in read.items()}
        g = np.asarray(grads[key], np.float64)
        m = b1 * values["mu"] + (1 - b1) * g
        v = b2 * values["nu"] + (1 - b2) * g * g
        new["mu"][key], new["nu"][key] = m, v
        second = v
        if name == "amsgrad":
            second = np.maximum(values["nu_max"], v)
            new["nu_max"][key] = second
        direction = (m / (1 - b1**t)) / (np.sqrt(second / (1 - b2**t)) + eps)
        if name == "adamw":
            direction = direction + wd * np.asarray(params[key], np.float64)
        out_updates[key] = -lr * direction
    return out_updates, new


@pytest.mark.parametrize("bits", BITS)
@pytest.mark.parametrize("name", ["adam", "adamw", "amsgrad"])
def test_a_quantized_step_equals_the_float64_transcription(name, bits):
    lr = 1e-2
    make = {"adamw": lambda: adamjax.adamw(lr, weight_decay=0.1, state_bits=bits)}.get(
        name, lambda: getattr(adamjax, name)(lr, state_bits=bits)
    )
    tx = make()
    params, state = run(tx, 5)  # a state with varied codes
    grads = grads_at(5, params)
    updates, new_state = jax.jit(tx.update)(grads, state, params)
    core, new_core = state[0], new_state[0]
    want_updates, want = reference_step(name, bits, core, grads, params, lr, t=6)
    for key in params:
        np.testing.assert_allclose(np.asarray(updates[key], np.float64), want_updates[key], rtol=2e-5, atol=1e-9)
    for field, moments in want.items():
        for key, value in moments.items():
            stored = getattr(new_core, field)[key]
            if not is_q(stored):
                np.testing.assert_allclose(np.asarray(stored, np.float64), value, rtol=1e-5)
                continue
            codes, scales, _ = reference_quantize(value, bits, stored.signed, stored.block_size)
            np.testing.assert_allclose(np.asarray(stored.scales, np.float64), scales, rtol=1e-6)
            differ = unpack(stored) != codes
            near = reference_near_tie(value, bits, stored.signed, stored.block_size).reshape(codes.shape)
            assert not np.any(differ & ~near), f"{field}: {int(np.sum(differ & ~near))} codes differ away from a tie"


@pytest.mark.parametrize("bits", BITS)
def test_the_classic_triple_and_from_transformation_equal_the_alias(bits):
    want, _ = run(adamjax.adam(1e-2, state_bits=bits), 4)
    for init, update, get_params in (
        optimizers.adam(1e-2, state_bits=bits),
        optimizers.from_transformation(adamjax.adam(1e-2, state_bits=bits)),
    ):
        state = init(params_tree())
        step = jax.jit(update)
        for t in range(4):
            state = step(t, grads_at(t, get_params(state)), state)
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7), get_params(state), want)
        # The triple's state holds codes, not float32 moments: under a third of float32 Adam's.
        held = sum(leaf.nbytes for leaf in jax.tree.leaves(state)) - sum(p.nbytes for p in jax.tree.leaves(want))
        assert held < 8 * sum(p.size for p in jax.tree.leaves(want)) / 3, held


# ---------------------------------------------------------------- training


def least_squares(bits, rounds=400):
    a = jax.random.normal(jax.random.key(3), (256, 64), jnp.float32)
    target = jax.random.normal(jax.random.key(4), (64, 128), jnp.float32)
    y = a @ target

    def loss(w):
        return jnp.mean((a @ w - y) ** 2)

    tx = adamjax.adam(3e-2, state_bits=bits)
    w = jnp.zeros((64, 128), jnp.float32)
    state = tx.init(w)

    @jax.jit
    def step(w, state):
        value, g = jax.value_and_grad(loss)(w)
        updates, state = tx.update(g, state, w)
        return optax.apply_updates(w, updates), state, value

    for _ in range(rounds):
        w, state, value = step(w, state)
    return float(loss(w)), float(loss(jnp.zeros_like(w)))


def test_quantized_adam_trains_like_float32_adam():
    """400 steps of a noiseless least-squares fit from a loss of 65 (measured: float32 8.7e-7,
    8 bits 1.5e-6, 4 bits 4.5e-3); the bounds leave a margin of about 4x."""
    fp32, start = least_squares(None)
    eight, _ = least_squares(8)
    four, _ = least_squares(4)
    assert fp32 < 1e-7 * start and eight < 1e-7 * start, (fp32, eight, start)
    assert four < 3e-4 * start, (four, start)
    assert eight < 4 * fp32, (eight, fp32)


# ---------------------------------------------------------------- composition


@pytest.mark.parametrize("bits", BITS)
def test_chain_vmap_donation_multisteps_inject_and_apply_if_finite(bits):
    params = params_tree()
    grads = grads_at(0, params)
    # optax.chain with clipping, jitted with the state donated.
    tx = optax.chain(optax.clip_by_global_norm(1.0), adamjax.adamw(1e-3, state_bits=bits))
    state = tx.init(params)
    _, after = jax.jit(tx.update, donate_argnums=(1,))(grads, state, params)
    assert is_q(after[1][0].mu["w"])
    # vmap over an ensemble of three models.
    stacked = jax.tree.map(lambda x: jnp.stack([x, 2 * x, -x]), params)
    inner = adamjax.adam(1e-3, state_bits=bits)
    states = jax.vmap(inner.init)(stacked)
    updates, _ = jax.vmap(inner.update)(jax.tree.map(lambda x: 0.1 * x, stacked), states, stacked)
    for i in range(3):
        one = jax.tree.map(lambda x, i=i: x[i], stacked)
        alone, _ = inner.update(jax.tree.map(lambda x: 0.1 * x, one), inner.init(one), one)
        jax.tree.map(lambda a, b, i=i: np.testing.assert_allclose(a[i], b, rtol=1e-6), updates, alone)
    # MultiSteps keeps the inner quantized state between real steps.
    multi = optax.MultiSteps(adamjax.adam(1e-3, state_bits=bits), every_k_schedule=2)
    with jax.numpy_dtype_promotion("standard"):  # optax's accumulator divides float32 by an int32 count
        ms = multi.init(params)
        _, ms = jax.jit(multi.update)(grads, ms, params)
        assert int(ms.inner_opt_state[0].count) == 0
        _, ms = jax.jit(multi.update)(grads, ms, params)
    assert int(ms.inner_opt_state[0].count) == 1 and is_q(ms.inner_opt_state[0].nu["w"])
    # inject_hyperparams: the layout arguments are static.
    injected = optax.inject_hyperparams(adamjax.adam, static_args=("state_bits", "block_size"))(
        learning_rate=1e-3, state_bits=bits
    )
    u1, _ = jax.jit(injected.update)(grads, injected.init(params), params)
    u2, _ = inner.update(grads, inner.init(params), params)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6), u1, u2)
    # apply_if_finite: a NaN gradient leaves every code and scale as it was.
    guarded = optax.apply_if_finite(adamjax.adam(1e-3, state_bits=bits), max_consecutive_errors=3)
    gs = guarded.init(params)
    _, gs = guarded.update(grads, gs, params)
    bad = {"w": grads["w"].at[3, 5].set(jnp.nan), "b": grads["b"]}
    skipped, gs2 = guarded.update(bad, gs, params)
    assert not any(bool(jnp.any(u)) for u in jax.tree.leaves(skipped))
    for a, b in zip(jax.tree.leaves(gs.inner_state), jax.tree.leaves(gs2.inner_state), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_without_a_guard_a_nan_poisons_only_its_block():
    tx = adamjax.adam(1e-3, state_bits=8)
    params = {"w": jnp.ones(SHAPE, jnp.float32)}
    state = tx.init(params)
    g = jnp.ones(SHAPE, jnp.float32).at[0, 0].set(jnp.nan)
    _, state = tx.update({"w": g}, state, params)
    scales = np.asarray(state[0].nu["w"].scales)
    assert np.isnan(scales.reshape(-1)[0]) and np.all(np.isfinite(scales.reshape(-1)[1:]))


def test_orbax_checkpoint_resumes_bit_for_bit(tmp_path):
    tx = adamjax.adam(1e-2, state_bits=4)
    params, state = run(tx, 3)
    adamjax.save_state(tmp_path / "ckpt", {"params": params, "opt_state": state})
    restored = adamjax.restore_state(tmp_path / "ckpt", {"params": params, "opt_state": tx.init(params)})
    for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(restored["opt_state"]), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    update = jax.jit(tx.update)
    straight, resumed = (params, state), (restored["params"], restored["opt_state"])
    for t in range(3, 6):
        outs = []
        for p, s in (straight, resumed):
            u, s = update(grads_at(t, p), s, p)
            outs.append((optax.apply_updates(p, u), s))
        straight, resumed = outs
    for a, b in zip(jax.tree.leaves(straight), jax.tree.leaves(resumed), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_adam_stats_reads_quantized_moments():
    tx = adamjax.adam(1e-2, state_bits=8)
    params, state = run(tx, 4)
    updates, state = tx.update(grads_at(4, params), state, params)
    core = state[0]
    dense = core._replace(
        mu=jax.tree.map(lambda q: _quantize.dequantize(q) if is_q(q) else q, core.mu, is_leaf=is_q),
        nu=jax.tree.map(lambda q: _quantize.dequantize(q) if is_q(q) else q, core.nu, is_leaf=is_q),
    )
    ours = adamjax.adam_stats((core,) + tuple(state[1:]), updates, tx=tx)
    want = adamjax.adam_stats((dense,) + tuple(state[1:]), updates, tx=tx)
    for a, b in zip(ours, want, strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6)


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"state_bits": 16}, ValueError, r"state_bits=\.\.\.\)` must be None, 8 or 4; got 16"),
        ({"state_bits": True}, ValueError, r"must be None, 8 or 4; got True"),
        ({"state_bits": 8.0}, ValueError, r"must be None, 8 or 4; got 8.0"),
        ({"state_bits": 8, "block_size": 0}, ValueError, r"block_size=\.\.\.\)` must be a positive integer"),
        ({"state_bits": 4, "block_size": 33}, ValueError, r"must be even"),
        ({"block_size": 64}, ValueError, r"needs `state_bits` \(8 or 4\)"),
        ({"state_bits": 8, "mu_dtype": jnp.bfloat16}, ValueError, r"`mu_dtype` cannot be given as well"),
        ({"state_bits": jnp.asarray(8)}, TypeError, r"static_args=\('state_bits', 'block_size'\)"),
    ],
)
def test_bad_settings_are_refused_at_construction_naming_the_argument(kwargs, error, match):
    with pytest.raises(error, match=match):
        adamjax.adam(1e-3, **kwargs)
    with pytest.raises(error, match=match):
        if "mu_dtype" in kwargs:
            adamjax.scale_by_adam(**kwargs)
        else:
            optimizers.adam(1e-3, **kwargs)


def test_complex_parameters_are_refused_at_init():
    with pytest.raises(TypeError, match="quantized moments are real"):
        adamjax.adam(1e-3, state_bits=8).init({"w": jnp.zeros(SHAPE, jnp.complex64)})
    with pytest.raises(TypeError, match="quantized moments are real"):
        optimizers.adam(1e-3, state_bits=8)[0](jnp.zeros(SHAPE, jnp.complex64))


@pytest.mark.native
def test_the_fused_step_runs_the_quantized_kernel_and_equals_the_two_calls():
    """tests/test_quantized_kernel.py compares the kernel with the pure path bit for bit."""
    tx = adamjax.adam(1e-3, state_bits=8)
    params = params_tree()
    assert adamjax.native_status(tx, params).startswith("fused")
    new, _ = adamjax.apply_step(tx, grads_at(0, params), tx.init(params), params)
    updates, _ = tx.update(grads_at(0, params), tx.init(params), params)
    # apply_step rounds p + (-lr) u once (a fused multiply-add, as XLA compiles the chain); the
    # updates returned alone are rounded before the addition: one rounding apart at most.
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-9), new, optax.apply_updates(params, updates)
    )
