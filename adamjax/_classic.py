r"""The optimizers of ``jax.example_libraries.optimizers``, as :func:`optimizer` triples.

Same signatures, defaults, state layouts (except :func:`sm3`, and the float32
moments of :func:`adam` and :func:`adamax` for float16 parameters) and numerics
as ``jax.example_libraries``; hyperparameters are checked when the optimizer is
built, parameters at ``init`` and gradients and the step index at ``update``. :func:`adam` and :func:`adamax` run adamjax's one Adam
core (:func:`adamjax.adam_step`). The step index ``i`` starts at 0, so Adam's
bias corrections use :math:`t = i + 1`.

The step size multiplies the direction through :func:`adamjax._numerics.scale_leaf`:
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

from adamjax import _checks, _core, _fused, _numerics, _quantize, _rounding, _stages
from adamjax._schedules import Schedule, as_schedule
from adamjax._triple import Optimizer, OptimizerResult, TreeUpdate, optimizer
from adamjax._types import ArrayLike

_INT32_MAX = 2**31 - 1

# A step size: a number, or a schedule ``i -> step size`` (as in ``jax.example_libraries``).
StepSize = float | ArrayLike | Schedule


def _step_size(func: str, step_size: Any) -> Schedule:
    return _checks.checked_schedule(func, "step_size", as_schedule(func, "step_size", step_size, nonnegative=True))


class _GradientMismatch(Exception):
    """A gradient that does not fit its parameter, seen by a per-array update while tracing."""


def _explain_mismatch(func: str, grads: Any, params: Any) -> None:
    """Raises the error for the first gradient leaf that does not fit its parameter, naming the leaf."""
    for (path, grad), param in zip(jax.tree_util.tree_leaves_with_path(grads), jax.tree.leaves(params), strict=True):
        _checks.check_gradient_dtype(func, path, grad, allow_complex=jnp.iscomplexobj(param))
        if jnp.shape(grad) != jnp.shape(param):
            raise ValueError(
                f"{func}: the gradient at {jax.tree_util.keystr(path) or 'the root'} has shape {jnp.shape(grad)} "
                f"but the parameter there has shape {jnp.shape(param)}."
            )


class _CheckedUpdate(TreeUpdate):
    """A built-in per-array update behind the gradient checks (a tree update stays one)."""

    def __init__(self, update: Any, check: Any):
        self.update, self.check = update, check

    def tree(self, i: Any, grads: list, states: list) -> list:
        for g, state in zip(grads, states, strict=True):
            self.check(g, state)
        if isinstance(self.update, TreeUpdate):
            return self.update.tree(i, grads, states)
        return [self.update(i, g, state) for g, state in zip(grads, states, strict=True)]


def _builtin(maker=None, *, allow_complex: bool = False):
    """``@optimizer`` with the input checks every built-in triple shares.

    ``@_builtin(allow_complex=True)`` (the Adam family) also takes complex
    parameters, with gradients of the same kind.

    ``init`` refuses parameters that are not real floating-point arrays;
    ``update`` refuses a step index that is not an integer ``>= 0`` and
    gradients whose shape or dtype does not fit their parameter, naming the
    leaf. The gradients are checked while ``update`` is traced (by its own
    ``jit`` or the caller's), so the check costs nothing per step.
    """
    if maker is None:
        return functools.partial(_builtin, allow_complex=allow_complex)
    func = f"`optimizers.{maker.__name__}`"
    kinds = "floating-point (real or complex)" if allow_complex else "real floating-point"

    @functools.wraps(maker)
    def per_array_maker(*args, **kwargs):
        init, update, get_params = maker(*args, **kwargs)

        def check(g, state):
            x = get_params(state)
            dtype = jnp.result_type(g)
            complex_fits = allow_complex and jnp.iscomplexobj(x) and jnp.issubdtype(dtype, jnp.complexfloating)
            if not (jnp.issubdtype(dtype, jnp.floating) or complex_fits) or jnp.shape(g) != jnp.shape(x):
                raise _GradientMismatch(
                    f"{func} update: a gradient of shape {jnp.shape(g)} and dtype {dtype} does not fit its "
                    f"parameter of shape {jnp.shape(x)}; gradients must be {kinds} arrays shaped "
                    "like the parameters."
                )

        return init, _CheckedUpdate(update, check), get_params

    tree_maker = optimizer(per_array_maker)

    @functools.wraps(tree_maker)
    def checked_maker(*args, **kwargs) -> Optimizer:
        init_fn, update_fn, params_fn = tree_maker(*args, **kwargs)

        @functools.wraps(init_fn)
        def init(params):
            _checks.check_param_dtypes(func, params, allow_complex=allow_complex)
            return init_fn(params)

        @functools.wraps(update_fn)
        def update(i, grads, state):
            _checks.check_step_index(f"{func} update", i)
            try:
                return update_fn(i, grads, state)
            except _GradientMismatch as mismatch:
                _explain_mismatch(f"{func} update", grads, params_fn(state))
                raise TypeError(str(mismatch)) from None

        return Optimizer(init, update, params_fn)

    return checked_maker


def _params(state: tuple) -> Any:
    return state[0]


@_builtin
def sgd(step_size: StepSize) -> OptimizerResult:
    r"""Stochastic gradient descent: :math:`x \leftarrow x - \eta_i g`.

    Args:
      step_size: :math:`\eta \ge 0`, a number or a schedule ``i -> step size``.

    Returns:
      An :class:`Optimizer` triple; the per-array state is ``x``.
    """
    schedule = _step_size("sgd", step_size)

    def update(i, g, x):
        return x - _numerics.scale_leaf(schedule(i), g)

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
        return x - _numerics.scale_leaf(schedule(i), direction), velocity

    return init, update, _params


@_builtin
def momentum(step_size: StepSize, mass: float) -> OptimizerResult:
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


@_builtin
def nesterov(step_size: StepSize, mass: float) -> OptimizerResult:
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


@_builtin
def adagrad(step_size: StepSize, momentum: float = 0.9) -> OptimizerResult:
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
        return x - _numerics.scale_leaf(schedule(i), m), g_sq, m

    return init, update, _params


def _check_rmsprop(func: str, gamma: Any, eps: Any) -> None:
    _checks.check_decay(func, "gamma", gamma)
    _checks.check_nonnegative(func, "eps", eps)


@_builtin
def rmsprop(step_size: StepSize, gamma: float = 0.9, eps: float = 1e-8) -> OptimizerResult:
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
        return x - _numerics.scale_leaf(schedule(i), g / jnp.sqrt(avg_sq_grad + eps)), avg_sq_grad

    return init, update, _params


@_builtin
def rmsprop_momentum(
    step_size: StepSize, gamma: float = 0.9, eps: float = 1e-8, momentum: float = 0.9
) -> OptimizerResult:
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
        mom = momentum * mom + _numerics.scale_leaf(schedule(i), g / jnp.sqrt(avg_sq_grad + eps))
        return x - mom, avg_sq_grad, mom

    return init, update, _params


@_builtin
def sm3(step_size: StepSize, momentum: float = 0.9) -> OptimizerResult:
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
        x = jnp.atleast_1d(x) - _numerics.scale_leaf(schedule(i), m)
        # `initial=0` (exact: the accumulator is >= 0) lets a zero-size array reduce.
        row_maxes = [accumulator.max(axis=tuple(a for a in axes if a != k), initial=0.0) for k in axes]
        return x.reshape(shape), m.reshape(shape), row_maxes

    return init, update, _params


def _adam_family(
    func: str, step_size: Any, config: _core.AdamConfig, rounding: str = "nearest", seed: int | None = None
) -> OptimizerResult:
    """Per-array ``(x, m, v)`` triple stepping by :func:`adamjax._stages.adam_step`.

    With ``rounding="kahan"`` a 16-bit parameter's state is ``(x, m, v, c)``,
    ``c`` its Kahan compensation buffer.
    """
    schedule = _step_size(func, step_size)
    _rounding.check_rounding(f"optimizers.{func}", rounding, seed)

    def init(x0):
        # float16 and bfloat16 moments stall or leave their range (adamjax._core.moment_dtype),
        # so those parameters get float32 moments; other dtypes keep jax.example_libraries' layout.
        x0 = jnp.asarray(x0)
        bits = config.state_bits
        if bits is not None and _quantize.should_quantize(x0.shape):
            if jnp.iscomplexobj(x0):
                raise TypeError(
                    f"`{func}(state_bits={bits})`: quantized moments are real; complex parameters need None."
                )
            quantized = functools.partial(_quantize.zeros, x0.shape, bits=bits, block_size=config.block_size)
            moments = (quantized(signed=True), quantized(signed=False))
        else:
            dtype = _core.moment_dtype(x0)
            moments = (jnp.zeros_like(x0, dtype=dtype), jnp.zeros_like(x0, dtype=dtype))
        if rounding == "kahan" and _rounding.is_low_precision(x0):
            return x0, *moments, jnp.zeros_like(x0)
        return x0, *moments

    return init, _AdamFamilyUpdate(schedule, config, rounding, seed or 0), _params


class _AdamFamilyUpdate(TreeUpdate):
    """The Adam family's per-array update, stepping a whole tree at once.

    The step count, bias corrections and step size are computed once per step,
    not once per array; on the CPU, plain Adam steps every array in one native
    kernel call (:func:`adamjax._fused.step_leaves`), which writes the
    parameters and moments in place when the caller's ``jit`` donates them.
    A 16-bit parameter's new value is rounded once from float32: to nearest,
    stochastically (from ``seed``, the step index and the array's position in
    the tree) or with its Kahan buffer.
    """

    def __init__(self, schedule: Schedule, config: _core.AdamConfig, rounding: str = "nearest", seed: int = 0):
        self.schedule, self.config, self.rounding, self.seed = schedule, config, rounding, seed

    def tree(self, i: Any, grads: list, states: list) -> list:
        config = self.config
        # Saturates at the int32 maximum, as the transformations' step count does.
        count = jnp.clip(jnp.asarray(i), 0, _INT32_MAX - 1).astype(jnp.int32) + 1
        lr = self.schedule(i)
        xs = [jnp.asarray(state[0]) for state in states]
        grads = [jnp.asarray(g) for g in grads]
        ms, vs = [state[1] for state in states], [state[2] for state in states]
        # float32 parameters only: the triple rounds a 16-bit parameter once, from
        # float32, where the kernel would round the update and then the sum.
        if (
            all(x.dtype == jnp.float32 for x in xs)
            and _fused.config_reason(config) is None
            and _fused.leaves_reason(map(str, range(len(xs))), grads, xs, ms, vs) is None
        ):
            new_x, new_m, new_v = _fused.step_leaves(config, count, lr, xs, grads, ms, vs)
            return list(zip(new_x, new_m, new_v, strict=True))
        memo: dict = {}  # the bias corrections, once per dtype for all arrays
        draws: list = [None] * len(states)
        if self.rounding == "stochastic":
            # One draw for the step (seed, step index), each array taking its share in tree order.
            step_key = jax.random.fold_in(jax.random.key(self.seed), jnp.asarray(i, jnp.uint32))
            shapes = [tuple(jnp.shape(x)) if _rounding.is_low_precision(x) else None for x in xs]
            if any(shape is not None for shape in shapes):
                draws = _rounding.uniform_draws(step_key, shapes)
        new_states = []
        for index, (state, g) in enumerate(zip(states, grads, strict=True)):
            x, m, v = xs[index], ms[index], vs[index]
            step = _stages.adam_step(g, _core.read_moment(m), _core.read_moment(v), None, count, config, memo=memo)
            moments = (_core.write_moment(step.mu, m), _core.write_moment(step.nu, v))
            # In the core's float32-or-wider dtype, rounded once to the parameter's.
            delta = -_numerics.scale_leaf(lr, step.update)
            if self.rounding == "kahan" and len(state) == 4:
                x_new, compensation = _rounding.kahan_add(x, delta, state[3])
                new_states.append((x_new, *moments, compensation))
                continue
            x_new = x.astype(step.update.dtype) + delta
            if draws[index] is not None:
                x_new = _rounding.stochastic_round(x_new, x.dtype, draw=draws[index])
            new_states.append((x_new.astype(x.dtype), *moments))
        return new_states


@_builtin(allow_complex=True)
def adam(
    step_size: StepSize,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    *,
    state_bits: int | None = None,
    block_size: int | None = None,
    rounding: str = "nearest",
    seed: int | None = None,
) -> OptimizerResult:
    r"""Adam, with the step index ``i`` starting at 0.

    .. math::

      m &\leftarrow \beta_1 m + (1 - \beta_1) g, \qquad
      v \leftarrow \beta_2 v + (1 - \beta_2) g^2 \\
      x &\leftarrow x - \eta_i \,\frac{m / (1 - \beta_1^{i+1})}{\sqrt{v / (1 - \beta_2^{i+1})} + \epsilon}

    ``eps`` is added outside the root, as in Kingma & Ba's Algorithm 1,
    ``jax.example_libraries`` and ``optax.adam``. Computed by adamjax's core
    (:func:`adamjax.adam_step`), in float32 or wider; ``m`` and ``v`` of a
    float16 parameter are kept in float32. The step number :math:`i + 1`
    saturates at :math:`2^{31} - 1`.

    A step with a NaN or infinite gradient poisons ``m`` and ``v`` for good. To
    skip such steps (parameters, moments and step count left exactly as they
    were), use the transformation under ``optax.apply_if_finite``:
    ``from_transformation(optax.apply_if_finite(adamjax.adam(step_size),
    max_consecutive_errors=...))``, which takes the same steps as this triple.

    Args:
      step_size: :math:`\eta \ge 0`, a number or a schedule ``i -> step size``.
      b1: :math:`\beta_1 \in [0, 1)`, the decay of the first moment.
      b2: :math:`\beta_2 \in [0, 1)`, the decay of the second moment.
      eps: :math:`\epsilon \ge 0`.
      state_bits: ``None``, 8 or 4 (keyword-only, adamjax only): keep ``m`` and
        ``v`` of arrays with at least 4,096 elements blockwise quantized, as
        :func:`adamjax.scale_by_adam` does.
      block_size: elements per quantization block (default 256 at 8 bits, 128 at 4).
      rounding: ``"nearest"``, ``"stochastic"`` or ``"kahan"`` (keyword-only,
        adamjax only): how a bfloat16 or float16 parameter's new value is
        rounded from float32. Steps below half a unit in the last place are
        lost with ``"nearest"``; ``"stochastic"`` rounds up with probability
        equal to the distance from the lower neighbour (unbiased), and
        ``"kahan"`` keeps the rounding error in a 16-bit buffer that the next
        step adds back. Other dtypes are unaffected.
      seed: a non-negative int (default 0) for ``rounding="stochastic"``: the
        draw depends only on it and the step index (one draw per step, each
        array taking its share in tree order), so runs are reproducible.

    Returns:
      An :class:`Optimizer` triple; the per-array state is ``(x, m, v)``, and
      ``(x, m, v, c)`` for a 16-bit parameter with ``rounding="kahan"``.

    Raises:
      ValueError: a hyperparameter is out of range (the message names it);
        (from ``update``) ``i`` is negative or a gradient's shape differs
        from its parameter's.
      TypeError: ``step_size`` is neither a number nor a callable; (from
        ``init``) a parameter is not a real floating-point array; (from
        ``update``) a gradient is not one.

    Examples:
      >>> import jax.numpy as jnp
      >>> from adamjax import optimizers
      >>> init, update, get_params = optimizers.adam(0.1)
      >>> state = update(0, jnp.array([2.0, -3.0]), init(jnp.zeros(2)))
      >>> [round(float(x), 4) for x in get_params(state)]  # the first step is -step_size * sign(g)
      [-0.1, 0.1]

    References:
      Kingma & Ba, "Adam: A Method for Stochastic Optimization", ICLR 2015;
      Gupta et al., "Deep Learning with Limited Numerical Precision", ICML 2015
      (stochastic rounding); Zamirai et al., "Revisiting BFloat16 Training",
      2020 (Kahan summation for 16-bit weights).
    """
    config = _core.make_config("adam", b1, b2, eps, 0.0, state_bits=state_bits, block_size=block_size)
    return _adam_family("adam", step_size, config, rounding, seed)


@_builtin(allow_complex=True)
def adamax(step_size: StepSize, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8) -> OptimizerResult:
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

    Raises:
      ValueError: ``max_norm`` is negative, NaN or infinite.
    """
    _checks.check_nonnegative("clip_grads", "max_norm", max_norm)
    clipped, _ = optax.clip_by_global_norm(max_norm).update(grad_tree, optax.EmptyState())
    return clipped


def _from_alias(alias: Any, step_size: Any, *args: Any, **kwargs: Any) -> Optimizer:
    """The triple of an adamjax alias: one step of the transformation per ``update``.

    The transformation counts its own steps, so a schedule sees 0, 1, 2, ...,
    the same as ``i`` when ``update`` is called with ``i = 0, 1, 2, ...``.
    """
    from adamjax._triple import from_transformation

    return from_transformation(alias(step_size, *args, **kwargs))


def radam(step_size: Any, b1: Any = 0.9, b2: Any = 0.999, eps: Any = 1e-8, **options: Any) -> Optimizer:
    r"""RAdam as a triple: :func:`adamjax.radam` (``options``: ``eps_root``, ``threshold``, ``eps_placement``, ...).

    .. math:: \theta \leftarrow \theta - \eta_i\, r_t \hat m_t / (\sqrt{\hat v_t} + \epsilon) \quad (\rho_t \ge 5)

    Args:
      step_size: :math:`\eta \ge 0`, a number or a schedule.
      b1: decay of the first moment.
      b2: decay of the second moment.
      eps: added to the denominator.
      **options: further keywords of :func:`adamjax.radam`.

    Returns:
      An :class:`Optimizer` triple whose state is a :class:`TransformationState`.

    Examples:
      >>> import jax.numpy as jnp
      >>> from adamjax import optimizers
      >>> init, update, get_params = optimizers.radam(0.1)
      >>> [round(float(x), 4) for x in get_params(update(0, jnp.array([2.0]), init(jnp.zeros(1))))]
      [-0.2]

    References:
      Liu et al., "On the Variance of the Adaptive Learning Rate and Beyond", 2020.
    """
    from adamjax._radam import radam as alias

    return _from_alias(alias, step_size, b1, b2, eps, **options)


def _triple_of(module: str, name: str, summary: str, reference: str) -> Any:
    def make(step_size: Any, *args: Any, **options: Any) -> Optimizer:
        import importlib

        alias = getattr(importlib.import_module(f"adamjax.{module}"), name)
        return _from_alias(alias, step_size, *args, **options)

    make.__name__ = make.__qualname__ = name
    make.__doc__ = f"""{summary} as a triple: :func:`adamjax.{name}` stepped once per ``update``.

    Args:
      step_size: :math:`\\eta \\ge 0`, a number or a schedule.
      *args: the further positional parameters of :func:`adamjax.{name}`.
      **options: its keywords.

    Returns:
      An :class:`Optimizer` triple whose state is a :class:`TransformationState`.

    References:
      {reference}
    """
    return make


nadam = _triple_of("_nadam", "nadam", "NAdam (optax's form, or PyTorch's with ``momentum_decay``)", "Dozat, 2016.")
adopt = _triple_of("_adopt", "adopt", "ADOPT", "Taniguchi et al., 2024.")
ademamix = _triple_of("_ademamix", "ademamix", "AdEMAMix", "Pagliardini et al., 2024.")
lamb = _triple_of("_lamb", "lamb", "LAMB", "You et al., 2020.")
stable_adamw = _triple_of("_stable_adamw", "stable_adamw", "StableAdamW", "Wortsman et al., 2023.")
adam_mini = _triple_of("_adam_mini", "adam_mini", "Adam-mini", "Zhang et al., 2024.")
