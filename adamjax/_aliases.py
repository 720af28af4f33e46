r"""The Adam family as ready-to-use optimizers.

Each alias is the ``optax.chain`` optax builds for the same optimizer: the
core :func:`adamjax.scale_by_adam` with the variant's switches (PyTorch's
coupled L2 ``weight_decay`` runs inside it), the decoupled decay for the
``...w`` aliases, and the learning rate -- so every alias runs the same Adam
maths and its state tree is optax's. The layout depends only on which
switches are on, never on hyperparameter values, so ``optax.inject_hyperparams``
(which calls the factory once with concrete and once with traced values) sees
the same structure each time.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax

from adamjax import _checks, _core, _fused, _nadam, _numerics, _rounding
from adamjax._transform import scale_by_learning_rate
from adamjax._types import ArrayLike, DTypeLike, ScalarOrSchedule


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
    if decoupled_decay is not _NO_DECAY:
        parts.append(_decoupled_decay(func, decoupled_decay, mask))
    parts.extend(after_decay)
    parts.append(scale_by_learning_rate(learning_rate, func=func))
    if rounding != "nearest":
        parts.append(_rounding.rounding_transformation(func, rounding, seed))
    chain = optax.chain(*parts)
    spec = _fused.FusedSpec(
        func,
        config,
        _checks.checked_schedule(func, "learning_rate", learning_rate),
        None if decoupled_decay is _NO_DECAY else _checks.checked_schedule(func, "weight_decay", decoupled_decay),
        masked=mask is not None,
        after_decay="a per-array trust ratio" if after_decay else None,
        rounding=rounding,
    )
    return _fused.attach(spec, chain)


def adam(
    learning_rate: ScalarOrSchedule,
    b1: ArrayLike = 0.9,
    b2: ArrayLike = 0.999,
    eps: ArrayLike = 1e-8,
    eps_root: ArrayLike = 0.0,
    mu_dtype: DTypeLike | None = None,
    *,
    nesterov: bool = False,
    weight_decay: ScalarOrSchedule | None = None,
    amsgrad: bool = False,
    centered: bool = False,
    power: ArrayLike | None = None,
    bias_correction: bool = True,
    nu_dtype: DTypeLike | None = None,
    cautious: bool = False,
    state_bits: int | None = None,
    block_size: int | None = None,
    rounding: str = "nearest",
    seed: int | None = None,
) -> optax.GradientTransformationExtraArgs:
    r"""Adam (``optax.adam``), with PyTorch's coupled L2 ``weight_decay`` as an option.

    .. math::

      g_t &\leftarrow g_t + \lambda \theta_{t-1} \quad (\lambda = \text{weight\_decay}, \text{ if given}) \\
      m_t &= \beta_1 m_{t-1} + (1-\beta_1) g_t, \qquad
      v_t = \beta_2 v_{t-1} + (1-\beta_2) |g_t|^2 \\
      \theta_t &= \theta_{t-1} - \eta_t\, \frac{m_t / (1-\beta_1^t)}
                 {\sqrt{v_t/(1-\beta_2^t) + \epsilon_{root}} + \epsilon}

    Positional parameters, defaults and the state tree are ``optax.adam``'s:
    ``(ScaleByAdamState(count, mu, nu), EmptyState())`` for a constant rate,
    ``ScaleByScheduleState`` in the second slot for a schedule, so
    ``opt_state[0].mu`` and optax checkpoints work unchanged. With
    ``weight_decay`` it is ``torch.optim.Adam(weight_decay=...)`` (the decay
    goes through the moments; for decay that does not, use :func:`adamw`); the
    term lives in the core and adds no state. Complex parameters are optimised
    as optax does: :math:`|g|^2 = g \bar g` feeds the (real) second moment.

    Non-finite gradients: ``optax.apply_if_finite(adam(...),
    max_consecutive_errors=k)`` skips a step whose gradients hold a NaN or an
    infinity (zero updates; moments and count unchanged) and gives up after
    ``k`` such steps in a row; ``adamjax.optimizers.from_transformation`` of it
    is the same guard for the triple API. Every alias here composes the same way.

    Args:
      learning_rate: :math:`\eta`, a number ``>= 0`` or an optax schedule
        (called with the step count, 0 on the first step).
      b1: as in :func:`scale_by_adam`.
      b2: as in :func:`scale_by_adam`.
      eps: as in :func:`scale_by_adam`.
      eps_root: as in :func:`scale_by_adam`.
      mu_dtype: dtype of the first moment (``None``: the parameters').
      nesterov: Nesterov momentum (optax's NAdam form), as ``optax.adam``.
      weight_decay: coupled L2 :math:`\lambda \ge 0` (adamjax only), a number
        or a schedule; ``None`` (the default) leaves the term out; ``update``
        needs ``params`` when it is given.
      amsgrad: as in :func:`scale_by_adam` (adamjax only).
      centered: as in :func:`scale_by_adam` (adamjax only).
      power: as in :func:`scale_by_adam` (adamjax only).
      bias_correction: as in :func:`scale_by_adam` (adamjax only).
      nu_dtype: as in :func:`scale_by_adam` (adamjax only).

    Cautious masking: ``cautious=True`` keeps each update only where it agrees in
    sign with the gradient (Liang et al., "Cautious Optimizers", 2024; see
    :func:`adamjax._stages.cautious`).

    Quantized moments: ``state_bits=8`` or ``4`` stores the moments of arrays
    with at least 4,096 elements as blockwise-quantized codes with a float32
    scale per ``block_size`` elements (Dettmers et al. 2022; see
    :func:`scale_by_adam`), about 2 or 1 bytes per parameter instead of 8.

    16-bit weights: with bfloat16 or float16 parameters, ``rounding="stochastic"``
    (drawn from ``seed``, None meaning 0) or ``"kahan"`` (a 16-bit compensation buffer in the
    state) picks the new weight, and the update is chosen so that
    ``optax.apply_updates`` stores exactly it; ``"nearest"`` (the default) is
    plain rounding (:func:`adamjax._rounding.rounding_transformation`).

    Returns:
      An ``optax.GradientTransformationExtraArgs`` (an ``optax.chain``).

    Examples:
      >>> import jax, jax.numpy as jnp, optax, adamjax
      >>> params = jnp.array([1.0, -1.0])
      >>> tx = adamjax.adam(0.1)
      >>> state = tx.init(params)
      >>> updates, state = tx.update(jax.grad(lambda p: (p**2).sum())(params), state)
      >>> optax.apply_updates(params, updates)
      Array([ 0.9, -0.9], dtype=float32)
      >>> type(state[0]).__name__, int(state[0].count)
      ('ScaleByAdamState', 1)

    References:
      Kingma & Ba, "Adam: A Method for Stochastic Optimization", 2015.
      PyTorch ``torch.optim.Adam``; optax ``optax.adam``.
    """
    return _build("adam", locals())


def adamw(
    learning_rate: ScalarOrSchedule,
    b1: ArrayLike = 0.9,
    b2: ArrayLike = 0.999,
    eps: ArrayLike = 1e-8,
    eps_root: ArrayLike = 0.0,
    mu_dtype: DTypeLike | None = None,
    weight_decay: ScalarOrSchedule = 1e-4,
    mask: Any | Callable[[optax.Params], Any] | None = None,
    *,
    nesterov: bool = False,
    amsgrad: bool = False,
    nu_dtype: DTypeLike | None = None,
    cautious: bool = False,
    state_bits: int | None = None,
    block_size: int | None = None,
    rounding: str = "nearest",
    seed: int | None = None,
) -> optax.GradientTransformationExtraArgs:
    r"""AdamW: Adam with decoupled weight decay (``optax.adamw``).

    .. math::

      \theta_t = \theta_{t-1} - \eta_t \big( u_t + \lambda_t \theta_{t-1} \big)

    where :math:`u_t` is the Adam direction of :func:`scale_by_adam`. The decay
    is scaled by the learning rate but not by Adam's preconditioner, as in
    ``torch.optim.AdamW`` and ``optax.adamw`` (PyTorch writes it as
    :math:`\theta \leftarrow \theta (1 - \eta\lambda)` before the Adam step,
    the same update). Positional parameters, defaults and the state tree are
    ``optax.adamw``'s: ``(ScaleByAdamState, EmptyState | MaskedState,
    EmptyState | ScaleByScheduleState)``.

    Args:
      learning_rate: :math:`\eta`, a number or an optax schedule.
      b1: as in :func:`scale_by_adam`.
      b2: as in :func:`scale_by_adam`.
      eps: as in :func:`scale_by_adam`.
      eps_root: as in :func:`scale_by_adam`.
      mu_dtype: dtype of the first moment (``None``: the parameters').
      weight_decay: :math:`\lambda \ge 0`, a number or a schedule (not None).
      mask: which parameters decay: a pytree of booleans shaped like the
        parameters, or a callable that returns one (as ``optax.adamw``).
      nesterov: Nesterov momentum (``optax.adamw(nesterov=True)``).
      amsgrad: as in :func:`scale_by_adam` (adamjax only).
      nu_dtype: as in :func:`scale_by_adam` (adamjax only).

    ``cautious``, ``state_bits``, ``block_size``, ``rounding`` and ``seed``: as in
    :func:`adam` (cautious masking, quantized moments, 16-bit weight rounding).

    Returns:
      An ``optax.GradientTransformationExtraArgs``; ``update`` needs ``params``.

    Examples:
      >>> import jax.numpy as jnp, optax, adamjax
      >>> tx = adamjax.adamw(0.1, weight_decay=0.5)
      >>> params = jnp.array([2.0])
      >>> updates, state = tx.update(jnp.array([1.0]), tx.init(params), params)
      >>> optax.apply_updates(params, updates)  # 2 - 0.1 * (1 + 0.5 * 2)
      Array([1.8], dtype=float32)

    References:
      Loshchilov & Hutter, "Decoupled Weight Decay Regularization", 2019.
    """
    return _build("adamw", locals(), decoupled=True)


def nadam(
    learning_rate: ScalarOrSchedule,
    b1: ArrayLike = 0.9,
    b2: ArrayLike = 0.999,
    eps: ArrayLike = 1e-8,
    eps_root: ArrayLike = 0.0,
    mu_dtype: DTypeLike | None = None,
    *,
    nesterov: bool = True,
    weight_decay: ScalarOrSchedule | None = None,
    nu_dtype: DTypeLike | None = None,
    cautious: bool = False,
    momentum_decay: ArrayLike | None = None,
    state_bits: int | None = None,
    block_size: int | None = None,
    rounding: str = "nearest",
    seed: int | None = None,
) -> optax.GradientTransformationExtraArgs:
    r"""NAdam: Adam with Nesterov momentum, in optax's form (``optax.nadam``).

    .. math::

      \hat m_t = \frac{\beta_1 m_t}{1-\beta_1^{t+1}} + \frac{(1-\beta_1) g_t}{1-\beta_1^t}, \qquad
      \theta_t = \theta_{t-1} - \eta_t \frac{\hat m_t}{\sqrt{\hat v_t + \epsilon_{root}} + \epsilon}

    Same signature and state as ``optax.nadam`` (whose keyword ``nesterov``
    defaults to True; False gives plain Adam). ``momentum_decay=psi`` gives
    ``torch.optim.NAdam(momentum_decay=psi)`` instead (PyTorch's default is
    ``4e-3``): the momentum factor warms up as
    :math:`\mu_t = \beta_1 (1 - \tfrac12 0.96^{t\psi})` and the state is
    :class:`adamjax.NadamState`, which also keeps :math:`\prod_{s \le t} \mu_s`
    (see :mod:`adamjax._nadam`).

    Args:
      learning_rate: :math:`\eta`, a number or an optax schedule.
      b1: as in :func:`scale_by_adam`.
      b2: as in :func:`scale_by_adam`.
      eps: as in :func:`scale_by_adam`.
      eps_root: as in :func:`scale_by_adam`.
      mu_dtype: dtype of the first moment.
      nesterov: as ``optax.nadam``.
      weight_decay: coupled L2, as in :func:`adam` (adamjax only).
      nu_dtype: dtype of the second moment (adamjax only).

    ``cautious``, ``state_bits``, ``block_size``, ``rounding`` and ``seed``: as in
    :func:`adam` (cautious masking, quantized moments, 16-bit weight rounding).

    Returns:
      An ``optax.GradientTransformationExtraArgs``.

    Examples:
      >>> import jax.numpy as jnp, adamjax
      >>> tx = adamjax.nadam(0.1)
      >>> updates, _ = tx.update(jnp.array([2.0]), tx.init(jnp.zeros(1)))
      >>> round(float(updates[0]), 4)  # -lr * (b1 (1 - b1) / (1 - b1^2) + 1) * sign(g)
      -0.1474

    References:
      Dozat, "Incorporating Nesterov Momentum into Adam", 2016.
    """
    return _build(
        "nadam",
        locals(),
        consumed=("momentum_decay",),
        member=None if momentum_decay is None else _nadam.member(momentum_decay),
    )


def nadamw(
    learning_rate: ScalarOrSchedule,
    b1: ArrayLike = 0.9,
    b2: ArrayLike = 0.999,
    eps: ArrayLike = 1e-8,
    eps_root: ArrayLike = 0.0,
    mu_dtype: DTypeLike | None = None,
    weight_decay: ScalarOrSchedule = 1e-4,
    mask: Any | Callable[[optax.Params], Any] | None = None,
    *,
    nesterov: bool = True,
    nu_dtype: DTypeLike | None = None,
    cautious: bool = False,
    state_bits: int | None = None,
    block_size: int | None = None,
    rounding: str = "nearest",
    seed: int | None = None,
) -> optax.GradientTransformationExtraArgs:
    r"""NAdamW: :func:`nadam` with decoupled weight decay (``optax.nadamw``).

    .. math::

      \theta_t = \theta_{t-1} - \eta_t \big( u_t + \lambda_t \theta_{t-1} \big),

    with :math:`u_t` NAdam's direction (see :func:`nadam`).

    Args:
      learning_rate: :math:`\eta`, a number or an optax schedule.
      b1: as in :func:`nadam`.
      b2: as in :func:`nadam`.
      eps: as in :func:`nadam`.
      eps_root: as in :func:`nadam`.
      mu_dtype: as in :func:`nadam`.
      weight_decay: as in :func:`adamw`.
      mask: as in :func:`adamw`.
      nesterov: as ``optax.nadamw``.
      nu_dtype: dtype of the second moment (adamjax only).

    ``cautious``, ``state_bits``, ``block_size``, ``rounding`` and ``seed``: as in
    :func:`adam` (cautious masking, quantized moments, 16-bit weight rounding).

    Returns:
      An ``optax.GradientTransformationExtraArgs``; ``update`` needs ``params``.

    Examples:
      >>> import jax, jax.numpy as jnp, optax, adamjax
      >>> params = jnp.ones(2)
      >>> jax.tree.structure(adamjax.nadamw(0.1).init(params)) == jax.tree.structure(
      ...     optax.nadamw(0.1).init(params))
      True

    References:
      Dozat, "Incorporating Nesterov Momentum into Adam", 2016;
      Loshchilov & Hutter, "Decoupled Weight Decay Regularization", 2019.
    """
    return _build("nadamw", locals(), decoupled=True)


def amsgrad(
    learning_rate: ScalarOrSchedule,
    b1: ArrayLike = 0.9,
    b2: ArrayLike = 0.999,
    eps: ArrayLike = 1e-8,
    eps_root: ArrayLike = 0.0,
    mu_dtype: DTypeLike | None = None,
    bias_correction_mu: bool = True,
    bias_correction_nu: bool = True,
    *,
    weight_decay: ScalarOrSchedule | None = None,
    nu_dtype: DTypeLike | None = None,
    cautious: bool = False,
    state_bits: int | None = None,
    block_size: int | None = None,
    rounding: str = "nearest",
    seed: int | None = None,
) -> optax.GradientTransformationExtraArgs:
    r"""AMSGrad with PyTorch's convention (``torch.optim.Adam(amsgrad=True)``).

    .. math::

      \tilde v_t = \max(\tilde v_{t-1}, v_t), \qquad
      \theta_t = \theta_{t-1} - \eta_t \frac{m_t/(1-\beta_1^t)}
                 {\sqrt{\tilde v_t / (1-\beta_2^t) + \epsilon_{root}} + \epsilon}

    The signature and the state class (``optax.ScaleByAmsgradState(count, mu,
    nu, nu_max)``) are ``optax.amsgrad``'s, but the maximum is taken over the
    raw second moment, then bias-corrected, as PyTorch does. optax takes the
    maximum of the bias-corrected moments (so its ``nu_max`` holds corrected
    values): at the same hyperparameters the two give different numbers
    whenever ``bias_correction_nu`` is on; with it off they agree.

    Args:
      learning_rate: :math:`\eta`, a number or an optax schedule.
      b1: as in :func:`scale_by_adam`.
      b2: as in :func:`scale_by_adam`.
      eps: as in :func:`scale_by_adam`.
      eps_root: as in :func:`scale_by_adam`.
      mu_dtype: dtype of the first moment.
      bias_correction_mu: divide :math:`m_t` by :math:`1 - \beta_1^t`.
      bias_correction_nu: divide :math:`\tilde v_t` by :math:`1 - \beta_2^t`.
      weight_decay: coupled L2, as in :func:`adam` (adamjax only).
      nu_dtype: dtype of ``nu`` and ``nu_max`` (adamjax only).

    ``cautious``, ``state_bits``, ``block_size``, ``rounding`` and ``seed``: as in
    :func:`adam` (cautious masking, quantized moments, 16-bit weight rounding).

    Returns:
      An ``optax.GradientTransformationExtraArgs``.

    Examples:
      >>> import jax.numpy as jnp, adamjax
      >>> tx = adamjax.amsgrad(0.1)
      >>> state = tx.init(jnp.zeros(1))
      >>> _, state = tx.update(jnp.array([2.0]), state)
      >>> _, state = tx.update(jnp.array([0.0]), state)
      >>> round(float(state[0].nu_max[0]), 6)  # the raw moment's maximum, 0.001 * 2**2
      0.004

    References:
      Reddi, Kale & Kumar, "On the Convergence of Adam and Beyond", 2018.
    """
    _checks.check_flag("amsgrad", "bias_correction_mu", bias_correction_mu)
    _checks.check_flag("amsgrad", "bias_correction_nu", bias_correction_nu)
    return _build("amsgrad", locals(), amsgrad=True)


def adamax(
    learning_rate: ScalarOrSchedule,
    b1: ArrayLike = 0.9,
    b2: ArrayLike = 0.999,
    eps: ArrayLike = 1e-8,
    *,
    weight_decay: ScalarOrSchedule | None = None,
    mu_dtype: DTypeLike | None = None,
    nu_dtype: DTypeLike | None = None,
    cautious: bool = False,
    state_bits: int | None = None,
    block_size: int | None = None,
    rounding: str = "nearest",
    seed: int | None = None,
) -> optax.GradientTransformationExtraArgs:
    r"""Adamax, Adam's infinity-norm variant (``optax.adamax``, ``torch.optim.Adamax``).

    .. math::

      u_t = \max(\beta_2 u_{t-1}, |g_t| + \epsilon), \qquad
      \theta_t = \theta_{t-1} - \frac{\eta_t}{1-\beta_1^t} \frac{m_t}{u_t}

    This is :func:`scale_by_adam` with ``power=inf``, ``eps_root=eps`` and
    ``eps=0``; its state is ``optax.ScaleByAdamState`` with ``nu`` the running
    maximum, as ``optax.scale_by_adamax``. (``jax.example_libraries.optimizers.adamax``
    puts ``eps`` outside the maximum instead; :func:`adamjax.optimizers.adamax` keeps that.)

    Args:
      learning_rate: :math:`\eta`, a number or an optax schedule.
      b1: decay rate of the first moment, in ``[0, 1)``.
      b2: decay rate of the second moment, in ``[0, 1)``.
      eps: :math:`\epsilon \ge 0`, added to ``|g|`` inside the maximum.
      weight_decay: coupled L2, as ``torch.optim.Adamax(weight_decay=...)`` (adamjax only).
      mu_dtype: dtype of the first moment (adamjax only).
      nu_dtype: dtype of the second moment (adamjax only).

    ``cautious``, ``state_bits``, ``block_size``, ``rounding`` and ``seed``: as in
    :func:`adam` (cautious masking, quantized moments, 16-bit weight rounding).

    Returns:
      An ``optax.GradientTransformationExtraArgs``.

    Examples:
      >>> import jax.numpy as jnp, adamjax
      >>> tx = adamjax.adamax(0.1)
      >>> updates, _ = tx.update(jnp.array([3.0]), tx.init(jnp.zeros(1)))
      >>> round(float(updates[0]), 6)
      -0.1

    References:
      Kingma & Ba, "Adam: A Method for Stochastic Optimization", 2015, section 7.1.
    """
    _checks.check_nonnegative("adamax", "eps", eps)
    return _build("adamax", locals(), eps=0.0, eps_root=eps, power=math.inf)


def adamaxw(
    learning_rate: ScalarOrSchedule,
    b1: ArrayLike = 0.9,
    b2: ArrayLike = 0.999,
    eps: ArrayLike = 1e-8,
    weight_decay: ScalarOrSchedule = 1e-4,
    mask: Any | Callable[[optax.Params], Any] | None = None,
    *,
    mu_dtype: DTypeLike | None = None,
    nu_dtype: DTypeLike | None = None,
    cautious: bool = False,
    state_bits: int | None = None,
    block_size: int | None = None,
    rounding: str = "nearest",
    seed: int | None = None,
) -> optax.GradientTransformationExtraArgs:
    r"""AdamaxW: :func:`adamax` with decoupled weight decay (``optax.adamaxw``).

    .. math::

      \theta_t = \theta_{t-1} - \eta_t \Big( \frac{m_t}{(1-\beta_1^t)\, u_t} + \lambda_t \theta_{t-1} \Big)

    Args:
      learning_rate: :math:`\eta`, a number or an optax schedule.
      b1: as in :func:`adamax`.
      b2: as in :func:`adamax`.
      eps: as in :func:`adamax`.
      weight_decay: as in :func:`adamw`.
      mask: as in :func:`adamw`.
      mu_dtype: dtype of the first moment (adamjax only).
      nu_dtype: dtype of the second moment (adamjax only).

    ``cautious``, ``state_bits``, ``block_size``, ``rounding`` and ``seed``: as in
    :func:`adam` (cautious masking, quantized moments, 16-bit weight rounding).

    Returns:
      An ``optax.GradientTransformationExtraArgs``; ``update`` needs ``params``.

    Examples:
      >>> import jax, jax.numpy as jnp, optax, adamjax
      >>> params = jnp.ones(2)
      >>> jax.tree.structure(adamjax.adamaxw(0.1).init(params)) == jax.tree.structure(
      ...     optax.adamaxw(0.1).init(params))
      True

    References:
      Kingma & Ba, 2015, section 7.1; Loshchilov & Hutter, 2019.
    """
    _checks.check_nonnegative("adamaxw", "eps", eps)
    return _build("adamaxw", locals(), decoupled=True, eps=0.0, eps_root=eps, power=math.inf)


def adabelief(
    learning_rate: ScalarOrSchedule,
    b1: ArrayLike = 0.9,
    b2: ArrayLike = 0.999,
    eps: ArrayLike = 1e-16,
    eps_root: ArrayLike = 1e-16,
    *,
    nesterov: bool = False,
    weight_decay: ScalarOrSchedule | None = None,
    mu_dtype: DTypeLike | None = None,
    nu_dtype: DTypeLike | None = None,
    cautious: bool = False,
    state_bits: int | None = None,
    block_size: int | None = None,
    rounding: str = "nearest",
    seed: int | None = None,
) -> optax.GradientTransformationExtraArgs:
    r"""AdaBelief: Adam with the centered second moment (``optax.adabelief``).

    .. math::

      s_t = \beta_2 s_{t-1} + (1-\beta_2)(g_t - m_t)^2 + \epsilon_{root}, \qquad
      \theta_t = \theta_{t-1} - \eta_t \frac{\hat m_t}{\sqrt{s_t/(1-\beta_2^t)} + \epsilon}

    The step is large when the gradient agrees with its running mean ("belief")
    and small when it swings around it. Signature and state
    (``optax.ScaleByBeliefState(count, mu, nu)``) are optax's.

    Args:
      learning_rate: :math:`\eta`, a number or an optax schedule.
      b1: as in :func:`scale_by_adam`.
      b2: as in :func:`scale_by_adam`.
      eps: as in :func:`scale_by_adam` (note optax's defaults
        ``eps = eps_root = 1e-16``).
      eps_root: as in :func:`scale_by_adam` (note optax's defaults
        ``eps = eps_root = 1e-16``).
      nesterov: Nesterov momentum, as ``optax.adabelief``.
      weight_decay: coupled L2, as in :func:`adam` (adamjax only).
      mu_dtype: dtype of the first moment (adamjax only).
      nu_dtype: dtype of the second moment (adamjax only).

    ``cautious``, ``state_bits``, ``block_size``, ``rounding`` and ``seed``: as in
    :func:`adam` (cautious masking, quantized moments, 16-bit weight rounding).

    Returns:
      An ``optax.GradientTransformationExtraArgs``.

    Examples:
      >>> import jax.numpy as jnp, adamjax
      >>> tx = adamjax.adabelief(0.1)
      >>> type(tx.init(jnp.zeros(2))[0]).__name__
      'ScaleByBeliefState'

    References:
      Zhuang et al., "AdaBelief Optimizer: Adapting Stepsizes by the Belief in
      Observed Gradients", 2020.
    """
    return _build("adabelief", locals(), centered=True)
