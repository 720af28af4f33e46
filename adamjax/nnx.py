"""flax nnx with adamjax's fused step: ``adamjax.nnx.Optimizer``, a one-line change from ``nnx.Optimizer``.

``flax.nnx.Optimizer.update`` calls ``tx.update`` and then
``optax.apply_updates``: two passes over the parameters. This subclass calls
:func:`adamjax.apply_step` instead, which on the CPU steps adamjax's Adam and
AdamW (bare, clipped, scheduled or under ``optax.inject_hyperparams``) in one
native pass and otherwise computes exactly the two calls. Everything else
(state, ``wrt``, checkpoints, ``nnx.jit``) is ``nnx.Optimizer``'s, so::

    optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)

becomes::

    optimizer = adamjax.nnx.Optimizer(model, tx, wrt=nnx.Param)

This module needs flax (``pip install flax``); ``import adamjax`` does not.
"""

from __future__ import annotations

from typing import Any

import optax
from flax import nnx

from adamjax._fused import _step

__all__ = ["Optimizer"]


class Optimizer(nnx.Optimizer):
    r"""``flax.nnx.Optimizer`` whose :meth:`update` is one fused step, :math:`\theta \leftarrow \theta + u(g)`.

    Constructed exactly as ``nnx.Optimizer(model, tx, wrt=...)``; its state
    (``opt_state``, ``step``) is the same pytree, so checkpoints move between
    the two classes unchanged.

    References:
      flax's ``nnx.Optimizer``; Kingma & Ba, "Adam: A Method for Stochastic
      Optimization", ICLR 2015.

    Examples:
      >>> import jax, jax.numpy as jnp, adamjax
      >>> import adamjax.nnx
      >>> from flax import nnx
      >>> model = nnx.Linear(2, 1, rngs=nnx.Rngs(0))
      >>> optimizer = adamjax.nnx.Optimizer(model, adamjax.adam(0.1), wrt=nnx.Param)
      >>> loss = lambda m: jnp.sum(m(jnp.ones((1, 2))))
      >>> before = model.bias[...]
      >>> _ = optimizer.update(model, nnx.grad(loss)(model))
      >>> round(float((model.bias[...] - before)[0]), 6)  # Adam's first step is -lr * sign(g)
      -0.1
    """

    def update(self, model: Any, grads: Any, /, **kwargs: Any) -> optax.Updates:
        """Steps ``model``'s ``wrt`` parameters and the optimizer state with :func:`adamjax.apply_step`.

        Same arguments and result as ``nnx.Optimizer.update`` (the updates
        ``tx`` computed, which a ``jit`` drops when nothing uses them).
        Extra keyword arguments (for ``GradientTransformationExtraArgs``
        such as a line search) take ``nnx.Optimizer``'s two-call path.

        Args:
          model: the model whose parameters the optimizer steps.
          grads: the gradients, from ``nnx.grad``.
          **kwargs: extra arguments for ``tx.update``.

        Returns:
          The updates, shaped like the parameters filtered by ``wrt``.
        """
        if kwargs:
            return super().update(model, grads, **kwargs)
        graph = getattr(self, "graph", None)
        params = nnx.as_pure(nnx.state(model, self.wrt, graph=graph))
        grad_arrays = nnx.as_pure(nnx.state(grads, self.wrt, graph=graph))
        new_params, new_state, _, _, updates = _step(self.tx, grad_arrays, nnx.as_pure(self.opt_state), params)
        nnx.update(model, new_params)
        nnx.update(self.opt_state, nnx.state(new_state, graph=graph))
        self.step[...] += 1
        return updates
