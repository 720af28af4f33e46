"""A fresh Python interpreter without paying for the imports: a fork server for the suite's subprocesses.

Many tests run a script, an example or a snippet in a new interpreter, so that
nothing of the test process leaks into it. Each such interpreter spends about
two seconds importing JAX, optax, adamjax, matplotlib and flax before it does
anything, and the suite starts about sixty of them on two cores.

This module is both ends of a fork server:

* run as a script (``python tests/warm_python.py``), it imports :data:`PRELOAD`
  -- which starts no thread of JAX's and no backend: no device, no compile, no
  native kernel -- and then, for each request read from standard input, forks.
  The child sets the requested working directory, environment, ``sys.argv``,
  ``sys.path[0]`` and standard streams and runs the code as ``python`` would
  (``-c``, ``-m`` or a script path), then exits as ``python`` exits: non-daemon
  threads joined, ``atexit`` handlers run, the streams flushed, the exit code of
  ``SystemExit`` or 1 after a traceback.
* imported, :class:`WarmPython` starts that server and :meth:`WarmPython.run`
  answers with a :class:`subprocess.CompletedProcess`.

What the child inherits is the state of a fresh interpreter that has imported
those modules and run nothing else. :meth:`WarmPython.serves` refuses (and the
caller starts a real interpreter) whenever that could differ from a fresh
start: an environment variable read at import time differs (everything but
:data:`READ_LATER` and ``JAX_PLATFORMS``, which is applied through
``jax.config``), or the arguments are not ``-c``, ``-m`` or a script. Tests that
check what importing does (for instance that adamjax does not import
matplotlib) start a real interpreter themselves. One thing is added: a child
whose environment names the suite's compilation cache (``ADAMJAX_TEST_XLA_CACHE``,
tests/conftest.py) compiles through it, so the examples and snippets that
compile the same programs compile them once; a hit returns the executable XLA
would have compiled.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

PRELOAD = (
    "numpy",
    "jax",
    "jax.numpy",
    "optax",
    "adamjax",
    "matplotlib",
    "matplotlib.pyplot",
    "flax.nnx",
    "orbax.checkpoint",
)

# Environment variables nothing reads while importing PRELOAD: XLA reads its flags when the first
# backend starts, adamjax reads its switches when the kernel first loads or runs, and the rest are
# the suite's own (tests/conftest.py), which only its test processes read.
READ_LATER = frozenset(
    {
        "XLA_FLAGS",
        "ADAMJAX_KERNEL_BASELINE",
        "ADAMJAX_DISABLE_NATIVE",
        "ADAMJAX_REQUIRE_NATIVE",
        "PYTEST_CURRENT_TEST",
        "ADAMJAX_TEST_XLA_CACHE",
        "ADAMJAX_TEST_SHARED",
    }
)
# JAX reads JAX_* variables at import; this one the child sets through jax.config instead.
APPLIED = {"JAX_PLATFORMS": "jax_platforms"}


# ---------------------------------------------------------------- the server


def _exit_code(code: Any) -> int:
    """The exit status ``python`` gives a ``SystemExit`` carrying ``code`` (printing a non-integer one)."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    print(code, file=sys.stderr)
    return 1


def runpy_file() -> str:
    import runpy

    return runpy.__file__


def _run_as_python(argv: list[str]) -> None:
    """Runs ``python *argv``'s code in this process: ``-c CODE``, ``-m MODULE`` or ``SCRIPT``, with their arguments."""
    import runpy
    import types

    if argv[0] == "-c":
        sys.argv = ["-c", *argv[2:]]
        sys.path[0] = ""
        main = types.ModuleType("__main__")
        main.__dict__["__builtins__"] = __builtins__
        sys.modules["__main__"] = main
        exec(compile(argv[1], "<string>", "exec"), main.__dict__)
    elif argv[0] == "-m":
        sys.argv = [argv[1], *argv[2:]]
        sys.path[0] = os.getcwd()
        runpy.run_module(argv[1], run_name="__main__", alter_sys=True)
    else:
        sys.argv = list(argv)
        sys.path[0] = os.path.dirname(os.path.realpath(argv[0]))
        runpy.run_path(argv[0], run_name="__main__")


def _child(request: dict[str, Any], channel: int) -> None:
    """The forked child: becomes the requested interpreter, runs, and exits without returning."""
    code = 1
    try:
        os.close(channel)
        os.setpgid(0, 0)  # a group of its own, so a timeout ends whatever it started as well
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        for fd, (path, flags) in enumerate(
            [
                (os.devnull, os.O_RDONLY),
                (request["stdout"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC),
                (request["stderr"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC),
            ]
        ):
            opened = os.open(path, flags, 0o644)
            os.dup2(opened, fd)
            os.close(opened)
        sys.stdin = open(os.devnull)  # noqa: SIM115  # the server's reader may hold buffered requests
        import jax

        for variable, option in APPLIED.items():
            if variable in request["env"]:
                jax.config.update(option, request["env"][variable])
        cache = request["env"].get("ADAMJAX_TEST_XLA_CACHE")
        if cache:  # the suite's compilation cache (tests/conftest.py): results are the same, compiles are shared
            jax.config.update("jax_compilation_cache_dir", cache)
            jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
            jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
        try:
            _run_as_python(request["argv"])
            code = 0
        except SystemExit as exit:
            code = _exit_code(exit.code)
        except BaseException as error:
            import traceback

            frames = error.__traceback__
            while frames is not None and frames.tb_frame.f_code.co_filename in (__file__, runpy_file()):
                frames = frames.tb_next  # a fresh interpreter's traceback starts in the code it ran
            traceback.print_exception(type(error), error, frames)
            code = 1
        import atexit
        import threading

        threading._shutdown()  # type: ignore[attr-defined]  # as the interpreter does at exit
        atexit._run_exitfuncs()
    except BaseException:
        import traceback

        traceback.print_exc()
        code = 1
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:
                pass
        os._exit(code)


def _serve() -> None:
    import importlib

    channel = os.dup(1)  # replies go here; anything printed on standard output goes to standard error
    os.dup2(2, 1)
    for name in PRELOAD:
        try:
            importlib.import_module(name)
        except (
            ImportError
        ):  # not installed (a minimal or older environment): the child imports it as a new process would
            pass
    from jax._src import xla_bridge

    assert not xla_bridge._backends, "importing the preloaded modules started a JAX backend"
    with open("/proc/self/maps") as maps:
        assert "_adamjax_kernel" not in maps.read(), "importing the preloaded modules loaded the native kernel"

    def reply(message: dict[str, Any]) -> None:
        os.write(channel, (json.dumps(message) + "\n").encode())

    reply({"env": dict(os.environ)})
    for line in sys.stdin:
        request = json.loads(line)
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            _child(request, channel)
        reply({"pid": pid})
        _, status = os.waitpid(pid, 0)
        reply({"returncode": os.waitstatus_to_exitcode(status)})


# ---------------------------------------------------------------- the client


class WarmPython:
    """A running fork server (one per test process): :meth:`run` is ``subprocess.run`` for ``python ...``."""

    def __init__(self, env: dict[str, str]) -> None:
        self._server = subprocess.Popen(
            [sys.executable, __file__],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=env,
            text=True,
            start_new_session=True,
        )
        assert self._server.stdout is not None
        self._replies = self._server.stdout.fileno()
        self._pending = b""
        self._started: dict[str, str] | None = None  # the server's environment, once it says it is ready

    @property
    def _env(self) -> dict[str, str]:
        """The server's environment; the first call waits until its imports are done."""
        if self._started is None:
            self._started = self._reply(None)["env"]
        return self._started

    def _reply(self, timeout: float | None) -> dict[str, Any]:
        """The server's next reply, or ``{}`` when ``timeout`` seconds pass first."""
        while b"\n" not in self._pending:
            ready, _, _ = select.select([self._replies], [], [], timeout)
            if not ready:
                return {}
            chunk = os.read(self._replies, 65536)
            if not chunk:
                raise RuntimeError("the warm interpreter's server exited")
            self._pending += chunk
        line, self._pending = self._pending.split(b"\n", 1)
        return json.loads(line)

    def serves(self, argv: list[str], env: dict[str, str]) -> bool:
        """Whether a forked child runs ``python *argv`` with ``env`` exactly as a fresh interpreter would."""
        if not argv:
            return False
        try:
            server_env = self._env
        except RuntimeError:  # the server could not start: every run takes a new process
            return False
        if self._server.poll() is not None:
            return False
        if argv[0] in ("-c", "-m"):
            if len(argv) < 2:
                return False
        elif argv[0].startswith("-"):
            return False
        for key in set(env) | set(server_env):
            if env.get(key) == server_env.get(key) or key in READ_LATER:
                continue
            if key not in APPLIED or key in server_env:
                return False
        return True

    def run(
        self, argv: list[str], *, env: dict[str, str], cwd: str | Path | None, timeout: float
    ) -> subprocess.CompletedProcess:
        """``python *argv`` in a forked child; the output is captured as text, as ``capture_output=True, text=True``."""
        assert self._server.stdin is not None and self._server.stdout is not None
        assert self._env  # ready
        with tempfile.TemporaryDirectory(prefix="adamjax-warm-") as scratch:
            out, err = Path(scratch, "stdout"), Path(scratch, "stderr")
            request = {"argv": argv, "env": env, "cwd": str(cwd or os.getcwd()), "stdout": str(out), "stderr": str(err)}
            self._server.stdin.write(json.dumps(request) + "\n")
            self._server.stdin.flush()
            pid = self._reply(None)["pid"]
            finished = self._reply(timeout)
            timed_out = not finished
            if timed_out:
                os.killpg(pid, signal.SIGKILL)
                finished = self._reply(None)
            returncode = finished["returncode"]
            stdout, stderr = out.read_text(errors="replace"), err.read_text(errors="replace")
        if timed_out:
            raise subprocess.TimeoutExpired([sys.executable, *argv], timeout, stdout, stderr)
        return subprocess.CompletedProcess([sys.executable, *argv], returncode, stdout, stderr)

    def close(self) -> None:
        """Ends the server (it exits when its standard input closes)."""
        if self._server.stdin is not None:
            self._server.stdin.close()
        self._server.wait(timeout=30)
        if self._server.stdout is not None:  # the replies' pipe, read through its descriptor
            self._server.stdout.close()


if __name__ == "__main__":
    _serve()
