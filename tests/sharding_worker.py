"""Runs every optimizer on 8 devices and writes what it saw; tests/test_sharding.py checks it.

Run as ``python tests/sharding_worker.py OUT_DIR`` with
``XLA_FLAGS=--xla_force_host_platform_device_count=8 JAX_PLATFORMS=cpu``: the
test launches it in a subprocess so that the rest of the suite keeps one
device. For each mesh kind -- explicit axes under ``jax.set_mesh`` (sharding in
types) and classic automatic axes -- and each optimizer, on a 2 x 4 mesh
``("data", "fsdp")`` with the parameters sharded FSDP-style along ``"fsdp"`` and
replicated along ``"data"``, it records (with one compiled ``init`` and one
compiled update holding all the optimizers, since compiling is what costs):

* the sharding of every state leaf from ``init`` on the sharded parameters,
  from ``jax.jit(init)`` (explicit) or ``jax.jit(init, out_shardings=...)`` with
  ``adamjax.state_shardings`` (auto), from ``jax.eval_shape(init, ...)`` on
  ``jax.ShapeDtypeStruct``s, and after each jitted update;
* the shapes of the shards each device holds, and the per-device bytes of the
  compiled ``init`` and update (no full copy of anything on one device);
* the collectives in the compiled update's HLO;
* the parameters and state after a few steps, to compare with a one-device run.

The test process builds the same inputs with :func:`make_inputs` and the same
optimizers with :data:`CASES` (importing this module runs nothing).
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
import shared_ir_context
from jax.sharding import AxisType, NamedSharding, PartitionSpec, SingleDeviceSharding

import adamjax
from adamjax import optimizers

shared_ir_context.install()  # one MLIR context per thread, as in the test processes

NUM_STEPS = 3
MESH_SHAPE = (2, 4)
AXES = ("data", "fsdp")
# FSDP: big arrays split along "fsdp", everything replicated along "data". Every
# shape is distinct, so a state leaf's shape names the parameter it mirrors.
SPECS = {
    "embed": ((32, 16), PartitionSpec("fsdp", None)),
    "dense": {
        "w": ((16, 24), PartitionSpec(None, "fsdp")),
        "b": ((24,), PartitionSpec("fsdp")),
    },
    "gain": ((3,), PartitionSpec()),
    "temperature": ((), PartitionSpec()),
}
COLLECTIVES = re.compile(r"\b(all-gather|all-reduce|reduce-scatter|collective-permute|all-to-all)(-start)?\b")


def _is_spec(x: Any) -> bool:
    return isinstance(x, tuple) and len(x) == 2 and isinstance(x[1], PartitionSpec)


def param_specs() -> Any:
    return jax.tree.map(lambda entry: entry[1], SPECS, is_leaf=_is_spec)


def _is_shape(x: Any) -> bool:
    return isinstance(x, tuple) and all(isinstance(n, int) for n in x)


def make_inputs() -> tuple[Any, list[Any]]:
    """Float32 parameters and ``NUM_STEPS`` gradient trees, as NumPy arrays."""
    rng = np.random.default_rng(2024)
    shapes = jax.tree.map(lambda entry: entry[0], SPECS, is_leaf=_is_spec)
    params = jax.tree.map(lambda shape: rng.normal(0.0, 1.0, shape).astype(np.float32), shapes, is_leaf=_is_shape)
    grads = [
        jax.tree.map(lambda shape: rng.normal(0.1, 1.0, shape).astype(np.float32), shapes, is_leaf=_is_shape)
        for _ in range(NUM_STEPS)
    ]
    return params, grads


def _transformation(tx: optax.GradientTransformation) -> tuple[Callable, Callable]:
    def step(params, state, grads, i):
        del i  # the transformation counts its own steps
        updates, state = tx.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    return tx.init, step


def _triple(triple: optimizers.Optimizer) -> tuple[Callable, Callable]:
    init_fn, update_fn, get_params = triple

    def step(params, state, grads, i):
        del params  # the triple's state holds them
        state = update_fn(i, grads, state)
        return get_params(state), state

    return init_fn, step


# name -> () -> (init, step(params, state, grads, i) -> (params, state))
CASES: dict[str, Callable[[], tuple[Callable, Callable]]] = {
    "adam": lambda: _transformation(adamjax.adam(1e-2)),
    "adamw": lambda: _transformation(adamjax.adamw(1e-2, weight_decay=1e-2)),
    "amsgrad": lambda: _transformation(adamjax.amsgrad(1e-2)),
    "adamax": lambda: _transformation(adamjax.adamax(1e-2)),
    "nadam": lambda: _transformation(adamjax.nadam(1e-2)),
    "adabelief": lambda: _transformation(adamjax.adabelief(1e-2)),
    "adamw_injected": lambda: _transformation(
        optax.inject_hyperparams(adamjax.adamw)(learning_rate=1e-2, weight_decay=1e-2)
    ),
    "triple_adam": lambda: _triple(optimizers.adam(1e-2)),
    "triple_injected": lambda: _triple(
        optimizers.from_transformation(optax.inject_hyperparams(adamjax.adam)(learning_rate=1e-2))
    ),
}


def spec_of(leaf: Any) -> str:
    """A leaf's sharding as a string; the spec is padded to the rank, so equivalent specs read alike."""
    sharding = leaf.sharding
    if sharding is None:
        return "none"
    if isinstance(sharding, SingleDeviceSharding):
        return "single-device"
    spec = tuple(sharding.spec)
    return str(spec + (None,) * (len(leaf.shape) - len(spec)))


def shard_shapes(leaf: jax.Array) -> list[list[int]]:
    return sorted({tuple(shard.data.shape) for shard in leaf.addressable_shards})


def leaf_records(tree: Any, describe: Callable[[Any], Any]) -> list[Any]:
    return [describe(leaf) for leaf in jax.tree.leaves(tree)]


def collectives(compiled: Any) -> list[str]:
    return sorted({match.group(0) for match in COLLECTIVES.finditer(compiled.as_text())})


def memory(compiled: Any) -> dict[str, int]:
    """Per-device bytes of a compiled computation's outputs and temporaries."""
    stats = compiled.memory_analysis()
    return {"output": int(stats.output_size_in_bytes), "temp": int(stats.temp_size_in_bytes)}


def run_mesh(kind: str, mesh: jax.sharding.Mesh, arrays: dict[str, np.ndarray]) -> dict[str, Any]:
    """Every optimizer of :data:`CASES` on ``mesh``; one compiled ``init`` and one compiled update for all."""
    cases = {name: make() for name, make in CASES.items()}
    host_params, host_grads = make_inputs()
    shardings = jax.tree.map(lambda spec: NamedSharding(mesh, spec), param_specs())
    params = jax.device_put(host_params, shardings)  # each device receives only its shards
    grads = [jax.device_put(g, shardings) for g in host_grads]
    abstract = jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), host_params, shardings)

    def init_all(params):
        return {name: init(params) for name, (init, _) in cases.items()}

    def step_all(params, states, grads, i):
        return {name: step(params[name], states[name], grads, i) for name, (_, step) in cases.items()}

    records: dict[str, dict[str, Any]] = {}
    helper = adamjax.state_shardings(init_all, params)
    from_shapes = adamjax.state_shardings(init_all, abstract)
    shapes = jax.eval_shape(init_all, abstract)
    for name, (init, _) in cases.items():
        records[name] = {
            "shapes": leaf_records(shapes[name], lambda x: list(x.shape)),
            "helper_specs": [
                spec_of(jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s))
                for x, s in zip(jax.tree.leaves(shapes[name]), jax.tree.leaves(helper[name]), strict=True)
            ],
            "helper_from_shapes_equal": jax.tree.leaves(from_shapes[name]) == jax.tree.leaves(helper[name]),
            "eager_specs": leaf_records(init(params), spec_of),
        }
    if kind == "explicit":
        # With sharding in types, jax.eval_shape and jax.jit(init) give the layout by themselves.
        evaluated = jax.eval_shape(init_all, abstract)
        for name in cases:
            records[name]["eval_shape_specs"] = leaf_records(evaluated[name], spec_of)
        jitted_init = jax.jit(init_all)
    else:
        jitted_init = jax.jit(init_all, out_shardings=helper)
    compiled_init = jitted_init.lower(params).compile()
    states = compiled_init(params)

    by_name = {name: params for name in cases}
    compiled_step = jax.jit(step_all).lower(by_name, states, grads[0], jnp.int32(0)).compile()
    kept = {name: True for name in cases}
    for i, g in enumerate(grads):
        before = {name: [x.sharding for x in jax.tree.leaves(out)] for name, out in states.items()}
        outputs = compiled_step(by_name, states, g, jnp.int32(i))
        by_name = {name: out[0] for name, out in outputs.items()}
        states = {name: out[1] for name, out in outputs.items()}
        for name in cases:
            after = jax.tree.leaves((by_name[name], states[name]))
            old = [leaf.sharding for leaf in jax.tree.leaves(params)] + before[name]
            kept[name] &= all(a.sharding.is_equivalent_to(b, a.ndim) for a, b in zip(after, old, strict=True))

    for name in cases:
        records[name]["update_keeps_shardings"] = bool(kept[name])
        records[name]["update_specs"] = leaf_records(states[name], spec_of)
        records[name]["update_shard_shapes"] = leaf_records(states[name], shard_shapes)
        for index, leaf in enumerate(jax.tree.leaves((by_name[name], states[name]))):
            arrays[f"{kind}/{name}/{index}"] = np.asarray(leaf)  # gathered to the host only to compare
    init_states = compiled_init(params)
    for name in cases:
        records[name]["init_specs"] = leaf_records(init_states[name], spec_of)
        records[name]["init_shard_shapes"] = leaf_records(init_states[name], shard_shapes)
    return {
        "cases": records,
        "init_collectives": collectives(compiled_init),
        "init_memory": memory(compiled_init),
        "update_collectives": collectives(compiled_step),
        "update_memory": memory(compiled_step),
        "state_bytes": sum(x.nbytes for x in jax.tree.leaves(init_states)),
        "params_bytes": sum(x.nbytes for x in jax.tree.leaves(params)),
    }


def main(out_dir: str) -> None:
    out = Path(out_dir)
    results: dict[str, Any] = {"device_count": jax.device_count(), "platform": jax.devices()[0].platform}
    arrays: dict[str, np.ndarray] = {}
    for kind, axis_type in (("explicit", AxisType.Explicit), ("auto", AxisType.Auto)):
        mesh = jax.make_mesh(MESH_SHAPE, AXES, axis_types=(axis_type,) * len(AXES))
        if kind == "explicit":
            with jax.set_mesh(mesh):
                results[kind] = run_mesh(kind, mesh, arrays)
        else:  # classic: shardings on the arrays, no mesh context
            results[kind] = run_mesh(kind, mesh, arrays)
        # The detector itself: a sum over a sharded axis does need an all-reduce.
        x = jax.device_put(np.ones((32, 16), np.float32), NamedSharding(mesh, PartitionSpec("fsdp", None)))
        results[kind]["reduction_collectives"] = collectives(jax.jit(jnp.sum).lower(x).compile())
    np.savez(out / "arrays.npz", **arrays)
    (out / "results.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main(sys.argv[1])
