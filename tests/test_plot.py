"""Figures: real PNGs read back (size, drawn panels, labels, no legend over data), numbers against NumPy."""

from __future__ import annotations

import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import numpy_reference as ref
import pytest
import seed_transcriptions as seeds
from matplotlib.figure import Figure
from matplotlib.image import imread

import adamjax
from adamjax import plot, signals


def read_png(path):
    """The image as an [H, W, 3] float array and the fraction of its pixels that are not white."""
    image = imread(path)[..., :3]
    return image, float(np.mean(np.any(image < 0.9, axis=-1)))


def _renderer(fig, *, laid_out=False):
    """A renderer in the figure's pixel coordinates, to measure what it draws.

    Positions are final once the figure is laid out: ``laid_out=True`` after
    ``savefig`` (which drew it), else the layout runs here without rendering.
    Measuring needs no second drawing of the pixels.
    """
    from matplotlib.backends.backend_agg import RendererAgg

    if not laid_out:
        fig.draw_without_rendering()
    width, height = fig.bbox.size
    return RendererAgg(int(width), int(height), fig.dpi)


def legend_overlaps(fig, renderer=None):
    """(legend box, axes title, number of data points of that axes' lines inside the box) for every overlap."""
    renderer = renderer or _renderer(fig)
    legends = list(fig.legends) + [ax.get_legend() for ax in fig.axes if ax.get_legend() is not None]
    found = []
    for legend in legends:
        box = legend.get_window_extent(renderer)
        for ax in fig.axes:
            for line in ax.get_lines():
                xy = line.get_xydata()
                xy = xy[np.all(np.isfinite(xy), axis=1)]
                if not len(xy):
                    continue
                points = line.get_transform().transform(xy)
                inside = (
                    (points[:, 0] >= box.x0)
                    & (points[:, 0] <= box.x1)
                    & (points[:, 1] >= box.y0)
                    & (points[:, 1] <= box.y1)
                )
                if inside.any():
                    found.append((box, ax.get_title(), int(inside.sum())))
    return found


def check_figure(fig, path, min_ink=0.03, min_axes_ink=0.01):
    """The figure as a reader sees it: a real PNG, every panel drawn and labelled, no legend over data."""
    fig.savefig(path)
    image, ink = read_png(path)
    width, height = fig.get_size_inches() * fig.dpi
    assert image.shape[:2] == (round(height), round(width))
    assert ink > min_ink, f"only {ink:.1%} of the figure is drawn"
    renderer = _renderer(fig, laid_out=True)
    assert fig.get_suptitle().strip(), "the figure has no title"
    bottoms = {}
    for ax in fig.axes:
        box = ax.get_window_extent(renderer)
        rows = slice(int(image.shape[0] - box.y1) + 2, int(image.shape[0] - box.y0) - 2)
        columns = slice(int(box.x0) + 2, int(box.x1) - 2)
        panel = image[rows, columns]
        # Data are drawn in colour or grey; the grid is light: count darker pixels.
        drawn = float(np.mean(np.any(panel < 0.75, axis=-1)))
        assert drawn > min_axes_ink, f"panel {ax.get_title()!r} is nearly blank ({drawn:.2%})"
        assert ax.get_ylabel().strip(), f"panel {ax.get_title()!r} has no y label"
        left = round(box.x0)
        if box.y0 < bottoms.get(left, (np.inf, None))[0]:
            bottoms[left] = (box.y0, ax)
    for _, ax in bottoms.values():
        assert ax.get_xlabel().startswith("step"), "the bottom panel of a column has no step label"
    assert legend_overlaps(fig, renderer) == []
    # Nor over the titles.
    titles = [fig._suptitle] + [ax.title for ax in fig.axes]
    for legend in fig.legends:
        box = legend.get_window_extent(renderer)
        for text in titles:
            if text is not None and text.get_text():
                assert not box.overlaps(text.get_window_extent(renderer)), f"the legend covers {text.get_text()!r}"


def check_png(fig, path, min_ink=0.03):
    check_figure(fig, path, min_ink)


def lines_by_label(ax):
    return {line.get_label(): line for line in ax.get_lines()}


@pytest.fixture(scope="module")
def sine_trace():
    return adamjax.simulate(adamjax.adam(1e-3), signals.sine(300, dtype=jnp.float64))


@pytest.fixture(scope="module")
def long_trace():
    return adamjax.simulate(adamjax.adam(1e-3), signals.swinging_soft(2000, seed=1))


def test_trace_figure_draws_the_moments_and_the_step_apart(sine_trace, tmp_path):
    fig = plot.trace(sine_trace, title="sine")
    assert isinstance(fig, Figure)
    ax, step_ax = fig.axes
    lines = lines_by_label(ax) | lines_by_label(step_ax)
    expected = seeds.seed000_plot(np.asarray(sine_trace.grad), 0.9, 0.999, 1e-8)
    np.testing.assert_allclose(lines["gradient $g_t$"].get_ydata(), np.asarray(sine_trace.grad))
    np.testing.assert_allclose(lines[r"first moment $\hat m_t$"].get_ydata(), expected["m_hat"], rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(lines[r"$\hat m_t$ trend"].get_ydata(), expected["m_hat_trend"], rtol=1e-9, atol=1e-12)
    denominator = r"$\sqrt{\hat v_t}$ $+\ \epsilon$"
    np.testing.assert_allclose(
        lines["denominator " + denominator].get_ydata(), expected["v_hat_root"] + 1e-8, rtol=1e-12
    )
    np.testing.assert_allclose(
        lines[denominator + " trend"].get_ydata(), expected["v_hat_root_trend"] + 1e-8, rtol=1e-9
    )
    step = [label for label in lines if label.startswith("step")]
    np.testing.assert_allclose(lines[step[0]].get_ydata(), expected["adam_step"], rtol=1e-12, atol=1e-14)
    assert "lr=0.001, b1=0.9, b2=0.999, eps=1e-08" in fig.get_suptitle()
    np.testing.assert_array_equal(lines["gradient $g_t$"].get_xdata(), np.arange(1, 301))
    check_png(fig, tmp_path / "trace.png")


def test_trace_update_option_and_power_label(tmp_path):
    trace = adamjax.simulate(adamjax.adam(0.1, power=4.0), signals.uniform(100, seed=0))
    fig = plot.trace(trace, step="update", trends=False)  # the trace knows its power
    lines = lines_by_label(fig.axes[0]) | lines_by_label(fig.axes[1])
    assert r"denominator $\hat v_t^{1/4}$ $+\ \epsilon$" in lines
    assert "p=4" in fig.get_suptitle()
    assert not any("trend" in label for label in lines)
    np.testing.assert_allclose(lines["update $u_t$\n(after the learning rate)"].get_ydata(), trace.update, rtol=1e-6)
    check_png(fig, tmp_path / "p4.png")


def test_linear_trend_is_the_least_squares_line():
    values = np.array([1.0, 3.0, 2.0, 5.0])
    t = np.arange(1, 5)
    slope, intercept = np.linalg.lstsq(np.stack([t, np.ones(4)], axis=1), values, rcond=None)[0]
    np.testing.assert_allclose(plot.linear_trend(values), slope * t + intercept)
    np.testing.assert_allclose(plot.linear_trend([4.0]), [4.0])


def test_windows_figure_shows_first_and_last_window(long_trace, tmp_path):
    fig = plot.windows(long_trace, 150, title="soft")
    first, last, first_step, last_step = fig.axes
    assert first.get_lines()[0].get_xdata()[[0, -1]].tolist() == [1, 150]
    assert last.get_lines()[0].get_xdata()[[0, -1]].tolist() == [1851, 2000]
    raw_root = lines_by_label(last)[r"$\sqrt{v_t}$"].get_ydata()
    np.testing.assert_allclose(raw_root, np.sqrt(np.asarray(long_trace.nu[-150:], np.float64)), rtol=1e-6)
    assert first_step.get_lines()[0].get_xdata()[[0, -1]].tolist() == [1, 150]
    expected = ref.open_loop(np.asarray(long_trace.grad), ref.Variant()).update
    np.testing.assert_allclose(last_step.get_lines()[0].get_ydata(), expected[-150:], rtol=2e-4, atol=1e-6)
    check_png(fig, tmp_path / "windows.png")


def test_compare_mapping_and_stacked_trace(tmp_path):
    grads = signals.swinging(1000, seed=2)
    runs = {
        "adam": adamjax.simulate(adamjax.adam(1e-3), grads),
        "p=4": adamjax.simulate(adamjax.adam(1e-3, power=4.0), grads),
        "centered": adamjax.simulate(adamjax.adam(1e-3, centered=True), grads),
    }
    fig = plot.compare(runs, fields=("direction", "denom", "mu_hat"), title="variants")
    assert len(fig.axes) == 4
    for ax in fig.axes[1:]:
        labels = [line.get_label() for line in ax.get_lines() if not line.get_label().startswith("_")]
        assert labels == ["adam", "p=4", "centered"]
    check_png(fig, tmp_path / "compare.png")

    stacked = jax.tree.map(lambda x: jnp.stack([x, x * 2]), runs["adam"])
    fig = plot.compare(stacked, labels=["b2=0.9", "b2=0.99"], window=100, show_grad=False)
    assert len(fig.axes) == 4
    curves = [line for line in fig.axes[2].get_lines() if line.get_label() == "b2=0.99"]
    np.testing.assert_allclose(curves[0].get_ydata(), 2 * np.asarray(runs["adam"].direction[:100]), rtol=1e-6)
    check_png(fig, tmp_path / "stacked.png")


def test_index_selects_a_coordinate(tmp_path):
    grads = jnp.stack([signals.sine(100), signals.alternating(100)], axis=1)
    trace = adamjax.simulate(adamjax.adam(1e-3), grads)
    with pytest.raises(ValueError, match=r"pass `index=`"):
        plot.trace(trace)
    fig = plot.trace(trace, index=1)
    np.testing.assert_allclose(lines_by_label(fig.axes[0])["gradient $g_t$"].get_ydata(), signals.alternating(100))


def test_bad_arguments(long_trace):
    with pytest.raises(ValueError, match=r"window=...\)` must be an integer in \[1, 2000\]"):
        plot.windows(long_trace, 2001)
    with pytest.raises(ValueError, match="unknown trace field 'speed'"):
        plot.compare({"a": long_trace}, fields=("speed",))
    with pytest.raises(ValueError, match="needs 2000 labels"):
        plot.compare(long_trace, labels=["a", "b"])
    with pytest.raises(ValueError, match="has no 'nu_max'"):
        plot.compare({"a": long_trace}, fields=("nu_max",))
    with pytest.raises(ValueError, match="'direction' or 'update'"):
        plot.trace(long_trace, step="mu")


def test_missing_matplotlib_raises_import_error_with_install_hint(monkeypatch, long_trace):
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(ImportError, match=r"`pip install matplotlib`"):
        plot.trace(long_trace)


def test_importing_adamjax_does_not_import_matplotlib_and_plots_skip_pyplot():
    code = (
        "import sys, adamjax, adamjax.plot\n"
        "assert 'matplotlib' not in sys.modules, 'import adamjax imported matplotlib'\n"
        "trace = adamjax.simulate(adamjax.adam(1e-3), adamjax.signals.sine(50))\n"
        "adamjax.plot.trace(trace).savefig(sys.argv[1])\n"
        "assert 'matplotlib' in sys.modules\n"
        "assert 'matplotlib.pyplot' not in sys.modules, 'adamjax.plot used pyplot'\n"
        "print('ok')\n"
    )
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        result = subprocess.run(
            [sys.executable, "-c", code, f"{tmp}/a.png"], capture_output=True, text=True, timeout=120
        )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def axes_lines(fig, number):
    return lines_by_label(fig.axes[number])


def test_the_legend_check_can_fail(sine_trace, tmp_path):
    fig = plot.trace(sine_trace)
    fig.axes[0].legend(loc="center")  # on top of the sine
    assert legend_overlaps(fig)


def test_suppression_figure_answers_with_mean_over_rms(tmp_path):
    fig = plot.suppression()
    assert fig.get_suptitle().startswith("Why does the second moment suppress a swinging gradient?")
    assert "b2=0.999, eps=1e-07" in fig.get_suptitle()
    grads = {"swinging": signals.swinging(10_000, seed=1), "swinging_soft": signals.swinging_soft(10_000, seed=1)}
    for column, grad in enumerate(grads.values()):
        step_ax = fig.axes[2 + column] if len(fig.axes) == 4 else None
        step_ax = [ax for ax in fig.axes if ax.get_xlabel()][column]
        expected = ref.open_loop(np.asarray(grad), ref.Variant(eps=1e-7)).update[-200:]
        step, ratio = step_ax.get_lines()[:2]
        np.testing.assert_allclose(step.get_ydata(), expected, rtol=1e-3, atol=1e-4)
        last = np.asarray(grad, np.float64)[-200:]
        np.testing.assert_allclose(ratio.get_ydata()[0], last.mean() / np.sqrt(np.mean(last**2)), rtol=1e-6)
        # The answer itself: the step averages mean / RMS.
        assert abs(np.mean(expected) - ratio.get_ydata()[0]) < 0.05
    check_figure(fig, tmp_path / "suppression.png")


def test_bias_correction_figure_shows_step_one_on_a_log_axis(tmp_path):
    fig = plot.bias_correction()
    step_ax = fig.axes[-1]
    assert step_ax.get_xscale() == "log"
    constant = np.full(3000, 0.01)
    lines = lines_by_label(step_ax)
    corrected = ref.open_loop(constant, ref.Variant()).update
    uncorrected = ref.open_loop(constant, ref.Variant(bias_correction=False)).update
    np.testing.assert_allclose(lines["with bias correction"].get_ydata(), corrected, rtol=1e-4)
    uncorrected_line = next(line for label, line in lines.items() if label.startswith("no bias correction"))
    np.testing.assert_allclose(uncorrected_line.get_ydata(), uncorrected, rtol=1e-4)
    assert uncorrected_line.get_ydata()[0] == pytest.approx(0.1 / np.sqrt(0.001), rel=1e-4)
    assert "bias correction" in fig.get_suptitle() and "logarithmic" in fig.get_suptitle()
    check_figure(fig, tmp_path / "bias.png")


def test_centered_figure_matches_the_reference(tmp_path):
    grads = signals.noisy_line(2000, seed=1)
    fig = plot.centered({"noisy_line": grads}, window=300)
    assert "centering" in fig.get_suptitle()
    lines = lines_by_label(fig.axes[-1])
    expected = ref.open_loop(np.asarray(grads), ref.Variant(eps=1e-7, centered=True)).update[-300:]
    centered_line = next(line for label, line in lines.items() if label.startswith("centered"))
    np.testing.assert_allclose(centered_line.get_ydata(), expected, rtol=2e-3)
    assert centered_line.get_xdata()[[0, -1]].tolist() == [1701, 2000]
    check_figure(fig, tmp_path / "centered.png")


def test_amsgrad_figure_draws_the_running_maximum(tmp_path):
    fig = plot.amsgrad()
    lines = lines_by_label(fig.axes[1])
    expected = ref.open_loop(np.asarray(signals.pulses()), ref.Variant(b2=0.99, amsgrad=True))
    maximum = next(line for label, line in lines.items() if "running maximum" in label)
    np.testing.assert_allclose(maximum.get_ydata(), expected.nu_max, rtol=1e-5)
    np.testing.assert_allclose(lines["Adam: $v_t$"].get_ydata(), expected.nu, rtol=1e-5)
    assert expected.nu_max[-1] > 1.5 * expected.nu[-1]  # the maximum really stays above the moment
    assert "AMSGrad" in fig.get_suptitle() and "b2=0.99" in fig.get_suptitle()
    check_figure(fig, tmp_path / "amsgrad.png")


def test_power_figure_gives_each_part_of_the_pattern_its_scale(tmp_path):
    fig = plot.power()
    assert [ax.get_title() for ax in fig.axes[:3]] == ["1, 0, 1, 0, ...", "blocks", "±0.001 alternating"]
    small = fig.axes[2]
    assert np.ptp(small.get_ylim()) < 0.01  # the ±0.001 part is not flattened by the ±1 part
    grads = np.asarray(signals.patterns(), np.float64)
    for column, (start, stop) in enumerate([(0, 60), (60, 120), (120, 162)]):
        lines = lines_by_label(fig.axes[6 + column])
        for label, variant in [("p=4", ref.Variant(power=4.0)), ("Adamax (p=inf)", ref.Variant(power=np.inf))]:
            expected = ref.open_loop(grads, variant).update[start:stop]
            np.testing.assert_allclose(lines[label].get_ydata(), expected, rtol=1e-4, atol=1e-7)
    # Later curves are dashed and marked, so one lying on another stays visible.
    styles = [(line.get_linestyle(), line.get_marker()) for line in fig.axes[6].get_lines()[:3]]
    assert len(set(styles)) == 3
    check_figure(fig, tmp_path / "power.png")


def test_b2_sweep_one_curve_per_value(tmp_path):
    fig = plot.b2_sweep()
    assert "b2" in fig.get_suptitle()
    grads = np.asarray(signals.swinging(2000, seed=1), np.float64)
    lines = lines_by_label(fig.axes[-1])
    assert list(lines)[:3] == ["b2=0.9", "b2=0.99", "b2=0.999"]
    expected = ref.open_loop(grads, ref.Variant(b2=0.99)).update[-200:]
    np.testing.assert_allclose(lines["b2=0.99"].get_ydata(), expected, rtol=1e-3, atol=1e-4)
    check_figure(fig, tmp_path / "b2.png")


def test_compare_takes_optimizers_configs_and_dicts_and_notes_coinciding_curves(tmp_path):
    runs = {
        "adam": adamjax.adam(1e-3),
        "amsgrad": adamjax.amsgrad(1e-3),
        "p=4": adamjax.AdamConfig(power=4.0),
        "b2=0.9": {"b2": 0.9},
    }
    fig = plot.compare(runs, {"sine": signals.sine(300), "pulses": signals.pulses()})
    assert [ax.get_title() for ax in fig.axes[:2]] == ["sine", "pulses"]
    legend_text = [text.get_text() for text in fig.legends[0].get_texts()]
    assert any("adam" in t and "amsgrad" in t and "coincide" in t for t in legend_text), legend_text
    step = lines_by_label(fig.axes[-2])
    expected = ref.open_loop(np.asarray(signals.sine(300)), ref.Variant(b2=0.9)).update
    np.testing.assert_allclose(
        next(v for k, v in step.items() if k.startswith("b2=0.9")).get_ydata(), expected, rtol=1e-4, atol=1e-6
    )
    check_figure(fig, tmp_path / "compare_optimizers.png")
    with pytest.raises(ValueError, match="pass the gradient signal"):
        plot.compare({"adam": adamjax.adam(1e-3)})
    with pytest.raises(TypeError, match="'x' must be a Trace, an optax GradientTransformation"):
        plot.compare({"x": 3}, signals.sine(10))
    with pytest.raises(ValueError, match=r"spans=...\)`: each span is \(start, stop"):
        plot.compare({"adam": adamjax.adam(1e-3)}, signals.sine(10), spans=[(5, 50)])


def test_a_single_step_is_drawn(tmp_path):
    trace = adamjax.simulate(adamjax.adam(1e-3), signals.sine(1))
    fig = plot.trace(trace)
    assert fig.axes[1].get_lines()[0].get_marker() == "o"
    check_figure(fig, tmp_path / "one.png", min_ink=0.01, min_axes_ink=0.0005)


def test_the_example_script_draws_each_question_and_shows_its_defaults(tmp_path):
    """``--only`` draws just the figures it names (two of the cheapest: tests/test_examples.py draws all ten)."""
    from helpers import assert_drawn_png, example_help, run_example

    shown = " ".join(example_help("simulator_figures.py").split())
    assert "(default: figures)" in shown and "(default: all)" in shown and "swinging_suppressed" in shown
    result = run_example("simulator_figures.py", "--out", tmp_path / "new", "--only", "amsgrad,sine")
    assert sorted(p.stem for p in (tmp_path / "new").glob("*.png")) == ["amsgrad", "sine"]
    for name in ("amsgrad", "sine"):
        assert_drawn_png(tmp_path / "new" / f"{name}.png")
    assert "wrote 2 figures" in result.stdout


# ---------------------------------------------------------------- any optax transformation, one row per member


def test_compare_runs_transformations_without_an_adamjax_core(tmp_path):
    """optax's own members are run on the signal (updates only) and drawn beside adamjax's, as steps -u/lr."""
    import family_reference as fam
    import optax

    grads = signals.swinging(400, seed=3, dtype=jnp.float64)
    runs = {
        "adam": adamjax.adam(1e-3),
        "radam": optax.radam(1e-3),
        "adopt": optax.contrib.adopt(1e-3),
        "lamb": optax.lamb(1e-3),
    }
    fig = plot.compare(runs, {"swinging": grads}, layout="runs", learning_rate=1e-3, params=1.0, window=100)
    assert [ax.get_ylabel() for ax in fig.axes[::2]] == ["gradient $g_t$", "adam", "radam", "adopt", "lamb"]
    g = np.asarray(grads, np.float64)
    # Each row's curve is that member's step: checked against the NumPy transcriptions (not optax itself).
    expected = {
        "radam": fam.open_loop_updates("radam", g[:, None], np.ones(1), learning_rate=1e-3),
        "adopt": fam.open_loop_updates("adopt", g[:, None], np.ones(1), learning_rate=1e-3),
        "lamb": fam.open_loop_updates("lamb", g[:, None], np.ones(1), learning_rate=1e-3),
        "adam": fam.open_loop_updates("adamw", g[:, None], np.ones(1), learning_rate=1e-3, weight_decay=0.0),
    }
    for row, name in enumerate(["adam", "radam", "adopt", "lamb"], start=1):
        for column, span in enumerate([slice(0, 100), slice(300, 400)]):
            ax = fig.axes[2 * row + column]
            own = [line for line in ax.get_lines() if line.get_label() == f"_{name}"]
            steps = -np.concatenate(expected[name])[span] / 1e-3
            np.testing.assert_allclose(own[0].get_ydata(), steps, rtol=1e-9, atol=1e-9)
            if name != "adam":  # the reference is drawn behind, in grey, on the same scale
                behind = lines_by_label(ax)["adam (drawn behind each other member)"]
                assert behind.get_zorder() < own[0].get_zorder()
                assert ax.get_ylim() == fig.axes[2 + column].get_ylim()
    check_figure(fig, tmp_path / "family.png")


def test_compare_runs_layout_notes_coinciding_members_and_checks_its_arguments(tmp_path):
    import optax

    runs = {"adam": adamjax.adam(1e-3), "amsgrad": adamjax.amsgrad(1e-3), "sgd": optax.sgd(1e-3)}
    fig = plot.compare(runs, signals.sine(300), layout="runs", learning_rate=1e-3)
    legend = [text.get_text() for text in fig.legends[0].get_texts()]
    assert "amsgrad coincides with adam" in legend and not any("sgd" in t for t in legend)
    check_figure(fig, tmp_path / "runs.png")
    # In the fields layout an optax member without internals is left out of the rows it cannot fill.
    fig = plot.compare(runs, signals.sine(300), fields=("direction", "step"), learning_rate=1e-3)
    assert [line.get_label() for line in fig.axes[1].get_lines()][:2] == ["adam", "amsgrad"]
    assert "sgd" in [line.get_label() for line in fig.axes[2].get_lines()]
    np.testing.assert_allclose(lines_by_label(fig.axes[2])["sgd"].get_ydata(), np.asarray(signals.sine(300)), rtol=1e-6)
    with pytest.raises(ValueError, match="pass `learning_rate=`"):
        plot.compare(runs, signals.sine(30), layout="runs")
    with pytest.raises(ValueError, match="draws one field, one row per run"):
        plot.compare(runs, signals.sine(30), layout="runs", fields=("step", "update"), learning_rate=1e-3)
    with pytest.raises(ValueError, match="must be 'fields' or 'runs'"):
        plot.compare(runs, signals.sine(30), layout="columns")
    with pytest.raises(ValueError, match="without an adamjax core records only"):
        plot.compare({"sgd": optax.sgd(1e-3)}, signals.sine(30), fields=("denom",))


@pytest.mark.slow
def test_the_family_example_draws_the_comparison_and_shows_its_defaults(tmp_path):
    from helpers import assert_drawn_png, example_help, run_example

    shown = " ".join(example_help("family_compare.py").split())
    assert "(default: family_compare.png)" in shown and "(default: 2000)" in shown and "(default: 0.001)" in shown
    out = tmp_path / "new" / "family.png"
    result = run_example("family_compare.py", "--out", out, "--steps", "600", "--window", "150")
    assert_drawn_png(out)
    assert f"wrote {out}" in result.stdout


STORED = "quantized run: stored (dequantized),\nwhat the next step starts from"
COMPUTED = "quantized run: computed in the step"
FLOAT32 = "float32 Adam on the same gradients"


def test_quantization_figure_draws_stored_moments_their_error_and_the_step(tmp_path):
    grads = signals.swinging(400, seed=1)
    fig = plot.quantization(grads, window=100)
    check_figure(fig, tmp_path / "quantization.png")
    rms = float(np.sqrt(np.mean(np.asarray(grads, np.float64) ** 2)))
    assert fig.get_suptitle().startswith("What do 8-bit and 4-bit moments store of a weight's m and v")
    assert f"standard deviation {rms:.3g} (the weight's gradient RMS)" in fig.get_suptitle()
    expected = ref.open_loop(np.asarray(grads), ref.Variant())
    axes = np.array(fig.axes).reshape(5, 2)
    assert [ax.get_title() for ax in axes[0]] == [
        "8-bit moments, a block of 256 weights",
        "4-bit moments, a block of 128 weights",
    ]
    for column in range(2):
        for row, moment in ((0, "mu"), (2, "nu")):
            lines = lines_by_label(axes[row, column])
            np.testing.assert_allclose(
                lines[FLOAT32].get_ydata(), getattr(expected, moment)[-100:], rtol=1e-5, atol=1e-5
            )
            stored, computed = lines[STORED].get_ydata(), lines[COMPUTED].get_ydata()
            error = lines_by_label(axes[row + 1, column])["storage error: stored $-$ computed"].get_ydata()
            np.testing.assert_allclose(error, stored - computed, rtol=1e-6, atol=1e-9)
            assert np.any(error != 0)
        steps = lines_by_label(axes[4, column])
        np.testing.assert_allclose(steps[FLOAT32].get_ydata(), expected.update[-100:], rtol=1e-4, atol=1e-5)
        assert steps[FLOAT32].get_xdata()[[0, -1]].tolist() == [301, 400]


def test_a_weight_alone_in_its_block_loses_only_negative_first_moments(tmp_path):
    fig = plot.quantization(signals.swinging(300, seed=2), bits=(4,), neighbour_noise=0.0, window=None)
    check_figure(fig, tmp_path / "alone.png")
    assert "the weight is alone in its block" in fig.get_suptitle()
    lines = lines_by_label(fig.axes[0])
    stored, computed = lines[STORED].get_ydata(), lines[COMPUTED].get_ydata()
    negative = computed < 0
    assert negative.any() and (~negative).any()
    np.testing.assert_array_equal(stored[~negative], computed[~negative])
    # The signed 4-bit codebook's most negative entry is -0.8875 (no -1): a negative scale-sized m shrinks.
    np.testing.assert_allclose(stored[negative], 0.8875 * computed[negative], rtol=1e-6)
    legend = [text.get_text() for text in fig.legends[0].get_texts()]
    assert "4 bits: every stored $v_t$ in these steps equals the computed one" in legend


def test_quantization_figure_refuses_bad_arguments():
    with pytest.raises(ValueError, match=r"`adamjax.plot.quantization\(bits=...\)` must be a sequence of 8 and 4"):
        plot.quantization(signals.sine(50), bits=(16,))
    with pytest.raises(ValueError, match=r"must be one weight's gradients, shape \[T\]; got shape \(50, 2\)"):
        plot.quantization(jnp.ones((50, 2)))
    with pytest.raises(
        ValueError, match=r"`adamjax.plot.quantization\(neighbour_noise=...\)` must be a finite number >= 0"
    ):
        plot.quantization(signals.sine(50), neighbour_noise=-1.0)
