"""The explanatory notebook runs top to bottom on CPU and matches its generator."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import nbclient
import nbformat

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
NOTEBOOK = EXAMPLES / "adam_explained.ipynb"


def load_generator():
    spec = importlib.util.spec_from_file_location("make_adam_explained", EXAMPLES / "_make_adam_explained.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_notebook_matches_its_generator():
    committed = nbformat.read(NOTEBOOK, as_version=4)
    built = load_generator().build()
    assert [(c.cell_type, c.source) for c in committed.cells] == [(c.cell_type, c.source) for c in built.cells]
    assert all(not c.get("outputs") for c in committed.cells if c.cell_type == "code")


def test_notebook_executes_and_answers_the_seed_questions():
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(
        notebook, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(EXAMPLES)}}
    )
    client.execute()  # raises CellExecutionError on the first failing cell

    outputs = [output for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs]
    text = "".join(output.get("text", "") for output in outputs if output.output_type == "stream")
    images = [output for output in outputs if "image/png" in output.get("data", {})]
    assert len(images) >= 4, "the notebook's figures were not displayed"
    # Section 1: the step settles near mean / RMS of the gradient.
    for name in ("swinging", "swinging_soft"):
        ratio, step = map(
            float, re.search(rf"{name} +mean g.*mean / RMS = ([\d.]+) +mean step = ([\d.-]+)", text).groups()
        )
        assert abs(ratio - step) < 0.02, (name, ratio, step)
    # Section 2: the first corrected step is 1, the uncorrected one 0.1 / sqrt(0.001).
    assert re.search(r"t=    1  corrected step 1\.0000   uncorrected step 3\.162", text)
    # Section 3: the centered moment takes much larger steps on the consistent noisy line.
    adam_step, centered_step = map(
        float, re.search(r"noisy_line +mean step: Adam +([\d.]+) +centered +([\d.]+)", text).groups()
    )
    assert centered_step > 5 * adam_step
