r"""Adamax, Adam's infinity-norm variant (Kingma & Ba 2015, section 7.1): its stages, ``scale_by_adamax``, ``adamax`` and ``adamaxw``.

The second moment becomes a running maximum of the gradient's magnitude,
which needs no bias correction and no root:

.. math::

  u_t = \max(\beta_2 u_{t-1},\ |g_t| + \epsilon), \qquad d_t = u_t.

It is the ``power=inf`` switch of :class:`adamjax.AdamConfig`
(:func:`running_max`, no second-moment correction, :func:`max_norm`); the
state is optax's ``ScaleByAdamState`` with ``nu`` the running maximum.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import jax.numpy as jnp
import optax

from adamjax import _checks, _core, _stages
from adamjax._alias_chain import _build
from adamjax._numerics import static_power
from adamjax._types import ArrayLike, DTypeLike, ScalarOrSchedule


@_stages.stage("second moment", "infinity norm", checks=(("b2", "decay"), ("eps_root", "nonnegative")))
def running_max(work: dict, c: _stages.Context) -> None:
    r"""Adamax: :math:`u_t = \max(\beta_2 u_{t-1},\ |x_t| + \epsilon_{root})`."""
    work["nu"] = jnp.maximum(jnp.abs(work["nu_input"]) + c.eps_root, c.b2 * _stages.read_real(work["nu"], c.real))


@_stages.stage("denominator", "infinity norm", checks=(("eps", "nonnegative"),))
def max_norm(work: dict, c: _stages.Context) -> None:
    r"""Adamax: :math:`d_t = u_t + \epsilon`."""
    _stages.set_denominator(work, c, work["nu_hat"])


def _infinity_norm(stages: tuple[_stages.Stage, ...]) -> tuple[_stages.Stage, ...]:
    """``power=inf``: the running maximum, no second-moment correction, the maximum as the denominator."""
    return _stages.replaced(
        stages, {_stages.squares: running_max, _stages.correct_nu: _stages.keep_nu, _stages.root: max_norm}
    )


_stages.register_switch("power", lambda config: static_power(config.power) == math.inf, _infinity_norm)


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
