"""Builds adamjax's optional native CPU kernel (everything else is in pyproject.toml).

The kernel is compiled against the XLA FFI headers of the installed jax
(``jax.ffi.include_dir()``, asked of the environment adamjax installs into
when pip builds in an isolated one). Building it is best effort: without jax's headers
or a C++17 compiler the package installs without it and runs its pure-JAX path.
Either way the build writes ``adamjax/_kernel_build.json`` beside the package,
which :func:`adamjax.native_status` reads to say why the kernel is absent, and
which records the FFI API version the kernel was compiled for, so a kernel
built for a newer jaxlib than the one installed is refused instead of loaded.
Set ``ADAMJAX_REQUIRE_NATIVE=1`` to make a failed kernel build fail the install.

The kernel is five translation units, compiled in parallel (as many at a time
as there are CPUs) and then linked as usual: the heaviest takes about a third
of the time the kernel took as one file (adamjax/_csrc/kernel_common.h lists
them).
"""

import json
import os
import re
import sys
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

RECORD = "_kernel_build.json"
_REQUIRE_ENV = "ADAMJAX_REQUIRE_NATIVE"


# Run with `python -I`, which leaves out pip's isolated build environment: the jax adamjax is installed beside.
_INSTALLED_JAX = (
    "import json, jax, jaxlib;"
    "print(json.dumps({'jax': jax.__version__, 'jaxlib': jaxlib.__version__, 'include': jax.ffi.include_dir()}))"
)


def _jax_headers() -> tuple[dict[str, str] | None, str]:
    """The versions and FFI include directory of the jax to build against, or None and why not.

    The jax this process imports comes first (``--no-build-isolation``, or the
    jax pip put in the isolated build environment); otherwise the jax installed
    where adamjax is being installed, which the build backend leaves out of the
    isolated environment (build_support/backend.py).
    """
    import subprocess

    try:
        import jax
        import jaxlib

        return {"jax": jax.__version__, "jaxlib": jaxlib.__version__, "include": jax.ffi.include_dir()}, ""
    except ImportError as error:
        here = f"jax was not importable when adamjax was built ({error})"
    try:
        probe = subprocess.run(
            [sys.executable, "-I", "-c", _INSTALLED_JAX], capture_output=True, text=True, timeout=120, check=False
        )
    except (OSError, subprocess.SubprocessError) as error:
        return None, f"{here}, nor in the environment it installs into ({error})"
    if probe.returncode != 0:
        last = (probe.stderr.strip().splitlines() or ["no output"])[-1]
        return None, f"{here}, nor in the environment it installs into ({last})"
    return json.loads(probe.stdout), ""


def _ffi_headers() -> tuple[str | None, dict[str, object]]:
    """jax's FFI include directory and what the record says about it, or None and why not."""
    found, reason = _jax_headers()
    if found is None:
        return None, {"reason": reason}
    include = found["include"]
    c_api = Path(include, "xla", "ffi", "api", "c_api.h")
    if not c_api.exists():
        return None, {"reason": f"jax.ffi.include_dir() ({include}) holds no xla/ffi/api/c_api.h"}
    text = c_api.read_text()
    api = [int(re.search(rf"#define XLA_FFI_API_{part} (\d+)", text).group(1)) for part in ("MAJOR", "MINOR")]
    return include, {"jax": found["jax"], "jaxlib": found["jaxlib"], "ffi_api": api}


class _SourceFailed(Exception):
    """A translation unit that did not compile, with why."""

    def __init__(self, source: str, error: Exception) -> None:
        super().__init__(f"compiling {source} failed: {error}")


def _parallel_compile(compile_sources, order: list[str]):
    """``compile_sources`` (a compiler's ``compile``) run on each source in a thread of its own.

    The sources start in ``order`` (the heaviest first), ``os.cpu_count()`` at
    a time, each a compiler process. Once one fails no more start, and the
    first source in ``order`` that failed raises _SourceFailed naming it (the
    first source always starts, so a compiler that fails on everything is
    reported against it).
    """

    def compile_each(sources, *args, **kwargs):
        given = list(sources)
        waiting = sorted(given, key=lambda source: order.index(source) if source in order else len(order))
        started = list(waiting)
        workers = max(1, min(len(waiting), os.cpu_count() or 1))
        objects, failed, running = {}, {}, {}
        with ThreadPoolExecutor(max_workers=workers) as pool:
            while True:
                while waiting and not failed and len(running) < workers:
                    source = waiting.pop(0)
                    running[pool.submit(compile_sources, [source], *args, **kwargs)] = source
                if not running:
                    break
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in done:
                    source = running.pop(future)
                    try:
                        objects[source] = future.result()
                    except Exception as error:
                        failed[source] = error
        for source in started:
            if source in failed:
                raise _SourceFailed(source, failed[source]) from failed[source]
        # One object per source, in the caller's order, as compile() returns them.
        return [obj for source in given for obj in objects[source]]

    return compile_each


class OptionalBuildExt(build_ext):
    """Builds the kernel when it can, and records what happened in ``adamjax/_kernel_build.json``."""

    def build_extension(self, ext: Extension) -> None:
        include, record = _ffi_headers()
        if include is not None:
            ext.include_dirs.append(include)
            # build_ext compiles the sources in one call to compile(), one after
            # another; this compiler does them in parallel, then build_ext links.
            serial = self.compiler.compile
            self.compiler.compile = _parallel_compile(serial, list(ext.sources))
            try:
                super().build_extension(ext)
                record["built"] = True
            except _SourceFailed as error:  # no compiler, old compiler: the pure-JAX path still works
                record["reason"] = str(error)
            except Exception as error:
                record["reason"] = f"building {ext.name} failed: {error}"
            finally:
                self.compiler.compile = serial
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
    # Compiled in parallel, starting in this order: the FFI handlers and the
    # dispatch, then the instruction sets' loops, the heaviest first
    # (kernel_common.h says what each file holds).
    sources=[
        "adamjax/_csrc/adam_kernel.cc",
        "adamjax/_csrc/quantized_loops_avx2.cc",
        "adamjax/_csrc/quantized_loops_baseline.cc",
        "adamjax/_csrc/adam_loops_baseline.cc",
        "adamjax/_csrc/adam_loops_avx2.cc",
    ],
    depends=[
        "adamjax/_csrc/kernel_common.h",
        "adamjax/_csrc/loop_entry_points.h",
        "adamjax/_csrc/avx2_unit.h",
        "adamjax/_csrc/dtypes_impl.h",
        "adamjax/_csrc/adam_kernel_impl.h",
        "adamjax/_csrc/quantized_kernel_impl.h",
    ],
    language="c++",
    # -fno-math-errno and -fno-trapping-math let the compiler vectorise sqrt and
    # the zero-denominator select (results are unchanged); no -ffast-math, so the
    # arithmetic stays IEEE; no FMA contraction, so `p + (-lr * u)` rounds the
    # step first, exactly as `update` followed by `optax.apply_updates` does.
    # -g0 overrides the -g of Python's own compiler flags: debug information made
    # the build a third slower and the library 6 MB.
    extra_compile_args=[
        "-std=c++17",
        "-O3",
        "-g0",
        "-fno-math-errno",
        "-fno-trapping-math",
        "-ffp-contract=off",
        "-fvisibility-inlines-hidden",
    ],
)

setup(ext_modules=[kernel] if os.name == "posix" else [], cmdclass={"build_ext": OptionalBuildExt})
