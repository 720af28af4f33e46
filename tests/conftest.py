"""Shared test settings: float64 available and strict dtype promotion.

x64 is switched on so references can be compared in float64 (PyTorch, NumPy,
the tutorials' printed values); every test names its dtypes explicitly. Strict
promotion makes any silent float32 -> float64 (or bf16 -> f32) widening inside
adamjax an error rather than a quiet change of precision.
"""

import gc
import os
import shutil
import sys
import tempfile

from compile_flags import FAST_COMPILE_FLAGS, FAST_LOWERING_ENV

# Bytecode is written during the run even where PYTHONDONTWRITEBYTECODE is set (CI machines set it):
# otherwise each of the run's Python processes (the xdist workers, the kernels, scripts and
# pytest runs the tests start) compiles adamjax and the test modules from source again, and
# each pytest process rewrites every test module's asserts anew, 3 s of collection per worker.
# The files go to the __pycache__ folders git ignores, as in any Python project.
os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
sys.dont_write_bytecode = False

# Before JAX starts a backend; subprocesses inherit them (tests/compile_flags.py says why).
if FAST_COMPILE_FLAGS and FAST_COMPILE_FLAGS not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = " ".join(filter(None, [os.environ.get("XLA_FLAGS", ""), FAST_COMPILE_FLAGS]))

import jax  # noqa: E402
import shared_ir_context  # noqa: E402

jax.config.update("jax_enable_x64", True)
jax.config.update("jax_numpy_dtype_promotion", "strict")
# No Python stack frames in the programs' debug locations (tests/compile_flags.py says why).
if FAST_LOWERING_ENV:
    jax.config.update("jax_traceback_in_locations_limit", int(FAST_LOWERING_ENV["JAX_TRACEBACK_IN_LOCATIONS_LIMIT"]))
# One MLIR context per thread for the lowerings, not one each (tests/shared_ir_context.py says why).
shared_ir_context.install()

# One compilation cache for this run's pytest processes: parametrized cases compile many
# identical programs, and a hit skips XLA. The controlling process names a new, empty
# directory (so nothing comes from an earlier run) before xdist starts its workers,
# which inherit the name, and removes it at the end.
_OWNS_CACHE = not os.environ.get("ADAMJAX_TEST_XLA_CACHE")
if _OWNS_CACHE:
    os.environ["ADAMJAX_TEST_XLA_CACHE"] = tempfile.mkdtemp(prefix="adamjax-test-xla-cache-")
_CACHE = os.environ["ADAMJAX_TEST_XLA_CACHE"]
jax.config.update("jax_compilation_cache_dir", _CACHE)
# Results a module fixture computes once for the whole run (tests/helpers.py: computed_once), in the same directory.
os.environ.setdefault("ADAMJAX_TEST_SHARED", os.path.join(_CACHE, "shared"))
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


# ---------------------------------------------------------------- the native kernel
# Tests marked `native` check the compiled kernel itself. Where it is absent
# (no compiler, or a build for another jaxlib) they skip with the reason
# `adamjax.native_status()` gives; with ADAMJAX_REQUIRE_NATIVE=1 (CI sets it)
# they fail instead, so a broken build cannot pass as a skipped one.

import pytest  # noqa: E402


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("native") is None:
        return
    import adamjax

    status = adamjax.native_status()
    if status == "available":
        return
    if os.environ.get("ADAMJAX_REQUIRE_NATIVE", "") not in ("", "0"):
        pytest.fail(f"ADAMJAX_REQUIRE_NATIVE is set but the native kernel is absent: {status}", pytrace=False)
    pytest.skip(f"the native kernel is absent: {status}")


def pytest_collection_finish(session: pytest.Session) -> None:
    """Leaves what exists after collection (modules, test items) out of the garbage collector's work.

    JAX makes many short-lived objects, and each of Python's full collections
    walked every object of JAX, flax, matplotlib and the collected tests:
    ``gc.freeze()`` moves those out of its reach, and a larger first-generation
    threshold collects the young objects less often. On test_contract.py and
    test_dropin.py in one process, time spent collecting went from 2.1 s to 1.1 s.
    A collection first, so what is frozen is what was alive then, mostly kept until the run ends.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, *gc.get_threshold()[1:])


def pytest_sessionfinish(session: pytest.Session) -> None:
    if _OWNS_CACHE and not hasattr(session.config, "workerinput"):  # the process that made it, after every worker
        shutil.rmtree(_CACHE, ignore_errors=True)


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    """An xdist worker's last act: exit without tearing its process down.

    By now the worker has sent every report and its ``workerfinished`` message
    (written to the controller's pipe before returning), and every other
    plugin has finished. What is left is freeing a few thousand compiled XLA
    executables and the interpreter's objects, about 1 ms per executable,
    seconds during which the controller waits for the worker to exit.
    """
    if not hasattr(config, "workerinput"):
        return
    import sys

    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    os._exit(0)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Run the modules that hold long cases (marked ``slow``) first, keeping the order otherwise.

    With ``-n auto`` each pytest-xdist worker starts on a contiguous share of
    this list, and an idle worker takes half of a busy one's queue
    (``--dist worksteal`` in pyproject.toml), so the long cases are spread
    between the workers and none is left to run alone at the end. Whole
    modules move, so their module-scoped fixtures are still set up once.
    """
    slow = {item.module for item in items if item.get_closest_marker("slow") is not None}  # type: ignore[attr-defined]
    items.sort(key=lambda item: item.module not in slow)  # type: ignore[attr-defined]
