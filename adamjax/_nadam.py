r"""NAdam with PyTorch's momentum-decay schedule (``torch.optim.NAdam(momentum_decay=...)``).

optax's ``nadam`` (the default of :func:`adamjax.nadam`) is Adam with
Nesterov's look-ahead at a constant :math:`\beta_1`. PyTorch follows Dozat
(2016) more closely: the momentum factor warms up,

.. math::

  \mu_t = \beta_1 \big(1 - \tfrac12\, 0.96^{t \psi}\big), \qquad
  \Pi_t = \prod_{s \le t} \mu_s,

and the look-ahead mixes the gradient and the first moment with them. The
running product :math:`\Pi_t` is kept in the state (:class:`NadamState`).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from adamjax import _core, _stages


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
