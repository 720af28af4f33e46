"""setuptools' build backend, asking for the jax that is installed already.

The native kernel is compiled against jax's FFI headers, and a kernel built
for a newer FFI API than the installed jaxlib's cannot be loaded by it. pip
builds in an isolated environment, which by itself would get the newest jax.
So this backend looks at the environment pip installs into (``python -I``
ignores the isolated environment's path) and asks for the same jax and jaxlib,
which pip takes from its cache; without jax there, it asks for ``jax>=0.10.0``,
the same newest jax pip then installs to run adamjax.
``pip install --no-build-isolation`` skips all this and uses the installed jax.
"""

from __future__ import annotations

import subprocess
import sys

from setuptools import build_meta as _setuptools
from setuptools.build_meta import *  # noqa: F403  (the PEP 517 hooks this backend does not change)

_FLOOR = "jax>=0.10.0"  # keep in sync with [project] dependencies
_PROBE = "import importlib.metadata as m; print(m.version('jax'), m.version('jaxlib'))"


def _jax_requirement() -> list[str]:
    try:
        probe = subprocess.run(
            [sys.executable, "-I", "-c", _PROBE], capture_output=True, text=True, timeout=60, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return [_FLOOR]
    versions = probe.stdout.split()
    if probe.returncode != 0 or len(versions) != 2:
        return [_FLOOR]
    jax_version, jaxlib_version = versions
    return [f"jax=={jax_version}", f"jaxlib=={jaxlib_version}"]


def get_requires_for_build_wheel(config_settings=None):
    return _setuptools.get_requires_for_build_wheel(config_settings) + _jax_requirement()


def get_requires_for_build_editable(config_settings=None):
    return _setuptools.get_requires_for_build_editable(config_settings) + _jax_requirement()
