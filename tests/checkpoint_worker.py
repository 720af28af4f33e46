"""Trains, checkpoints and resumes in a fresh interpreter, for ``tests/test_checkpoint.py``.

``python tests/checkpoint_worker.py save DIR`` runs every case 100 steps
straight (to ``DIR/<case>/straight.npz``), then 50 steps from the start and
saves them with ``adamjax.save_state`` (to ``DIR/<case>/checkpoint``).
``python tests/checkpoint_worker.py resume DIR``, run in another process,
restores each checkpoint into a freshly initialised optimizer with
``adamjax.restore_state``, takes the remaining 50 steps and writes
``DIR/<case>/resumed.npz``. Each ``.npz`` holds every leaf of the parameters and
the optimizer state, keyed by its path.
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path

import jax

jax.config.update("jax_enable_x64", True)  # the float64 case needs it; the others name float32

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
import shared_ir_context  # noqa: E402

import adamjax  # noqa: E402
from adamjax import optimizers  # noqa: E402

shared_ir_context.install()  # one MLIR context per thread, as in the test processes

STEPS, SAVE_AT = 100, 50


@functools.cache
def make_problem(dtype):
    """A two-layer tanh network on fixed random data; every leaf gets nonzero moments."""
    # NumPy draws the data: jax.random would compile once per shape, seconds in all.
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(32, 4)), dtype)
    y = jnp.asarray(np.sin(rng.normal(size=(32, 2))), dtype)
    params = {
        "hidden": {"w": jnp.asarray(0.5 * rng.normal(size=(4, 8)), dtype), "b": jnp.zeros((8,), dtype)},
        "out": {"w": jnp.asarray(0.5 * rng.normal(size=(8, 2)), dtype), "b": jnp.zeros((2,), dtype)},
    }

    def loss(params):
        hidden = jnp.tanh(x @ params["hidden"]["w"] + params["hidden"]["b"])
        return jnp.mean((hidden @ params["out"]["w"] + params["out"]["b"] - y) ** 2)

    return params, jax.jit(jax.grad(loss))


class TransformationCase:
    """An optax transformation in a jitted step; the checkpoint is ``{"params", "opt_state"}``."""

    def __init__(self, tx, dtype):
        self.params, grad = make_problem(dtype)
        self.tx = tx

        @jax.jit
        def step(carry):
            updates, opt_state = tx.update(grad(carry["params"]), carry["opt_state"], carry["params"])
            return {"params": optax.apply_updates(carry["params"], updates), "opt_state": opt_state}

        self.step_fn = step

    def init(self):
        return {"params": self.params, "opt_state": self.tx.init(self.params)}

    def step(self, i, carry):
        del i
        return self.step_fn(carry)

    def save(self, directory, carry):
        adamjax.save_state(directory, carry)

    def restore(self, directory):
        return adamjax.restore_state(directory, self.init())


class TripleCase:
    """An ``(init, update, get_params)`` triple, saved in ``unpack_optimizer_state``'s form."""

    def __init__(self, triple, dtype):
        self.params, self.grad = make_problem(dtype)
        self.init_fn, self.update_fn, self.get_params = triple

    def init(self):
        return self.init_fn(self.params)

    def step(self, i, opt_state):
        return self.update_fn(i, self.grad(self.get_params(opt_state)), opt_state)

    def save(self, directory, opt_state):
        adamjax.save_state(directory, optimizers.unpack_optimizer_state(opt_state))

    def restore(self, directory):
        target = optimizers.unpack_optimizer_state(self.init())
        return optimizers.pack_optimizer_state(adamjax.restore_state(directory, target))


class FromTransformationCase(TripleCase):
    """``from_transformation``'s state is a plain pytree, saved as it is."""

    def save(self, directory, state):
        adamjax.save_state(directory, state)

    def restore(self, directory):
        return adamjax.restore_state(directory, self.init())


def cases():
    schedule = optax.cosine_decay_schedule(1e-2, STEPS)
    return {
        "adam_float64": TransformationCase(adamjax.adam(1e-2), jnp.float64),
        "adamw_chain": TransformationCase(
            optax.chain(optax.clip_by_global_norm(1.0), adamjax.adamw(schedule, weight_decay=1e-2)), jnp.float32
        ),
        "amsgrad_chain_bf16_mu": TransformationCase(
            optax.chain(optax.clip(0.5), adamjax.amsgrad(1e-2, mu_dtype=jnp.bfloat16)), jnp.float32
        ),
        "triple_adam": TripleCase(optimizers.adam(optimizers.exponential_decay(1e-2, 10, 0.9)), jnp.float32),
        "triple_from_transformation": FromTransformationCase(
            optimizers.from_transformation(adamjax.nadam(1e-2)), jnp.float32
        ),
    }


def leaves(tree) -> dict[str, np.ndarray]:
    """Every leaf by its path; bfloat16 widened to float32 (exactly) so that ``.npz`` stores it, its key marked."""
    arrays = {}
    for path, leaf in jax.tree_util.tree_leaves_with_path(tree):
        key, array = jax.tree_util.keystr(path), np.asarray(leaf)
        if array.dtype == jnp.bfloat16:
            key, array = f"{key} (bfloat16)", array.astype(np.float32)
        arrays[key] = array
    return arrays


def run(case, carry, steps):
    for i in steps:
        carry = case.step(i, carry)
    return carry


def main(mode: str, directory: Path) -> None:
    # adamjax imports orbax only when a checkpoint is written or read; flax never.
    print("imported before the first checkpoint:", sorted({m.split(".")[0] for m in sys.modules} & {"orbax", "flax"}))
    for name, case in cases().items():
        where = directory / name
        if mode == "save":
            where.mkdir(parents=True)
            np.savez(where / "straight.npz", **leaves(run(case, case.init(), range(STEPS))))
            case.save(where / "checkpoint", run(case, case.init(), range(SAVE_AT)))
        else:
            resumed = run(case, case.restore(where / "checkpoint"), range(SAVE_AT, STEPS))
            np.savez(where / "resumed.npz", **leaves(resumed))
        print(f"{mode} {name}")


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]))
