r"""StableAdamW (Wortsman et al. 2023): AdamW with per-array update clipping.

Adafactor's update clipping inside AdamW: each array's Adam direction is
divided by :math:`\max(1, \mathrm{RMS}_t)`, the root mean square of
:math:`g_t^2 / \max(\hat v_t, \epsilon^2)` over the array
(:func:`adamjax._stages.clip_update`). As in the paper's Algorithm 2 the
clipped rate :math:`\eta_t / \max(1, \mathrm{RMS}_t)` scales the decoupled
decay too, so the decay runs inside the core, before the clipping
(:func:`adamjax._stages.decoupled_decay`), rather than as optax's
``add_decayed_weights`` after it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import optax

from adamjax import _stages
from adamjax._alias_chain import _build
from adamjax._types import ArrayLike, DTypeLike, ScalarOrSchedule


def stable_adamw(
    learning_rate: ScalarOrSchedule,
    b1: ArrayLike = 0.9,
    b2: ArrayLike = 0.999,
    eps: ArrayLike = 1e-8,
    eps_root: ArrayLike = 0.0,
    mu_dtype: DTypeLike | None = None,
    weight_decay: ScalarOrSchedule = 1e-4,
    mask: Any | Callable[[optax.Params], Any] | None = None,
    *,
    nu_dtype: DTypeLike | None = None,
    cautious: bool = False,
    state_bits: int | None = None,
    block_size: int | None = None,
    rounding: str = "nearest",
    seed: int | None = None,
) -> optax.GradientTransformationExtraArgs:
    r"""StableAdamW: :func:`adamjax.adamw` with update clipping that scales the decay too (Wortsman et al. 2023).

    .. math::

      \mathrm{RMS}_t = \sqrt{\operatorname{mean}\Big(\frac{g_t^2}{\max(\hat v_t, \epsilon^2)}\Big)}, \qquad
      \theta_t = \theta_{t-1} - \frac{\eta_t}{\max(1, \mathrm{RMS}_t)} \big(u_t + \lambda_t \theta_{t-1}\big)

    with :math:`u_t` Adam's direction; the mean runs over each parameter
    array. The clipped rate :math:`\eta_t / \max(1, \mathrm{RMS}_t)` scales
    the decoupled decay as well as :math:`u_t`, as in the paper's Algorithm 2.
    The signature is ``optax.adamw``'s; optax has no StableAdamW, and the
    state is ``(ScaleByAdamState(count, mu, nu), EmptyState |
    ScaleByScheduleState)``, not ``optax.adamw``'s: the decay lives in the
    core, so it adds no chain member. A ``weight_decay`` schedule is called
    with ``count`` before the step, as ``optax.add_decayed_weights`` calls it,
    and ``mask`` has ``optax.masked``'s meaning.

    Args:
      learning_rate: :math:`\eta`, a number or an optax schedule.
      b1: decay of the first moment.
      b2: decay of the second moment.
      eps: added to the denominator; :math:`\epsilon^2` floors :math:`\hat v_t` in the RMS.
      eps_root: added inside the root.
      mu_dtype: dtype of the first moment.
      weight_decay: decoupled decay :math:`\lambda \ge 0`, a number or a
        schedule; scaled by the clipped rate.
      mask: which parameters decay (``optax.adamw``'s mask: booleans shaped
        like the parameters, or a callable returning them).
      nu_dtype: dtype of the second moment (adamjax only).
      cautious: cautious masking (Liang et al. 2024), before the clipping.
      state_bits: quantized moments (None, 8 or 4 bits), as in :func:`adamjax.scale_by_adam`.
      block_size: elements per quantization block, as in :func:`adamjax.scale_by_adam`.
      rounding: ``"nearest"``, ``"stochastic"`` or ``"kahan"`` for 16-bit weights, as in :func:`adamjax.adam`.
      seed: the seed of stochastic rounding (None: 0).

    Returns:
      An ``optax.GradientTransformationExtraArgs``; ``update`` needs ``params``.

    Examples:
      >>> import jax.numpy as jnp, adamjax
      >>> tx = adamjax.stable_adamw(0.1, weight_decay=0.0)
      >>> params = jnp.zeros(2)
      >>> state = tx.init(params)
      >>> _, state = tx.update(jnp.array([1e-3, 1e-3]), state, params)
      >>> updates, _ = tx.update(jnp.array([1.0, 1.0]), state, params)  # a jump: clipped
      >>> bool(abs(float(updates[0])) < 0.1)
      True
      >>> [type(part).__name__ for part in state]
      ['ScaleByAdamState', 'EmptyState']

    References:
      Wortsman et al., "Stable and low-precision training for large-scale vision-language models", 2023.
    """
    return _build("stable_adamw", locals(), decoupled=True, decay_in_core=True, post=(_stages.clip_update,))
