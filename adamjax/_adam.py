r"""Adam (Kingma & Ba 2015): ``scale_by_adam``, the ``adam`` and ``adamw`` aliases, and the p-th power moment.

Plain Adam is the composition of the shared stages (:mod:`adamjax._stages`):
the first moment, squares, bias correction, the square root and the
direction. :func:`scale_by_adam` is also the one core behind every classic
switch (``amsgrad``, ``centered``, ``nesterov``, ``power=inf``), whose stages
live in the files of the members they define (``_amsgrad.py``,
``_adabelief.py``, ``_nadam.py``, ``_adamax.py``).

The p-th power moment (``power=p``) is a switch of Adam itself, the
simulator's generalisation of its second moment, with no alias of its own:
its two stages, :func:`powers` and :func:`pth_root`, live here, beside the
``power`` argument of :func:`scale_by_adam` that turns them on.

.. math::

  v_t = \beta_2 v_{t-1} + (1 - \beta_2)\, |g_t|^p, \qquad
  d_t = (\hat v_t + \epsilon_{root})^{1/p} + \epsilon
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import jax.numpy as jnp
import optax

from adamjax import _core, _stages
from adamjax._alias_chain import _build
from adamjax._numerics import static_power
from adamjax._types import ArrayLike, DTypeLike, ScalarOrSchedule


@_stages.stage("second moment", "p-th power", checks=(("b2", "decay"), ("power", "power")))
def powers(work: dict, c: _stages.Context) -> None:
    r""":math:`v_t = \beta_2 v_{t-1} + (1 - \beta_2)\, |x_t|^p` (the p-th power moment; ``p`` may be traced)."""
    p = _stages.hyper(c.config.power, c.real)
    work["nu"] = c.one_minus_b2 * jnp.abs(work["nu_input"]) ** p + c.b2 * _stages.read_real(work["nu"], c.real)


@_stages.stage("denominator", "p-th root", checks=(("eps", "nonnegative"), ("eps_root", "nonnegative")))
def pth_root(work: dict, c: _stages.Context) -> None:
    r""":math:`d_t = (\hat v_t + \epsilon_{root})^{1/p} + \epsilon`."""
    _stages.set_denominator(work, c, (work["nu_hat"] + c.eps_root) ** (1 / _stages.hyper(c.config.power, c.real)))


def _pth_power(stages: tuple[_stages.Stage, ...]) -> tuple[_stages.Stage, ...]:
    """``power=p`` (neither 2 nor inf, or traced): the p-th power moment and the p-th root."""
    return _stages.replaced(stages, {_stages.squares: powers, _stages.root: pth_root})


_stages.register_switch("power", lambda config: static_power(config.power) not in (2.0, math.inf), _pth_power)


def scale_by_adam(
    b1: ArrayLike = 0.9,
    b2: ArrayLike = 0.999,
    eps: ArrayLike = 1e-8,
    eps_root: ArrayLike = 0.0,
    mu_dtype: DTypeLike | None = None,
    *,
    nesterov: bool = False,
    power: ArrayLike | None = None,
    centered: bool = False,
    amsgrad: bool = False,
    bias_correction: bool = True,
    nu_dtype: DTypeLike | None = None,
    state_bits: int | None = None,
    block_size: int | None = None,
) -> optax.GradientTransformation:
    r"""Rescales updates by Adam's rule; the one core behind every adamjax optimizer.

    For each parameter array, with gradient :math:`g_t` at step :math:`t = 1, 2, \dots`:

    .. math::

      m_t &= \beta_1 m_{t-1} + (1 - \beta_1)\, g_t \\
      v_t &= \beta_2 v_{t-1} + (1 - \beta_2)\, |g_t|^p \\
      \hat m_t &= \frac{m_t}{1 - \beta_1^t}, \qquad
      \hat v_t = \frac{v_t}{1 - \beta_2^t} \\
      u_t &= \frac{\hat m_t}{(\hat v_t + \epsilon_{root})^{1/p} + \epsilon}

    The output :math:`u_t` is a direction (not yet scaled by a learning rate or
    negated), as in ``optax.scale_by_adam``. Arithmetic runs in float32 or wider
    whatever the parameters' dtype, and the updates come back in the gradients'
    dtype, so float16 and bfloat16 parameters never see ``eps`` underflow.
    Gradients may have any real float dtype (not necessarily the parameters');
    integer, boolean and complex gradients, and complex parameters, are refused.

    Edges: where the denominator is exactly 0 (``eps=0`` with a zero gradient,
    or a second moment that underflowed) the direction is
    :math:`\operatorname{sign}(\hat m_t)`, not NaN. The second moment holds
    :math:`g^2`, so with float32 arithmetic gradients beyond about ``1e19``
    overflow it (it becomes ``inf`` and those coordinates stop moving); keep
    ``nu_dtype=jnp.float64`` (with x64 enabled) for such gradients. A NaN or
    infinite gradient poisons the moments for good: to skip such steps, leaving
    parameters, moments and count exactly as they were, wrap the optimizer in
    ``optax.apply_if_finite(tx, max_consecutive_errors=...)``.

    Args:
      b1: decay of the first moment, in ``[0, 1)``.
      b2: decay of the second moment, in ``[0, 1)``. With ``power != 2`` it is
        the decay of the p-th power moment.
      eps: added to the denominator outside the root, ``>= 0``.
      eps_root: added inside the root, ``>= 0`` (useful when differentiating
        through the update). With ``centered=True`` it is added to the stored
        second moment every step (AdaBelief); with ``power=inf`` it is added to
        ``|g|`` inside the running maximum (PyTorch's and optax's Adamax).
      power: the moment's order :math:`p > 0`; ``None`` (the default) or ``2``
        is Adam; ``None`` is not a number, so ``optax.inject_hyperparams``
        leaves it static and the compiled step keeps its square root; other values give
        the p-th power moment with a p-th root (the simulator's generalisation of Adam); ``math.inf``
        gives Adamax (:math:`v_t = \max(\beta_2 v_{t-1}, |g_t| +
        \epsilon_{root})`, not bias-corrected). May be a tracer (then the
        general finite-p formula is used).
      centered: use :math:`(g_t - m_t)^2` instead of :math:`g_t^2`, the
        "belief" in the gradient of AdaBelief.
      amsgrad: divide by :math:`\max_{s \le t} v_s` taken over the raw second
        moment before bias correction (PyTorch's convention; optax takes the
        maximum after bias correction).
      nesterov: Nesterov momentum, :math:`\hat m_t = \beta_1 m_t / (1 -
        \beta_1^{t+1}) + (1 - \beta_1) g_t / (1 - \beta_1^t)` (optax's NAdam).
      bias_correction: divide the moments by :math:`1 - \beta^t`.
      mu_dtype: dtype of the stored first moment (``None``: the parameters', float32
        for float16 and bfloat16 parameters).
      nu_dtype: dtype of the stored second moment (and of ``nu_max``); adamjax only.
      state_bits: ``None`` (the default), 8 or 4: store both moments of every
        array with at least 4,096 elements blockwise quantized (adamjax only;
        smaller arrays keep the rule above). Each block of ``block_size``
        consecutive elements keeps its absolute maximum :math:`s_b` in float32
        and each element as the index of the nearest entry of a fixed codebook
        :math:`q` in :math:`[-1, 1]` (the first moment: Dettmers et al.'s
        signed dynamic map) or :math:`[0, 1]` (the second: the unsigned
        dynamic map at 8 bits, a linear map without zero at 4),
        :math:`x_i \approx q_{c_i} s_b`; the step dequantizes, updates in
        float32 and requantizes. State: about 2.03 (8 bits) or 1.06 (4 bits)
        bytes per parameter for both moments, instead of 8. Cannot be combined
        with ``mu_dtype`` / ``nu_dtype`` or complex parameters.
      block_size: elements per block with ``state_bits`` (default 256 at 8
        bits, 128 at 4; even at 4 bits).

    Returns:
      An ``optax.GradientTransformation`` whose state is optax's
      ``ScaleByAdamState`` (``ScaleByAmsgradState`` with ``amsgrad``,
      ``ScaleByBeliefState`` with ``centered``).

    Raises:
      ValueError: a hyperparameter is out of range (named in the message).
      TypeError: a hyperparameter has the wrong type.

    Examples:
      >>> import jax.numpy as jnp, adamjax
      >>> tx = adamjax.scale_by_adam()
      >>> params = {"w": jnp.zeros(3)}
      >>> state = tx.init(params)
      >>> updates, state = tx.update({"w": jnp.array([1.0, -2.0, 0.0])}, state)
      >>> jnp.round(updates["w"], 6)  # the first step is sign(g)
      Array([ 1., -1.,  0.], dtype=float32)

    References:
      Kingma & Ba, "Adam: A Method for Stochastic Optimization", 2015.
      Reddi, Kale & Kumar, "On the Convergence of Adam and Beyond", 2018 (AMSGrad).
      Dozat, "Incorporating Nesterov Momentum into Adam", 2016 (NAdam).
      Zhuang et al., "AdaBelief Optimizer", 2020 (centered moment).
    """
    config = _core.make_config(
        "scale_by_adam",
        b1,
        b2,
        eps,
        eps_root,
        power=power,
        centered=centered,
        amsgrad=amsgrad,
        nesterov=nesterov,
        bias_correction=bias_correction,
        mu_dtype=mu_dtype,
        nu_dtype=nu_dtype,
        state_bits=state_bits,
        block_size=block_size,
    )
    return _core.transformation(config, "scale_by_adam")


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
