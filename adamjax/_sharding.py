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
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
from jax.sharding import AxisType, NamedSharding, PartitionSpec, SingleDeviceSharding

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


def state_shardings(tx: Any, params: Any) -> Any:
    """The sharding of every leaf of ``tx.init(params)``, for ``jax.jit(..., out_shardings=...)``.

    Each state leaf computed from a parameter (Adam's ``mu``, ``nu``,
    ``nu_max``, a triple's copy of the parameters, optax's accumulators) gets
    the sharding JAX derives for it from that parameter's sharding -- for
    ``zeros_like`` the parameter's own sharding -- and every other leaf (step
    counters, injected hyperparameters) is replicated over the parameters'
    mesh. Nothing is allocated: ``init`` is traced with
    ``jax.eval_shape`` on a copy of the mesh whose axes are explicit
    (sharding in types), and the shardings JAX's type rules give are put back
    on the parameters' own mesh.

    On a mesh with explicit axes (``jax.set_mesh``), ``jax.jit(tx.init)`` and
    ``jax.eval_shape(tx.init, ...)`` already give these shardings; on a mesh
    with automatic axes this function is what keeps ``jax.jit(tx.init)`` from
    creating the moments replicated, a full copy on each device:

    ``state = jax.jit(tx.init, out_shardings=state_shardings(tx, params))(params)``

    Args:
      tx: an ``optax.GradientTransformation`` (adamjax's, optax's, a chain), an
        ``adamjax.optimizers`` triple, or an ``init`` function.
      params: the parameters: ``jax.Array``s or ``jax.ShapeDtypeStruct``s
        carrying a ``NamedSharding`` (all on one mesh) or a
        ``SingleDeviceSharding``; next to mesh-sharded parameters, one on a
        single device (an uncommitted scalar, say) counts as replicated.

    Returns:
      A pytree with the structure of ``jax.eval_shape(init, params)`` whose
      leaves are ``NamedSharding``s on the parameters' mesh (or, when every
      parameter is on one device, that device's ``SingleDeviceSharding``).

    Raises:
      TypeError: ``tx`` is not a transformation, triple or function, or a
        parameter has a sharding of another kind.
      ValueError: a parameter has no sharding, or the parameters are on
        different meshes or devices.

    Examples:
      >>> import jax, jax.numpy as jnp, adamjax
      >>> mesh = jax.make_mesh((1,), ("fsdp",))
      >>> sharding = jax.sharding.NamedSharding(mesh, jax.P("fsdp"))
      >>> params = {"w": jax.ShapeDtypeStruct((8,), jnp.float32, sharding=sharding)}
      >>> shardings = adamjax.state_shardings(adamjax.adam(1e-3), params)
      >>> shardings[0].mu["w"].spec, shardings[0].count.spec
      (P('fsdp',), P())
    """
    init = _init_function(tx)
    leaves_with_paths, treedef = jax.tree_util.tree_flatten_with_path(params)
    shardings = [_leaf_sharding(path, leaf) for path, leaf in leaves_with_paths]

    meshes = {sharding.mesh for sharding in shardings if isinstance(sharding, NamedSharding)}
    if len(meshes) > 1:
        raise ValueError(f"`{_FUNC}(params=...)`: the parameters are on {len(meshes)} different meshes; use one.")
    if not meshes:
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
    explicit = mesh.abstract_mesh.update_axis_types(dict.fromkeys(mesh.axis_names, AxisType.Explicit))
    abstract_params = treedef.unflatten(
        jax.ShapeDtypeStruct(
            leaf.shape,
            leaf.dtype,
            sharding=NamedSharding(explicit, sharding.spec if isinstance(sharding, NamedSharding) else PartitionSpec()),
            weak_type=getattr(leaf, "weak_type", False),
        )
        for (_, leaf), sharding in zip(leaves_with_paths, shardings, strict=True)
    )
    with jax.sharding.use_abstract_mesh(explicit):
        state = jax.eval_shape(init, abstract_params)

    def on_mesh(leaf: jax.ShapeDtypeStruct) -> NamedSharding:
        spec = leaf.sharding.spec if isinstance(leaf.sharding, NamedSharding) else PartitionSpec()
        return NamedSharding(mesh, spec)

    return jax.tree.map(on_mesh, state)
