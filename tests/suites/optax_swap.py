"""A pytest plugin that runs optax's own test modules with adamjax's Adam family swapped in.

Loaded with ``-p optax_swap`` in a separate pytest process over the test
modules the optax wheel installs (nothing of them is copied here). It

* replaces optax's Adam-family factories by adamjax's, everywhere optax's
  tests look them up (``optax.adam``, the ``alias`` and ``transform``
  modules the tests import);
* keeps only the tests that exercise one of those factories: a case named
  after one of them or parametrized by one, or a test whose source uses one;
* keeps the ``XLA_FLAGS`` it was started with, which one of optax's test
  modules overwrites when imported (``pytest_collection_finish``);
* makes ``jax.__version__`` compare as a release, so that optax's
  version-gated sharding tests run (see ``_Version``);
* lowers with one MLIR context per thread, as the suite's own processes do
  (``tests/shared_ir_context.py``);
* writes ``{node id and parameters: outcome}`` to the JSON file named by ``ADAMJAX_SWAP_REPORT``.

The optax tests look the factories up by module attribute, so the swap has
to patch optax's private modules; this is test-only and never done by adamjax.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import json
import os
import re
from pathlib import Path

import adamjax

FAMILY = (
    "adam",
    "adamw",
    "nadam",
    "nadamw",
    "adamax",
    "adamaxw",
    "adabelief",
    "amsgrad",
    "scale_by_adam",
    "scale_by_amsgrad",
    "scale_by_belief",
    "scale_by_adamax",
)
_MODULES = ("optax", "optax._src.alias", "optax._src.transform", "optax.transforms")
_CALLS = re.compile(r"\b(?:alias|transform|optax|transforms)\.(?:" + "|".join(FAMILY) + r")\b")
_PARAM = re.compile(r"'(?:" + "|".join(FAMILY) + r")'|adamjax")
_outcomes: dict[str, str] = {}
_labels: dict[str, str] = {}  # node id -> node id and the case's parameters


def _swap() -> None:
    for module_name in _MODULES:
        module = importlib.import_module(module_name)
        for name in FAMILY:
            if hasattr(module, name):
                setattr(module, name, getattr(adamjax, name))


class _Version(str):
    """``jax.__version__`` with release ordering for ``<``.

    optax's sharding tests skip themselves with ``jax.__version__ < '0.7.2'``, a
    string comparison under which jax 0.10 reads as older than 0.7. This keeps
    the string equal and makes the comparison the one those tests mean, so they
    run instead of skipping.
    """

    def _key(self, other: str) -> tuple[tuple[int, ...], tuple[int, ...]]:
        def parts(text: str) -> tuple[int, ...]:
            return tuple(int(re.match(r"\d*", piece).group() or 0) for piece in text.split("."))

        return parts(str(self)), parts(str(other))

    def __lt__(self, other: str) -> bool:  # type: ignore[override]
        mine, theirs = self._key(other)
        return mine < theirs

    def __ge__(self, other: str) -> bool:  # type: ignore[override]
        return not self < other

    __hash__ = str.__hash__


_XLA_FLAGS: list[str | None] = []


def pytest_configure(config) -> None:
    _XLA_FLAGS.append(os.environ.get("XLA_FLAGS"))
    _swap()
    import jax

    jax.__version__ = _Version(jax.__version__)
    _shared_ir_context().install()


def _shared_ir_context():
    """The suite's ``tests/shared_ir_context.py`` (one MLIR context per thread), imported from its path."""
    spec = importlib.util.spec_from_file_location(
        "shared_ir_context", Path(__file__).resolve().parents[1] / "shared_ir_context.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_NAMED = re.compile(r"_(?:" + "|".join(FAMILY) + r")$")


def _uses_family(item) -> bool:
    if _NAMED.search(item.name):  # absl's named parameters: test_init_with_abstract_input_adam
        return True
    params = getattr(item.obj, "__x_params_repr__", None)
    if params is not None and (_PARAM.search(params) or "opt_name=" in params):
        return bool(_PARAM.search(params))
    try:
        source = inspect.getsource(item.obj)
    except (OSError, TypeError):
        return False
    return bool(_CALLS.search(source))


def pytest_collection_modifyitems(config, items) -> None:
    keep = [item for item in items if _uses_family(item)]
    for item in keep:
        params = getattr(item.obj, "__x_params_repr__", None)
        _labels[item.nodeid] = f"{item.nodeid} {params}" if params else item.nodeid
    deselected = [item for item in items if not _uses_family(item)]
    config.hook.pytest_deselected(items=deselected)
    items[:] = keep


def pytest_collection_finish(session) -> None:
    """Gives back the ``XLA_FLAGS`` this process started with, before any test starts a backend.

    optax's ``sharding_test.py`` sets ``XLA_FLAGS`` to its device count alone when
    it is imported, which dropped the suite's compile flags (tests/compile_flags.py)
    from every later compile: the run took 73 s instead of 54. The flags given
    here already hold the same device count.
    """
    if _XLA_FLAGS[0] is not None:
        os.environ["XLA_FLAGS"] = _XLA_FLAGS[0]


def pytest_runtest_logreport(report) -> None:
    label = _labels.get(report.nodeid, report.nodeid)
    if report.when == "call" or report.outcome != "passed":
        if _outcomes.get(label) in (None, "passed"):
            _outcomes[label] = report.outcome


def pytest_sessionfinish(session) -> None:
    path = os.environ.get("ADAMJAX_SWAP_REPORT")
    if path:
        with open(path, "w") as f:
            json.dump(_outcomes, f, indent=1, sort_keys=True)
