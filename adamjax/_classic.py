r"""The optimizers of ``jax.example_libraries.optimizers``, as :func:`optimizer` triples.

Same signatures, defaults, state layouts (except :func:`sm3`, see there) and
numerics as ``jax.example_libraries``; hyperparameters are checked when the
optimizer is built. :func:`adam` and :func:`adamax` run adamjax's one Adam
core (:func:`adamjax.adam_step`). The step index ``i`` starts at 0, so Adam's
bias corrections use :math:`t = i + 1`.

The step size multiplies the direction through :func:`adamjax._core.scale_leaf`:
a Python number as in ``jax.example_libraries``; an array-valued schedule in
float32 or wider, rounded once to the parameter's dtype, so a float64 schedule
never widens float32 parameters.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import jax
import jax.numpy as jnp
import optax

from adamjax import _checks, _core
from adamjax._schedules import Schedule, as_schedule
from adamjax._triple import OptimizerResult, optimizer


def _step_size(func: str, step_size: Any) -> Schedule:
    return as_schedule(func, "step_size", step_size, nonnegative=True)


def _params(state: tuple) -> Any:
    return state[0]


@optimizer
def sgd(step_size) -> OptimizerResult:
    r"""Stochastic gradient descent: :math:`x \leftarrow x - \eta_i g`.

    Args:
      step_size: :math:`\eta \ge 0`, a number or a schedule ``i -> step size``.

    Returns:
      An :class:`Optimizer` triple; the per-array state is ``x``.
    """
    schedule = _step_size("sgd", step_size)

    def update(i, g, x):
        return x - _core.scale_leaf(schedule(i), g)

    return (lambda x0: x0), update, (lambda x: x)


def _heavy_ball(func: str, step_size: Any, mass: Any, *, nesterov: bool) -> OptimizerResult:
    schedule = _step_size(func, step_size)
    _checks.check_decay(func, "mass", mass)

    def init(x0):
        return x0, jnp.zeros_like(x0)

    def update(i, g, state):
        x, velocity = state
        velocity = mass * velocity + g
        direction = mass * velocity + g if nesterov else velocity
        return x - _core.scale_leaf(schedule(i), direction), velocity

    return init, update, _params


@optimizer
def momentum(step_size: Schedule, mass: float) -> OptimizerResult:
    r"""SGD with heavy-ball momentum.

    .. math:: v \leftarrow \mu v + g, \qquad x \leftarrow x - \eta_i v

    Args:
      step_size: :math:`\eta \ge 0`, a number or a schedule.
      mass: :math:`\mu \in [0, 1)`, the momentum coefficient.

    Returns:
      An :class:`Optimizer` triple; the per-array state is ``(x, v)``.

    References:
      Polyak, "Some methods of speeding up the convergence of iteration methods", 1964.
    """
    return _heavy_ball("momentum", step_size, mass, nesterov=False)


@optimizer
def nesterov(step_size: Schedule, mass: float) -> OptimizerResult:
    r"""SGD with Nesterov momentum, in the look-ahead form of Sutskever et al. (2013).

    .. math:: v \leftarrow \mu v + g, \qquad x \leftarrow x - \eta_i (\mu v + g)

    Args:
      step_size: :math:`\eta \ge 0`, a number or a schedule.
      mass: :math:`\mu \in [0, 1)`, the momentum coefficient.

    Returns:
      An :class:`Optimizer` triple; the per-array state is ``(x, v)``.

    References:
      Sutskever, Martens, Dahl & Hinton, "On the importance of initialization and
      momentum in deep learning", 2013.
    """
    return _heavy_ball("nesterov", step_size, mass, nesterov=True)


def _inverse_sqrt(accumulator: jax.Array) -> jax.Array:
    """``1/sqrt(a)`` where ``a > 0`` and 0 elsewhere (a coordinate never seen stays put)."""
    return jnp.where(accumulator > 0, 1.0 / jnp.sqrt(accumulator), 0.0)


@optimizer
def adagrad(step_size, momentum=0.9) -> OptimizerResult:
    r"""Adagrad, with momentum on the preconditioned gradient.

    .. math::

      s \leftarrow s + g^2, \qquad
      m \leftarrow (1 - \mu)\, g / \sqrt{s} + \mu m, \qquad
      x \leftarrow x - \eta_i m

    (coordinates with :math:`s = 0` get no step).

    Args:
      step_size: :math:`\eta \ge 0`, a number or a schedule.
      momentum: :math:`\mu \in [0, 1)`.

    Returns:
      An :class:`Optimizer` triple; the per-array state is ``(x, s, m)``.

    References:
      Duchi, Hazan & Singer, "Adaptive Subgradient Methods for Online Learning
      and Stochastic Optimization", 2011.
    """
    schedule = _step_size("adagrad", step_size)
    _checks.check_decay("adagrad", "momentum", momentum)

    def init(x0):
        return x0, jnp.zeros_like(x0), jnp.zeros_like(x0)

    def update(i, g, state):
        x, g_sq, m = state
        g_sq = g_sq + jnp.square(g)
        m = (1.0 - momentum) * (g * _inverse_sqrt(g_sq)) + momentum * m
        return x - _core.scale_leaf(schedule(i), m), g_sq, m

    return init, update, _params


def _check_rmsprop(func: str, gamma: Any, eps: Any) -> None:
    _checks.check_decay(func, "gamma", gamma)
    _checks.check_nonnegative(func, "eps", eps)


@optimizer
def rmsprop(step_size, gamma=0.9, eps=1e-8) -> OptimizerResult:
    r"""RMSProp, with ``eps`` inside the root.

    .. math:: a \leftarrow \gamma a + (1 - \gamma) g^2, \qquad
              x \leftarrow x - \eta_i\, g / \sqrt{a + \epsilon}

    Args:
      step_size: :math:`\eta \ge 0`, a number or a schedule.
      gamma: :math:`\gamma \in [0, 1)`, the decay of the squared-gradient average.
      eps: :math:`\epsilon \ge 0`.

    Returns:
      An :class:`Optimizer` triple; the per-array state is ``(x, a)``.

    References:
      Tieleman & Hinton, "Lecture 6.5 -- RMSProp", COURSERA: Neural Networks for
      Machine Learning, 2012.
    """
    schedule = _step_size("rmsprop", step_size)
    _check_rmsprop("rmsprop", gamma, eps)

    def init(x0):
        return x0, jnp.zeros_like(x0)

    def update(i, g, state):
        x, avg_sq_grad = state
        avg_sq_grad = avg_sq_grad * gamma + jnp.square(g) * (1.0 - gamma)
        return x - _core.scale_leaf(schedule(i), g / jnp.sqrt(avg_sq_grad + eps)), avg_sq_grad

    return init, update, _params


@optimizer
def rmsprop_momentum(step_size, gamma=0.9, eps=1e-8, momentum=0.9) -> OptimizerResult:
    r"""RMSProp with momentum on the scaled step.

    .. math:: a \leftarrow \gamma a + (1 - \gamma) g^2, \qquad
              p \leftarrow \mu p + \eta_i\, g / \sqrt{a + \epsilon}, \qquad
              x \leftarrow x - p

    Args:
      step_size: :math:`\eta \ge 0`, a number or a schedule.
      gamma: :math:`\gamma \in [0, 1)`.
      eps: :math:`\epsilon \ge 0`.
      momentum: :math:`\mu \in [0, 1)`.

    Returns:
      An :class:`Optimizer` triple; the per-array state is ``(x, a, p)``.
    """
    schedule = _step_size("rmsprop_momentum", step_size)
    _check_rmsprop("rmsprop_momentum", gamma, eps)
    _checks.check_decay("rmsprop_momentum", "momentum", momentum)

    def init(x0):
        return x0, jnp.zeros_like(x0), jnp.zeros_like(x0)

    def update(i, g, state):
        x, avg_sq_grad, mom = state
        avg_sq_grad = avg_sq_grad * gamma + jnp.square(g) * (1.0 - gamma)
        mom = momentum * mom + _core.scale_leaf(schedule(i), g / jnp.sqrt(avg_sq_grad + eps))
        return x - mom, avg_sq_grad, mom

    return init, update, _params


@optimizer
def sm3(step_size, momentum=0.9) -> OptimizerResult:
    r"""SM3: Adagrad with one accumulator per row, column, ... instead of per entry.

    For an array with axes :math:`k = 1..n`, each axis keeps a vector
    :math:`r_k`; the per-entry accumulator is the minimum of the covering
    entries plus :math:`g^2`, and each :math:`r_k` becomes its maximum over the
    other axes:

    .. math::

      s &= \min_k r_k[j_k] + g^2, \qquad r_k \leftarrow \max_{\text{axes} \ne k} s \\
      m &\leftarrow (1 - \mu)\, g / \sqrt{s} + \mu m, \qquad x \leftarrow x - \eta_i m

    Unlike ``jax.example_libraries``, the per-array state ``(x, m, [r_1, ...])``
    keeps ``x`` and ``m`` in the parameter's shape and holds no Python shape
    tuple, so it survives ``jit`` unchanged; the numbers are the same.

    Args:
      step_size: :math:`\eta \ge 0`, a number or a schedule.
      momentum: :math:`\mu \in [0, 1)`.

    Returns:
      An :class:`Optimizer` triple.

    References:
      Anil, Gupta, Koren & Singer, "Memory-Efficient Adaptive Optimization", 2019.
    """
    schedule = _step_size("sm3", step_size)
    _checks.check_decay("sm3", "momentum", momentum)

    def init(x0):
        x0 = jnp.asarray(x0)
        shape = jnp.atleast_1d(x0).shape
        return x0, jnp.zeros_like(x0), [jnp.zeros(n, x0.dtype) for n in shape]

    def update(i, g, state):
        x, m, row_maxes = state
        shape = jnp.shape(x)
        g = jnp.atleast_1d(g)
        axes = range(g.ndim)
        covering = [jnp.expand_dims(r, [a for a in axes if a != k]) for k, r in enumerate(row_maxes)]
        accumulator = functools.reduce(jnp.minimum, covering) + jnp.square(g)
        m = (1.0 - momentum) * (g * _inverse_sqrt(accumulator)) + momentum * jnp.atleast_1d(m)
        x = jnp.atleast_1d(x) - _core.scale_leaf(schedule(i), m)
        row_maxes = [accumulator.max(axis=tuple(a for a in axes if a != k)) for k in axes]
        return x.reshape(shape), m.reshape(shape), row_maxes

    return init, update, _params


def _adam_family(func: str, step_size: Any, config: _core.AdamConfig) -> OptimizerResult:
    """Per-array ``(x, m, v)`` triple stepping by :func:`adamjax._core.adam_step`."""
    schedule = _step_size(func, step_size)

    def init(x0):
        return x0, jnp.zeros_like(x0), jnp.zeros_like(x0)

    def update(i, g, state):
        x, m, v = state
        x, g = jnp.asarray(x), jnp.asarray(g)
        count = jnp.asarray(i, jnp.int32) + 1
        step = _core.adam_step(g, m, v, None, count, config)
        # In the core's float32-or-wider dtype, rounded once to the parameter's.
        x_new = x.astype(step.update.dtype) - _core.scale_leaf(schedule(i), step.update)
        return x_new.astype(x.dtype), step.mu.astype(m.dtype), step.nu.astype(v.dtype)

    return init, update, _params


@optimizer
def adam(step_size, b1=0.9, b2=0.999, eps=1e-8) -> OptimizerResult:
    r"""Adam, with the step index ``i`` starting at 0.

    .. math::

      m &\leftarrow \beta_1 m + (1 - \beta_1) g, \qquad
      v \leftarrow \beta_2 v + (1 - \beta_2) g^2 \\
      x &\leftarrow x - \eta_i \,\frac{m / (1 - \beta_1^{i+1})}{\sqrt{v / (1 - \beta_2^{i+1})} + \epsilon}

    ``eps`` is added outside the root, as in Kingma & Ba's Algorithm 1,
    ``jax.example_libraries`` and ``optax.adam``. Computed by adamjax's core
    (:func:`adamjax.adam_step`), in float32 or wider.

    Args:
      step_size: :math:`\eta \ge 0`, a number or a schedule ``i -> step size``.
      b1: :math:`\beta_1 \in [0, 1)`, the decay of the first moment.
      b2: :math:`\beta_2 \in [0, 1)`, the decay of the second moment.
      eps: :math:`\epsilon \ge 0`.

    Returns:
      An :class:`Optimizer` triple; the per-array state is ``(x, m, v)``.

    Raises:
      ValueError: a hyperparameter is out of range (the message names it).
      TypeError: ``step_size`` is neither a number nor a callable.

    Examples:
      >>> import jax.numpy as jnp
      >>> from adamjax import optimizers
      >>> init, update, get_params = optimizers.adam(0.1)
      >>> state = update(0, jnp.array([2.0, -3.0]), init(jnp.zeros(2)))
      >>> [round(float(x), 4) for x in get_params(state)]  # the first step is -step_size * sign(g)
      [-0.1, 0.1]

    References:
      Kingma & Ba, "Adam: A Method for Stochastic Optimization", ICLR 2015.
    """
    return _adam_family("adam", step_size, _core.make_config("adam", b1, b2, eps, 0.0))


@optimizer
def adamax(step_size, b1=0.9, b2=0.999, eps=1e-8) -> OptimizerResult:
    r"""AdaMax, Adam's infinity-norm variant.

    .. math::

      m &\leftarrow \beta_1 m + (1 - \beta_1) g, \qquad
      u \leftarrow \max(\beta_2 u, |g|) \\
      x &\leftarrow x - \frac{\eta_i}{1 - \beta_1^{i+1}} \,\frac{m}{u + \epsilon}

    Kingma & Ba's Algorithm 2 with ``eps`` added to :math:`u` as in
    ``jax.example_libraries`` (and optax); :math:`u` is not bias-corrected.
    Computed by adamjax's core with ``power=inf``.

    Args:
      step_size: :math:`\eta \ge 0`, a number or a schedule.
      b1: :math:`\beta_1 \in [0, 1)`.
      b2: :math:`\beta_2 \in [0, 1)`, the decay of the running maximum.
      eps: :math:`\epsilon \ge 0`.

    Returns:
      An :class:`Optimizer` triple; the per-array state is ``(x, m, u)``.

    References:
      Kingma & Ba, "Adam: A Method for Stochastic Optimization", ICLR 2015, section 7.1.
    """
    config = _core.make_config("adamax", b1, b2, eps, 0.0, power=math.inf)
    return _adam_family("adamax", step_size, config)


def l2_norm(tree: Any) -> jax.Array:
    """The Euclidean norm of all the leaves of ``tree`` together (``optax.tree.norm``)."""
    return optax.tree.norm(tree)


def clip_grads(grad_tree: Any, max_norm: Any) -> Any:
    """Rescales ``grad_tree`` to global norm ``max_norm`` if its norm exceeds it.

    Uses ``optax.clip_by_global_norm``; ``g`` becomes ``g * max_norm / ||g||``
    when ``||g|| >= max_norm`` and is unchanged otherwise.
    """
    clipped, _ = optax.clip_by_global_norm(max_norm).update(grad_tree, optax.EmptyState())
    return clipped
