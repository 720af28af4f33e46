"""Parameters kept as one flat buffer per dtype, for models with many small arrays.

A jitted step pays for every buffer it takes and returns, and XLA compiles
per-array loops: with hundreds of small parameter arrays that overhead, not
the arithmetic, is most of an optimizer step. :class:`FlatParams` stores a
pytree of arrays as one 1-D buffer per dtype plus a static layout, so an
elementwise optimizer (the whole Adam family) steps a few large buffers
instead. ``unflatten`` gives the original tree back, which is what a loss
function should see; its gradient is one concatenation per buffer, so a
gradient taken with respect to the flat parameters costs O(parameters).
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.core import Tracer


class _Slot(NamedTuple):
    group: int  # index of the dtype buffer
    offset: int
    shape: tuple[int, ...]

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))


class Layout(NamedTuple):
    """Where each leaf of the tree lives in the flat buffers (static, hashable)."""

    treedef: Any
    dtypes: tuple[str, ...]
    slots: tuple[_Slot, ...]
    sizes: tuple[int, ...]


def layout_of(tree: Any) -> Layout:
    """The layout of ``tree``'s leaves: grouped by dtype, in tree order."""
    leaves, treedef = jax.tree.flatten(tree)
    dtypes: list[str] = []
    sizes: list[int] = []
    slots = []
    for leaf in leaves:
        dtype = jnp.dtype(jnp.result_type(leaf)).name
        if dtype not in dtypes:
            dtypes.append(dtype)
            sizes.append(0)
        group = dtypes.index(dtype)
        shape = tuple(int(d) for d in jnp.shape(leaf))
        slots.append(_Slot(group, sizes[group], shape))
        sizes[group] += int(np.prod(shape, dtype=np.int64))
    return Layout(treedef, tuple(dtypes), tuple(slots), tuple(sizes))


def _checked_leaves(layout: Layout, tree: Any, func: str) -> list:
    leaves, treedef = jax.tree.flatten(tree)
    if treedef != layout.treedef:
        raise TypeError(
            f"{func}: the gradient tree does not match the parameter tree the optimizer state was "
            f"initialised with.\n  parameters: {layout.treedef}\n  gradients:  {treedef}"
        )
    for index, (leaf, slot) in enumerate(zip(leaves, layout.slots, strict=True)):
        shape, dtype = tuple(jnp.shape(leaf)), jnp.dtype(jnp.result_type(leaf)).name
        if shape != slot.shape:
            raise ValueError(
                f"{func}: leaf {index} of the gradients has shape {shape} but the parameter there "
                f"has shape {slot.shape}."
            )
        expected = layout.dtypes[slot.group]
        if dtype != expected:
            raise TypeError(
                f"{func}: leaf {index} of the gradients has dtype {dtype} but the parameter "
                f"there has dtype {expected}; cast the gradients to the parameters' dtypes."
            )
    return leaves


def flatten_with(layout: Layout, tree: Any, func: str) -> tuple[jax.Array, ...]:
    """``tree``'s leaves concatenated into ``layout``'s buffers (one per dtype).

    Concrete leaves are concatenated on the host by NumPy: XLA's CPU
    concatenation of n operands compiles in time growing faster than n (about
    2.5 s for 1,000 arrays), NumPy's needs no compilation. Traced leaves (under
    ``jit``) are concatenated by XLA, one ``concatenate`` per buffer.

    Raises:
      TypeError: ``tree`` has another structure or a leaf has another dtype.
      ValueError: a leaf has another shape.
    """
    leaves = _checked_leaves(layout, tree, func)
    pieces: list[list[Any]] = [[] for _ in layout.dtypes]
    for leaf, slot in zip(leaves, layout.slots, strict=True):
        pieces[slot.group].append(leaf)
    if not any(isinstance(leaf, Tracer) for leaf in leaves):
        return tuple(
            jnp.asarray(np.concatenate([np.asarray(leaf, jnp.dtype(dtype)).reshape(-1) for leaf in group]))
            if group
            else jnp.zeros((0,), dtype)
            for group, dtype in zip(pieces, layout.dtypes, strict=True)
        )
    return tuple(
        jnp.concatenate([jnp.asarray(leaf).reshape(-1) for leaf in group]) if group else jnp.zeros((0,), dtype)
        for group, dtype in zip(pieces, layout.dtypes, strict=True)
    )


def _run_time_offsets(layout: Layout, buffers: tuple) -> tuple:
    # XLA compiles one kernel per distinct fused computation and reuses it for
    # identical ones. A slice at a constant offset makes the kernel of every
    # leaf's consumer distinct (hundreds of compilations for hundreds of
    # arrays); offsets that are values at run time let leaves of one shape share
    # a kernel. A conditional whose branches both return the offsets is a value
    # XLA does not fold (its predicate depends on the data; the result does not).
    offsets = tuple(np.int32(slot.offset) for slot in layout.slots)
    probe = next((b for b in buffers if b.shape[0] > 0), None)
    if probe is None or max(layout.sizes) >= 2**31:
        return offsets
    first = probe[0]
    return jax.lax.cond(first == first, lambda: offsets, lambda: offsets)


@functools.partial(jax.custom_jvp, nondiff_argnums=(0,))
def _leaves(layout: Layout, buffers: tuple) -> list:
    offsets = _run_time_offsets(layout, buffers)
    return [
        jax.lax.dynamic_slice_in_dim(buffers[slot.group], offset, slot.size).reshape(slot.shape)
        for slot, offset in zip(layout.slots, offsets, strict=True)
    ]


def _split(layout: Layout, buffers: tuple) -> list:
    # Static slices whose transpose JAX writes as one concatenation per
    # buffer (slicing one at a time would transpose to a padded full-size
    # buffer per leaf, summed: O(arrays x parameters)).
    leaves: list = [None] * len(layout.slots)
    for group, buffer in enumerate(buffers):
        members = [i for i, slot in enumerate(layout.slots) if slot.group == group]
        if not members:
            continue
        sizes = [layout.slots[i].size for i in members]
        for i, piece in zip(members, jax.lax.split(buffer, sizes), strict=True):
            leaves[i] = piece.reshape(layout.slots[i].shape)
    return leaves


@_leaves.defjvp
def _leaves_jvp(layout: Layout, primals: tuple, tangents: tuple) -> tuple:
    (buffers,), (buffer_tangents,) = primals, tangents
    return _leaves(layout, buffers), _split(layout, buffer_tangents)


@functools.partial(jax.jit, static_argnums=0)
def _leaves_jitted(layout: Layout, buffers: tuple) -> list:
    return _leaves(layout, buffers)


@jax.tree_util.register_pytree_node_class
class FlatParams:
    """A pytree of arrays stored as one 1-D buffer per dtype.

    Its pytree children are the buffers (so ``jit``, donation and
    ``optax`` transformations see a handful of arrays); the layout travels as
    static data.

    Attributes:
      buffers: tuple of 1-D arrays, one per dtype, in order of first appearance.
      layout: the static :class:`Layout`.
    """

    def __init__(self, buffers: tuple, layout: Layout):
        self.buffers = tuple(buffers)
        self.layout = layout

    @classmethod
    def from_tree(cls, tree: Any, func: str = "FlatParams.from_tree") -> FlatParams:
        layout = layout_of(tree)
        return cls(flatten_with(layout, tree, func), layout)

    def unflatten(self) -> Any:
        """The original pytree (views of the buffers, reshaped).

        Its derivative with respect to the buffers is one concatenation per
        buffer, so ``jax.grad(lambda flat: loss(flat.unflatten()))`` costs
        O(parameters) and returns a :class:`FlatParams`. Called outside
        ``jit``, it runs as one compiled function per layout.
        """
        buffers = self.buffers
        if any(isinstance(b, Tracer) for b in buffers):
            leaves = _leaves(self.layout, buffers)
        else:
            leaves = _leaves_jitted(self.layout, buffers)
        return jax.tree.unflatten(self.layout.treedef, leaves)

    def tree_flatten(self):
        return self.buffers, self.layout

    @classmethod
    def tree_unflatten(cls, layout: Layout, buffers: tuple) -> FlatParams:
        return cls(buffers, layout)

    def __repr__(self) -> str:
        sizes = ", ".join(f"{d}[{n}]" for d, n in zip(self.layout.dtypes, self.layout.sizes, strict=True))
        return f"FlatParams({len(self.layout.slots)} arrays in {sizes})"
