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
import numpy as np
import optax

from adamjax import _checks

ScaleByAdamState = optax.ScaleByAdamState
"""optax's own ``ScaleByAdamState(count, mu, nu)``: the state of Adam, NAdam and Adamax."""

ScaleByAmsgradState = optax.ScaleByAmsgradState
"""optax's own ``ScaleByAmsgradState(count, mu, nu, nu_max)``: the state of AMSGrad."""

ScaleByBeliefState = optax.ScaleByBeliefState
"""optax's own ``ScaleByBeliefState(count, mu, nu)``: the state of AdaBelief (centered moment)."""

CORE_STATE_TYPES = (ScaleByAdamState, ScaleByAmsgradState, ScaleByBeliefState)
"""The classes a core state can have; every adamjax consumer finds the core's state by these types."""


def is_core_state(node: Any) -> bool:
    """Whether ``node`` is the state of the Adam core (one of :data:`CORE_STATE_TYPES`)."""
    return isinstance(node, CORE_STATE_TYPES)


def core_states(state: Any) -> list[Any]:
    """Every core state inside an optimizer state (chains, wrappers, injected states), in tree order."""
    return [node for node in jax.tree.leaves(state, is_leaf=is_core_state) if is_core_state(node)]


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
    bias_correction_mu: bool = True
    bias_correction_nu: bool = True
    mu_dtype: Any = None
    nu_dtype: Any = None
    weight_decay: Any = None  # coupled L2 (PyTorch's Adam ``weight_decay``): None is off

    @property
    def bias_correction(self) -> bool:
        """Whether both moments are bias-corrected (``scale_by_adam(bias_correction=...)``)."""
        return self.bias_correction_mu and self.bias_correction_nu

    @property
    def state_class(self) -> type:
        """optax's state class for this variant (AMSGrad's when the maximum is kept)."""
        if self.amsgrad:
            return ScaleByAmsgradState
        return ScaleByBeliefState if self.centered else ScaleByAdamState


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
    bias_correction_mu: bool | None = None,
    bias_correction_nu: bool | None = None,
    mu_dtype: Any = None,
    nu_dtype: Any = None,
    weight_decay: Any = None,
) -> AdamConfig:
    """Validates hyperparameters for the public call ``func`` and builds a config.

    ``power=None`` means 2 (Adam). ``bias_correction`` switches both
    corrections; ``bias_correction_mu`` / ``bias_correction_nu`` (optax's
    AMSGrad keywords), when given, switch one each. ``weight_decay`` is the
    coupled L2 term (None: off), a number ``>= 0``, a JAX scalar or a schedule.
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
    for name, flag in (("bias_correction_mu", bias_correction_mu), ("bias_correction_nu", bias_correction_nu)):
        if flag is not None:
            _checks.check_flag(func, name, flag)
    if weight_decay is not None:
        _checks.check_schedule_or_nonnegative(func, "weight_decay", weight_decay)
    return AdamConfig(
        b1=b1,
        b2=b2,
        eps=eps,
        eps_root=eps_root,
        power=power,
        centered=centered,
        amsgrad=amsgrad,
        nesterov=nesterov,
        bias_correction_mu=bias_correction if bias_correction_mu is None else bias_correction_mu,
        bias_correction_nu=bias_correction if bias_correction_nu is None else bias_correction_nu,
        mu_dtype=_checks.canonical_float_dtype(func, "mu_dtype", mu_dtype, allow_complex=True),
        nu_dtype=_checks.canonical_float_dtype(func, "nu_dtype", nu_dtype, allow_complex=True),
        weight_decay=_checks.checked_schedule(func, "weight_decay", weight_decay),
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


def real_dtype(dtype: Any) -> jnp.dtype:
    """The real dtype of ``dtype``'s elements (``float32`` for ``complex64``)."""
    return jnp.dtype(jnp.finfo(dtype).dtype) if jnp.issubdtype(dtype, jnp.complexfloating) else jnp.dtype(dtype)


def compute_dtype(*dtypes: Any) -> jnp.dtype:
    """float32 or wider: the dtype Adam's arithmetic runs in for these inputs.

    float16 and bfloat16 inputs are promoted so that ``eps`` (1e-8 underflows
    in float16) and the bias corrections ``1 - b**t`` stay representable. When
    any input is complex the result is the complex dtype of that precision
    (``complex64`` or ``complex128``).
    """
    dtypes = [jnp.dtype(d) for d in dtypes]
    widest = max((real_dtype(d) for d in dtypes), key=lambda d: d.itemsize)
    real = widest if widest.itemsize > 4 else jnp.dtype(jnp.float32)
    if any(jnp.issubdtype(d, jnp.complexfloating) for d in dtypes):
        return jnp.dtype(jnp.complex128 if real.itemsize > 4 else jnp.complex64)
    return real


def _abs_sq(x: jax.Array) -> jax.Array:
    """:math:`x \\bar x`, real: the square of a real array, ``re^2 + im^2`` of a complex one."""
    if jnp.issubdtype(x.dtype, jnp.complexfloating):
        return jnp.real(x) ** 2 + jnp.imag(x) ** 2
    return x * x


def _read_real(x: jax.Array, dtype: jnp.dtype) -> jax.Array:
    """A real moment stored in any dtype (optax keeps ``nu`` complex for complex parameters), as ``dtype``."""
    return (jnp.real(x) if jnp.issubdtype(x.dtype, jnp.complexfloating) else x).astype(dtype)


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
    memo: dict | None = None,
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
    real = real_dtype(dtype)
    b1 = _hyper(config.b1, real)
    b2 = _hyper(config.b2, real)
    eps = _hyper(config.eps, real)
    eps_root = _hyper(config.eps_root, real)
    power = _static_power(config.power)

    g = grad.astype(dtype)
    one_minus_b1, one_minus_b2 = (1 - b1, 1 - b2) if complements is None else (c.astype(real) for c in complements)
    mu = _c(one_minus_b1, dtype) * g + _c(b1, dtype) * mu.astype(dtype)
    x = g - mu if config.centered else g
    nu_prev = _read_real(nu, real)
    if power == math.inf:
        nu = jnp.maximum(jnp.abs(x) + eps_root, b2 * nu_prev)
    elif power == 2.0:
        nu = one_minus_b2 * _abs_sq(x) + b2 * nu_prev
    else:
        nu = one_minus_b2 * jnp.abs(x) ** _hyper(config.power, real) + b2 * nu_prev
    if config.centered:
        nu = nu + eps_root
    if config.amsgrad:
        nu_max = jnp.maximum(_read_real(nu_max, real), nu)
    nu_used = nu_max if config.amsgrad else nu

    if bias_corrections is not None:
        mu_hat = mu / _c(bias_corrections[0].astype(real), dtype)
        nu_hat = nu_used / bias_corrections[1].astype(real)
    else:
        if config.bias_correction_mu:
            bc1 = _memo(memo, ("b1", real), lambda: bias_correction(config.b1, count, real))
            if config.nesterov:
                bc1_next = _memo(
                    memo, ("b1 next", real), lambda: bias_correction(config.b1, optax.safe_increment(count), real)
                )
                mu_hat = _c(b1, dtype) * mu / _c(bc1_next, dtype) + _c(one_minus_b1, dtype) * g / _c(bc1, dtype)
            else:
                mu_hat = mu / _c(bc1, dtype)
        else:
            mu_hat = _c(b1, dtype) * mu + _c(one_minus_b1, dtype) * g if config.nesterov else mu
        if config.bias_correction_nu and power != math.inf:
            nu_hat = nu_used / _memo(memo, ("b2", real), lambda: bias_correction(config.b2, count, real))
        else:
            nu_hat = nu_used

    if power == math.inf:
        root = nu_hat
    else:
        inside = nu_hat if config.centered else nu_hat + eps_root
        if power == 2.0:
            root = jnp.sqrt(inside)
        else:
            root = inside ** (1 / _hyper(config.power, real))
    denom = root + eps
    # A zero denominator (eps = 0 with a zero gradient, or a second moment that
    # underflowed) gives sign(mu_hat) -- the limit of mu_hat / sqrt(nu_hat) for
    # a gradient too small to square -- instead of 0/0 = NaN or x/0 = inf.
    if _positive_in(config.eps, real):
        return AdamStep(mu, nu, nu_max, mu_hat, nu_hat, denom, mu_hat / denom.astype(dtype))
    zero = denom == 0
    update = jnp.where(zero, jnp.sign(mu_hat), mu_hat) / jnp.where(zero, 1, denom).astype(dtype)
    return AdamStep(mu, nu, nu_max, mu_hat, nu_hat, denom, update)


def _memo(memo: dict | None, key: tuple, compute: Any) -> Any:
    """``compute()``, once per key within one update (the bias corrections are the same for every array)."""
    if memo is None:
        return compute()
    if key not in memo:
        memo[key] = compute()
    return memo[key]


def _positive_in(eps: Any, dtype: jnp.dtype) -> bool:
    """Whether ``eps`` is a Python number that stays positive in ``dtype``: then ``root + eps`` is never 0.

    The root is ``>= 0`` (or NaN, which no guard repairs), so the zero-denominator
    guard is needed only for ``eps = 0``, an ``eps`` below ``dtype``'s smallest
    number, or a traced ``eps``. Dropping it where it cannot fire keeps the
    compiled step (and its compile time) small.
    """
    return isinstance(eps, (int, float)) and not isinstance(eps, bool) and float(np.asarray(eps, dtype)) > 0.0


def _c(factor: Any, dtype: jnp.dtype) -> Any:
    """A real scalar ready to meet an array of ``dtype``: itself, or cast to ``dtype`` when that is complex.

    Python numbers stay weakly typed, so strict dtype promotion never sees a
    real array meet a complex one; for real ``dtype`` nothing changes.
    """
    if isinstance(factor, (int, float)) or not jnp.issubdtype(dtype, jnp.complexfloating):
        return factor
    return jnp.asarray(factor).astype(dtype)


def _state_dtype(param: Any, dtype: Any) -> jnp.dtype:
    """The dtype a moment of ``param`` is stored in: ``dtype``, or the parameter's own (as optax)."""
    return jnp.result_type(param) if dtype is None else jnp.dtype(dtype)


def init_state(params: optax.Params, config: AdamConfig) -> Any:
    """Zero moments shaped like ``params``, in optax's state class for the variant.

    Moments take the parameters' dtype unless ``mu_dtype`` / ``nu_dtype`` say
    otherwise, as in optax (so the second moment of a complex parameter is
    stored complex, with a zero imaginary part). AMSGrad's ``nu_max`` has the
    dtype of ``nu``. As in optax any float or complex ``mu_dtype`` is accepted
    here; a real ``mu_dtype`` meeting complex gradients is refused at ``update``,
    where it would drop their imaginary part.
    """
    _checks.check_param_dtypes("Adam", params, allow_complex=True)
    mu = jax.tree.map(lambda p: jnp.zeros_like(p, dtype=_state_dtype(p, config.mu_dtype)), params)
    nu = jax.tree.map(lambda p: jnp.zeros_like(p, dtype=_state_dtype(p, config.nu_dtype)), params)
    count = jnp.zeros([], jnp.int32)
    if config.amsgrad:
        return ScaleByAmsgradState(count=count, mu=mu, nu=nu, nu_max=nu)
    return config.state_class(count=count, mu=mu, nu=nu)


def check_same_structure(
    func: str, updates: Any, reference: Any, *, allow_complex: bool | None = None
) -> list[jax.Array]:
    """Flattens ``updates`` after checking that it matches the state's tree.

    Raises:
      TypeError: the tree structures differ (both are shown), or a gradient is
        not a floating-point array (integer, boolean, or complex where the
        state is real).
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
        complex_ok = jnp.iscomplexobj(ref) if allow_complex is None else allow_complex
        _checks.check_gradient_dtype(func, path, leaf, allow_complex=complex_ok)
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


def add_coupled_decay(func: str, grads: list[jax.Array], params: Any, treedef: Any, rate: Any) -> list[jax.Array]:
    r"""PyTorch's coupled L2 term :math:`g \leftarrow g + \lambda \theta`, before the moments see ``g``.

    The product is taken in float32 or wider and rounded once to the
    gradient's dtype, so a float32 decay keeps bfloat16 gradients bfloat16.
    """
    if params is None:
        raise ValueError(f"`{func}(weight_decay=...)` needs the parameters: call `update(grads, state, params)`.")
    if jax.tree.structure(params) != treedef:
        raise TypeError(
            f"{func}: the parameter tree does not match the tree the optimizer state was initialised with.\n"
            f"  parameters: {jax.tree.structure(params)}\n  state:      {treedef}"
        )
    param_leaves = treedef.flatten_up_to(params)
    for g, p in zip(grads, param_leaves, strict=True):
        if jnp.shape(g) != jnp.shape(p):
            raise ValueError(f"{func}: a parameter of shape {jnp.shape(p)} meets a gradient of shape {jnp.shape(g)}.")
    return [g + scale_leaf(rate, jnp.asarray(p, jnp.result_type(g))) for g, p in zip(grads, param_leaves, strict=True)]


def coupled_decay_value(config: AdamConfig, count: jax.Array) -> Any:
    """The coupled decay for the step after ``count`` steps, or None when the term is off or a literal 0."""
    decay = config.weight_decay
    if decay is None:
        return None
    if callable(decay) and not _checks.is_traced(decay):
        return decay(count)
    if not _checks.is_traced(decay) and not isinstance(decay, jax.Array) and float(decay) == 0.0:
        return None
    return decay


def update_state(
    updates: optax.Updates,
    state: Any,
    config: AdamConfig,
    func: str = "scale_by_adam",
    params: optax.Params | None = None,
) -> tuple[optax.Updates, Any]:
    r"""Applies :func:`adam_step` to every leaf; updates keep the gradients' dtype.

    With a coupled ``weight_decay`` the gradients first get
    :math:`\lambda_t \theta` added (:func:`add_coupled_decay`), where a
    schedule is called with the state's count before this step.
    """
    # A complex gradient fits a complex parameter, whose ``nu`` is complex unless
    # ``nu_dtype`` says otherwise; a real ``mu`` meeting it is refused below.
    kinds = jax.tree.map(lambda m, v: m if jnp.iscomplexobj(m) else v, state.mu, state.nu)
    grads = check_same_structure(func, updates, kinds)
    treedef = jax.tree.structure(state.mu)
    decay = coupled_decay_value(config, state.count)
    if decay is not None:
        grads = add_coupled_decay(func, grads, params, treedef, decay)
    mus = treedef.flatten_up_to(state.mu)
    nus = treedef.flatten_up_to(state.nu)
    nu_maxes = treedef.flatten_up_to(state.nu_max) if config.amsgrad else [None] * len(mus)
    count = optax.safe_increment(state.count)
    memo: dict = {}  # bias corrections, computed once per dtype for all arrays

    new_updates, new_mu, new_nu, new_nu_max, steps = [], [], [], [], []
    for grad, mu, nu, nu_max in zip(grads, mus, nus, nu_maxes, strict=True):
        grad = jnp.asarray(grad)
        if jnp.iscomplexobj(grad) and not jnp.iscomplexobj(mu):
            raise TypeError(
                f"`{func}(mu_dtype=...)`: the first moment is stored as {jnp.dtype(mu.dtype).name} (the parameters' "
                f"dtype or `mu_dtype`) and cannot hold complex gradients ({jnp.dtype(grad.dtype).name}): optimise "
                "complex parameters, with a complex `mu_dtype` such as jnp.complex64 or None."
            )
        step = adam_step(grad, mu, nu, nu_max, count, config, memo=memo)
        steps.append(step)
        update = step.update if jnp.iscomplexobj(grad) else jnp.real(step.update)
        new_updates.append(update.astype(grad.dtype))
        new_mu.append(step.mu.astype(mu.dtype))
        new_nu.append(step.nu.astype(nu.dtype))
        if config.amsgrad:
            new_nu_max.append(step.nu_max.astype(nu_max.dtype))

    unflatten = treedef.unflatten
    recorder = _RECORDER.get()
    if recorder is not None:
        recorder.append(unflatten(steps))
    moments = {"count": count, "mu": unflatten(new_mu), "nu": unflatten(new_nu)}
    if config.amsgrad:
        moments["nu_max"] = unflatten(new_nu_max)
    return unflatten(new_updates), config.state_class(**moments)


def transformation(config: AdamConfig, func: str = "scale_by_adam") -> optax.GradientTransformation:
    """The optax transformation that runs ``config``'s variant of Adam."""

    def init_fn(params: optax.Params) -> Any:
        return init_state(params, config)

    def update_fn(updates: optax.Updates, state: Any, params: optax.Params | None = None) -> tuple[optax.Updates, Any]:
        return update_state(updates, state, config, func, params)

    return optax.GradientTransformation(init_fn, update_fn)
