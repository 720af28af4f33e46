"""The suite's fork server (tests/warm_python.py) runs code as a fresh interpreter would.

Each case runs the same code both ways, in a child forked from the server and
in a new ``python`` process, and compares what the code sees and what comes
back: the arguments, ``sys.path[0]``, the working directory, the environment,
threads and ``atexit`` at the end, the exit status, the output and the traceback.
"""

from __future__ import annotations

import atexit
import subprocess

import pytest
from helpers import checkout_env, python_run
from warm_python import WarmPython

PROBE = """
import atexit, json, os, sys, threading, time
print(json.dumps({
    "argv": sys.argv, "path0": sys.path[0], "cwd": os.getcwd(), "name": __name__,
    "file": globals().get("__file__"), "marker": os.environ.get("ADAMJAX_DISABLE_NATIVE"),
}))
atexit.register(lambda: print("atexit ran"))
threading.Thread(target=lambda: (time.sleep(0.2), print("thread joined"))).start()
"""

_SERVER: list[WarmPython] = []


def server() -> WarmPython:
    """A fork server of this module's own, so these checks run whether or not the suite uses one."""
    if not _SERVER:
        _SERVER.append(WarmPython(checkout_env()))
        atexit.register(_SERVER[0].close)
    return _SERVER[0]


def warm(*args, env=None, cwd=None, timeout=300) -> subprocess.CompletedProcess:
    """``python *args`` in a child forked from the server."""
    argv, env = [str(arg) for arg in args], env or checkout_env()
    assert server().serves(argv, env)
    return server().run(argv, env=env, cwd=cwd, timeout=timeout)


def both(*args, **kwargs) -> tuple[subprocess.CompletedProcess, subprocess.CompletedProcess]:
    """``python *args`` forked from the server and in a new process."""
    return warm(*args, **kwargs), python_run(*args, **kwargs, fresh=True)


@pytest.mark.parametrize("mode", ["-c", "script", "-m"])
def test_code_sees_what_a_fresh_interpreter_sees(mode, tmp_path):
    (tmp_path / "probe.py").write_text(PROBE)  # `python -m probe` finds it in the working directory
    args = {"-c": ["-c", PROBE], "script": [tmp_path / "probe.py"], "-m": ["-m", "probe"]}[mode]
    warm, cold = both(*args, "one", "two", env=checkout_env(ADAMJAX_DISABLE_NATIVE="yes"), cwd=tmp_path)
    assert warm.returncode == cold.returncode == 0, (warm.stderr, cold.stderr)
    assert (warm.stdout, warm.stderr) == (cold.stdout, cold.stderr)
    assert warm.stdout.splitlines()[1:] == ["thread joined", "atexit ran"], warm.stdout
    assert '"marker": "yes"' in warm.stdout and f'"cwd": "{tmp_path}"' in warm.stdout
    assert '"one", "two"]' in warm.stdout and '"name": "__main__"' in warm.stdout


@pytest.mark.parametrize(
    "code", ["import sys; sys.exit(3)", "import sys; sys.exit('bad value')", "1 / 0", "raise SystemExit", "print(1)"]
)
def test_exit_status_output_and_traceback_equal_a_fresh_interpreters(code):
    warm, cold = both("-c", code)
    assert (warm.returncode, warm.stdout, warm.stderr) == (cold.returncode, cold.stdout, cold.stderr)


def test_jax_in_the_child_starts_its_backend_with_the_childs_flags():
    code = "import jax; print(jax.device_count(), jax.config.jax_platforms, jax.config.jax_enable_x64)"
    env = checkout_env(XLA_FLAGS="--xla_force_host_platform_device_count=3", JAX_PLATFORMS="cpu")
    warm, cold = both("-c", code, env=env)
    assert warm.stdout == cold.stdout == "3 cpu False\n", (warm.stdout, warm.stderr)


def test_a_variable_read_at_import_an_unknown_one_or_another_path_starts_a_new_interpreter(tmp_path):
    assert not server().serves(["-c", "pass"], checkout_env(SOME_LIBRARY_SETTING="1"))
    env = checkout_env(JAX_ENABLE_X64="1")
    assert not server().serves(["-c", "pass"], env)
    assert python_run("-c", "import jax; print(jax.config.jax_enable_x64)", env=env).stdout == "True\n"  # a new one
    env = checkout_env()
    env["PYTHONPATH"] = f"{tmp_path}:{env['PYTHONPATH']}"
    assert not server().serves(["-c", "pass"], env)


def test_a_timeout_ends_the_child_and_raises():
    with pytest.raises(subprocess.TimeoutExpired):
        warm("-c", "import time; time.sleep(60)", timeout=1)
    assert warm("-c", "print('next')").stdout == "next\n"  # the server goes on


def test_the_child_starts_with_the_servers_imports_and_a_new_process_without():
    code = "import sys; print('jax' in sys.modules)"
    assert warm("-c", code).stdout == "True\n"
    assert python_run("-c", code, fresh=True).stdout == "False\n"
