r"""The Adam simulator: feed a stream of gradients through an optimizer and keep its internals.

One weight (or one array of weights) goes through any adamjax transformation,
alone or inside ``optax.chain``, for ``T`` steps in a single ``jax.lax.scan``
under ``jit``. Every step's first and second moments, before and after bias
correction, the denominator and the update are returned as a :class:`Trace`,
read from the one Adam core through :func:`adamjax._core.record_steps` -- the
simulator has no copy of the Adam maths. Next to the moments a step computes,
the trace holds what the optimizer's state stores of them after the step
(dequantized for ``state_bits``, or rounded to ``mu_dtype`` / ``nu_dtype``),
read from the state itself.
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

from adamjax import _checks, _core, _stages
from adamjax._settings import Settings
from adamjax._simulate_storage import _initial_state, _settings_and_storage, _Storage, _stored_moments


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
        "Adam step").
      update: the transformation's final output :math:`u_t`, after the
        learning rate (negative for a positive gradient with ``adam``).
      params: the parameters after the step, :math:`\theta_t = \theta_{t-1} +
        u_t`.
      nu_max: AMSGrad's :math:`\max_{s \le t} v_s`, or ``None``.
      mu_stored: the first moment the optimizer's state holds after the step,
        as a float in ``mu``'s dtype: :math:`m_t` requantized and dequantized
        with ``state_bits``, rounded to ``mu_dtype`` when that is narrower,
        equal to ``mu`` otherwise. The next step starts from it. ``None``
        when the state holds no single Adam core state (a chain with another
        optax Adam state in it).
      nu_stored: the same for the second moment :math:`v_t`.
      settings: the :class:`Settings` of the optimizer that ran (``None`` for
        a trace built by hand); not an array, and left alone by
        ``jax.tree.map``.
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
    mu_stored: jax.Array | None = None
    nu_stored: jax.Array | None = None
    settings: Settings | None = None

    @property
    def mu_error(self) -> jax.Array | None:
        r"""The storage error of the first moment, ``mu_stored - mu`` (:math:`\tilde m_t - m_t`)."""
        return None if self.mu_stored is None else self.mu_stored - self.mu

    @property
    def nu_error(self) -> jax.Array | None:
        r"""The storage error of the second moment, ``nu_stored - nu`` (:math:`\tilde v_t - v_t`)."""
        return None if self.nu_stored is None else self.nu_stored - self.nu


def _real_input(name: str, value: Any) -> Any:
    """``value`` as an array of real numbers (integers or floats), or a clear error."""
    allowed = f"`simulate({name}=...)` must be an array of real numbers (integers or floats)"
    array = value
    if not isinstance(value, jax.Array | np.ndarray):
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
        return jnp.dtype(_checks.canonical_float_dtype("simulate", "dtype", dtype))
    if isinstance(value, jax.Array | np.ndarray) and jnp.issubdtype(value.dtype, jnp.floating):
        return jnp.dtype(jax.dtypes.canonicalize_dtype(value.dtype))
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
    if not isinstance(step, _stages.AdamStep):
        raise ValueError(
            "`simulate(tx, ...)`: the Adam core saw a tree of gradients, not the single array the simulator "
            f"fed it (got {jax.tree.structure(step, is_leaf=lambda x: isinstance(x, _stages.AdamStep))}); "
            "wrappers that restructure the gradients, such as `optax.flatten`, are not supported."
        )
    params = jnp.asarray(optax.apply_updates(params, updates))
    updates = jnp.asarray(updates)
    mu_stored, nu_stored = _stored_moments(state, step)
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
        mu_stored=mu_stored,
        nu_stored=nu_stored,
    )
    return params, state, updates, row


def _open_loop(
    tx: optax.GradientTransformation, unroll: int, storage: _Storage | None, grads: jax.Array, params: jax.Array
) -> Trace:
    def body(carry, grad):
        params, state = carry
        params, state, _, row = _one_step(tx, grad, state, params)
        return (params, state), row

    _, trace = jax.lax.scan(body, (params, _initial_state(tx, params, storage)), grads, unroll=unroll)
    return trace


def _closed_loop(
    tx: optax.GradientTransformation,
    grad_fn: Callable[[jax.Array], jax.Array],
    steps: int,
    unroll: int,
    storage: _Storage | None,
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

    _, trace = jax.lax.scan(body, (params, _initial_state(tx, params, storage)), None, length=steps, unroll=unroll)
    return trace


_open_loop_jit = jax.jit(_open_loop, static_argnums=(0, 1, 2))
_closed_loop_jit = jax.jit(_closed_loop, static_argnums=(0, 1, 2, 3, 4))


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
    min_quantized_size: int | None = None,
) -> Trace:
    r"""Runs an optimizer on a stream of gradients and returns its internals at every step.

    **Open loop** (``grads`` given): step :math:`t` feeds ``grads[t - 1]`` to
    ``tx``, whatever the parameters are: what one weight sees when its
    gradients are recorded from a run. The parameters start at ``params`` (zeros by default) and
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

    **Stored moments.** Each step also records what the optimizer's state
    holds after it (``mu_stored``, ``nu_stored``, and their errors
    ``trace.mu_error = mu_stored - mu``): with ``state_bits=8`` or ``4`` the
    requantized and dequantized moments, with a narrower ``mu_dtype`` /
    ``nu_dtype`` the rounded ones. The optimizer quantizes only arrays of at
    least 4,096 elements, so one weight keeps float32 moments (its stored
    moments equal the computed ones). ``min_quantized_size=1`` makes the
    simulation store any array's moments as it stores a large array's, which
    shows quantization on a few weights without simulating thousands. Each
    block's scale is its largest magnitude, so a weight alone in its block is
    its block's scale and is stored exactly, except a negative first moment,
    which the signed codebooks (they hold no -1) store at 0.993 (8 bits) or
    0.8875 (4 bits) of its size; the error a weight sees depends on the other
    weights of its block, which the simulation must therefore include
    (``grads`` of shape ``[T, block_size]``, the weight of interest in column
    0, is one block).

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
      min_quantized_size: for an optimizer built with ``state_bits``, the
        least number of elements an array needs for quantized moments in this
        simulation; ``None`` keeps the optimizer's own rule (4,096), ``1``
        quantizes any array. The steps run the optimizer's own quantized
        path; only the size rule changes.

    Returns:
      A :class:`Trace` whose fields have shape ``[T, *shape]``, with the
      optimizer's :class:`Settings` in ``trace.settings``.

    Raises:
      ValueError: both or neither of ``grads`` and ``grad_fn``; closed loop
        without ``params`` or a positive ``steps``; ``unroll < 1``; ``tx``
        contains no adamjax core, or more than one.
      TypeError: ``tx`` is not a gradient transformation; ``grads``,
        ``params`` or what ``grad_fn`` returns is not an array of real numbers
        (complex, boolean, strings, a pytree); ``dtype`` is not a floating
        dtype; ``unroll`` is not an integer.
      ValueError: ``min_quantized_size`` is not a positive integer, or is
        given for an optimizer without ``state_bits``.

    Examples:
      What does Adam make of a gradient that alternates between 1 and 0? At step 1 bias correction makes the step 1 (up to
      float32 rounding).

      >>> import jax, jax.numpy as jnp, adamjax
      >>> trace = adamjax.simulate(adamjax.adam(1e-3), adamjax.signals.alternating(60))
      >>> trace.direction.shape, round(float(trace.direction[0]), 4)
      ((60,), 1.0)

      Closed loop on the quadratic :math:`(w - 1)^2`:

      >>> trace = adamjax.simulate(adamjax.adam(0.01), grad_fn=lambda w: 2 * w - 2,
      ...                          params=jnp.zeros([]), steps=800)
      >>> round(float(trace.params[-1]), 4)
      1.0

      A grid of ``b2`` values in one compiled call:

      >>> grads = adamjax.signals.sine(300)
      >>> run = lambda b2: adamjax.simulate(adamjax.adam(1e-3, b2=b2), grads).direction
      >>> jax.jit(jax.vmap(run))(jnp.array([0.9, 0.99, 0.999], jnp.float32)).shape
      (3, 300)

      What 8-bit storage keeps of the moments of one block of 256 weights:

      >>> block = jax.random.normal(jax.random.key(0), (50, 256), jnp.float32)
      >>> trace = adamjax.simulate(adamjax.adam(1e-3, state_bits=8), block, min_quantized_size=1)
      >>> trace.settings.describe(("state_bits",))
      '8-bit moments, blocks of 256'
      >>> bool(jnp.all(jnp.abs(trace.mu_error) <= 0.04 * jnp.max(jnp.abs(trace.mu), axis=1, keepdims=True)))
      True

    References:
      Kingma & Ba, "Adam: A Method for Stochastic Optimization", 2015.
    """
    if not (callable(getattr(tx, "init", None)) and callable(getattr(tx, "update", None))):
        raise TypeError(
            f"`simulate(tx, ...)`: `tx` must be an optax.GradientTransformation such as `adamjax.adam(1e-3)`; "
            f"got {type(tx).__name__}."
        )
    if isinstance(unroll, bool) or not isinstance(unroll, int | np.integer):
        raise TypeError(f"`simulate(unroll=...)` must be a positive integer; got {type(unroll).__name__} {unroll!r}.")
    if unroll < 1:
        raise ValueError(f"`simulate(unroll=...)` must be a positive integer; got {unroll!r}.")
    unroll = operator.index(unroll)
    if min_quantized_size is not None and (
        isinstance(min_quantized_size, bool)
        or not isinstance(min_quantized_size, int | np.integer)
        or min_quantized_size < 1
    ):
        raise ValueError(
            f"`simulate(min_quantized_size=...)` must be a positive integer or None; got {min_quantized_size!r}."
        )
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
        settings, storage = _settings_and_storage(tx, start, min_quantized_size)
        if _hashable(tx):
            trace = _traced(_open_loop_jit, tx, unroll, storage, grads, start)
        else:
            trace = _traced(jax.jit(functools.partial(_open_loop, tx, unroll, storage)), grads, start)
        return trace._replace(settings=settings)

    if not callable(grad_fn):
        raise TypeError(f"`simulate(grad_fn=...)` must be callable (params -> gradient); got {grad_fn!r}.")
    if params is None:
        raise ValueError("`simulate(grad_fn=..., params=...)`: closed loop needs the initial parameters.")
    if isinstance(steps, bool) or not isinstance(steps, int | np.integer) or steps < 1:
        raise ValueError(f"`simulate(grad_fn=..., steps=...)` must be a positive integer; got {steps!r}.")
    sim_dtype = _simulation_dtype(params, dtype)
    start = jnp.asarray(_real_input("params", params)).astype(sim_dtype)
    steps = int(steps)
    settings, storage = _settings_and_storage(tx, start, min_quantized_size)
    if _hashable(tx, grad_fn):
        trace = _traced(_closed_loop_jit, tx, grad_fn, steps, unroll, storage, start)
    else:
        trace = _traced(jax.jit(functools.partial(_closed_loop, tx, grad_fn, steps, unroll, storage)), start)
    return trace._replace(settings=settings)
