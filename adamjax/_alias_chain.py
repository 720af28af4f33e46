r"""How every alias is put together: the core, a decoupled decay, the learning rate (:func:`_build`).

Each alias (``adam``, ``adamw``, ``radam``, ...; one file per family member) is
the ``optax.chain`` optax builds for the same optimizer: the core
:func:`adamjax.scale_by_adam` with the variant's switches or a member's stages
(PyTorch's coupled L2 ``weight_decay`` runs inside it), the decoupled decay
for the ``...w`` aliases, and the learning rate (:func:`scale_by_learning_rate`)
-- so every alias runs the same Adam maths and its state tree is optax's. The
layout depends only on which switches are on, never on hyperparameter values,
so ``optax.inject_hyperparams`` (which calls the factory once with concrete and
once with traced values) sees the same structure each time.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax

from adamjax import _checks, _core, _fused, _numerics, _rounding
from adamjax._types import ScalarOrSchedule


def _decoupled_decay(func: str, weight_decay: Any, mask: Any = None) -> optax.GradientTransformation:
    r"""The decoupled term :math:`u \leftarrow u + \lambda_t \theta` (after the core), with optax's state.

    ``weight_decay`` is a number, a JAX scalar (a tracer too) or a schedule of
    the step count. The state is exactly ``optax.add_decayed_weights``' (empty
    for a constant, a step count for a schedule, inside ``optax.MaskedState``
    with a mask), so a state tree matches optax's. The product is taken in
    float32 or wider and rounded once to the update's dtype, so a float32 decay
    keeps bfloat16 updates bfloat16. A literal 0 needs no ``params``.
    """
    _checks.check_schedule_or_nonnegative(func, "weight_decay", weight_decay)
    schedule = callable(weight_decay) and not _checks.is_traced(weight_decay)
    literal_zero = not schedule and isinstance(weight_decay, int | float) and float(weight_decay) == 0.0
    weight_decay = _checks.checked_schedule(func, "weight_decay", weight_decay)
    init_fn = optax.add_decayed_weights(weight_decay).init

    def update_fn(updates: optax.Updates, state: Any, params: optax.Params | None = None) -> tuple[Any, Any]:
        if schedule:
            rate, state = weight_decay(state.count), state._replace(count=optax.safe_increment(state.count))
        else:
            rate = weight_decay
        if literal_zero:
            return updates, state
        if params is None:
            raise ValueError(f"`{func}(weight_decay=...)` needs the parameters: call `update(grads, state, params)`.")
        _core.check_same_structure(func, updates, params)
        decayed = jax.tree.map(
            lambda u, p: None if u is None else u + _numerics.scale_leaf(rate, jnp.asarray(p, jnp.result_type(u))),
            updates,
            params,
            is_leaf=lambda x: x is None,
        )
        return decayed, state

    tx = optax.GradientTransformation(init_fn, update_fn)
    if mask is None:
        return tx
    _checks.check_mask(func, mask)
    return _masked(func, tx, mask)


def _masked(func: str, tx: optax.GradientTransformation, mask: Any) -> optax.GradientTransformation:
    """``optax.masked(tx, mask)`` whose ``init`` says clearly when the mask does not fit the parameters."""
    masked = optax.masked(tx, mask)

    def init_fn(params: optax.Params) -> Any:
        try:
            return masked.init(params)
        except (ValueError, TypeError):
            mask_tree = mask(params) if callable(mask) else mask
            try:
                jax.tree.structure(mask_tree).flatten_up_to(params)
            except (ValueError, TypeError):
                raise TypeError(
                    f"`{func}(mask=...)` must have the structure of the parameters (or a prefix of it).\n"
                    f"  mask:       {jax.tree.structure(mask_tree)}\n  parameters: {jax.tree.structure(params)}"
                ) from None
            raise

    return optax.GradientTransformationExtraArgs(init_fn, masked.update)


_NO_DECAY = object()  # the alias has no decoupled decay (``None`` is refused as a value)


def _build(
    func: str,
    args: dict[str, Any],
    *,
    decoupled: bool = False,
    decay_in_core: bool = False,
    consumed: tuple[str, ...] = (),
    after_decay: tuple[optax.GradientTransformation, ...] = (),
    **fixed: Any,
) -> optax.GradientTransformationExtraArgs:
    """Validates everything for ``func`` and chains the core, the decoupled decay and the learning rate.

    ``args`` is the alias's own arguments by name (its ``locals()`` before it
    assigns anything), so each signature is written once, in the alias; the
    ones named in ``consumed`` (a member's own settings) are left out, and
    ``fixed`` sets or overrides what the alias decides itself (``power``,
    ``member``, ...). With ``decoupled``, ``weight_decay`` and ``mask`` are the
    decoupled decay of the ``...w`` aliases; otherwise ``weight_decay`` is
    PyTorch's coupled L2 term, inside the core. With ``decay_in_core`` too the
    decoupled decay runs inside the core, before the ``post`` stages in
    ``fixed`` (StableAdamW's clipping scales it), instead of as optax's
    ``add_decayed_weights`` after the core.

    The chain is optax's for the same optimizer (``scale_by_adam``-like core,
    ``add_decayed_weights`` for the ``...w`` aliases, ``scale_by_learning_rate``),
    so its state tree is optax's; PyTorch's coupled L2 term lives inside the
    core and adds no state.
    """
    switches = {name: value for name, value in args.items() if name not in consumed} | fixed
    rounding, seed = switches.pop("rounding", "nearest"), switches.pop("seed", None)
    _rounding.check_rounding(func, rounding, seed)
    learning_rate = switches.pop("learning_rate")
    b1, b2, eps, eps_root = (switches.pop(name) for name in ("b1", "b2", "eps", "eps_root"))
    decoupled_decay = switches.pop("weight_decay") if decoupled else _NO_DECAY
    mask = switches.pop("mask") if decoupled else None
    _checks.check_learning_rate(func, "learning_rate", learning_rate)
    if decay_in_core:
        switches.update(decoupled_weight_decay=decoupled_decay, decay_mask=mask)
        decoupled_decay, mask = _NO_DECAY, None
    config = _core.make_config(func, b1, b2, eps, eps_root, **switches)
    parts = [_core.transformation(config, func)]
    decay_slot = None
    if decoupled_decay is not _NO_DECAY:
        decay_slot = len(parts)
        parts.append(_decoupled_decay(func, decoupled_decay, mask))
    parts.extend(after_decay)
    rate_slot = len(parts)
    parts.append(scale_by_learning_rate(learning_rate, func=func))
    if rounding != "nearest":
        parts.append(_rounding.rounding_transformation(func, rounding, seed))
    chain = optax.chain(*parts)
    spec = _fused.FusedSpec(
        func,
        config,
        _checks.checked_schedule(func, "learning_rate", learning_rate),
        None if decoupled_decay is _NO_DECAY else _checks.checked_schedule(func, "weight_decay", decoupled_decay),
        mask=mask,
        after_decay="a per-array trust ratio" if after_decay else None,
        rounding=rounding,
        decay_slot=decay_slot,
        rate_slot=rate_slot,
    )
    return _fused.attach(spec, chain)


def _scale(updates: optax.Updates, factor: Any) -> optax.Updates:
    """``factor * u`` for each update, rounded once back to the update's dtype."""
    return jax.tree.map(lambda u: _numerics.scale_leaf(factor, u), updates)


def scale_by_learning_rate(
    learning_rate: ScalarOrSchedule, *, func: str = "scale_by_learning_rate"
) -> optax.GradientTransformation:
    r"""Multiplies updates by :math:`-\eta_t`, keeping each update's dtype.

    ``learning_rate`` is a number, a JAX scalar (a tracer too) or an optax
    schedule, called with the step count starting at 0, as optax does. Unlike
    ``optax.scale_by_learning_rate``, a float32 learning rate does not promote
    bfloat16 updates to float32.

    Args:
      learning_rate: :math:`\eta`, a number ``>= 0`` or a callable schedule.
      func: the public call named in error messages.

    Returns:
      An ``optax.GradientTransformation``: stateless for a constant rate,
      counting steps (``optax.ScaleByScheduleState``) for a schedule.

    Raises:
      ValueError, TypeError: ``learning_rate`` is negative, NaN, infinite or
        not a number; (from ``update``) a schedule returned something other
        than a real scalar.
    """
    _checks.check_learning_rate(func, "learning_rate", learning_rate)
    if not callable(learning_rate):
        return optax.stateless(lambda updates, params=None: _scale(updates, -learning_rate))

    def init_fn(params: optax.Params) -> optax.ScaleByScheduleState:
        del params
        return optax.ScaleByScheduleState(count=jnp.zeros([], jnp.int32))

    def update_fn(updates, state, params=None):
        del params
        rate: Any = learning_rate(state.count)
        _checks.check_schedule_value(func, "learning_rate", rate)
        return _scale(updates, -rate), optax.ScaleByScheduleState(count=optax.safe_increment(state.count))

    return optax.GradientTransformation(init_fn, update_fn)
