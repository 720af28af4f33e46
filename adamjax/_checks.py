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
import jax.core
import jax.numpy as jnp
import numpy as np


def is_traced(value: Any) -> bool:
    """True when ``value`` is a JAX tracer, whose value is unknown at build time."""
    return isinstance(value, jax.core.Tracer)


def _as_real_scalar(func: str, name: str, value: Any) -> float:
    """Returns ``value`` as a Python float, or raises a clear error."""
    if isinstance(value, bool) or isinstance(value, np.bool_):
        raise TypeError(f"`{func}({name}=...)` must be a real number; got the boolean {value!r}.")
    if isinstance(value, numbers.Real):
        return float(value)
    if isinstance(value, jax.Array | np.ndarray | np.generic):
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
    if callable(value) and not isinstance(value, jax.Array | np.ndarray):
        return
    if isinstance(value, str | bytes) or value is None:
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


def canonical_float_dtype(func: str, name: str, value: Any, *, allow_complex: bool = False) -> jnp.dtype | None:
    """Returns a floating dtype (canonicalised for the x64 setting) or ``None``.

    With ``allow_complex`` a complex dtype (``jnp.complex64``), for the moments
    of complex parameters, is accepted too.
    """
    if value is None:
        return None
    allowed = "a floating dtype such as jnp.float32 or jnp.bfloat16" + (
        " (or a complex one such as jnp.complex64, for complex parameters)" if allow_complex else ""
    )
    try:
        dtype = jnp.dtype(value)
    except TypeError:
        raise TypeError(f"`{func}({name}=...)` must be None or {allowed}; got {value!r}.") from None
    if not (jnp.issubdtype(dtype, jnp.floating) or (allow_complex and jnp.issubdtype(dtype, jnp.complexfloating))):
        raise TypeError(f"`{func}({name}=...)` must be None or {allowed}; got {dtype}.")
    return jax.dtypes.canonicalize_dtype(dtype)


def check_schedule_or_nonnegative(func: str, name: str, value: Any) -> None:
    """A term such as ``weight_decay``: a number ``>= 0``, a JAX scalar or a callable schedule (not None)."""
    if callable(value) and not isinstance(value, jax.Array | np.ndarray):
        return
    if isinstance(value, str | bytes) or value is None:
        raise TypeError(
            f"`{func}({name}=...)` must be a number >= 0 or a callable schedule (step count -> value); "
            f"got {type(value).__name__} {value!r}."
        )
    check_nonnegative(func, name, value)


def _where(path: Any) -> str:
    return jax.tree_util.keystr(path) or "the root"


def check_param_dtypes(owner: str, params: Any, *, allow_complex: bool = False) -> None:
    """Every parameter leaf must be a floating-point array (real, or complex when allowed).

    Args:
      owner: who needs them, as the message should say it (``"Adam"``,
        ``"`optimizers.sgd`"``).
      params: the parameter pytree given to ``init``.
      allow_complex: whether complex parameters are accepted (the Adam family
        optimises them as optax does).

    Raises:
      TypeError: a leaf is an integer or boolean array, a complex one where
        they are not allowed, or not an array at all; the leaf's path and
        dtype are shown.
    """
    for path, leaf in jax.tree_util.tree_leaves_with_path(params):
        try:
            dtype = jnp.result_type(leaf)
        except TypeError:
            raise TypeError(
                f"{owner} needs real floating-point parameters; the leaf at {_where(path)} is "
                f"{type(leaf).__name__} {leaf!r}, not an array."
            ) from None
        if jnp.issubdtype(dtype, jnp.floating) or (allow_complex and jnp.issubdtype(dtype, jnp.complexfloating)):
            continue
        if jnp.issubdtype(dtype, jnp.complexfloating):
            raise TypeError(
                f"{owner} needs real floating-point parameters; the leaf at {_where(path)} has dtype {dtype}. "
                "Complex parameters are not supported here: optimise the real and imaginary parts as two real "
                "arrays (for example `{'re': z.real, 'im': z.imag}`, PyTorch's `view_as_real` convention), "
                "use an Adam-family optimizer (which takes complex parameters), "
                "or keep it out of the optimizer with `optax.masked`."
            )
        kind = "floating-point (real or complex)" if allow_complex else "real floating-point"
        raise TypeError(
            f"{owner} needs {kind} parameters; the leaf at {_where(path)} has dtype {dtype}. "
            "Cast it (for example `x.astype(jnp.float32)`) or keep it out of the optimizer with `optax.masked`."
        )


def check_gradient_dtype(func: str, path: Any, leaf: Any, *, allow_complex: bool = False) -> None:
    """A gradient leaf must be a floating-point array (any float dtype; complex when its parameter is)."""
    try:
        dtype = jnp.result_type(leaf)
    except TypeError:
        raise TypeError(
            f"{func}: the gradient at {_where(path)} is {type(leaf).__name__} {leaf!r}; gradients must be "
            "real floating-point arrays shaped like the parameters."
        ) from None
    if not (jnp.issubdtype(dtype, jnp.floating) or (allow_complex and jnp.issubdtype(dtype, jnp.complexfloating))):
        raise TypeError(
            f"{func}: the gradient at {_where(path)} has dtype {dtype}; gradients must be real floating-point "
            "arrays (float16, bfloat16, float32 or float64) shaped like the parameters."
        )


def check_schedule_value(func: str, name: str, value: Any) -> None:
    """The value a schedule returned for one step: a real scalar.

    Only its type and shape are inspected, which a tracer has too, so this runs
    inside ``jit``; a NaN value cannot be seen there and is not checked.

    Raises:
      TypeError: the value is not a real number (a string, ``None``, a boolean,
        a complex number).
      ValueError: the value is an array of a shape other than ``()``.
    """
    what = f"`{func}({name}=...)` is a schedule, and a schedule must return a real scalar"
    if value is None or isinstance(value, bool | np.bool_):
        raise TypeError(f"{what}; it returned {type(value).__name__} {value!r}.")
    if not isinstance(value, numbers.Real | jax.Array | np.ndarray | np.generic):
        raise TypeError(f"{what}; it returned {type(value).__name__} {value!r}.")
    dtype = jnp.result_type(value)
    if not (jnp.issubdtype(dtype, jnp.floating) or jnp.issubdtype(dtype, jnp.integer)):
        raise TypeError(f"{what}; it returned a value of dtype {dtype}.")
    shape = tuple(getattr(value, "shape", ()))  # a Python number has none
    if shape != ():
        raise ValueError(f"{what}; it returned an array of shape {shape}.")


def check_step_index(func: str, i: Any) -> None:
    """The step index ``i`` of a triple's ``update``: an integer ``>= 0``.

    A tracer is accepted unchecked, and so is the value of a JAX array (reading
    it would wait for the device); its dtype and shape are still checked.

    Raises:
      TypeError: ``i`` is not an integer scalar.
      ValueError: ``i`` is negative.
    """
    if is_traced(i):
        return
    allowed = "must be an integer >= 0 (0 on the first update)"
    if isinstance(i, bool | np.bool_) or not isinstance(i, numbers.Integral | jax.Array | np.ndarray | np.generic):
        raise TypeError(f"{func}: the step index `i` {allowed}; got {type(i).__name__} {i!r}.")
    if isinstance(i, jax.Array | np.ndarray | np.generic):
        if np.ndim(i) != 0 or not jnp.issubdtype(i.dtype, jnp.integer):
            raise TypeError(f"{func}: the step index `i` {allowed}; got an array of dtype {i.dtype}, shape {i.shape}.")
        if isinstance(i, jax.Array):
            return
    if int(i) < 0:
        raise ValueError(f"{func}: the step index `i` {allowed}; got {int(i)}.")


def checked_schedule(func: str, name: str, value: Any) -> Any:
    """``value`` itself, or for a schedule, the schedule with its output checked on every call.

    Each call checks its result with :func:`check_schedule_value` (under ``jit``
    only while tracing, so it costs nothing per step).
    """
    if not callable(value) or is_traced(value) or isinstance(value, jax.Array | np.ndarray):
        return value

    def schedule(count: Any) -> Any:
        rate = value(count)
        check_schedule_value(func, name, rate)
        return rate

    return schedule


def check_mask(func: str, mask: Any) -> None:
    """A mask: ``None``, a callable, or a pytree whose leaves are all booleans."""
    if mask is None or callable(mask):
        return
    for path, leaf in jax.tree_util.tree_leaves_with_path(mask):
        if not isinstance(leaf, bool | np.bool_) and not (
            isinstance(leaf, jax.Array | np.ndarray) and leaf.shape == () and leaf.dtype == np.bool_
        ):
            raise TypeError(
                f"`{func}(mask=...)` must be None, a pytree of booleans shaped like the parameters, or a "
                f"callable returning one; the leaf at {_where(path)} is {type(leaf).__name__} {leaf!r}."
            )
