r"""NAdam (Dozat 2016): its stages, ``nadam`` and ``nadamw``, in optax's form and with PyTorch's momentum decay.

optax's ``nadam`` (the default of :func:`adamjax.nadam`) is Adam with
Nesterov's look-ahead at a constant :math:`\beta_1`, the ``nesterov`` switch
of :class:`adamjax.AdamConfig` (:func:`nesterov` in place of the first
moment's bias correction; :func:`nesterov_uncorrected` with the correction
off; RAdam's ``nesterov=True`` uses it too):

.. math::

  \hat m_t = \frac{\beta_1 m_t}{1-\beta_1^{t+1}} + \frac{(1-\beta_1) g_t}{1-\beta_1^t}.

PyTorch (``torch.optim.NAdam(momentum_decay=...)``) follows Dozat (2016) more
closely: the momentum factor warms up,

.. math::

  \mu_t = \beta_1 \big(1 - \tfrac12\, 0.96^{t \psi}\big), \qquad
  \Pi_t = \prod_{s \le t} \mu_s,

and the look-ahead mixes the gradient and the first moment with them. The
running product :math:`\Pi_t` is kept in the state (:class:`NadamState`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from adamjax import _core, _stages
from adamjax._alias_chain import _build
from adamjax._numerics import bias_correction, memo
from adamjax._types import ArrayLike, DTypeLike, ScalarOrSchedule


@_stages.stage("correction", "nesterov")
def nesterov(work: dict, c: _stages.Context) -> None:
    r"""optax's NAdam: :math:`\hat m_t = \beta_1 m_t / (1 - \beta_1^{t+1}) + (1 - \beta_1) g_t / (1 - \beta_1^t)`."""
    bc1_next = memo(
        c.cache,
        ("b1 next", c.real),
        lambda: bias_correction(c.config.b1, jnp.asarray(optax.safe_increment(c.count)), c.real),
    )
    bc1 = _stages.first_bias_correction(c)
    look_ahead = _stages.as_factor(c.b1, c.dtype) * work["mu"] / _stages.as_factor(bc1_next, c.dtype)
    gradient = _stages.as_factor(c.one_minus_b1, c.dtype) * work["grad"] / _stages.as_factor(bc1, c.dtype)
    work["mu_hat"] = look_ahead + gradient


@_stages.stage("correction", "nesterov")
def nesterov_uncorrected(work: dict, c: _stages.Context) -> None:
    r"""Nesterov's look-ahead without bias correction: :math:`\hat m_t = \beta_1 m_t + (1 - \beta_1) g_t`."""
    work["mu_hat"] = (
        _stages.as_factor(c.b1, c.dtype) * work["mu"] + _stages.as_factor(c.one_minus_b1, c.dtype) * work["grad"]
    )


_stages.register_switch(
    "nesterov",
    lambda config: config.nesterov,
    lambda stages: _stages.replaced(stages, {_stages.correct_mu: nesterov, _stages.keep_mu: nesterov_uncorrected}),
)


class NadamState(NamedTuple):
    """The state of NAdam with momentum decay: optax's ``ScaleByAdamState`` fields and :math:`\\Pi_t`."""

    count: jax.Array
    mu: optax.Updates
    nu: optax.Updates
    mu_product: jax.Array


LAYOUT = _core.Layout(NadamState, scalars=("mu_product",))
_core.register_state(LAYOUT)


def _momentum(b1: Any, t: jax.Array, decay: Any) -> jax.Array:
    return b1 * (1 - 0.5 * 0.96 ** (t * decay))


def _prepare(state: NadamState, count: jax.Array, config: _core.AdamConfig) -> tuple[dict, dict]:
    """:math:`\\mu_t`, :math:`\\mu_{t+1}` and :math:`\\Pi_t`, once per update, in :math:`\\Pi`'s dtype."""
    dtype = jnp.result_type(state.mu_product)
    decay = _stages.hyper(config.value("momentum_decay"), dtype)
    b1 = _stages.hyper(config.b1, dtype)
    t = count.astype(dtype)
    mu_t, mu_next = _momentum(b1, t, decay), _momentum(b1, t + 1, decay)
    product = state.mu_product * mu_t
    return {"mu_t": mu_t, "mu_next": mu_next, "mu_product": product}, {"mu_product": product}


@_stages.stage("correction", "momentum decay", checks=(("momentum_decay", "nonnegative"),))
def momentum_decay(work: dict, c: _stages.Context) -> None:
    r"""PyTorch's NAdam look-ahead: :math:`\hat m_t = \frac{1 - \mu_t}{1 - \Pi_t} g_t + \frac{\mu_{t+1}}{1 - \Pi_t \mu_{t+1}} m_t`."""
    mu_t, mu_next, product = (c.shared[k].astype(c.real) for k in ("mu_t", "mu_next", "mu_product"))
    work["mu_hat"] = (
        _stages.as_factor((1 - mu_t) / (1 - product), c.dtype) * work["grad"]
        + _stages.as_factor(mu_next / (1 - product * mu_next), c.dtype) * work["mu"]
    )


def member(decay: Any) -> _core.Member:
    """The NAdam-with-momentum-decay member for :func:`adamjax.nadam`."""
    stages = (
        _stages.first_moment,
        _stages.squares,
        momentum_decay,
        _stages.correct_nu,
        _stages.root,
        _stages.direction,
    )
    return _core.Member(
        "nadam",
        stages,
        LAYOUT,
        (("momentum_decay", decay),),
        prepare=_prepare,
        init_scalars=lambda: {"mu_product": jnp.ones([], jnp.result_type(float))},
    )


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
        member=None if momentum_decay is None else member(momentum_decay),
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
