"""Steps of the native kernel's baseline loops; tests/test_fast_path.py compares them with the pure-JAX path.

Run as ``python tests/baseline_kernel_worker.py OUT.npz`` with
``ADAMJAX_KERNEL_BASELINE=1`` (the kernel then runs its baseline loops even on
an AVX2 CPU). It records which loops ran (``adamjax._native.instruction_set``)
and, for each case of :data:`CASES`, the parameters and moments after
:data:`STEPS` steps of ``adamjax.apply_step`` on arrays whose sizes leave
remainders for every vector width.
"""

from __future__ import annotations

import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax

import adamjax
from adamjax import _native

STEPS = 6
SIZES = (70_001, 37, 5, 1)

CASES = {
    "adam": lambda: adamjax.adam(3e-3),
    "adam-l2": lambda: adamjax.adam(3e-3, b1=0.5, b2=0.9, eps=1e-6, eps_root=1e-9, weight_decay=0.05),
    "adamw-schedule": lambda: adamjax.adamw(optax.linear_schedule(3e-3, 1e-4, 10), weight_decay=0.1),
    "adam-bf16-state": lambda: adamjax.adam(3e-3, mu_dtype=jnp.bfloat16, nu_dtype=jnp.bfloat16),
}
DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


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


def main(out: str) -> None:
    results = {"isa": np.asarray(_native.instruction_set() or "absent")}
    for name, make in CASES.items():
        for dtype_name, dtype in DTYPES.items():
            for key, value in trajectory(make, dtype).items():
                results[f"{name}/{dtype_name}/{key}"] = value
    np.savez(out, **results)


if __name__ == "__main__":
    main(sys.argv[1])
