r"""ADOPT (Taniguchi et al. 2024): its stages, ``scale_by_adopt`` and the ``adopt`` alias.

ADOPT reorders Adam's step: the gradient is normalised by the *previous*
second moment before the first moment sees it, and the first moment is the
update (no denominator):

.. math::

  x_t &= \operatorname{clip}\big(g_t / \max(\sqrt{v_{t-1}}, \epsilon),\ \pm c(t-1)\big) \\
  m_t &= \beta_1 m_{t-1} + (1 - \beta_1) x_t, \qquad
  v_t = \beta_2 v_{t-1} + (1 - \beta_2) g_t^2, \qquad u_t = m_t

On the first step :math:`v_1 = g_1^2` and :math:`m_1 = 0` (nothing has been
normalised yet), as ``optax.contrib.adopt``. The clipping value :math:`c`
(default :math:`c(s) = s^{1/4}`) keeps early steps bounded.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax

from adamjax import _checks, _core, _stages
from adamjax._alias_chain import _build
from adamjax._types import ArrayLike, DTypeLike, ScalarOrSchedule


def _started(c: _stages.Context) -> jax.Array:
    return c.shared["prev_count"] > 0


@_stages.stage("gradient", "normalised gradient", checks=(("eps", "nonnegative"),))
def normalise(work: dict, c: _stages.Context) -> None:
    r""":math:`x_t = \operatorname{clip}(g_t / \max(\sqrt{v_{t-1}}, \epsilon), \pm c(t-1))` (no clipping without a clip function)."""
    x = work["grad"] / jnp.maximum(jnp.sqrt(_stages.read_real(work["nu"], c.real)), c.eps)
    clip = c.config.value("clip_value_fn")
    if clip is not None:
        bound = jnp.asarray(clip(c.shared["prev_count"]), c.real)
        x = jnp.clip(x, -bound, bound)
    work["mu_input"] = x


@_stages.stage("first moment", "first moment from the second step", checks=(("b1", "decay"),))
def first_moment(work: dict, c: _stages.Context) -> None:
    r""":math:`m_t = \beta_1 m_{t-1} + (1 - \beta_1) x_t` from step 2; :math:`m_1 = m_0`.

    :math:`1 - \beta_1` is the core's (taken before rounding to the compute
    dtype), not one minus a rounded :math:`\beta_1`.
    """
    started = _started(c)
    b1 = jnp.where(started, c.b1, 1).astype(c.real)
    one_minus_b1 = jnp.where(started, c.one_minus_b1, 0).astype(c.real)
    work["mu"] = _stages.as_factor(one_minus_b1, c.dtype) * work["mu_input"] + _stages.as_factor(b1, c.dtype) * work[
        "mu"
    ].astype(c.dtype)
    work["b1_used"], work["one_minus_b1_used"] = b1, one_minus_b1


@_stages.stage("second moment", "squares from the first gradient", checks=(("b2", "decay"),))
def squares(work: dict, c: _stages.Context) -> None:
    r""":math:`v_t = \beta_2 v_{t-1} + (1 - \beta_2) g_t^2` from step 2; :math:`v_1 = g_1^2`.

    In float32, ``1 - float32(0.9999)`` is 1.7e-4 off relative; the core's
    :math:`1 - \beta_2` is taken before rounding.
    """
    started = _started(c)
    b2 = jnp.where(started, c.b2, 0).astype(c.real)
    one_minus_b2 = jnp.where(started, c.one_minus_b2, 1).astype(c.real)
    work["nu"] = one_minus_b2 * _stages.abs_sq(work["grad"]) + b2 * _stages.read_real(work["nu"], c.real)


@_stages.stage("correction", "nesterov")
def nesterov_correction(work: dict, c: _stages.Context) -> None:
    r"""ADOPT's Nesterov form: :math:`\hat m_t = \beta_1 m_t + (1 - \beta_1) x_t`."""
    b1, one_minus_b1 = work["b1_used"], work["one_minus_b1_used"]
    work["mu_hat"] = (
        _stages.as_factor(b1, c.dtype) * work["mu"] + _stages.as_factor(one_minus_b1, c.dtype) * work["mu_input"]
    )


@_stages.stage("direction", "no denominator")
def momentum_direction(work: dict, c: _stages.Context) -> None:
    r""":math:`u_t = \hat m_t`: the normalisation happened before the first moment."""
    work["update"] = work["mu_hat"]


def _member(nesterov: bool, use_clipping: bool, clip_value_fn: Callable) -> _core.Member:
    stages = (
        normalise,
        first_moment,
        squares,
        nesterov_correction if nesterov else _stages.keep_mu,
        _stages.keep_nu,
        momentum_direction,
    )
    hyper = (("clip_value_fn", clip_value_fn if use_clipping else None),)
    return _core.Member("adopt", stages, _core.Layout(optax.ScaleByAdamState), hyper)


def _check(func: str, nesterov: Any, use_clipping: Any, clip_value_fn: Any) -> None:
    _checks.check_flag(func, "nesterov", nesterov)
    _checks.check_flag(func, "use_clipping", use_clipping)
    if not callable(clip_value_fn):
        raise TypeError(
            f"`{func}(clip_value_fn=...)` must be callable (step count -> clipping value); got {clip_value_fn!r}."
        )


def _default_clip(count: jax.Array) -> jax.Array:
    """:math:`c(s) = s^{1/4}` (optax's default)."""
    return jnp.asarray(count, jnp.result_type(float)) ** 0.25


def scale_by_adopt(
    b1: ArrayLike = 0.9,
    b2: ArrayLike = 0.9999,
    eps: ArrayLike = 1e-6,
    mu_dtype: DTypeLike | None = None,
    *,
    nesterov: bool = False,
    use_clipping: bool = True,
    clip_value_fn: Callable[[jax.Array], jax.Array] = _default_clip,
) -> optax.GradientTransformation:
    r"""ADOPT's rescaling, with ``optax.contrib.scale_by_adopt``'s signature and state (``ScaleByAdamState``).

    .. math::

      m_t = \beta_1 m_{t-1} + (1 - \beta_1)\operatorname{clip}\Big(\frac{g_t}{\max(\sqrt{v_{t-1}}, \epsilon)}\Big),
      \qquad u_t = m_t

    Args:
      b1: decay of the first moment.
      b2: decay of the second moment.
      eps: floor of :math:`\sqrt{v_{t-1}}`.
      mu_dtype: dtype of the first moment.
      nesterov: Nesterov momentum.
      use_clipping: clip the normalised gradient to :math:`\pm c(t-1)`.
      clip_value_fn: :math:`c`, the step count (0 on the first step) to the bound.

    Returns:
      An ``optax.GradientTransformation``.

    Examples:
      >>> import jax.numpy as jnp, adamjax
      >>> tx = adamjax.scale_by_adopt()
      >>> state = tx.init(jnp.zeros(1))
      >>> updates, state = tx.update(jnp.array([2.0]), state)
      >>> float(updates[0]), float(state.nu[0])  # the first step only fills v
      (0.0, 4.0)

    References:
      Taniguchi et al., "ADOPT: Modified Adam Can Converge with Any beta2 with the Optimal Rate", 2024.
    """
    _check("scale_by_adopt", nesterov, use_clipping, clip_value_fn)
    config = _core.make_config(
        "scale_by_adopt",
        b1,
        b2,
        eps,
        0.0,
        mu_dtype=mu_dtype,
        member=_member(nesterov, use_clipping, clip_value_fn),
    )
    return _core.transformation(config, "scale_by_adopt")


def adopt(
    learning_rate: ScalarOrSchedule,
    b1: ArrayLike = 0.9,
    b2: ArrayLike = 0.9999,
    eps: ArrayLike = 1e-6,
    mu_dtype: DTypeLike | None = None,
    *,
    nesterov: bool = False,
    use_clipping: bool = True,
    clip_value_fn: Callable[[jax.Array], jax.Array] = _default_clip,
    weight_decay: ScalarOrSchedule | None = None,
    cautious: bool = False,
    state_bits: int | None = None,
    block_size: int | None = None,
    rounding: str = "nearest",
    seed: int | None = None,
) -> optax.GradientTransformationExtraArgs:
    r"""ADOPT (``optax.contrib.adopt``), clipping included.

    .. math::

      \theta_t = \theta_{t-1} - \eta_t m_t, \qquad
      m_t = \beta_1 m_{t-1} + (1 - \beta_1)\operatorname{clip}\Big(\frac{g_t}{\max(\sqrt{v_{t-1}}, \epsilon)}, \pm c(t-1)\Big)

    Args:
      learning_rate: :math:`\eta`, a number or an optax schedule.
      b1: decay of the first moment.
      b2: decay of the second moment.
      eps: floor of :math:`\sqrt{v_{t-1}}`.
      mu_dtype: dtype of the first moment.
      nesterov: Nesterov momentum.
      use_clipping: clip the normalised gradient.
      clip_value_fn: the clipping bound as a function of the step count.
      weight_decay: coupled L2 (adamjax only).
      cautious: cautious masking (Liang et al. 2024).
      state_bits: quantized moments (None, 8 or 4 bits), as in :func:`adamjax.scale_by_adam`.
      block_size: elements per quantization block, as in :func:`adamjax.scale_by_adam`.
      rounding: ``"nearest"``, ``"stochastic"`` or ``"kahan"`` for 16-bit weights, as in :func:`adamjax.adam`.
      seed: the seed of stochastic rounding (None: 0).

    Returns:
      An ``optax.GradientTransformationExtraArgs``.

    Examples:
      >>> import jax, jax.numpy as jnp, optax, adamjax
      >>> params = jnp.ones(2)
      >>> jax.tree.structure(adamjax.adopt(0.1).init(params)) == jax.tree.structure(
      ...     optax.contrib.adopt(0.1).init(params))
      True

    References:
      Taniguchi et al., "ADOPT: Modified Adam Can Converge with Any beta2 with the Optimal Rate", 2024.
    """
    _check("adopt", nesterov, use_clipping, clip_value_fn)
    return _build(
        "adopt",
        locals(),
        consumed=("nesterov", "use_clipping", "clip_value_fn"),
        eps_root=0.0,
        member=_member(nesterov, use_clipping, clip_value_fn),
    )
