"""What the build recorded about the native kernel, read before the kernel is loaded.

``setup.py`` writes ``_kernel_build.json`` beside the compiled library: whether
the kernel was built, why not, and the XLA FFI API version of the headers it was
compiled against. :mod:`adamjax._native` asks here before registering the
kernel, because XLA refuses a handler built for a newer FFI API than its own
and then cannot start its CPU backend at all.
"""

from __future__ import annotations

import json
import os
import re

RECORD = "_kernel_build.json"
_HERE = os.path.dirname(os.path.abspath(__file__))
REINSTALL = "reinstall adamjax from source with `pip install --no-build-isolation --force-reinstall --no-deps ...`"


def _record() -> dict[str, object] | None:
    try:
        with open(os.path.join(_HERE, RECORD)) as file:
            record = json.load(file)
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def not_built_reason() -> str | None:
    """Why the build did not produce the kernel, as recorded, or None without a record of a failure."""
    record = _record()
    if record is None or record.get("built", False):
        return None
    return f"the native kernel was not built: {record.get('reason', 'no reason recorded')}"


def runtime_ffi_api() -> tuple[int, int] | None:
    """The XLA FFI API version of the jaxlib running now, from its headers; None if they are not there."""
    import jax

    try:
        with open(os.path.join(jax.ffi.include_dir(), "xla", "ffi", "api", "c_api.h")) as file:
            text = file.read()
    except OSError:
        return None
    found = [re.search(rf"#define XLA_FFI_API_{part} (\d+)", text) for part in ("MAJOR", "MINOR")]
    if found[0] is None or found[1] is None:
        return None
    return int(found[0].group(1)), int(found[1].group(1))


def incompatibility() -> str | None:
    """Why the built kernel cannot be loaded by this jaxlib, or None when it can (or nothing says otherwise).

    A handler compiled against FFI API ``major.minor`` runs on a jaxlib with
    the same major version and the same or a newer minor version.
    """
    record = _record() or {}
    built_api = record.get("ffi_api")
    if not (isinstance(built_api, list) and len(built_api) == 2):
        return None
    runtime = runtime_ffi_api()
    if runtime is None:
        return None
    built = (int(built_api[0]), int(built_api[1]))
    if built[0] == runtime[0] and built[1] <= runtime[1]:
        return None
    import jaxlib

    runtime_jaxlib = getattr(jaxlib, "__version__", "of this process")
    return (
        f"the native kernel was built against jaxlib {record.get('jaxlib')} (XLA FFI API {built[0]}.{built[1]}), "
        f"which jaxlib {runtime_jaxlib} (FFI API {runtime[0]}.{runtime[1]}) cannot load; "
        f"{REINSTALL} to build it against this jaxlib"
    )
