"""The ``adamjax`` command line: good runs write files, bad arguments exit 2 with one line."""

from __future__ import annotations

import csv
import shutil
import subprocess

import numpy as np
import numpy_reference as ref
import pytest
from helpers import checkout_env, python_run
from matplotlib.image import imread
from test_plot import check_figure

import adamjax
from adamjax import _cli
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
    (["--signal", "square"], r"argument --signal: must be one of uniform, .*; got 'square'"),
    (["--b1", "1.5"], r"argument --b1: `adam\(b1=...\)` must be in \[0, 1\); got 1.5"),
    (["--b2", "0.9,1.0"], r"argument --b2: `adam\(b2=...\)` must be in \[0, 1\); got 1.0"),
    (["--steps", "-1"], r"argument --steps: must be a positive integer; got -1"),
    (["--steps", "-5", "--signal", "swinging"], r"argument --steps: must be a positive integer; got -5"),
    (["--steps", "ten"], r"argument --steps: expected an integer; got 'ten'"),
    (["--b2", "0.9,,0.99"], r"argument --b2: malformed number list '0.9,,0.99'"),
    (["--eps", "1e-8,x"], r"argument --eps: malformed number list"),
    (["--power", "0"], r"argument --power: `adam\(power=...\)` must be in \(0, inf\); got 0.0"),
    (["--lr", "-1"], r"argument --lr: `adam\(learning_rate=...\)` must be in \[0, inf\); got -1.0"),
    (["--lr", "1e-3,nan"], r"argument --lr: "),
    (["--centered", "maybe"], r"argument --centered: expected true, false or a list such as false,true"),
    (["--amsgrad", "false,2"], r"argument --amsgrad: expected true, false"),
    (["--grads", "missing.csv"], r"argument --grads: no such file 'missing.csv'"),
    (["--window", "0"], r"argument --window: must be a positive integer; got 0"),
    (["--bogus"], r"unrecognized arguments: --bogus"),
    (["--state-bits", "3"], r"argument --state-bits: expected 8, 4 or a list such as 8,4; got '3'"),
    (["--block-size", "64"], r"argument --block-size: sets how moments are quantized and needs --state-bits 8 or 4"),
    (["--neighbour-noise", "1"], r"argument --neighbour-noise: sets how moments are quantized and needs --state-bits"),
    (
        ["--state-bits", "4", "--block-size", "63"],
        r"argument --block-size: `adam\(state_bits=4, block_size=...\)` must be even",
    ),
    (
        ["--state-bits", "8", "--block-size", "0"],
        r"argument --block-size: `adam\(block_size=...\)` must be a positive integer",
    ),
    (
        ["--state-bits", "8", "--neighbour-noise", "-1"],
        r"argument --neighbour-noise: must be a finite number >= 0; got -1",
    ),
    (["--state-bits", "8,4", "--b2", "0.9,0.99"], r"argument --state-bits: draws one optimizer's settings .* of --b2"),
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


def test_output_folders_are_created(tmp_path):
    out, table = tmp_path / "new" / "deeper" / "a.png", tmp_path / "other" / "a.csv"
    assert main(["simulate", "--steps", "20", "--out", str(out), "--csv", str(table)]) == 0
    assert_drawn_png(out)
    assert len(read_csv(table)) == 20


@pytest.mark.parametrize("flag", ["--out", "--csv"])
def test_an_output_that_cannot_be_written_is_refused_before_any_work(tmp_path, capsys, monkeypatch, flag):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")

    def no_simulation(*args, **kwargs):
        raise AssertionError("the simulation ran before the output was checked")

    monkeypatch.setattr(adamjax, "simulate", no_simulation)
    paths = {"--out": str(tmp_path / "a.png"), "--csv": str(tmp_path / "a.csv")}
    paths[flag] = str(blocker / "x" / "a.png")
    argv = ["simulate", "--steps", "20", "--out", paths["--out"], "--csv", paths["--csv"]]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"argument {flag}: cannot create the folder" in err, err
    assert not (tmp_path / "a.png").exists()


def test_out_must_name_a_figure_file(tmp_path, capsys):
    assert main(["simulate", "--out", str(tmp_path)]) == 2
    assert "argument --out: " in capsys.readouterr().err
    assert main(["simulate", "--out", str(tmp_path / "a.xyz")]) == 2
    assert "argument --out: cannot tell the figure format" in capsys.readouterr().err


def test_version(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"adamjax {adamjax.__version__}"


def test_help_shows_defaults_and_examples(capsys):
    assert main(["simulate", "--help"]) == 0
    text = capsys.readouterr().out
    for flag in ("--b2", "--no-bias-correction", "--grads", "--centered", "--amsgrad"):
        assert flag in text
    assert "(default: sine)" in text and "(default: 200)" in text
    assert "examples:\n  adamjax simulate" in text
    # The random state's flag is --seed; nothing else in the help says "seed".
    assert "seed" not in text.replace("--seed N", "").lower()
    assert main(["signals", "--help"]) == 0
    assert "example:\n  adamjax signals" in capsys.readouterr().out
    assert main(["--help"]) == 0
    assert "--version" in capsys.readouterr().out


@pytest.mark.slow
def test_python_dash_m_and_console_script(tmp_path):
    out = tmp_path / "m.png"
    good = python_run("-m", "adamjax", "simulate", "--signal", "blocks", "--out", out, timeout=120)
    assert good.returncode == 0, good.stderr
    assert_drawn_png(out)
    script = shutil.which("adamjax")
    assert script is not None, "the `adamjax` console script is not installed (pip install -e .)"
    bad = subprocess.run(
        [script, "simulate", "--b1", "1.5", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
        env=checkout_env(),
    )
    assert bad.returncode == 2
    assert bad.stderr.strip() == "adamjax simulate: error: argument --b1: `adam(b1=...)` must be in [0, 1); got 1.5."


def test_the_command_line_simulates_in_float32(tmp_path):
    # Even with x64 on (conftest), the signals and so the simulation are float32.
    table = tmp_path / "t.csv"
    assert main(["simulate", "--signal", "alternating", "--out", str(tmp_path / "a.png"), "--csv", str(table)]) == 0
    values = np.array([float(row["direction"]) for row in read_csv(table)])
    np.testing.assert_array_equal(values.astype(np.float32).astype(np.float64), values)
    assert values[0] == pytest.approx(1.0, rel=1e-4)


def parsed(*argv):
    return _cli._parser().parse_args(["simulate", *argv, "--out", "unused.png"])


def column(rows, field, **match):
    return np.array([float(row[field]) for row in rows if all(row[k] == v for k, v in match.items())])


def test_no_bias_correction(tmp_path):
    table = tmp_path / "t.csv"
    argv = ["simulate", "--signal", "pulses", "--no-bias-correction", "--out", str(tmp_path / "a.png")]
    assert main([*argv, "--csv", str(table)]) == 0
    grads = np.asarray(adamjax.signals.pulses(), np.float64)
    expected = ref.open_loop(grads, ref.Variant(bias_correction=False)).update
    np.testing.assert_allclose(column(read_csv(table), "direction"), expected, rtol=1e-4, atol=1e-7)
    fig, _, _ = _cli._figure(parsed("--signal", "pulses", "--no-bias-correction"))
    assert "no bias correction" in fig.get_suptitle()


@pytest.mark.parametrize(
    ("flag", "variant", "label"),
    [("--centered", ref.Variant(centered=True), "centered"), ("--amsgrad", ref.Variant(amsgrad=True), "amsgrad")],
)
def test_switch_sweeps_draw_both_and_say_so(tmp_path, flag, variant, label):
    table = tmp_path / "t.csv"
    argv = ["simulate", "--signal", "pulses", flag, "false,true", "--out", str(tmp_path / "a.png")]
    assert main([*argv, "--csv", str(table)]) == 0
    rows = read_csv(table)
    assert list(dict.fromkeys(row["setting"] for row in rows)) == [f"not {label}", label]
    grads = np.asarray(adamjax.signals.pulses(), np.float64)
    expected = ref.open_loop(grads, variant).update
    np.testing.assert_allclose(column(rows, "direction", setting=label), expected, rtol=1e-4, atol=1e-7)
    fig, _, _ = _cli._figure(parsed("--signal", "pulses", flag, "false,true"))
    assert ("centering" if label == "centered" else "AMSGrad") in fig.get_suptitle()
    if label == "amsgrad":  # the running maximum has its own row
        assert any("running maximum" in ax.get_ylabel() for ax in fig.axes)
    check_figure(fig, tmp_path / "fig.png")


def test_lr_and_power_lists(tmp_path):
    table = tmp_path / "t.csv"
    argv = ["simulate", "--signal", "sine", "--lr", "0.1,0.01", "--power", "2,4", "--out", str(tmp_path / "a.png")]
    assert main([*argv, "--csv", str(table)]) == 0
    rows = read_csv(table)
    assert list(dict.fromkeys(row["setting"] for row in rows)) == [
        "lr=0.1, power=2",
        "lr=0.1, power=4",
        "lr=0.01, power=2",
        "lr=0.01, power=4",
    ]
    grads = np.asarray(adamjax.signals.sine(), np.float64)
    expected = -0.01 * ref.open_loop(grads, ref.Variant(power=4.0)).update
    np.testing.assert_allclose(column(rows, "update", setting="lr=0.01, power=4"), expected, rtol=1e-4, atol=1e-9)
    fig, _, _ = _cli._figure(parsed("--signal", "sine", "--lr", "0.1,0.01", "--power", "2,4"))
    check_figure(fig, tmp_path / "fig.png")


def test_recorded_gradients_from_csv_and_npy(tmp_path):
    rng = np.random.default_rng(0)
    recorded = rng.normal(size=(50, 2)) + np.array([1.0, 0.0])
    with open(tmp_path / "g.csv", "w") as handle:
        handle.write("layer1.w,layer2.b\n" + "\n".join(f"{float(a)!r},{float(b)!r}" for a, b in recorded) + "\n")
    np.save(tmp_path / "g.npy", recorded[:, 1])
    table = tmp_path / "t.csv"
    argv = ["simulate", "--grads", str(tmp_path / "g.csv"), "--out", str(tmp_path / "a.png"), "--csv", str(table)]
    assert main(argv) == 0
    rows = read_csv(table)
    assert list(rows[0])[:2] == ["weight", "step"]
    expected = ref.open_loop(recorded.astype(np.float32).astype(np.float64), ref.Variant()).update
    np.testing.assert_allclose(column(rows, "direction", weight="layer2.b"), expected[:, 1], rtol=1e-4, atol=1e-6)
    fig, _, _ = _cli._figure(parsed("--grads", str(tmp_path / "g.csv")))
    assert [ax.get_title() for ax in fig.axes[:2]] == ["layer1.w", "layer2.b"]
    check_figure(fig, tmp_path / "fig.png")

    argv = ["simulate", "--grads", str(tmp_path / "g.npy"), "--steps", "30", "--out", str(tmp_path / "b.png")]
    assert main([*argv, "--csv", str(table)]) == 0
    np.testing.assert_allclose(column(read_csv(table), "direction"), expected[:30, 1], rtol=1e-4, atol=1e-6)


def test_bad_recorded_gradients(tmp_path, capsys):
    (tmp_path / "ragged.csv").write_text("1,2\n3\n")
    (tmp_path / "nan.csv").write_text("1\nnan\n")
    np.save(tmp_path / "cube.npy", np.zeros((2, 2, 2)))
    for name, message in [
        ("ragged.csv", "rows have different numbers of columns"),
        ("nan.csv", "NaN or infinite"),
        ("cube.npy", "one row per step and one column per weight"),
    ]:
        assert main(["simulate", "--grads", str(tmp_path / name), "--out", str(tmp_path / "a.png")]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "argument --grads: " in err and message in err, err


def test_a_single_step_is_drawn(tmp_path):
    out = tmp_path / "one.png"
    assert main(["simulate", "--steps", "1", "--out", str(out)]) == 0
    fig, _, _ = _cli._figure(parsed("--steps", "1"))
    check_figure(fig, out, min_ink=0.01, min_axes_ink=0.0005)


def test_sweep_figure_passes_the_reader_checks(tmp_path):
    fig, _, _ = _cli._figure(parsed("--signal", "swinging", "--steps", "1000", "--b2", "0.9,0.99,0.999"))
    assert "b2" in fig.get_suptitle()
    check_figure(fig, tmp_path / "sweep.png")


def test_state_bits_draws_stored_moments_and_writes_them(tmp_path):
    out, table = tmp_path / "quantized.png", tmp_path / "quantized.csv"
    argv = ["simulate", "--signal", "swinging", "--steps", "300", "--state-bits", "8,4", "--window", "100"]
    assert main([*argv, "--out", str(out), "--csv", str(table)]) == 0
    assert_drawn_png(out)
    rows = read_csv(table)
    assert list(rows[0])[-4:] == ["mu_stored", "nu_stored", "mu_error", "nu_error"]
    by_setting = {}
    for row in rows:
        by_setting.setdefault(row["setting"], []).append(row)
    assert list(by_setting) == ["float32", "8 bits", "4 bits"]
    grads = np.asarray(adamjax.signals.swinging(300, seed=0), np.float64)
    expected = ref.open_loop(grads, ref.Variant())

    def column(setting, field):
        return np.array([float(row[field]) for row in by_setting[setting]])

    np.testing.assert_allclose(column("float32", "mu"), expected.mu, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(column("float32", "mu_stored"), column("float32", "mu"))
    np.testing.assert_array_equal(column("float32", "nu_error"), np.zeros(300))
    for setting in ("8 bits", "4 bits"):
        np.testing.assert_array_equal(column(setting, "grad"), column("float32", "grad"))  # the tracked weight
        for moment in ("mu", "nu"):
            stored, computed = column(setting, f"{moment}_stored"), column(setting, moment)
            np.testing.assert_allclose(column(setting, f"{moment}_error"), stored - computed, rtol=1e-6, atol=1e-12)
            assert np.mean(stored != computed) > 0.3, (setting, moment)


def test_state_bits_takes_one_weight(tmp_path, capsys):
    recorded = tmp_path / "two.csv"
    recorded.write_text("a,b\n1,2\n3,4\n")
    assert main(["simulate", "--grads", str(recorded), "--state-bits", "8", "--out", str(tmp_path / "a.png")]) == 2
    err = capsys.readouterr().err
    assert "argument --state-bits: draws one weight;" in err and "has 2 columns" in err
