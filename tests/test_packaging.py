"""Packaging: the version, the build backend, the kernel's build record, and a built wheel that works.

The slow test builds the sdist and the wheel with ``python -m build`` from a
clean copy of the checkout, installs the wheel into a fresh virtualenv and
runs it there, kernel included.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import jax
import jaxlib
import pytest
from helpers import checkout_env, python_run

import adamjax

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = (ROOT / "pyproject.toml").read_text()


def _load_backend():
    spec = importlib.util.spec_from_file_location("adamjax_build_backend", ROOT / "build_support" / "backend.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run(*args, env=None, cwd=None, timeout=600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(a) for a in args], env=env or checkout_env(), cwd=cwd, capture_output=True, text=True, timeout=timeout
    )


def test_the_version_is_written_once():
    assert re.fullmatch(r"\d+\.\d+\.\d+", adamjax.__version__)
    assert 'dynamic = ["version"]' in PYPROJECT
    assert 'version = { attr = "adamjax.__version__" }' in PYPROJECT
    assert not re.search(r"^version = \"", PYPROJECT, flags=re.M)  # no literal version in [project]
    assert f"## [{adamjax.__version__}]" in (ROOT / "CHANGELOG.md").read_text()


def test_declared_dependencies_are_imported_and_chex_is_gone():
    dependencies = re.search(r"^dependencies = \[(.*?)\]", PYPROJECT, flags=re.M | re.S).group(1)
    names = set(re.findall(r'"([a-z-]+)[><=]', dependencies))
    assert names == {"jax", "optax", "numpy"}, names
    sources = "\n".join(p.read_text() for p in (ROOT / "adamjax").glob("*.py"))
    for name in names:
        assert re.search(rf"^\s*(import|from) {name}\b", sources, flags=re.M), name
    assert not re.search(r"^\s*(import|from) chex\b", sources, flags=re.M)


def test_the_floors_script_installs_the_declared_floors():
    """.ci/floors.sh pins each floor pyproject.toml declares (jax's also for jaxlib), so its run shows them true."""
    pinned = dict(re.findall(r'"([a-z-]+)==([\d.]+)"', (ROOT / ".ci" / "floors.sh").read_text()))
    declared = dict(re.findall(r'"(jax|optax|flax|orbax-checkpoint)>=([\d.]+)"', PYPROJECT))
    assert set(declared) == {"jax", "optax", "flax", "orbax-checkpoint"}, declared
    for name, floor in declared.items():
        assert [int(p) for p in pinned[name].split(".")[: floor.count(".") + 1]] == [int(p) for p in floor.split(".")]
    assert pinned["jaxlib"] == pinned["jax"]


def test_the_build_backend_asks_for_no_jax_where_jax_is_installed_and_for_the_floor_where_not(monkeypatch):
    backend = _load_backend()
    # setuptools runs setup.py in this process, and distutils adds PLAT to os.environ; the environment is put back,
    # so that later subprocesses see the suite's (a variable of its own sends them to a new interpreter).
    environment = dict(os.environ)
    try:
        for requires in (backend.get_requires_for_build_wheel(), backend.get_requires_for_build_editable()):
            assert not [r for r in requires if r.startswith(("jax", "jaxlib"))], requires  # the installed jax
    finally:
        os.environ.clear()
        os.environ.update(environment)
    # Where pip installs into an environment without jax, the floor (which pip resolves to the newest).
    monkeypatch.setattr(backend, "_PROBE", "import no_such_module_here")
    assert backend._jax_requirement() == [backend._FLOOR]
    assert f'"{backend._FLOOR}"' in PYPROJECT  # the same floor as the package's dependency


def test_a_build_without_jax_of_its_own_takes_the_headers_of_the_jax_installed_beside(tmp_path):
    # pip's isolated build environment, as the backend leaves it: `import jax` fails there.
    shadow = tmp_path / "isolated"
    shadow.mkdir()
    (shadow / "jax.py").write_text("raise ImportError('no jax in the build environment')\n")
    result = _build_ext(tmp_path, CC="false", CXX="false", PYTHONPATH=str(shadow))  # headers only, no compiler
    assert result.returncode == 0, result.stderr[-2000:]
    record = json.loads((tmp_path / "lib" / "adamjax" / "_kernel_build.json").read_text())
    assert (record["jax"], record["jaxlib"]) == (jax.__version__, jaxlib.__version__), record
    assert record["reason"].startswith("compiling adamjax/_csrc/adam_kernel.cc failed"), record  # it got as far


def _build_ext(tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    src = tmp_path / "src"
    shutil.copytree(ROOT / "adamjax" / "_csrc", src / "adamjax" / "_csrc")
    shutil.copy(ROOT / "setup.py", src / "setup.py")
    build_env = checkout_env(drop=("JAX_", "ADAMJAX_"), **env)
    return _run(
        sys.executable, "setup.py", "build_ext", "--build-lib", tmp_path / "lib", "--build-temp", tmp_path / "tmp",
        env=build_env, cwd=src,
    )  # fmt: skip


def test_a_failed_kernel_build_installs_says_why_and_native_status_repeats_it(tmp_path):
    result = _build_ext(tmp_path, CC="false", CXX="false")  # a "compiler" that always fails
    assert result.returncode == 0, result.stderr[-2000:]
    assert "adamjax: the native kernel was not built: compiling adamjax/_csrc/adam_kernel.cc failed" in result.stderr
    library_dir = tmp_path / "lib" / "adamjax"
    assert not list(library_dir.glob("_adam_kernel*.so"))
    record = json.loads((library_dir / "_kernel_build.json").read_text())
    assert record["built"] is False and "compiling" in record["reason"]
    # adamjax, finding no library and this record, gives the recorded reason.
    probe = (
        "import adamjax, adamjax._native as native, adamjax._build_record as record;"
        f"record._HERE = {str(library_dir)!r}; native._library_path = lambda: None;"
        "print(adamjax.native_status())"
    )
    status = python_run("-c", probe, env=checkout_env(drop=("JAX_", "ADAMJAX_"))).stdout
    assert status.startswith("the native kernel was not built: compiling adamjax/_csrc/adam_kernel.cc failed"), status


def test_a_failed_kernel_build_fails_the_install_when_the_kernel_is_required(tmp_path):
    result = _build_ext(tmp_path, CC="false", CXX="false", ADAMJAX_REQUIRE_NATIVE="1")
    assert result.returncode != 0
    assert "ADAMJAX_REQUIRE_NATIVE is set" in result.stderr


def test_a_kernel_built_for_a_newer_ffi_api_is_refused_before_it_is_registered(tmp_path):
    from adamjax import _build_record

    major, minor = _build_record.runtime_ffi_api()
    (tmp_path / "_kernel_build.json").write_text(json.dumps({"built": True, "jaxlib": "99.0", "ffi_api": [major, 999]}))
    probe = (
        "import adamjax, adamjax._native as native, adamjax._build_record as record;"
        f"record._HERE = {str(tmp_path)!r}; print(adamjax.native_status())"
    )
    status = python_run("-c", probe, env=checkout_env(drop=("JAX_", "ADAMJAX_"))).stdout.strip()
    assert f"built against jaxlib 99.0 (XLA FFI API {major}.999)" in status, status
    assert f"jaxlib {jaxlib.__version__} (FFI API {major}.{minor}) cannot load" in status
    # An older minor version of the same major one loads.
    (tmp_path / "_kernel_build.json").write_text(json.dumps({"built": True, "ffi_api": [major, max(minor - 1, 0)]}))
    status = python_run("-c", probe, env=checkout_env(drop=("JAX_", "ADAMJAX_"))).stdout.strip()
    assert status == "available"


@pytest.mark.parametrize("require", [False, True], ids=["absent-skips", "required-fails"])
def test_kernel_tests_skip_with_the_reason_or_fail_when_the_kernel_is_required(require):
    env = checkout_env(drop=("JAX_", "ADAMJAX_"), ADAMJAX_DISABLE_NATIVE="1")
    if require:
        env["ADAMJAX_REQUIRE_NATIVE"] = "1"
    test = "tests/test_fast_path.py::test_the_kernel_is_built_and_loaded"
    result = python_run("-m", "pytest", "-q", "-rsf", "-p", "no:cacheprovider", test, env=env, cwd=ROOT)
    if require:
        assert result.returncode == 1 and "1 error" in result.stdout, result.stdout  # failed in setup
        assert "ADAMJAX_REQUIRE_NATIVE is set but the native kernel is absent" in result.stdout
    else:
        assert result.returncode == 0 and "1 skipped" in result.stdout, result.stdout
        assert "the native kernel is absent: ADAMJAX_DISABLE_NATIVE is set" in result.stdout


SMOKE = """
import os, sys
import jax, jax.numpy as jnp, numpy as np, optax
import adamjax

assert adamjax.__file__.startswith(sys.prefix), adamjax.__file__  # the wheel's copy, not the checkout
assert adamjax.native_status() == "available", adamjax.native_status()
params = {"w": jnp.linspace(-1.0, 1.0, 1000, dtype=jnp.float32)}
grads = {"w": jnp.cos(jnp.arange(1000, dtype=jnp.float32))}
tx, reference = adamjax.adamw(1e-2, weight_decay=0.1), optax.adamw(1e-2, weight_decay=0.1)
step = jax.jit(lambda g, s, p: adamjax.apply_step(tx, g, s, p))
assert "adamjax_adam_step" in step.lower(grads, tx.init(params), params).compile().as_text()
new, _ = step(grads, tx.init(params), params)
updates, _ = reference.update(grads, reference.init(params), params)
np.testing.assert_allclose(new["w"], optax.apply_updates(params, updates)["w"], rtol=1e-6, atol=1e-7)
print("smoke ok", adamjax.__version__, adamjax.__file__, "jax", jax.__version__)
"""


@pytest.mark.slow
def test_python_m_build_makes_an_sdist_and_a_wheel_that_installs_and_runs_the_kernel(tmp_path):
    # A clean copy of what git would ship: no compiled library, no build record.
    src = tmp_path / "src"
    listed = _run("git", "ls-files", "-z", "--cached", "--others", "--exclude-standard", cwd=ROOT)
    if listed.returncode == 0:
        for name in filter(None, listed.stdout.split("\0")):
            if (ROOT / name).is_file():
                (src / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(ROOT / name, src / name)
    else:  # a copy without git (.ci/floors.sh makes one): everything but what builds leave behind
        leftovers = shutil.ignore_patterns("*.so", "_kernel_build.json", "build", "dist", "*.egg-info", "__pycache__")
        shutil.copytree(ROOT, src, ignore=leftovers)
    env = checkout_env(drop=("JAX_", "ADAMJAX_"), ADAMJAX_REQUIRE_NATIVE="1")
    env.pop("PYTHONPATH")
    # --no-isolation: build against this environment's jax, and download nothing.
    built = _run(sys.executable, "-m", "build", "--no-isolation", "--outdir", tmp_path / "dist", src, env=env)
    assert built.returncode == 0, built.stderr[-3000:]

    version = adamjax.__version__
    (sdist,) = (tmp_path / "dist").glob(f"adamjax-{version}.tar.gz")
    with tarfile.open(sdist) as archive:
        sdist_names = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    kernel = ("adam_kernel.cc", "adam_loops_baseline.cc", "adam_loops_avx2.cc", "quantized_loops_baseline.cc",
              "quantized_loops_avx2.cc", "kernel_common.h", "loop_entry_points.h", "avx2_unit.h",
              "dtypes_impl.h", "adam_kernel_impl.h", "quantized_kernel_impl.h")  # fmt: skip
    for needed in ("setup.py", "pyproject.toml", "build_support/backend.py", "LICENSE", "CHANGELOG.md",
                   "adamjax/py.typed", *(f"adamjax/_csrc/{name}" for name in kernel)):  # fmt: skip
        assert needed in sdist_names, needed
    assert not [n for n in sdist_names if n.endswith(".so") or n.endswith("_kernel_build.json")]

    (wheel,) = (tmp_path / "dist").glob(f"adamjax-{version}-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        wheel_names = set(archive.namelist())
        record = json.loads(archive.read("adamjax/_kernel_build.json"))
        metadata = archive.read(f"adamjax-{version}.dist-info/METADATA").decode()
    assert [n for n in wheel_names if re.fullmatch(r"adamjax/_adam_kernel[^/]*\.so", n)], wheel_names
    assert {"adamjax/py.typed", f"adamjax-{version}.dist-info/licenses/LICENSE"} <= wheel_names
    assert record["built"] is True and record["jaxlib"] == jaxlib.__version__
    assert "Requires-Dist: jax>=0.10.1" in metadata and "chex" not in metadata

    # A fresh virtualenv that sees this environment's packages (jax, and the pip that installs into it), whether or
    # not this environment is itself a virtualenv (.ci/floors.sh runs the suite in one), and no pip of its own
    # (ensurepip took 3 s). A path file adds them after the venv's own site-packages, without running their path
    # files, so the checkout's editable install stays out of it.
    venv = tmp_path / "venv"
    assert _run(sys.executable, "-m", "venv", "--without-pip", venv).returncode == 0
    python = venv / "bin" / "python"
    purelib = _run(python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))").stdout.strip()
    outer = [p for p in sys.path if p.endswith(("site-packages", "dist-packages"))]
    (Path(purelib) / "_test_environment.pth").write_text("\n".join(outer) + "\n")
    installed = _run(python, "-m", "pip", "install", "--no-deps", "--no-index", wheel, env=env)
    assert installed.returncode == 0, installed.stderr[-2000:]
    smoke = _run(python, "-c", SMOKE, env=env, cwd=tmp_path)
    assert smoke.returncode == 0 and f"smoke ok {version}" in smoke.stdout, smoke.stderr[-3000:]
    assert smoke.stdout.split()[-1] == jax.__version__, smoke.stdout  # the jax the wheel was built against
    cli = _run(venv / "bin" / "adamjax", "--help", env=env, cwd=tmp_path)
    assert cli.returncode == 0 and "simulate" in cli.stdout, cli.stderr
    assert os.path.exists(venv / "lib") and "site-packages" in smoke.stdout, smoke.stdout
