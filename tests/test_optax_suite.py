"""optax's own tests, run against adamjax's Adam family.

The optax wheel installs its ``*_test.py`` modules. The test here runs those
of :data:`MODULES` in one fresh pytest process with the ``optax_swap`` plugin
(``tests/suites/optax_swap.py``), which replaces optax's Adam-family
factories by adamjax's and keeps the tests that use them. Every kept test
must pass, except the few listed in :data:`EXPECTED`, each with its reason
(the README's conventions table lists them too) -- and those must still
fail, so the list cannot go stale. Each module is judged on its own tests.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import optax
import pytest
from compile_flags import xla_flags
from helpers import checkout_env

OPTAX = Path(optax.__file__).parent
SUITES = Path(__file__).parent / "suites"

# node-id pattern -> why adamjax differs on purpose.
EXPECTED = {
    r"transform_test\.py::TransformTest::test_rms_match_adam": (
        "tolerance 1e-6 is tighter than optax's own float32 bias-correction error; adamjax's is closer "
        "to float64 (test_dropin.py::test_bias_correction_is_closer_to_float64_than_optax)"
    ),
    r"_combining_test\.py::ExtraArgsTest::test_extra_args$": "it steps Python-int parameters, which adamjax refuses",
    r"alias_test\.py::AliasTest::test_explicit_dtype\d+ \(params_dtype='bfloat16', state_dtype=None, opt_name='adamw?'\)": (
        "bfloat16 parameters get float32 moments unless a dtype is given (a bfloat16 second moment stalls: "
        "tests/test_low_precision_defaults.py); optax keeps the parameters' dtype"
    ),
}

MODULES = [
    "_src/alias_test.py",
    "_src/transform_test.py",
    "tree_utils/_state_utils_test.py",
    "schedules/_inject_test.py",
    "transforms/_accumulation_test.py",
    "transforms/_combining_test.py",
    "_src/sharding_test.py",
    "_src/float64_test.py",
]


def _run(tmp_path: Path) -> tuple[dict[str, str], str]:
    """Runs every module of MODULES in one pytest process (one interpreter start instead of eight)."""
    report = tmp_path / "outcomes.json"
    env = checkout_env(ADAMJAX_SWAP_REPORT=str(report))
    env["PYTHONPATH"] = os.pathsep.join([str(SUITES), env["PYTHONPATH"]])
    # optax's sharding tests need several devices; simulated CPU devices run them instead of skipping.
    env["XLA_FLAGS"] = xla_flags("--xla_force_host_platform_device_count=8")
    # The run's compilation cache (tests/conftest.py): optax's parametrized cases compile many identical programs.
    env["JAX_COMPILATION_CACHE_DIR"] = os.environ["ADAMJAX_TEST_XLA_CACHE"]
    env["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
    env["JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES"] = "0"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            *(str(OPTAX / module) for module in MODULES),
            "-p",
            "optax_swap",
            "-q",
            "-p",
            "no:cacheprovider",
            "-p",
            "no:benchmark",
            "-W",
            "ignore::DeprecationWarning",
            "--rootdir",
            str(OPTAX),
        ],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert report.exists(), result.stdout[-3000:] + result.stderr[-3000:]
    return json.loads(report.read_text()), result.stdout


@pytest.mark.slow
def test_optax_suite_passes_with_adamjax(tmp_path):
    """Each module of MODULES: its Adam-family tests pass, but for EXPECTED, which still fail."""
    outcomes, log = _run(tmp_path)
    problems = []
    for module in MODULES:
        mine = {node: outcome for node, outcome in outcomes.items() if node.startswith(module + "::")}
        if not mine:
            problems.append(f"{module}: no optax test used the Adam family")
            continue
        failed_patterns = set()
        for node, outcome in mine.items():
            patterns = [pattern for pattern in EXPECTED if re.search(pattern, node)]
            if outcome == "failed" and patterns:
                failed_patterns.update(patterns)
            elif outcome != "passed":
                problems.append(f"{node}: {outcome}")
        # Every listed difference still shows in the module it belongs to, so the list cannot go stale.
        here = {p for p in EXPECTED if any(re.search(p, node) for node in mine)}
        problems += [f"{module}: listed as expected to fail but passed: {p}" for p in sorted(here - failed_patterns)]
    assert set(EXPECTED) <= {
        p for p in EXPECTED if any(re.search(p, node) for node in outcomes)
    }, "an EXPECTED entry matches no test"
    assert not problems, "\n".join(problems) + "\n" + log[-6000:]
