"""Optimizer states to and from orbax-checkpoint, with the structure checked before anything is read.

orbax-checkpoint is the JAX ecosystem's checkpoint library; adamjax does not
depend on it, and imports it only when :func:`save_state` or
:func:`restore_state` is called. Any pytree of arrays is saved as orbax's
``StandardCheckpointer`` saves it. The triple API's
:class:`~adamjax.optimizers.OptimizerState`, which holds tree definitions orbax
cannot write, is saved in ``unpack_optimizer_state``'s form (the parameter tree
with each array's state at its leaf) and packed again on restore, so a state
unpacked by hand and one passed as is give the same files.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import numpy as np

from adamjax._triple import JoinPoint, OptimizerState, pack_optimizer_state, unpack_optimizer_state

# How many differing paths an error lists, and how much of each tree structure it shows.
_MAX_PATHS = 10
_MAX_STRUCTURE_CHARS = 2000


def _orbax() -> Any:
    try:
        import orbax.checkpoint as ocp
    except ImportError as error:
        raise ImportError(
            "`adamjax.save_state` and `adamjax.restore_state` write and read orbax checkpoints, and "
            "orbax-checkpoint is not installed (adamjax does not depend on it): "
            "`pip install orbax-checkpoint`."
        ) from error
    return ocp


def _is_join_point(node: Any) -> bool:
    # jax.example_libraries' JoinPoint too, as `pack_optimizer_state` accepts it.
    return isinstance(node, JoinPoint) or (type(node).__name__ == "JoinPoint" and hasattr(node, "subtree"))


def _is_triple_node(node: Any) -> bool:
    return isinstance(node, OptimizerState) or _is_join_point(node)


def _plain(tree: Any) -> Any:
    """``tree`` with each triple state replaced by its unpacked form and each JoinPoint by its subtree."""

    def unwrap(node: Any) -> Any:
        if isinstance(node, OptimizerState):
            return jax.tree.map(lambda point: point.subtree, unpack_optimizer_state(node))
        if _is_join_point(node):
            return node.subtree
        return node

    return jax.tree.map(unwrap, tree, is_leaf=_is_triple_node)


def _rewrap(target: Any, restored: Any) -> Any:
    """The inverse of :func:`_plain`, guided by ``target``: JoinPoints and triple states come back."""
    nodes, outer_def = jax.tree.flatten(target, is_leaf=_is_triple_node)
    parts = outer_def.flatten_up_to(restored)
    rewrapped = []
    for node, part in zip(nodes, parts, strict=True):
        if isinstance(node, OptimizerState):
            params_def = jax.tree.structure(unpack_optimizer_state(node))  # JoinPoints are its leaves
            points = [JoinPoint(subtree) for subtree in params_def.flatten_up_to(part)]
            part = pack_optimizer_state(jax.tree.unflatten(params_def, points))
        elif _is_join_point(node):
            part = JoinPoint(part)
        rewrapped.append(part)
    return jax.tree.unflatten(outer_def, rewrapped)


def _is_empty(node: Any) -> bool:
    # `None`, `optax.EmptyState()`, `{}`: orbax records these places (as None), so
    # `adam` (three chained states) and `adamw` (four) differ even with equal arrays.
    return node is None or not jax.tree.leaves(node)


def _key_name(key: Any) -> str:
    # orbax stores NamedTuple fields as dict keys and tuples as lists, so
    # GetAttrKey('mu') and DictKey('mu'), or SequenceKey(1) and DictKey('1'), are one place.
    for attribute in ("key", "name", "idx"):
        if hasattr(key, attribute):
            return str(getattr(key, attribute))
    return str(key)


def _describe(tree: Any) -> dict[str, str]:
    """``{path: "float32[3]"}`` for each array of ``tree``, ``{path: "empty"}`` for each empty node."""
    described = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree, is_leaf=_is_empty)[0]:
        name = ".".join(_key_name(key) for key in path) or "<root>"
        if _is_empty(leaf):
            described[name] = "empty"
        else:
            shape = tuple(leaf.shape) if hasattr(leaf, "shape") else np.shape(leaf)
            dtype = leaf.dtype if hasattr(leaf, "dtype") else np.asarray(leaf).dtype
            described[name] = f"{dtype}[{','.join(map(str, shape))}]"
    return described


def _listing(paths: list[str], described: dict[str, str]) -> str:
    shown = [f"{path} ({described[path]})" for path in paths[:_MAX_PATHS]]
    more = f", and {len(paths) - _MAX_PATHS} more" if len(paths) > _MAX_PATHS else ""
    return ", ".join(shown) + more if shown else "(none)"


def _structure(tree: Any) -> str:
    text = str(jax.tree.structure(tree))
    return text if len(text) <= _MAX_STRUCTURE_CHARS else text[:_MAX_STRUCTURE_CHARS] + " ..."


def _check_matches(saved_tree: Any, plain_target: Any, directory: str) -> None:
    saved, wanted = _describe(saved_tree), _describe(plain_target)
    only_saved = [path for path in saved if path not in wanted]
    only_target = [path for path in wanted if path not in saved]
    if only_saved or only_target:
        raise TypeError(
            f"`restore_state`: the checkpoint at {directory} holds a tree of a different structure from the "
            "target's; build the target with the optimizer and parameters that wrote it (`tx.init(params)`).\n"
            f"  only in the checkpoint: {_listing(only_saved, saved)}\n"
            f"  only in the target:     {_listing(only_target, wanted)}\n"
            f"  checkpoint: {_structure(saved_tree)}\n"
            f"  target:     {_structure(plain_target)}"
        )
    differing = [path for path in wanted if saved[path] != wanted[path]]
    if differing:
        rows = "\n".join(
            f"    {path}: checkpoint {saved[path]}, target {wanted[path]}" for path in differing[:_MAX_PATHS]
        )
        more = f"\n    and {len(differing) - _MAX_PATHS} more" if len(differing) > _MAX_PATHS else ""
        raise ValueError(
            f"`restore_state`: the checkpoint at {directory} has the target's structure, but "
            f"{len(differing)} array(s) differ in dtype or shape (orbax would cast or fail):\n{rows}{more}"
        )


def _absolute(directory: str | os.PathLike) -> str:
    # orbax wants absolute paths; remote ones (gs://...) are left as given.
    directory = os.fspath(directory)
    return directory if "://" in directory else os.path.abspath(directory)


def save_state(directory: str | os.PathLike, state: Any, *, overwrite: bool = False) -> None:
    """Writes an optimizer state, or any pytree holding one, as an orbax checkpoint.

    ``state`` may be an optax state (``tx.init(params)`` of any adamjax or optax
    transformation), a triple's state (an ``OptimizerState`` or its
    ``unpack_optimizer_state`` form), or a pytree holding these and the
    parameters, such as ``{"params": params, "opt_state": state}``. The call
    returns once the checkpoint is complete on disk.

    Args:
      directory: the checkpoint's directory, which must not exist yet (orbax
        writes it atomically); local or any path orbax accepts (``gs://...``).
      state: the pytree to write.
      overwrite: replace an existing checkpoint at ``directory``.

    Raises:
      ImportError: orbax-checkpoint is not installed.
      FileExistsError: ``directory`` exists and ``overwrite`` is false.

    Examples:
      >>> import tempfile, jax.numpy as jnp, adamjax
      >>> tx = adamjax.adam(1e-3)
      >>> params = {"w": jnp.ones(3, jnp.float32)}
      >>> directory = tempfile.mkdtemp() + "/step_100"
      >>> adamjax.save_state(directory, {"params": params, "opt_state": tx.init(params)})
    """
    ocp = _orbax()
    directory = _absolute(directory)
    if not overwrite and "://" not in directory and os.path.exists(directory):
        raise FileExistsError(
            f"`save_state`: {directory} exists; pass `overwrite=True` to replace it, or save each step "
            "in a directory of its own."
        )
    checkpointer = ocp.StandardCheckpointer()
    try:
        checkpointer.save(directory, _plain(state), force=overwrite)
        checkpointer.wait_until_finished()
    finally:
        checkpointer.close()


def restore_state(directory: str | os.PathLike, target: Any) -> Any:
    """Reads a checkpoint written by :func:`save_state` into the structure of ``target``.

    ``target`` is what the checkpoint should hold, freshly built: for example
    ``{"params": params, "opt_state": tx.init(params)}`` or a triple's
    ``init(params)``, with arrays or ``jax.ShapeDtypeStruct`` leaves (as from
    ``jax.eval_shape``). Before any array is read, the checkpoint's tree is
    compared with the target's, place by place, including the empty states of
    an ``optax.chain``; restored arrays take the target's sharding. A triple's
    state comes back as an ``OptimizerState``, a JoinPoint as a JoinPoint.

    The values are restored bit for bit, so training resumed from a checkpoint
    follows the run that wrote it exactly.

    Args:
      directory: the checkpoint's directory, as given to :func:`save_state`
        (or, for an ``orbax.checkpoint.CheckpointManager`` that saved with
        ``StandardSave``, a step's item: ``<root>/<step>/default``).
      target: a pytree with the structure, dtypes and shapes to restore.

    Returns:
      A pytree with the structure of ``target`` and the checkpoint's values.

    Raises:
      ImportError: orbax-checkpoint is not installed.
      FileNotFoundError: there is no checkpoint at ``directory``.
      TypeError: the checkpoint's tree differs from ``target``'s (the differing
        places and both structures are shown), as when a state written by
        ``adam`` is restored into ``amsgrad``'s.
      ValueError: the structures agree but some arrays' dtypes or shapes
        differ (each one is listed).

    Examples:
      >>> import tempfile, jax.numpy as jnp, adamjax
      >>> params = {"w": jnp.ones(3, jnp.float32)}
      >>> directory = tempfile.mkdtemp() + "/step_100"
      >>> adamjax.save_state(directory, adamjax.adam(1e-3).init(params))
      >>> state = adamjax.restore_state(directory, adamjax.adam(1e-3).init(params))
      >>> try:  # AMSGrad keeps a running maximum that Adam's checkpoint lacks
      ...     adamjax.restore_state(directory, adamjax.amsgrad(1e-3).init(params))
      ... except TypeError as error:
      ...     print(str(error).splitlines()[2])
        only in the target:     0.nu_max.w (float32[3])
    """
    ocp = _orbax()
    directory = _absolute(directory)
    if "://" not in directory and not os.path.isdir(directory):
        raise FileNotFoundError(f"`restore_state`: there is no checkpoint at {directory}.")
    plain_target = _plain(target)
    checkpointer = ocp.StandardCheckpointer()
    try:
        saved_tree = checkpointer.metadata(directory).item_metadata.tree
        _check_matches(saved_tree, plain_target, directory)
        restored = checkpointer.restore(directory, jax.tree.map(ocp.utils.to_shape_dtype_struct, plain_target))
    finally:
        checkpointer.close()
    return _rewrap(target, restored)
