"""Builds adamjax's optional native CPU kernel (everything else is in pyproject.toml).

The kernel is compiled against the XLA FFI headers of the installed jax
(``jax.ffi.include_dir()``). Building it is best effort: without jax's headers
or a C++17 compiler the package installs without it and runs its pure-JAX path.
Either way the build writes ``adamjax/_kernel_build.json`` beside the package,
which :func:`adamjax.native_status` reads to say why the kernel is absent, and
which records the FFI API version the kernel was compiled for, so a kernel
built for a newer jaxlib than the one installed is refused instead of loaded.
Set ``ADAMJAX_REQUIRE_NATIVE=1`` to make a failed kernel build fail the install.
"""

import json
import os
import re
import sys
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

RECORD = "_kernel_build.json"
_REQUIRE_ENV = "ADAMJAX_REQUIRE_NATIVE"


def _ffi_headers() -> tuple[str | None, dict[str, object]]:
    """jax's FFI include directory and what the record says about it, or None and why not."""
    try:
        import jax
        import jaxlib
    except ImportError as error:
        return None, {"reason": f"jax was not importable when adamjax was built ({error})"}
    include = jax.ffi.include_dir()
    c_api = Path(include, "xla", "ffi", "api", "c_api.h")
    if not c_api.exists():
        return None, {"reason": f"jax.ffi.include_dir() ({include}) holds no xla/ffi/api/c_api.h"}
    text = c_api.read_text()
    api = [int(re.search(rf"#define XLA_FFI_API_{part} (\d+)", text).group(1)) for part in ("MAJOR", "MINOR")]
    return include, {"jax": jax.__version__, "jaxlib": jaxlib.__version__, "ffi_api": api}


class OptionalBuildExt(build_ext):
    """Builds the kernel when it can, and records what happened in ``adamjax/_kernel_build.json``."""

    def build_extension(self, ext: Extension) -> None:
        include, record = _ffi_headers()
        if include is not None:
            ext.include_dirs.append(include)
            try:
                super().build_extension(ext)
                record["built"] = True
            except Exception as error:  # no compiler, old compiler: the pure-JAX path still works
                record["reason"] = f"compiling adamjax/_csrc/adam_kernel.cc failed: {error}"
        record.setdefault("built", False)
        self._write_record(ext, record)
        if not record["built"]:
            message = f"adamjax: the native kernel was not built: {record['reason']}"
            if os.environ.get(_REQUIRE_ENV, "") not in ("", "0"):
                raise RuntimeError(f"{message} ({_REQUIRE_ENV} is set)")
            print(f"{message}; adamjax will use its pure-JAX path", file=sys.stderr)

    def copy_extensions_to_source(self) -> None:
        # `build_ext --inplace` and editable installs: the record goes where the library goes.
        super().copy_extensions_to_source()
        for ext in self.extensions:
            built = getattr(self, "_records", {}).get(ext.name)
            if built is not None:
                Path(self.get_ext_fullpath(ext.name)).with_name(RECORD).write_text(built.read_text())

    def _write_record(self, ext: Extension, record: dict[str, object]) -> None:
        # Beside the extension in the build tree, which becomes the wheel.
        target = Path(self.get_ext_fullpath(ext.name)).with_name(RECORD)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(record, indent=1) + "\n")
        self._records = {**getattr(self, "_records", {}), ext.name: target}


kernel = Extension(
    "adamjax._adam_kernel",
    sources=["adamjax/_csrc/adam_kernel.cc"],
    depends=["adamjax/_csrc/adam_kernel_impl.h", "adamjax/_csrc/quantized_kernel_impl.h"],
    language="c++",
    # -fno-math-errno and -fno-trapping-math let the compiler vectorise sqrt and
    # the zero-denominator select (results are unchanged); no -ffast-math, so the
    # arithmetic stays IEEE; no FMA contraction, so `p + (-lr * u)` rounds the
    # step first, exactly as `update` followed by `optax.apply_updates` does.
    extra_compile_args=[
        "-std=c++17",
        "-O3",
        "-fno-math-errno",
        "-fno-trapping-math",
        "-ffp-contract=off",
        "-fvisibility-inlines-hidden",
    ],
)

setup(ext_modules=[kernel] if os.name == "posix" else [], cmdclass={"build_ext": OptionalBuildExt})
