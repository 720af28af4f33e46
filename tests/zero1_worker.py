"""ZeRO stage 1 on 8 devices: replicated parameters, state split over ``"data"``; tests/test_sharding.py checks it.

Run as ``python tests/zero1_worker.py OUT_DIR`` with
``XLA_FLAGS=--xla_force_host_platform_device_count=8 JAX_PLATFORMS=cpu``. On a
1-D mesh of 8 devices ``("data",)`` with automatic axes, every parameter
replicated, each optimizer of :data:`CASES` gets its state from
``jax.jit(init, out_shardings=adamjax.state_shardings(tx, params,
shard_state_over="data"))``, and this records:

* the spec of every state leaf and the bytes of state the first device holds
  (from ``addressable_shards``) against the bytes of the whole state;
* for an optimizer step on given gradients (``jax.jit`` with ``in_shardings``,
  ``out_shardings`` and donated parameters and state): the collectives of the
  compiled HLO with their result shapes, XLA's per-device memory analysis, and
  the parameters and state after :data:`NUM_STEPS` steps, with the same steps
  with the state replicated over the 8 devices and compiled for one device
  (no mesh) next to them;
* for a training step (loss, gradients of a batch split over ``"data"``,
  update) of some of the optimizers: the same, next to the same step with the
  state replicated (plain data parallelism on the same 8 devices).

The test compares what this writes.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
import shared_ir_context
from jax.sharding import AxisType, NamedSharding, PartitionSpec

import adamjax
from adamjax import optimizers
from adamjax._quantize import QuantizedArray, dequantize, quantize_like, zeros

shared_ir_context.install()  # one MLIR context per thread, as in the test processes

NUM_STEPS = 3
DEVICES = 8
# Every large dimension is a multiple of 8 except in "odd", whose moments cannot be split.
SHAPES = {"w1": (32, 64), "b1": (64,), "w2": (64, 16), "b2": (16,), "odd": (3, 5), "scale": ()}
# Quantized moments need blocks: 8-bit blocks of 256, 4-bit blocks of 128 elements. A (16, 2048)
# row of 2048 splits 8 ways into whole blocks; a (64, 512) row does not, so its rows are split.
QUANTIZED_SHAPES = {"wide": (16, 2048), "tall": (64, 512), "b": (64,)}
BATCH = 64
COLLECTIVE = re.compile(
    r"=\s*(\(.*?\)|\S+)\s+(all-gather|all-reduce|reduce-scatter|collective-permute|all-to-all)(-start)?\("
)
SHAPE = re.compile(r"[a-z]\w*\[([\d,]*)\]")


class QuantizedMomentsState(NamedTuple):
    count: jax.Array
    mu: Any
    nu: Any


def quantized_moments(learning_rate: float, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8) -> Any:
    """Adam without bias correction, ``mu`` in 8 bits and ``nu`` in 4, built on the quantization module only.

    Stands in for the quantized-state aliases: a state whose moments are
    ``QuantizedArray`` nodes (small arrays stay float32, as the aliases do).
    """

    def store(x: jax.Array, bits: int, signed: bool) -> Any:
        return zeros(x.shape, bits=bits, signed=signed) if x.size >= 1024 else jnp.zeros_like(x)

    def load(m: Any) -> jax.Array:
        return dequantize(m) if isinstance(m, QuantizedArray) else m

    def keep(x: jax.Array, like: Any) -> Any:
        return quantize_like(x, like) if isinstance(like, QuantizedArray) else x

    def init(params: Any) -> QuantizedMomentsState:
        return QuantizedMomentsState(
            jnp.zeros((), jnp.int32),
            jax.tree.map(lambda p: store(p, 8, True), params),
            jax.tree.map(lambda p: store(p, 4, False), params),
        )

    def update(grads: Any, state: QuantizedMomentsState, params: Any = None) -> tuple[Any, QuantizedMomentsState]:
        del params
        is_q = lambda x: isinstance(x, QuantizedArray)  # noqa: E731
        mu = jax.tree.map(lambda m, g: keep(b1 * load(m) + (1 - b1) * g, m), state.mu, grads, is_leaf=is_q)
        nu = jax.tree.map(lambda v, g: keep(b2 * load(v) + (1 - b2) * g * g, v), state.nu, grads, is_leaf=is_q)
        updates = jax.tree.map(lambda m, v: -learning_rate * load(m) / (jnp.sqrt(load(v)) + eps), mu, nu, is_leaf=is_q)
        return updates, QuantizedMomentsState(state.count + 1, mu, nu)

    return optax.GradientTransformation(init, update)


class Case(NamedTuple):
    init: Callable[[Any], Any]
    step: Callable[[Any, Any, Any], tuple[Any, Any]]  # (params, state, grads) -> (params, state)
    tx: Any  # what state_shardings is given
    shapes: dict[str, tuple[int, ...]]


def _transformation(tx: Any, shapes: dict[str, tuple[int, ...]] = SHAPES) -> Case:
    def step(params, state, grads):
        updates, state = tx.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    return Case(tx.init, step, tx, shapes)


def _triple(triple: Any) -> Case:
    init_fn, update_fn, get_params = triple

    def step(params, state, grads):
        del params  # the triple's state holds them
        state = update_fn(0, grads, state)
        return get_params(state), state

    return Case(init_fn, step, triple, SHAPES)


CASES: dict[str, Callable[[], Case]] = {
    "adam": lambda: _transformation(adamjax.adam(1e-2)),
    "adamw": lambda: _transformation(adamjax.adamw(1e-2, weight_decay=1e-2)),
    "clip_adamw": lambda: _transformation(
        optax.chain(optax.clip_by_global_norm(1.0), adamjax.adamw(1e-2, weight_decay=1e-2))
    ),
    "quantized": lambda: _transformation(quantized_moments(1e-2), QUANTIZED_SHAPES),
    "triple_adam": lambda: _triple(optimizers.adam(1e-2)),
    "triple_adamw": lambda: _triple(optimizers.from_transformation(adamjax.adamw(1e-2, weight_decay=1e-2))),
}
TRAINED = ("adamw", "clip_adamw")  # also run as a whole training step on a batch


def make_inputs(shapes: dict[str, tuple[int, ...]]) -> tuple[dict[str, np.ndarray], list[dict[str, np.ndarray]]]:
    rng = np.random.default_rng(2020)
    params = {k: rng.normal(0.0, 0.5, s).astype(np.float32) for k, s in shapes.items()}
    grads = [{k: rng.normal(0.1, 1.0, s).astype(np.float32) for k, s in shapes.items()} for _ in range(NUM_STEPS)]
    return params, grads


def make_batches() -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(1)
    return [
        (rng.normal(size=(BATCH, 32)).astype(np.float32), rng.normal(size=(BATCH, 16)).astype(np.float32))
        for _ in range(NUM_STEPS)
    ]


def loss_fn(params: dict[str, jax.Array], x: jax.Array, y: jax.Array) -> jax.Array:
    hidden = jax.nn.relu(x @ params["w1"] + params["b1"])
    out = (hidden @ params["w2"] + params["b2"]) * params["scale"]
    return jnp.mean((out - y) ** 2) + 1e-3 * jnp.sum(params["odd"] ** 2)


def collectives(compiled: Any) -> list[dict[str, Any]]:
    """Each collective of a compiled program: its op and the shapes of its results."""
    found = []
    for match in COLLECTIVE.finditer(compiled.as_text()):
        shapes = [[int(n) for n in dims.split(",") if n] for dims in SHAPE.findall(match.group(1))]
        found.append({"op": match.group(2), "shapes": shapes})
    return found


def memory(compiled: Any) -> dict[str, int]:
    stats = compiled.memory_analysis()
    return {
        "argument": int(stats.argument_size_in_bytes),
        "output": int(stats.output_size_in_bytes),
        "alias": int(stats.alias_size_in_bytes),
        "temp": int(stats.temp_size_in_bytes),
    }


def spec_of(leaf: jax.Array) -> str:
    spec = tuple(leaf.sharding.spec)
    return str(spec + (None,) * (leaf.ndim - len(spec)))


def held_bytes(tree: Any) -> int:
    device = jax.devices()[0]
    return sum(s.data.nbytes for leaf in jax.tree.leaves(tree) for s in leaf.addressable_shards if s.device == device)


def host(tree: Any) -> list[np.ndarray]:
    return [np.asarray(leaf) for leaf in jax.tree.leaves(tree)]


def run_steps(step: Callable, params: Any, state: Any, inputs: list[Any]) -> tuple[Any, Any]:
    for item in inputs:
        params, state = step(params, state, *item)[:2]
    return params, state


def run_case(name: str, mesh: jax.sharding.Mesh, arrays: dict[str, np.ndarray]) -> dict[str, Any]:
    case = CASES[name]()
    host_params, host_grads = make_inputs(case.shapes)
    replicated = NamedSharding(mesh, PartitionSpec())
    param_shardings = jax.tree.map(lambda _: replicated, host_params)
    params = jax.device_put(host_params, param_shardings)
    shardings = adamjax.state_shardings(case.tx, params, shard_state_over="data")
    state = jax.jit(case.init, out_shardings=shardings)(params)
    paths = [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_leaves_with_path(state)]
    record: dict[str, Any] = {
        "paths": paths,
        "shapes": [list(leaf.shape) for leaf in jax.tree.leaves(state)],
        "specs": [spec_of(leaf) for leaf in jax.tree.leaves(state)],
        "nbytes": [leaf.nbytes for leaf in jax.tree.leaves(state)],
        "held": held_bytes(state),
        "total": sum(leaf.nbytes for leaf in jax.tree.leaves(state)),
        "params_bytes": sum(leaf.nbytes for leaf in jax.tree.leaves(params)),
    }

    # An optimizer step on given (replicated) gradients, against the same steps on one device.
    step = jax.jit(
        case.step,
        in_shardings=(param_shardings, shardings, param_shardings),
        out_shardings=(param_shardings, shardings),
        donate_argnums=(0, 1),
    )
    compiled = step.lower(params, state, host_grads[0]).compile()
    record["step_collectives"] = collectives(compiled)
    record["step_memory"] = memory(compiled)
    grads = [(jax.device_put(g, param_shardings),) for g in host_grads]
    new_params, new_state = run_steps(compiled, params, state, grads)
    record["kept_shardings"] = all(
        a.sharding.is_equivalent_to(b, a.ndim)
        for a, b in zip(jax.tree.leaves(new_state), jax.tree.leaves(shardings), strict=True)
    )
    # The same step with the state replicated (plain data parallelism), and on one device.
    replicated_state = adamjax.state_shardings(case.tx, params)
    params = jax.device_put(host_params, param_shardings)
    plain = jax.jit(case.step, in_shardings=(param_shardings, replicated_state, param_shardings))
    for index, leaf in enumerate(
        host(run_steps(plain, params, jax.jit(case.init, out_shardings=replicated_state)(params), grads))
    ):
        arrays[f"{name}/replicated/{index}"] = leaf
    one = jax.devices()[0]
    one_params = jax.device_put(host_params, one)
    expected = run_steps(jax.jit(case.step), one_params, jax.jit(case.init)(one_params), [(g,) for g in host_grads])
    for index, (got, want) in enumerate(zip(host((new_params, new_state)), host(expected), strict=True)):
        arrays[f"{name}/step/{index}"] = got
        arrays[f"{name}/one/{index}"] = want

    if name in TRAINED:
        record["train"] = train(case, mesh, host_params, arrays, name)
    return record


def train(
    case: Case, mesh: jax.sharding.Mesh, host_params: dict[str, np.ndarray], arrays: dict[str, np.ndarray], name: str
) -> dict[str, Any]:
    """The whole training step with ZeRO stage 1 and with the state replicated (plain data parallelism)."""

    def train_step(params, state, x, y):
        loss, grads = jax.value_and_grad(loss_fn)(params, x, y)
        params, state = case.step(params, state, grads)
        return params, state, loss

    replicated = NamedSharding(mesh, PartitionSpec())
    rows = NamedSharding(mesh, PartitionSpec("data"))
    param_shardings = jax.tree.map(lambda _: replicated, host_params)
    batches = [tuple(jax.device_put(a, rows) for a in batch) for batch in make_batches()]
    out: dict[str, Any] = {}
    for layout, over in (("zero1", "data"), ("replicated", None)):
        params = jax.device_put(host_params, param_shardings)
        shardings = adamjax.state_shardings(case.tx, params, shard_state_over=over)
        state = jax.jit(case.init, out_shardings=shardings)(params)
        step = jax.jit(
            train_step,
            in_shardings=(param_shardings, shardings, rows, rows),
            out_shardings=(param_shardings, shardings, replicated),
            donate_argnums=(0, 1),
        )
        compiled = step.lower(params, state, *batches[0]).compile()
        out[layout] = {"collectives": collectives(compiled), "memory": memory(compiled), "held": held_bytes(state)}
        for index, leaf in enumerate(host(run_steps(compiled, params, state, batches))):
            arrays[f"{name}/train_{layout}/{index}"] = leaf
    one = jax.devices()[0]
    one_params = jax.device_put(host_params, one)
    one_state = jax.jit(case.init)(one_params)
    for index, leaf in enumerate(host(run_steps(jax.jit(train_step), one_params, one_state, make_batches()))):
        arrays[f"{name}/train_one/{index}"] = leaf
    return out


def main(out_dir: str) -> None:
    out = Path(out_dir)
    mesh = jax.make_mesh((DEVICES,), ("data",), axis_types=(AxisType.Auto,))
    arrays: dict[str, np.ndarray] = {}
    results = {
        "device_count": jax.device_count(),
        "cases": {name: run_case(name, mesh, arrays) for name in CASES},
    }
    np.savez(out / "arrays.npz", **arrays)
    (out / "results.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main(sys.argv[1])
