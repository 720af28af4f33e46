"""Step-size schedules of the triple API, with ``jax.example_libraries``' signatures.

A schedule maps the iteration index ``i`` (0 on the first update) to a step
size. These are plain callables, so any optax schedule can be passed wherever
one is expected; where optax already has the same curve
(:func:`exponential_decay`, :func:`polynomial_decay`) the schedule *is* the
optax one, with the positional signature of ``jax.example_libraries``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.typing import ArrayLike

from adamjax import _checks
from adamjax._triple import Step

# jax.example_libraries says `-> float`; the schedules here, like optax's, return JAX scalars.
Schedule = Callable[[Step], ArrayLike]


def _check_positive(func: str, name: str, value: Any) -> None:
    _checks.check_real(func, name, value, low=0.0, low_closed=False)


def _check_finite(func: str, name: str, value: Any) -> None:
    _checks.check_real(func, name, value)


def _finite_sequence(func: str, name: str, values: Any) -> jax.Array:
    """A sequence of finite real numbers, as a JAX array (traced values pass unchecked)."""
    if _checks.is_traced(values):
        return values
    allowed = f"`{func}({name}=...)` must be a 1-D sequence of finite real numbers"
    try:
        array = np.asarray(values)
    except (TypeError, ValueError):
        raise TypeError(f"{allowed}; got {values!r}.") from None
    if array.dtype.kind not in "iuf":
        raise TypeError(f"{allowed}; got {values!r} (dtype {array.dtype}).")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{allowed}; got {values!r}.")
    return jnp.asarray(array)


def constant(step_size: Any) -> Schedule:
    """The schedule that always returns ``step_size`` (returned as given, unconverted).

    Args:
      step_size: the step size, a number or a scalar array.

    Returns:
      A schedule ``i -> step_size``.

    Raises:
      TypeError: ``step_size`` is not a real number.
      ValueError: ``step_size`` is NaN.
    """
    _checks.check_real("constant", "step_size", step_size, allow_inf=True)
    return optax.constant_schedule(step_size)


def exponential_decay(step_size: Any, decay_steps: Any, decay_rate: Any) -> Schedule:
    r"""Continuous exponential decay: :math:`\eta_i = \eta_0\, r^{\,i / s}`.

    Args:
      step_size: :math:`\eta_0`, the step size at ``i = 0``.
      decay_steps: :math:`s > 0`, the number of steps over which the step size
        is multiplied by ``decay_rate``.
      decay_rate: :math:`r > 0`.

    Returns:
      A schedule (``optax.exponential_decay(step_size, decay_steps, decay_rate)``).

    Raises:
      TypeError: an argument is not a real number.
      ValueError: ``decay_steps`` or ``decay_rate`` is not positive, or an
        argument is NaN or infinite.
    """
    _check_finite("exponential_decay", "step_size", step_size)
    _check_positive("exponential_decay", "decay_steps", decay_steps)
    _check_positive("exponential_decay", "decay_rate", decay_rate)
    return optax.exponential_decay(step_size, decay_steps, decay_rate)


def inverse_time_decay(step_size: Any, decay_steps: Any, decay_rate: Any, staircase: bool = False) -> Schedule:
    r"""Inverse-time decay: :math:`\eta_i = \eta_0 / (1 + r\, i / s)`.

    With ``staircase=True`` the ratio :math:`i / s` is floored, so the step size
    drops every ``decay_steps`` steps.

    Args:
      step_size: :math:`\eta_0`.
      decay_steps: :math:`s > 0`.
      decay_rate: :math:`r \ge 0`.
      staircase: whether to floor :math:`i / s`.

    Returns:
      A schedule.

    Raises:
      TypeError: an argument is not a real number (``staircase``: not a bool).
      ValueError: ``decay_steps`` is not positive or ``decay_rate`` is negative,
        or an argument is NaN or infinite.
    """
    _check_finite("inverse_time_decay", "step_size", step_size)
    _check_positive("inverse_time_decay", "decay_steps", decay_steps)
    _checks.check_nonnegative("inverse_time_decay", "decay_rate", decay_rate)
    _checks.check_flag("inverse_time_decay", "staircase", staircase)

    def schedule(i: Any) -> Any:
        progress = i / decay_steps
        if staircase:
            progress = jnp.floor(progress)
        return step_size / (1 + decay_rate * progress)

    return schedule


def polynomial_decay(step_size: Any, decay_steps: Any, final_step_size: Any, power: Any = 1.0) -> Schedule:
    r"""Polynomial decay to ``final_step_size`` over ``decay_steps`` steps, then constant.

    .. math:: \eta_i = (\eta_0 - \eta_f)\,(1 - \min(i, s)/s)^p + \eta_f

    Args:
      step_size: :math:`\eta_0`.
      decay_steps: :math:`s > 0`.
      final_step_size: :math:`\eta_f`.
      power: :math:`p`.

    Returns:
      A schedule (``optax.polynomial_schedule``).

    Raises:
      TypeError: an argument is not a real number.
      ValueError: ``decay_steps`` is not positive, or an argument is NaN or
        infinite.
    """
    _check_finite("polynomial_decay", "step_size", step_size)
    _check_positive("polynomial_decay", "decay_steps", decay_steps)
    _check_finite("polynomial_decay", "final_step_size", final_step_size)
    _check_finite("polynomial_decay", "power", power)
    return optax.polynomial_schedule(step_size, final_step_size, power, decay_steps)


def piecewise_constant(boundaries: Any, values: Any) -> Schedule:
    """Piecewise-constant step size: ``values[k]`` where ``k`` counts the boundaries below ``i``.

    ``values[0]`` is used while ``i <= boundaries[0]``, ``values[1]`` while
    ``boundaries[0] < i <= boundaries[1]``, and so on.

    Args:
      boundaries: a 1-D sequence of ``n`` step indices.
      values: a 1-D sequence of ``n + 1`` step sizes.

    Returns:
      A schedule.

    Raises:
      TypeError: an entry is not a real number.
      ValueError: the sequences are not 1-D, their lengths do not match, or an
        entry is NaN or infinite.
    """
    boundaries = _finite_sequence("piecewise_constant", "boundaries", boundaries)
    values = _finite_sequence("piecewise_constant", "values", values)
    if boundaries.ndim != 1 or values.ndim != 1:
        raise ValueError(
            "`piecewise_constant(boundaries, values)` needs two 1-D sequences; got shapes "
            f"{boundaries.shape} and {values.shape}."
        )
    if values.shape[0] != boundaries.shape[0] + 1:
        raise ValueError(
            "`piecewise_constant(boundaries, values)` needs one more value than boundaries; got "
            f"{boundaries.shape[0]} boundaries and {values.shape[0]} values."
        )

    def schedule(i: Any) -> Any:
        return values[jnp.sum(i > boundaries)]

    return schedule


def as_schedule(func: str, name: str, scalar_or_schedule: Any, *, nonnegative: bool = False) -> Schedule:
    """Checks a step size for the public call ``func`` and returns it as a schedule.

    Raises:
      TypeError: it is neither a real scalar nor a callable.
      ValueError: with ``nonnegative``, a negative, NaN or infinite number.
    """
    if callable(scalar_or_schedule) and not isinstance(scalar_or_schedule, jax.Array | np.ndarray):
        return cast(Schedule, scalar_or_schedule)
    shape = getattr(scalar_or_schedule, "shape", ())
    if shape != ():
        raise TypeError(
            f"`{func}({name}=...)` must be a scalar or a callable schedule (step index -> step size); "
            f"got an array of shape {tuple(shape)}."
        )
    if nonnegative:
        _checks.check_learning_rate(func, name, scalar_or_schedule)
    elif not _checks.is_traced(scalar_or_schedule):
        try:
            _checks.check_real(func, name, scalar_or_schedule, allow_inf=True)
        except TypeError as err:
            raise TypeError(f"{err} A callable schedule (step index -> step size) is also allowed.") from None
    return constant(scalar_or_schedule)


def make_schedule(scalar_or_schedule: float | Schedule) -> Schedule:
    """Turns a step size into a schedule; a callable is returned unchanged.

    Args:
      scalar_or_schedule: a real scalar (number or 0-d array) or a callable
        ``i -> step size``.

    Returns:
      A schedule.

    Raises:
      TypeError: the argument is neither a real scalar nor a callable (the
        message shows what was given).
    """
    return as_schedule("make_schedule", "scalar_or_schedule", scalar_or_schedule)
