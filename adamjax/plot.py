r"""Figures of :func:`adamjax.simulate` traces (needs the ``plot`` extra: ``pip install adamjax[plot]``).

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
  >>> fig.savefig("adam.png")  # doctest: +SKIP
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import jax
import numpy as np

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from adamjax._simulate import Trace

__all__ = ["compare", "linear_trend", "trace", "windows"]

_INSTALL = "adamjax.plot needs matplotlib, which is not installed: `pip install adamjax[plot]`."

_FIELD_LABELS = {
    "grad": "gradient $g_t$",
    "mu": "first moment $m_t$",
    "nu": "second moment $v_t$",
    "mu_hat": r"$\hat m_t$ (bias-corrected)",
    "nu_hat": r"$\hat v_t$ (bias-corrected)",
    "denom": r"denominator $\hat v_t^{1/p} + \epsilon$",
    "direction": r"Adam step $\hat m_t / (\hat v_t^{1/p} + \epsilon)$",
    "update": "update $u_t$ (after the learning rate)",
    "params": r"parameter $\theta_t$",
    "nu_max": r"$\max_{s \leq t} v_s$",
}


def _new_figure(figsize: tuple[float, float]) -> Figure:
    try:
        from matplotlib.figure import Figure
    except ImportError as err:
        raise ImportError(_INSTALL) from err
    return Figure(figsize=figsize, layout="constrained")


def linear_trend(values: Any) -> np.ndarray:
    r"""The least-squares line through ``values`` over :math:`t = 1, \dots, T`, evaluated at each ``t``.

    Seed 000's "trend" lines: ``np.poly1d(np.polyfit(t, values, 1))(t)``.

    Args:
      values: a ``[T]`` array.

    Returns:
      A float64 ``[T]`` array :math:`a t + b` with :math:`(a, b)` minimising
      :math:`\sum_t (a t + b - \text{values}_t)^2` (a constant for ``T = 1``).
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
    values = getattr(trace, field)
    if values is None:
        raise ValueError(f"`adamjax.plot`: this trace has no {field!r} (it is recorded only with amsgrad=True).")
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


def _root(values: np.ndarray, power: float) -> np.ndarray:
    return values if math.isinf(power) else np.power(values, 1.0 / power)


def _root_label(symbol: str, power: float) -> str:
    if math.isinf(power):
        return f"${symbol}$"
    if power == 2:
        return rf"$\sqrt{{{symbol}}}$"
    return f"${symbol}^{{1/{power:g}}}$"


def _check_window(window: Any, steps: int) -> int:
    if isinstance(window, bool) or not isinstance(window, (int, np.integer)) or not 1 <= window <= steps:
        raise ValueError(
            f"`adamjax.plot(window=...)` must be an integer in [1, {steps}] (the trace's length); got {window!r}."
        )
    return int(window)


def _check_step(step: str) -> str:
    if step not in ("direction", "update"):
        raise ValueError(f"`adamjax.plot(step=...)` must be 'direction' or 'update'; got {step!r}.")
    return step


def trace(
    trace: Trace,
    *,
    index: Any = None,
    power: float = 2.0,
    step: str = "direction",
    trends: bool = True,
    title: str | None = None,
    figsize: tuple[float, float] = (10, 6),
) -> Figure:
    r"""Seed 000's simulator figure: gradient, :math:`\hat m_t`, the moment's root, their trends and the step.

    Draws, against the step :math:`t`: the gradient :math:`g_t`; the
    bias-corrected first moment :math:`\hat m_t`; the denominator
    :math:`\hat v_t^{1/p} + \epsilon` (the root of the bias-corrected second
    moment, p-th root for a p-th power moment); the least-squares lines of
    both (:func:`linear_trend`); and the step.

    Args:
      trace: a :class:`adamjax.Trace`.
      index: which coordinate to draw when each step holds an array.
      power: the moment's order :math:`p` the optimizer was built with (used
        in the legend).
      step: ``"direction"`` draws the core's :math:`\hat m_t/(\hat
        v_t^{1/p}+\epsilon)` (the seed's "Adam learning step", on the
        gradient's scale); ``"update"`` the final update after the learning rate.
      trends: draw the trend lines.
      title: the axes' title.
      figsize: in inches.

    Returns:
      A ``matplotlib.figure.Figure``.
    """
    step = _check_step(step)
    grad = _series(trace, "grad", index)
    mu_hat = _series(trace, "mu_hat", index)
    denom = _series(trace, "denom", index)
    steps = np.arange(1, grad.shape[0] + 1)
    fig = _new_figure(figsize)
    ax = fig.add_subplot()
    ax.plot(steps, grad, color="0.6", linewidth=1, label=_FIELD_LABELS["grad"])
    ax.plot(steps, mu_hat, color="tab:orange", label=_FIELD_LABELS["mu_hat"])
    root = _root_label(r"\hat v_t", power) + r" $+\ \epsilon$"
    ax.plot(steps, denom, color="tab:green", label=root)
    if trends:
        ax.plot(steps, linear_trend(mu_hat), color="tab:orange", linestyle="--", label=r"$\hat m_t$ trend")
        ax.plot(steps, linear_trend(denom), color="tab:green", linestyle="--", label=root + " trend")
    ax.plot(steps, _series(trace, step, index), color="tab:blue", label=_FIELD_LABELS[step])
    ax.axhline(0.0, color="black", linewidth=0.8)
    ax.set_xlabel("step $t$")
    ax.set_title(title or "Adam simulator")
    ax.legend(loc="best", fontsize="small")
    return fig


def _draw_window(ax: Any, trace: Trace, start: int, stop: int, index: Any, power: float, step: str) -> None:
    steps = np.arange(start + 1, stop + 1)
    window = slice(start, stop)
    marker = {"marker": "o", "markersize": 2.5, "linestyle": "none"}
    ax.plot(
        steps,
        _series(trace, "grad", index)[window],
        marker="x",
        markersize=4,
        linestyle="none",
        color="tab:cyan",
        label=_FIELD_LABELS["grad"],
    )
    ax.plot(steps, _series(trace, "mu", index)[window], color="red", label=_FIELD_LABELS["mu"], **marker)
    ax.plot(steps, _series(trace, "mu_hat", index)[window], color="orange", label=_FIELD_LABELS["mu_hat"], **marker)
    ax.plot(
        steps,
        _root(_series(trace, "nu", index)[window], power),
        color="lime",
        label=_root_label("v_t", power),
        **marker,
    )
    ax.plot(
        steps,
        _series(trace, "denom", index)[window],
        color="darkgreen",
        label=_root_label(r"\hat v_t", power) + r" $+\ \epsilon$",
        **marker,
    )
    ax.plot(steps, _series(trace, step, index)[window], color="blue", label=_FIELD_LABELS[step], **marker)
    ax.axhline(0.0, color="black", linewidth=1.5)
    ax.set_xlim(start + 0.5, stop + 0.5)
    ax.grid(True)


def windows(
    trace: Trace,
    window: int = 200,
    *,
    index: Any = None,
    power: float = 2.0,
    step: str = "direction",
    title: str | None = None,
    figsize: tuple[float, float] = (12, 9),
) -> Figure:
    r"""Seed 002's figure for long runs: the first and the last ``window`` steps, one panel each.

    Each panel shows, as markers, the gradient, :math:`m_t`, :math:`\hat m_t`,
    the root of the raw moment :math:`v_t^{1/p}`, the denominator
    :math:`\hat v_t^{1/p} + \epsilon` and the step, so the start (where bias
    correction matters) and the steady state can be read side by side.

    Args:
      trace: a :class:`adamjax.Trace`.
      window: steps per panel, ``1 <= window <= T``.
      index: which coordinate to draw when each step holds an array.
      power: the moment's order :math:`p` (the raw moment's root is drawn as
        :math:`v_t^{1/p}`; ``math.inf`` draws :math:`v_t` itself).
      step: ``"direction"`` or ``"update"``, as in :func:`trace`.
      title: the figure's title.
      figsize: in inches.

    Returns:
      A ``matplotlib.figure.Figure`` with two axes.
    """
    step = _check_step(step)
    total = _series(trace, "grad", index).shape[0]
    window = _check_window(window, total)
    fig = _new_figure(figsize)
    first, last = fig.subplots(2, 1)
    _draw_window(first, trace, 0, window, index, float(power), step)
    _draw_window(last, trace, total - window, total, index, float(power), step)
    first.set_title(f"first {window} steps")
    last.set_title(f"last {window} steps")
    last.set_xlabel("step $t$")
    first.legend(loc="upper right", fontsize="small")
    if title:
        fig.suptitle(title)
    return fig


def _as_mapping(traces: Mapping[str, Trace] | Trace, labels: Sequence[str] | None) -> dict[str, Trace]:
    if isinstance(traces, Mapping):
        if labels is not None:
            raise ValueError("`adamjax.plot.compare(labels=...)` is only for a stacked Trace; a mapping has its keys.")
        if not traces:
            raise ValueError("`adamjax.plot.compare(traces)` needs at least one trace.")
        return dict(traces)
    if labels is None:
        raise ValueError(
            "`adamjax.plot.compare(trace, labels=...)`: a single Trace is read as a stack of runs (its leading "
            "axis, as `jax.vmap` returns); pass one label per run, or pass a mapping {label: trace}."
        )
    labels = list(labels)
    count = np.shape(traces.grad)[0]
    if len(labels) != count:
        raise ValueError(f"`adamjax.plot.compare(labels=...)` needs {count} labels (one per run); got {len(labels)}.")
    return {label: jax.tree.map(lambda x, i=i: x[i], traces) for i, label in enumerate(labels)}


def compare(
    traces: Mapping[str, Trace] | Trace,
    *,
    labels: Sequence[str] | None = None,
    fields: Sequence[str] = ("direction", "denom"),
    window: int | None = None,
    index: Any = None,
    title: str | None = None,
    figsize: tuple[float, float] | None = None,
) -> Figure:
    r"""Several runs on one figure: one curve per variant or setting, one row per field.

    For example Adam against a p-th power moment, centered against not, or a
    sweep of ``b2`` values (a stacked trace from ``jax.vmap`` with ``labels``).

    Args:
      traces: a mapping ``{label: Trace}``, or one Trace whose leading axis
        indexes the runs (what ``jax.vmap`` over :func:`adamjax.simulate`
        returns) together with ``labels``.
      labels: one label per run of a stacked trace.
      fields: the Trace fields to draw, one row each (``"grad"``,
        ``"mu_hat"``, ``"denom"``, ``"direction"``, ``"update"``,
        ``"params"``, ...).
      window: ``None`` draws the whole run; an integer draws two columns, the
        first and the last ``window`` steps (seed 002's view of long runs).
      index: which coordinate to draw when each step holds an array.
      title: the figure's title.
      figsize: in inches; by default sized to the grid.

    Returns:
      A ``matplotlib.figure.Figure``.
    """
    runs = _as_mapping(traces, labels)
    fields = list(fields)
    if not fields:
        raise ValueError("`adamjax.plot.compare(fields=...)` needs at least one field.")
    series = {label: {field: _series(run, field, index) for field in fields} for label, run in runs.items()}
    total = min(values.shape[0] for per_field in series.values() for values in per_field.values())
    spans = [(0, total)] if window is None else [(0, _check_window(window, total)), (total - window, total)]
    columns = len(spans)
    fig = _new_figure(figsize or (6.5 * columns + 3, 3.2 * len(fields) + 1))
    axes = np.asarray(fig.subplots(len(fields), columns, squeeze=False))
    for row, field in enumerate(fields):
        for column, (start, stop) in enumerate(spans):
            ax = axes[row, column]
            steps = np.arange(start + 1, stop + 1)
            for label, per_field in series.items():
                ax.plot(steps, per_field[field][start:stop], linewidth=1.2, label=label)
            ax.axhline(0.0, color="black", linewidth=0.6)
            ax.grid(True, alpha=0.4)
            if column == 0:
                ax.set_ylabel(_FIELD_LABELS[field])
            if row == 0 and window is not None:
                ax.set_title(f"{'first' if column == 0 else 'last'} {stop - start} steps")
            if row == len(fields) - 1:
                ax.set_xlabel("step $t$")
    axes[0, -1].legend(loc="best", fontsize="small")
    if title:
        fig.suptitle(title)
    return fig
