"""The one implementation of the Adam maths.

Everything in adamjax that moves a parameter -- the optax-style transformations,
the ``init/update/get_params`` triples, the simulator -- calls
:func:`adam_step` on each array. A variant (AMSGrad, Adamax, NAdam, the centered
"belief" moment, the p-th power moment, bias correction off) is a switch in
:class:`AdamConfig`, never a second copy of the update rule.
"""

from __future__ import annotations

import contextlib
import contextvars
import math
from collections.abc import Iterator
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from adamjax import _checks


class ScaleByAdamState(NamedTuple):
    """State of :func:`scale_by_adam`, with optax's field names.

    Attributes:
      count: int32 scalar, the number of steps taken; saturates at the int32
        maximum instead of wrapping.
      mu: first moment, an EMA of the gradients, one array per parameter.
      nu: second moment, an EMA of ``|g|^p`` (``p = power``, 2 for Adam), of
        ``(g - mu)^2`` when centered, or the decayed running maximum of ``|g|``
        when ``power`` is infinite (Adamax).
      nu_max: the running maximum of ``nu`` (AMSGrad), or ``None``.
    """

    count: jax.Array
    mu: optax.Updates
    nu: optax.Updates
    nu_max: optax.Updates = None


class AdamConfig(NamedTuple):
    """The hyperparameters and switches of one Adam variant (already validated).

    Numeric fields are Python numbers or JAX scalars (tracers included), so a
    config can be built inside ``jit`` or ``vmap``. See :func:`scale_by_adam`
    for what each field means.
    """

    b1: Any = 0.9
    b2: Any = 0.999
    eps: Any = 1e-8
    eps_root: Any = 0.0
    power: Any = 2.0
    centered: bool = False
    amsgrad: bool = False
    nesterov: bool = False
    bias_correction: bool = True
    mu_dtype: Any = None
    nu_dtype: Any = None


def make_config(
    func: str,
    b1: Any,
    b2: Any,
    eps: Any,
    eps_root: Any,
    *,
    power: Any = 2.0,
    centered: bool = False,
    amsgrad: bool = False,
    nesterov: bool = False,
    bias_correction: bool = True,
    mu_dtype: Any = None,
    nu_dtype: Any = None,
) -> AdamConfig:
    """Validates hyperparameters for the public call ``func`` and builds a config.

    ``power=None`` means 2 (Adam).
    """
    if power is None:
        power = 2.0
    _checks.check_decay(func, "b1", b1)
    _checks.check_decay(func, "b2", b2)
    _checks.check_nonnegative(func, "eps", eps)
    _checks.check_nonnegative(func, "eps_root", eps_root)
    _checks.check_real(func, "power", power, low=0.0, low_closed=False, allow_inf=True)
    for name, flag in (
        ("centered", centered),
        ("amsgrad", amsgrad),
        ("nesterov", nesterov),
        ("bias_correction", bias_correction),
    ):
        _checks.check_flag(func, name, flag)
    return AdamConfig(
        b1=b1,
        b2=b2,
        eps=eps,
        eps_root=eps_root,
        power=power,
        centered=centered,
        amsgrad=amsgrad,
        nesterov=nesterov,
        bias_correction=bias_correction,
        mu_dtype=_checks.canonical_float_dtype(func, "mu_dtype", mu_dtype),
        nu_dtype=_checks.canonical_float_dtype(func, "nu_dtype", nu_dtype),
    )


class AdamStep(NamedTuple):
    """Everything one Adam step computes for one array.

    The transformation keeps ``mu``, ``nu``, ``nu_max`` and ``update``; the
    simulator records the rest. All arrays are in the compute dtype (float32 or
    wider); under ``jit`` the unused ones cost nothing.
    """

    mu: jax.Array
    nu: jax.Array
    nu_max: jax.Array | None
    mu_hat: jax.Array
    nu_hat: jax.Array
    denom: jax.Array
    update: jax.Array


def compute_dtype(*dtypes: Any) -> jnp.dtype:
    """float32 or wider: the dtype Adam's arithmetic runs in for these inputs.

    float16 and bfloat16 inputs are promoted so that ``eps`` (1e-8 underflows
    in float16) and the bias corrections ``1 - b**t`` stay representable.
    """
    widest = max((jnp.dtype(d) for d in dtypes), key=lambda d: d.itemsize)
    return widest if widest.itemsize > 4 else jnp.dtype(jnp.float32)


def _static_power(power: Any) -> float | None:
    """``power`` as a Python float when it is known at trace time, else None."""
    if _checks.is_traced(power):
        return None
    return float(power)


def bias_correction(decay: Any, count: jax.Array, dtype: jnp.dtype) -> jax.Array:
    """``1 - decay**count`` in ``dtype`` (float32 or wider, never the state's bf16).

    For a Python decay and a float32 ``dtype`` it is computed as
    ``-expm1(count * log1p(decay - 1))`` with ``decay - 1`` taken in double
    precision: ``1 - float32(0.999)**t`` is off by about 1e-5 because 0.999
    rounds, and a decay such as ``1 - 1e-9`` rounds to 1.0, which would make it
    0. In float64 (and for array decays) it is the plain formula, bit for bit
    what PyTorch, NumPy and the seeds compute.
    """
    if isinstance(decay, (int, float)) and jnp.dtype(dtype).itemsize < 8:
        return -jnp.expm1(count.astype(dtype) * jnp.log1p(jnp.asarray(decay - 1, dtype)))
    return 1 - jnp.asarray(decay, dtype) ** count.astype(dtype)


def _hyper(value: Any, dtype: jnp.dtype) -> Any:
    """A hyperparameter ready to meet arrays of ``dtype``.

    Python numbers stay Python numbers (weakly typed: ``1 - 0.9`` is computed in
    double precision and rounded once, as optax and PyTorch do); JAX and NumPy
    scalars, which ``inject_hyperparams`` stores in the parameters' dtype, are
    cast to the compute dtype so they never demote or widen the arithmetic.
    """
    if isinstance(value, (int, float)):
        return value
    return jnp.asarray(value, dtype)


def scale_leaf(factor: Any, x: jax.Array) -> jax.Array:
    """``factor * x`` computed in float32 or wider and rounded once to ``x``'s dtype.

    A float32 factor (a traced learning rate, a schedule's value) neither
    promotes a bfloat16 array nor is rounded to bfloat16 before multiplying.
    """
    x = jnp.asarray(x)
    if isinstance(factor, (int, float)):
        return factor * x
    dtype = compute_dtype(x.dtype, jnp.result_type(factor))
    return (jnp.asarray(factor, dtype) * x.astype(dtype)).astype(x.dtype)


def adam_step(
    grad: jax.Array,
    mu: jax.Array,
    nu: jax.Array,
    nu_max: jax.Array | None,
    count: jax.Array,
    config: AdamConfig,
    *,
    bias_corrections: tuple[jax.Array, jax.Array] | None = None,
    complements: tuple[jax.Array, jax.Array] | None = None,
) -> AdamStep:
    r"""One Adam step for one array.

    With :math:`t` = ``count`` (the step being taken, starting at 1), gradient
    :math:`g`, :math:`p` = ``power``:

    .. math::

      m_t &= \beta_1 m_{t-1} + (1 - \beta_1) g \\
      v_t &= \beta_2 v_{t-1} + (1 - \beta_2) |x|^p,
          \quad x = g \text{ (or } g - m_t \text{ when centered)} \\
      \hat m_t &= m_t / (1 - \beta_1^t), \qquad \hat v_t = v_t / (1 - \beta_2^t) \\
      u_t &= \hat m_t / \big((\hat v_t + \epsilon_{root})^{1/p} + \epsilon\big)

    Switches: ``amsgrad`` replaces :math:`v_t` by :math:`\max_{s \le t} v_s`
    before bias correction (PyTorch's convention); ``centered`` adds
    :math:`\epsilon_{root}` to the stored :math:`v_t` instead of inside the
    root (AdaBelief, as optax); ``nesterov`` uses
    :math:`\hat m_t = \beta_1 m_t/(1-\beta_1^{t+1}) + (1-\beta_1) g/(1-\beta_1^t)`
    (optax's NAdam); ``power=inf`` keeps :math:`v_t = \max(\beta_2 v_{t-1},
    |x| + \epsilon_{root})` with no bias correction and :math:`u_t = \hat m_t /
    (v_t + \epsilon)` (Adamax); ``bias_correction=False`` drops both
    corrections. Where the denominator is exactly 0 (``eps = 0`` and a zero
    gradient, or a second moment that underflowed) the update is
    :math:`\operatorname{sign}(\hat m_t)`, never NaN or infinity.

    Args:
      grad: the gradient (any float dtype).
      mu, nu, nu_max: this array's state before the step (``nu_max`` is None
        unless ``config.amsgrad``).
      count: int32 scalar, the step number ``t >= 1``.
      config: the variant and its hyperparameters.
      bias_corrections: ``(1 - b1**t, 1 - b2**t)`` when the caller has them
        already (the native kernel's differentiable twin); only for the plain
        variant (no ``nesterov``, finite ``power``).
      complements: ``(1 - b1, 1 - b2)`` rounded from a wider precision, when
        ``b1`` and ``b2`` are float32 arrays (``1 - 0.999`` in float32 is off by
        1e-5 relative).

    Returns:
      An :class:`AdamStep` in the compute dtype (:func:`compute_dtype`).
    """
    dtype = compute_dtype(grad.dtype, mu.dtype, nu.dtype)
    b1 = _hyper(config.b1, dtype)
    b2 = _hyper(config.b2, dtype)
    eps = _hyper(config.eps, dtype)
    eps_root = _hyper(config.eps_root, dtype)
    power = _static_power(config.power)

    g = grad.astype(dtype)
    one_minus_b1, one_minus_b2 = (1 - b1, 1 - b2) if complements is None else (c.astype(dtype) for c in complements)
    mu = one_minus_b1 * g + b1 * mu.astype(dtype)
    x = g - mu if config.centered else g
    if power == math.inf:
        nu = jnp.maximum(jnp.abs(x) + eps_root, b2 * nu.astype(dtype))
    elif power == 2.0:
        nu = one_minus_b2 * (x * x) + b2 * nu.astype(dtype)
    else:
        nu = one_minus_b2 * jnp.abs(x) ** _hyper(config.power, dtype) + b2 * nu.astype(dtype)
    if config.centered:
        nu = nu + eps_root
    if config.amsgrad:
        nu_max = jnp.maximum(nu_max.astype(dtype), nu)
    nu_used = nu_max if config.amsgrad else nu

    if bias_corrections is not None:
        mu_hat = mu / bias_corrections[0].astype(dtype)
        nu_hat = nu_used / bias_corrections[1].astype(dtype)
    elif config.bias_correction:
        bc1 = bias_correction(config.b1, count, dtype)
        if config.nesterov:
            bc1_next = bias_correction(config.b1, optax.safe_increment(count), dtype)
            mu_hat = b1 * mu / bc1_next + one_minus_b1 * g / bc1
        else:
            mu_hat = mu / bc1
        nu_hat = nu_used if power == math.inf else nu_used / bias_correction(config.b2, count, dtype)
    else:
        mu_hat = b1 * mu + one_minus_b1 * g if config.nesterov else mu
        nu_hat = nu_used

    if power == math.inf:
        root = nu_hat
    else:
        inside = nu_hat if config.centered else nu_hat + eps_root
        if power == 2.0:
            root = jnp.sqrt(inside)
        else:
            root = inside ** (1 / _hyper(config.power, dtype))
    denom = root + eps
    # A zero denominator (eps = 0 with a zero gradient, or a second moment that
    # underflowed) gives sign(mu_hat) -- the limit of mu_hat / sqrt(nu_hat) for
    # a gradient too small to square -- instead of 0/0 = NaN or x/0 = inf.
    zero = denom == 0
    update = jnp.where(zero, jnp.sign(mu_hat), mu_hat) / jnp.where(zero, 1, denom)
    return AdamStep(mu, nu, nu_max, mu_hat, nu_hat, denom, update)


def init_state(params: optax.Params, config: AdamConfig) -> ScaleByAdamState:
    """Zero moments shaped like ``params`` (``None`` leaves stay ``None``)."""
    _checks.check_param_dtypes("Adam", params)
    mu = jax.tree.map(lambda p: jnp.zeros_like(p, dtype=config.mu_dtype), params)
    nu = jax.tree.map(lambda p: jnp.zeros_like(p, dtype=config.nu_dtype), params)
    nu_max = nu if config.amsgrad else None
    return ScaleByAdamState(count=jnp.zeros([], jnp.int32), mu=mu, nu=nu, nu_max=nu_max)


def check_same_structure(func: str, updates: Any, reference: Any) -> list[jax.Array]:
    """Flattens ``updates`` after checking that it matches the state's tree.

    Raises:
      TypeError: the tree structures differ (both are shown), or a gradient is
        not a real floating-point array (integer, boolean, complex).
      ValueError: a leaf's shape differs from the state's.
    """
    treedef = jax.tree.structure(updates)
    expected = jax.tree.structure(reference)
    if treedef != expected:
        raise TypeError(
            f"{func}: the gradient tree does not match the tree the optimizer state was "
            f"initialised with.\n  gradients: {treedef}\n  state:     {expected}"
        )
    leaves = jax.tree.leaves(updates)
    for (path, ref), leaf in zip(jax.tree_util.tree_leaves_with_path(reference), leaves, strict=True):
        _checks.check_gradient_dtype(func, path, leaf)
        if jnp.shape(leaf) != jnp.shape(ref):
            raise ValueError(
                f"{func}: the gradient at {jax.tree_util.keystr(path) or 'the root'} has shape "
                f"{jnp.shape(leaf)} but the optimizer state there has shape {jnp.shape(ref)}."
            )
    return leaves


_RECORDER: contextvars.ContextVar[list | None] = contextvars.ContextVar("adamjax_step_recorder", default=None)


@contextlib.contextmanager
def record_steps() -> Iterator[list]:
    """Collects the :class:`AdamStep` internals of every core update traced inside.

    While the context is open, each call of an adamjax core update (alone or
    nested in ``optax.chain``, ``masked``, ...) appends a pytree of
    :class:`AdamStep` (shaped like the gradients) to the yielded list, in call
    order. The arrays are whatever the caller is tracing (for instance a
    ``lax.scan`` body), so the simulator can return them as outputs. A call that
    is not re-traced (a cached ``jit``) records nothing.
    """
    recorded: list = []
    token = _RECORDER.set(recorded)
    try:
        yield recorded
    finally:
        _RECORDER.reset(token)


def update_state(
    updates: optax.Updates, state: ScaleByAdamState, config: AdamConfig, func: str = "scale_by_adam"
) -> tuple[optax.Updates, ScaleByAdamState]:
    """Applies :func:`adam_step` to every leaf; updates keep the gradients' dtype."""
    grads = check_same_structure(func, updates, state.mu)
    treedef = jax.tree.structure(state.mu)
    mus = treedef.flatten_up_to(state.mu)
    nus = treedef.flatten_up_to(state.nu)
    nu_maxes = treedef.flatten_up_to(state.nu_max) if config.amsgrad else [None] * len(mus)
    count = optax.safe_increment(state.count)

    new_updates, new_mu, new_nu, new_nu_max, steps = [], [], [], [], []
    for grad, mu, nu, nu_max in zip(grads, mus, nus, nu_maxes, strict=True):
        grad = jnp.asarray(grad)
        step = adam_step(grad, mu, nu, nu_max, count, config)
        steps.append(step)
        new_updates.append(step.update.astype(grad.dtype))
        new_mu.append(step.mu.astype(mu.dtype))
        new_nu.append(step.nu.astype(nu.dtype))
        if config.amsgrad:
            new_nu_max.append(step.nu_max.astype(nu_max.dtype))

    unflatten = treedef.unflatten
    recorder = _RECORDER.get()
    if recorder is not None:
        recorder.append(unflatten(steps))
    return unflatten(new_updates), ScaleByAdamState(
        count=count,
        mu=unflatten(new_mu),
        nu=unflatten(new_nu),
        nu_max=unflatten(new_nu_max) if config.amsgrad else None,
    )


def transformation(config: AdamConfig, func: str = "scale_by_adam") -> optax.GradientTransformation:
    """The optax transformation that runs ``config``'s variant of Adam."""

    def init_fn(params: optax.Params) -> ScaleByAdamState:
        return init_state(params, config)

    def update_fn(
        updates: optax.Updates, state: ScaleByAdamState, params: optax.Params | None = None
    ) -> tuple[optax.Updates, ScaleByAdamState]:
        del params
        return update_state(updates, state, config, func)

    return optax.GradientTransformation(init_fn, update_fn)
