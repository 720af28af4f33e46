"""What every figure of :mod:`adamjax.plot` shares: axis labels, line styles, titles, legends and axes.

Also reading one field of a trace as a curve, and checking the arguments the
figures have in common. Nothing here imports matplotlib at import time.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from adamjax._simulate import Trace


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


def _simulated(grads: Any, default: Any) -> Any:
    return default() if grads is None else grads


def _length(grads: Any) -> int:
    values = grads.values() if isinstance(grads, Mapping) else [grads]
    return min(int(np.shape(g)[0]) for g in values)
