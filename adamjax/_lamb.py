r"""LAMB (You et al. 2019): Adam's direction, decoupled decay, then a per-array trust ratio.

.. math::

  r_t = \frac{\hat m_t}{\sqrt{\hat v_t + \epsilon_{root}} + \epsilon} + \lambda \theta_{t-1}, \qquad
  \theta_t = \theta_{t-1} - \eta_t \frac{\lVert \theta_{t-1} \rVert}{\lVert r_t \rVert} r_t

per parameter array (a ratio of 1 where either norm is 0). The chain is
``optax.lamb``'s: the core, ``add_decayed_weights``, optax's own
``scale_by_trust_ratio`` and the learning rate, so the state tree is optax's.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import optax

from adamjax._alias_chain import _build
from adamjax._types import ArrayLike, ScalarOrSchedule


def lamb(
    learning_rate: ScalarOrSchedule,
    b1: ArrayLike = 0.9,
    b2: ArrayLike = 0.999,
    eps: ArrayLike = 1e-6,
    eps_root: ArrayLike = 0.0,
    weight_decay: ScalarOrSchedule = 0.0,
    mask: Any | Callable[[optax.Params], Any] | None = None,
    *,
    cautious: bool = False,
    state_bits: int | None = None,
    block_size: int | None = None,
    rounding: str = "nearest",
    seed: int | None = None,
) -> optax.GradientTransformationExtraArgs:
    r"""LAMB, layer-wise adaptive moments (``optax.lamb``: same signature, defaults and state).

    .. math::

      \theta_t = \theta_{t-1} - \eta_t \frac{\lVert \theta_{t-1} \rVert}{\lVert r_t \rVert} r_t, \qquad
      r_t = \frac{\hat m_t}{\sqrt{\hat v_t + \epsilon_{root}} + \epsilon} + \lambda \theta_{t-1}

    Args:
      learning_rate: :math:`\eta`, a number or an optax schedule.
      b1: decay of the first moment.
      b2: decay of the second moment.
      eps: added to the denominator (optax's default ``1e-6``).
      eps_root: added inside the root.
      weight_decay: decoupled decay :math:`\lambda`, before the trust ratio.
      mask: which parameters decay (as ``optax.lamb``).
      cautious: cautious masking of Adam's direction (Liang et al. 2024).
      state_bits: quantized moments (None, 8 or 4 bits), as in :func:`adamjax.scale_by_adam`.
      block_size: elements per quantization block, as in :func:`adamjax.scale_by_adam`.
      rounding: ``"nearest"``, ``"stochastic"`` or ``"kahan"`` for 16-bit weights, as in :func:`adamjax.adam`.
      seed: the seed of stochastic rounding (None: 0).

    Returns:
      An ``optax.GradientTransformationExtraArgs``; ``update`` needs ``params``.

    Examples:
      >>> import jax.numpy as jnp, optax, adamjax
      >>> params = jnp.array([3.0, 4.0])
      >>> tx = adamjax.lamb(0.1)
      >>> updates, _ = tx.update(jnp.array([1.0, 1.0]), tx.init(params), params)
      >>> [round(float(u), 4) for u in updates]  # -lr * |theta| / |r| * r, r = sign(g)
      [-0.3536, -0.3536]

    References:
      You et al., "Large Batch Optimization for Deep Learning: Training BERT in 76 minutes", 2020.
    """
    return _build("lamb", locals(), decoupled=True, after_decay=(optax.scale_by_trust_ratio(),))
