r"""The Adam simulator: feed a stream of gradients through an optimizer and keep its internals.

One weight (or one array of weights) goes through any adamjax transformation,
alone or inside ``optax.chain``, for ``T`` steps in a single ``jax.lax.scan``
under ``jit``. Every step's first and second moments, before and after bias
correction, the denominator and the update are returned as a :class:`Trace`,
read from the one Adam core through :func:`adamjax._core.record_steps` -- the
simulator has no copy of the Adam maths.
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from adamjax import _checks, _core


class Trace(NamedTuple):
    r"""What an optimizer did at every step of a simulation.

    Every field has a leading time axis of length ``T``: row ``t - 1`` holds
    step :math:`t = 1, \dots, T`. With :math:`p` the moment's order (2 for
    Adam):

    Attributes:
      grad: the gradient :math:`g_t` fed to the optimizer.
      mu: the first moment :math:`m_t = \beta_1 m_{t-1} + (1-\beta_1) g_t`.
      nu: the second (p-th power) moment :math:`v_t = \beta_2 v_{t-1} +
        (1-\beta_2)|g_t|^p` (:math:`(g_t - m_t)^2` when centered).
      mu_hat: :math:`\hat m_t = m_t / (1-\beta_1^t)`.
      nu_hat: :math:`\hat v_t = v_t / (1-\beta_2^t)` (of the running maximum
        with AMSGrad).
      denom: the denominator :math:`(\hat v_t + \epsilon_{root})^{1/p} +
        \epsilon`; the square root of the second moment for Adam, the p-th
        root for a p-th power moment.
      direction: the core's output :math:`\hat m_t / \text{denom}`, before the
        learning rate and whatever else follows the core in the chain (the
        "Adam step" of the seed simulator).
      update: the transformation's final output :math:`u_t`, after the
        learning rate (negative for a positive gradient with ``adam``).
      params: the parameters after the step, :math:`\theta_t = \theta_{t-1} +
        u_t`.
      nu_max: AMSGrad's :math:`\max_{s \le t} v_s`, or ``None``.
    """

    grad: jax.Array
    mu: jax.Array
    nu: jax.Array
    mu_hat: jax.Array
    nu_hat: jax.Array
    denom: jax.Array
    direction: jax.Array
    update: jax.Array
    params: jax.Array
    nu_max: jax.Array | None = None


def _real_input(name: str, value: Any) -> Any:
    """``value`` as an array of real numbers (integers or floats), or a clear error."""
    allowed = f"`simulate({name}=...)` must be an array of real numbers (integers or floats)"
    array = value
    if not isinstance(value, (jax.Array, np.ndarray)):
        try:
            array = np.asarray(value)
        except (TypeError, ValueError):  # a sequence of tracers, from `grad_fn`
            try:
                array = jnp.asarray(value)
            except (TypeError, ValueError):
                raise TypeError(f"{allowed}; got {type(value).__name__} {value!r}.") from None
    dtype = jnp.dtype(array.dtype)
    if dtype.kind not in "iuf" and not jnp.issubdtype(dtype, jnp.floating):
        raise TypeError(f"{allowed}; got dtype {dtype}.")
    return array


def _simulation_dtype(value: Any, dtype: Any) -> jnp.dtype:
    """The dtype a simulation runs in: ``dtype``, else the array's float dtype, else float32."""
    if dtype is not None:
        return _checks.canonical_float_dtype("simulate", "dtype", dtype)
    if isinstance(value, (jax.Array, np.ndarray)) and jnp.issubdtype(value.dtype, jnp.floating):
        return jax.dtypes.canonicalize_dtype(value.dtype)
    return jnp.dtype(jnp.float32)


def _one_step(
    tx: optax.GradientTransformation, grad: jax.Array, state: Any, params: jax.Array
) -> tuple[jax.Array, Any, jax.Array, Trace]:
    """Runs ``tx.update`` once, reading the core's internals, and applies the update."""
    with _core.record_steps() as recorded:
        updates, state = tx.update(grad, state, params)
    if not recorded:
        raise ValueError(
            "`simulate(tx, ...)`: `tx` contains no adamjax Adam core, so there are no moments to record. "
            "Pass an adamjax optimizer such as `adamjax.adam(1e-3)` or a chain that contains "
            "`adamjax.scale_by_adam()`."
        )
    if len(recorded) > 1:
        raise ValueError(
            f"`simulate(tx, ...)`: one update of `tx` ran the adamjax Adam core {len(recorded)} times (several "
            "adamjax optimizers in one chain, or a wrapper such as `optax.MultiSteps` that traces its inner "
            "update more than once); the simulator records exactly one. Simulate each optimizer separately."
        )
    step = recorded[0]
    if not isinstance(step, _core.AdamStep):
        raise ValueError(
            "`simulate(tx, ...)`: the Adam core saw a tree of gradients, not the single array the simulator "
            f"fed it (got {jax.tree.structure(step, is_leaf=lambda x: isinstance(x, _core.AdamStep))}); "
            "wrappers that restructure the gradients, such as `optax.flatten`, are not supported."
        )
    params = optax.apply_updates(params, updates)
    row = Trace(
        grad=grad,
        mu=step.mu,
        nu=step.nu,
        mu_hat=step.mu_hat,
        nu_hat=step.nu_hat,
        denom=step.denom,
        direction=step.update,
        update=updates,
        params=params,
        nu_max=step.nu_max,
    )
    return params, state, updates, row


def _open_loop(tx: optax.GradientTransformation, unroll: int, grads: jax.Array, params: jax.Array) -> Trace:
    def body(carry, grad):
        params, state = carry
        params, state, _, row = _one_step(tx, grad, state, params)
        return (params, state), row

    _, trace = jax.lax.scan(body, (params, tx.init(params)), grads, unroll=unroll)
    return trace


def _closed_loop(
    tx: optax.GradientTransformation,
    grad_fn: Callable[[jax.Array], jax.Array],
    steps: int,
    unroll: int,
    params: jax.Array,
) -> Trace:
    def body(carry, _):
        params, state = carry
        grad = jnp.asarray(_real_input("grad_fn", grad_fn(params)))
        if grad.shape != params.shape:
            raise ValueError(
                f"`simulate(grad_fn=...)` must return an array shaped like `params` {params.shape}; "
                f"got shape {grad.shape}."
            )
        params, state, _, row = _one_step(tx, grad.astype(params.dtype), state, params)
        return (params, state), row

    _, trace = jax.lax.scan(body, (params, tx.init(params)), None, length=steps, unroll=unroll)
    return trace


_open_loop_jit = jax.jit(_open_loop, static_argnums=(0, 1))
_closed_loop_jit = jax.jit(_closed_loop, static_argnums=(0, 1, 2, 3))


def _traced(run: Callable[..., Trace], *args: Any) -> Trace:
    """Runs a compiled simulation, explaining the one way reading the core's internals can fail."""
    try:
        return run(*args)
    except jax.errors.UnexpectedTracerError as err:
        raise ValueError(
            "`simulate(tx, ...)`: the Adam core's internals escaped a JAX control-flow primitive inside `tx`. "
            "Wrappers that run the inner update under `jax.lax.cond` or a loop (for example "
            "`optax.apply_if_finite`) cannot be simulated; simulate the optimizer they wrap."
        ) from err


def _hashable(*objects: Any) -> bool:
    try:
        for obj in objects:
            hash(obj)
    except TypeError:
        return False
    return True


def simulate(
    tx: optax.GradientTransformation,
    grads: Any = None,
    *,
    grad_fn: Callable[[jax.Array], jax.Array] | None = None,
    params: Any = None,
    steps: int | None = None,
    dtype: Any = None,
    unroll: int = 1,
) -> Trace:
    r"""Runs an optimizer on a stream of gradients and returns its internals at every step.

    **Open loop** (``grads`` given): step :math:`t` feeds ``grads[t - 1]`` to
    ``tx``, whatever the parameters are; this is the seed simulators' view of
    one weight. The parameters start at ``params`` (zeros by default) and
    integrate the updates, :math:`\theta_t = \theta_{t-1} + u_t`.

    **Closed loop** (``grad_fn`` given): the gradient depends on where the
    parameters are, :math:`g_t = \text{grad\_fn}(\theta_{t-1})`, starting from
    ``params`` for ``steps`` steps -- plain training on a known loss.

    The whole run is one ``jax.lax.scan`` under ``jax.jit`` (compiled once per
    ``tx`` object and shape; reuse the same ``tx`` to avoid recompiling). The
    moments are read from the adamjax core inside ``tx`` (see
    :func:`adamjax.scale_by_adam` for the update rule), so ``tx`` may be any
    adamjax optimizer or an ``optax.chain`` containing exactly one adamjax core.
    The optimizer may be built from traced hyperparameters, so ``jax.vmap``
    over a function that builds it and simulates runs a whole grid of settings
    in one compiled call.

    Args:
      tx: an ``optax.GradientTransformation`` containing one adamjax core.
      grads: open loop: the gradients, shape ``[T]`` (one weight) or
        ``[T, *shape]``.
      grad_fn: closed loop: ``params -> gradient``, the gradient shaped like
        ``params``.
      params: the initial parameters (required in closed loop; zeros shaped like
        one gradient in open loop).
      steps: closed loop: the number of steps ``T >= 1``.
      dtype: the parameters' dtype. By default that of ``grads`` (open loop) or
        ``params`` (closed loop) when it is a floating JAX or NumPy array, else
        float32 (so a Python list runs in float32 even with x64 enabled).
      unroll: passed to ``jax.lax.scan``; a few steps per iteration can be
        faster on CPU for tiny arrays.

    Returns:
      A :class:`Trace` whose fields have shape ``[T, *shape]``.

    Raises:
      ValueError: both or neither of ``grads`` and ``grad_fn``; closed loop
        without ``params`` or a positive ``steps``; ``unroll < 1``; ``tx``
        contains no adamjax core, or more than one.
      TypeError: ``tx`` is not a gradient transformation; ``grads``,
        ``params`` or what ``grad_fn`` returns is not an array of real numbers
        (complex, boolean, strings, a pytree); ``dtype`` is not a floating
        dtype; ``unroll`` is not an integer.

    Examples:
      Seed 000's question: what does Adam make of a gradient that alternates
      between 1 and 0? At step 1 bias correction makes the step 1 (up to
      float32 rounding).

      >>> import jax, jax.numpy as jnp, adamjax
      >>> trace = adamjax.simulate(adamjax.adam(1e-3), adamjax.signals.alternating(60))
      >>> trace.direction.shape, round(float(trace.direction[0]), 4)
      ((60,), 1.0)

      Closed loop on seed 003's quadratic :math:`(w - 1)^2`:

      >>> trace = adamjax.simulate(adamjax.adam(0.01), grad_fn=lambda w: 2 * w - 2,
      ...                          params=jnp.zeros([]), steps=800)
      >>> round(float(trace.params[-1]), 4)
      1.0

      A grid of ``b2`` values in one compiled call:

      >>> grads = adamjax.signals.sine(300)
      >>> run = lambda b2: adamjax.simulate(adamjax.adam(1e-3, b2=b2), grads).direction
      >>> jax.jit(jax.vmap(run))(jnp.array([0.9, 0.99, 0.999], jnp.float32)).shape
      (3, 300)

    References:
      Kingma & Ba, "Adam: A Method for Stochastic Optimization", 2015.
    """
    if not (callable(getattr(tx, "init", None)) and callable(getattr(tx, "update", None))):
        raise TypeError(
            f"`simulate(tx, ...)`: `tx` must be an optax.GradientTransformation such as `adamjax.adam(1e-3)`; "
            f"got {type(tx).__name__}."
        )
    if isinstance(unroll, bool) or not isinstance(unroll, (int, np.integer)):
        raise TypeError(f"`simulate(unroll=...)` must be a positive integer; got {type(unroll).__name__} {unroll!r}.")
    if unroll < 1:
        raise ValueError(f"`simulate(unroll=...)` must be a positive integer; got {unroll!r}.")
    unroll = operator.index(unroll)
    if (grads is None) == (grad_fn is None):
        raise ValueError(
            "`simulate` needs exactly one of `grads` (open loop: a gradient per step) and `grad_fn` "
            "(closed loop: params -> gradient)."
        )
    if grads is not None:
        if steps is not None:
            raise ValueError("`simulate(grads, steps=...)`: in open loop the number of steps is `len(grads)`.")
        sim_dtype = _simulation_dtype(grads, dtype)
        grads = jnp.asarray(_real_input("grads", grads)).astype(sim_dtype)
        if grads.ndim == 0 or grads.shape[0] == 0:
            raise ValueError(
                f"`simulate(grads=...)` must have shape [T] or [T, *shape] with T >= 1; got shape {grads.shape}."
            )
        if params is None:
            start = jnp.zeros(grads.shape[1:], sim_dtype)
        else:
            start = jnp.asarray(_real_input("params", params)).astype(sim_dtype)
        if start.shape != grads.shape[1:]:
            raise ValueError(
                f"`simulate(grads, params=...)`: `params` must have the shape of one gradient "
                f"{grads.shape[1:]}; got {start.shape}."
            )
        if _hashable(tx):
            return _traced(_open_loop_jit, tx, unroll, grads, start)
        return _traced(jax.jit(functools.partial(_open_loop, tx, unroll)), grads, start)

    if not callable(grad_fn):
        raise TypeError(f"`simulate(grad_fn=...)` must be callable (params -> gradient); got {grad_fn!r}.")
    if params is None:
        raise ValueError("`simulate(grad_fn=..., params=...)`: closed loop needs the initial parameters.")
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 1:
        raise ValueError(f"`simulate(grad_fn=..., steps=...)` must be a positive integer; got {steps!r}.")
    sim_dtype = _simulation_dtype(params, dtype)
    start = jnp.asarray(_real_input("params", params)).astype(sim_dtype)
    steps = int(steps)
    if _hashable(tx, grad_fn):
        return _traced(_closed_loop_jit, tx, grad_fn, steps, unroll, start)
    return _traced(jax.jit(functools.partial(_closed_loop, tx, grad_fn, steps, unroll)), start)
