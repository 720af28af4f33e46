"""The ``adamjax`` command line: good runs write files, bad arguments exit 2 with one line."""

from __future__ import annotations

import csv
import shutil
import subprocess
import sys

import numpy as np
import pytest
from matplotlib.image import imread

import adamjax
from adamjax._cli import main


def assert_drawn_png(path, min_ink=0.03):
    image = imread(path)[..., :3]
    assert image.shape[0] >= 300 and image.shape[1] >= 500
    ink = float(np.mean(np.any(image < 0.9, axis=-1)))
    assert ink > min_ink, f"only {ink:.1%} of {path} is drawn"


def read_csv(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_simulate_writes_png_and_csv(tmp_path, capsys):
    out, table = tmp_path / "adam.png", tmp_path / "trace.csv"
    argv = ["simulate", "--signal", "sine", "--steps", "300", "--b1", "0.9", "--b2", "0.999", "--eps", "1e-8"]
    argv += ["--lr", "1e-2", "--out", str(out), "--csv", str(table)]
    assert main(argv) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    assert_drawn_png(out)
    rows = read_csv(table)
    assert len(rows) == 300
    assert list(rows[0]) == ["step", "grad", "mu", "nu", "mu_hat", "nu_hat", "denom", "direction", "update", "params"]
    trace = adamjax.simulate(adamjax.adam(1e-2), adamjax.signals.sine(300))
    for field in ("grad", "nu_hat", "direction", "update", "params"):
        np.testing.assert_allclose([float(row[field]) for row in rows], getattr(trace, field), rtol=1e-6, atol=1e-12)


def test_variants_and_long_runs_use_the_window_figure(tmp_path):
    out = tmp_path / "soft.png"
    argv = ["simulate", "--signal", "swinging_soft", "--steps", "1000", "--power", "4", "--centered", "--amsgrad"]
    assert main([*argv, "--window", "100", "--seed", "1", "--out", str(out)]) == 0
    assert_drawn_png(out)


def test_sweep_draws_one_curve_per_value(tmp_path):
    out, table = tmp_path / "sweep.png", tmp_path / "sweep.csv"
    argv = ["simulate", "--signal", "swinging", "--steps", "500", "--b2", "0.9,0.99,0.999", "--power", "2,4"]
    assert main([*argv, "--window", "100", "--out", str(out), "--csv", str(table)]) == 0
    assert_drawn_png(out)
    rows = read_csv(table)
    settings = list(dict.fromkeys(row["setting"] for row in rows))
    assert settings == [f"b2={b2}, power={p}" for b2 in ("0.9", "0.99", "0.999") for p in ("2", "4")]
    assert len(rows) == 6 * 500
    grads = adamjax.signals.swinging(500, seed=0)
    expected = adamjax.simulate(adamjax.adam(1e-3, b2=0.99, power=4.0), grads).denom
    denom = [float(row["denom"]) for row in rows if row["setting"] == "b2=0.99, power=4"]
    np.testing.assert_allclose(denom, expected, rtol=1e-6)


def test_signals_command_lists_every_signal(capsys):
    assert main(["signals"]) == 0
    listed = [line.split()[0] for line in capsys.readouterr().out.splitlines()]
    assert listed == list(adamjax.signals.NAMES)


BAD_ARGUMENTS = [
    (["--signal", "square"], r"`adamjax.signals.by_name\(name=...\)` must be one of uniform, .*; got 'square'"),
    (["--b1", "1.5"], r"`adam\(b1=...\)` must be in \[0, 1\); got 1.5"),
    (["--b2", "0.9,1.0"], r"`adam\(b2=...\)` must be in \[0, 1\); got 1.0"),
    (["--steps", "-1"], r"`adamjax.signals.sine\(steps=...\)` must be a positive integer; got -1"),
    (["--steps", "ten"], r"argument --steps: expected an integer; got 'ten'"),
    (["--b2", "0.9,,0.99"], r"argument --b2: malformed number list '0.9,,0.99'"),
    (["--eps", "1e-8,x"], r"argument --eps: malformed number list"),
    (["--power", "0"], r"`adam\(power=...\)` must be in \(0, inf\); got 0.0"),
    (["--lr", "-1"], r"`adam\(learning_rate=...\)` must be in \[0, inf\); got -1.0"),
    (["--window", "0"], r"argument --window: must be a positive integer; got 0"),
    (["--bogus"], r"unrecognized arguments: --bogus"),
]


@pytest.mark.parametrize(("extra", "message"), BAD_ARGUMENTS)
def test_bad_arguments_exit_2_with_one_line(tmp_path, capsys, extra, message):
    out = tmp_path / "never.png"
    assert main(["simulate", *extra, "--out", str(out)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("adamjax simulate: error: ")
    assert "Traceback" not in captured.err
    assert __import__("re").search(message, lines[0]), lines[0]
    assert not out.exists()


def test_missing_out_and_unknown_command(capsys):
    assert main(["simulate", "--signal", "sine"]) == 2
    assert "the following arguments are required: --out" in capsys.readouterr().err
    assert main(["train"]) == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_unwritable_output_fails_with_one_line(tmp_path, capsys):
    assert main(["simulate", "--steps", "20", "--out", str(tmp_path / "missing" / "a.png")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "No such file or directory" in err and "Traceback" not in err


def test_help_exits_0(capsys):
    assert main(["simulate", "--help"]) == 0
    assert "--b2" in capsys.readouterr().out


def test_python_dash_m_and_console_script(tmp_path):
    out = tmp_path / "m.png"
    good = subprocess.run(
        [sys.executable, "-m", "adamjax", "simulate", "--signal", "blocks", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert good.returncode == 0, good.stderr
    assert_drawn_png(out)
    script = shutil.which("adamjax")
    assert script is not None, "the `adamjax` console script is not installed (pip install -e .)"
    bad = subprocess.run(
        [script, "simulate", "--b1", "1.5", "--out", str(out)], capture_output=True, text=True, timeout=120
    )
    assert bad.returncode == 2
    assert bad.stderr.strip() == "adamjax simulate: error: `adam(b1=...)` must be in [0, 1); got 1.5."


def test_the_command_line_simulates_in_float32(tmp_path):
    # Even with x64 on (conftest), the signals and so the simulation are float32.
    table = tmp_path / "t.csv"
    assert main(["simulate", "--signal", "alternating", "--out", str(tmp_path / "a.png"), "--csv", str(table)]) == 0
    values = np.array([float(row["direction"]) for row in read_csv(table)])
    np.testing.assert_array_equal(values.astype(np.float32).astype(np.float64), values)
    assert values[0] == pytest.approx(1.0, rel=1e-4)
