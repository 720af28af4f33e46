r"""Gradient streams for :func:`adamjax.simulate`: patterns, waves and noisy signals one weight might see.

Each function returns a float array of shape ``[T]`` (``T = steps``): the
gradient one weight sees at steps :math:`t = 1, \dots, T`. The deterministic
part is computed in float64 with NumPy and rounded
once to ``dtype``; the random ones are reproducible from ``seed``, an integer
or a ``jax.random`` key, and draw their noise with ``jax.random``.

Fixed patterns (:func:`alternating`, :func:`blocks`, :func:`small_alternating`,
:func:`patterns`, :func:`pulses`) repeat cyclically when ``steps`` is longer
than the pattern and are cut when it is shorter.

Examples:
  >>> from adamjax import signals
  >>> signals.alternating(6).tolist()
  [1.0, 0.0, 1.0, 0.0, 1.0, 0.0]
  >>> signals.swinging_soft(1000, seed=1).shape
  (1000,)
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from adamjax import _checks

__all__ = [
    "NAMES",
    "alternating",
    "blocks",
    "by_name",
    "noisy_line",
    "patterns",
    "pulses",
    "sine",
    "small_alternating",
    "swinging",
    "swinging_soft",
    "uniform",
]


def _check_steps(func: str, steps: Any) -> int:
    if isinstance(steps, bool) or not isinstance(steps, numbers.Integral) or steps < 1:
        raise ValueError(f"`adamjax.signals.{func}(steps=...)` must be a positive integer; got {steps!r}.")
    return int(steps)


def _key(func: str, seed: Any) -> jax.Array:
    """A PRNG key from an integer seed or a key (typed or raw ``uint32[2]``)."""
    if isinstance(seed, numbers.Integral) and not isinstance(seed, bool):
        return jax.random.key(int(seed))
    if isinstance(seed, jax.Array) and (
        jnp.issubdtype(seed.dtype, jax.dtypes.prng_key) or (seed.shape == (2,) and seed.dtype == jnp.uint32)
    ):
        return seed
    raise TypeError(f"`adamjax.signals.{func}(seed=...)` must be an integer or a jax.random key; got {seed!r}.")


def _as_signal(values: np.ndarray, dtype: Any) -> jax.Array:
    return jnp.asarray(np.asarray(values, np.float64), dtype)


def _add_noise(func: str, base: np.ndarray, noise: Any, seed: Any, dtype: Any) -> jax.Array:
    _checks.check_nonnegative(f"adamjax.signals.{func}", "noise", noise)
    key = _key(func, seed)
    signal = _as_signal(base, dtype)
    return signal + noise * jax.random.normal(key, signal.shape, signal.dtype)


def _cycle(func: str, pattern: Sequence[float], steps: Any, dtype: Any) -> jax.Array:
    return _as_signal(np.resize(np.asarray(pattern, np.float64), _check_steps(func, steps)), dtype)


def uniform(
    steps: int = 200, *, seed: Any = 0, low: float = 0.0, high: float = 1.0, dtype: Any = jnp.float32
) -> jax.Array:
    r"""Independent uniform gradients in [low, high).

    :math:`g_t \sim U[\text{low}, \text{high})`, independently for each step.

    Args:
      steps: the length ``T``.
      seed: an integer or a ``jax.random`` key.
      low: the interval's lower end.
      high: the interval's upper end.
      dtype: the output dtype.

    Returns:
      A ``[T]`` array.
    """
    steps = _check_steps("uniform", steps)
    return jax.random.uniform(_key("uniform", seed), (steps,), dtype, low, high)


def alternating(steps: int = 60, *, high: float = 1.0, low: float = 0.0, dtype: Any = jnp.float32) -> jax.Array:
    r"""A high-frequency pattern: high, low, high, low, ...

    :math:`g_t = \text{high}` for odd :math:`t` and ``low`` for even :math:`t`.
    With the defaults, ``1, 0, 1, 0, ...``: the gradient's mean is 1/2 but Adam's
    step stays near 1 on the pulses, because the second moment tracks the
    pulses' height, not the mean.

    Args:
      steps: the length ``T`` (default 60).
      high: the value at odd steps.
      low: the value at even steps.
      dtype: the output dtype.
    """
    return _cycle("alternating", (high, low), steps, dtype)


_BLOCK_RISES = ((0.1, 0.7), (0.1, 0.5, 0.5), (0.05, 0.15))
_BLOCK_PLATEAUS = (0.5, 0.3, 0.1)


def _block_pattern() -> list[float]:
    pattern: list[float] = []
    for rise, plateau in zip(_BLOCK_RISES, _BLOCK_PLATEAUS, strict=True):
        pattern += [0.0] * 8 + list(rise) + [plateau] * (12 - len(rise))
    return pattern


def blocks(steps: int = 60, *, dtype: Any = jnp.float32) -> jax.Array:
    r"""A lower-frequency pattern: three blocks of 20 steps.

    Each block is 8 zero gradients, a short rise, then a plateau held to the
    block's end: plateaus 0.5 (rise 0.1, 0.7), 0.3 (rise 0.1, 0.5, 0.5) and 0.1
    (rise 0.05, 0.15).

    Args:
      steps: the length ``T`` (default 60).
      dtype: the output dtype.
    """
    return _cycle("blocks", _block_pattern(), steps, dtype)


def small_alternating(steps: int = 42, *, amplitude: float = 0.001, dtype: Any = jnp.float32) -> jax.Array:
    r"""A high-frequency, low-amplitude pattern centred on zero: -a, +a, -a, ...

    :math:`g_t = (-1)^t a`, so ``-0.001, 0.001, -0.001, ...``: Adam normalises the amplitude away, so the
    steps are as large as for a gradient a thousand times larger.

    Args:
      steps: the length ``T`` (default 42).
      amplitude: :math:`a`.
      dtype: the output dtype.
    """
    return _cycle("small_alternating", (-amplitude, amplitude), steps, dtype)


def patterns(steps: int = 162, *, dtype: Any = jnp.float32) -> jax.Array:
    r"""Three patterns in a row: alternating (60 steps), blocks (60), then small_alternating (42).

    The concatenation of :func:`alternating`, :func:`blocks` and
    :func:`small_alternating` at their default lengths.

    Args:
      steps: the length ``T`` (default 162).
      dtype: the output dtype.
    """
    pattern = [1.0, 0.0] * 30 + _block_pattern() + [-0.001, 0.001] * 21
    return _cycle("patterns", pattern, steps, dtype)


_PULSE_AMPLITUDES = (
    (0.4, 0.3, 0.3) * 3
    + (0.4,)
    + (0.1,) * 5
    + (0.08, 0.08, 0.11, 0.1, 0.1)
    + (0.05,) * 10
    + (0.1,) * 10
    + (0.08,) * 10
    + (0.05,) * 10
)


def pulses(steps: int = 120, *, dtype: Any = jnp.float32) -> jax.Array:
    r"""Positive pulses every other step, with decreasing heights.

    :math:`g_{2k-1} = a_k` and :math:`g_{2k} = 0`, the heights :math:`a_k`
    falling from about 0.4 to 0.05 over 60 pulses.

    Args:
      steps: the length ``T`` (default 120).
      dtype: the output dtype.
    """
    pattern = [value for amplitude in _PULSE_AMPLITUDES for value in (amplitude, 0.0)]
    return _cycle("pulses", pattern, steps, dtype)


def sine(steps: int = 300, *, cycles: float = 10.0, amplitude: float = 1.0, dtype: Any = jnp.float32) -> jax.Array:
    r"""A sine wave with ``cycles`` periods over the run.

    :math:`g_t = a \sin(2\pi c\, (t-1)/(T-1))`; the defaults give
    ``np.sin(np.linspace(0, 20*np.pi, 300))``.

    Args:
      steps: the length ``T``.
      cycles: :math:`c`, the number of periods over the run.
      amplitude: :math:`a`.
      dtype: the output dtype.
    """
    steps = _check_steps("sine", steps)
    return _as_signal(amplitude * np.sin(np.linspace(0.0, 2 * cycles * np.pi, steps)), dtype)


def _periods(func: str, steps: int, periods: Any) -> float:
    if periods is None:
        return steps / 50
    _checks.check_real(f"adamjax.signals.{func}", "periods", periods, low=0.0, low_closed=False)
    return float(periods)


def swinging(
    steps: int = 10_000,
    *,
    periods: float | None = None,
    noise: float = 1.0,
    seed: Any = 0,
    dtype: Any = jnp.float32,
) -> jax.Array:
    r"""Superposed sines with Gaussian noise: a gradient that swings between about -20 and 30 around 5.

    With :math:`P` = ``periods`` and :math:`s = (t-1)/(T-1) \in [0, 1]`:

    .. math::

      g_t = 20 \sin(\pi P s) + 10 \cos^2(4\pi P s) + 3 \sin(8\pi P s)
            + \sigma \xi_t, \qquad \xi_t \sim \mathcal N(0, 1)

    Args:
      steps: the length ``T`` (default 10,000).
      periods: :math:`P`; by default ``T / 50``.
      noise: :math:`\sigma \ge 0`, the noise's standard deviation (default 1.0).
      seed: an integer or a ``jax.random`` key.
      dtype: the output dtype.
    """
    steps = _check_steps("swinging", steps)
    two_pi = _periods("swinging", steps, periods) * 2 * np.pi
    x1 = np.linspace(0.0, two_pi * 0.5, num=steps, dtype=np.float64)
    x2 = np.linspace(0.0, two_pi * 2, num=steps, dtype=np.float64)
    x3 = np.linspace(0.0, two_pi * 4, num=steps, dtype=np.float64)
    base = np.sin(x1) * 20 + np.power(np.cos(x2), 2) * 10 + np.sin(x3) * 3
    return _add_noise("swinging", base, noise, seed, dtype)


def swinging_soft(
    steps: int = 10_000,
    *,
    periods: float | None = None,
    noise: float = 0.5,
    seed: Any = 0,
    dtype: Any = jnp.float32,
) -> jax.Array:
    r"""A sine around 10 with Gaussian noise: a gradient that swings but never changes sign.

    .. math::

      g_t = 5 \sin(4\pi P s) + 10 + \sigma \xi_t, \qquad s = \frac{t-1}{T-1},\ \xi_t \sim \mathcal N(0, 1)

    The gradient never changes sign; Adam's step settles near
    :math:`\hat m / \sqrt{\hat v} \approx 10 / \sqrt{10^2 + 5^2/2} \approx 0.94`.

    Args:
      steps: the length ``T`` (default 10,000).
      periods: :math:`P`; by default ``T / 50``.
      noise: :math:`\sigma \ge 0` (default 0.5).
      seed: an integer or a ``jax.random`` key.
      dtype: the output dtype.
    """
    steps = _check_steps("swinging_soft", steps)
    two_pi = _periods("swinging_soft", steps, periods) * 2 * np.pi
    values = np.linspace(0.0, two_pi * 2, num=steps, dtype=np.float64)
    return _add_noise("swinging_soft", np.sin(values) * 5 + 10, noise, seed, dtype)


def noisy_line(
    steps: int = 10_000,
    *,
    intercept: float = 5.0,
    slope: float = 0.0,
    noise: float = 0.5,
    seed: Any = 0,
    dtype: Any = jnp.float32,
) -> jax.Array:
    r"""A straight line with Gaussian noise.

    :math:`g_t = c + k (t-1) + \sigma \xi_t`, :math:`\xi_t \sim \mathcal N(0, 1)`. The defaults
    are a level of 5 with little noise, which Adam turns into steps of about 1.

    Args:
      steps: the length ``T``.
      intercept: :math:`c`.
      slope: :math:`k`, per step.
      noise: :math:`\sigma \ge 0`.
      seed: an integer or a ``jax.random`` key.
      dtype: the output dtype.
    """
    steps = _check_steps("noisy_line", steps)
    base = intercept + slope * np.arange(steps, dtype=np.float64)
    return _add_noise("noisy_line", base, noise, seed, dtype)


_BY_NAME: dict[str, Callable[..., jax.Array]] = {
    "uniform": uniform,
    "alternating": alternating,
    "blocks": blocks,
    "small_alternating": small_alternating,
    "patterns": patterns,
    "pulses": pulses,
    "sine": sine,
    "swinging": swinging,
    "swinging_soft": swinging_soft,
    "noisy_line": noisy_line,
}
_RANDOM = frozenset({"uniform", "swinging", "swinging_soft", "noisy_line"})

NAMES: tuple[str, ...] = tuple(_BY_NAME)
"""The names :func:`by_name` accepts (the command line's ``--signal``)."""


def by_name(name: str, steps: int | None = None, *, seed: Any = 0, dtype: Any = jnp.float32) -> jax.Array:
    """The signal called ``name`` with its other arguments at their defaults.

    Args:
      name: one of :data:`NAMES`.
      steps: the length; ``None`` for the signal's default length.
      seed: used by the random signals (``uniform``, ``swinging``,
        ``swinging_soft``, ``noisy_line``), ignored by the others.
      dtype: the output dtype.

    Raises:
      ValueError: unknown ``name`` (the message lists the known ones) or bad ``steps``.
    """
    if name not in _BY_NAME:
        raise ValueError(f"`adamjax.signals.by_name(name=...)` must be one of {', '.join(NAMES)}; got {name!r}.")
    kwargs: dict[str, Any] = {"dtype": dtype}
    if steps is not None:
        kwargs["steps"] = steps
    if name in _RANDOM:
        kwargs["seed"] = seed
    return _BY_NAME[name](**kwargs)
