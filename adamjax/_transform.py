"""The public face of the core: ``scale_by_adam`` and the learning-rate step."""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import optax

from adamjax import _checks, _core, _numerics
from adamjax._types import ArrayLike, DTypeLike, ScalarOrSchedule


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


def _scale(updates: optax.Updates, factor: Any) -> optax.Updates:
    """``factor * u`` for each update, rounded once back to the update's dtype."""
    return jax.tree.map(lambda u: _numerics.scale_leaf(factor, u), updates)


def scale_by_amsgrad(
    b1: ArrayLike = 0.9,
    b2: ArrayLike = 0.999,
    eps: ArrayLike = 1e-8,
    eps_root: ArrayLike = 0.0,
    mu_dtype: DTypeLike | None = None,
    bias_correction_mu: bool = True,
    bias_correction_nu: bool = True,
    *,
    nu_dtype: DTypeLike | None = None,
    state_bits: int | None = None,
    block_size: int | None = None,
) -> optax.GradientTransformation:
    r"""AMSGrad's rescaling, with ``optax.scale_by_amsgrad``'s signature and state class.

    .. math::

      \tilde v_t = \max(\tilde v_{t-1}, v_t), \qquad
      u_t = \frac{m_t/(1-\beta_1^t)}{\sqrt{\tilde v_t/(1-\beta_2^t) + \epsilon_{root}} + \epsilon}

    The maximum is over the raw second moment (PyTorch's convention); optax
    takes it over the bias-corrected one. See :func:`adamjax.amsgrad`.

    Args:
      b1: as in :func:`scale_by_adam`.
      b2: as in :func:`scale_by_adam`.
      eps: as in :func:`scale_by_adam`.
      eps_root: as in :func:`scale_by_adam`.
      mu_dtype: as in :func:`scale_by_adam`.
      bias_correction_mu: whether the first moment is bias-corrected.
      bias_correction_nu: whether the second moment is bias-corrected.
      nu_dtype: dtype of ``nu`` and ``nu_max`` (adamjax only).
      state_bits: quantized moments (None, 8 or 4 bits), as in :func:`scale_by_adam`.
      block_size: elements per quantization block, as in :func:`scale_by_adam`.

    Returns:
      An ``optax.GradientTransformation`` with ``optax.ScaleByAmsgradState``.

    Examples:
      >>> import jax.numpy as jnp, adamjax
      >>> state = adamjax.scale_by_amsgrad().init(jnp.zeros(2))
      >>> type(state).__name__, state.nu_max.shape
      ('ScaleByAmsgradState', (2,))

    References:
      Reddi, Kale & Kumar, "On the Convergence of Adam and Beyond", 2018.
    """
    _checks.check_flag("scale_by_amsgrad", "bias_correction_mu", bias_correction_mu)
    _checks.check_flag("scale_by_amsgrad", "bias_correction_nu", bias_correction_nu)
    config = _core.make_config(
        "scale_by_amsgrad",
        b1,
        b2,
        eps,
        eps_root,
        amsgrad=True,
        bias_correction_mu=bias_correction_mu,
        bias_correction_nu=bias_correction_nu,
        mu_dtype=mu_dtype,
        nu_dtype=nu_dtype,
        state_bits=state_bits,
        block_size=block_size,
    )
    return _core.transformation(config, "scale_by_amsgrad")


def scale_by_belief(
    b1: ArrayLike = 0.9,
    b2: ArrayLike = 0.999,
    eps: ArrayLike = 1e-16,
    eps_root: ArrayLike = 1e-16,
    *,
    nesterov: bool = False,
    mu_dtype: DTypeLike | None = None,
    nu_dtype: DTypeLike | None = None,
    state_bits: int | None = None,
    block_size: int | None = None,
) -> optax.GradientTransformation:
    r"""AdaBelief's rescaling, with ``optax.scale_by_belief``'s signature and state class.

    .. math::

      s_t = \beta_2 s_{t-1} + (1-\beta_2)(g_t - m_t)^2 + \epsilon_{root}, \qquad
      u_t = \frac{\hat m_t}{\sqrt{s_t/(1-\beta_2^t)} + \epsilon}

    Args:
      b1: as in :func:`scale_by_adam`.
      b2: as in :func:`scale_by_adam`.
      eps: as in :func:`scale_by_adam` (defaults ``1e-16``, as optax).
      eps_root: as in :func:`scale_by_adam` (defaults ``1e-16``, as optax).
      nesterov: Nesterov momentum.
      mu_dtype: dtype of the first moment (adamjax only).
      nu_dtype: dtype of the second moment (adamjax only).
      state_bits: quantized moments (None, 8 or 4 bits), as in :func:`scale_by_adam`.
      block_size: elements per quantization block, as in :func:`scale_by_adam`.

    Returns:
      An ``optax.GradientTransformation`` with ``optax.ScaleByBeliefState``.

    Examples:
      >>> import jax.numpy as jnp, adamjax
      >>> type(adamjax.scale_by_belief().init(jnp.zeros(2))).__name__
      'ScaleByBeliefState'

    References:
      Zhuang et al., "AdaBelief Optimizer", 2020.
    """
    config = _core.make_config(
        "scale_by_belief",
        b1,
        b2,
        eps,
        eps_root,
        centered=True,
        nesterov=nesterov,
        mu_dtype=mu_dtype,
        nu_dtype=nu_dtype,
        state_bits=state_bits,
        block_size=block_size,
    )
    return _core.transformation(config, "scale_by_belief")


def scale_by_adamax(
    b1: ArrayLike = 0.9,
    b2: ArrayLike = 0.999,
    eps: ArrayLike = 1e-8,
    *,
    mu_dtype: DTypeLike | None = None,
    nu_dtype: DTypeLike | None = None,
    state_bits: int | None = None,
    block_size: int | None = None,
) -> optax.GradientTransformation:
    r"""Adamax's rescaling, with ``optax.scale_by_adamax``'s signature and state class.

    .. math::

      u_t = \max(\beta_2 u_{t-1}, |g_t| + \epsilon), \qquad
      d_t = \frac{m_t}{(1-\beta_1^t)\, u_t}

    Args:
      b1: decay rate of the first moment, in ``[0, 1)``.
      b2: decay rate of the second moment, in ``[0, 1)``.
      eps: added to ``|g|`` inside the maximum.
      mu_dtype: dtype of the first moment (adamjax only).
      nu_dtype: dtype of the second moment (adamjax only).
      state_bits: quantized moments (None, 8 or 4 bits), as in :func:`scale_by_adam`.
      block_size: elements per quantization block, as in :func:`scale_by_adam`.

    Returns:
      An ``optax.GradientTransformation`` with ``optax.ScaleByAdamState``.

    Examples:
      >>> import jax.numpy as jnp, adamjax
      >>> tx = adamjax.scale_by_adamax()
      >>> updates, _ = tx.update(jnp.array([-4.0]), tx.init(jnp.zeros(1)))
      >>> round(float(updates[0]), 6)
      -1.0

    References:
      Kingma & Ba, "Adam: A Method for Stochastic Optimization", 2015, section 7.1.
    """
    _checks.check_nonnegative("scale_by_adamax", "eps", eps)
    config = _core.make_config(
        "scale_by_adamax",
        b1,
        b2,
        0.0,
        eps,
        power=math.inf,
        mu_dtype=mu_dtype,
        nu_dtype=nu_dtype,
        state_bits=state_bits,
        block_size=block_size,
    )
    return _core.transformation(config, "scale_by_adamax")


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
