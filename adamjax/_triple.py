"""The ``(init, update, get_params)`` triple: its state, the ``optimizer`` decorator, serialisation.

The contract is ``jax.example_libraries.optimizers``': ``init(params)`` returns
an :class:`OptimizerState`, ``update(i, grads, state)`` returns the next one,
``get_params(state)`` returns the parameters, and ``get_params(init(p))`` is
``p``. What differs is speed: the tree-level ``update`` is jitted with ``i``
traced, so a plain Python loop compiles once instead of once per step.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple, cast

import jax
import optax

from adamjax._flat import FlatParams, flatten_with, layout_of
from adamjax._fused import apply_step

Array = Any
Params = Any  # a pytree of arrays
State = Any  # the state of one parameter array, a pytree
Updates = Params  # gradients, shaped like the parameters
Step = int

# The per-array functions an `@optimizer` maker returns.
OptimizerResult = tuple[
    Callable[[Array], State],
    Callable[[Step, Array, State], State],
    Callable[[State], Array],
]


class OptimizerState(NamedTuple):
    """The state of a triple built by :func:`optimizer`: the per-array states, flattened.

    A registered pytree whose only child is ``packed_state``; the two tree
    definitions are static, so the state passes through ``jit`` and ``scan``.

    Attributes:
      packed_state: one flat list of leaves per parameter array.
      tree_def: the structure of the parameters.
      subtree_defs: the structure of each parameter array's state.
    """

    packed_state: Any
    tree_def: Any
    subtree_defs: Any


jax.tree_util.register_pytree_node(
    OptimizerState,
    lambda state: ((state.packed_state,), (state.tree_def, state.subtree_defs)),
    lambda aux, children: OptimizerState(children[0], aux[0], aux[1]),
)

InitFn = Callable[[Params], OptimizerState]
UpdateFn = Callable[[Step, Updates, OptimizerState], OptimizerState]
ParamsFn = Callable[[OptimizerState], Params]


class Optimizer(NamedTuple):
    """An ``(init_fn, update_fn, params_fn)`` triple working on whole pytrees."""

    init_fn: InitFn
    update_fn: UpdateFn
    params_fn: ParamsFn


# Raised while tracing a per-array update that needs a concrete `i` (Python
# control flow or indexing on it); such an optimizer then runs without jit.
_UNTRACEABLE = (
    jax.errors.ConcretizationTypeError,
    jax.errors.TracerIntegerConversionError,
    jax.errors.TracerArrayConversionError,
)


class TreeUpdate:
    """A per-array ``update(i, g, state)`` that can also step every array of a tree at once.

    ``@optimizer`` calls :meth:`tree` with all the arrays when the per-array
    update is one of these: the built-in Adam triples compute the step's
    scalars (step count, bias corrections, step size) once instead of once per
    array, and step the whole tree in one native call on the CPU. ``tree``
    must return exactly what calling the object on each array would.
    """

    def __call__(self, i: Step, g: Array, state: State) -> State:
        return self.tree(i, [g], [state])[0]

    def tree(self, i: Step, grads: list, states: list) -> list:
        raise NotImplementedError  # pragma: no cover - subclasses define it


def _check_grad_tree(func: str, grads: Any, tree_def: Any) -> list:
    grad_leaves, grad_def = jax.tree.flatten(grads)
    if grad_def != tree_def:
        raise TypeError(
            f"{func}: the gradient tree does not match the parameter tree the optimizer state was "
            f"initialised with.\n  parameters: {tree_def}\n  gradients:  {grad_def}"
        )
    return grad_leaves


def optimizer(opt_maker: Callable[..., OptimizerResult]) -> Callable[..., Optimizer]:
    """Decorator: lifts per-array ``(init, update, get_params)`` functions to pytrees.

    ``opt_maker(*args, **kwargs)`` returns functions on one array:
    ``init(x0) -> s``, ``update(i, g, s) -> s`` and ``get_params(s) -> x``,
    where the state ``s`` is any pytree. The decorated maker returns an
    :class:`Optimizer` whose functions take pytrees of parameters and an
    :class:`OptimizerState`, exactly as ``jax.example_libraries.optimizers``.

    The tree-level ``update`` is compiled with ``jax.jit`` on its first call,
    with ``i`` traced, so calling it from a Python loop with ``i = 0, 1, 2, ...``
    compiles once (again only if the shapes or dtypes change). Buffers are not
    donated: an old state stays valid. If the per-array ``update`` cannot be
    traced -- Python control flow on ``i``, such as ``if i == 0:`` -- that
    optimizer falls back, permanently, to running it eagerly with ``i`` as given.

    Args:
      opt_maker: a function returning the per-array ``(init, update,
        get_params)`` triple (for example annotated ``-> OptimizerResult``).

    Returns:
      A function with ``opt_maker``'s signature returning an :class:`Optimizer`.

    Raises:
      TypeError (from ``update``): the gradients' tree differs from the
        parameters' (both structures are shown), or the per-array ``update``
        changed the structure of its state.

    Examples:
      >>> import jax.numpy as jnp
      >>> from adamjax.optimizers import optimizer, make_schedule, OptimizerResult
      >>> @optimizer
      ... def sign_sgd(step_size) -> OptimizerResult:
      ...     step_size = make_schedule(step_size)
      ...     return (lambda x: x), (lambda i, g, x: x - step_size(i) * jnp.sign(g)), (lambda x: x)
      >>> init, update, get_params = sign_sgd(0.5)
      >>> get_params(update(0, {"w": jnp.array([2.0, -3.0])}, init({"w": jnp.zeros(2)})))
      {'w': Array([-0.5,  0.5], dtype=float32)}
    """

    @functools.wraps(opt_maker)
    def tree_opt_maker(*args: Any, **kwargs: Any) -> Optimizer:
        triple = opt_maker(*args, **kwargs)
        if not isinstance(triple, tuple) or len(triple) != 3:
            raise TypeError(
                f"`@optimizer` expects `{getattr(opt_maker, '__name__', opt_maker)}` to return an "
                f"(init, update, get_params) triple; got {type(triple).__name__}."
            )
        init, update, get_params = triple

        @functools.wraps(init)
        def tree_init(x0_tree: Params) -> OptimizerState:
            x0_leaves, tree_def = jax.tree.flatten(x0_tree)
            flat = [jax.tree.flatten(init(x0)) for x0 in x0_leaves]
            return OptimizerState(
                tuple(leaves for leaves, _ in flat), tree_def, tuple(subtree_def for _, subtree_def in flat)
            )

        def apply(i: Any, grad_tree: Updates, opt_state: OptimizerState) -> OptimizerState:
            packed_state, tree_def, subtree_defs = opt_state
            # Under jit this runs only when tracing; the gradients' tree is part
            # of jit's cache key, so a new tree is always checked.
            grad_leaves = _check_grad_tree("optimizer update", grad_tree, tree_def)
            states = [jax.tree.unflatten(d, leaves) for d, leaves in zip(subtree_defs, packed_state, strict=True)]
            if isinstance(update, TreeUpdate):
                new_states = update.tree(i, grad_leaves, states)
            else:
                new_states = [update(i, g, s) for g, s in zip(grad_leaves, states, strict=True)]
            new_packed = []
            for new_state, subtree_def in zip(new_states, subtree_defs, strict=True):
                new_leaves, new_def = jax.tree.flatten(new_state)
                if new_def != subtree_def:
                    raise TypeError(
                        "optimizer update: the per-array update returned a state whose structure "
                        f"differs from its input.\n  input:  {subtree_def}\n  output: {new_def}"
                    )
                new_packed.append(new_leaves)
            return OptimizerState(tuple(new_packed), tree_def, subtree_defs)

        jitted_apply = jax.jit(apply)
        eager = False

        @functools.wraps(update)
        def tree_update(i: Step, grad_tree: Updates, opt_state: OptimizerState) -> OptimizerState:
            nonlocal eager
            if eager:
                return apply(i, grad_tree, opt_state)
            try:
                return jitted_apply(i, grad_tree, opt_state)
            except _UNTRACEABLE:
                # Switch for good only if the eager call works: the error may
                # instead come from the caller's own jit, where `i` is traced.
                new_state = apply(i, grad_tree, opt_state)
                eager = True
                return new_state

        @functools.wraps(get_params)
        def tree_get_params(opt_state: OptimizerState) -> Params:
            packed_state, tree_def, subtree_defs = opt_state
            states = [jax.tree.unflatten(d, leaves) for d, leaves in zip(subtree_defs, packed_state, strict=True)]
            return jax.tree.unflatten(tree_def, [get_params(s) for s in states])

        return Optimizer(tree_init, tree_update, tree_get_params)

    return tree_opt_maker


class TransformationState(NamedTuple):
    """State of :func:`from_transformation`: the parameters and the transformation's state."""

    params: Params
    inner_state: optax.OptState


def from_transformation(tx: optax.GradientTransformation, *, flat: bool = False) -> Optimizer:
    """The ``(init, update, get_params)`` triple of an optax transformation.

    ``update(i, grads, state)`` computes the parameters moved by one step of
    ``tx`` (``tx.update`` then ``optax.apply_updates``, fused into one pass by
    :func:`adamjax.apply_step` for adamjax's Adam and AdamW on the CPU); it is
    jitted and does not donate buffers (wrap it in your own ``jax.jit`` with
    ``donate_argnums`` to update in place). The step index ``i`` is ignored:
    the transformation counts its own steps (so its schedules see 0, 1, 2, ...
    whatever ``i`` is passed), which gives the same trajectory as the triple
    when ``i`` runs 0, 1, 2, ...

    With ``flat=True`` the state keeps the parameters, and therefore the
    transformation's state, as one 1-D buffer per dtype
    (:class:`adamjax.FlatParams`); ``get_params`` returns the original tree
    and ``update`` takes gradients shaped like it, or, faster, gradients taken
    with respect to the flat parameters themselves (``jax.grad(lambda flat:
    loss(flat.unflatten()))(state.params)``, a :class:`adamjax.FlatParams`),
    which arrive flat without a copy. A step then touches a handful of large
    buffers instead of several per parameter array, which is much faster for
    models with many small arrays. Only for elementwise
    transformations (the whole Adam family, SGD, clipping by global norm):
    anything that looks at a parameter's shape or position in the tree
    (``optax.masked``, per-array norms, factored second moments) would see the
    flat buffers instead. Sharded parameters should stay unflattened.

    Args:
      tx: any ``optax.GradientTransformation`` (adamjax's or optax's).
      flat: keep parameters and state flat between steps (see above).

    Returns:
      An :class:`Optimizer` whose state is a :class:`TransformationState`.

    Raises:
      TypeError: ``tx`` is not a transformation, or ``flat`` is not a bool;
        (from ``update``) the gradients' tree differs from the parameters'.

    Examples:
      >>> import jax.numpy as jnp, adamjax
      >>> init, update, get_params = adamjax.optimizers.from_transformation(adamjax.adam(0.1))
      >>> params = get_params(update(0, jnp.array([1.0, -1.0]), init(jnp.zeros(2))))
      >>> [round(float(p), 4) for p in params]  # Adam's first step is -lr * sign(g)
      [-0.1, 0.1]
    """
    if not (callable(getattr(tx, "init", None)) and callable(getattr(tx, "update", None))):
        raise TypeError(
            "`from_transformation(tx)` needs an optax.GradientTransformation (with `init` and "
            f"`update`); got {type(tx).__name__}."
        )
    if not isinstance(flat, bool):
        raise TypeError(f"`from_transformation(flat=...)` must be True or False; got {flat!r}.")

    # Not jitted as a whole: `flatten_with` concatenates concrete leaves with
    # NumPy, which needs no compilation; `tx.init` then sees a few buffers.
    init_buffers = jax.jit(tx.init)

    def init(params: Params) -> TransformationState:
        if flat:
            layout = layout_of(params)
            buffers = flatten_with(layout, params, "from_transformation init")
            return TransformationState(FlatParams(buffers, layout), init_buffers(buffers))
        return TransformationState(params, tx.init(params))

    @jax.jit
    def step(grads: Updates, state: TransformationState) -> TransformationState:
        # Checked while tracing; a new gradient tree always retraces.
        if isinstance(state.params, FlatParams):
            if isinstance(grads, FlatParams):
                if grads.layout != state.params.layout:
                    raise TypeError(
                        "from_transformation update: the flat gradients have another layout than the "
                        f"parameters.\n  parameters: {state.params!r}\n  gradients:  {grads!r}"
                    )
                flat_grads = grads.buffers
            else:
                flat_grads = flatten_with(state.params.layout, grads, "from_transformation update")
            buffers, inner_state = apply_step(tx, flat_grads, state.inner_state, state.params.buffers)
            return TransformationState(FlatParams(cast(tuple, buffers), state.params.layout), inner_state)
        _check_grad_tree("from_transformation update", grads, jax.tree.structure(state.params))
        params, inner_state = apply_step(tx, grads, state.inner_state, state.params)
        return TransformationState(params, inner_state)

    def update(i: Step, grads: Updates, state: TransformationState) -> TransformationState:
        del i  # the transformation keeps its own step count
        return step(grads, state)

    def get_params(state: TransformationState) -> Params:
        if isinstance(state.params, FlatParams):
            return state.params.unflatten()
        return state.params

    # The triple's state is a TransformationState; the function types are jax.example_libraries' names.
    return Optimizer(cast(InitFn, init), cast(UpdateFn, update), cast(ParamsFn, get_params))


class JoinPoint:
    """Marks, in an unpacked state, where the parameter tree ends and a per-array state begins.

    Not a pytree node: to ``jax.tree`` functions it is a leaf holding ``subtree``.
    """

    def __init__(self, subtree: Any):
        self.subtree = subtree

    def __iter__(self):
        # Look like a one-element container, as jax.example_libraries' JoinPoint does.
        yield self.subtree


def unpack_optimizer_state(opt_state: OptimizerState) -> Any:
    """Turns an :class:`OptimizerState` into a plain pytree, for serialisation.

    Args:
      opt_state: a state made by an :func:`optimizer` triple.

    Returns:
      The parameter tree with a :class:`JoinPoint` at each leaf, holding that
      array's state pytree (``jax.example_libraries``' format).
    """
    packed_state, tree_def, subtree_defs = opt_state
    subtrees = [jax.tree.unflatten(d, leaves) for d, leaves in zip(subtree_defs, packed_state, strict=True)]
    return jax.tree.unflatten(tree_def, [JoinPoint(s) for s in subtrees])


def _is_join_point(value: Any) -> bool:
    # Also accept jax.example_libraries' JoinPoint (for example from an old
    # pickle) without importing that module.
    return isinstance(value, JoinPoint) or (type(value).__name__ == "JoinPoint" and hasattr(value, "subtree"))


def pack_optimizer_state(marked_pytree: Any) -> OptimizerState:
    """The inverse of :func:`unpack_optimizer_state`.

    Args:
      marked_pytree: a pytree whose leaves are :class:`JoinPoint` objects (this
        module's or ``jax.example_libraries``').

    Returns:
      The equivalent :class:`OptimizerState`.

    Raises:
      TypeError: a leaf is not a :class:`JoinPoint`.
    """
    join_points, tree_def = jax.tree.flatten(marked_pytree)
    for path, leaf in jax.tree_util.tree_leaves_with_path(marked_pytree):
        if not _is_join_point(leaf):
            raise TypeError(
                "`pack_optimizer_state` expects a pytree whose leaves are all JoinPoints (as made by "
                f"`unpack_optimizer_state`); the leaf at {jax.tree_util.keystr(path) or 'the root'} is a "
                f"{type(leaf).__name__}."
            )
    flat = [jax.tree.flatten(point.subtree) for point in join_points]
    return OptimizerState(tuple(leaves for leaves, _ in flat), tree_def, tuple(d for _, d in flat))
