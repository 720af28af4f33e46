r"""AdEMAMix (Pagliardini et al. 2024): its stages, ``scale_by_ademamix`` and the ``ademamix`` alias.

Adam with a second, slow first moment mixed into the numerator:

.. math::

  m^{(1)}_t &= \beta_1 m^{(1)}_{t-1} + (1-\beta_1) g_t, \qquad
  m^{(2)}_t = \beta_3 m^{(2)}_{t-1} + (1-\beta_3) g_t \\
  u_t &= \frac{\hat m^{(1)}_t + \alpha\, m^{(2)}_t}{\sqrt{\hat v_t + \epsilon_{root}} + \epsilon}

The slow moment is not bias-corrected (it is meant to fill slowly);
:math:`\alpha` and :math:`\beta_3` may be schedules of the step count
(``count_m2`` in the state), as in ``optax.contrib.ademamix``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import optax
import optax.contrib

from adamjax import _checks, _core, _stages
from adamjax._alias_chain import _build
from adamjax._types import ArrayLike, DTypeLike, ScalarOrSchedule

LAYOUT = _core.Layout(
    optax.contrib.ScaleByAdemamixState, (("m1", "mu"), ("m2", "m2"), ("nu", "nu")), scalars=("count_m2",)
)
_core.register_state(LAYOUT)


def _prepare(state: Any, count: jax.Array, config: _core.AdamConfig) -> tuple[dict, dict]:
    """:math:`\\beta_3` and :math:`\\alpha` at ``count_m2`` (schedules are called once per update)."""
    values = {}
    for name in ("b3", "alpha"):
        value = config.value(name)
        values[name] = value(state.count_m2) if callable(value) and not _checks.is_traced(value) else value
    return values, {"count_m2": optax.safe_increment(state.count_m2)}


@_stages.stage("first moment", "slow first moment", checks=(("b3", "schedule or decay"),))
def slow_moment(work: dict, c: _stages.Context) -> None:
    r""":math:`m^{(2)}_t = \beta_3 m^{(2)}_{t-1} + (1-\beta_3) g_t` (:math:`\beta_3` perhaps scheduled)."""
    b3 = _stages.hyper(c.shared["b3"], c.real)
    work["m2"] = _stages.as_factor(1 - b3, c.dtype) * work["grad"] + _stages.as_factor(b3, c.dtype) * work["m2"].astype(
        c.dtype
    )


@_stages.stage("direction", "mixture", checks=(("alpha", "schedule or nonnegative"),))
def mixture(work: dict, c: _stages.Context) -> None:
    r""":math:`u_t = (\hat m^{(1)}_t + \alpha\, m^{(2)}_t) / d_t`."""
    alpha = _stages.hyper(c.shared["alpha"], c.real)
    work["update"] = _stages.divide(work["mu_hat"] + _stages.as_factor(alpha, c.dtype) * work["m2"], work, c)


def _member(func: str, b3: Any, alpha: Any) -> _core.Member:
    # A schedule's output is checked on every call (under jit: while tracing), as the learning rate's is.
    b3, alpha = (_checks.checked_schedule(func, name, value) for name, value in (("b3", b3), ("alpha", alpha)))
    stages = (
        _stages.first_moment,
        slow_moment,
        _stages.squares,
        _stages.correct_mu,
        _stages.correct_nu,
        _stages.root,
        mixture,
    )
    return _core.Member(
        "ademamix",
        stages,
        LAYOUT,
        (("b3", b3), ("alpha", alpha)),
        prepare=_prepare,
        init_scalars=lambda: {"count_m2": jax.numpy.zeros([], jax.numpy.int32)},
    )


def scale_by_ademamix(
    b1: ArrayLike = 0.9,
    b2: ArrayLike = 0.999,
    b3: ScalarOrSchedule = 0.9999,
    alpha: ScalarOrSchedule = 6.0,
    eps: ArrayLike = 1e-8,
    eps_root: ArrayLike = 0.0,
    mu_dtype: DTypeLike | None = None,
) -> optax.GradientTransformation:
    r"""AdEMAMix's rescaling, with ``optax.contrib.scale_by_ademamix``'s signature and state.

    .. math::

      u_t = \frac{\hat m^{(1)}_t + \alpha\, m^{(2)}_t}{\sqrt{\hat v_t + \epsilon_{root}} + \epsilon}

    Args:
      b1: decay of the fast first moment.
      b2: decay of the second moment.
      b3: decay of the slow first moment, a number or a schedule.
      alpha: weight of the slow moment, a number or a schedule.
      eps: added to the denominator.
      eps_root: added inside the root.
      mu_dtype: dtype of the three moments (as optax).

    Returns:
      An ``optax.GradientTransformation`` with ``optax.contrib.ScaleByAdemamixState``.

    Examples:
      >>> import jax.numpy as jnp, adamjax
      >>> type(adamjax.scale_by_ademamix().init(jnp.zeros(2))).__name__
      'ScaleByAdemamixState'

    References:
      Pagliardini, Ablin & Grangier, "The AdEMAMix Optimizer: Better, Faster, Older", 2024.
    """
    config = _core.make_config(
        "scale_by_ademamix",
        b1,
        b2,
        eps,
        eps_root,
        mu_dtype=mu_dtype,
        nu_dtype=mu_dtype,
        member=_member("scale_by_ademamix", b3, alpha),
    )
    return _core.transformation(config, "scale_by_ademamix")


def ademamix(
    learning_rate: ScalarOrSchedule,
    b1: ArrayLike = 0.9,
    b2: ArrayLike = 0.999,
    b3: ScalarOrSchedule = 0.9999,
    alpha: ScalarOrSchedule = 5.0,
    eps: ArrayLike = 1e-8,
    eps_root: ArrayLike = 0.0,
    mu_dtype: DTypeLike | None = None,
    weight_decay: ScalarOrSchedule = 0.0,
    mask: Any | Callable[[optax.Params], Any] | None = None,
    *,
    cautious: bool = False,
    state_bits: int | None = None,
    block_size: int | None = None,
    rounding: str = "nearest",
    seed: int | None = None,
) -> optax.GradientTransformationExtraArgs:
    r"""AdEMAMix (``optax.contrib.ademamix``): AdamW with a slow momentum mixed in.

    .. math::

      \theta_t = \theta_{t-1} - \eta_t \Big(\frac{\hat m^{(1)}_t + \alpha_t m^{(2)}_t}
                 {\sqrt{\hat v_t + \epsilon_{root}} + \epsilon} + \lambda \theta_{t-1}\Big)

    Args:
      learning_rate: :math:`\eta`, a number or an optax schedule.
      b1: decay of the fast first moment.
      b2: decay of the second moment.
      b3: decay of the slow first moment, a number or a schedule.
      alpha: weight of the slow moment, a number or a schedule.
      eps: added to the denominator.
      eps_root: added inside the root.
      mu_dtype: dtype of the moments.
      weight_decay: decoupled decay :math:`\lambda`.
      mask: which parameters decay (as ``optax.adamw``).
      cautious: cautious masking (Liang et al. 2024).
      state_bits: quantized moments (None, 8 or 4 bits), as in :func:`adamjax.scale_by_adam`.
      block_size: elements per quantization block, as in :func:`adamjax.scale_by_adam`.
      rounding: ``"nearest"``, ``"stochastic"`` or ``"kahan"`` for 16-bit weights, as in :func:`adamjax.adam`.
      seed: the seed of stochastic rounding (None: 0).

    Returns:
      An ``optax.GradientTransformationExtraArgs``; ``update`` needs ``params``.

    Examples:
      >>> import jax, jax.numpy as jnp, optax, adamjax
      >>> params = jnp.ones(2)
      >>> jax.tree.structure(adamjax.ademamix(0.1).init(params)) == jax.tree.structure(
      ...     optax.contrib.ademamix(0.1).init(params))
      True

    References:
      Pagliardini, Ablin & Grangier, "The AdEMAMix Optimizer: Better, Faster, Older", 2024.
    """
    return _build(
        "ademamix",
        locals(),
        decoupled=True,
        consumed=("b3", "alpha"),
        nu_dtype=mu_dtype,
        member=_member("ademamix", b3, alpha),
    )
