"""Every ``>>>`` example in the package runs, and shows what it says it shows.

The examples run in a fresh interpreter with JAX's default settings (no x64,
standard promotion), as a reader would paste them; one subprocess runs every
module, and each failing module is reported with its failures.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from helpers import python_run

ROOT = Path(__file__).resolve().parents[1]
MODULES = sorted(p.stem for p in (ROOT / "adamjax").glob("*.py") if p.stem != "__main__")

RUNNER = r"""
import doctest, importlib, json, sys

flags = doctest.NORMALIZE_WHITESPACE | doctest.ELLIPSIS
results = {}
for stem in sys.argv[1:]:
    module = importlib.import_module("adamjax" if stem == "__init__" else f"adamjax.{stem}")
    finder, runner = doctest.DocTestFinder(), doctest.DocTestRunner(optionflags=flags)
    tests = [t for t in finder.find(module) if t.examples]
    failures = []
    for test in tests:
        runner.run(test, out=failures.append, clear_globs=True)
    results[stem] = {
        "examples": sum(len(t.examples) for t in tests),
        "attempted": runner.tries,
        "failed": runner.failures,
        "report": "".join(failures),
    }
print("RESULTS" + json.dumps(results))
"""


def test_every_module_is_examined():
    assert "_core" in MODULES and "optimizers" in MODULES and "__init__" in MODULES


def test_every_docstring_example_passes(tmp_path):
    # One interpreter for every module (importing JAX dominates); each module reported on its own below.
    result = python_run("-c", RUNNER, *MODULES, cwd=tmp_path, timeout=600)  # examples that write files write them here
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads(result.stdout.split("RESULTS", 1)[1])
    problems = {}
    for module in MODULES:
        found = results[module]
        source = (ROOT / "adamjax" / f"{module}.py").read_text()
        # Every `>>>` line of the file is an example doctest found (none hides in an unreachable docstring).
        expected = len(re.findall(r"^\s*>>> ", source, flags=re.M))
        if found["examples"] != expected:
            problems[module] = f"{found['examples']} examples found, {expected} `>>>` lines in the file"
        elif found["failed"]:
            problems[module] = found["report"]
    assert not problems, "\n".join(f"--- adamjax/{m}.py\n{text}" for m, text in problems.items())
