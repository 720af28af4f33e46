"""Steps of the native kernel's baseline loops; tests/test_fast_path.py compares them with the pure-JAX path.

Run as ``python tests/baseline_kernel_worker.py OUT.npz`` with
``ADAMJAX_KERNEL_BASELINE=1`` (the kernel then runs its baseline loops even on
an AVX2 CPU). It records which loops ran (``adamjax._native.instruction_set``)
and, for each case of :data:`CASES`, the parameters and moments after
:data:`STEPS` steps of ``adamjax.apply_step`` on arrays whose sizes leave
remainders for every vector width.

With a second argument ``quantized`` it records the cases of
:data:`QUANTIZED_CASES` instead (8- and 4-bit moments, on rows that end in a
short block, an odd row at 4 bits, and a small float32 array beside them; tests/
test_quantized_kernel.py compares them bit for bit), and the codes the kernel's
nearest-code search gives for :func:`search_points`.
"""

from __future__ import annotations

import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import shared_ir_context

import adamjax
from adamjax import _native

shared_ir_context.install()  # one MLIR context per thread, as in the test processes

STEPS = 6
SIZES = (70_001, 37, 5, 1)

CASES = {
    "adam": lambda: adamjax.adam(3e-3),
    "adam-l2": lambda: adamjax.adam(3e-3, b1=0.5, b2=0.9, eps=1e-6, eps_root=1e-9, weight_decay=0.05),
    "adamw-schedule": lambda: adamjax.adamw(optax.linear_schedule(3e-3, 1e-4, 10), weight_decay=0.1),
    "adam-bf16-state": lambda: adamjax.adam(3e-3, mu_dtype=jnp.bfloat16, nu_dtype=jnp.bfloat16),
}
DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}

QUANTIZED_SHAPES = ((24, 300), (16, 301), (7,))
QUANTIZED_CASES = {
    "adam8": lambda: adamjax.adam(3e-3, state_bits=8),
    "adamw4-schedule": lambda: adamjax.adamw(optax.linear_schedule(3e-3, 1e-4, 10), weight_decay=0.1, state_bits=4),
    "adam8-l2-block64": lambda: adamjax.adam(3e-3, weight_decay=0.05, eps=0.0, state_bits=8, block_size=64),
    "adam4-block2048": lambda: adamjax.adam(3e-3, state_bits=4, block_size=2048),
}


def quantized_params() -> dict:
    rng = np.random.default_rng(1)
    return {f"w{i}": jnp.asarray(rng.normal(size=shape), jnp.float32) for i, shape in enumerate(QUANTIZED_SHAPES)}


def search_points(table: np.ndarray) -> np.ndarray:
    """Values in [-1, 1] around every midpoint of ``table`` (32 floats each side) and 4,096 spread ones."""
    table = np.asarray(table, np.float32)
    middles = ((table[:-1].astype(np.float64) + table[1:]) / 2).astype(np.float32)
    near = (middles.view(np.int32)[:, None] + np.arange(-32, 33, dtype=np.int32)).view(np.float32).reshape(-1)
    spread = np.random.default_rng(2).uniform(table[0], table[-1], 4096).astype(np.float32)
    return np.concatenate([near[np.abs(near) <= 1], spread, table])


def params(dtype: object) -> dict:
    rng = np.random.default_rng(0)
    return {f"w{i}": jnp.asarray(rng.normal(size=n), dtype) for i, n in enumerate(SIZES)}


def grads(tree: dict, t: int) -> dict:
    rng = np.random.default_rng(50 + t)
    return jax.tree.map(lambda p: jnp.asarray(rng.normal(size=p.shape), p.dtype), tree)


def trajectory(make: object, dtype: object) -> dict:
    """Parameters and state leaves after STEPS jitted ``apply_step`` calls, as float64 arrays by name."""
    tx = make()  # type: ignore[operator]
    tree = params(dtype)
    state = tx.init(tree)
    step = jax.jit(lambda g, s, p: adamjax.apply_step(tx, g, s, p))
    for t in range(STEPS):
        tree, state = step(grads(tree, t), state, tree)
    leaves = jax.tree.leaves((tree, state))
    return {str(i): np.asarray(leaf.astype(jnp.float32), np.float64) for i, leaf in enumerate(leaves)}


def quantized_trajectory(make: object) -> dict:
    """Parameters, codes and scales after STEPS jitted ``apply_step`` calls (gradients follow the parameters)."""
    tx = make()  # type: ignore[operator]
    tree = quantized_params()
    state = tx.init(tree)
    step = jax.jit(lambda g, s, p: adamjax.apply_step(tx, g, s, p))
    for t in range(STEPS):
        noise = grads(tree, t)
        tree, state = step(jax.tree.map(lambda p, n: 0.3 * p + n, tree, noise), state, tree)
    leaves = jax.tree_util.tree_leaves_with_path((tree, state))
    return {jax.tree_util.keystr(path): np.asarray(leaf) for path, leaf in leaves}


def main(out: str, which: str = "dense") -> None:
    results = {"isa": np.asarray(_native.instruction_set() or "absent")}
    if which == "quantized":
        from adamjax import _quantize

        for name, make in QUANTIZED_CASES.items():
            for key, value in quantized_trajectory(make).items():
                results[f"{name}/{key}"] = value
        for bits in (8, 4):
            for signed in (True, False):
                table = _quantize.quantization_map(bits, signed)
                results[f"codes/{bits}/{signed}"] = _native.nearest_codes(table, search_points(table))
        np.savez(out, **results)
        return
    for name, make in CASES.items():
        for dtype_name, dtype in DTYPES.items():
            for key, value in trajectory(make, dtype).items():
                results[f"{name}/{dtype_name}/{key}"] = value
    np.savez(out, **results)


if __name__ == "__main__":
    main(*sys.argv[1:])
