"""adamjax with flax nnx, in a plain-JAX loop with the triple API, and in the TPU/GPU quickstart notebook."""

from __future__ import annotations

import re

import nbformat
import pytest
from helpers import (
    EXAMPLES,
    assert_drawn_png,
    assert_notebook_matches_generator,
    checkout_environment,
    execute_notebook,
    run_example,
)
from IPython.core.inputtransformer2 import TransformerManager
from test_examples import FINISHED_BAR

NOTEBOOK = EXAMPLES / "tpu_quickstart.ipynb"


@pytest.mark.slow
def test_flax_nnx_model_learns_the_spirals_with_nnx_optimizer_and_adamjax(tmp_path):
    result = run_example("flax_nnx.py", "--out", str(tmp_path), "--steps", "200")
    first, last, first_accuracy, last_accuracy = map(
        float, re.search(r"loss ([\d.]+) -> ([\d.]+), accuracy ([\d.]+) -> ([\d.]+)", result.stdout).groups()
    )
    assert first > 0.5 and last < first / 20, (first, last)
    assert first_accuracy < 0.7 and last_accuracy > 0.95, (first_accuracy, last_accuracy)
    assert re.search(FINISHED_BAR.format(n=200, unit="step"), result.stderr), result.stderr[-300:]
    assert_drawn_png(tmp_path / "flax_nnx_loss.png")


def test_plain_jax_loop_with_the_triple_api_fits_the_curve(tmp_path):
    result = run_example("jax_training_loop.py", "--out", str(tmp_path), "--epochs", "12")
    assert "192 steps in 12 epochs of 16 minibatches of 32" in result.stdout
    first, last = map(float, re.search(r"validation loss ([\d.]+) -> ([\d.]+)", result.stdout).groups())
    assert first > 0.5 and last < 0.05, (first, last)  # the noise alone gives 0.01
    assert re.search(FINISHED_BAR.format(n=12, unit="epoch"), result.stderr), result.stderr[-300:]
    assert_drawn_png(tmp_path / "jax_training_loop_loss.png")


def _timings_masked(text: str) -> str:
    """The notebook's printed text without what varies between machines: timings and library versions."""
    text = re.sub(r"in [\d.]+ s\b", "in <t> s", text)
    return re.sub(r"\b(adamjax|jax|jaxlib|optax) \d+\.\d+\.\d+", r"\1 <version>", text)


def _jax_version(text: str) -> str:
    return re.search(r"\bjax (\d+\.\d+\.\d+)", text).group(1)


def _numbers_masked(text: str) -> str:
    """:func:`_timings_masked`, and every printed loss too (``<x>``)."""
    return re.sub(r"loss [\d.e+-]+", "loss <x>", _timings_masked(text))


def test_quickstart_notebook_matches_its_generator_and_installs_only_when_missing():
    committed = assert_notebook_matches_generator(NOTEBOOK, "_make_tpu_quickstart.py")
    install = next(c.source for c in committed.cells if c.cell_type == "code")
    assert re.search(r'if importlib\.util\.find_spec\("adamjax"\) is None:\n', install), install
    # The address's placeholder stops the cell with a message saying what to set, instead of a failing pip.
    assert re.search(r'if "OWNER" in ADAMJAX:\n +raise RuntimeError\("set ADAMJAX to', install), install
    # IPython turns the indented magic into a call, with `{ADAMJAX}` expanded, inside quotes, when it runs.
    python = TransformerManager().transform_cell(install)
    assert """    get_ipython().run_line_magic('pip', 'install --quiet "{ADAMJAX}"')""" in python, python
    # What it installs is the pyproject's repository, as pip's direct-reference requirement.
    repository = re.search(r'^Repository = "(.+)"$', (EXAMPLES.parent / "pyproject.toml").read_text(), re.M).group(1)
    assert f'ADAMJAX = "adamjax @ git+{repository}"' in install, install


@pytest.mark.slow
def test_quickstart_notebook_runs_on_cpu_trains_and_sweeps(monkeypatch):
    with checkout_environment(monkeypatch):  # the kernel inherits this environment
        text, images = execute_notebook(NOTEBOOK, timeout=180)
    # The committed outputs are this run's, timings aside: rerun the generator if this fails.
    committed = nbformat.read(NOTEBOOK, as_version=4)
    committed_text = "".join(
        o.get("text", "")
        for c in committed.cells
        if c.cell_type == "code"
        for o in c.outputs
        if o.output_type == "stream"
    )
    if _jax_version(committed_text) == _jax_version(text):
        assert _timings_masked(committed_text) == _timings_masked(text), "the committed outputs are stale"
    else:  # another XLA: the sweep's tiny final losses differ in their digits; the text around them may not
        assert _numbers_masked(committed_text) == _numbers_masked(text), "the committed outputs are stale"
    assert sum("image/png" in o.get("data", {}) for c in committed.cells for o in c.get("outputs", [])) == len(images)
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
    assert len(images) == 2, "the notebook's figures were not displayed"
