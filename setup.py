"""Builds adamjax's optional native CPU kernel (everything else is in pyproject.toml).

The kernel is compiled against the XLA FFI headers that jaxlib ships
(``jaxlib/include``), so jaxlib is a build requirement. Building it is best
effort: without a C++17 compiler the package installs without it, and adamjax
runs its pure-JAX path (``adamjax.native_status()`` says why).
"""

import importlib.util
import os
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext


def _jaxlib_include() -> str | None:
    spec = importlib.util.find_spec("jaxlib")
    if spec is None or not spec.submodule_search_locations:
        return None
    include = os.path.join(list(spec.submodule_search_locations)[0], "include")
    return include if os.path.exists(os.path.join(include, "xla", "ffi", "api", "ffi.h")) else None


class OptionalBuildExt(build_ext):
    """Builds the kernel when it can; warns and carries on when it cannot."""

    def build_extension(self, ext: Extension) -> None:
        include = _jaxlib_include()
        if include is None:
            print("adamjax: jaxlib's XLA FFI headers not found; skipping the native kernel", file=sys.stderr)
            return
        ext.include_dirs.append(include)
        try:
            super().build_extension(ext)
        except Exception as error:  # no compiler, old compiler: the pure-JAX path still works
            print(f"adamjax: could not build the native kernel ({error}); using the pure-JAX path", file=sys.stderr)


kernel = Extension(
    "adamjax._adam_kernel",
    sources=["adamjax/_csrc/adam_kernel.cc"],
    depends=["adamjax/_csrc/adam_kernel_impl.h"],
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
