"""What 8-bit and 4-bit storage keeps of a weight's moments: :func:`quantization` and the simulations it draws."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp
import numpy as np

from adamjax._plot_style import (
    _FIELD_LABELS,
    _check_window,
    _finish_axes,
    _legend,
    _new_figure,
    _series,
    _simulated,
    _title,
)

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from adamjax._simulate import Trace


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
