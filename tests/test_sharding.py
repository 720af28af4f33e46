"""Sharded parameters, sharded state: every optimizer on a simulated 2 x 4 mesh of CPU devices.

The 8-device runs happen in subprocesses (``XLA_FLAGS=--xla_force_host_platform_device_count=8``)
so that this process, and the rest of the suite, keep one device: one launch of
tests/sharding_worker.py for all optimizers on both mesh kinds, and one launch of
examples/sharded_training.py per axis type. What they report is checked here against
expectations computed independently: the sharding each state leaf must have (that of
the parameter of the same shape; scalars replicated), the shard shapes that follow,
and the numbers of a one-device run of the same optimizer in this process.
"""

from __future__ import annotations

import functools
import json
import math
import re
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import sharding_worker as worker
import zero1_worker
from compile_flags import xla_flags
from helpers import EXAMPLES, checkout_env, computed_once, run_python
from jax.sharding import NamedSharding, PartitionSpec, SingleDeviceSharding

import adamjax

KINDS = ("explicit", "auto")
FSDP_SIZE = worker.MESH_SHAPE[worker.AXES.index("fsdp")]


def run_on_8_cpu_devices(*args: str) -> subprocess.CompletedProcess:
    env = checkout_env(
        drop=("JAX_", "XLA_"), XLA_FLAGS=xla_flags("--xla_force_host_platform_device_count=8"), JAX_PLATFORMS="cpu"
    )
    return run_python(*args, env=env)


@pytest.fixture(scope="module")
def reported():
    out = computed_once("sharding", lambda out: run_on_8_cpu_devices(str(Path(worker.__file__)), str(out)))
    with np.load(out / "arrays.npz") as arrays:
        return json.loads((out / "results.json").read_text()), dict(arrays)


def padded(spec: PartitionSpec, ndim: int) -> str:
    return str(tuple(spec) + (None,) * (ndim - len(spec)))


def param_layouts() -> dict[tuple[int, ...], PartitionSpec]:
    """Parameter shape -> its spec (the worker's parameters all have distinct shapes)."""
    entries = jax.tree.leaves(worker.SPECS, is_leaf=worker._is_spec)
    layouts = {tuple(shape): spec for shape, spec in entries}
    assert len(layouts) == len(entries)
    return layouts


def expected_layout(shapes: list[list[int]]) -> tuple[list[str], list[list[int]]]:
    """Each state leaf's spec and shard shape: its parameter's for a leaf mirroring one, replicated for scalars."""
    layouts = param_layouts()
    specs, shard_shapes = [], []
    for shape in map(tuple, shapes):
        spec = layouts[shape] if shape else PartitionSpec()
        entries = tuple(spec) + (None,) * (len(shape) - len(spec))
        specs.append(padded(spec, len(shape)))
        shard_shapes.append([n // FSDP_SIZE if axis == "fsdp" else n for n, axis in zip(shape, entries, strict=True)])
    return specs, shard_shapes


def test_the_worker_ran_on_8_cpu_devices_and_sees_collectives(reported):
    results, _ = reported
    assert results["device_count"] == 8 and results["platform"] == "cpu"
    for kind in KINDS:
        # The HLO check can fail: a sum over the sharded axis compiles to an all-reduce.
        assert results[kind]["reduction_collectives"] == ["all-reduce"]
        assert sorted(results[kind]["cases"]) == sorted(worker.CASES)


@pytest.mark.parametrize("name", sorted(worker.CASES))
@pytest.mark.parametrize("kind", KINDS)
def test_state_is_created_sharded_like_the_parameters(reported, kind, name):
    record = reported[0][kind]["cases"][name]
    specs, shard_shapes = expected_layout(record["shapes"])
    assert any(s != "()" and "fsdp" in s for s in specs)  # the case does shard something
    scalar = [not shape for shape in record["shapes"]]
    # adamjax.state_shardings, from the arrays and from jax.ShapeDtypeStructs alike.
    assert record["helper_specs"] == specs
    assert record["helper_from_shapes_equal"]
    # jax.jit(init) (explicit) or jax.jit(init, out_shardings=state_shardings(...)) (auto).
    assert record["init_specs"] == specs
    assert record["init_shard_shapes"] == [[s] for s in shard_shapes]
    # init called on the sharded arrays: moments like the parameters; a new scalar
    # (a step count) may sit on the default device.
    for got, want, is_scalar in zip(record["eager_specs"], specs, scalar, strict=True):
        assert got == want or (is_scalar and got == "single-device"), (got, want)
    if kind == "explicit":
        # jax.eval_shape on ShapeDtypeStructs carries the shardings in the types.
        for got, want, is_scalar in zip(record["eval_shape_specs"], specs, scalar, strict=True):
            assert got == want or (is_scalar and got == "none"), (got, want)


@pytest.mark.parametrize("name", sorted(worker.CASES))
@pytest.mark.parametrize("kind", KINDS)
def test_jitted_update_keeps_every_sharding(reported, kind, name):
    record = reported[0][kind]["cases"][name]
    specs, shard_shapes = expected_layout(record["shapes"])
    assert record["update_keeps_shardings"]
    assert record["update_specs"] == specs
    assert record["update_shard_shapes"] == [[s] for s in shard_shapes]


@pytest.mark.parametrize("kind", KINDS)
def test_compiled_init_and_update_need_no_communication_and_no_full_copy(reported, kind):
    results = reported[0][kind]
    assert results["init_collectives"] == []
    assert results["update_collectives"] == []
    # Per-device bytes: what the shards add up to, far below one full copy.
    sharded = 0
    for record in results["cases"].values():
        _, shard_shapes = expected_layout(record["shapes"])
        sharded += sum(4 * math.prod(shape) for shape in shard_shapes)  # float32 and int32 leaves
    assert results["state_bytes"] > 3 * sharded
    assert results["init_memory"]["temp"] == 0
    assert sharded <= results["init_memory"]["output"] <= 1.1 * sharded
    num_cases = len(results["cases"])
    full_update_outputs = results["state_bytes"] + num_cases * results["params_bytes"]
    update_bytes = results["update_memory"]["output"] + results["update_memory"]["temp"]
    assert update_bytes < full_update_outputs / 3


@functools.cache
def single_device_runs() -> dict[str, list[np.ndarray]]:
    """Every optimizer with the worker's inputs and steps, on this process's one device (one compiled step)."""
    cases = {name: make() for name, make in worker.CASES.items()}
    host_params, host_grads = worker.make_inputs()
    params = jax.tree.map(jnp.asarray, host_params)
    by_name = {name: params for name in cases}
    states = {name: init(params) for name, (init, _) in cases.items()}

    @jax.jit
    def step_all(params, states, grads, i):
        return {name: step(params[name], states[name], grads, i) for name, (_, step) in cases.items()}

    for i, grads in enumerate(host_grads):
        outputs = step_all(by_name, states, jax.tree.map(jnp.asarray, grads), jnp.int32(i))
        by_name = {name: out[0] for name, out in outputs.items()}
        states = {name: out[1] for name, out in outputs.items()}
    return {name: [np.asarray(x) for x in jax.tree.leaves((by_name[name], states[name]))] for name in cases}


@pytest.mark.parametrize("name", sorted(worker.CASES))
@pytest.mark.parametrize("kind", KINDS)
def test_results_equal_a_single_device_run(reported, kind, name):
    arrays = reported[1]
    expected = single_device_runs()[name]
    got = [arrays[f"{kind}/{name}/{index}"] for index in range(len(expected))]
    assert f"{kind}/{name}/{len(expected)}" not in arrays
    moved = 0
    for a, e in zip(got, expected, strict=True):
        assert a.dtype == e.dtype and a.shape == e.shape
        np.testing.assert_allclose(a, e, rtol=1e-6, atol=1e-7)
        moved += a.dtype == np.float32 and a.size > 1
    assert moved > 0


def test_state_shardings_on_one_device_and_its_errors():
    params = {"w": jnp.ones((4, 2), jnp.float32), "b": jnp.zeros((2,), jnp.float32)}
    tx = adamjax.amsgrad(1e-3)
    shardings = adamjax.state_shardings(tx, params)
    device = SingleDeviceSharding(jax.devices()[0])
    assert jax.tree.structure(shardings) == jax.tree.structure(jax.eval_shape(tx.init, params))
    assert all(s == device for s in jax.tree.leaves(shardings))
    # A one-device mesh: NamedShardings on it, scalars replicated.
    mesh = jax.make_mesh((1,), ("fsdp",), axis_types=(jax.sharding.AxisType.Auto,))
    placed = jax.device_put(
        params, {"w": NamedSharding(mesh, PartitionSpec("fsdp")), "b": NamedSharding(mesh, PartitionSpec())}
    )
    on_mesh = adamjax.state_shardings(tx, placed)
    assert on_mesh[0].nu_max["w"] == NamedSharding(mesh, PartitionSpec("fsdp", None))
    assert on_mesh[0].count == NamedSharding(mesh, PartitionSpec())
    state = jax.jit(tx.init, out_shardings=on_mesh)(placed)
    np.testing.assert_array_equal(state[0].nu_max["w"], np.zeros((4, 2), np.float32))
    assert int(state[0].count) == 0

    with pytest.raises(ValueError, match=r"`state_shardings\(params=...\)`: the leaf at \['w'\] has no sharding"):
        adamjax.state_shardings(tx, {"w": jax.ShapeDtypeStruct((4, 2), jnp.float32)})
    with pytest.raises(TypeError, match=r"`state_shardings\(tx=...\)` must be an optax.GradientTransformation"):
        adamjax.state_shardings(42, params)
    other_mesh = jax.make_mesh((1,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))
    mixed = {"w": jax.device_put(params["w"], NamedSharding(other_mesh, PartitionSpec()))} | {"b": placed["b"]}
    with pytest.raises(ValueError, match=r"the parameters are on 2 different meshes"):
        adamjax.state_shardings(tx, mixed)


def test_shard_state_over_on_a_one_device_mesh_and_its_errors():
    mesh = jax.make_mesh((1,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))
    replicated = NamedSharding(mesh, PartitionSpec())
    params = jax.device_put({"w": jnp.ones((4, 6), jnp.float32), "s": jnp.ones((), jnp.float32)}, replicated)
    tx = adamjax.amsgrad(1e-3)
    shardings = adamjax.state_shardings(tx, params, shard_state_over="data")
    # The largest dimension takes the axis; scalars and the count stay replicated.
    assert shardings[0].nu_max["w"] == NamedSharding(mesh, PartitionSpec(None, "data"))
    assert shardings[0].mu["s"] == shardings[0].count == replicated
    state = jax.jit(tx.init, out_shardings=shardings)(params)
    assert state[0].nu["w"].sharding.spec == PartitionSpec(None, "data")
    # Without the keyword: the parameters' layout, as before.
    assert adamjax.state_shardings(tx, params)[0].mu["w"].is_equivalent_to(replicated, 2)

    with pytest.raises(
        ValueError,
        match=r"`state_shardings\(shard_state_over='model'\)` must be an axis of the parameters' mesh, "
        r"one of \('data',\), or None",
    ):
        adamjax.state_shardings(tx, params, shard_state_over="model")
    with pytest.raises(
        TypeError,
        match=r"`state_shardings\(shard_state_over=...\)` must be the name of a mesh axis \(a str\) or "
        r"None; got int 0",
    ):
        adamjax.state_shardings(tx, params, shard_state_over=0)  # type: ignore[arg-type]
    with pytest.raises(
        ValueError,
        match=r"`state_shardings\(shard_state_over='data'\)` needs parameters on a mesh with that axis; "
        r"these are on one device",
    ):
        adamjax.state_shardings(tx, {"w": jnp.ones((4, 6), jnp.float32)}, shard_state_over="data")


# ---------------------------------------------------------------- ZeRO stage 1 (tests/zero1_worker.py)


@pytest.fixture(scope="module")
def zero1():
    out = computed_once("zero1", lambda out: run_on_8_cpu_devices(str(Path(zero1_worker.__file__)), str(out)))
    with np.load(out / "arrays.npz") as arrays:
        return json.loads((out / "results.json").read_text()), dict(arrays)


ZERO1_CASES = sorted(zero1_worker.CASES)
# Written out by hand from tests/zero1_worker.py's shapes and quantize's block layout: a (16, 2048)
# row holds 8 blocks of 256 (8 bits) or 16 of 128 (4 bits), one or two per device, so the row is
# split; a (64, 512) row would leave 64 elements, not whole blocks, per device, so its rows are split.
QUANTIZED_SPECS = {
    "wide": "(None, 'data')",
    "tall": "('data', None)",
}
ZERO1_SIZE = zero1_worker.DEVICES


def zero1_expected_spec(name: str, path: str, shape: tuple[int, ...]) -> str:
    """The ZeRO-1 rule, from the shapes alone: a moment splits its largest dimension 8 divides."""
    case = zero1_worker.CASES[name]()
    if name == "quantized" and (".codes" in path or ".scales" in path):
        return QUANTIZED_SPECS[re.search(r"\['(\w+)'\]", path).group(1)]
    copy_of_params = path.startswith(".params") or (name == "triple_adam" and path.endswith("[0]"))
    if not shape or shape not in set(case.shapes.values()) or copy_of_params:
        return str((None,) * len(shape))
    fits = [d for d, n in enumerate(shape) if n % ZERO1_SIZE == 0]
    if not fits:
        return str((None,) * len(shape))
    dim = max(fits, key=lambda d: (shape[d], -d))
    return str(tuple("data" if d == dim else None for d in range(len(shape))))


def zero1_split_parameters(name: str) -> list[list[int]]:
    """Shapes of the parameters whose moments are split: what the compiled step gathers back."""
    shapes = zero1_worker.CASES[name]().shapes.values()
    return sorted(list(s) for s in shapes if any(n % ZERO1_SIZE == 0 for n in s))


@pytest.mark.slow
@pytest.mark.parametrize("name", ZERO1_CASES)
def test_zero1_splits_every_moment_over_data(zero1, name):
    record = zero1[0]["cases"][name]
    assert zero1[0]["device_count"] == ZERO1_SIZE
    expected = [zero1_expected_spec(name, p, tuple(s)) for p, s in zip(record["paths"], record["shapes"], strict=True)]
    assert record["specs"] == expected
    assert sum("data" in spec for spec in expected) >= 4  # the case does split something
    assert record["kept_shardings"]


@pytest.mark.parametrize("name", ZERO1_CASES)
def test_zero1_keeps_an_eighth_of_each_split_moment_per_device(zero1, name):
    record = zero1[0]["cases"][name]
    split = sum(n for n, spec in zip(record["nbytes"], record["specs"], strict=True) if "data" in spec)
    whole = sum(n for n, spec in zip(record["nbytes"], record["specs"], strict=True) if "data" not in spec)
    assert record["total"] == split + whole and split % ZERO1_SIZE == 0
    # From the arrays' addressable shards: 1/8 of every split leaf, all of the others.
    assert record["held"] == split // ZERO1_SIZE + whole
    # What stays whole: the count, the (3, 5) and scalar moments, and a triple's parameters.
    copies = record["params_bytes"] if name.startswith("triple") else 0
    assert whole - copies < 0.01 * record["total"]
    # From XLA: the step's arguments are the replicated parameters, the replicated gradients
    # (a triple's state holds its parameters) and this device's part of the state.
    params_and_grads = (1 if name.startswith("triple") else 2) * record["params_bytes"]
    assert record["step_memory"]["argument"] == params_and_grads + record["held"]
    # Donated: the new state and parameters reuse the old buffers.
    assert record["step_memory"]["alias"] >= record["held"]


@pytest.mark.parametrize("name", ZERO1_CASES)
def test_zero1_step_only_gathers_the_updated_parameters(zero1, name):
    # On given gradients the update is local to each slice; XLA then gathers the new
    # parameters (replicated by out_shardings): one all-gather per split parameter, of its shape.
    record = zero1[0]["cases"][name]
    ops = {c["op"] for c in record["step_collectives"]}
    assert ops == {"all-gather"}
    gathered = sorted(shape for c in record["step_collectives"] for shape in c["shapes"])
    assert gathered == zero1_split_parameters(name)


@pytest.mark.parametrize("name", zero1_worker.TRAINED)
def test_zero1_training_step_adds_only_the_parameter_gather_to_data_parallelism(zero1, name):
    train = zero1[0]["cases"][name]["train"]
    assert {c["op"] for c in train["replicated"]["collectives"]} == {"all-reduce"}
    assert {c["op"] for c in train["zero1"]["collectives"]} == {"all-reduce", "all-gather"}

    def reduced(layout: str) -> list[int]:
        shapes = (s for c in train[layout]["collectives"] if c["op"] == "all-reduce" for s in c["shapes"])
        return sorted(math.prod(s) for s in shapes if s)  # scalars: the loss, the partial norms

    # The gradient all-reduce of data parallelism, one gradient of each parameter the batch
    # reaches (the (3, 5) penalty's gradient needs none; a scalar's is a scalar)...
    batch_dependent = [math.prod(zero1_worker.SHAPES[k]) for k in ("w1", "b1", "w2", "b2")]
    assert reduced("zero1") == reduced("replicated") == sorted(batch_dependent)
    # ... then the gather of the new parameters, and nothing on the state.
    gathered = sorted(s for c in train["zero1"]["collectives"] if c["op"] == "all-gather" for s in c["shapes"])
    assert gathered == zero1_split_parameters(name)
    # The state held per device: an eighth (and the whole of what cannot split).
    assert train["zero1"]["held"] < train["replicated"]["held"] / 7
    saved = train["replicated"]["memory"]["argument"] - train["zero1"]["memory"]["argument"]
    assert saved == train["replicated"]["held"] - train["zero1"]["held"]


def zero1_arrays(arrays: dict[str, np.ndarray], prefix: str) -> list[np.ndarray]:
    found = []
    while f"{prefix}/{len(found)}" in arrays:
        found.append(arrays[f"{prefix}/{len(found)}"])
    return found


@pytest.mark.parametrize("name", ZERO1_CASES)
def test_zero1_step_equals_a_one_device_run(zero1, name):
    got = zero1_arrays(zero1[1], f"{name}/step")
    replicated = zero1_arrays(zero1[1], f"{name}/replicated")
    expected = zero1_arrays(zero1[1], f"{name}/one")
    assert len(got) == len(replicated) == len(expected) > 0
    for a, r, e in zip(got, replicated, expected, strict=True):
        assert a.dtype == e.dtype and a.shape == e.shape
        # Splitting the state changes no bit: the update is elementwise.
        np.testing.assert_array_equal(a, r)
        if name == "triple_adam" and a.dtype == np.float32:
            # The classic triple's parameters (and only they) come out a rounding away from a
            # one-device run on 8 devices with the state split or not, the unsplit (3, 5) array
            # too: XLA compiles its x - lr * u differently for a partitioned program.
            assert np.max(np.abs(a - e)) <= 1e-6 * np.max(np.abs(e)), np.max(np.abs(a - e))
        else:
            np.testing.assert_array_equal(a, e)
    assert sum(a.dtype == np.float32 and a.size > 1 and np.isfinite(a).all() for a in got) >= 8


@pytest.mark.parametrize("name", zero1_worker.TRAINED)
def test_zero1_training_equals_data_parallelism_bit_for_bit_and_one_device_to_rounding(zero1, name):
    arrays = zero1[1]
    got = zero1_arrays(arrays, f"{name}/train_zero1")
    data_parallel = zero1_arrays(arrays, f"{name}/train_replicated")
    one = zero1_arrays(arrays, f"{name}/train_one")
    assert len(got) == len(data_parallel) == len(one) > 0
    for a, d, e in zip(got, data_parallel, one, strict=True):
        np.testing.assert_array_equal(a, d)
        # 8 devices sum the batch's gradient in another order than one device does: the
        # same difference plain data parallelism has, within 1e-6 of each array's scale.
        if a.dtype == np.float32 and a.size:
            assert np.max(np.abs(a - e)) <= 1e-6 * np.max(np.abs(e)), np.max(np.abs(a - e))


def example_output_numbers(stdout: str) -> dict[str, object]:
    losses = {int(step): float(loss) for step, loss in re.findall(r"step\s+(\d+)\s+loss ([\d.]+)", stdout)}
    held, full = map(float, re.search(r"Adam state: ([\d.]+) KiB on each device of ([\d.]+) KiB", stdout).groups())
    return {"losses": losses, "held": held, "full": full}


@pytest.mark.slow
@pytest.mark.parametrize("axes", KINDS)
def test_sharded_training_example_on_8_devices_matches_one_device(axes):
    steps = 40
    result = run_on_8_cpu_devices(str(EXAMPLES / "sharded_training.py"), "--axes", axes, "--steps", str(steps))
    out = result.stdout
    assert f"8 cpu devices in 1 process(es); mesh {{'data': 2, 'fsdp': 4}}, {axes} axes" in out
    assert "collectives in the compiled optimizer update: none" in out
    assert "state kept its sharding: True" in out
    assert "first layer's mu: P('fsdp', None), like its weight" in out
    numbers = example_output_numbers(out)
    # Replicated along "data" (2), split along "fsdp" (4): a quarter of the state per device.
    assert numbers["held"] == pytest.approx(numbers["full"] / 4, rel=1e-3)

    reference = single_device_example(steps)
    assert sorted(numbers["losses"]) == [0, steps - 1]
    for step, loss in numbers["losses"].items():
        # The batch mean and the matmuls are summed in another order across 8 devices.
        assert loss == pytest.approx(reference[step], rel=1e-5)
    assert reference[-1] < 0.5 * reference[0]


@pytest.mark.parametrize("axes", KINDS)
def test_zero1_training_example_on_8_devices_matches_one_device(axes):
    steps = 40
    args = ("--zero1", "--axes", axes, "--steps", str(steps))
    out = run_on_8_cpu_devices(str(EXAMPLES / "sharded_training.py"), *args).stdout
    assert f"8 cpu devices in 1 process(es); mesh {{'data': 8}}, {axes} axes" in out
    assert "first layer's mu: P(None, 'data'), split over data (its weight: P())" in out
    # The gradient all-reduce of data parallelism and the gather of the updated parameters.
    assert "collectives in the compiled training step: all-gather, all-reduce" in out
    assert "state kept its sharding: True" in out
    numbers = example_output_numbers(out)
    # Every moment but the last layer's (1,) bias is split 8 ways; the count is replicated.
    assert numbers["held"] == pytest.approx(numbers["full"] / 8, rel=2e-3)
    reference = single_device_example(steps)
    for step, loss in numbers["losses"].items():
        # The gradient of the batch is summed across 8 devices in another order.
        assert loss == pytest.approx(reference[step], rel=1e-5)


@functools.cache
def single_device_example(steps: int) -> list[float]:
    """The example's losses on this process's one device."""
    sys.path.insert(0, str(EXAMPLES))
    try:
        import sharded_training
    finally:
        sys.path.remove(str(EXAMPLES))
    # As a user runs it: JAX's default settings, not this suite's x64 and strict promotion.
    with jax.enable_x64(False), jax.numpy_dtype_promotion("standard"):
        return sharded_training.train("auto", steps, verbose=False)
