"""Reading an optimizer's settings out of a transformation: :class:`Settings` and :func:`optimizer_settings`.

The settings come from the closures of the one adamjax Adam core in the
transformation (its config, the name of the function that built it, its
learning rate), or from the values ``optax.inject_hyperparams`` keeps in the
state, so a trace and its figures can say what they show.
"""

from __future__ import annotations

import dataclasses
import functools
import numbers
from typing import Any

import jax
import numpy as np
import optax

from adamjax import _checks, _core

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
