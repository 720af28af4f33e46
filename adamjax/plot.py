r"""Figures of :func:`adamjax.simulate` traces (needs matplotlib: ``pip install matplotlib``).

Each figure answers one question and says which in its title; the settings the
traces were simulated with (``trace.settings``) appear in the title or the
legend, every axis is labelled, the step has a panel of its own, the legend
sits outside the axes, and curves that coincide stay visible (different line
styles and markers, and a note in the legend).

* :func:`trace`, :func:`windows`: one run, whole or its first and last steps.
* :func:`compare`: several optimizers side by side on the same signals.
* One figure per question: :func:`suppression` (why the second moment
  suppresses a swinging gradient), :func:`bias_correction` (the first steps),
  :func:`centered` (centered second moment or not), :func:`amsgrad` (its
  running maximum), :func:`power` (a p-th power moment against Adam),
  :func:`b2_sweep` (what ``b2`` changes), :func:`quantization` (what 8-bit
  and 4-bit storage keeps of the moments, and what that does to the step).

Importing this module does not import matplotlib; each function does, and
raises ``ImportError`` with the install command when it is missing. Every
function builds a ``matplotlib.figure.Figure`` directly (no pyplot state, so
it works under the Agg backend, in scripts, tests and servers), returns it,
and never calls ``show()``: save it with ``fig.savefig("adam.png")`` or let a
notebook display it.

Examples:
  >>> import adamjax
  >>> trace = adamjax.simulate(adamjax.adam(1e-3), adamjax.signals.sine(300))
  >>> fig = adamjax.plot.trace(trace)
  >>> fig.axes[0].get_title()
  'gradient and moments'
  >>> fig = adamjax.plot.compare({"b2=0.9": adamjax.adam(1e-3, b2=0.9), "b2=0.999": adamjax.adam(1e-3)},
  ...                            adamjax.signals.sine(300))
  >>> fig.savefig("adam.png")  # doctest: +SKIP
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp
import numpy as np

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from adamjax._simulate import Trace

__all__ = [
    "amsgrad",
    "b2_sweep",
    "bias_correction",
    "centered",
    "compare",
    "compare_traces",
    "linear_trend",
    "power",
    "quantization",
    "suppression",
    "trace",
    "windows",
]

_INSTALL = "adamjax.plot needs matplotlib, which is not installed: `pip install matplotlib`."

# Axis labels: what each Trace field is, true with and without bias correction.
_FIELD_LABELS = {
    "grad": "gradient $g_t$",
    "mu": "first moment $m_t$",
    "nu": "second moment $v_t$",
    "mu_hat": "first moment used\n" r"($\hat m_t$ or $m_t$)",
    "nu_hat": "second moment used\n" r"($\hat v_t$ or $v_t$)",
    "denom": "denominator\n" r"$\hat v_t^{1/p} + \epsilon$",
    "direction": "step\n" r"$\hat m_t / (\hat v_t^{1/p} + \epsilon)$",
    "update": "update $u_t$\n(after the learning rate)",
    "step": "step $-u_t / \\eta$\n(update over the learning rate)",
    "params": r"parameter $\theta_t$",
    "nu_max": r"running maximum $\max_{s \leq t} v_s$",
    "mu_stored": "stored first moment\n" r"$\tilde m_t$ (dequantized)",
    "nu_stored": "stored second moment\n" r"$\tilde v_t$ (dequantized)",
    "mu_error": "storage error of $m_t$\n" r"$\tilde m_t - m_t$",
    "nu_error": "storage error of $v_t$\n" r"$\tilde v_t - v_t$",
}
# Adam's own settings, left out of titles and legends when a run has them.
_PLAIN = {
    "eps_root": 0.0,
    "power": 2.0,
    "centered": False,
    "amsgrad": False,
    "nesterov": False,
    "bias_correction": True,
}
_LINESTYLES = ("-", "--", ":", "-.")
_MARKERS = (None, "o", "s", "^", "D", "v", "P", "X")
_LINEWIDTHS = (2.6, 1.6, 1.6, 1.4, 1.4, 1.2, 1.2, 1.2)


def _new_figure(figsize: tuple[float, float]) -> Figure:
    try:
        from matplotlib.figure import Figure
    except ImportError as err:
        raise ImportError(_INSTALL) from err
    return Figure(figsize=figsize, layout="constrained")


def linear_trend(values: Any) -> np.ndarray:
    r"""The least-squares line through ``values`` over :math:`t = 1, \dots, T`, evaluated at each ``t``.

    The "trend" lines of :func:`trace`: ``np.poly1d(np.polyfit(t, values, 1))(t)``.

    Args:
      values: a ``[T]`` array.

    Returns:
      A float64 ``[T]`` array :math:`a t + b` with :math:`(a, b)` minimising
      :math:`\sum_t (a t + b - \text{values}_t)^2` (a constant for ``T = 1``).

    Examples:
      >>> from adamjax import plot
      >>> plot.linear_trend([1.0, 2.0, 4.0]).round(3).tolist()
      [0.833, 2.333, 3.833]
    """
    values = np.asarray(values, np.float64)
    steps = np.arange(1, values.shape[0] + 1, dtype=np.float64)
    if values.shape[0] < 2:
        return values.copy()
    slope, intercept = np.polyfit(steps, values, 1)
    return slope * steps + intercept


def _series(trace: Trace, field: str, index: Any) -> np.ndarray:
    """One coordinate of ``trace.<field>`` over time, as float64."""
    if field not in _FIELD_LABELS:
        raise ValueError(f"`adamjax.plot`: unknown trace field {field!r}; choose from {', '.join(_FIELD_LABELS)}.")
    values = getattr(trace, "update" if field == "step" else field)
    if values is None:
        raise ValueError(
            f"`adamjax.plot`: this trace has no {field!r} (`nu_max` is recorded only with amsgrad=True; the "
            "stored moments only where the state holds one Adam state; a transformation without an adamjax core "
            "records only 'grad', 'update', 'step' and 'params')."
        )
    values = np.asarray(values, np.float64)
    if index is not None:
        index = index if isinstance(index, tuple) else (index,)
        values = values[(slice(None), *index)]
    if values.ndim != 1:
        if math.prod(values.shape[1:]) == 1:
            return values.reshape(-1)
        raise ValueError(
            f"`adamjax.plot`: the trace holds arrays of shape {values.shape[1:]} per step; pass `index=` to pick "
            "one coordinate (for example `index=0` or `index=(0, 1)`)."
        )
    return values


def _power(trace: Trace, power: float | None) -> float:
    """The moment's order: as given, else the trace's own, else 2."""
    if power is not None:
        return float(power)
    settings = getattr(trace, "settings", None)
    if settings is not None and settings.power is not None:
        return float(settings.power)
    return 2.0


def _root(values: np.ndarray, power: float) -> np.ndarray:
    return values if math.isinf(power) else np.power(values, 1.0 / power)


def _root_label(symbol: str, power: float) -> str:
    if math.isinf(power):
        return f"${symbol}$"
    if power == 2:
        return rf"$\sqrt{{{symbol}}}$"
    return f"${symbol}^{{1/{power:g}}}$"


def _check_window(window: Any, steps: int) -> int:
    if isinstance(window, bool) or not isinstance(window, int | np.integer) or not 1 <= window <= steps:
        raise ValueError(
            f"`adamjax.plot(window=...)` must be an integer in [1, {steps}] (the trace's length); got {window!r}."
        )
    return int(window)


def _check_step(step: str) -> str:
    if step not in ("direction", "update"):
        raise ValueError(f"`adamjax.plot(step=...)` must be 'direction' or 'update'; got {step!r}.")
    return step


def _style(number: int, length: int, log_steps: bool = False) -> dict[str, Any]:
    """Line style of the ``number``-th curve of a panel: later curves thinner, dashed and marked.

    So a curve drawn over an earlier one that it equals leaves the earlier one
    visible around it, and its markers (offset from curve to curve) show it is
    there.
    """
    style: dict[str, Any] = {
        "linestyle": _LINESTYLES[number % len(_LINESTYLES)],
        "linewidth": _LINEWIDTHS[number % len(_LINEWIDTHS)],
    }
    marker = _MARKERS[number % len(_MARKERS)]
    if length <= 40:
        style.update(marker=marker or "o", markersize=4.5 if number == 0 else 3.5)
    elif marker is not None and log_steps:
        # Evenly spaced on a log axis, shifted a little from curve to curve.
        spots = np.unique(np.geomspace(1, length, 14) * (1 + 0.04 * number)).astype(int) - 1
        style.update(marker=marker, markersize=4, markevery=sorted({int(i) for i in spots if 0 <= i < length}))
    elif marker is not None:
        every = max(1, length // 12)
        style.update(marker=marker, markersize=4, markevery=(number * every // len(_MARKERS) % every, every))
    return style


def _settings_text(traces: Sequence[Trace]) -> tuple[str, list[str]]:
    """What all traces share, as text, and the names of the settings that differ."""
    settings = [getattr(t, "settings", None) for t in traces]
    present = [s for s in settings if s is not None]
    if not settings or len(present) < len(settings):
        return "", []
    settings = present
    names = ["optimizer", "learning_rate", "b1", "b2", "eps", "eps_root", "power"]
    names += ["centered", "amsgrad", "nesterov", "bias_correction"]
    same = [name for name in names if len({getattr(s, name) for s in settings}) == 1]
    varied = [name for name in names if name not in same]
    shown = tuple(name for name in same if name not in ("optimizer",))
    shown = tuple(name for name in shown if _PLAIN.get(name, object()) != getattr(settings[0], name))
    return settings[0].describe(shown), varied


def _title(fig: Figure, question: str, traces: Sequence[Trace], title: str | None) -> None:
    """The figure's title: the question (or ``title``) and, below, the settings all runs share."""
    shared, _ = _settings_text(traces)
    text = title or question
    if shared:
        text += f"\n{shared}"
    fig.suptitle(text)


def _legend(fig: Figure, notes: Sequence[str] = (), columns: int | None = None) -> None:
    """One legend for the figure, outside the axes on the right, with ``notes`` as extra lines.

    With ``columns``, below the axes in that many columns.
    """
    from matplotlib.lines import Line2D

    handles, labels = [], []
    for ax in fig.axes:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            if label not in labels:
                handles.append(handle)
                labels.append(label)
    for note in dict.fromkeys(notes):
        handles.append(Line2D([], [], linestyle="none"))
        labels.append(note)
    if not handles:
        return
    if columns is not None:
        fig.legend(handles, labels, loc="outside lower center", fontsize="small", handlelength=3, ncols=columns)
    elif fig.get_size_inches()[0] >= 12:
        fig.legend(handles, labels, loc="outside right upper", fontsize="small", handlelength=3)
    else:  # a narrow figure: below the axes, where it cannot meet the title
        fig.legend(
            handles, labels, loc="outside lower center", fontsize="small", handlelength=3, ncols=min(len(handles), 2)
        )


def _coinciding(curves: dict[str, np.ndarray]) -> list[tuple[str, str]]:
    """Pairs of curves in one panel that a reader could not tell apart."""
    if not curves:
        return []
    values = np.concatenate([c[np.isfinite(c)] for c in curves.values()] or [np.zeros(1)])
    scale = float(np.ptp(values)) if values.size else 0.0
    scale = scale or float(np.max(np.abs(values), initial=0.0)) or 1.0
    names = list(curves)
    pairs = []
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            if curves[a].shape == curves[b].shape and np.allclose(curves[a], curves[b], rtol=0, atol=5e-3 * scale):
                pairs.append((a, b))
    return pairs


def _draw_curves(
    ax: Axes, steps: np.ndarray, curves: dict[str, np.ndarray], row_name: str, log_steps: bool, names: dict[str, str]
) -> list[str]:
    """Draws one panel's curves (legend entries ``names[label]``); returns notes on the curves that coincide."""
    order = list(names)
    for label, values in curves.items():
        number = order.index(label) if label in order else len(order)
        ax.plot(
            steps,
            values,
            label=names.get(label, label),
            color=f"C{number % 10}",
            **_style(number, len(steps), log_steps),
        )
    return [f"{a} and {b} coincide in '{row_name}'" for a, b in _coinciding(curves)]


def _finish_axes(ax: Axes, ylabel: str, xlabel: bool, log_steps: bool, zero_line: bool = True) -> None:
    if zero_line:
        ax.axhline(0.0, color="black", linewidth=0.6, zorder=0.5)
    if log_steps:
        ax.set_xscale("log")
    ax.grid(True, alpha=0.35)
    ax.set_ylabel(ylabel)
    if xlabel:
        ax.set_xlabel("step $t$" + (" (log scale)" if log_steps else ""))


def trace(
    trace: Trace,
    *,
    index: Any = None,
    power: float | None = None,
    step: str = "direction",
    trends: bool = True,
    log_steps: bool = False,
    title: str | None = None,
    figsize: tuple[float, float] = (11, 6.5),
) -> Figure:
    r"""What Adam made of one gradient stream: the gradient and its moments above, the step below.

    The upper panel draws, against the step :math:`t`, the gradient
    :math:`g_t`, the first moment :math:`\hat m_t` and the denominator
    :math:`\hat v_t^{1/p} + \epsilon` (the root of the second moment), with
    their least-squares lines (:func:`linear_trend`); the lower panel the step
    :math:`\hat m_t / (\hat v_t^{1/p} + \epsilon)`, whose size is what matters
    (about 1 at most for Adam) and would be squashed on the gradient's scale.

    Args:
      trace: a :class:`adamjax.Trace`.
      index: which coordinate to draw when each step holds an array.
      power: the moment's order :math:`p` for the labels; by default the
        trace's own (``trace.settings.power``).
      step: ``"direction"`` draws :math:`\hat m_t/(\hat v_t^{1/p}+\epsilon)`,
        on the gradient's scale; ``"update"`` the final update after the
        learning rate.
      trends: draw the trend lines.
      log_steps: a logarithmic step axis (for the first steps).
      title: the figure's title; by default the question it answers.
      figsize: in inches.

    Returns:
      A ``matplotlib.figure.Figure`` with two axes sharing the step axis.

    Examples:
      >>> import adamjax
      >>> fig = adamjax.plot.trace(adamjax.simulate(adamjax.adam(1e-3), adamjax.signals.pulses()))
      >>> [ax.get_ylabel() for ax in fig.axes]
      ['gradient and moments', 'step\n$\\hat m_t / (\\hat v_t^{1/p} + \\epsilon)$']
    """
    step = _check_step(step)
    power = _power(trace, power)
    grad = _series(trace, "grad", index)
    mu_hat = _series(trace, "mu_hat", index)
    denom = _series(trace, "denom", index)
    steps = np.arange(1, grad.shape[0] + 1)
    fig = _new_figure(figsize)
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=(3, 2))
    marker = {"marker": "o", "markersize": 3.5} if len(steps) <= 40 else {}
    top.plot(steps, grad, color="0.55", linewidth=1, label=_FIELD_LABELS["grad"], **marker)
    top.plot(steps, mu_hat, color="tab:orange", linewidth=1.6, label=r"first moment $\hat m_t$", **marker)
    root = _root_label(r"\hat v_t", power) + r" $+\ \epsilon$"
    top.plot(steps, denom, color="tab:green", linewidth=1.6, label="denominator " + root, **marker)
    if trends:
        top.plot(steps, linear_trend(mu_hat), color="tab:orange", linestyle="--", label=r"$\hat m_t$ trend")
        top.plot(steps, linear_trend(denom), color="tab:green", linestyle="--", label=root + " trend")
    bottom.plot(steps, _series(trace, step, index), color="tab:blue", label=_FIELD_LABELS[step], **marker)
    top.set_title("gradient and moments")
    bottom.set_title("the step" if step == "direction" else "the update")
    _finish_axes(top, "gradient and moments", False, log_steps)
    _finish_axes(bottom, _FIELD_LABELS[step], True, log_steps)
    _title(fig, "What does Adam make of this gradient stream?", [trace], title)
    _legend(fig)
    return fig


def windows(
    trace: Trace,
    window: int = 200,
    *,
    index: Any = None,
    power: float | None = None,
    step: str = "direction",
    title: str | None = None,
    figsize: tuple[float, float] = (13, 7.5),
) -> Figure:
    r"""A long run's first and last ``window`` steps side by side: the start, where bias correction acts, and the steady state.

    The upper row shows, as markers, the gradient, :math:`m_t`, :math:`\hat
    m_t`, the root of the raw moment :math:`v_t^{1/p}` and the denominator
    :math:`\hat v_t^{1/p} + \epsilon`; the lower row the step, on its own axis.
    The raw moments are rings around the corrected ones' dots, so both stay
    visible where bias correction has faded and they coincide.

    Args:
      trace: a :class:`adamjax.Trace`.
      window: steps per column, ``1 <= window <= T``.
      index: which coordinate to draw when each step holds an array.
      power: the moment's order :math:`p` (the raw moment's root is drawn as
        :math:`v_t^{1/p}`); by default the trace's own.
      step: ``"direction"`` or ``"update"``, as in :func:`trace`.
      title: the figure's title; by default the question it answers.
      figsize: in inches.

    Returns:
      A ``matplotlib.figure.Figure`` with four axes: moments (first, last)
      above, steps (first, last) below.

    Examples:
      >>> import adamjax
      >>> trace = adamjax.simulate(adamjax.adam(1e-3), adamjax.signals.swinging_soft(1000))
      >>> [ax.get_title() for ax in adamjax.plot.windows(trace, 100).axes]
      ['first 100 steps', 'last 100 steps', '', '']
    """
    step = _check_step(step)
    power = _power(trace, power)
    total = _series(trace, "grad", index).shape[0]
    window = _check_window(window, total)
    fig = _new_figure(figsize)
    axes = fig.subplots(2, 2, sharex="col", height_ratios=(3, 2))
    marker = {"marker": "o", "markersize": 2.5, "linestyle": "none"}
    # The raw moments as rings around the corrected ones' dots: once bias correction has
    # faded they coincide, and a ring with a dot inside shows both.
    ring = {"marker": "o", "markersize": 6, "markerfacecolor": "none", "markeredgewidth": 0.8, "linestyle": "none"}
    curves = (
        ("grad", _FIELD_LABELS["grad"], "tab:cyan", {"marker": "x", "markersize": 4, "linestyle": "none"}),
        ("mu", "$m_t$", "red", ring),
        ("mu_hat", r"$\hat m_t$", "orange", marker),
        ("raw_root", _root_label("v_t", power), "lime", ring),
        ("denom", _root_label(r"\hat v_t", power) + r" $+\ \epsilon$", "darkgreen", marker),
    )
    for column, start in enumerate((0, total - window)):
        steps = np.arange(start + 1, start + window + 1)
        span = slice(start, start + window)
        top, bottom = axes[0, column], axes[1, column]
        for field, label, color, style in curves:
            if field == "raw_root":
                values = _root(_series(trace, "nu", index), power)
            else:
                values = _series(trace, field, index)
            top.plot(steps, values[span], color=color, label=label, **style)
        bottom.plot(steps, _series(trace, step, index)[span], color="blue", label=_FIELD_LABELS[step], **marker)
        top.set_title(f"{'first' if column == 0 else 'last'} {window} steps")
        _finish_axes(top, "gradient and moments", False, False)
        _finish_axes(bottom, _FIELD_LABELS[step], True, False)
        bottom.set_xlim(start + 0.5, start + window + 0.5)
    _title(fig, "How does Adam start, and where does it settle?", [trace], title)
    _legend(fig)
    return fig


def _has_core(tx: Any, grad: Any, params: Any) -> bool:
    """Whether one update of ``tx`` runs an adamjax core (traced abstractly: nothing is computed)."""
    import jax.numpy as jnp

    from adamjax import _core

    dtype = jnp.asarray(grad).dtype
    example = jnp.zeros(np.shape(grad)[1:], dtype) if params is None else jnp.asarray(params, dtype)
    # Another library's code may rely on standard promotion (optax's radam mixes a Python float and an int32).
    with _core.record_steps() as recorded, jax.numpy_dtype_promotion("standard"):
        jax.eval_shape(lambda p: tx.update(p, tx.init(p), p), example)
    return bool(recorded)


def _updates_only(tx: Any, grads: Any, params: Any) -> Trace:
    """Any optax transformation on a gradient signal: what it does without an adamjax core to read.

    The gradients, updates and parameters at every step (open loop, one
    ``jax.lax.scan``); the moments, denominator and direction are ``None``.
    """
    import jax.numpy as jnp

    from adamjax._simulate import Trace

    grads = jnp.asarray(grads)
    start = jnp.zeros(grads.shape[1:], grads.dtype) if params is None else jnp.asarray(params, grads.dtype)

    def body(carry, grad):
        theta, state = carry
        update, state = tx.update(grad, state, theta)
        theta = theta + update
        return (theta, state), (update, theta)

    with jax.numpy_dtype_promotion("standard"):  # as in _has_core: the promotion rules it was written for
        _, (updates, thetas) = jax.lax.scan(body, (start, tx.init(start)), grads)
    return Trace(grads, None, None, None, None, None, None, updates, thetas)  # type: ignore[arg-type]


def _run_one(tx: Any, grads: Any, params: Any) -> Trace:
    from adamjax._simulate import simulate

    if _has_core(tx, grads, params):
        return simulate(tx, grads, params=params)
    return _updates_only(tx, grads, params)


def _as_runs(runs: Any, grads: Any, labels: Sequence[str] | None, params: Any = None) -> dict[str, dict[str, Trace]]:
    """``{signal name: {run label: Trace}}`` from what :func:`compare` accepts."""
    from adamjax import _core
    from adamjax._simulate import Trace

    if isinstance(runs, Trace):
        if labels is None:
            raise ValueError(
                "`adamjax.plot.compare(trace, labels=...)`: a single Trace is read as a stack of runs (its leading "
                "axis, as `jax.vmap` returns); pass one label per run, or pass a mapping {label: trace}."
            )
        labels = list(labels)
        count = np.shape(runs.grad)[0]
        if len(labels) != count:
            raise ValueError(
                f"`adamjax.plot.compare(labels=...)` needs {count} labels (one per run); got {len(labels)}."
            )
        runs = {label: jax.tree.map(lambda x, i=i: x[i], runs) for i, label in enumerate(labels)}
    elif labels is not None:
        raise ValueError("`adamjax.plot.compare(labels=...)` is only for a stacked Trace; a mapping has its keys.")
    if not isinstance(runs, Mapping) or not runs:
        raise ValueError(
            "`adamjax.plot.compare(runs)` needs a non-empty mapping {name: optimizer, config or Trace}; "
            f"got {type(runs).__name__}."
        )
    if grads is None:
        signal_map: dict[str, Any] = {}
    elif isinstance(grads, Mapping):
        signal_map = dict(grads)
    else:
        signal_map = {"": grads}

    def optimizer(name: str, value: Any) -> Any:
        if isinstance(value, _core.AdamConfig):
            return _core.transformation(value)
        if isinstance(value, Mapping):
            from adamjax import scale_by_adam

            return scale_by_adam(**value)
        if callable(getattr(value, "init", None)) and callable(getattr(value, "update", None)):
            return value
        raise TypeError(
            f"`adamjax.plot.compare(runs=...)`: {name!r} must be a Trace, an optax GradientTransformation, an "
            f"adamjax.AdamConfig or a dict of scale_by_adam arguments; got {type(value).__name__}."
        )

    if not signal_map:
        traces = {}
        for name, value in runs.items():
            if not isinstance(value, Trace):
                raise ValueError(
                    f"`adamjax.plot.compare(runs, grads=...)`: {name!r} is an optimizer, so pass the gradient "
                    "signal(s) to run it on as `grads`."
                )
            traces[name] = value
        return {"": traces}
    built = {name: value if isinstance(value, Trace) else optimizer(name, value) for name, value in runs.items()}
    return {
        signal: {
            name: value if isinstance(value, Trace) else _run_one(value, g, params) for name, value in built.items()
        }
        for signal, g in signal_map.items()
    }


def _spans(total: int, window: int | None, spans: Sequence[Any] | None) -> list[tuple[int, int, str]]:
    if window is not None and spans is not None:
        raise ValueError("`adamjax.plot.compare`: pass `window=` or `spans=`, not both.")
    if window is not None:
        window = _check_window(window, total)
        return [(0, window, f"first {window} steps"), (total - window, total, f"last {window} steps")]
    if spans is None:
        return [(0, total, "")]
    found = []
    for span in spans:
        start, stop, *name = span
        if not (
            isinstance(start, int | np.integer) and isinstance(stop, int | np.integer) and 0 <= start < stop <= total
        ):
            raise ValueError(
                f"`adamjax.plot.compare(spans=...)`: each span is (start, stop[, name]) with 0 <= start < stop <= "
                f"{total}; got {span!r}."
            )
        found.append((int(start), int(stop), name[0] if name else f"steps {start + 1} to {stop}"))
    return found


def compare(
    runs: Mapping[str, Any] | Trace,
    grads: Any = None,
    *,
    labels: Sequence[str] | None = None,
    fields: Sequence[str] | None = None,
    show_grad: bool = True,
    window: int | None = None,
    spans: Sequence[Any] | None = None,
    log_steps: bool = False,
    index: Any = None,
    layout: str = "fields",
    learning_rate: float | None = None,
    params: Any = None,
    title: str | None = None,
    figsize: tuple[float, float] | None = None,
) -> Figure:
    r"""Several optimizers side by side on the same signals: one curve per optimizer, one row per quantity.

    The first row draws the gradient (once per signal: it is the same for every
    run), then one row per field. Columns are the signals, each cut into
    ``spans`` or, with ``window``, into its first and last ``window`` steps.
    The figure's title says what all runs share (read from each trace's
    settings) and the legend names each run; where two runs draw the same
    curve, the second is drawn thinner, dashed and marked, and the legend says
    they coincide.

    Any optax transformation can be compared: one containing an adamjax core
    is simulated with its internals (:func:`adamjax.simulate`); any other
    (``optax.radam``, ``optax.contrib.adopt``, ``optax.lamb``, ...) is run on
    the same signal recording only its updates and parameters, so draw
    ``"update"``, ``"params"`` or ``"step"`` for it -- ``"step"`` is the update
    over the learning rate, :math:`-u_t/\eta`, the optimizer's own step
    whatever :math:`\eta` is (pass ``learning_rate``). With many members,
    ``layout="runs"`` gives each its own row, the first run drawn behind
    every other in grey for reference, all on one vertical scale per column.

    Args:
      runs: a mapping from a name to an optimizer (any optax transformation),
        an :class:`adamjax.AdamConfig`, a dict of
        :func:`adamjax.scale_by_adam` arguments, or an already simulated
        :class:`adamjax.Trace`; or one Trace whose leading axis indexes the
        runs (what ``jax.vmap`` over :func:`adamjax.simulate` returns) with
        ``labels``.
      grads: the gradient signal to run the optimizers on (a ``[T]`` array),
        or a mapping ``{name: signal}`` for one column per signal; not needed
        when ``runs`` holds traces only.
      labels: one label per run of a stacked trace.
      fields: the Trace fields to draw below the gradient, one row each
        (``"mu_hat"``, ``"nu_hat"``, ``"denom"``, ``"direction"``,
        ``"update"``, ``"step"``, ``"params"``, ``"nu_max"``, ...); by default
        ``("denom", "direction")``, or ``("step",)`` with ``layout="runs"``
        (which draws exactly one field).
      show_grad: draw the gradient row.
      window: draw the first and the last ``window`` steps of each signal.
      spans: instead, parts of each signal to draw side by side, as
        ``(start, stop)`` or ``(start, stop, name)`` with zero-based ``start``
        and exclusive ``stop`` -- each part gets its own vertical scale, so a
        ±0.001 stretch is not flattened by a ±1 one.
      log_steps: a logarithmic step axis.
      index: which coordinate to draw when each step holds an array.
      layout: ``"fields"`` (one row per field, one curve per run) or
        ``"runs"`` (one row per run).
      learning_rate: the learning rate :math:`\eta` all the optimizers were
        built with; needed for the ``"step"`` field.
      params: the initial parameter (zeros by default); it matters to
        optimizers that read the parameters, such as LAMB's trust ratio or a
        weight decay.
      title: the figure's title (the question the comparison answers).
      figsize: in inches; by default sized to the grid.

    Returns:
      A ``matplotlib.figure.Figure``.

    Raises:
      ValueError: an unknown field or layout, optimizers without ``grads``,
        bad ``labels``, ``window`` or ``spans``, ``"step"`` without
        ``learning_rate``.
      TypeError: a run that is neither an optimizer, a config nor a trace.

    Examples:
      >>> import adamjax
      >>> runs = {"adam": adamjax.adam(1e-3), "centered": adamjax.adam(1e-3, centered=True)}
      >>> fig = adamjax.plot.compare(runs, {"sine": adamjax.signals.sine(300),
      ...                                   "pulses": adamjax.signals.pulses()})
      >>> len(fig.axes)  # (gradient, denominator, step) x two signals
      6

      Any optax transformation, one row per optimizer:

      >>> import optax
      >>> runs = {"adam": adamjax.adam(1e-3), "radam": optax.radam(1e-3), "lamb": optax.lamb(1e-3)}
      >>> fig = adamjax.plot.compare(runs, adamjax.signals.sine(300), layout="runs", learning_rate=1e-3,
      ...                            params=1.0)
      >>> [ax.get_ylabel() for ax in fig.axes]
      ['gradient $g_t$', 'adam', 'radam', 'lamb']
    """
    return compare_traces(
        _as_runs(runs, grads, labels, params),
        fields=fields,
        show_grad=show_grad,
        window=window,
        spans=spans,
        log_steps=log_steps,
        index=index,
        layout=layout,
        learning_rate=learning_rate,
        title=title,
        figsize=figsize,
    )


def _has_field(trace: Trace, field: str) -> bool:
    return getattr(trace, "update" if field == "step" else field) is not None


def compare_traces(
    per_signal: Mapping[str, Mapping[str, Trace]],
    *,
    fields: Sequence[str] | None = None,
    show_grad: bool = True,
    window: int | None = None,
    spans: Sequence[Any] | None = None,
    log_steps: bool = False,
    index: Any = None,
    layout: str = "fields",
    learning_rate: float | None = None,
    title: str | None = None,
    figsize: tuple[float, float] | None = None,
) -> Figure:
    r""":func:`compare` for runs already simulated on several signals: ``{signal: {run name: Trace}}``.

    One column (or one per span) for each signal; the arguments are those of
    :func:`compare`. A run without a field (``nu_max`` of a run without
    AMSGrad, the moments of a transformation without an adamjax core) is left
    out of that row.

    Examples:
      >>> import adamjax
      >>> tx = adamjax.adam(1e-3)
      >>> runs = {name: {"adam": adamjax.simulate(tx, g)}
      ...         for name, g in [("sine", adamjax.signals.sine(300)), ("pulses", adamjax.signals.pulses())]}
      >>> [ax.get_title() for ax in adamjax.plot.compare_traces(runs).axes[:2]]
      ['sine', 'pulses']
    """
    if layout not in ("fields", "runs"):
        raise ValueError(f"`adamjax.plot.compare(layout=...)` must be 'fields' or 'runs'; got {layout!r}.")
    per_signal = {signal: dict(traces) for signal, traces in per_signal.items()}
    if not per_signal or not all(per_signal.values()):
        raise ValueError("`adamjax.plot.compare_traces` needs at least one trace per signal.")
    if fields is None:
        fields = ("denom", "direction") if layout == "fields" else ("step",)
    fields = list(fields)
    if not fields and not show_grad:
        raise ValueError("`adamjax.plot.compare(fields=...)` needs at least one field (or show_grad=True).")
    if layout == "runs" and len(fields) != 1:
        raise ValueError(
            f"`adamjax.plot.compare(layout='runs')` draws one field, one row per run; got fields={tuple(fields)!r}."
        )
    for field in fields:
        if field not in _FIELD_LABELS:
            raise ValueError(f"`adamjax.plot`: unknown trace field {field!r}; choose from {', '.join(_FIELD_LABELS)}.")
    if "step" in fields and learning_rate is None:
        raise ValueError(
            "`adamjax.plot.compare(fields=('step',))` draws the update over the learning rate: pass "
            "`learning_rate=` (the one the optimizers were built with)."
        )
    wanted = (["grad"] if show_grad else []) + fields

    def series_of(trace: Trace, field: str) -> np.ndarray:
        values = _series(trace, field, index)
        return -values / float(learning_rate) if field == "step" else values  # type: ignore[arg-type]

    columns = []
    for signal, traces in per_signal.items():
        for field in wanted:
            if not any(_has_field(t, field) for t in traces.values()):
                _series(next(iter(traces.values())), field, index)  # raises, naming the field
        series = {label: {f: series_of(t, f) for f in wanted if _has_field(t, f)} for label, t in traces.items()}
        total = min(v.shape[0] for per_field in series.values() for v in per_field.values())
        for start, stop, name in _spans(total, window, spans):
            columns.append((signal, name, start, stop, series))
    names = _legend_names(per_signal)
    all_traces = [t for traces in per_signal.values() for t in traces.values()]
    if layout == "runs":
        fig = _runs_layout(columns, fields[0], show_grad, names, log_steps, figsize)
    else:
        fig = _fields_layout(columns, wanted, names, log_steps, figsize)
    _title(fig, "How do these optimizers differ on the same gradients?", all_traces, title)
    _legend(fig, fig._adamjax_notes)  # type: ignore[attr-defined]
    return fig


def _draw_grad(ax: Axes, steps: np.ndarray, curves: dict[str, np.ndarray], log_steps: bool, names: dict[str, str]):
    """The gradient row: one grey curve when every run saw the same gradient."""
    first = next(iter(curves.values()))
    if all(np.array_equal(first, other) for other in curves.values()):
        ax.plot(
            steps,
            first,
            color="0.45",
            linewidth=1,
            label="gradient $g_t$ (the same for all)",
            **({"marker": "o", "markersize": 3} if len(steps) <= 40 else {}),
        )
        return []
    return _draw_curves(ax, steps, curves, "gradient", log_steps, names)


def _fields_layout(columns, rows, names, log_steps, figsize) -> Figure:
    fig = _new_figure(figsize or (min(5.2 * len(columns), 16) + 3.5, 2.5 * len(rows) + 1.2))
    axes = np.asarray(fig.subplots(len(rows), len(columns), squeeze=False, sharex="col"))
    notes: list[str] = []
    for column, (signal, name, start, stop, series) in enumerate(columns):
        steps = np.arange(start + 1, stop + 1)
        for row, field in enumerate(rows):
            ax = axes[row, column]
            curves = {label: per_field[field][start:stop] for label, per_field in series.items() if field in per_field}
            if field == "grad":
                notes += _draw_grad(ax, steps, curves, log_steps, names)
            else:
                notes += _draw_curves(ax, steps, curves, _FIELD_LABELS[field], log_steps, names)
            _finish_axes(ax, _FIELD_LABELS[field], row == len(rows) - 1, log_steps)
            if row == 0:
                ax.set_title(" · ".join(part for part in (signal, name) if part))
    fig._adamjax_notes = notes  # type: ignore[attr-defined]
    return fig


def _runs_layout(columns, field, show_grad, names, log_steps, figsize) -> Figure:
    """One row per run; the first run drawn behind the others in grey; one vertical scale per column."""
    labels = list(names)
    rows = (["grad"] if show_grad else []) + labels
    # Narrower than the fields layout: the rows name the runs, so the short legend goes below.
    fig = _new_figure(figsize or (min(5.2 * len(columns), 16) + 1.5, 1.55 * len(rows) + 2.0))
    axes = np.asarray(fig.subplots(len(rows), len(columns), squeeze=False, sharex="col"))
    reference = labels[0]
    # Grey is the reference run's; the runs' own colours skip matplotlib's grey (C7).
    palette = [f"C{i}" for i in range(10) if i != 7]
    notes: list[str] = []
    for column, (signal, name, start, stop, series) in enumerate(columns):
        steps = np.arange(start + 1, stop + 1)
        first_run_row = 1 if show_grad else 0
        for row, label in enumerate(rows):
            ax = axes[row, column]
            last = row == len(rows) - 1
            if label == "grad":
                curves = {run: per_field["grad"][start:stop] for run, per_field in series.items()}
                notes += _draw_grad(ax, steps, curves, log_steps, names)
                _finish_axes(ax, _FIELD_LABELS["grad"], last, log_steps)
                ax.set_title(" · ".join(part for part in (signal, name) if part))
                continue
            if row > first_run_row:
                ax.sharey(axes[first_run_row, column])
            own = series.get(label, {}).get(field)
            behind = series.get(reference, {}).get(field)
            if label != reference and behind is not None:
                ax.plot(
                    steps,
                    behind[start:stop],
                    color="0.7",
                    linewidth=2.4,
                    label=f"{names[reference]} (drawn behind each other member)",
                    zorder=1,
                )
            if own is not None:
                number = labels.index(label)
                ax.plot(
                    steps,
                    own[start:stop],
                    color=palette[number % len(palette)],
                    linewidth=1.3,
                    label=f"_{names[label]}",  # named by its row, not in the legend
                    zorder=2,
                    **({"marker": "o", "markersize": 3} if len(steps) <= 40 else {}),
                )
                if label != reference and behind is not None:
                    pairs = _coinciding({reference: behind[start:stop], label: own[start:stop]})
                    notes += [f"{names[label]} coincides with {names[reference]}" for _ in pairs]
            else:
                ax.text(0.5, 0.5, f"{names[label]} records no {field!r}", transform=ax.transAxes, ha="center")
            _finish_axes(ax, names[label].replace(" (", "\n("), last, log_steps)
            if row == first_run_row and not show_grad:
                ax.set_title(" · ".join(part for part in (signal, name) if part))
        if first_run_row < len(rows):
            axes[first_run_row, column].annotate(
                _FIELD_LABELS[field],
                (0.0, 1.0),
                xycoords="axes fraction",
                xytext=(2, 3),
                textcoords="offset points",
                fontsize="small",
                va="bottom",
            )
    fig._adamjax_notes = notes  # type: ignore[attr-defined]
    return fig


def _legend_names(per_signal: dict[str, dict[str, Trace]]) -> dict[str, str]:
    """Each run's legend entry: its name, followed by the settings in which it differs from the others."""
    labels = list(dict.fromkeys(label for traces in per_signal.values() for label in traces))
    first = {label: next(ts[label] for ts in per_signal.values() if label in ts) for label in labels}
    _, varied = _settings_text(list(first.values()))
    names = {}
    for label, run in first.items():
        parts = []
        settings = run.settings
        for name in varied:  # empty unless every run has its settings (_settings_text)
            if settings is None:
                break
            value = getattr(settings, name)
            if value is False or value is None or name == "optimizer" or _PLAIN.get(name, object()) == value:
                continue
            text = settings.describe((name,))
            if text.lower() not in label.lower():
                parts.append(text)
        names[label] = f"{label} ({', '.join(parts)})" if parts else label
    return names


def _simulated(grads: Any, default: Any) -> Any:
    return default() if grads is None else grads


def suppression(
    grads: Mapping[str, Any] | None = None,
    *,
    tx: Any = None,
    window: int = 200,
    figsize: tuple[float, float] = (14, 7),
) -> Figure:
    r"""Why does the second moment suppress a swinging gradient? One column per signal, its last ``window`` steps.

    :math:`\hat m_t` is a running mean of the gradient and :math:`\sqrt{\hat
    v_t}` its running root mean square; the swings cancel in the first and
    not in the second, so the step :math:`\hat m_t / \sqrt{\hat v_t}` settles
    near mean / RMS of the recent gradients -- small for a gradient that
    swings around a small mean, near 1 for one that keeps its sign. The lower
    row draws the step with that ratio as a dashed line.

    Args:
      grads: ``{name: signal}``; by default ``swinging`` and ``swinging_soft``
        (10,000 steps, random state 1).
      tx: the optimizer; by default ``adamjax.scale_by_adam(eps=1e-7)``.
      window: the steps drawn, at the end of each run.
      figsize: in inches.

    Returns:
      A ``matplotlib.figure.Figure``: gradient and moments above, the step
      below, one column per signal.

    Examples:
      >>> import adamjax
      >>> fig = adamjax.plot.suppression({"soft": adamjax.signals.swinging_soft(2000, seed=1)})
      >>> fig.axes[1].get_lines()[1].get_label()
      'mean / RMS of $g$ over these steps = 0.942'
    """
    from adamjax import scale_by_adam, signals
    from adamjax._simulate import simulate

    chosen: Mapping[str, Any] = _simulated(
        grads,
        lambda: {"swinging": signals.swinging(10_000, seed=1), "swinging_soft": signals.swinging_soft(10_000, seed=1)},
    )
    tx = scale_by_adam(eps=1e-7) if tx is None else tx
    traces = {name: simulate(tx, g) for name, g in chosen.items()}
    fig = _new_figure(figsize)
    axes = fig.subplots(2, len(traces), squeeze=False, sharex="col", height_ratios=(3, 2))
    for column, (name, run) in enumerate(traces.items()):
        total = run.grad.shape[0]
        size = _check_window(window, total)
        span = slice(total - size, total)
        steps = np.arange(total - size + 1, total + 1)
        grad = _series(run, "grad", None)[span]
        top, bottom = axes[0, column], axes[1, column]
        top.plot(steps, grad, color="0.55", linewidth=1, label=_FIELD_LABELS["grad"])
        top.plot(
            steps, _series(run, "mu_hat", None)[span], color="tab:orange", linewidth=2, label=r"running mean $\hat m_t$"
        )
        top.plot(
            steps,
            _series(run, "denom", None)[span],
            color="tab:green",
            linewidth=2,
            label=r"running RMS $\sqrt{\hat v_t} + \epsilon$",
        )
        ratio = float(np.mean(grad) / np.sqrt(np.mean(grad**2)))
        bottom.plot(
            steps,
            _series(run, "direction", None)[span],
            color="tab:blue",
            linewidth=1.5,
            label=r"step $\hat m_t / (\sqrt{\hat v_t} + \epsilon)$",
        )
        bottom.axhline(
            ratio,
            color="black",
            linestyle="--",
            linewidth=1.2,
            label=f"mean / RMS of $g$ over these steps = {ratio:.3f}" if len(traces) == 1 else None,
        )
        bottom.annotate(
            f"mean / RMS = {ratio:.2f}",
            (steps[0], ratio),
            xytext=(4, 4),
            textcoords="offset points",
            fontsize="small",
            bbox={"facecolor": "white", "edgecolor": "0.6", "boxstyle": "round,pad=0.2", "alpha": 0.9},
            zorder=5,
        )
        top.set_title(f"{name}: last {size} of {total} steps")
        _finish_axes(top, "gradient and moments", False, False)
        _finish_axes(bottom, "step (before the learning rate)", True, False)
        bottom.set_ylim(min(0.0, bottom.get_ylim()[0]), max(1.05, bottom.get_ylim()[1]))
    if len(traces) > 1:
        from matplotlib.lines import Line2D

        axes[1, 0].add_artist(Line2D([], [], color="black", linestyle="--", label="mean / RMS of $g$ over these steps"))
    _title(
        fig,
        "Why does the second moment suppress a swinging gradient? The step settles near mean / RMS",
        list(traces.values()),
        None,
    )
    _legend(fig)
    return fig


def bias_correction(
    grads: Any = None,
    *,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    figsize: tuple[float, float] = (12, 7.5),
) -> Figure:
    r"""What does bias correction do at the first steps? With and without it, on a logarithmic step axis.

    The moments start at zero, so :math:`m_1 = (1-\beta_1) g_1` and
    :math:`v_1 = (1-\beta_2) g_1^2`; dividing by :math:`1-\beta^t` restores
    :math:`\hat m_1 = g_1`, :math:`\hat v_1 = g_1^2` and a first step of
    :math:`\pm 1`. Without it the first step is :math:`(1-\beta_1) /
    \sqrt{1-\beta_2}` (3.16 with the defaults) and it takes about
    :math:`1/(1-\beta_2)` steps to settle, which a log axis shows.

    Args:
      grads: the gradient signal; by default a constant 0.01 for 3,000 steps.
      b1: as in :func:`adamjax.scale_by_adam`.
      b2: as in :func:`adamjax.scale_by_adam`.
      eps: as in :func:`adamjax.scale_by_adam`.
      figsize: in inches.

    Returns:
      A ``matplotlib.figure.Figure`` (rows: gradient, first moment, root of the
      second moment, step).

    Examples:
      >>> import adamjax
      >>> fig = adamjax.plot.bias_correction()
      >>> fig.axes[-1].get_xscale(), round(float(fig.axes[-1].get_lines()[1].get_ydata()[0]), 3)
      ('log', 3.162)
    """
    import jax.numpy as jnp

    from adamjax import scale_by_adam

    grads = _simulated(grads, lambda: jnp.full(3000, 0.01, jnp.float32))
    runs = {
        "with bias correction": scale_by_adam(b1, b2, eps),
        "no bias correction": scale_by_adam(b1, b2, eps, bias_correction=False),
    }
    fig = compare(
        runs,
        grads,
        fields=("mu_hat", "denom", "direction"),
        log_steps=True,
        title="What does bias correction do at the first steps? (step axis logarithmic)",
        figsize=figsize,
    )
    return fig


def _length(grads: Any) -> int:
    values = grads.values() if isinstance(grads, Mapping) else [grads]
    return min(int(np.shape(g)[0]) for g in values)


def centered(
    grads: Mapping[str, Any] | None = None,
    *,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-7,
    window: int = 200,
    figsize: tuple[float, float] | None = None,
) -> Figure:
    r"""What does centering the second moment change? Adam against the centered moment (AdaBelief), per signal.

    The centered moment :math:`s_t = \beta_2 s_{t-1} + (1-\beta_2)(g_t -
    m_t)^2` measures how far the gradient strays from its running mean rather
    than how large it is: a consistent gradient gets steps of about mean /
    spread, far above Adam's cap near 1; a swinging one gets larger steps too,
    but by much less. Each signal's last ``window`` steps are drawn.

    Args:
      grads: ``{name: signal}``; by default ``noisy_line`` and ``swinging``
        (10,000 steps, random state 1).
      b1: as in :func:`adamjax.scale_by_adam`.
      b2: as in :func:`adamjax.scale_by_adam`.
      eps: as in :func:`adamjax.scale_by_adam`.
      window: the steps drawn, at the end of each run.
      figsize: in inches.

    Returns:
      A ``matplotlib.figure.Figure`` (rows: gradient, denominator, step; one
      column per signal).

    Examples:
      >>> import adamjax
      >>> fig = adamjax.plot.centered({"line": adamjax.signals.noisy_line(500)}, window=100)
      >>> len(fig.axes)
      3
    """
    from adamjax import scale_by_adam, signals

    grads = _simulated(
        grads, lambda: {"noisy_line": signals.noisy_line(10_000, seed=1), "swinging": signals.swinging(10_000, seed=1)}
    )
    total = _length(grads)
    size = _check_window(window, total)
    runs = {
        "Adam": scale_by_adam(b1, b2, eps),
        "centered (AdaBelief)": scale_by_adam(b1, b2, eps, centered=True),
    }
    return compare(
        runs,
        grads,
        fields=("denom", "direction"),
        spans=[(total - size, total, f"last {size} steps")],
        title="What does centering the second moment change? Adam against the centered moment (AdaBelief)",
        figsize=figsize,
    )


def amsgrad(
    grads: Any = None,
    *,
    b1: float = 0.9,
    b2: float = 0.99,
    eps: float = 1e-8,
    figsize: tuple[float, float] = (12, 8),
) -> Figure:
    r"""How does AMSGrad's running maximum behave? Adam against AMSGrad, with the maximum drawn.

    AMSGrad keeps :math:`\max_{s \le t} v_s` of the second moment and divides
    by its (bias-corrected) root, so once the gradients shrink its denominator
    stays at the largest value seen and its steps shrink, where Adam's second
    moment decays and its steps recover.

    Args:
      grads: the gradient signal; by default ``pulses`` (heights falling
        from 0.4 to 0.05).
      b1: as in :func:`adamjax.scale_by_adam`.
      b2: as in :func:`adamjax.scale_by_adam` (0.99 by default, so the
        moment forgets within the run).
      eps: as in :func:`adamjax.scale_by_adam`.
      figsize: in inches.

    Returns:
      A ``matplotlib.figure.Figure`` (rows: gradient, second moment and its
      running maximum, step).

    Examples:
      >>> import adamjax
      >>> fig = adamjax.plot.amsgrad()
      >>> [line.get_label() for line in fig.axes[1].get_lines()[:2]]
      ['Adam: $v_t$', 'AMSGrad: running maximum $\\max_{s \\leq t} v_s$']
    """
    from adamjax import scale_by_adam, signals
    from adamjax._simulate import simulate

    grads = _simulated(grads, signals.pulses)
    adam = simulate(scale_by_adam(b1, b2, eps), grads)
    ams = simulate(scale_by_adam(b1, b2, eps, amsgrad=True), grads)
    steps = np.arange(1, adam.grad.shape[0] + 1)
    fig = _new_figure(figsize)
    axes = fig.subplots(3, 1, sharex=True, height_ratios=(2, 3, 3))
    small = {"marker": "o", "markersize": 3} if len(steps) <= 200 else {}
    axes[0].plot(steps, _series(adam, "grad", None), color="0.45", linewidth=1, label="gradient $g_t$", **small)
    axes[1].plot(steps, _series(adam, "nu", None), color="tab:blue", linewidth=2.2, label="Adam: $v_t$")
    axes[1].plot(
        steps,
        _series(ams, "nu_max", None),
        color="tab:red",
        linewidth=1.8,
        linestyle="--",
        label=_FIELD_LABELS["nu_max"].replace("running maximum", "AMSGrad: running maximum"),
    )
    axes[2].plot(steps, _series(adam, "direction", None), color="tab:blue", linewidth=2.2, label="Adam's step")
    axes[2].plot(
        steps,
        _series(ams, "direction", None),
        color="tab:red",
        linewidth=1.6,
        linestyle="--",
        label="AMSGrad's step",
        **small,
    )
    axes[0].set_title("the gradient")
    axes[1].set_title("second moment (before bias correction) and its running maximum")
    axes[2].set_title("the step: AMSGrad's shrinks once the gradients do")
    _finish_axes(axes[0], _FIELD_LABELS["grad"], False, False)
    _finish_axes(axes[1], "second moment $v_t$", False, False)
    _finish_axes(axes[2], _FIELD_LABELS["direction"], True, False)
    _title(fig, "How does AMSGrad's running maximum behave?", [adam], None)
    _legend(fig)
    return fig


def power(
    grads: Any = None,
    *,
    powers: Sequence[float] = (2.0, 4.0, math.inf),
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    spans: Sequence[Any] | None = None,
    figsize: tuple[float, float] | None = None,
) -> Figure:
    r"""What does a p-th power moment change against Adam (p = 2)? One curve per power.

    :math:`v_t = \beta_2 v_{t-1} + (1-\beta_2)|g_t|^p` and the step
    :math:`\hat m_t / (\hat v_t^{1/p} + \epsilon)`; a larger :math:`p` weighs
    the large gradients more, :math:`p = \infty` is Adamax (a decaying running
    maximum of :math:`|g|`, not bias-corrected).

    Args:
      grads: the gradient signal; by default ``patterns``, drawn as its three
        parts (the 1, 0 alternation, the blocks, the ±0.001 alternation) each
        on its own vertical scale.
      powers: the values of :math:`p`.
      b1: as in :func:`adamjax.scale_by_adam`.
      b2: as in :func:`adamjax.scale_by_adam`.
      eps: as in :func:`adamjax.scale_by_adam`.
      spans: parts of the signal to draw side by side, as in :func:`compare`.
      figsize: in inches.

    Returns:
      A ``matplotlib.figure.Figure``.

    Examples:
      >>> import adamjax
      >>> fig = adamjax.plot.power()
      >>> [ax.get_title() for ax in fig.axes[:3]]
      ['1, 0, 1, 0, ...', 'blocks', '±0.001 alternating']
    """
    from adamjax import scale_by_adam, signals

    if grads is None:
        grads = signals.patterns()
        if spans is None:
            spans = [(0, 60, "1, 0, 1, 0, ..."), (60, 120, "blocks"), (120, 162, "±0.001 alternating")]
    runs = {
        ("Adam (p=2)" if p == 2 else ("Adamax (p=inf)" if math.isinf(p) else f"p={p:g}")): scale_by_adam(
            b1, b2, eps, power=p
        )
        for p in powers
    }
    return compare(
        runs,
        grads,
        fields=("denom", "direction"),
        spans=spans,
        title="What does a p-th power moment change against Adam (p=2)?",
        figsize=figsize,
    )


def b2_sweep(
    grads: Any = None,
    *,
    b2s: Sequence[float] = (0.9, 0.99, 0.999),
    b1: float = 0.9,
    eps: float = 1e-8,
    window: int | None = 200,
    figsize: tuple[float, float] | None = None,
) -> Figure:
    r"""What does ``b2`` change? One curve per value: the second moment's memory is about :math:`1/(1-\beta_2)` steps.

    A short memory follows the gradient's swings, so the denominator rises
    and falls with them and the step stays near :math:`\pm 1`; a long one
    averages them out and the step follows the gradient's sign and size.

    Args:
      grads: the gradient signal; by default ``swinging`` (2,000 steps,
        random state 1).
      b2s: the values of :math:`\beta_2`.
      b1: as in :func:`adamjax.scale_by_adam`.
      eps: as in :func:`adamjax.scale_by_adam`.
      window: draw the first and the last ``window`` steps (``None``: the
        whole run).
      figsize: in inches.

    Returns:
      A ``matplotlib.figure.Figure``.

    Examples:
      >>> import adamjax
      >>> fig = adamjax.plot.b2_sweep(adamjax.signals.sine(300), window=None)
      >>> [line.get_label() for line in fig.axes[-1].get_lines()[:3]]
      ['b2=0.9', 'b2=0.99', 'b2=0.999']
    """
    from adamjax import scale_by_adam, signals

    grads = _simulated(grads, lambda: signals.swinging(2000, seed=1))
    runs = {f"b2={b2:g}": scale_by_adam(b1, b2, eps) for b2 in b2s}
    return compare(
        runs,
        grads,
        fields=("denom", "direction"),
        window=window if window is None or window * 2 < _length(grads) else None,
        title=r"What does b2 change? The second moment remembers about $1/(1-\beta_2)$ steps",
        figsize=figsize,
    )


def _quantization_runs(
    grads: Any,
    bits: Sequence[int],
    block_size: int | None,
    neighbour_noise: float | None,
    neighbour_key: int,
    optimizer: Mapping[str, Any],
) -> tuple[Trace, dict[int, Trace], float]:
    """Float32 Adam on ``grads`` alone, and for each ``bits`` one block whose column 0 sees ``grads``.

    The block has ``block_size`` columns (the optimizer's default block for
    ``bits``): the weight of interest, then weights whose gradients are
    Gaussian noise of standard deviation ``neighbour_noise`` (the signal's RMS
    by default), so the block's scale is set as in a layer, by all its
    weights. Returns the float32 trace, the quantized traces and the noise used.
    """
    from adamjax import _quantize, adam
    from adamjax._simulate import simulate

    signal = jnp.asarray(grads, jnp.float32)
    if signal.ndim != 1 or signal.shape[0] < 1:
        raise ValueError(
            "`adamjax.plot.quantization(grads=...)` must be one weight's gradients, shape [T]; "
            f"got shape {tuple(signal.shape)}."
        )
    if isinstance(bits, int) or not bits or any(isinstance(b, bool) or b not in (8, 4) for b in bits):
        raise ValueError(f"`adamjax.plot.quantization(bits=...)` must be a sequence of 8 and 4; got {bits!r}.")
    if neighbour_noise is None:
        noise = float(np.sqrt(np.mean(np.asarray(signal, np.float64) ** 2)))
    else:
        if (
            isinstance(neighbour_noise, bool)
            or not isinstance(neighbour_noise, int | float)
            or not 0 <= neighbour_noise < math.inf
        ):
            raise ValueError(
                "`adamjax.plot.quantization(neighbour_noise=...)` must be a finite number >= 0 or None; "
                f"got {neighbour_noise!r}."
            )
        noise = float(neighbour_noise)
    reference = simulate(adam(**optimizer), signal)
    runs = {}
    for width in bits:
        size = _quantize.DEFAULT_BLOCK_SIZE[width] if block_size is None else block_size
        tx = adam(**optimizer, state_bits=width, block_size=block_size)
        # A stream of its own: a signal drawn from the same integer must not reappear among the neighbours.
        key = jax.random.fold_in(jax.random.key(neighbour_key), 1)
        others = jax.random.normal(key, (signal.shape[0], size - 1), jnp.float32)
        block = jnp.concatenate([signal[:, None], jnp.float32(noise) * others], axis=1)
        runs[width] = simulate(tx, block, min_quantized_size=1)
    return reference, runs, noise


def quantization(
    grads: Any = None,
    *,
    bits: Sequence[int] = (8, 4),
    block_size: int | None = None,
    neighbour_noise: float | None = None,
    neighbour_key: int = 0,
    window: int | None = 200,
    learning_rate: float = 1e-3,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    options: Mapping[str, Any] | None = None,
    title: str | None = None,
    figsize: tuple[float, float] | None = None,
) -> Figure:
    r"""What do 8-bit and 4-bit moments store of a weight's :math:`m_t` and :math:`v_t`, and what does that do to the step?

    With ``state_bits`` the optimizer stores each moment in blocks: a block
    keeps its largest magnitude (its scale) and every element as the nearest
    of 256 (8 bits) or 16 (4 bits) codebook values times that scale
    (:mod:`adamjax._quantize`). How much a weight loses therefore depends on
    the other weights of its block. Here the weight sees ``grads`` and shares
    one block with ``block_size - 1`` weights whose gradients are Gaussian
    noise; the simulation quantizes that block although it is smaller than
    the 4,096 elements from which the optimizer quantizes
    (``simulate(..., min_quantized_size=1)``), and each step runs the
    optimizer's own quantized path.

    One column per bit width. Rows: the first moment the step computed
    (:math:`m_t`, from the stored :math:`\tilde m_{t-1}`), what the state
    stores of it (:math:`\tilde m_t`), float32 Adam's :math:`m_t` on the same
    gradients and the block's scale :math:`\max_i |m_{t,i}|`; the storage
    error :math:`\tilde m_t - m_t`; the same two rows for :math:`v_t`; the
    step :math:`\hat m_t / (\sqrt{\hat v_t} + \epsilon)` against float32
    Adam's.

    Args:
      grads: one weight's gradients, shape ``[T]``; by default ``swinging``
        (2,000 steps, random state 1).
      bits: the bit widths, one column each (8 and 4).
      block_size: elements per block; by default the optimizer's (256 at 8
        bits, 128 at 4).
      neighbour_noise: the standard deviation of the other weights'
        gradients; by default the root mean square of ``grads`` (neighbours as
        large as the weight on average). ``0`` leaves the weight alone in its
        block: it is then its block's scale and is stored exactly, except a
        negative :math:`m_t`, which the signed codebooks (no :math:`-1`) store
        at 0.993 (8 bits) or 0.8875 (4 bits) of its size.
      neighbour_key: the random state of that noise (an integer).
      window: draw the last ``window`` steps (``None``: the whole run).
      learning_rate: as in :func:`adamjax.adam`.
      b1: as in :func:`adamjax.adam`.
      b2: as in :func:`adamjax.adam`.
      eps: as in :func:`adamjax.adam`.
      options: other keyword arguments of :func:`adamjax.adam` (``centered``,
        ``amsgrad``, ``power``, ...).
      title: the title's first line; by default the question the figure
        answers (the steps shown, the neighbours and the settings follow).
      figsize: in inches.

    Returns:
      A ``matplotlib.figure.Figure``: five rows (first moment, its error,
      second moment, its error, step), one column per bit width.

    Raises:
      ValueError: ``grads`` is not one weight's gradients; ``bits`` holds
        other values than 8 and 4; ``neighbour_noise`` is negative; ``window``
        is not in ``[1, T]``; an optimizer setting is refused by
        :func:`adamjax.adam`.

    Examples:
      >>> import adamjax
      >>> fig = adamjax.plot.quantization(adamjax.signals.swinging(400, seed=1), window=100)
      >>> [ax.get_title() for ax in fig.axes[:2]]
      ['8-bit moments, a block of 256 weights', '4-bit moments, a block of 128 weights']
      >>> fig.axes[2].get_ylabel()
      'storage error of $m_t$'
    """
    from adamjax import signals

    grads = _simulated(grads, lambda: signals.swinging(2000, seed=1))
    optimizer = {"learning_rate": learning_rate, "b1": b1, "b2": b2, "eps": eps, **(options or {})}
    reference, runs, noise = _quantization_runs(grads, bits, block_size, neighbour_noise, neighbour_key, optimizer)
    return _quantization_figure(reference, runs, noise, neighbour_noise is None, window, title, figsize)


def _quantization_figure(
    reference: Trace,
    runs: Mapping[int, Trace],
    noise: float,
    noise_is_rms: bool,
    window: int | None,
    title: str | None,
    figsize: tuple[float, float] | None,
) -> Figure:
    """Draws :func:`quantization` from its simulations (the command line reuses them for its CSV file)."""
    total = int(reference.grad.shape[0])
    size = total if window is None else _check_window(window, total)
    span = slice(total - size, total)
    steps = np.arange(total - size + 1, total + 1)
    # Wide enough for the two-line title and a legend below, even with one column.
    fig = _new_figure(figsize or (max(12.0, 6.5 * len(runs) + 1.0), 14.0))
    axes = fig.subplots(5, len(runs), squeeze=False, sharex="col", height_ratios=(3, 2, 3, 2, 2.5))
    # One label per role, shared by every panel, so the legend reads once for m, v and the step.
    float32_look = {"color": "0.6", "linewidth": 3.2, "label": "float32 Adam on the same gradients"}
    computed_look = {
        "color": "tab:blue",
        "linewidth": 1.1,
        "zorder": 3,
        "label": "quantized run: computed in the step",
    }
    stored_look = {
        "color": "tab:red",
        "marker": "o",
        "markersize": 3.4,
        "linestyle": "none",
        "label": "quantized run: stored (dequantized),\nwhat the next step starts from",
    }
    scale_look = {
        "color": "black",
        "linestyle": ":",
        "linewidth": 1.2,
        "label": "the block's scale (largest magnitude)",
    }
    error_look = {
        "color": "tab:red",
        "linewidth": 0.9,
        "marker": "o",
        "markersize": 2.2,
        "label": "storage error: stored $-$ computed",
    }
    notes = []
    for column, (width, run) in enumerate(runs.items()):
        block = int(run.grad.shape[1])
        for row, (moment, symbol, signed) in enumerate((("mu", "m", True), ("nu", "v", False))):
            ax, error_ax = axes[2 * row, column], axes[2 * row + 1, column]
            scale = np.max(np.abs(np.asarray(getattr(run, moment), np.float64)), axis=1)[span]
            error = _series(run, f"{moment}_error", 0)[span]
            ax.plot(steps, _series(reference, moment, None)[span], **float32_look)
            ax.plot(steps, _series(run, f"{moment}_stored", 0)[span], **stored_look)
            ax.plot(steps, _series(run, moment, 0)[span], **computed_look)
            ax.plot(steps, scale, **scale_look)
            if signed:
                ax.plot(steps, -scale, **{**scale_look, "label": None})
            error_ax.plot(steps, error, **error_look)
            name = "first" if signed else "second"
            _finish_axes(ax, f"{name} moment ${symbol}_t$", False, False, zero_line=signed)
            _finish_axes(error_ax, f"storage error of ${symbol}_t$", False, False)
            if np.max(np.abs(error), initial=0.0) == 0.0:
                notes.append(f"{width} bits: every stored ${symbol}_t$ in these steps equals the computed one")
        step_ax = axes[4, column]
        step_ax.plot(steps, _series(reference, "direction", None)[span], **float32_look)
        step_ax.plot(steps, _series(run, "direction", 0)[span], **computed_look)
        _finish_axes(step_ax, _FIELD_LABELS["direction"], True, False)
        stored_v = float(_series(run, "nu_stored", 0)[-1] / _series(reference, "nu", None)[-1])
        axes[2, column].set_title(
            f"at the last step the stored $v_t$ is {stored_v:.2f}x float32 Adam's", fontsize="small"
        )
        steps_ratio = float(
            np.mean(np.abs(_series(run, "direction", 0)[span]))
            / np.mean(np.abs(_series(reference, "direction", None)[span]))
        )
        step_ax.set_title(f"mean |step| over these steps: {steps_ratio:.2f}x float32 Adam's", fontsize="small")
        axes[0, column].set_title(f"{width}-bit moments, a block of {block} weights")
    question = (
        "What do 8-bit and 4-bit moments store of a weight's m and v, and what does that do to its step?"
        if sorted(runs) == [4, 8]
        else f"What do {', '.join(f'{b}-bit' for b in runs)} moments store of a weight's m and v?"
    )
    shown = f"last {size} of {total} steps" if window is not None else f"all {total} steps"
    detail = (
        f"{shown}; the block's other weights see Gaussian noise, standard deviation {noise:.3g}"
        + (" (the weight's gradient RMS)" if noise_is_rms else "")
        if noise > 0
        else f"{shown}; the weight is alone in its block (the other weights' gradients are 0)"
    )
    _title(fig, f"{title or question}\n{detail}", [reference], None)
    _legend(fig, notes, columns=3 if len(runs) > 1 else 2)  # below the panels: the title keeps the whole width
    return fig
