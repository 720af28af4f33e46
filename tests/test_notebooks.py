"""The explanatory notebook runs top to bottom on CPU and matches its generator."""

from __future__ import annotations

import re

from helpers import EXAMPLES, assert_notebook_matches_generator, execute_notebook

NOTEBOOK = EXAMPLES / "adam_explained.ipynb"


def test_notebook_matches_its_generator():
    assert_notebook_matches_generator(NOTEBOOK, "_make_adam_explained.py")


def test_notebook_executes_and_answers_the_seed_questions():
    text, images = execute_notebook(NOTEBOOK, timeout=120)
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
