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

import dataclasses
import functools
import numbers
import operator
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from adamjax import _checks, _core, _quantize, _stages

_SWITCHES = ("centered", "amsgrad", "nesterov", "bias_correction")
_NUMBERS = ("b1", "b2", "eps", "eps_root", "power")


@dataclasses.dataclass(frozen=True)
class Settings:
    r"""The optimizer settings a :class:`Trace` was simulated with.

    Read from the optimizer itself (its Adam core, its learning rate, or the
    values ``optax.inject_hyperparams`` stores), so figures and tables can say
    what they show without being told twice. A field is ``None`` when it could
    not be read: a hyperparameter traced under ``jax.vmap``, a schedule for the
    learning rate, or a chain whose parts hide it.

    The object is a pytree with no leaves: ``jax.tree.map`` over a
    :class:`Trace` leaves it as it is.

    Attributes:
      optimizer: the adamjax function that built the core (``"adam"``,
        ``"amsgrad"``, ``"scale_by_adam"``, ...).
      learning_rate: the constant learning rate :math:`\eta`.
      b1, b2, eps, eps_root, power: as in :func:`adamjax.scale_by_adam`
        (``power`` is :math:`p`, 2 for Adam, ``math.inf`` for Adamax).
      centered, amsgrad, nesterov, bias_correction: the core's switches.
      state_bits, block_size: the optimizer's ``state_bits`` and quantization
        block (``None`` without quantized moments).
      quantized: whether the simulated array's moments were stored quantized
        (set by :func:`adamjax.simulate`; the optimizer keeps float32 moments
        for arrays under 4,096 elements unless ``min_quantized_size`` says
        otherwise).

    Examples:
      >>> import adamjax
      >>> trace = adamjax.simulate(adamjax.adam(1e-2, b2=0.99), adamjax.signals.sine(20))
      >>> trace.settings.b2, trace.settings.learning_rate
      (0.99, 0.01)
      >>> trace.settings.describe()
      'adam, lr=0.01, b1=0.9, b2=0.99, eps=1e-08'
    """

    optimizer: str | None = None
    learning_rate: float | None = None
    b1: float | None = None
    b2: float | None = None
    eps: float | None = None
    eps_root: float | None = None
    power: float | None = None
    centered: bool | None = None
    amsgrad: bool | None = None
    nesterov: bool | None = None
    bias_correction: bool | None = None
    state_bits: int | None = None
    block_size: int | None = None
    quantized: bool | None = None

    def describe(self, fields: tuple[str, ...] | None = None) -> str:
        """A short text such as ``"adam, lr=0.001, b1=0.9, b2=0.999, eps=1e-08, centered"``.

        Args:
          fields: only these fields (in this order); by default the optimizer,
            the learning rate, ``b1``, ``b2``, ``eps``, and ``eps_root``,
            ``power``, the switches and the moments' storage where they differ
            from Adam's defaults.
        """
        if fields is None:
            fields = ("optimizer", "learning_rate", "b1", "b2", "eps", "state_bits")
            fields += tuple(
                name
                for name, plain in (
                    ("eps_root", 0.0),
                    ("power", 2.0),
                    ("centered", False),
                    ("amsgrad", False),
                    ("nesterov", False),
                    ("bias_correction", True),
                )
                if getattr(self, name) not in (None, plain)
            )
        parts = []
        for name in fields:
            value = getattr(self, name)
            if value is None:
                continue
            if name == "optimizer":
                parts.append(str(value))
            elif name == "state_bits":
                parts.append(self._storage())
            elif name == "bias_correction":
                parts.append("bias correction" if value else "no bias correction")
            elif isinstance(value, bool):
                parts.append(name if value else f"not {name}")
            else:
                short = "lr" if name == "learning_rate" else ("p" if name == "power" else name)
                parts.append(f"{short}={value:g}")
        return ", ".join(parts)

    def _storage(self) -> str:
        """``"8-bit moments, blocks of 256"``, or why a simulated array kept float32 moments."""
        if self.quantized is False:
            return f"state_bits={self.state_bits} unused (too few elements: float32 moments)"
        blocks = "" if self.block_size is None else f", blocks of {self.block_size}"
        return f"{self.state_bits}-bit moments{blocks}"


jax.tree_util.register_static(Settings)


def _concrete(value: Any) -> float | None:
    """A hyperparameter as a Python float, or None when it is traced or not a real scalar."""
    if isinstance(value, bool) or value is None or _checks.is_traced(value):
        return None
    if isinstance(value, numbers.Real):
        return float(value)
    try:
        array = np.asarray(value)
    except (TypeError, ValueError):
        return None
    if array.shape != () or array.dtype.kind not in "iuf":
        return None
    return float(array)


def _walk(root: Any, limit: int = 2000) -> tuple[list[tuple[_core.AdamConfig, str | None]], list[Any], list[Any]]:
    """What the closures reachable from a transformation hold.

    Returns the Adam configs found (with the name of the function that built
    each), the values of variables called ``learning_rate``, and
    ``inject_hyperparams`` wrappers as ``(inner_factory, other_hps)`` pairs.
    """
    configs: list[tuple[_core.AdamConfig, str | None]] = []
    rates: list[Any] = []
    injected: list[Any] = []
    seen: set[int] = set()
    todo: list[Any] = [root]
    while todo and len(seen) < limit:
        obj = todo.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        if isinstance(obj, _core.AdamConfig):
            continue
        if isinstance(obj, tuple | list):
            todo.extend(obj)
        elif isinstance(obj, functools.partial):
            todo.extend([obj.func, *obj.args, *obj.keywords.values()])
        elif callable(obj) and getattr(obj, "__closure__", None):
            cells = {}
            for name, cell in zip(obj.__code__.co_freevars, obj.__closure__ or (), strict=True):
                try:
                    cells[name] = cell.cell_contents
                except ValueError:  # a cell not filled yet
                    continue
            if isinstance(cells.get("config"), _core.AdamConfig):
                configs.append((cells["config"], cells.get("func") if isinstance(cells.get("func"), str) else None))
            if "learning_rate" in cells:
                rates.append(cells["learning_rate"])
            if "inner_factory" in cells and isinstance(cells.get("other_hps"), dict):
                injected.append((cells["inner_factory"], cells["other_hps"]))
            todo.extend(value for value in cells.values() if callable(value) or isinstance(value, tuple | list))
    return configs, rates, injected


def _injected_values(tx: optax.GradientTransformation, params: Any) -> dict[str, Any]:
    """The hyperparameters ``optax.inject_hyperparams`` stores in ``tx``'s initial state."""
    try:
        state = tx.init(params)
    except (TypeError, ValueError):  # a transformation that cannot start from these params has no readable values
        return {}
    is_injected = lambda x: isinstance(x, optax.InjectStatefulHyperparamsState)  # noqa: E731
    values: dict[str, Any] = {}
    for leaf in jax.tree.leaves(state, is_leaf=is_injected):
        if is_injected(leaf):
            values.update(leaf.hyperparams)
    return values


def optimizer_settings(tx: optax.GradientTransformation, params: Any = None) -> Settings | None:
    """The settings of the one adamjax Adam core in ``tx``, or None where none can be read.

    ``params`` (an example parameter array) is only needed for an optimizer
    built by ``optax.inject_hyperparams``, whose values live in its state.
    """
    configs, rates, injected = _walk(tx)
    unique: dict[int, tuple[_core.AdamConfig, str | None]] = {}
    for config, func in configs:  # init_fn holds the config alone, update_fn also the function's name
        if unique.get(id(config), (None, None))[1] is None:
            unique[id(config)] = (config, func)
    if not unique and injected and params is not None:
        values = {name: value for name, value in _injected_values(tx, params).items() if _concrete(value) is not None}
        for factory, other in injected:
            try:
                inner = factory(**{name: _concrete(value) for name, value in values.items()}, **other)
            except (TypeError, ValueError):
                continue
            found = optimizer_settings(inner)
            if found is not None:
                return found
        return None
    distinct = {tuple(_hashable_config(config)): (config, func) for config, func in unique.values()}
    if len(distinct) != 1:
        return None
    ((config, func),) = distinct.values()
    constant = {_concrete(rate) for rate in rates if not callable(rate)}
    numbers_ = {name: _concrete(getattr(config, name)) for name in _NUMBERS}
    if numbers_["power"] is None and config.power is None:
        numbers_["power"] = 2.0
    return Settings(
        optimizer=func,
        learning_rate=constant.pop() if len(constant) == 1 and not any(callable(r) for r in rates) else None,
        **numbers_,
        **_switches(config),
        state_bits=config.state_bits,
        block_size=config.block_size,
    )


def _switches(config: _core.AdamConfig) -> dict[str, bool]:
    """The switches as the config's stages show them (so a newer member reports what it runs)."""
    names = {(stage.kind, stage.name) for stage in config.stages}
    return {
        "centered": ("second moment", "centered") in names,
        "amsgrad": ("second moment", "amsgrad") in names,
        "nesterov": ("correction", "nesterov") in names,
        "bias_correction": ("correction", "bias correction") in names,
    }


def _hashable_config(config: _core.AdamConfig) -> list[Any]:
    def plain(name: str, value: Any) -> Any:
        if name in _NUMBERS:
            return _concrete(value)
        if name == "member" and value is not None:
            return (
                value.name,
                value.stages,
                tuple((k, _concrete(v) if _concrete(v) is not None else id(v)) for k, v in value.hyper),
            )
        if name in ("weight_decay", "decoupled_weight_decay", "decay_mask"):  # arrays, schedules, mask trees
            return _concrete(value) if _concrete(value) is not None else id(value)
        return value

    return [plain(name, v) for name, v in zip(config._fields, config, strict=True)]


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


def _stored_moments(state: Any, step: _stages.AdamStep) -> tuple[jax.Array | None, jax.Array | None]:
    """What the core's state holds of ``mu`` and ``nu`` after the step, in the step's dtypes.

    Read from the state (dequantized where it is quantized), not recomputed,
    so the trace shows what the next step will start from.
    """
    nodes = _core.core_states(state)
    moments = _core.state_moments(nodes[0]) if len(nodes) == 1 else None
    if moments is None:
        return None, None
    stored = []
    for name, computed in (("mu", step.mu), ("nu", step.nu)):
        value = jnp.asarray(_core.read_moment(moments[name]))
        if jnp.shape(value) != jnp.shape(computed):
            return None, None
        if jnp.iscomplexobj(value) and not jnp.iscomplexobj(computed):  # optax's complex nu of a complex weight
            value = jnp.real(value)
        stored.append(value.astype(computed.dtype))
    return stored[0], stored[1]


class _Storage(NamedTuple):
    """Which arrays the simulation stores quantized: at least ``min_size`` elements, ``bits`` per code."""

    min_size: int
    bits: int
    block_size: int


def _initial_state(tx: optax.GradientTransformation, params: jax.Array, storage: _Storage | None) -> Any:
    """``tx.init(params)``, with the core's moments quantized by ``storage``'s size rule instead of the optimizer's.

    The optimizer quantizes the moments of arrays of at least 4,096 elements;
    this stores them as :func:`adamjax._core.init_state` stores a large
    array's (quantized zeros, the signed codebook for all but the second
    moment) or a small one's (zeros in :func:`adamjax._core.moment_dtype`) according to
    ``storage.min_size``. Every step then reads and writes them through the
    core's own ``read_moment`` / ``write_moment``, as it does for any array.
    """
    state = tx.init(params)
    if storage is None:
        return state

    def restored(node: Any) -> Any:
        if not _core.is_core_state(node):
            return node
        layout = _core._STATE_LAYOUTS[type(node)]  # which field holds which moment (members name theirs)
        changed = {}
        for field, moment in layout.arrays:
            old = getattr(node, field)
            shape = tuple(old.shape)
            if shape != tuple(params.shape):  # a member's own smaller moment (Adam-mini's nu) keeps its layout
                continue
            if _quantize.should_quantize(shape, min_size=storage.min_size):
                signed = moment not in ("nu", "nu_max")
                changed[field] = _quantize.zeros(shape, bits=storage.bits, signed=signed, block_size=storage.block_size)
            elif _core.is_quantized(old):
                changed[field] = jnp.zeros(shape, _core.moment_dtype(params))
        return node._replace(**changed)

    return jax.tree.map(restored, state, is_leaf=_core.is_core_state)


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


def _settings_and_storage(
    tx: optax.GradientTransformation, start: jax.Array, min_quantized_size: int | None
) -> tuple[Settings | None, _Storage | None]:
    """The optimizer's settings (with whether this array is stored quantized) and the size rule to simulate."""
    settings = optimizer_settings(tx, start)
    storage = None
    if min_quantized_size is not None:
        if settings is None or settings.state_bits is None or settings.block_size is None:
            raise ValueError(
                "`simulate(min_quantized_size=...)` changes which arrays get quantized moments and needs an "
                "optimizer built with `state_bits=8` or `4`, such as `adamjax.adam(1e-3, state_bits=8)`; "
                f"got {'one without state_bits' if settings is not None else 'one whose settings cannot be read'}."
            )
        storage = _Storage(int(min_quantized_size), settings.state_bits, settings.block_size)
    if settings is not None and settings.state_bits is not None:
        shapes = jax.eval_shape(functools.partial(_initial_state, tx, storage=storage), start)
        nodes = _core.core_states(shapes)
        moments = _core.state_moments(nodes[0]) if len(nodes) == 1 else None
        settings = dataclasses.replace(settings, quantized=moments is not None and _core.is_quantized(moments["mu"]))
    return settings, storage
