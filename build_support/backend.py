"""setuptools' build backend, building against the jax that is installed already.

The native kernel is compiled against jax's FFI headers, and a kernel built
for a newer FFI API than the installed jaxlib's cannot be loaded by it. pip
builds in an isolated environment, which by itself would get the newest jax.
So this backend looks at the environment pip installs into (``python -I``
ignores the isolated environment's path). Where jax is installed there, it asks
for no jax at all: setup.py reads that jax's headers (``jax.ffi.include_dir()``,
asked the same way), so nothing is downloaded or installed for the build.
Without jax there, it asks for ``jax>=0.10.1``, the same newest jax pip then
installs to run adamjax, and setup.py uses the copy in the build environment.
``pip install --no-build-isolation`` skips all this and uses the installed jax.
"""

from __future__ import annotations

import subprocess
import sys

from setuptools import build_meta as _setuptools
from setuptools.build_meta import *  # noqa: F403  (the PEP 517 hooks this backend does not change)

_FLOOR = "jax>=0.10.1"  # keep in sync with [project] dependencies
_PROBE = "import importlib.metadata as m; m.version('jax'), m.version('jaxlib')"  # installed, without importing jax


def _jax_requirement() -> list[str]:
    """Nothing where the target environment has jax and jaxlib installed; otherwise the package's jax floor."""
    try:
        probe = subprocess.run(
            [sys.executable, "-I", "-c", _PROBE], capture_output=True, text=True, timeout=120, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return [_FLOOR]
    return [] if probe.returncode == 0 else [_FLOOR]


def get_requires_for_build_wheel(config_settings=None):
    return _setuptools.get_requires_for_build_wheel(config_settings) + _jax_requirement()


def get_requires_for_build_editable(config_settings=None):
    return _setuptools.get_requires_for_build_editable(config_settings) + _jax_requirement()
