"""The explanatory notebook is committed executed, its outputs current, and it answers its questions."""

from __future__ import annotations

import re

import nbformat
import pytest
from helpers import EXAMPLES, checkout_environment, execute_notebook, load_generator

NOTEBOOK = EXAMPLES / "adam_explained.ipynb"


def outputs(node):
    """Per code cell: the printed text and the number of figures."""
    found = []
    for cell in node.cells:
        if cell.cell_type != "code":
            continue
        text = "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")
        images = sum("image/png" in o.get("data", {}) for o in cell.outputs)
        found.append((text, images))
    return found


def test_notebook_is_committed_with_its_generators_cells_and_outputs():
    committed = nbformat.read(NOTEBOOK, as_version=4)
    built = load_generator("_make_adam_explained.py").build()
    assert [(c.cell_type, c.source) for c in committed.cells] == [(c.cell_type, c.source) for c in built.cells]
    code = [c for c in committed.cells if c.cell_type == "code"]
    assert all(c.execution_count is not None for c in code), "the notebook was committed without running it"
    assert not any(o.output_type == "error" for c in code for o in c.outputs)
    assert sum(images for _, images in outputs(committed)) >= 7


@pytest.mark.slow
def test_committed_outputs_are_current_and_answer_the_questions(monkeypatch):
    committed = nbformat.read(NOTEBOOK, as_version=4)
    with checkout_environment(monkeypatch):
        text, images = execute_notebook(NOTEBOOK, timeout=300)
    # Same numbers and as many figures as committed: rerun the generator if this fails.
    assert "".join(t for t, _ in outputs(committed)) == text, "the committed outputs are stale"
    assert sum(n for _, n in outputs(committed)) == len(images)

    # Section 1: the step settles near mean / RMS of the gradient.
    for name in ("swinging", "swinging_soft"):
        ratio, step = map(
            float, re.search(rf"{name} +mean g.*mean / RMS = ([\d.]+) +mean step = ([\d.-]+)", text).groups()
        )
        assert abs(ratio - step) < 0.02, (name, ratio, step)
    # Section 2: the first corrected step is 1, the uncorrected one 0.1 / sqrt(0.001).
    assert re.search(r"t=    1  corrected step 1\.0000   uncorrected step 3\.162", text)
    # Section 3: centering multiplies the consistent line's steps by about ten, the swinging ones' by two or three,
    # as the text says.
    steps = {
        name: tuple(map(float, re.search(rf"{name} +mean step: Adam +([\d.]+) +centered +([\d.]+)", text).groups()))
        for name in ("noisy_line", "swinging_soft", "swinging")
    }
    ratio = {name: centered / adam for name, (adam, centered) in steps.items()}
    assert ratio["noisy_line"] > 8
    assert 1.5 < ratio["swinging"] < 2.5 and 2.5 < ratio["swinging_soft"] < 4
    source = "".join(c.source for c in committed.cells)
    assert "factor of two (`swinging`) to three" in source
    # Section 4: the running maximum stays above the decayed moment, and AMSGrad's step is smaller.
    v, v_max, adam_step, ams_step = map(
        float,
        re.search(r"v = ([\d.]+) +running max = ([\d.]+) +step Adam ([\d.]+) +AMSGrad ([\d.]+)", text).groups(),
    )
    assert v_max > 1.5 * v and ams_step < adam_step
    assert "seed" not in source.replace("seed=1", "").lower()
