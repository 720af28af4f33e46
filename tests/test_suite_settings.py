"""The suite's own speed settings change how fast programs are lowered, never which programs.

``tests/shared_ir_context.py`` gives JAX one MLIR context per thread instead of
a new one per lowering. These tests lower real adamjax steps both ways and
compare the modules' text, and check that the setting is in force in this
process (so the comparison is not against itself), and not under
``ADAMJAX_TEST_DEFAULT_XLA=1``.
"""

from __future__ import annotations

import threading

import jax
import jax.numpy as jnp
import optax
import pytest
import shared_ir_context
from jax._src.interpreters import mlir

import adamjax

STEPS = {
    "adamw": lambda: adamjax.adamw(1e-3, weight_decay=1e-2),
    "clip+amsgrad": lambda: optax.chain(optax.clip_by_global_norm(1.0), adamjax.amsgrad(1e-3)),
    "adam 8-bit": lambda: adamjax.adam(1e-3, state_bits=8, block_size=64),
    "nadam": lambda: adamjax.nadam(1e-3),
}


def _lowered_text(make_tx) -> str:
    """A training step's lowered module, from a new function object each time (no lowering cache hit)."""
    params = {"w": jnp.linspace(-1.0, 1.0, 8192, dtype=jnp.float32).reshape(64, 128), "b": jnp.zeros(128, jnp.float32)}
    tx = make_tx()
    state = tx.init(params)

    def step(params, state):
        grads = jax.grad(lambda p: jnp.sum(jnp.tanh(p["w"]) ** 2) + jnp.sum(p["b"] ** 2))(params)
        updates, state = tx.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    return jax.jit(step).lower(params, state).as_text(debug_info=True)


def test_the_shared_context_is_one_per_thread_unless_the_suite_runs_jax_defaults():
    if not shared_ir_context.ENABLED:  # ADAMJAX_TEST_DEFAULT_XLA=1
        assert not getattr(mlir.make_ir_context, "shared_by_the_test_suite", False)
        assert mlir.make_ir_context() is not mlir.make_ir_context()
        return
    assert getattr(mlir.make_ir_context, "shared_by_the_test_suite", False)
    here = mlir.make_ir_context()
    assert mlir.make_ir_context() is here
    other = []
    thread = threading.Thread(target=lambda: other.append(mlir.make_ir_context()))
    thread.start()
    thread.join()
    assert other[0] is not here


@pytest.mark.parametrize("name", STEPS)
def test_a_shared_context_lowers_the_same_module_as_a_new_one(name, monkeypatch):
    make_new = getattr(mlir.make_ir_context, "make_new", mlir.make_ir_context)
    texts = []
    for make in (mlir.make_ir_context, make_new):  # one call site, so the debug locations can agree
        monkeypatch.setattr(mlir, "make_ir_context", make)
        texts.append(_lowered_text(STEPS[name]))
    shared, fresh = texts
    assert len(shared) > 1000
    assert shared == fresh
