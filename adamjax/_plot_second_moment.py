"""How the second moment shapes the step: :func:`suppression` of a swinging gradient, :func:`b2_sweep` of its memory."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from adamjax._plot_compare import compare
from adamjax._plot_style import (
    _FIELD_LABELS,
    _check_window,
    _finish_axes,
    _legend,
    _length,
    _new_figure,
    _series,
    _simulated,
    _title,
)

if TYPE_CHECKING:
    from matplotlib.figure import Figure


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
        for field, color, label in (
            ("mu_hat", "tab:orange", r"running mean $\hat m_t$"),
            ("denom", "tab:green", r"running RMS $\sqrt{\hat v_t} + \epsilon$"),
        ):
            top.plot(steps, _series(run, field, None)[span], color=color, linewidth=2, label=label)
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
