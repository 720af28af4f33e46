"""One MLIR context per thread for a test process's lowerings, instead of a new one for each.

JAX lowers every program it compiles (each ``jax.jit`` cache miss, each
eager operation on new shapes) into an MLIR module, and makes a new MLIR
context for each module: about 2.5 ms to create it and load its dialects,
more than half of lowering a small program. A pytest process lowers
thousands of programs. Other XLA front ends keep one context for all their
modules (Elixir Nx's EXLA does); the cost is that types and attributes stay
interned in it for the process's life.

:func:`install` makes ``jax._src.interpreters.mlir.make_ir_context`` hand out
one context per thread, made the first time by JAX's own function. The lowered
modules, and so the compiled programs, are the same
(``tests/test_determinism.py`` compares the lowered text both ways). On
``tests/test_contract.py`` and ``tests/test_dropin.py`` in one process it cut
64 s to 57 s, and the process's peak memory from 1.7 GB to 0.56 GB.

This is for the suite's own pytest processes (``tests/conftest.py`` and the
plugin that runs optax's tests), never done by adamjax.
``ADAMJAX_TEST_DEFAULT_XLA=1`` leaves JAX's own function in place.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Any

ENABLED = os.environ.get("ADAMJAX_TEST_DEFAULT_XLA", "") in ("", "0")


def install() -> None:
    """Makes JAX's MLIR context factory return one context per thread (once; a no-op when disabled)."""
    from jax._src.interpreters import mlir

    if not ENABLED or getattr(mlir.make_ir_context, "shared_by_the_test_suite", False):
        return
    make_new: Callable[[], Any] = mlir.make_ir_context
    local = threading.local()

    def shared_ir_context() -> Any:
        context = getattr(local, "context", None)
        if context is None:
            context = local.context = make_new()
        return context

    shared_ir_context.shared_by_the_test_suite = True  # type: ignore[attr-defined]
    shared_ir_context.make_new = make_new  # type: ignore[attr-defined]
    mlir.make_ir_context = shared_ir_context
