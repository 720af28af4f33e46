"""Low-precision weights that still learn: stochastic rounding and Kahan summation.

A bfloat16 weight next to 1.0 moves in steps of ``2^-7``; an Adam update of
``1e-4`` added with round-to-nearest is lost every time, and training stalls.
Two remedies keep the weights in 16 bits:

* stochastic rounding: the new weight is one of its two bracketing 16-bit
  values, the upper one with probability equal to the distance from the lower
  one over the gap, so ``E[round(x)] = x`` and small updates accumulate on
  average;
* Kahan-compensated summation: a 16-bit compensation buffer keeps what each
  rounding lost and adds it back at the next step.

Both run through optax's protocol: the optimizer picks the new 16-bit weight
and returns the update that ``optax.apply_updates`` turns into exactly that
weight (``landing_update``).

References:
  Suyog Gupta, Ankur Agrawal, Kailash Gopalakrishnan, Pritish Narayanan,
  "Deep Learning with Limited Numerical Precision", ICML 2015 (stochastic rounding).
  William Kahan, "Further remarks on reducing truncation errors", CACM 1965.
  Pedram Zamirai, Jian Zhang, Christopher R. Aberger, Christopher De Sa,
  "Revisiting BFloat16 Training", 2020 (stochastic rounding and Kahan
  summation for 16-bit weights).
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

#: The rounding modes a low-precision weight can be updated with.
ROUNDING_MODES = ("nearest", "stochastic", "kahan")

_LOW_PRECISION = (jnp.dtype(jnp.bfloat16), jnp.dtype(jnp.float16))


def is_low_precision(x: Any) -> bool:
    """Whether ``x`` is a bfloat16 or float16 array, the dtypes ``rounding`` acts on."""
    return jnp.dtype(jnp.result_type(x)) in _LOW_PRECISION


def _check_low_precision(func: str, name: str, dtype: Any) -> jnp.dtype:
    dtype = jnp.dtype(dtype)
    if dtype not in _LOW_PRECISION:
        raise TypeError(f"`{func}({name}=...)` must be bfloat16 or float16; got {dtype}.")
    return dtype


def stochastic_round(
    x: jax.Array, dtype: Any, key: jax.Array | None = None, *, draw: jax.Array | None = None
) -> jax.Array:
    """Rounds ``x`` to ``dtype`` (bfloat16 or float16) stochastically, without bias.

    With ``lo <= x <= hi`` the two neighbouring values of ``dtype``::

        round(x) = hi  with probability (x - lo) / (hi - lo),   lo otherwise,

    so ``E[round(x)] = x`` (up to the 2^-23 granularity of the uniform draw).
    Values of ``dtype`` are returned unchanged; NaN, infinities and values that
    round to infinity are rounded to nearest. The draw is a function of
    ``key`` only, so the result is deterministic given it. Computed in
    float32, whose subnormals XLA flushes to zero on CPU.

    Args:
      x: the values (float32, or anything exactly convertible to it).
      dtype: ``jnp.bfloat16`` or ``jnp.float16``.
      key: a ``jax.random`` key; one uniform number is drawn per element.
      draw: instead of ``key``, the uniform numbers in [0, 1) themselves
        (float32, ``x``'s shape), e.g. slices of one draw for many arrays
        (:func:`uniform_draws`).

    Returns:
      An array of ``dtype`` and ``x``'s shape.

    Raises:
      TypeError: ``dtype`` is not bfloat16 or float16.
      ValueError: neither ``key`` nor ``draw`` is given.

    References:
      Gupta et al., "Deep Learning with Limited Numerical Precision", 2015.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from adamjax._rounding import stochastic_round
      >>> x = jnp.full((100_000,), 1.0 + 2.0**-9, jnp.float32)  # a quarter of the gap above 1
      >>> y = stochastic_round(x, jnp.bfloat16, jax.random.key(0))
      >>> sorted(set(y.astype(jnp.float32).tolist()))
      [1.0, 1.0078125]
      >>> round(float(jnp.mean(y.astype(jnp.float32) == 1.0078125)), 2)
      0.25
    """
    dtype = _check_low_precision("stochastic_round", "dtype", dtype)
    x = jnp.asarray(x).astype(jnp.float32)
    nearest = x.astype(dtype)
    nearest32 = nearest.astype(jnp.float32)
    below = jnp.where(nearest32 > x, jnp.nextafter(nearest, jnp.array(-jnp.inf, dtype)), nearest)
    above = jnp.where(nearest32 < x, jnp.nextafter(nearest, jnp.array(jnp.inf, dtype)), nearest)
    below32, above32 = below.astype(jnp.float32), above.astype(jnp.float32)
    gap = above32 - below32
    # Both differences are exact: x and its neighbours share a binade up to one step.
    up_probability = jnp.where(gap > 0, (x - below32) / jnp.where(gap > 0, gap, jnp.float32(1.0)), jnp.float32(0.0))
    if draw is None:
        if key is None:
            raise ValueError("`stochastic_round` needs `key=` (a jax.random key) or `draw=` (uniform numbers).")
        draw = jax.random.uniform(key, x.shape, jnp.float32)
    rounded = jnp.where(draw < up_probability, above, below)
    return jnp.where(jnp.isfinite(x) & jnp.isfinite(nearest), rounded, nearest)


def uniform_draws(key: jax.Array, shapes: list[tuple[int, ...] | None]) -> list[jax.Array | None]:
    """Uniform float32 numbers in [0, 1) for each shape (None where None), all from one draw of ``key``.

    One draw for a whole tree, cut into each array's share: XLA compiles a
    random-number generator once instead of once per array (0.17 s each on
    this project's CPU, so a 300-array model compiled for about 50 s).

    Examples:
      >>> import jax
      >>> from adamjax._rounding import uniform_draws
      >>> a, skipped, b = uniform_draws(jax.random.key(0), [(2, 3), None, (4,)])
      >>> a.shape, skipped, b.shape
      ((2, 3), None, (4,))
    """
    sizes = [math.prod(shape) for shape in shapes if shape is not None]
    flat = jax.random.uniform(key, (sum(sizes),), jnp.float32)
    out: list[jax.Array | None] = []
    offset = 0
    for shape in shapes:
        if shape is None:
            out.append(None)
            continue
        size = math.prod(shape)
        out.append(flat[offset : offset + size].reshape(shape))
        offset += size
    return out


def kahan_add(param: jax.Array, update: jax.Array, compensation: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Adds ``update`` to a 16-bit ``param`` with Kahan compensation.

    In float32, with ``c`` the compensation carried from the previous step::

        y     = update + c
        new   = round_nearest(param + y)             # the stored 16-bit weight
        c_new = y - (new - param)                     # what the rounding lost

    ``new - param`` is exact in float32, so ``c_new`` is the rounding error up
    to its own storage in ``compensation``'s dtype. A bfloat16 buffer holds
    the error to 8 bits, so updates below about ``2^-16 |param|`` are lost in
    the buffer too (a weight of 100 does not move under steps of ``1e-4``).

    Args:
      param: the bfloat16 or float16 weights.
      update: the step to add (float32, as the optimizer computed it).
      compensation: the carried rounding error, ``param``'s dtype, zeros at first.

    Returns:
      ``(new_param, new_compensation)`` in ``param``'s and ``compensation``'s dtypes.

    Raises:
      TypeError: ``param`` is not bfloat16 or float16.

    References:
      Kahan, "Further remarks on reducing truncation errors", 1965;
      Zamirai et al., "Revisiting BFloat16 Training", 2020.

    Examples:
      >>> import jax.numpy as jnp
      >>> from adamjax._rounding import kahan_add
      >>> p, c = jnp.ones(1, jnp.bfloat16), jnp.zeros(1, jnp.bfloat16)
      >>> for _ in range(100):
      ...     p, c = kahan_add(p, jnp.full(1, 1e-4, jnp.float32), c)
      >>> float(p[0]), abs(float(p[0]) + float(c[0]) - 1.01) < 1e-3  # 100 nearest-rounded steps leave 1.0
      (1.0078125, True)
    """
    dtype = _check_low_precision("kahan_add", "param", jnp.result_type(param))
    param32 = jnp.asarray(param).astype(jnp.float32)
    corrected = jnp.asarray(update).astype(jnp.float32) + jnp.asarray(compensation).astype(jnp.float32)
    new_param = (param32 + corrected).astype(dtype)
    lost = corrected - (new_param.astype(jnp.float32) - param32)
    return new_param, lost.astype(jnp.result_type(compensation))


def landing_update(param: jax.Array, target: jax.Array) -> jax.Array:
    """The float32 update ``u`` with ``optax.apply_updates(param, u) == target``.

    ``optax.apply_updates`` computes ``(param + u).astype(param.dtype)``; with
    a 16-bit ``param`` and a float32 ``u``, ``param + u`` is a float32 sum
    (JAX's standard promotion), and ``u = float32(target - param)``.

    It lands exactly when ``target`` is zero or ``|target| >= 2^-16 |param|``
    (``2^-13`` for float16), for magnitudes in ``[1e-30, 1e38]``: then the
    difference either fits in float32's 24 bits (the sum is exactly
    ``target``) or is dominated by ``target`` (the sum is within a float32
    rounding of it, far inside its 16-bit rounding interval). Sign changes and
    zero are covered. A non-zero ``target`` below ``2^-16 |param|`` is a
    shrink no float32 step can express; it lands within ``2^-24 |param|`` of
    ``target``. Below ``1e-30`` the float32 difference can be subnormal, which
    XLA flushes to zero on CPU; above ``1e38`` it can overflow.

    Args:
      param: the current bfloat16 or float16 weights.
      target: the weights wanted after ``apply_updates``, same dtype.

    Returns:
      A float32 array of ``param``'s shape.

    Raises:
      TypeError: ``param`` is not 16-bit or ``target``'s dtype differs.

    Examples:
      >>> import jax.numpy as jnp, optax
      >>> from adamjax._rounding import landing_update
      >>> p = jnp.array([1.0, 3.0, -2.0], jnp.bfloat16)
      >>> t = jnp.array([1.0078125, -0.0, 0.5], jnp.bfloat16)
      >>> with jax.numpy_dtype_promotion("standard"):
      ...     bool(jnp.all(optax.apply_updates(p, landing_update(p, t)) == t))
      True
    """
    dtype = _check_low_precision("landing_update", "param", jnp.result_type(param))
    if jnp.result_type(target) != dtype:
        raise TypeError(f"`landing_update(target=...)` must have param's dtype {dtype}; got {jnp.result_type(target)}.")
    return jnp.asarray(target).astype(jnp.float32) - jnp.asarray(param).astype(jnp.float32)


def rounded_update(
    param: jax.Array,
    update: jax.Array,
    *,
    rounding: str,
    key: jax.Array | None = None,
    compensation: jax.Array | None = None,
    draw: jax.Array | None = None,
) -> tuple[jax.Array, jax.Array | None]:
    """The optax update that moves a 16-bit ``param`` by ``update`` with ``rounding``.

    The new weight is ``round(param + update)`` (to nearest, stochastically,
    or Kahan-compensated) and the returned update is its ``landing_update``, so
    ``optax.apply_updates(param, u)`` stores exactly that weight.

    Args:
      param: bfloat16 or float16 weights.
      update: the float32 step the optimizer computed.
      rounding: ``"nearest"``, ``"stochastic"`` or ``"kahan"``.
      key: the ``jax.random`` key, for ``"stochastic"``.
      compensation: the Kahan buffer (``param``'s dtype), for ``"kahan"``.
      draw: instead of ``key``, uniform numbers in [0, 1) shaped like ``param``.

    Returns:
      ``(u, new_compensation)``: the float32 update, and the new Kahan buffer
      (``None`` unless ``rounding="kahan"``).

    Raises:
      ValueError: ``rounding`` is unknown, or its ``key``/``compensation`` is missing.

    Examples:
      >>> import jax, jax.numpy as jnp, optax
      >>> from adamjax._rounding import rounded_update
      >>> p = jnp.ones(4, jnp.bfloat16)
      >>> u, _ = rounded_update(p, jnp.full(4, 1e-3, jnp.float32), rounding="nearest")
      >>> with jax.numpy_dtype_promotion("standard"):
      ...     optax.apply_updates(p, u)
      Array([1, 1, 1, 1], dtype=bfloat16)
    """
    if rounding not in ROUNDING_MODES:
        raise ValueError(f"`rounded_update(rounding=...)` must be one of {ROUNDING_MODES}; got {rounding!r}.")
    dtype = _check_low_precision("rounded_update", "param", jnp.result_type(param))
    new_compensation = None
    if rounding == "nearest":
        target = (jnp.asarray(param).astype(jnp.float32) + update.astype(jnp.float32)).astype(dtype)
    elif rounding == "stochastic":
        if key is None and draw is None:
            raise ValueError('`rounded_update(rounding="stochastic")` needs `key=` (a jax.random key).')
        value = jnp.asarray(param).astype(jnp.float32) + update.astype(jnp.float32)
        target = stochastic_round(value, dtype, key, draw=draw)
    else:
        if compensation is None:
            raise ValueError('`rounded_update(rounding="kahan")` needs `compensation=` (zeros like param at first).')
        target, new_compensation = kahan_add(param, update, compensation)
    return landing_update(param, target), new_compensation


class RoundingState(NamedTuple):
    """State of :func:`rounding_transformation`.

    Attributes:
      key: the ``jax.random`` key data (uint32) of the next stochastic step;
        unused by ``"kahan"``.
      compensation: Kahan's buffer per parameter (the parameter's dtype, for
        16-bit parameters; ``None`` elsewhere and for ``"stochastic"``).
    """

    key: jax.Array
    compensation: Any


def check_rounding(func: str, rounding: Any, seed: Any) -> None:
    """Validates ``rounding`` and ``seed`` when an optimizer is built."""
    if rounding not in ROUNDING_MODES:
        raise ValueError(f"`{func}(rounding=...)` must be one of {ROUNDING_MODES}; got {rounding!r}.")
    if isinstance(seed, jax.Array) or hasattr(seed, "aval"):  # an array or a tracer
        raise TypeError(
            f"`{func}(seed=...)` must be a Python int, not an array; with optax.inject_hyperparams "
            "pass static_args=('seed',)."
        )
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
        raise ValueError(f"`{func}(seed=...)` must be a non-negative Python int or None; got {seed!r}.")


def rounding_transformation(func: str, rounding: str, seed: int | None = None) -> Any:
    r"""The chain member that lands 16-bit weights on a stochastically or Kahan-rounded value.

    It comes last in a chain (after the learning rate). For each bfloat16 or
    float16 parameter :math:`\theta` with update :math:`u`, it picks the new
    weight :math:`\theta' = \mathrm{round}(\theta + u)` by ``rounding`` and
    returns :func:`landing_update` (float32), so ``optax.apply_updates``
    stores exactly :math:`\theta'`; other parameters' updates pass unchanged.
    Stochastic rounding draws from ``seed`` and the step count (deterministic
    given the seed); Kahan keeps a 16-bit compensation buffer per parameter.

    Examples:
      >>> import jax, jax.numpy as jnp, optax
      >>> from adamjax._rounding import rounding_transformation
      >>> tx = rounding_transformation("demo", "kahan")
      >>> p = jnp.ones(2, jnp.bfloat16)
      >>> s = tx.init(p)
      >>> for _ in range(100):
      ...     u, s = tx.update(jnp.full(2, 1e-4, jnp.bfloat16), s, p)
      ...     with jax.numpy_dtype_promotion("standard"):
      ...         p = optax.apply_updates(p, u)
      >>> float(p[0])  # round-to-nearest would leave 1.0
      1.0078125
    """
    import optax

    check_rounding(func, rounding, seed)

    def init_fn(params: Any) -> RoundingState:
        low = lambda p: jnp.dtype(jnp.result_type(p)) in _LOW_PRECISION  # noqa: E731
        compensation = jax.tree.map(lambda p: jnp.zeros_like(p) if rounding == "kahan" and low(p) else None, params)
        return RoundingState(jax.random.key_data(jax.random.key(seed or 0)), compensation)

    def update_fn(updates: Any, state: Any, params: Any = None) -> tuple[Any, RoundingState]:
        if params is None:
            raise ValueError(
                f'`{func}(rounding="{rounding}")` needs the parameters: call `update(grads, state, params)`.'
            )
        treedef = jax.tree.structure(updates)
        update_leaves, param_leaves = treedef.flatten_up_to(updates), treedef.flatten_up_to(params)
        comp_leaves = treedef.flatten_up_to(state.compensation)
        key = jax.random.wrap_key_data(state.key)
        step_key, next_key = jax.random.split(key)
        low = [jnp.dtype(jnp.result_type(p)) in _LOW_PRECISION for p in param_leaves]
        shapes = [tuple(jnp.shape(p)) if is_low else None for p, is_low in zip(param_leaves, low, strict=True)]
        draws = uniform_draws(step_key, shapes) if rounding == "stochastic" else [None] * len(shapes)
        out, new_comp = [], []
        for u, p, c, is_low, draw in zip(update_leaves, param_leaves, comp_leaves, low, draws, strict=True):
            if not is_low:
                out.append(u)
                new_comp.append(c)
                continue
            landed, c2 = rounded_update(
                p, jnp.asarray(u).astype(jnp.float32), rounding=rounding, draw=draw, compensation=c
            )
            out.append(landed)
            new_comp.append(c2)
        return treedef.unflatten(out), RoundingState(jax.random.key_data(next_key), treedef.unflatten(new_comp))

    return optax.GradientTransformation(init_fn, update_fn)
