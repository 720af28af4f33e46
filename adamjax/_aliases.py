r"""The Adam family as ready-to-use optimizers.

Each alias is an ``optax.chain`` of a coupled L2 term (PyTorch's
``weight_decay``, a no-op at 0), the core :func:`adamjax.scale_by_adam`
with the variant's switches, an optional decoupled decay, and the learning
rate -- so every alias runs the same Adam maths. The chain's state layout does
not depend on the values of the hyperparameters, only on which switches are
on, so ``optax.inject_hyperparams`` (which calls the factory once with
concrete and once with traced values) sees the same structure each time.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax

from adamjax import _checks, _core, _fused
from adamjax._transform import scale_by_learning_rate


def _weight_decay(func: str, weight_decay: Any, mask: Any = None, *, coupled: bool) -> optax.GradientTransformation:
    r"""The term :math:`g \leftarrow g + \lambda_t \theta` (before the core when coupled).

    ``weight_decay`` is a number, a JAX scalar (a tracer too) or a schedule of
    the step count. The product is taken in float32 or wider and rounded once
    to the gradient's dtype, so a float32 decay keeps bfloat16 updates
    bfloat16. The state is empty for a constant and a step count for a
    schedule, whatever the value, so the chain's structure never depends on it.

    A literal 0 needs no ``params``. Otherwise ``update`` needs them, with one
    exception: for the coupled term a traced value (inside
    ``optax.inject_hyperparams``' jitted update, where even the default 0 is
    traced) is skipped when no ``params`` are given, since it cannot be
    inspected there.
    """
    schedule = callable(weight_decay) and not _checks.is_traced(weight_decay)
    if not schedule:
        _checks.check_nonnegative(func, "weight_decay", weight_decay)
    literal_zero = not schedule and not _checks.is_traced(weight_decay) and float(weight_decay) == 0.0

    def add_decay(updates: optax.Updates, params: optax.Params | None, rate: Any) -> optax.Updates:
        if literal_zero:
            return updates
        if params is None:
            if coupled and _checks.is_traced(weight_decay):
                return updates
            raise ValueError(f"`{func}(weight_decay=...)` needs the parameters: call `update(grads, state, params)`.")
        _core.check_same_structure(func, updates, params)
        return jax.tree.map(
            lambda g, p: None if g is None else g + _core.scale_leaf(rate, jnp.asarray(p, jnp.result_type(g))),
            updates,
            params,
            is_leaf=lambda x: x is None,
        )

    if schedule:

        def init_fn(params: optax.Params) -> optax.ScaleByScheduleState:
            del params
            return optax.ScaleByScheduleState(count=jnp.zeros([], jnp.int32))

        def update_fn(updates, state, params=None):
            rate = weight_decay(state.count)
            _checks.check_schedule_value(func, "weight_decay", rate)
            updates = add_decay(updates, params, rate)
            return updates, optax.ScaleByScheduleState(count=optax.safe_increment(state.count))

        tx = optax.GradientTransformation(init_fn, update_fn)
    else:
        tx = optax.stateless(lambda updates, params: add_decay(updates, params, weight_decay))
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


def _build(
    func: str,
    learning_rate: Any,
    b1: Any,
    b2: Any,
    eps: Any,
    eps_root: Any,
    *,
    coupled_decay: Any = 0.0,
    decoupled_decay: Any = None,
    mask: Any = None,
    **switches: Any,
) -> optax.GradientTransformation:
    """Validates everything for ``func`` and chains decay, core and learning rate."""
    _checks.check_learning_rate(func, "learning_rate", learning_rate)
    config = _core.make_config(func, b1, b2, eps, eps_root, **switches)
    parts = [_weight_decay(func, coupled_decay, coupled=True), _core.transformation(config, func)]
    if decoupled_decay is not None:
        parts.append(_weight_decay(func, decoupled_decay, mask, coupled=False))
    parts.append(scale_by_learning_rate(learning_rate, func=func))
    chain = optax.chain(*parts)
    if mask is not None or not _fused.config_supported(config):
        return chain
    spec = _fused.FusedSpec(
        func,
        config,
        _checks.checked_schedule(func, "learning_rate", learning_rate),
        _checks.checked_schedule(func, "weight_decay", coupled_decay),
        None if decoupled_decay is None else _checks.checked_schedule(func, "weight_decay", decoupled_decay),
    )
    return _fused.attach(spec, chain)


def adam(
    learning_rate: Any,
    b1: Any = 0.9,
    b2: Any = 0.999,
    eps: Any = 1e-8,
    eps_root: Any = 0.0,
    *,
    weight_decay: Any = 0.0,
    amsgrad: bool = False,
    nesterov: bool = False,
    centered: bool = False,
    power: Any = None,
    bias_correction: bool = True,
    mu_dtype: Any = None,
    nu_dtype: Any = None,
) -> optax.GradientTransformation:
    r"""Adam, with PyTorch's coupled L2 ``weight_decay``.

    .. math::

      g_t &\leftarrow g_t + \lambda \theta_{t-1} \quad (\lambda = \text{weight\_decay}) \\
      m_t &= \beta_1 m_{t-1} + (1-\beta_1) g_t, \qquad
      v_t = \beta_2 v_{t-1} + (1-\beta_2) g_t^2 \\
      \theta_t &= \theta_{t-1} - \eta_t\, \frac{m_t / (1-\beta_1^t)}
                 {\sqrt{v_t/(1-\beta_2^t) + \epsilon_{root}} + \epsilon}

    With ``weight_decay=0`` this is ``optax.adam``; with ``weight_decay > 0`` it
    is ``torch.optim.Adam(weight_decay=...)`` (the decay goes through the
    moments; for decay that does not, use :func:`adamw`). The other switches
    are those of :func:`scale_by_adam`.

    Non-finite gradients: ``optax.apply_if_finite(adam(...),
    max_consecutive_errors=k)`` skips a step whose gradients hold a NaN or an
    infinity (zero updates; moments and count unchanged) and gives up after
    ``k`` such steps in a row; ``adamjax.optimizers.from_transformation`` of it
    is the same guard for the triple API. Every alias here composes the same way.

    Args:
      learning_rate: :math:`\eta`, a number ``>= 0`` or an optax schedule
        (called with the step count, 0 on the first step).
      b1, b2, eps, eps_root: as in :func:`scale_by_adam`.
      weight_decay: :math:`\lambda \ge 0`, a number or a schedule; ``update``
        needs ``params`` when it is not 0.
      amsgrad, nesterov, centered, power, bias_correction, mu_dtype, nu_dtype:
        switches of :func:`scale_by_adam`.

    Returns:
      An ``optax.GradientTransformation`` (an ``optax.chain``).

    Examples:
      >>> import jax, jax.numpy as jnp, optax, adamjax
      >>> params = jnp.array([1.0, -1.0])
      >>> tx = adamjax.adam(0.1)
      >>> state = tx.init(params)
      >>> updates, state = tx.update(jax.grad(lambda p: (p**2).sum())(params), state)
      >>> optax.apply_updates(params, updates)
      Array([ 0.9, -0.9], dtype=float32)

    References:
      Kingma & Ba, "Adam: A Method for Stochastic Optimization", 2015.
      PyTorch ``torch.optim.Adam``.
    """
    return _build(
        "adam",
        learning_rate,
        b1,
        b2,
        eps,
        eps_root,
        coupled_decay=weight_decay,
        amsgrad=amsgrad,
        nesterov=nesterov,
        centered=centered,
        power=power,
        bias_correction=bias_correction,
        mu_dtype=mu_dtype,
        nu_dtype=nu_dtype,
    )


def adamw(
    learning_rate: Any,
    b1: Any = 0.9,
    b2: Any = 0.999,
    eps: Any = 1e-8,
    eps_root: Any = 0.0,
    weight_decay: Any = 1e-4,
    mask: Any | Callable[[optax.Params], Any] | None = None,
    *,
    amsgrad: bool = False,
    nesterov: bool = False,
    mu_dtype: Any = None,
    nu_dtype: Any = None,
) -> optax.GradientTransformation:
    r"""AdamW: Adam with decoupled weight decay.

    .. math::

      \theta_t = \theta_{t-1} - \eta_t \big( u_t + \lambda \theta_{t-1} \big)

    where :math:`u_t` is the Adam direction of :func:`scale_by_adam`. The decay
    is scaled by the learning rate but not by Adam's preconditioner, as in
    ``torch.optim.AdamW`` and ``optax.adamw`` (PyTorch writes it as
    :math:`\theta \leftarrow \theta (1 - \eta\lambda)` before the Adam step,
    the same update).

    Args:
      learning_rate: :math:`\eta`, a number or an optax schedule.
      b1, b2, eps, eps_root: as in :func:`scale_by_adam`.
      weight_decay: :math:`\lambda \ge 0`, a number or a schedule.
      mask: which parameters decay: a pytree of booleans shaped like the
        parameters, or a callable that returns one (as ``optax.adamw``).
      amsgrad, nesterov, mu_dtype, nu_dtype: switches of :func:`scale_by_adam`.

    Returns:
      An ``optax.GradientTransformation``; ``update`` needs ``params``.

    References:
      Loshchilov & Hutter, "Decoupled Weight Decay Regularization", 2019.
    """
    return _build(
        "adamw",
        learning_rate,
        b1,
        b2,
        eps,
        eps_root,
        decoupled_decay=weight_decay,
        mask=mask,
        amsgrad=amsgrad,
        nesterov=nesterov,
        mu_dtype=mu_dtype,
        nu_dtype=nu_dtype,
    )


def amsgrad(
    learning_rate: Any,
    b1: Any = 0.9,
    b2: Any = 0.999,
    eps: Any = 1e-8,
    eps_root: Any = 0.0,
    *,
    weight_decay: Any = 0.0,
    mu_dtype: Any = None,
    nu_dtype: Any = None,
) -> optax.GradientTransformation:
    r"""AMSGrad with PyTorch's convention (``torch.optim.Adam(amsgrad=True)``).

    .. math::

      \tilde v_t = \max(\tilde v_{t-1}, v_t), \qquad
      \theta_t = \theta_{t-1} - \eta_t \frac{m_t/(1-\beta_1^t)}
                 {\sqrt{\tilde v_t / (1-\beta_2^t) + \epsilon_{root}} + \epsilon}

    The maximum is over the raw second moment, then bias-corrected. optax's
    ``amsgrad`` takes the maximum of the bias-corrected moments, which gives
    different numbers; this follows PyTorch.

    Args:
      learning_rate: :math:`\eta`, a number or an optax schedule.
      b1, b2, eps, eps_root: as in :func:`scale_by_adam`.
      weight_decay: coupled L2, as in :func:`adam`.
      mu_dtype, nu_dtype: state dtypes.

    References:
      Reddi, Kale & Kumar, "On the Convergence of Adam and Beyond", 2018.
    """
    return _build(
        "amsgrad",
        learning_rate,
        b1,
        b2,
        eps,
        eps_root,
        coupled_decay=weight_decay,
        amsgrad=True,
        mu_dtype=mu_dtype,
        nu_dtype=nu_dtype,
    )


def adamax(
    learning_rate: Any,
    b1: Any = 0.9,
    b2: Any = 0.999,
    eps: Any = 1e-8,
    *,
    weight_decay: Any = 0.0,
    mu_dtype: Any = None,
    nu_dtype: Any = None,
) -> optax.GradientTransformation:
    r"""Adamax, Adam's infinity-norm variant (PyTorch's and optax's convention).

    .. math::

      u_t = \max(\beta_2 u_{t-1}, |g_t| + \epsilon), \qquad
      \theta_t = \theta_{t-1} - \frac{\eta_t}{1-\beta_1^t} \frac{m_t}{u_t}

    This is :func:`scale_by_adam` with ``power=inf``, ``eps_root=eps`` and
    ``eps=0``. (``jax.example_libraries.optimizers.adamax`` puts ``eps``
    outside the maximum instead; :func:`adamjax.optimizers.adamax` keeps that.)

    Args:
      learning_rate: :math:`\eta`, a number or an optax schedule.
      b1, b2: decays, in ``[0, 1)``.
      eps: :math:`\epsilon \ge 0`, added to ``|g|`` inside the maximum.
      weight_decay: coupled L2, as ``torch.optim.Adamax(weight_decay=...)``.
      mu_dtype, nu_dtype: state dtypes.

    References:
      Kingma & Ba, "Adam: A Method for Stochastic Optimization", 2015, section 7.1.
    """
    _checks.check_nonnegative("adamax", "eps", eps)
    return _build(
        "adamax",
        learning_rate,
        b1,
        b2,
        0.0,
        eps,
        coupled_decay=weight_decay,
        power=math.inf,
        mu_dtype=mu_dtype,
        nu_dtype=nu_dtype,
    )


def nadam(
    learning_rate: Any,
    b1: Any = 0.9,
    b2: Any = 0.999,
    eps: Any = 1e-8,
    eps_root: Any = 0.0,
    *,
    weight_decay: Any = 0.0,
    mu_dtype: Any = None,
    nu_dtype: Any = None,
) -> optax.GradientTransformation:
    r"""NAdam: Adam with Nesterov momentum, in optax's form (``optax.nadam``).

    .. math::

      \hat m_t = \frac{\beta_1 m_t}{1-\beta_1^{t+1}} + \frac{(1-\beta_1) g_t}{1-\beta_1^t}, \qquad
      \theta_t = \theta_{t-1} - \eta_t \frac{\hat m_t}{\sqrt{\hat v_t + \epsilon_{root}} + \epsilon}

    (PyTorch's ``NAdam`` adds a momentum-decay schedule; this does not.)

    References:
      Dozat, "Incorporating Nesterov Momentum into Adam", 2016.
    """
    return _build(
        "nadam",
        learning_rate,
        b1,
        b2,
        eps,
        eps_root,
        coupled_decay=weight_decay,
        nesterov=True,
        mu_dtype=mu_dtype,
        nu_dtype=nu_dtype,
    )


def adabelief(
    learning_rate: Any,
    b1: Any = 0.9,
    b2: Any = 0.999,
    eps: Any = 1e-16,
    eps_root: Any = 1e-16,
    *,
    nesterov: bool = False,
    weight_decay: Any = 0.0,
    mu_dtype: Any = None,
    nu_dtype: Any = None,
) -> optax.GradientTransformation:
    r"""AdaBelief: Adam with the centered second moment (optax's convention).

    .. math::

      s_t = \beta_2 s_{t-1} + (1-\beta_2)(g_t - m_t)^2 + \epsilon_{root}, \qquad
      \theta_t = \theta_{t-1} - \eta_t \frac{\hat m_t}{\sqrt{s_t/(1-\beta_2^t)} + \epsilon}

    The step is large when the gradient agrees with its running mean ("belief")
    and small when it swings around it -- the centered moment seed 002 asks for.

    References:
      Zhuang et al., "AdaBelief Optimizer: Adapting Stepsizes by the Belief in
      Observed Gradients", 2020.
    """
    return _build(
        "adabelief",
        learning_rate,
        b1,
        b2,
        eps,
        eps_root,
        coupled_decay=weight_decay,
        centered=True,
        nesterov=nesterov,
        mu_dtype=mu_dtype,
        nu_dtype=nu_dtype,
    )
