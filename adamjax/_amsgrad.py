r"""AMSGrad (Reddi, Kale & Kumar 2018): its stage, ``scale_by_amsgrad`` and the ``amsgrad`` alias.

Adam whose denominator never shrinks: the step divides by the running maximum
of the second moment. adamjax takes the maximum of the raw moments, then
bias-corrects it (PyTorch's convention; optax takes it after the correction):

.. math::

  \tilde v_t = \max(\tilde v_{t-1}, v_t), \qquad \hat v_t = \tilde v_t / (1 - \beta_2^t).

The ``amsgrad`` switch of :class:`adamjax.AdamConfig` puts :func:`amsgrad_max`
after the second moment; the maximum is stored as ``nu_max`` in optax's
``ScaleByAmsgradState``.
"""

from __future__ import annotations

import jax.numpy as jnp
import optax

from adamjax import _checks, _core, _stages
from adamjax._alias_chain import _build
from adamjax._types import ArrayLike, DTypeLike, ScalarOrSchedule


@_stages.stage("second moment", "amsgrad")
def amsgrad_max(work: dict, c: _stages.Context) -> None:
    r"""AMSGrad (PyTorch's convention): :math:`\tilde v_t = \max(\tilde v_{t-1}, v_t)` of the raw moments; the correction uses :math:`\tilde v_t`."""
    work["nu_max"] = jnp.maximum(_stages.read_real(work["nu_max"], c.real), work["nu"])
    work["nu_used"] = work["nu_max"]


_stages.register_switch(
    "amsgrad",
    lambda config: config.amsgrad,
    lambda stages: _stages.inserted(stages, amsgrad_max, after="second moment"),
)


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


def amsgrad(
    learning_rate: ScalarOrSchedule,
    b1: ArrayLike = 0.9,
    b2: ArrayLike = 0.999,
    eps: ArrayLike = 1e-8,
    eps_root: ArrayLike = 0.0,
    mu_dtype: DTypeLike | None = None,
    bias_correction_mu: bool = True,
    bias_correction_nu: bool = True,
    *,
    weight_decay: ScalarOrSchedule | None = None,
    nu_dtype: DTypeLike | None = None,
    cautious: bool = False,
    state_bits: int | None = None,
    block_size: int | None = None,
    rounding: str = "nearest",
    seed: int | None = None,
) -> optax.GradientTransformationExtraArgs:
    r"""AMSGrad with PyTorch's convention (``torch.optim.Adam(amsgrad=True)``).

    .. math::

      \tilde v_t = \max(\tilde v_{t-1}, v_t), \qquad
      \theta_t = \theta_{t-1} - \eta_t \frac{m_t/(1-\beta_1^t)}
                 {\sqrt{\tilde v_t / (1-\beta_2^t) + \epsilon_{root}} + \epsilon}

    The signature and the state class (``optax.ScaleByAmsgradState(count, mu,
    nu, nu_max)``) are ``optax.amsgrad``'s, but the maximum is taken over the
    raw second moment, then bias-corrected, as PyTorch does. optax takes the
    maximum of the bias-corrected moments (so its ``nu_max`` holds corrected
    values): at the same hyperparameters the two give different numbers
    whenever ``bias_correction_nu`` is on; with it off they agree.

    Args:
      learning_rate: :math:`\eta`, a number or an optax schedule.
      b1: as in :func:`scale_by_adam`.
      b2: as in :func:`scale_by_adam`.
      eps: as in :func:`scale_by_adam`.
      eps_root: as in :func:`scale_by_adam`.
      mu_dtype: dtype of the first moment.
      bias_correction_mu: divide :math:`m_t` by :math:`1 - \beta_1^t`.
      bias_correction_nu: divide :math:`\tilde v_t` by :math:`1 - \beta_2^t`.
      weight_decay: coupled L2, as in :func:`adam` (adamjax only).
      nu_dtype: dtype of ``nu`` and ``nu_max`` (adamjax only).

    ``cautious``, ``state_bits``, ``block_size``, ``rounding`` and ``seed``: as in
    :func:`adam` (cautious masking, quantized moments, 16-bit weight rounding).

    Returns:
      An ``optax.GradientTransformationExtraArgs``.

    Examples:
      >>> import jax.numpy as jnp, adamjax
      >>> tx = adamjax.amsgrad(0.1)
      >>> state = tx.init(jnp.zeros(1))
      >>> _, state = tx.update(jnp.array([2.0]), state)
      >>> _, state = tx.update(jnp.array([0.0]), state)
      >>> round(float(state[0].nu_max[0]), 6)  # the raw moment's maximum, 0.001 * 2**2
      0.004

    References:
      Reddi, Kale & Kumar, "On the Convergence of Adam and Beyond", 2018.
    """
    _checks.check_flag("amsgrad", "bias_correction_mu", bias_correction_mu)
    _checks.check_flag("amsgrad", "bias_correction_nu", bias_correction_nu)
    return _build("amsgrad", locals(), amsgrad=True)
