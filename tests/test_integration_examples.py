"""adamjax with flax nnx, in a plain-JAX loop with the triple API, and in the TPU/GPU quickstart notebook."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import nbclient
import nbformat
import numpy as np
from IPython.core.inputtransformer2 import TransformerManager
from matplotlib.image import imread

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
NOTEBOOK = EXAMPLES / "tpu_quickstart.ipynb"


def with_this_checkout_importable(env: dict[str, str]) -> dict[str, str]:
    """``env`` with the repository first on PYTHONPATH and JAX's settings at their defaults."""
    env = {k: v for k, v in env.items() if not k.startswith("JAX_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


def run_example(name: str, *args: str) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / name), *args],
        env=with_this_checkout_importable(dict(os.environ)),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    return result


def assert_drawn_png(path: Path, min_ink: float = 0.03) -> None:
    image = imread(path)[..., :3]
    assert image.shape[0] >= 300 and image.shape[1] >= 500, image.shape
    ink = float(np.mean(np.any(image < 0.9, axis=-1)))
    assert ink > min_ink, f"only {ink:.1%} of {path.name} is drawn"


def test_flax_nnx_model_learns_the_spirals_with_nnx_optimizer_and_adamjax(tmp_path):
    result = run_example("flax_nnx.py", "--out", str(tmp_path), "--steps", "200")
    first, last, first_accuracy, last_accuracy = map(
        float, re.search(r"loss ([\d.]+) -> ([\d.]+), accuracy ([\d.]+) -> ([\d.]+)", result.stdout).groups()
    )
    assert first > 0.5 and last < first / 20, (first, last)
    assert first_accuracy < 0.7 and last_accuracy > 0.95, (first_accuracy, last_accuracy)
    assert "100% 200/200" in result.stderr  # the progress bar
    assert_drawn_png(tmp_path / "flax_nnx_loss.png")


def test_plain_jax_loop_with_the_triple_api_fits_the_curve(tmp_path):
    result = run_example("jax_training_loop.py", "--out", str(tmp_path), "--epochs", "12")
    assert "192 steps in 12 epochs of 16 minibatches of 32" in result.stdout
    first, last = map(float, re.search(r"validation loss ([\d.]+) -> ([\d.]+)", result.stdout).groups())
    assert first > 0.5 and last < 0.05, (first, last)  # the noise alone gives 0.01
    assert "100% 12/12" in result.stderr
    assert_drawn_png(tmp_path / "jax_training_loop_loss.png")


def load_generator():
    spec = importlib.util.spec_from_file_location("make_tpu_quickstart", EXAMPLES / "_make_tpu_quickstart.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_quickstart_notebook_matches_its_generator_and_installs_only_when_missing():
    committed = nbformat.read(NOTEBOOK, as_version=4)
    built = load_generator().build()
    assert [(c.cell_type, c.source) for c in committed.cells] == [(c.cell_type, c.source) for c in built.cells]
    assert all(not c.get("outputs") for c in committed.cells if c.cell_type == "code")
    install = next(c.source for c in committed.cells if c.cell_type == "code")
    assert re.search(r'if importlib\.util\.find_spec\("adamjax"\) is None:\n +%pip install', install), install
    # IPython turns the indented magic into a call, with `{ADAMJAX}` expanded when it runs.
    python = TransformerManager().transform_cell(install)
    assert "    get_ipython().run_line_magic('pip', 'install --quiet {ADAMJAX}')" in python, python


def test_quickstart_notebook_runs_on_cpu_trains_and_sweeps(monkeypatch):
    for key, value in with_this_checkout_importable(dict(os.environ)).items():
        monkeypatch.setenv(key, value)  # the kernel inherits this environment
    for key in [k for k in os.environ if k.startswith("JAX_")]:
        monkeypatch.delenv(key)
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(
        notebook, timeout=180, kernel_name="python3", resources={"metadata": {"path": str(EXAMPLES)}}
    )
    client.execute()  # raises CellExecutionError on the first failing cell

    outputs = [output for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs]
    text = "".join(output.get("text", "") for output in outputs if output.output_type == "stream")
    assert "backend: cpu" in text
    assert not re.search(r"(?i)successfully installed|collecting adamjax", text)  # the install was skipped
    first, last = (float(re.search(rf"step +{t}  loss ([\d.e+-]+)", text).group(1)) for t in (1, 300))
    assert last < first / 100, (first, last)
    sweep = [tuple(map(float, m)) for m in re.findall(r"learning rate ([\d.e+-]+)  final loss ([\d.e+-]+)", text)]
    assert len(sweep) == 9
    final = dict(sweep)
    # Too small a learning rate has not converged, too large a one stalls; the best lies between.
    best = float(re.search(r"best learning rate: ([\d.e+-]+)", text).group(1))
    assert 3e-3 <= best <= 0.3 and final[best] == min(final.values()), sweep
    assert final[1e-4] > 100 * final[best] and final[1.0] > 100 * final[best], sweep
    images = [output for output in outputs if "image/png" in output.get("data", {})]
    assert len(images) == 2, "the notebook's figures were not displayed"
