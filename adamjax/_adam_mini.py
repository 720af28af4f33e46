r"""Adam-mini (Zhang et al. 2024): one second moment per block of parameters.

Adam keeps one second moment per parameter; Adam-mini keeps one per block,
the mean of the squared gradient over the block:

.. math::

  v_{b,t} = \beta_2 v_{b,t-1} + (1 - \beta_2)\, \operatorname{mean}_{i \in b}\, g_{i,t}^2, \qquad
  u_{i,t} = \frac{\hat m_{i,t}}{\sqrt{\hat v_{b(i),t} + \epsilon_{root}} + \epsilon}

which halves the optimizer's state for matrices. Blocks are given by
``block_axes(param) -> axes``, the axes one block spans; by default a matrix
(or higher-rank array) has one block per row (per index of its first axis:
an output neuron of a PyTorch-layout ``(out, in)`` weight) and a vector or
scalar is one block. The second moment is stored with those axes kept at
length 1, in optax's ``ScaleByAdamState``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax

from adamjax import _core, _stages
from adamjax._alias_chain import _build
from adamjax._types import ArrayLike, DTypeLike, ScalarOrSchedule


def rows(param: Any) -> tuple[int, ...]:
    """The default blocks: one per row of a matrix (all axes but the first), the whole array otherwise."""
    ndim = jnp.ndim(param)
    return tuple(range(1, ndim)) if ndim >= 2 else tuple(range(ndim))


def _axes(block_axes: Callable, param: Any) -> tuple[int, ...]:
    axes = block_axes(param)
    ndim = jnp.ndim(param)
    if isinstance(axes, int):
        axes = (axes,)
    if not isinstance(axes, tuple | list) or not all(isinstance(a, int) and -ndim <= a < max(ndim, 1) for a in axes):
        raise ValueError(
            f"`adam_mini(block_axes=...)` must return a tuple of axes of the parameter (shape {jnp.shape(param)}); "
            f"got {axes!r}."
        )
    return tuple(sorted(a % ndim for a in axes)) if ndim else ()


@_stages.stage("second moment", "block mean", checks=(("b2", "decay"), ("block_axes", "callable")))
def block_mean(work: dict, c: _stages.Context) -> None:
    r""":math:`v_{b,t} = \beta_2 v_{b,t-1} + (1 - \beta_2) \operatorname{mean}_{i \in b} |g_{i,t}|^2`, one value per block."""
    axes = _axes(c.config.value("block_axes"), work["grad"])
    mean = (
        jnp.mean(_stages.abs_sq(work["nu_input"]), axis=axes, keepdims=True)
        if axes
        else _stages.abs_sq(work["nu_input"])
    )
    work["nu"] = c.one_minus_b2 * mean + c.b2 * _stages.read_real(work["nu"], c.real)


def _member(block_axes: Callable) -> _core.Member:
    def nu_shape(param: Any) -> tuple[int, ...]:
        axes = _axes(block_axes, param)
        return tuple(1 if i in axes else n for i, n in enumerate(jnp.shape(param)))

    stages = (
        _stages.first_moment,
        block_mean,
        _stages.correct_mu,
        _stages.correct_nu,
        _stages.root,
        _stages.direction,
    )
    return _core.Member(
        "adam_mini", stages, _core.Layout(optax.ScaleByAdamState), (("block_axes", block_axes),), nu_shape=nu_shape
    )


def adam_mini(
    learning_rate: ScalarOrSchedule,
    b1: ArrayLike = 0.9,
    b2: ArrayLike = 0.999,
    eps: ArrayLike = 1e-8,
    eps_root: ArrayLike = 0.0,
    mu_dtype: DTypeLike | None = None,
    weight_decay: ScalarOrSchedule = 1e-4,
    mask: Any | Callable[[optax.Params], Any] | None = None,
    *,
    block_axes: Callable[[jax.Array], tuple[int, ...]] = rows,
    nu_dtype: DTypeLike | None = None,
    cautious: bool = False,
    state_bits: int | None = None,
    block_size: int | None = None,
    rounding: str = "nearest",
    seed: int | None = None,
) -> optax.GradientTransformationExtraArgs:
    r"""Adam-mini: AdamW with one second moment per block (about half of Adam's state for matrices).

    .. math::

      v_{b,t} = \beta_2 v_{b,t-1} + (1-\beta_2) \operatorname{mean}_{i \in b} g_{i,t}^2, \qquad
      \theta_{i,t} = \theta_{i,t-1} - \eta_t \Big(\frac{\hat m_{i,t}}{\sqrt{\hat v_{b(i),t} + \epsilon_{root}}
                     + \epsilon} + \lambda \theta_{i,t-1}\Big)

    Args:
      learning_rate: :math:`\eta`, a number or an optax schedule.
      b1: decay of the first moment.
      b2: decay of the block second moments.
      eps: added to the denominator.
      eps_root: added inside the root.
      mu_dtype: dtype of the first moment.
      weight_decay: decoupled decay :math:`\lambda` (as :func:`adamjax.adamw`).
      mask: which parameters decay.
      block_axes: ``param -> axes`` one block spans (default :func:`rows`:
        one block per row of a matrix, one per vector); for a flax ``Dense``
        kernel ``(in, out)``, ``lambda p: (0,)`` gives one block per output;
        ``lambda p: tuple(range(p.ndim))`` makes each array one block, and
        ``lambda p: ()`` gives each entry its own (Adam).
      nu_dtype: dtype of the block moments.
      cautious: cautious masking (Liang et al. 2024).
      state_bits: quantized moments (None, 8 or 4 bits), as in :func:`adamjax.scale_by_adam`.
      block_size: elements per quantization block, as in :func:`adamjax.scale_by_adam`.
      rounding: ``"nearest"``, ``"stochastic"`` or ``"kahan"`` for 16-bit weights, as in :func:`adamjax.adam`.
      seed: the seed of stochastic rounding (None: 0).

    Returns:
      An ``optax.GradientTransformationExtraArgs``; ``update`` needs ``params``.

    Examples:
      >>> import jax.numpy as jnp, adamjax
      >>> state = adamjax.adam_mini(1e-3).init({"w": jnp.zeros((4, 3)), "b": jnp.zeros(3)})
      >>> state[0].nu["w"].shape, state[0].nu["b"].shape
      ((4, 1), (1,))

    References:
      Zhang et al., "Adam-mini: Use Fewer Learning Rates To Gain More", 2024.
    """
    if not callable(block_axes):
        raise TypeError(f"`adam_mini(block_axes=...)` must be callable (param -> axes); got {block_axes!r}.")
    return _build("adam_mini", locals(), decoupled=True, consumed=("block_axes",), member=_member(block_axes))
