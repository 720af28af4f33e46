"""What a variant of Adam changes, one figure each: bias correction, a centered moment, AMSGrad, a p-th power."""

from __future__ import annotations

import math
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
