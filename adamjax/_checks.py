"""Construction-time validation of hyperparameters.

Every public constructor checks its hyperparameters here, before any array is
touched, so a bad value fails where the optimizer is built and the message
names the call, the argument, the value and what is allowed. Values that are
JAX tracers (the constructor is called inside ``jit``, ``vmap`` or
``optax.inject_hyperparams``' traced update) cannot be inspected and are
accepted unchecked, so building an optimizer from traced hyperparameters works.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


def is_traced(value: Any) -> bool:
    """True when ``value`` is a JAX tracer, whose value is unknown at build time."""
    return isinstance(value, jax.core.Tracer)


def _as_real_scalar(func: str, name: str, value: Any) -> float:
    """Returns ``value`` as a Python float, or raises a clear error."""
    if isinstance(value, bool) or isinstance(value, (np.bool_,)):
        raise TypeError(f"`{func}({name}=...)` must be a real number; got the boolean {value!r}.")
    if isinstance(value, numbers.Real):
        return float(value)
    if isinstance(value, (jax.Array, np.ndarray, np.generic)):
        dtype = np.dtype(value.dtype)
        if np.ndim(value) != 0:
            raise ValueError(f"`{func}({name}=...)` must be a scalar; got an array of shape {np.shape(value)}.")
        if dtype.kind not in "iuf" and not jnp.issubdtype(dtype, jnp.floating):
            raise TypeError(f"`{func}({name}=...)` must be a real number; got dtype {dtype}.")
        return float(value)
    raise TypeError(f"`{func}({name}=...)` must be a real number; got {type(value).__name__} {value!r}.")


def check_real(
    func: str,
    name: str,
    value: Any,
    *,
    low: float | None = None,
    high: float | None = None,
    low_closed: bool = True,
    high_closed: bool = True,
    allow_inf: bool = False,
) -> None:
    """Checks that a scalar hyperparameter lies in an interval.

    Args:
      func: the public call, as the user wrote it (``"adam"``).
      name: the argument's name.
      value: the value given; a tracer is accepted unchecked.
      low, high: the interval's ends; ``None`` for unbounded.
      low_closed, high_closed: whether each end is included.
      allow_inf: whether ``+inf`` is an allowed value (``power``).

    Raises:
      TypeError: ``value`` is not a real scalar.
      ValueError: ``value`` is NaN, infinite (unless allowed) or out of range.
    """
    if is_traced(value):
        return
    number = _as_real_scalar(func, name, value)
    lo = "-inf" if low is None else f"{low:g}"
    hi = "inf" if high is None else f"{high:g}"
    allowed = (
        f"{'[' if low_closed and low is not None else '('}{lo}, {hi}{']' if high_closed and high is not None else ')'}"
    )
    if math.isnan(number):
        raise ValueError(f"`{func}({name}=...)` must be in {allowed}; got nan.")
    if math.isinf(number) and not (allow_inf and number > 0):
        raise ValueError(f"`{func}({name}=...)` must be finite and in {allowed}; got {number}.")
    below = low is not None and (number < low or (number == low and not low_closed))
    above = high is not None and (number > high or (number == high and not high_closed))
    if below or above:
        hint = ""
        if getattr(value, "dtype", None) is not None and jnp.dtype(value.dtype).itemsize < 4:
            hint = (
                f" A {jnp.dtype(value.dtype)} hyperparameter rounds values such as 0.999 to 1;"
                " with `optax.inject_hyperparams`, which stores hyperparameters in the"
                " parameters' dtype, pass `hyperparam_dtype=jnp.float32`."
            )
        raise ValueError(f"`{func}({name}=...)` must be in {allowed}; got {value!r}.{hint}")


def check_decay(func: str, name: str, value: Any) -> None:
    """An exponential decay rate such as ``b1`` or ``b2``: in ``[0, 1)``."""
    check_real(func, name, value, low=0.0, high=1.0, high_closed=False)


def check_nonnegative(func: str, name: str, value: Any) -> None:
    """A term such as ``eps`` or ``weight_decay``: finite and ``>= 0``."""
    check_real(func, name, value, low=0.0)


def check_learning_rate(func: str, name: str, value: Any) -> None:
    """A learning rate: a finite number ``>= 0`` or a callable schedule."""
    if callable(value) and not isinstance(value, (jax.Array, np.ndarray)):
        return
    if isinstance(value, (str, bytes)) or value is None:
        raise TypeError(
            f"`{func}({name}=...)` must be a number >= 0 or a callable schedule "
            f"(step count -> step size); got {type(value).__name__} {value!r}."
        )
    try:
        check_nonnegative(func, name, value)
    except TypeError as err:
        raise TypeError(f"{err} A callable schedule (step count -> step size) is also allowed.") from None


def check_flag(func: str, name: str, value: Any) -> None:
    """A switch: a Python ``bool``."""
    if not isinstance(value, bool):
        raise TypeError(f"`{func}({name}=...)` must be True or False; got {type(value).__name__} {value!r}.")


def canonical_float_dtype(func: str, name: str, value: Any) -> jnp.dtype | None:
    """Returns a floating dtype (canonicalised for the x64 setting) or ``None``."""
    if value is None:
        return None
    try:
        dtype = jnp.dtype(value)
    except TypeError:
        raise TypeError(
            f"`{func}({name}=...)` must be None or a floating dtype such as jnp.float32 or jnp.bfloat16; got {value!r}."
        ) from None
    if not jnp.issubdtype(dtype, jnp.floating):
        raise TypeError(
            f"`{func}({name}=...)` must be None or a floating dtype such as jnp.float32 or jnp.bfloat16; got {dtype}."
        )
    return jax.dtypes.canonicalize_dtype(dtype)
