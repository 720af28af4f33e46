"""The examples run as scripts and write real, drawn PNG figures."""

from __future__ import annotations

import json
import platform
import re
from pathlib import Path

import pytest
from helpers import EXAMPLES, assert_drawn_png, run_example, run_python

# tqdm's last line for a finished bar: 100%, the count, elapsed<left, the rate, then the loss.
FINISHED_BAR = r"100%\|[^|]*\| {n}/{n} \[[\d:]+<00:00, +[\d.]+(?:{unit}/s|s/{unit}), loss=[\d.e+-]+\]"


def test_quadratic_reproduces_the_tutorials_printed_weights(tmp_path):
    result = run_example("quadratic_from_scratch.py")
    out = result.stdout
    assert "converged after 746 iterations\n" in out
    assert "training loop converged after 746 iterations" in out
    assert re.search(FINISHED_BAR.format(n=1000, unit="step"), result.stderr), result.stderr[-300:]
    if platform.machine().lower() in ("x86_64", "amd64"):
        # With XLA's FMA contraction and (a/b)/c rewrite off, the tutorial's printed weights, digit for digit.
        assert "iteration 257: weight=0.9983202346112277\n" in out
        assert "iteration 280: weight=0.9994452529521384\n" in out
        assert "weights the tutorial printed (iterations 257-280) reproduced exactly: 24 of 24" in out
        assert "training loop agrees with the simulator bit for bit: True" in out
        assert "0 of 1000 weights differ from adamjax" in out
    else:
        weight = float(re.search(r"iteration 257: weight=([\d.]+)", out).group(1))
        assert weight == pytest.approx(0.9983202346112277, rel=1e-15)


@pytest.mark.slow
def test_simulator_figures(tmp_path):
    result = run_example("simulator_figures.py", "--out", tmp_path)
    names = [
        "swinging_suppressed", "bias_correction", "centered", "amsgrad", "power",
        "b2_sweep", "family", "sine", "swinging_windows", "quantization",
    ]  # fmt: skip
    assert sorted(p.stem for p in tmp_path.glob("*.png")) == sorted(names)
    for name in names:
        assert_drawn_png(tmp_path / f"{name}.png")
    assert "wrote 10 figures" in result.stdout


@pytest.mark.slow
def test_hyperparameter_sweep(tmp_path):
    result = run_example("hyperparameter_sweep.py", "--out", tmp_path, "--steps", "3000")
    assert_drawn_png(tmp_path / "hyperparameter_sweep.png")
    assert_drawn_png(tmp_path / "hyperparameter_sweep_traces.png")
    # 24 settings per signal, one table row per b2 value.
    assert result.stdout.count("24 settings x 3000 steps") == 3
    rows = [line for line in result.stdout.splitlines() if line.startswith("  0.99 ")]
    assert len(rows) == 3
    # swinging_soft (the second signal) settles near mean / RMS = 0.94 for p = 2.
    assert float(rows[1].split()[1]) == pytest.approx(0.94, abs=0.02)


SCRIPTS = sorted(p.name for p in EXAMPLES.glob("*.py") if 'if __name__ == "__main__":' in p.read_text())


def test_every_example_script_is_found():
    # The scripts a reader runs, and the notebook generators; _notebook.py is a module they import.
    assert {"quickstart.py", "mlp_both_apis.py", "_make_tpu_quickstart.py", "simulator_figures.py"} <= set(SCRIPTS)
    assert "_notebook.py" not in SCRIPTS


# One interpreter runs every script's --help (runpy, as ``python script --help`` would), so jax is imported once.
HELP_DRIVER = """
import contextlib, io, json, runpy, sys
helps = {}
for path in sys.argv[1:]:
    sys.argv = [path, "--help"]
    sys.path.insert(0, str(__import__("pathlib").Path(path).parent))
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        try:
            runpy.run_path(path, run_name="__main__")
            code = None
        except SystemExit as exit:
            code = exit.code
    helps[path] = (code, out.getvalue())
print(json.dumps(helps))
"""


def _written() -> dict[Path, int]:
    """The examples folder's entries and their modification times, but Python's bytecode cache."""
    return {p: p.stat().st_mtime_ns for p in EXAMPLES.iterdir() if p.name != "__pycache__"}


@pytest.fixture(scope="module")
def helps():
    before = _written()
    result = run_python("-c", HELP_DRIVER, *(str(EXAMPLES / script) for script in SCRIPTS))
    assert _written() == before, "--help wrote files"
    return {Path(path).name: value for path, value in json.loads(result.stdout.splitlines()[-1]).items()}


@pytest.mark.parametrize("script", SCRIPTS)
def test_example_help_shows_every_option_with_its_default(script, helps):
    code, text = helps[script]
    assert code in (0, None) and text.startswith("usage: "), (code, text)
    # Every option that takes a value shows its default.
    options = re.findall(r"^  (--[\w-]+) ([A-Z_]+|\{[^}]+\})", text, re.M)
    assert options, text
    for option, _ in options:
        block = text.split(f"  {option} ", 1)[1].split("\n  --", 1)[0]
        assert "(default:" in block, f"{script} {option}: {block!r}"
