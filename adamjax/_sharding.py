"""Where an optimizer's state lives when the parameters are sharded.

Adam's state is elementwise: ``mu``, ``nu`` and ``nu_max`` have the shape of
their parameter, and the step never mixes elements of different arrays. So the
natural layout of the state is the parameters' layout -- each device holds the
moments of the parameter shards it holds -- and then the update needs no
communication at all. :func:`state_shardings` computes that layout for any
optimizer, from shapes and shardings alone, for
``jax.jit(init, out_shardings=...)`` on meshes with automatic axes, where JAX
would otherwise pick a layout for the zeros by itself (in practice a full,
replicated copy on every device).

With ``shard_state_over`` it also computes the ZeRO stage-1 layout
(Rajbhandari et al., 2020): the moments split over a data-parallel mesh axis
along which the parameters are replicated, so each device keeps a slice of the
optimizer state instead of a copy of it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jax.sharding import AxisType, NamedSharding, PartitionSpec, SingleDeviceSharding

from adamjax._quantize import QuantizedArray, partition_specs

_FUNC = "state_shardings"


def _init_function(tx: Any) -> Callable[[Any], Any]:
    """The ``init`` of a transformation, of an ``(init, update, get_params)`` triple, or ``tx`` itself."""
    if callable(getattr(tx, "init", None)):
        return tx.init
    if callable(getattr(tx, "init_fn", None)):
        return tx.init_fn
    if callable(tx):
        return tx
    raise TypeError(
        f"`{_FUNC}(tx=...)` must be an optax.GradientTransformation, an `adamjax.optimizers` triple or an init "
        f"function; got {type(tx).__name__}."
    )


def _leaf_sharding(path: Any, leaf: Any) -> jax.sharding.Sharding:
    sharding = getattr(leaf, "sharding", None)
    if sharding is None:
        where = jax.tree_util.keystr(path) or "the root"
        raise ValueError(
            f"`{_FUNC}(params=...)`: the leaf at {where} has no sharding. Pass arrays placed with "
            "`jax.device_put(x, NamedSharding(mesh, spec))`, or `jax.ShapeDtypeStruct(shape, dtype, sharding=...)`."
        )
    if not isinstance(sharding, NamedSharding | SingleDeviceSharding):
        where = jax.tree_util.keystr(path) or "the root"
        raise TypeError(
            f"`{_FUNC}(params=...)`: the leaf at {where} has a {type(sharding).__name__}; only NamedSharding "
            "(a mesh and a PartitionSpec) and SingleDeviceSharding are supported."
        )
    return sharding


def _checked_axis_name(shard_state_over: Any) -> str | None:
    if shard_state_over is None or isinstance(shard_state_over, str):
        return shard_state_over
    raise TypeError(
        f"`{_FUNC}(shard_state_over=...)` must be the name of a mesh axis (a str) or None; got "
        f"{type(shard_state_over).__name__} {shard_state_over!r}."
    )


def _padded(spec: PartitionSpec, ndim: int) -> tuple[Any, ...]:
    return tuple(spec) + (None,) * (ndim - len(spec))


def _axis_names(entry: Any) -> tuple[str, ...]:
    if entry is None:
        return ()
    return tuple(entry) if isinstance(entry, tuple) else (entry,)


def _split_candidates(spec: PartitionSpec, shape: tuple[int, ...], axis: str, size: int) -> list[PartitionSpec]:
    """``spec`` with ``axis`` added on each dimension it can split, the preferred (largest) first.

    A dimension qualifies when no mesh axis shards it yet and ``size`` divides
    it into non-empty pieces. None qualifies when ``axis`` already shards the
    array: that array is split over it already.
    """
    entries = _padded(spec, len(shape))
    if any(axis in _axis_names(entry) for entry in entries):
        return []
    free = [
        d
        for d, (n, entry) in enumerate(zip(shape, entries, strict=True))
        if entry is None and n >= size and n % size == 0
    ]
    free.sort(key=lambda d: -shape[d])  # stable: the first of equally long dimensions wins
    return [PartitionSpec(*entries[:d], axis, *entries[d + 1 :]) for d in free]


def _parameter_copies(tx: Any, state: Any) -> set[int]:
    """Indices of the state leaves that a triple's ``get_params`` returns unchanged (its copy of the parameters)."""
    get_params = getattr(tx, "params_fn", None)
    if not callable(get_params):
        return set()
    shapes = jax.tree.map(lambda leaf: jax.ShapeDtypeStruct(leaf.shape, leaf.dtype), state)
    jaxpr = jax.make_jaxpr(get_params)(shapes).jaxpr
    index = {id(var): i for i, var in enumerate(jaxpr.invars)}
    return {index[id(var)] for var in jaxpr.outvars if id(var) in index}


def _is_suffix(path: tuple[Any, ...], of: tuple[Any, ...]) -> bool:
    return len(path) <= len(of) and of[len(of) - len(path) :] == path


def _parameter_spec(
    path: tuple[Any, ...], shape: tuple[int, ...], params: list[tuple[Any, Any, PartitionSpec]]
) -> PartitionSpec:
    """The spec of the parameter a quantized moment at ``path`` stands for.

    That parameter has the moment's shape; among several, the one whose path
    ends the moment's path (``mu['w']`` is the moment of ``['w']``), the
    longest such path first. A moment of no parameter's shape is replicated.
    """
    same_shape = [(p, spec) for p, leaf, spec in params if tuple(leaf.shape) == shape]
    by_path = sorted((p for p in same_shape if _is_suffix(tuple(p[0]), path)), key=lambda p: -len(p[0]))
    if by_path:
        return by_path[0][1]
    return same_shape[0][1] if same_shape else PartitionSpec()


def state_shardings(tx: Any, params: Any, *, shard_state_over: str | None = None) -> Any:
    r"""The sharding of every leaf of ``tx.init(params)``, for ``jax.jit(..., out_shardings=...)``.

    Each state leaf computed from a parameter (Adam's ``mu``, ``nu``,
    ``nu_max``, a triple's copy of the parameters, optax's accumulators) gets
    the sharding JAX derives for it from that parameter's sharding -- for
    ``zeros_like`` the parameter's own sharding -- and every other leaf (step
    counters, injected hyperparameters) is replicated over the parameters'
    mesh. Nothing is allocated: ``init`` is traced with
    ``jax.eval_shape`` on a copy of the mesh whose axes are explicit
    (sharding in types), and the shardings JAX's type rules give are put back
    on the parameters' own mesh. A quantized moment (a
    :class:`~adamjax._quantize.QuantizedArray`) gets codes and scales sharded
    like its parameter where whole quantization blocks allow it
    (:func:`adamjax._quantize.partition_specs`).

    On a mesh with explicit axes (``jax.set_mesh``), ``jax.jit(tx.init)`` and
    ``jax.eval_shape(tx.init, ...)`` already give these shardings; on a mesh
    with automatic axes this function is what keeps ``jax.jit(tx.init)`` from
    creating the moments replicated, a full copy on each device:

    ``state = jax.jit(tx.init, out_shardings=state_shardings(tx, params))(params)``

    **ZeRO stage 1.** In data-parallel training the parameters are replicated
    over the data axis, and so, with the layout above, is the optimizer state:
    each of the :math:`N` devices of that axis keeps the whole of Adam's
    :math:`m` and :math:`v`, :math:`2P` numbers for :math:`P` parameters
    (twice the parameters themselves). ``shard_state_over="data"`` splits
    every moment -- each state leaf with its parameter's shape and at least
    one dimension, not step counters or scalars -- over that mesh axis too,
    along the largest dimension that no axis shards yet and that :math:`N`
    divides, so that a device keeps :math:`2P / N` numbers. Adam's update is
    elementwise, so each device then updates its slice of the parameters with
    its slice of the moments; under ``jax.jit`` with these shardings XLA
    reduces the gradients onto the slices (a reduce-scatter, or an
    all-reduce) and gathers the updated parameters (an all-gather) -- the
    optimizer state itself never moves. A moment with no dimension that
    :math:`N` divides, and a triple's copy of the parameters (what
    ``get_params`` returns, which ZeRO stage 1 keeps replicated), keep the
    parameter's sharding. This is Rajbhandari et al.'s :math:`P_{os}`
    stage; the parameters and gradients stay replicated.

    Args:
      tx: an ``optax.GradientTransformation`` (adamjax's, optax's, a chain), an
        ``adamjax.optimizers`` triple, or an ``init`` function.
      params: the parameters: ``jax.Array``s or ``jax.ShapeDtypeStruct``s
        carrying a ``NamedSharding`` (all on one mesh) or a
        ``SingleDeviceSharding``; next to mesh-sharded parameters, one on a
        single device (an uncommitted scalar, say) counts as replicated.
      shard_state_over: the name of an axis of the parameters' mesh to split
        the moments over (ZeRO stage 1), or ``None`` (the default) for the
        parameters' own layout.

    Returns:
      A pytree with the structure of ``jax.eval_shape(init, params)`` whose
      leaves are ``NamedSharding``s on the parameters' mesh (or, when every
      parameter is on one device, that device's ``SingleDeviceSharding``).

    Raises:
      TypeError: ``tx`` is not a transformation, triple or function, a
        parameter has a sharding of another kind, or ``shard_state_over`` is
        neither a str nor None.
      ValueError: a parameter has no sharding, the parameters are on
        different meshes or devices, or ``shard_state_over`` is given but is
        not an axis of their mesh, or they are on one device with no mesh.

    References:
      Samyam Rajbhandari, Jeff Rasley, Olatunji Ruwase, Yuxiong He, "ZeRO:
      Memory Optimizations Toward Training Trillion Parameter Models", SC 2020.

    Examples:
      >>> import jax, jax.numpy as jnp, adamjax
      >>> mesh = jax.make_mesh((1,), ("fsdp",))
      >>> sharding = jax.sharding.NamedSharding(mesh, jax.P("fsdp"))
      >>> params = {"w": jax.ShapeDtypeStruct((8,), jnp.float32, sharding=sharding)}
      >>> shardings = adamjax.state_shardings(adamjax.adam(1e-3), params)
      >>> shardings[0].mu["w"].spec, shardings[0].count.spec
      (P('fsdp',), P())

      ZeRO stage 1: replicated parameters, moments split over ``"data"``
      (here a one-device mesh; on ``N`` devices each keeps ``1 / N`` of them):

      >>> mesh = jax.make_mesh((1,), ("data",))
      >>> replicated = jax.sharding.NamedSharding(mesh, jax.P())
      >>> params = {"w": jax.ShapeDtypeStruct((16, 64), jnp.float32, sharding=replicated)}
      >>> zero1 = adamjax.state_shardings(adamjax.adamw(1e-3), params, shard_state_over="data")
      >>> zero1[0].mu["w"].spec, zero1[0].nu["w"].spec, zero1[0].count.spec
      (P(None, 'data'), P(None, 'data'), P())
    """
    init = _init_function(tx)
    axis = _checked_axis_name(shard_state_over)
    leaves_with_paths, treedef = jax.tree_util.tree_flatten_with_path(params)
    shardings = [_leaf_sharding(path, leaf) for path, leaf in leaves_with_paths]

    meshes = {sharding.mesh for sharding in shardings if isinstance(sharding, NamedSharding)}
    if len(meshes) > 1:
        raise ValueError(f"`{_FUNC}(params=...)`: the parameters are on {len(meshes)} different meshes; use one.")
    if not meshes:
        if axis is not None:
            raise ValueError(
                f"`{_FUNC}(shard_state_over={axis!r})` needs parameters on a mesh with that axis; these are on "
                "one device. Place them with `NamedSharding(mesh, spec)`, or pass shard_state_over=None."
            )
        devices = {next(iter(sharding.device_set)) for sharding in shardings}
        if len(devices) > 1:
            raise ValueError(
                f"`{_FUNC}(params=...)`: the parameters are on {len(devices)} devices without a mesh; place them "
                "on one device, or on one mesh with `NamedSharding`."
            )
        state = jax.eval_shape(init, params)
        only = shardings[0] if shardings else SingleDeviceSharding(jax.devices()[0])
        return jax.tree.map(lambda _: only, state)

    (mesh,) = meshes
    if axis is not None and axis not in mesh.axis_names:
        raise ValueError(
            f"`{_FUNC}(shard_state_over={axis!r})` must be an axis of the parameters' mesh, one of "
            f"{tuple(mesh.axis_names)}, or None."
        )
    specs = [sharding.spec if isinstance(sharding, NamedSharding) else PartitionSpec() for sharding in shardings]
    explicit = mesh.abstract_mesh.update_axis_types(dict.fromkeys(mesh.axis_names, AxisType.Explicit))
    abstract_params = treedef.unflatten(
        jax.ShapeDtypeStruct(
            leaf.shape, leaf.dtype, sharding=NamedSharding(explicit, spec), weak_type=getattr(leaf, "weak_type", False)
        )
        for (_, leaf), spec in zip(leaves_with_paths, specs, strict=True)
    )
    with jax.sharding.use_abstract_mesh(explicit):
        state = jax.eval_shape(init, abstract_params)

    axis_size = int(mesh.shape[axis]) if axis is not None else 0
    moment_shapes = {tuple(leaf.shape) for _, leaf in leaves_with_paths if jnp.ndim(leaf) > 0}
    params_by_path = [(tuple(path), leaf, spec) for (path, leaf), spec in zip(leaves_with_paths, specs, strict=True)]
    copies = _parameter_copies(tx, state) if axis is not None else set()
    nodes_with_paths, state_def = jax.tree_util.tree_flatten_with_path(
        state, is_leaf=lambda x: isinstance(x, QuantizedArray)
    )

    def quantized(path: tuple[Any, ...], q: QuantizedArray) -> QuantizedArray:
        spec = _parameter_spec(path, q.shape, params_by_path)
        if axis is not None:
            for candidate in _split_candidates(spec, q.shape, axis, axis_size):
                split = partition_specs(q, candidate, mesh)
                # partition_specs replicates a row axis it cannot split on block boundaries; try the next one.
                if any(axis in _axis_names(entry) for entry in split.codes):
                    spec = candidate
                    break
        return jax.tree.map(lambda s: NamedSharding(mesh, s), partition_specs(q, spec, mesh))

    out, leaf_index = [], 0
    for path, node in nodes_with_paths:
        if isinstance(node, QuantizedArray):
            out.append(quantized(tuple(path), node))
            leaf_index += len(jax.tree.leaves(node))
            continue
        spec = node.sharding.spec if isinstance(node.sharding, NamedSharding) else PartitionSpec()
        shape = tuple(node.shape)
        if axis is not None and shape in moment_shapes and leaf_index not in copies:
            spec = next(iter(_split_candidates(spec, shape, axis, axis_size)), spec)
        out.append(NamedSharding(mesh, spec))
        leaf_index += 1
    return state_def.unflatten(out)
