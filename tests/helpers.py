"""What several test files need: subprocesses that import this checkout, drawn PNGs, notebooks, the core.

Kept apart from ``numpy_reference.py``, which must not import adamjax.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import nbclient
import nbformat
import numpy as np
import numpy_reference as ref
import optax
from compile_flags import FAST_LOWERING_ENV
from matplotlib.image import imread
from warm_python import WarmPython

import adamjax

ROOT = Path(__file__).resolve().parents[1]
# The classes of the Adam core's state: optax's own (adamjax is a drop-in).
CORE_STATES = (optax.ScaleByAdamState, optax.ScaleByAmsgradState, optax.ScaleByBeliefState)
EXAMPLES = ROOT / "examples"


def checkout_env(*, drop: tuple[str, ...] = ("JAX_",), **extra: str) -> dict[str, str]:
    """This process's environment with the repository first on PYTHONPATH.

    Variables starting with ``drop`` are removed (the suite's JAX settings
    must not leak into a fresh interpreter), but for the one that only
    shortens compiles (``compile_flags.FAST_LOWERING_ENV``); ``extra`` is set last.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env.update(FAST_LOWERING_ENV)
    env.update(extra)
    return env


_WARM: list[WarmPython] = []  # this test process's fork server, started on first use


def warm_server() -> WarmPython | None:
    """This test process's fork server (``tests/warm_python.py``); None when ``ADAMJAX_TEST_COLD_PYTHON=1``.

    It starts at once and imports in the background; the first run waits for it.
    """
    if os.environ.get("ADAMJAX_TEST_COLD_PYTHON", "") not in ("", "0"):
        return None
    if not _WARM:
        _WARM.append(WarmPython(checkout_env()))
        atexit.register(_WARM[0].close)
    return _WARM[0]


if os.environ.get("PYTEST_XDIST_WORKER"):  # the whole suite: start importing while the tests are collected
    warm_server()


def python_run(
    *args: Any,
    env: dict[str, str] | None = None,
    cwd: str | Path | None = None,
    timeout: float = 300,
    fresh: bool = False,
    check: bool = False,
) -> subprocess.CompletedProcess:
    """``python *args`` as a fresh interpreter runs it, output captured as text (``subprocess.run``'s result).

    Where the code would run no differently, the interpreter is a child forked
    from a server that has already imported JAX and the libraries the examples
    use (``tests/warm_python.py`` says when that holds); otherwise it is a new
    process. ``fresh=True`` always starts a new process: for code that checks
    what importing does. ``check=True`` fails the test (showing stderr) unless
    it exits 0. ``env`` defaults to :func:`checkout_env`.
    """
    argv = [str(arg) for arg in args]
    env = checkout_env() if env is None else env
    server = None if fresh else warm_server()
    if server is not None and server.serves(argv, env):
        result = server.run(argv, env=env, cwd=cwd, timeout=timeout)
    else:
        result = subprocess.run(
            [sys.executable, *argv], env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout
        )
    assert not check or result.returncode == 0, result.stderr
    return result


# python_run that fails the test unless the interpreter exits 0.
run_python = functools.partial(python_run, check=True)


def computed_once(name: str, compute: Any) -> Path:
    """The directory ``compute(directory)`` filled, once in this test run however many processes ask.

    pytest-xdist may run a module's tests on both workers, and each then sets up
    the module's fixtures; a fixture whose work takes seconds (a subprocess on 8
    simulated devices, say) computes its files here instead: the first worker
    to ask computes them while holding a lock, the others wait and read them.
    """
    import fcntl

    shared = Path(os.environ["ADAMJAX_TEST_SHARED"])
    shared.mkdir(parents=True, exist_ok=True)
    directory, done = shared / name, shared / f"{name}.done"
    with open(shared / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not done.exists():
            directory.mkdir(exist_ok=True)
            compute(directory)
            done.touch()
    return directory


def run_example(name: str, *args: Any) -> subprocess.CompletedProcess:
    """Runs ``examples/<name>`` as a script."""
    return run_python(EXAMPLES / name, *args)


def example_help(name: str) -> str:
    """``python examples/<name> --help``'s output, run in this interpreter (``runpy``, as the script runs itself).

    Printing the help only parses the options and exits, so it needs no fresh
    interpreter (importing JAX again costs about 2 s); tests/test_examples.py
    runs every script's ``--help`` in one separate interpreter as well.
    """
    import io
    import runpy

    path = EXAMPLES / name
    argv, out = sys.argv, io.StringIO()
    sys.argv = [str(path), "--help"]
    sys.path.insert(0, str(EXAMPLES))
    code: Any = None
    try:
        with contextlib.redirect_stdout(out):
            runpy.run_path(str(path), run_name="__main__")
    except SystemExit as exit:
        code = exit.code
    finally:
        sys.argv = argv
        sys.path.remove(str(EXAMPLES))
    assert code in (0, None), f"{name} --help exited with {code}"
    return out.getvalue()


def assert_drawn_png(path: Path, min_ink: float = 0.03) -> None:
    """``path`` is a real figure: at least 500x300 pixels with ``min_ink`` of them not white."""
    image = imread(path)[..., :3]
    assert image.shape[0] >= 300 and image.shape[1] >= 500, image.shape
    ink = float(np.mean(np.any(image < 0.9, axis=-1)))
    assert ink > min_ink, f"only {ink:.1%} of {path.name} is drawn"


def load_generator(filename: str) -> Any:
    """Imports a notebook generator ``examples/<filename>`` (which imports ``examples/_notebook.py``)."""
    spec = importlib.util.spec_from_file_location(Path(filename).stem, EXAMPLES / filename)
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(EXAMPLES))
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(EXAMPLES))
    return module


def assert_notebook_matches_generator(notebook: Path, generator: str) -> nbformat.NotebookNode:
    """The committed notebook has its generator's cells, executed without errors; returns it."""
    committed = nbformat.read(notebook, as_version=4)
    built = load_generator(generator).build()
    assert [(c.cell_type, c.source) for c in committed.cells] == [(c.cell_type, c.source) for c in built.cells]
    code = [c for c in committed.cells if c.cell_type == "code"]
    assert all(c.execution_count is not None for c in code), "the notebook was committed without running it"
    assert not any(o.output_type == "error" for c in code for o in c.outputs)
    return committed


def execute_notebook(notebook: Path, timeout: int) -> tuple[str, list]:
    """Runs ``notebook`` top to bottom in a kernel started in ``examples/``.

    Returns the printed text and the displayed PNG outputs. The kernel inherits
    this process's environment (set it with ``monkeypatch`` beforehand).
    """
    node = nbformat.read(notebook, as_version=4)
    client = nbclient.NotebookClient(
        node, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(EXAMPLES)}}
    )
    client.execute()  # raises CellExecutionError on the first failing cell
    outputs = [output for cell in node.cells if cell.cell_type == "code" for output in cell.outputs]
    text = "".join(output.get("text", "") for output in outputs if output.output_type == "stream")
    images = [output for output in outputs if "image/png" in output.get("data", {})]
    return text, images


@contextlib.contextmanager
def checkout_environment(monkeypatch: Any):
    """Sets :func:`checkout_env` in this process (for a notebook kernel to inherit)."""
    env = checkout_env()
    for key in [k for k in os.environ if k not in env]:
        monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    yield


def scale_by_adam_for(variant: ref.Variant, **dtypes: Any) -> optax.GradientTransformation:
    """adamjax's core configured as the NumPy reference's ``variant``."""
    return adamjax.scale_by_adam(
        variant.b1,
        variant.b2,
        variant.eps,
        variant.eps_root,
        power=variant.power,
        centered=variant.centered,
        amsgrad=variant.amsgrad,
        nesterov=variant.nesterov,
        bias_correction=variant.bias_correction,
        **dtypes,
    )
