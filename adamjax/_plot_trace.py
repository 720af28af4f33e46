"""Figures of one trace: :func:`trace` (the whole run) and :func:`windows` (its first and last steps)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from adamjax._plot_style import (
    _FIELD_LABELS,
    _check_step,
    _check_window,
    _finish_axes,
    _legend,
    _new_figure,
    _power,
    _root,
    _root_label,
    _series,
    _title,
)

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from adamjax._simulate import Trace


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
