r"""RAdam, Rectified Adam (Liu et al. 2020): its stages, ``scale_by_radam`` and the ``radam`` alias.

Adam's adaptive step has a large variance in the first steps, while the
second moment has seen few gradients. RAdam measures that through the length
of the approximated simple moving average,

.. math::

  \rho_\infty = \frac{2}{1 - \beta_2} - 1, \qquad
  \rho_t = \rho_\infty - \frac{2 t \beta_2^t}{1 - \beta_2^t},

takes a plain momentum step while :math:`\rho_t` is below a threshold and
afterwards multiplies Adam's step by the rectification

.. math::

  r_t = \sqrt{\frac{(\rho_t - 4)(\rho_t - 2)\rho_\infty}{(\rho_\infty - 4)(\rho_\infty - 2)\rho_t}}.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax

from adamjax import _checks, _core, _nadam, _stages
from adamjax._alias_chain import _build
from adamjax._numerics import bias_correction, memo
from adamjax._types import ArrayLike, ScalarOrSchedule

_PLACEMENTS = ("optax", "torch")


def _rho(c: _stages.Context) -> tuple[jax.Array, Any]:
    """:math:`(\\rho_t, \\rho_\\infty)` in the compute dtype, once per update."""
    rho_inf = 2 / (1 - c.b2) - 1

    def compute() -> jax.Array:
        t = c.count.astype(c.real)
        b2t = jnp.asarray(c.b2, c.real) ** t
        return rho_inf - 2 * t * b2t / (1 - b2t)

    return memo(c.cache, ("radam rho", c.real), compute), rho_inf


@_stages.stage("denominator", "PyTorch's eps placement", checks=(("eps", "nonnegative"), ("eps_root", "nonnegative")))
def raw_eps_root(work: dict, c: _stages.Context) -> None:
    r"""``torch.optim.RAdam``'s denominator: :math:`d_t = (\sqrt{v_t + \epsilon_{root}} + \epsilon) / \sqrt{1 - \beta_2^t}`.

    That is :math:`\sqrt{\hat v_t} + \epsilon / \sqrt{1 - \beta_2^t}`: ``eps``
    meets the raw moment, before bias correction (optax adds it after).
    """
    bc2 = memo(c.cache, ("b2", c.real), lambda: bias_correction(c.config.b2, c.count, c.real))
    work["denom"] = (jnp.sqrt(work.get("nu_used", work["nu"]) + c.eps_root) + c.eps) / jnp.sqrt(bc2)
    work["may_be_zero"] = not _stages.positive_in(c.config.eps, c.real)


@_stages.stage("direction", "rectified", checks=(("threshold", "real"),))
def rectified(work: dict, c: _stages.Context) -> None:
    r"""RAdam's direction: :math:`u_t = r_t \hat m_t / d_t` when :math:`\rho_t \ge` ``threshold``, else :math:`\hat m_t`."""
    rho, rho_inf = _rho(c)
    ratio = (rho - 4) * (rho - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho)
    r = jnp.sqrt(jnp.maximum(ratio, 0))  # negative only where the plain momentum step is taken
    adaptive = _stages.divide(_stages.as_factor(r, c.dtype) * work["mu_hat"], work, c)
    work["update"] = jnp.where(rho >= c.value("threshold"), adaptive, work["mu_hat"])


def _member(threshold: Any, nesterov: bool, eps_placement: str) -> _core.Member:
    correction = _nadam.nesterov if nesterov else _stages.correct_mu
    denominator = raw_eps_root if eps_placement == "torch" else _stages.root
    stages = (_stages.first_moment, _stages.squares, correction, _stages.correct_nu, denominator, rectified)
    return _core.Member("radam", stages, _core.Layout(optax.ScaleByAdamState), (("threshold", threshold),))


def _check_placement(func: str, eps_placement: Any) -> None:
    if eps_placement not in _PLACEMENTS:
        raise ValueError(f"`{func}(eps_placement=...)` must be one of {_PLACEMENTS}; got {eps_placement!r}.")


def scale_by_radam(
    b1: ArrayLike = 0.9,
    b2: ArrayLike = 0.999,
    eps: ArrayLike = 1e-8,
    eps_root: ArrayLike = 0.0,
    threshold: ArrayLike = 5.0,
    *,
    nesterov: bool = False,
    eps_placement: str = "optax",
) -> optax.GradientTransformation:
    r"""RAdam's rescaling, with ``optax.scale_by_radam``'s signature and state (``ScaleByAdamState``).

    .. math::

      u_t = \begin{cases} r_t\, \hat m_t / (\sqrt{\hat v_t + \epsilon_{root}} + \epsilon) & \rho_t \ge \text{threshold} \\
                          \hat m_t & \text{otherwise} \end{cases}

    Args:
      b1: decay of the first moment, in ``[0, 1)``.
      b2: decay of the second moment, in ``[0, 1)``.
      eps: added to the denominator, ``>= 0``.
      eps_root: added inside the root, ``>= 0``.
      threshold: the :math:`\rho_t` from which the rectified step is taken (optax and PyTorch: 5).
      nesterov: Nesterov momentum (optax's form).
      eps_placement: ``"optax"`` adds ``eps`` to :math:`\sqrt{\hat v_t}`;
        ``"torch"`` adds it to :math:`\sqrt{v_t}` before bias correction, as
        ``torch.optim.RAdam`` (the two differ by about 1e-8 relative).

    Returns:
      An ``optax.GradientTransformation``.

    Examples:
      >>> import jax.numpy as jnp, adamjax
      >>> tx = adamjax.scale_by_radam()
      >>> updates, _ = tx.update(jnp.array([2.0]), tx.init(jnp.zeros(1)))
      >>> round(float(updates[0]), 6)  # rho_1 < 5: the first step is the corrected momentum
      2.0

    References:
      Liu et al., "On the Variance of the Adaptive Learning Rate and Beyond", 2020.
    """
    _checks.check_flag("scale_by_radam", "nesterov", nesterov)
    _check_placement("scale_by_radam", eps_placement)
    config = _core.make_config(
        "scale_by_radam", b1, b2, eps, eps_root, member=_member(threshold, nesterov, eps_placement)
    )
    return _core.transformation(config, "scale_by_radam")


def radam(
    learning_rate: ScalarOrSchedule,
    b1: ArrayLike = 0.9,
    b2: ArrayLike = 0.999,
    eps: ArrayLike = 1e-8,
    eps_root: ArrayLike = 0.0,
    threshold: ArrayLike = 5.0,
    *,
    nesterov: bool = False,
    eps_placement: str = "optax",
    weight_decay: ScalarOrSchedule | None = None,
    cautious: bool = False,
    state_bits: int | None = None,
    block_size: int | None = None,
    rounding: str = "nearest",
    seed: int | None = None,
) -> optax.GradientTransformationExtraArgs:
    r"""RAdam (``optax.radam``; ``torch.optim.RAdam`` with ``eps_placement="torch"``).

    .. math::

      \theta_t = \theta_{t-1} - \eta_t \begin{cases}
          r_t\, \hat m_t / (\sqrt{\hat v_t + \epsilon_{root}} + \epsilon) & \rho_t \ge \text{threshold} \\
          \hat m_t & \text{otherwise} \end{cases}

    with :math:`\rho_t` and :math:`r_t` as in :mod:`adamjax._radam`. Positional
    parameters, defaults and state are ``optax.radam``'s.

    Args:
      learning_rate: :math:`\eta`, a number or an optax schedule.
      b1: decay of the first moment.
      b2: decay of the second moment.
      eps: added to the denominator.
      eps_root: added inside the root.
      threshold: the :math:`\rho_t` from which the rectified step is taken.
      nesterov: Nesterov momentum (optax's form).
      eps_placement: ``"optax"`` (default) or ``"torch"`` (``eps`` added to
        the raw :math:`\sqrt{v_t}`, as PyTorch).
      weight_decay: coupled L2 :math:`\lambda`, as ``torch.optim.RAdam(weight_decay=...)``
        (adamjax only); ``update`` then needs ``params``.
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
      >>> jax.tree.structure(adamjax.radam(0.1).init(params)) == jax.tree.structure(optax.radam(0.1).init(params))
      True

    References:
      Liu et al., "On the Variance of the Adaptive Learning Rate and Beyond", 2020.
    """
    _checks.check_flag("radam", "nesterov", nesterov)
    _check_placement("radam", eps_placement)
    return _build(
        "radam",
        locals(),
        consumed=("threshold", "nesterov", "eps_placement"),
        member=_member(threshold, nesterov, eps_placement),
    )
