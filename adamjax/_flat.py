"""Parameters kept as one flat buffer per dtype, for models with many small arrays.

A jitted step pays for every buffer it takes and returns, and XLA compiles
per-array loops: with hundreds of small parameter arrays that overhead, not
the arithmetic, is most of an optimizer step. :class:`FlatParams` stores a
pytree of arrays as one 1-D buffer per dtype plus a static layout, so an
elementwise optimizer (the whole Adam family) steps a few large buffers
instead. ``unflatten`` gives the original tree back (slices that XLA fuses into
their consumers), which is what a loss function should see.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np


class _Slot(NamedTuple):
    group: int  # index of the dtype buffer
    offset: int
    shape: tuple[int, ...]


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


def flatten_with(layout: Layout, tree: Any, func: str) -> tuple[jax.Array, ...]:
    """``tree``'s leaves concatenated into ``layout``'s buffers (one per dtype).

    Raises:
      TypeError: ``tree`` has another structure or a leaf has another dtype.
      ValueError: a leaf has another shape.
    """
    leaves, treedef = jax.tree.flatten(tree)
    if treedef != layout.treedef:
        raise TypeError(
            f"{func}: the gradient tree does not match the parameter tree the optimizer state was "
            f"initialised with.\n  parameters: {layout.treedef}\n  gradients:  {treedef}"
        )
    pieces: list[list[jax.Array]] = [[] for _ in layout.dtypes]
    for index, (leaf, slot) in enumerate(zip(leaves, layout.slots, strict=True)):
        leaf = jnp.asarray(leaf)
        if leaf.shape != slot.shape:
            raise ValueError(
                f"{func}: leaf {index} of the gradients has shape {leaf.shape} but the parameter there "
                f"has shape {slot.shape}."
            )
        expected = layout.dtypes[slot.group]
        if leaf.dtype.name != expected:
            raise TypeError(
                f"{func}: leaf {index} of the gradients has dtype {leaf.dtype.name} but the parameter "
                f"there has dtype {expected}; cast the gradients to the parameters' dtypes."
            )
        pieces[slot.group].append(leaf.reshape(-1))
    return tuple(
        jnp.concatenate(group) if group else jnp.zeros((0,), dtype)
        for group, dtype in zip(pieces, layout.dtypes, strict=True)
    )


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
        """The original pytree (slices of the buffers, reshaped)."""
        leaves = [
            jax.lax.slice_in_dim(self.buffers[slot.group], slot.offset, slot.offset + int(np.prod(slot.shape))).reshape(
                slot.shape
            )
            for slot in self.layout.slots
        ]
        return jax.tree.unflatten(self.layout.treedef, leaves)

    def tree_flatten(self):
        return self.buffers, self.layout

    @classmethod
    def tree_unflatten(cls, layout: Layout, buffers: tuple) -> FlatParams:
        return cls(buffers, layout)

    def __repr__(self) -> str:
        sizes = ", ".join(f"{d}[{n}]" for d, n in zip(self.layout.dtypes, self.layout.sizes, strict=True))
        return f"FlatParams({len(self.layout.slots)} arrays in {sizes})"
