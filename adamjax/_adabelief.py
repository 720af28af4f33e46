r"""AdaBelief (Zhuang et al. 2020), the centered second moment: its stages, ``scale_by_belief`` and ``adabelief``.

The second moment tracks how far the gradient strays from its running mean
(the "belief"), and ``eps_root`` is added to the stored moment every step, as
optax and the paper do:

.. math::

  s_t = \beta_2 s_{t-1} + (1-\beta_2)(g_t - m_t)^2 + \epsilon_{root}, \qquad
  d_t = \sqrt{s_t/(1-\beta_2^t)} + \epsilon.

It is the ``centered`` switch of :class:`adamjax.AdamConfig`: the moment sees
:func:`centered_input`, :func:`eps_root_in_moment` follows it, and the
denominator leaves ``eps_root`` out (:func:`root_of_moment`, or
:func:`pth_root_of_moment` with Adam's p-th power moment). The state is optax's
``ScaleByBeliefState``.
"""

from __future__ import annotations

import jax.numpy as jnp
import optax

from adamjax import _adam, _core, _stages
from adamjax._alias_chain import _build
from adamjax._types import ArrayLike, DTypeLike, ScalarOrSchedule


@_stages.stage("second moment", "centered")
def centered_input(work: dict, c: _stages.Context) -> None:
    r"""AdaBelief's "belief": the second moment sees :math:`x_t = g_t - m_t` instead of :math:`g_t`."""
    work["nu_input"] = work["grad"] - work["mu"]


@_stages.stage("second moment", "centered", checks=(("eps_root", "nonnegative"),))
def eps_root_in_moment(work: dict, c: _stages.Context) -> None:
    r"""AdaBelief (as optax): :math:`s_t \leftarrow s_t + \epsilon_{root}`, added to the stored moment every step."""
    work["nu"] = work["nu"] + c.eps_root


@_stages.stage("denominator", "centered", checks=(("eps", "nonnegative"),))
def root_of_moment(work: dict, c: _stages.Context) -> None:
    r""":math:`d_t = \sqrt{\hat v_t} + \epsilon` (AdaBelief: :math:`\epsilon_{root}` is in the moment already)."""
    _stages.set_denominator(work, c, jnp.sqrt(work["nu_hat"]))


@_stages.stage("denominator", "centered", checks=(("eps", "nonnegative"),))
def pth_root_of_moment(work: dict, c: _stages.Context) -> None:
    r""":math:`d_t = \hat v_t^{1/p} + \epsilon` (centered p-th power moment)."""
    _stages.set_denominator(work, c, work["nu_hat"] ** (1 / _stages.hyper(c.config.power, c.real)))


def _centered(stages: tuple[_stages.Stage, ...]) -> tuple[_stages.Stage, ...]:
    """The belief into the second moment, ``eps_root`` into the stored moment, and out of the denominator."""
    stages = _stages.inserted(stages, centered_input, before="second moment")
    stages = _stages.inserted(stages, eps_root_in_moment, after="second moment")
    return _stages.replaced(stages, {_stages.root: root_of_moment, _adam.pth_root: pth_root_of_moment})


_stages.register_switch("centered", lambda config: config.centered, _centered)


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


def adabelief(
    learning_rate: ScalarOrSchedule,
    b1: ArrayLike = 0.9,
    b2: ArrayLike = 0.999,
    eps: ArrayLike = 1e-16,
    eps_root: ArrayLike = 1e-16,
    *,
    nesterov: bool = False,
    weight_decay: ScalarOrSchedule | None = None,
    mu_dtype: DTypeLike | None = None,
    nu_dtype: DTypeLike | None = None,
    cautious: bool = False,
    state_bits: int | None = None,
    block_size: int | None = None,
    rounding: str = "nearest",
    seed: int | None = None,
) -> optax.GradientTransformationExtraArgs:
    r"""AdaBelief: Adam with the centered second moment (``optax.adabelief``).

    .. math::

      s_t = \beta_2 s_{t-1} + (1-\beta_2)(g_t - m_t)^2 + \epsilon_{root}, \qquad
      \theta_t = \theta_{t-1} - \eta_t \frac{\hat m_t}{\sqrt{s_t/(1-\beta_2^t)} + \epsilon}

    The step is large when the gradient agrees with its running mean ("belief")
    and small when it swings around it. Signature and state
    (``optax.ScaleByBeliefState(count, mu, nu)``) are optax's.

    Args:
      learning_rate: :math:`\eta`, a number or an optax schedule.
      b1: as in :func:`scale_by_adam`.
      b2: as in :func:`scale_by_adam`.
      eps: as in :func:`scale_by_adam` (note optax's defaults
        ``eps = eps_root = 1e-16``).
      eps_root: as in :func:`scale_by_adam` (note optax's defaults
        ``eps = eps_root = 1e-16``).
      nesterov: Nesterov momentum, as ``optax.adabelief``.
      weight_decay: coupled L2, as in :func:`adam` (adamjax only).
      mu_dtype: dtype of the first moment (adamjax only).
      nu_dtype: dtype of the second moment (adamjax only).

    ``cautious``, ``state_bits``, ``block_size``, ``rounding`` and ``seed``: as in
    :func:`adam` (cautious masking, quantized moments, 16-bit weight rounding).

    Returns:
      An ``optax.GradientTransformationExtraArgs``.

    Examples:
      >>> import jax.numpy as jnp, adamjax
      >>> tx = adamjax.adabelief(0.1)
      >>> type(tx.init(jnp.zeros(2))[0]).__name__
      'ScaleByBeliefState'

    References:
      Zhuang et al., "AdaBelief Optimizer: Adapting Stepsizes by the Belief in
      Observed Gradients", 2020.
    """
    return _build("adabelief", locals(), centered=True)
