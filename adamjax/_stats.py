r"""Live statistics of Adam for a training loop: cheap scalars to log every step under ``jit``."""

from __future__ import annotations

import functools
import math
import sys
from collections.abc import Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from adamjax import _checks, _core, _numerics, _settings

_QUANTILES = (0.1, 0.5, 0.9)


class AdamStats(NamedTuple):
    r"""Summaries of one Adam state and its updates; every field is a scalar.

    Coordinates of all parameters are pooled: means, maxima and quantiles run
    over every entry of every array that an adamjax core updates.

    Attributes:
      count: the step count :math:`t` of the state (int32).
      update_rms: :math:`\sqrt{\operatorname{mean}(u^2)}` over all updates.
      step_mean: the mean effective per-coordinate step size, the mean of
        :math:`|u|` -- the distance each coordinate actually moved, after the
        learning rate, clipping and everything else in the chain.
      step_max: the largest :math:`|u|`.
      snr_mean: the mean signal-to-noise ratio :math:`|\hat m| / \hat v^{1/p}`
        (:math:`|\hat m|/\sqrt{\hat v}` for Adam); near 1 when the gradient
        keeps its sign, near 0 when it swings around zero.
      snr_q10, snr_median, snr_q90: its 10 %, 50 % and 90 % quantiles.
      mu_correction_gap: :math:`1/(1-\beta_1^t) - 1`, how far the first-moment
        bias correction still is from 1.
      nu_correction_gap: :math:`1/(1-\beta_2^t) - 1`, the same for the second
        moment (0 with ``power=inf``, which is not corrected). Infinite before
        the first step.
    """

    count: jax.Array
    update_rms: jax.Array
    step_mean: jax.Array
    step_max: jax.Array
    snr_mean: jax.Array
    snr_q10: jax.Array
    snr_median: jax.Array
    snr_q90: jax.Array
    mu_correction_gap: jax.Array
    nu_correction_gap: jax.Array


class _Moments(NamedTuple):
    count: Any
    mu: Any
    nu: Any
    nu_max: Any = None


def _is_adam_state(node: Any) -> bool:
    """An Adam state, found by its fields: adamjax's, or optax's ``ScaleByAdamState``,
    ``ScaleByAmsgradState`` and ``ScaleByBeliefState`` (all ``count, mu, nu[, nu_max]``),
    or the same fields as a mapping (what ``nnx.state(optimizer)`` holds)."""
    fields = getattr(type(node), "_fields", None)
    if isinstance(node, tuple) and fields is not None:
        return fields[:3] == ("count", "mu", "nu")
    return isinstance(node, Mapping) and {"count", "mu", "nu"} <= set(node.keys())


def _adam_states(state: Any) -> list[_Moments]:
    found = []
    for node in jax.tree.leaves(state, is_leaf=lambda x: _is_adam_state(x) or _core.is_core_state(x)):
        moments = _core.state_moments(node)
        if moments is not None:  # a core state, read through its layout (AdEMAMix keeps ``m1``)
            found.append(_Moments(moments["count"], moments["mu"], moments["nu"], moments.get("nu_max")))
        elif _is_adam_state(node):
            get = node.get if isinstance(node, Mapping) else functools.partial(getattr, node)
            found.append(_Moments(get("count"), get("mu"), get("nu"), get("nu_max", None)))
    return found


def _unwrap_flax(state: Any) -> tuple[Any, Any]:
    """``(state, tx)`` with flax nnx's wrappers removed.

    An ``nnx.Optimizer`` gives its ``opt_state`` and ``tx``; the ``OptArray``
    and ``OptVariable`` boxes around each array are replaced by their values.
    flax is only looked at when the caller has imported it.
    """
    nnx = sys.modules.get("flax.nnx")
    if nnx is None:
        return state, None
    tx = None
    if isinstance(state, nnx.Optimizer):
        state, tx = state.opt_state, state.tx
    is_variable = lambda x: isinstance(x, nnx.Variable)  # noqa: E731
    unboxed = jax.tree.map(lambda x: x.get_value() if is_variable(x) else x, state, is_leaf=is_variable)
    return unboxed, tx


def _injected(state: Any) -> dict[str, Any]:
    """The hyperparameters ``optax.inject_hyperparams`` stores anywhere in ``state``."""
    is_injected = lambda x: isinstance(x, optax.InjectStatefulHyperparamsState)  # noqa: E731
    values: dict[str, Any] = {}
    todo = [state]
    while todo:
        for leaf in jax.tree.leaves(todo.pop(), is_leaf=is_injected):
            if is_injected(leaf):
                values.update(leaf.hyperparams)
                todo.append(leaf.inner_state)
    return values


def _hyperparameters(state: Any, tx: Any, given: dict[str, Any]) -> dict[str, Any]:
    """``b1``, ``b2`` and ``power``: as given, else as stored in the state, else read from ``tx``."""
    stored = _injected(state)
    settings = _settings.optimizer_settings(tx) if tx is not None else None
    found = {}
    for name, value in given.items():
        if value is None:
            value = stored.get(name)
        if value is None and settings is not None:
            value = getattr(settings, name)
        if value is None and name == "power":
            value = 2.0
        if value is None:
            raise ValueError(
                f"`adam_stats(state, updates, {name}=...)`: the state does not store {name} (it does only when the "
                f"optimizer is built with `optax.inject_hyperparams`); pass `{name}=` or the optimizer as `tx=`."
            )
        found[name] = value
    return found


def _flat(leaves: list[jax.Array], dtype: jnp.dtype) -> jax.Array:
    if not leaves:
        return jnp.zeros([0], dtype)
    return jnp.concatenate([jnp.ravel(leaf).astype(dtype) for leaf in leaves])


def adam_stats(
    state: Any,
    updates: optax.Updates,
    *,
    b1: Any = None,
    b2: Any = None,
    power: Any = None,
    tx: optax.GradientTransformation | None = None,
) -> AdamStats:
    r"""Cheap summaries of an adamjax optimizer's state and updates, for logging every step.

    Finds every Adam state (``count, mu, nu`` and AMSGrad's ``nu_max``) in
    ``state`` -- the optimizer alone, inside ``optax.chain``,
    ``inject_hyperparams``, ``masked``, ..., or a flax ``nnx.Optimizer`` and
    its ``opt_state`` -- and computes, per coordinate, with :math:`t` the state's count:

    .. math::

      \hat m = \frac{m}{1 - \beta_1^t}, \qquad
      \hat v = \frac{\tilde v}{1 - \beta_2^t}, \qquad
      \text{snr} = \frac{|\hat m|}{\hat v^{1/p}}

    where :math:`\tilde v` is AMSGrad's running maximum when the state has one,
    else the second moment. A coordinate with :math:`\hat v = 0` (its gradient
    has always been zero) has snr 0. With ``nesterov`` the snr uses the plain
    :math:`\hat m` above, not NAdam's look-ahead.

    ``b1``, ``b2`` and ``power`` are taken, in this order, from the arguments,
    from the state when the optimizer was built with
    ``optax.inject_hyperparams`` (which stores them there), or from the
    optimizer ``tx`` (an ``nnx.Optimizer`` brings its own).

    Cost: a few elementwise passes over the parameters plus one sort for the
    quantiles (:math:`O(n \log n)`), so it is meant to run inside the jitted
    training step, next to the update.

    Args:
      state: the optimizer state after the update, or a flax
        ``nnx.Optimizer`` (its ``opt_state`` and ``tx`` are used).
      updates: the updates that update returned (the final ones, after the
        learning rate).
      b1: the first-moment decay the optimizer uses (traced values are fine).
      b2: the second-moment decay the optimizer uses.
      power: the moment's order :math:`p` (``math.inf`` for Adamax, whose
        moment is not bias-corrected); 2 when neither given nor found.
      tx: the optimizer, to read ``b1``, ``b2`` and ``power`` from.

    Returns:
      An :class:`AdamStats` of scalars (float32, or float64 when the state or
      updates are float64).

    Raises:
      ValueError: ``state`` holds no Adam state, a hyperparameter is out of
        range, or ``b1``/``b2`` is neither given, stored nor readable from
        ``tx``.

    Examples:
      >>> import jax, jax.numpy as jnp, adamjax
      >>> tx = adamjax.adam(0.1)
      >>> params = jnp.array([1.0, -2.0])
      >>> state = tx.init(params)
      >>> updates, state = tx.update(2 * params, state, params)
      >>> stats = adamjax.adam_stats(state, updates, tx=tx)
      >>> round(float(stats.snr_mean), 4), round(float(stats.step_max), 4)
      (1.0, 0.1)

      With ``optax.inject_hyperparams`` the state holds ``b1`` and ``b2``:

      >>> import optax
      >>> tx = optax.inject_hyperparams(adamjax.adam)(0.1, b2=0.99)
      >>> state = tx.init(params)
      >>> updates, state = tx.update(2 * params, state, params)
      >>> round(float(adamjax.adam_stats(state, updates).mu_correction_gap), 4)
      9.0

    References:
      Kingma & Ba, "Adam: A Method for Stochastic Optimization", 2015, section 2.1
      (the "signal-to-noise ratio" :math:`\hat m / \sqrt{\hat v}`).
    """
    state, nnx_tx = _unwrap_flax(state)
    tx = nnx_tx if tx is None else tx
    adam_states = _adam_states(state)
    if not adam_states:
        raise ValueError(
            "`adam_stats(state, ...)`: found no Adam state (count, mu, nu) in `state`; pass the state of an "
            "adamjax optimizer (alone or inside optax.chain) or a flax nnx.Optimizer."
        )
    hyper = _hyperparameters(state, tx, {"b1": b1, "b2": b2, "power": power})
    b1, b2, power = hyper["b1"], hyper["b2"], hyper["power"]
    _checks.check_decay("adam_stats", "b1", b1)
    _checks.check_decay("adam_stats", "b2", b2)
    _checks.check_real("adam_stats", "power", power, low=0.0, low_closed=False, allow_inf=True)
    update_leaves = [jnp.asarray(u) for u in jax.tree.leaves(updates)]
    static_power = None if _checks.is_traced(power) else float(power)
    return _summaries(adam_states, update_leaves, b1, b2, power, static_power)


def _moments(tree: Any) -> list[jax.Array]:
    """The moment arrays of ``tree``, quantized ones dequantized to float32."""
    return [_core.read_moment(leaf) for leaf in jax.tree.leaves(tree, is_leaf=_core.is_quantized)]


@functools.partial(jax.jit, static_argnums=(5,))
def _summaries(
    adam_states: list[_Moments],
    update_leaves: list[jax.Array],
    b1: Any,
    b2: Any,
    power: Any,
    static_power: float | None,
) -> AdamStats:
    """The arithmetic of :func:`adam_stats`, compiled once per tree structure (also when called eagerly)."""
    moment_leaves = [leaf for s in adam_states for leaf in _moments((s.mu, s.nu, s.nu_max))]
    dtype = _numerics.compute_dtype(*(leaf.dtype for leaf in update_leaves + moment_leaves))
    static_inf = static_power is not None and math.isinf(static_power)

    snr_parts, mu_gaps, nu_gaps = [], [], []
    for adam_state in adam_states:
        count = adam_state.count
        started = count > 0
        t = count.astype(dtype)
        bc1 = 1 - jnp.asarray(b1, dtype) ** t
        bc2 = 1 - jnp.asarray(b2, dtype) ** t
        mu_gaps.append(1 / bc1 - 1)
        nu_gaps.append(jnp.zeros([], dtype) if static_inf else 1 / bc2 - 1)
        mu = _flat(_moments(adam_state.mu), dtype)
        second = adam_state.nu if adam_state.nu_max is None else adam_state.nu_max
        # A block second moment (Adam-mini) stands for every entry of its block.
        nu = _flat(
            [
                jnp.broadcast_to(v, jnp.shape(m))
                for m, v in zip(_moments(adam_state.mu), _moments(second), strict=False)
            ],
            dtype,
        )
        mu_hat = mu / jnp.where(started, bc1, 1)
        nu_hat = nu if static_inf else nu / jnp.where(started, bc2, 1)
        if static_inf:
            root = nu_hat
        elif static_power == 2.0:
            root = jnp.sqrt(nu_hat)
        else:
            root = nu_hat ** (1 / jnp.asarray(power, dtype))
        positive = started & (root > 0)
        snr_parts.append(jnp.where(positive, jnp.abs(mu_hat) / jnp.where(positive, root, 1), 0))

    snr = jnp.concatenate(snr_parts)
    updates_flat = _flat(update_leaves, dtype)
    magnitude = jnp.abs(updates_flat)
    if snr.size:
        quantiles = jnp.quantile(snr, jnp.asarray(_QUANTILES, dtype))
        snr_mean = jnp.mean(snr)
    else:
        quantiles = jnp.zeros([len(_QUANTILES)], dtype)
        snr_mean = jnp.zeros([], dtype)
    has_updates = updates_flat.size > 0
    return AdamStats(
        count=jnp.max(jnp.stack([s.count for s in adam_states])),
        update_rms=jnp.sqrt(jnp.mean(updates_flat**2)) if has_updates else jnp.zeros([], dtype),
        step_mean=jnp.mean(magnitude) if has_updates else jnp.zeros([], dtype),
        step_max=jnp.max(magnitude) if has_updates else jnp.zeros([], dtype),
        snr_mean=snr_mean,
        snr_q10=quantiles[0],
        snr_median=quantiles[1],
        snr_q90=quantiles[2],
        mu_correction_gap=jnp.max(jnp.stack(mu_gaps)),
        nu_correction_gap=jnp.max(jnp.stack(nu_gaps)),
    )
