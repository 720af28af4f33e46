r"""Hyperparameters as data: read and set the values ``optax.inject_hyperparams`` keeps in a state.

``optax.inject_hyperparams(adamjax.adamw)(learning_rate=1e-3, ...)`` stores
every numeric hyperparameter as a JAX scalar in its state and rebuilds the
optimizer from those scalars at each ``update``. A hyperparameter is then an
input of the compiled step, not a constant baked into it: changing it between
steps does not recompile, and ``jax.vmap`` over states holding different values
runs a whole sweep in one compiled step. :func:`get_hyperparams` and
:func:`set_hyperparams` find those values anywhere in a state (a chain, a
wrapper, a triple's :class:`~adamjax.optimizers.TransformationState`) and
change them without changing the state's shapes or dtypes.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from adamjax import _checks

_FUNC = "set_hyperparams"

# Range checks for adamjax's (and optax's) hyperparameter names; other names
# (a factory's own arguments) are only checked to be real numbers.
_RANGE_CHECKS: dict[str, Callable[[str, str, Any], None]] = {
    "learning_rate": _checks.check_nonnegative,
    "b1": _checks.check_decay,
    "b2": _checks.check_decay,
    "eps": _checks.check_nonnegative,
    "eps_root": _checks.check_nonnegative,
    "weight_decay": _checks.check_nonnegative,
    "power": functools.partial(_checks.check_real, low=0.0, low_closed=False, allow_inf=True),
}

_HOW_TO_INJECT = (
    "Build the optimizer with `optax.inject_hyperparams`, for example "
    "`optax.inject_hyperparams(adamjax.adamw)(learning_rate=1e-3)`, or for the triple API "
    "`optimizers.from_transformation(optax.inject_hyperparams(adamjax.adam)(1e-3))`."
)


def _is_injected(x: Any) -> bool:
    return isinstance(x, optax.InjectStatefulHyperparamsState)


def _injected_states(state: Any, prefix: str = "") -> list[tuple[str, optax.InjectStatefulHyperparamsState]]:
    """Every injected state in ``state`` (also inside another's inner state), with its path."""
    found = []
    for path, leaf in jax.tree_util.tree_flatten_with_path(state, is_leaf=_is_injected)[0]:
        if _is_injected(leaf):
            where = prefix + jax.tree_util.keystr(path)
            found.append((where, leaf))
            found.extend(_injected_states(leaf.inner_state, f"{where}.inner_state"))
    return found


def _owners(func: str, state: Any) -> dict[str, str]:
    """Maps each hyperparameter name to the path of the one injected state holding it."""
    found = _injected_states(state)
    if not found:
        raise ValueError(f"`{func}`: the state holds no injected hyperparameters. {_HOW_TO_INJECT}")
    owners: dict[str, str] = {}
    for where, injected in found:
        for name in injected.hyperparams:
            if name in owners:
                raise ValueError(
                    f"`{func}`: {name!r} is a hyperparameter of two injected transformations in this state "
                    f"(at {owners[name] or 'the root'} and at {where or 'the root'}); call `{func}` on the part "
                    "of the state you mean, or use `optax.tree.set` with a filter."
                )
            owners[name] = where
    return owners


def get_hyperparams(state: optax.OptState) -> dict[str, jax.Array]:
    """The hyperparameters ``optax.inject_hyperparams`` keeps in ``state``.

    Looks through the whole state: a bare injected state, an ``optax.chain`` or
    a wrapper around one or several of them, or the
    :class:`~adamjax.optimizers.TransformationState` of a triple built by
    ``optimizers.from_transformation``. A hyperparameter given as a schedule
    is included with the value it had at the last step.

    Args:
      state: an optimizer state containing at least one
        ``optax.InjectStatefulHyperparamsState``.

    Returns:
      A new dict from each hyperparameter's name to its value, a JAX scalar
      (an array with a leading axis per ``jax.vmap`` for a batched state).

    Raises:
      ValueError: the state holds no injected hyperparameters, or two injected
        transformations in it use the same name.

    Examples:
      >>> import jax.numpy as jnp, optax, adamjax
      >>> tx = optax.inject_hyperparams(adamjax.adamw)(learning_rate=1e-3, weight_decay=1e-2)
      >>> hyperparams = adamjax.get_hyperparams(tx.init(jnp.zeros(3)))
      >>> sorted(hyperparams)
      ['b1', 'b2', 'eps', 'eps_root', 'learning_rate', 'weight_decay']
      >>> hyperparams["weight_decay"]
      Array(0.01, dtype=float32)
    """
    _owners("get_hyperparams", state)
    return {
        name: jnp.asarray(value)
        for _, injected in _injected_states(state)
        for name, value in injected.hyperparams.items()
    }


def _check_value(name: str, value: Any) -> None:
    """Construction-time checks of a new value (every element of a concrete array)."""
    if _checks.is_traced(value):
        return
    array = np.asarray(value)
    real = array.dtype.kind in "iuf" or jnp.issubdtype(array.dtype, jnp.floating)
    if array.dtype == np.bool_ or not real:
        raise TypeError(f"`{_FUNC}({name}=...)` must be a real number or an array of them; got {value!r}.")
    if array.size == 0:
        return
    flat = array.astype(np.float64).ravel()
    # An interval check needs only the extremes, or the first NaN if there is one.
    nan = np.isnan(flat)
    elements = flat[nan][:1] if nan.any() else (flat.min(), flat.max())
    check = _RANGE_CHECKS.get(name, _checks.check_real)
    for element in elements:
        check(_FUNC, name, float(element))


def _cast_like(name: str, value: Any, stored: jax.Array, scheduled: bool) -> jax.Array:
    """``value`` with the stored value's dtype and shape, so a jitted step does not recompile."""
    if scheduled:
        raise ValueError(
            f"`{_FUNC}({name}=...)`: {name!r} follows a schedule in this state and is recomputed at every "
            "step, so a value set here would be overwritten. Pass a number instead of a schedule to "
            "`optax.inject_hyperparams(...)` to control it by hand."
        )
    _check_value(name, value)
    stored_dtype = jnp.result_type(stored)
    if not jnp.issubdtype(stored_dtype, jnp.floating) and not _checks.is_traced(value):
        if not np.all(np.mod(np.asarray(value, np.float64), 1) == 0):
            raise TypeError(
                f"`{_FUNC}({name}=...)`: the state stores {name!r} as {stored_dtype} because it was given as a "
                f"Python int when the optimizer was built, so {value!r} cannot be stored. Build it with a float "
                f"(for example `{name}=1.0`)."
            )
    shape = jnp.shape(value)
    try:
        broadcast = np.broadcast_shapes(shape, jnp.shape(stored))
    except ValueError:
        broadcast = None
    if broadcast != jnp.shape(stored):
        raise ValueError(
            f"`{_FUNC}({name}=...)` has shape {shape} but the state stores shape {jnp.shape(stored)}. To give "
            "each member of a sweep its own value, set it inside `jax.vmap`, for example "
            f"`jax.vmap(lambda v: adamjax.set_hyperparams(state, {name}=v))(values)`."
        )
    new = jnp.broadcast_to(jnp.asarray(value).astype(stored_dtype), jnp.shape(stored))
    if not _checks.is_traced(value) and jnp.dtype(stored_dtype).itemsize < 4 and name in _RANGE_CHECKS:
        try:
            _check_value(name, new.astype(jnp.float32))
        except ValueError as err:
            raise ValueError(
                f"{err} The state stores {name!r} as {stored_dtype}, which rounded the value out of range; "
                "`optax.inject_hyperparams` stores hyperparameters in the parameters' dtype unless built with "
                "`hyperparam_dtype=jnp.float32`."
            ) from None
    return new


def set_hyperparams(state: optax.OptState, /, **values: Any) -> optax.OptState:
    r"""A copy of ``state`` with some injected hyperparameters replaced.

    The state comes from an optimizer built with ``optax.inject_hyperparams``
    (alone, inside ``optax.chain`` or a wrapper, or behind the triple of
    ``optimizers.from_transformation``). The next ``update`` uses the new
    values; since each value keeps the dtype and shape stored in the state, a
    jitted step that takes the state as an argument is not recompiled.

    With ``b1``, ``b2`` changed before step :math:`t`, adamjax (like optax)
    continues the moments with the new decays and bias-corrects with the
    current ones:

    .. math::

      m_t = \beta_{1,t} m_{t-1} + (1 - \beta_{1,t}) g_t, \qquad
      \hat m_t = m_t / (1 - \beta_{1,t}^{\,t})

    so :math:`\hat m_t` is an unbiased average of past gradients only while
    :math:`\beta_1` stays constant; the learning rate and the weight decay
    have no such caveat.

    Called inside ``jax.vmap`` with a batch of values, it gives a batch of
    states, one per setting (a sweep in one compiled step):
    ``jax.vmap(lambda lr: set_hyperparams(state, learning_rate=lr))(rates)``.

    Args:
      state: an optimizer state containing ``optax.inject_hyperparams``'s state.
      **values: new values by name (``learning_rate``, ``b1``, ``b2``, ``eps``,
        ``weight_decay``, ...): numbers, or arrays that broadcast to the stored
        shape; tracers are accepted unchecked. They are cast to the stored dtype.

    Returns:
      A state with the same tree structure, shapes and dtypes as ``state``.

    Raises:
      TypeError: a name is not a hyperparameter of the state, a value is not
        a real number, or a fraction is set where the state stores an integer
        (the hyperparameter was built from a Python int).
      ValueError: a value is out of range (``b1``, ``b2`` in ``[0, 1)``;
        ``learning_rate``, ``eps``, ``eps_root``, ``weight_decay`` ``>= 0``;
        ``power > 0``), does not broadcast to the stored shape, or the
        hyperparameter follows a schedule; the state holds no injected
        hyperparameters.

    Examples:
      >>> import jax, jax.numpy as jnp, optax, adamjax
      >>> tx = optax.inject_hyperparams(adamjax.adam)(learning_rate=0.1)
      >>> params = jnp.array([1.0, -1.0])
      >>> state = adamjax.set_hyperparams(tx.init(params), learning_rate=0.5)
      >>> updates, state = tx.update(jnp.array([2.0, -2.0]), state, params)
      >>> updates  # Adam's first step is -learning_rate * sign(g)
      Array([-0.5,  0.5], dtype=float32)
      >>> adamjax.set_hyperparams(state, b2=1.0)
      Traceback (most recent call last):
        ...
      ValueError: `set_hyperparams(b2=...)` must be in [0, 1); got 1.0.

    References:
      optax, ``optax.inject_hyperparams``.
    """
    if not values:
        return state
    owners = _owners(_FUNC, state)
    unknown = sorted(set(values) - set(owners))
    if unknown:
        raise TypeError(
            f"`{_FUNC}` got {', '.join(map(repr, unknown))}, which the state does not hold as an injected "
            f"hyperparameter; it holds {', '.join(map(repr, sorted(owners)))}."
        )

    def replace(injected: optax.InjectStatefulHyperparamsState) -> optax.InjectStatefulHyperparamsState:
        hyperparams = dict(injected.hyperparams)
        for name, value in values.items():
            if name in hyperparams:
                scheduled = name in injected.hyperparams_states
                hyperparams[name] = _cast_like(name, value, jnp.asarray(hyperparams[name]), scheduled)
        return injected._replace(hyperparams=hyperparams, inner_state=walk(injected.inner_state))

    def walk(tree: Any) -> Any:
        return jax.tree.map(lambda x: replace(x) if _is_injected(x) else x, tree, is_leaf=_is_injected)

    return walk(state)
