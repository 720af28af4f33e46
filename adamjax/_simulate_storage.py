"""What the simulated optimizer's state stores of the moments.

The size rule ``simulate(min_quantized_size=...)`` sets for quantized
storage, the initial state that follows it, and the stored (dequantized or
rounded) moments read back from the state after each step.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from adamjax import _core, _quantize, _stages
from adamjax._settings import Settings, optimizer_settings


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
