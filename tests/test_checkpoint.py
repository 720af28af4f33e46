"""Optimizer states round-trip through orbax-checkpoint bit for bit; a wrong target is a clear error."""

from __future__ import annotations

import doctest
import re
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from helpers import computed_once, run_python

import adamjax
import adamjax._checkpoint
from adamjax import optimizers

WORKER = Path(__file__).with_name("checkpoint_worker.py")
WORKER_CASES = ["adam_float64", "adamw_chain", "amsgrad_chain_bf16_mu", "triple_adam", "triple_from_transformation"]


@pytest.fixture(scope="module")
def resumed_runs():
    """Saves in one process, restores and finishes the run in another.

    The saving process is a new interpreter, whose imports show what importing
    adamjax imports (a forked one has flax and orbax already).
    """

    def run(directory: Path) -> None:
        saving = run_python(WORKER, "save", directory / "runs", fresh=True)
        resuming = run_python(WORKER, "resume", directory / "runs")
        (directory / "saving.txt").write_text(saving.stdout)
        (directory / "resuming.txt").write_text(resuming.stdout)

    directory = computed_once("checkpoints", run)
    return directory / "runs", (directory / "saving.txt").read_text(), (directory / "resuming.txt").read_text()


@pytest.mark.slow
@pytest.mark.parametrize("case", WORKER_CASES)
def test_fifty_steps_saved_and_fifty_resumed_in_a_new_process_equal_a_hundred_straight(resumed_runs, case):
    resumed_runs, _, _ = resumed_runs
    straight = np.load(resumed_runs / case / "straight.npz")
    resumed = np.load(resumed_runs / case / "resumed.npz")
    assert sorted(resumed.files) == sorted(straight.files)
    assert len(straight.files) >= 12  # parameters and every moment, not an empty tree
    for key in straight.files:
        assert resumed[key].dtype == straight[key].dtype, key
        np.testing.assert_array_equal(resumed[key], straight[key], err_msg=key)
    counts = [resumed[key] for key in resumed.files if key.endswith(".count")]
    assert all(int(count) == 100 for count in counts), counts  # the resumed run did not restart at 0
    if case == "amsgrad_chain_bf16_mu":
        assert sum(key.endswith(" (bfloat16)") for key in resumed.files) == 4  # mu kept its dtype
    assert sorted(p.name for p in resumed_runs.iterdir()) == sorted(WORKER_CASES)


@pytest.fixture
def params():
    return {"w": jnp.arange(6, dtype=jnp.float32).reshape(2, 3) / 10, "b": jnp.ones((3,), jnp.float32)}


def trained(tx, params, steps=3):
    state = tx.init(params)
    for _ in range(steps):
        grads = jax.tree.map(lambda p: jnp.sin(p) + 0.5, params)
        updates, state = tx.update(grads, state, params)
        params = optax.apply_updates(params, updates)
    return {"params": params, "opt_state": state}


def assert_trees_equal(actual, expected):
    assert jax.tree.structure(actual) == jax.tree.structure(expected)
    for a, e in zip(jax.tree.leaves(actual), jax.tree.leaves(expected), strict=True):
        assert a.dtype == e.dtype
        np.testing.assert_array_equal(a, e)


def test_restores_into_an_abstract_target_in_the_same_structure(tmp_path, params):
    tx = optax.chain(optax.clip_by_global_norm(1.0), adamjax.adamw(1e-2))
    saved = trained(tx, params)
    adamjax.save_state(tmp_path / "ckpt", saved)
    abstract = jax.eval_shape(lambda: {"params": params, "opt_state": tx.init(params)})
    restored = adamjax.restore_state(tmp_path / "ckpt", abstract)
    assert_trees_equal(restored, saved)
    assert type(restored["opt_state"][1][0]) is adamjax.ScaleByAdamState


def re_line(label: str, pattern: str, message: str) -> bool:
    """Whether a line of ``message`` reads ``  label: ...pattern...``."""
    return any(re.match(rf" +{label}: +.*{pattern}", line) for line in message.splitlines())


@pytest.mark.parametrize(
    "target_tx, only_in_checkpoint, only_in_target",
    [
        (adamjax.amsgrad(1e-2), r"\(none\)", r"opt_state\.0\.nu_max\.b \(float32\[3\]\)"),
        (adamjax.adamw(1e-2), r"\(none\)", r"opt_state\.2 \(empty\)"),  # one more chained state, same arrays
        (optax.sgd(1e-2, momentum=0.9), r"opt_state\.0\.count \(int32\[\]\)", r"opt_state\.0\.trace\.b"),
    ],
    ids=["amsgrad", "adamw", "optax_sgd"],
)
def test_a_different_optimizer_is_a_type_error_naming_the_places_and_both_structures(
    tmp_path, params, target_tx, only_in_checkpoint, only_in_target
):
    adamjax.save_state(tmp_path / "ckpt", trained(adamjax.adam(1e-2), params))
    with pytest.raises(TypeError, match="holds a tree of a different structure") as error:
        adamjax.restore_state(tmp_path / "ckpt", {"params": params, "opt_state": target_tx.init(params)})
    message = str(error.value)
    assert re_line("only in the checkpoint", only_in_checkpoint, message)
    assert re_line("only in the target", only_in_target, message)
    assert re_line("checkpoint", r"PyTreeDef\(\{'opt_state': \[\{'count'", message)
    assert re_line("target", r"PyTreeDef\(\{'opt_state': \(CustomNode\(namedtuple\[", message)


def test_other_shapes_or_dtypes_are_a_value_error_listing_each_array(tmp_path, params):
    adamjax.save_state(tmp_path / "ckpt", trained(adamjax.adam(1e-2), params))
    other = {"w": params["w"].astype(jnp.float64), "b": jnp.ones((4,), jnp.float32)}
    with pytest.raises(ValueError, match=r"6 array\(s\) differ in dtype or shape") as error:
        adamjax.restore_state(tmp_path / "ckpt", {"params": other, "opt_state": adamjax.adam(1e-2).init(other)})
    message = str(error.value)
    assert "params.w: checkpoint float32[2,3], target float64[2,3]" in message
    assert "opt_state.0.nu.b: checkpoint float32[3], target float32[4]" in message


def test_triple_state_round_trips_as_is_or_unpacked_and_both_write_the_same(tmp_path, params):
    init, update, get_params = optimizers.adam(optimizers.exponential_decay(1e-2, 10, 0.5))
    state = init(params)
    for i in range(3):
        state = update(i, jax.tree.map(jnp.cos, get_params(state)), state)
    adamjax.save_state(tmp_path / "as_is", state)
    adamjax.save_state(tmp_path / "unpacked", optimizers.unpack_optimizer_state(state))

    restored = adamjax.restore_state(tmp_path / "as_is", init(params))
    assert isinstance(restored, optimizers.OptimizerState)
    assert_trees_equal(restored, state)
    # Written unpacked, read back into an OptimizerState target (and the converse): one format.
    assert_trees_equal(adamjax.restore_state(tmp_path / "unpacked", init(params)), state)
    unpacked = adamjax.restore_state(tmp_path / "as_is", optimizers.unpack_optimizer_state(init(params)))
    assert isinstance(unpacked["w"], optimizers.JoinPoint)
    assert_trees_equal(optimizers.pack_optimizer_state(unpacked), state)
    # Training continues from the restored state exactly as from the original.
    grads = jax.tree.map(jnp.cos, get_params(state))
    assert_trees_equal(update(3, grads, restored), update(3, grads, state))


def test_triple_state_nested_with_other_values(tmp_path, params):
    init, update, get_params = optimizers.adamax(1e-2)
    state = update(0, params, init(params))
    checkpoint = {"step": jnp.int32(1), "opt_state": state, "rng": jax.random.key_data(jax.random.key(3))}
    adamjax.save_state(tmp_path / "ckpt", checkpoint)
    target = {"step": jnp.int32(0), "opt_state": init(params), "rng": jax.random.key_data(jax.random.key(0))}
    restored = adamjax.restore_state(tmp_path / "ckpt", target)
    assert isinstance(restored["opt_state"], optimizers.OptimizerState)
    assert_trees_equal(restored, checkpoint)


def test_a_different_triple_is_a_type_error(tmp_path, params):
    init, update, _ = optimizers.adam(1e-2)
    adamjax.save_state(tmp_path / "ckpt", optimizers.unpack_optimizer_state(update(0, params, init(params))))
    momentum_init, _, _ = optimizers.momentum(1e-2, 0.9)
    target = optimizers.unpack_optimizer_state(momentum_init(params))
    with pytest.raises(TypeError, match=r"only in the checkpoint: b\.2 \(float32\[3\]\), w\.2 \(float32\[2,3\]\)"):
        adamjax.restore_state(tmp_path / "ckpt", target)


def test_reads_the_item_a_checkpoint_manager_wrote(tmp_path, params):
    import orbax.checkpoint as ocp

    saved = trained(adamjax.adam(1e-2), params)
    manager = ocp.CheckpointManager(tmp_path / "run")
    manager.save(7, args=ocp.args.StandardSave(saved))
    manager.wait_until_finished()
    manager.close()
    target = {"params": params, "opt_state": adamjax.adam(1e-2).init(params)}
    assert_trees_equal(adamjax.restore_state(tmp_path / "run" / "7" / "default", target), saved)
    target["opt_state"] = adamjax.amsgrad(1e-2).init(params)
    with pytest.raises(TypeError, match="only in the target: +opt_state.0.nu_max"):
        adamjax.restore_state(tmp_path / "run" / "7" / "default", target)


def test_existing_and_missing_directories(tmp_path, params):
    first, second = trained(adamjax.adam(1e-2), params, 1), trained(adamjax.adam(1e-2), params, 2)
    adamjax.save_state(tmp_path / "ckpt", first)
    with pytest.raises(FileExistsError, match=r"ckpt exists; pass `overwrite=True`"):
        adamjax.save_state(tmp_path / "ckpt", second)
    adamjax.save_state(tmp_path / "ckpt", second, overwrite=True)
    assert_trees_equal(adamjax.restore_state(tmp_path / "ckpt", first), second)
    with pytest.raises(FileNotFoundError, match=r"there is no checkpoint at .*nowhere"):
        adamjax.restore_state(tmp_path / "nowhere", first)


def test_without_orbax_the_error_says_what_to_install(tmp_path, params, monkeypatch):
    monkeypatch.setitem(sys.modules, "orbax.checkpoint", None)  # makes `import orbax.checkpoint` fail
    with pytest.raises(ImportError, match=r"`pip install orbax-checkpoint`"):
        adamjax.save_state(tmp_path / "ckpt", params)
    with pytest.raises(ImportError, match=r"`pip install orbax-checkpoint`"):
        adamjax.restore_state(tmp_path / "ckpt", params)


def test_importing_adamjax_does_not_import_orbax_or_flax(resumed_runs):
    _, saving, _ = resumed_runs
    assert "imported before the first checkpoint: []" in saving, saving


def test_docstring_examples():
    failures, tried = doctest.testmod(adamjax._checkpoint, optionflags=doctest.ELLIPSIS)
    assert tried >= 8 and failures == 0
