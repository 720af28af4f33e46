"""The arithmetic rules every stage of the Adam core follows.

Which dtype a step computes in (float32 or wider, complex where the inputs
are), how a hyperparameter meets an array without promoting or demoting it,
and the bias correction :math:`1 - \\beta^t` computed so that it never rounds
to 0. Nothing here knows about a particular optimizer.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from adamjax import _checks


def real_dtype(dtype: Any) -> jnp.dtype:
    """The real dtype of ``dtype``'s elements (``float32`` for ``complex64``)."""
    return jnp.dtype(jnp.finfo(dtype).dtype) if jnp.issubdtype(dtype, jnp.complexfloating) else jnp.dtype(dtype)


def compute_dtype(*dtypes: Any) -> jnp.dtype:
    """float32 or wider: the dtype Adam's arithmetic runs in for these inputs.

    float16 and bfloat16 inputs are promoted so that ``eps`` (1e-8 underflows
    in float16) and the bias corrections ``1 - b**t`` stay representable. When
    any input is complex the result is the complex dtype of that precision
    (``complex64`` or ``complex128``).
    """
    given = [jnp.dtype(d) for d in dtypes]
    widest = max((real_dtype(d) for d in given), key=lambda d: d.itemsize)
    real = widest if widest.itemsize > 4 else jnp.dtype(jnp.float32)
    if any(jnp.issubdtype(d, jnp.complexfloating) for d in given):
        return jnp.dtype(jnp.complex128 if real.itemsize > 4 else jnp.complex64)
    return real


def abs_sq(x: jax.Array) -> jax.Array:
    """:math:`x \\bar x`, real: the square of a real array, ``re^2 + im^2`` of a complex one."""
    if jnp.issubdtype(x.dtype, jnp.complexfloating):
        return jnp.real(x) ** 2 + jnp.imag(x) ** 2
    return x * x


def read_real(x: jax.Array, dtype: jnp.dtype) -> jax.Array:
    """A real moment stored in any dtype (optax keeps ``nu`` complex for complex parameters), as ``dtype``."""
    return (jnp.real(x) if jnp.issubdtype(x.dtype, jnp.complexfloating) else x).astype(dtype)


def static_power(power: Any) -> float | None:
    """``power`` as a Python float when it is known at trace time, else None."""
    if _checks.is_traced(power):
        return None
    return float(power)


def bias_correction(decay: Any, count: jax.Array, dtype: jnp.dtype) -> jax.Array:
    """``1 - decay**count`` in ``dtype`` (float32 or wider, never the state's bf16).

    For a Python decay and a float32 ``dtype`` it is computed as
    ``-expm1(count * log1p(decay - 1))`` with ``decay - 1`` taken in double
    precision: ``1 - float32(0.999)**t`` is off by about 1e-5 because 0.999
    rounds, and a decay such as ``1 - 1e-9`` rounds to 1.0, which would make it
    0. In float64 (and for array decays) it is the plain formula, bit for bit
    what PyTorch, NumPy and the seeds compute.
    """
    if isinstance(decay, int | float) and jnp.dtype(dtype).itemsize < 8:
        return -jnp.expm1(count.astype(dtype) * jnp.log1p(jnp.asarray(decay - 1, dtype)))
    return 1 - jnp.asarray(decay, dtype) ** count.astype(dtype)


def hyper(value: Any, dtype: jnp.dtype) -> Any:
    """A hyperparameter ready to meet arrays of ``dtype``.

    Python numbers stay Python numbers (weakly typed: ``1 - 0.9`` is computed in
    double precision and rounded once, as optax and PyTorch do); JAX and NumPy
    scalars, which ``inject_hyperparams`` stores in the parameters' dtype, are
    cast to the compute dtype so they never demote or widen the arithmetic.
    """
    if isinstance(value, int | float):
        return value
    return jnp.asarray(value, dtype)


def as_factor(factor: Any, dtype: jnp.dtype) -> Any:
    """A real scalar ready to meet an array of ``dtype``: itself, or cast to ``dtype`` when that is complex.

    Python numbers stay weakly typed, so strict dtype promotion never sees a
    real array meet a complex one; for real ``dtype`` nothing changes.
    """
    if isinstance(factor, int | float) or not jnp.issubdtype(dtype, jnp.complexfloating):
        return factor
    return jnp.asarray(factor).astype(dtype)


def positive_in(eps: Any, dtype: jnp.dtype) -> bool:
    """Whether ``eps`` is a Python number that stays positive in ``dtype``: then ``root + eps`` is never 0.

    The root is ``>= 0`` (or NaN, which no guard repairs), so the zero-denominator
    guard is needed only for ``eps = 0``, an ``eps`` below ``dtype``'s smallest
    number, or a traced ``eps``. Dropping it where it cannot fire keeps the
    compiled step (and its compile time) small.
    """
    return isinstance(eps, int | float) and not isinstance(eps, bool) and float(np.asarray(eps, dtype)) > 0.0


def memo(cache: dict | None, key: tuple, compute: Any) -> Any:
    """``compute()``, once per key within one update (the bias corrections are the same for every array)."""
    if cache is None:
        return compute()
    if key not in cache:
        cache[key] = compute()
    return cache[key]


def scale_leaf(factor: Any, x: jax.Array) -> jax.Array:
    """``factor * x`` computed in float32 or wider and rounded once to ``x``'s dtype.

    A float32 factor (a traced learning rate, a schedule's value) neither
    promotes a bfloat16 array nor is rounded to bfloat16 before multiplying.
    """
    x = jnp.asarray(x)
    if isinstance(factor, int | float):
        return factor * x
    dtype = compute_dtype(x.dtype, jnp.result_type(factor))
    return (jnp.asarray(factor, dtype) * x.astype(dtype)).astype(x.dtype)
