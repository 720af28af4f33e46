"""The benchmark suite runs and prints its tables (timings are never asserted: they depend on the machine)."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import numpy as np
import pytest
from compile_flags import smoke_env
from helpers import checkout_env, computed_once, python_run

SUITE = Path(__file__).resolve().parents[1] / "benchmarks" / "suite.py"
HAS_TORCH = importlib.util.find_spec("torch") is not None


@pytest.fixture(scope="module")
def quick_output():
    def run(out: Path) -> None:
        result = python_run(
            SUITE, "--quick", "--scenario", "large-leaf", "--large-log2", "16", "--scenario", "eager-loop", timeout=600
        )
        assert result.returncode == 0, result.stderr
        (out / "stdout.txt").write_text(result.stdout)

    return (computed_once("benchmark-suite-quick", run) / "stdout.txt").read_text()


def cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def table_rows(text: str, *columns: str) -> list[list[str]]:
    """The body rows of the first Markdown table whose header begins with ``columns``."""
    lines = text.splitlines()
    start = next(
        i for i, line in enumerate(lines) if line.startswith("|") and cells(line)[: len(columns)] == list(columns)
    )
    assert re.fullmatch(r"\|[-:|]+\|", lines[start + 1]), lines[start + 1]
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append(cells(line))
    return rows


def test_large_leaf_tables_have_every_library(quick_output):
    assert "## One large leaf (`large-leaf`)" in quick_output
    assert "adamjax native kernel:" in quick_output
    step_rows = table_rows(quick_output, "variant (precomputed gradients)", "median ms")
    names = [row[0] for row in step_rows]
    expected = [
        "optax.adam",
        "adamjax.apply_step",
        "adamjax.apply_step, bf16 state",
        "adamjax.adam update + apply_updates",
        "adamjax flat triple",
        "adamjax flat triple, tree gradients",
        "example_libraries.adam",
        "probe: p,m,v += f(g) (read 4, write 3)",
        "probe: a = 0.5 a + b (read 2, write 1)",
    ]
    if HAS_TORCH:
        expected[7:7] = ["torch Adam foreach", "torch Adam fused"]
    else:
        assert "torch is not installed; its rows are skipped" in quick_output
    assert names == expected
    for row in step_rows:
        assert len(row) == 6 and float(row[1].replace(",", "")) > 0  # median ms
    assert next(row for row in step_rows if row[0] == "optax.adam")[3] == "1.00x"
    assert max(float(row[5]) for row in step_rows) == 1.0  # the roof is the best rate of the run


def test_memory_and_state_tables(quick_output):
    memory = {row[0]: row for row in table_rows(quick_output, "variant", "state bytes/param")}
    assert memory["optax.adam"][1] == "8.00"
    assert memory["adamjax.apply_step, bf16 state"][1] == "4.00"
    assert float(memory["adamjax.apply_step"][5]) == pytest.approx(1.0, abs=0.01)  # peak / needed
    dtypes = table_rows(quick_output, "mu_dtype")
    assert [row[2] for row in dtypes] == ["8.00", "6.00", "6.00", "4.00"]


def test_eager_loop_and_targets(quick_output):
    eager = table_rows(quick_output, "variant", "median us/step")
    assert [row[0] for row in eager] == [
        "adamjax.optimizers.adam, plain Python loop",
        "example_libraries.adam, plain Python loop",
        "example_libraries.adam + user jit",
    ]
    targets = table_rows(quick_output, "target")
    names = [row[0] for row in targets]
    assert "eager triple loop vs user-jitted" in names
    assert "one large leaf, precomputed gradients: adamjax.apply_step vs bandwidth roof" in names
    assert (
        "one large array: apply_step(clip + adamjax.adamw(schedule)) vs bandwidth roof past the measured gradient"
        in names
    )
    assert "one 2^16 array: adamjax.adam: update + apply_updates first call" in names
    assert "one 2^16 array: optimizers.adam triple, user jit step time" in names
    assert "bfloat16 mu and nu halve state memory" in names
    assert all(row[3] in ("PASS", "MISS") for row in targets)


REALISTIC_PATHS = [
    ("optax.adam", "itself"),
    ("optax.adamw", "itself"),
    ("optax clip + adamw(schedule)", "itself"),
    ("optax.inject_hyperparams(optax.adamw)", "itself"),
    ("adamjax.adam: update + apply_updates", "optax.adam"),
    ("adamjax.adamw: update + apply_updates", "optax.adamw"),
    ("adamjax clip + adamw(schedule): update + apply_updates", "optax clip + adamw(schedule)"),
    ("apply_step(adamjax.adamw)", "optax.adamw"),
    ("apply_step(clip + adamjax.adamw(schedule))", "optax clip + adamw(schedule)"),
    ("apply_step(inject_hyperparams(adamjax.adamw))", "optax.inject_hyperparams(optax.adamw)"),
    ("optimizers.adam triple, user jit", "optax.adam"),
    ("flat triple, flat gradients", "optax.adam"),
    ("floor: gradient + SGD, tree", "optax.adam"),
    ("floor: flat gradient + SGD, flat triple", "optax.adam"),
]


def test_rows_with_the_gradient_in_the_step(quick_output):
    rows = table_rows(quick_output, "variant", "compared with")
    assert [(row[0], row[1]) for row in rows] == REALISTIC_PATHS
    header = cells(
        next(line for line in quick_output.splitlines() if line.startswith("| variant ") and "compared with" in line)
    )
    assert header[-3:] == ["GB/s", "of roof", "of roof past the gradient"]
    for row in rows:
        step, first = float(row[2].replace(",", "")), float(row[6])
        assert step > 0 and first > 0
        if row[1] == "itself":  # optax's rows are their own base
            assert row[4] == row[7] == row[8] == "1.00x"
        assert 0 < float(row[10]) <= 1.0  # a fraction of the run's best streaming rate
        if row[0].startswith("floor"):
            assert row[11] == "n/a"
        else:
            assert float(row[11]) > 0
    # The ratio columns are the row over its base, measured in the same run.
    by_name = {row[0]: row for row in rows}
    drop_in, optax_adam = by_name["adamjax.adam: update + apply_updates"], by_name["optax.adam"]
    ratio = float(drop_in[6]) / float(optax_adam[6])
    assert float(drop_in[7].rstrip("x")) == pytest.approx(ratio, rel=0.05, abs=0.01)


def test_which_path_table_is_computed_from_the_rows(quick_output):
    rows = table_rows(quick_output, "model", "fastest step (vs optax's same chain)")
    assert [row[0] for row in rows] == ["one 2^16 array"]
    names = [name for name, _ in REALISTIC_PATHS if not name.startswith(("optax", "floor"))]
    fastest, ratio = rows[0][1].rsplit(" (", 1)
    assert fastest in names
    measured = {row[0]: float(row[4].rstrip("x")) for row in table_rows(quick_output, "variant", "compared with")}
    assert float(ratio.rstrip("x)")) == pytest.approx(min(measured[name] for name in names), abs=0.006)


def test_memory_table_counts_every_setting_and_xla_agrees():
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "memory.py"
    result = python_run(script, "--width", "256", "--layers", "1", "--vocab", "2048", timeout=300)
    assert result.returncode == 0, result.stderr
    rows = {row[0]: row[1:] for row in table_rows(result.stdout, "state", "bytes / parameter (arrays)")}
    assert len(rows) == 6
    for arrays, xla, _ in rows.values():
        assert xla == arrays  # XLA's donated step holds exactly the state's arrays
    per = {name: float(values[0]) for name, values in rows.items()}
    assert per["float32 Adam (optax's layout)"] == 8.0
    assert per["bfloat16 mu and nu"] == 4.0
    assert per["8-bit moments (state_bits=8)"] <= 2.1 and per["4-bit moments (state_bits=4)"] <= 1.1
    assert 4.0 < per["Adam-mini (one nu per row)"] < 4.1


def test_roof_past_the_gradient_is_the_floor_plus_the_optimizers_bytes():
    """Worked by hand: a 32 ms floor, 2^24 parameters, a 40 GB/s roof; Adam moves 16 bytes beyond SGD's 12."""
    sys.path.insert(0, str(SUITE.parent))
    try:
        import _harness as h
        import realistic
    finally:
        sys.path.remove(str(SUITE.parent))
    n, roof = 2**24, 40.0

    def row(name, median, extra_bytes=0):
        s = h.Stats(median, median, median)
        return realistic.Measured(name, "optax.adam", s, s, s, extra_bytes)

    rows = {
        realistic.FLOOR: row(realistic.FLOOR, 0.032, -16),
        realistic.FLAT_FLOOR: row(realistic.FLAT_FLOOR, 0.050, -16),
        realistic.FUSED_ADAMW: row(realistic.FUSED_ADAMW, 0.040),
        realistic.FUSED_CLIPPED: row(realistic.FUSED_CLIPPED, 0.045, 4),
        realistic.FLAT: row(realistic.FLAT, 0.060),
    }
    adam_ideal = 0.032 + 16 * n / 40e9  # 6.71 ms of optimizer traffic at the roof
    assert realistic.past_gradient(rows[realistic.FUSED_ADAMW], rows, n, roof) == pytest.approx(adam_ideal / 0.040)
    clipped_ideal = 0.032 + 20 * n / 40e9  # clipping reads the gradients once more
    assert realistic.past_gradient(rows[realistic.FUSED_CLIPPED], rows, n, roof) == pytest.approx(clipped_ideal / 0.045)
    flat_ideal = 0.050 + 16 * n / 40e9  # the flat layout's own floor
    assert realistic.past_gradient(rows[realistic.FLAT], rows, n, roof) == pytest.approx(flat_ideal / 0.060)
    assert realistic.past_gradient(rows[realistic.FLOOR], rows, n, roof) is None
    del rows[realistic.FLOOR]
    assert realistic.past_gradient(rows[realistic.FUSED_ADAMW], rows, n, roof) is None


@pytest.mark.slow
def test_convergence_quick_prints_every_row_and_column_with_finite_numbers(tmp_path):
    script = SUITE.parent / "convergence.py"
    figure = tmp_path / "convergence.png"
    result = python_run(
        script,
        "--quick",
        "--figure",
        figure,
        timeout=900,
        env=smoke_env(checkout_env()),  # 24 training steps to compile; the numbers are checked for being finite only
    )
    assert result.returncode == 0, result.stderr
    sys.path.insert(0, str(SUITE.parent))
    try:
        import convergence
    finally:
        sys.path.remove(str(SUITE.parent))
    rows = [row.name for row in convergence.ROWS]
    assert rows == [
        "float32 Adam",
        "bf16 moments",
        "8-bit moments",
        "4-bit moments",
        "bf16 weights, nearest",
        "bf16 weights, stochastic",
        "bf16 weights, Kahan",
        "bf16 weights + 8-bit",
    ]
    lines = result.stdout.splitlines()
    headers = [i for i, line in enumerate(lines) if line.startswith("| row |")]
    assert len(headers) == 3  # one table per problem
    for start, problem in zip(
        headers, ("(a) MLP", "(b) character transformer", "(c) scikit-learn digits"), strict=True
    ):
        assert lines[start - 1].startswith(problem)
        header = cells(lines[start])
        assert header[:7] == list(convergence.COLUMNS)
        body = [cells(line) for line in lines[start + 2 : start + 2 + len(rows)]]
        assert [row[0] for row in body] == rows
        for row in body:
            assert len(row) == len(header)
            final, change, gap, held, large = (float(cell.rstrip("%")) for cell in row[1:6])
            assert all(np.isfinite([final, change, gap, held, large])) and final > 0
        by_name = {row[0]: row for row in body}
        assert by_name["float32 Adam"][2] == "+0.00%" and float(by_name["float32 Adam"][4]) == 12.0
        # Bytes per parameter of one 4096 x 4096 matrix: 4 + 8 for float32 Adam, about 4 for bf16 + 8-bit.
        assert float(by_name["float32 Adam"][5]) == 12.0
        assert 4.0 < float(by_name["bf16 weights + 8-bit"][5]) < 4.1
        assert by_name["8-bit moments"][6].startswith("within 1%: ")
        assert by_name["4-bit moments"][6].startswith("within 3%: ")
        if problem.startswith("(c)"):
            assert all(re.fullmatch(r"test acc (0|1)\.\d{3}", row[7]) for row in body)
    assert figure.stat().st_size > 50_000
