"""The fast path: an adamjax Adam/AdamW step and ``apply_updates`` as one native pass.

``adamjax.adam`` and ``adamjax.adamw`` are ``optax.chain``s (decay, core,
decay, learning rate). XLA on CPU turns such a chain into about three loops per
array that read and write memory ten times; the native kernel
(:mod:`adamjax._native`) does the whole chain in one pass. This module decides,
per call and while tracing, whether the kernel applies, and otherwise hands the
call to the chain unchanged, so results and errors are the chain's.

The kernel applies when the variant is plain Adam (``power=2``, no AMSGrad,
NAdam or centering; bias correction on or off; any ``eps``/``eps_root``; a
decoupled decay with or without a mask), no simulator is recording, every array
is float32 or bfloat16 (state float32, bfloat16 or 8/4-bit), the backend is the
CPU, and JAX sees a single device whose arrays carry no mesh in their types.
``jax.grad`` through a step differentiates the pure-JAX twin
(:func:`_reference`), which runs the core's :func:`adamjax._stages.adam_step`.

Moments quantized to 8 or 4 bits (``state_bits``) take the kernel's quantized
step, which dequantizes, steps and requantizes each block in the same single
pass; the arrays below the quantization threshold, whose moments stay
float32, share the plain kernel call as before.
"""

from __future__ import annotations

import contextvars
import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from adamjax import _checks, _core, _native, _numerics, _quantize, _stages


class FusedSpec(NamedTuple):
    """What an alias chain computes, for the kernel (see ``_alias_chain._build``)."""

    func: str
    config: _core.AdamConfig  # its ``weight_decay`` is the coupled term
    learning_rate: Any
    decoupled_decay: Any  # None: the chain has no decoupled term
    mask: Any = None  # the decoupled decay's mask (optax's: a tree of booleans, or a callable), if any
    after_decay: str | None = None  # what the chain does after the decay (LAMB's trust ratio), if anything
    rounding: str = "nearest"  # how 16-bit weights are rounded (a last chain member unless "nearest")
    # Where the alias's own chain keeps the states the kernel reads, as the alias built it:
    # the core's is found by its type; these are the decoupled decay's and the learning rate's.
    decay_slot: int | None = None
    rate_slot: int = 1


def variant_reason(config: _core.AdamConfig) -> str | None:
    """Why the kernel cannot compute this variant, or None when it can.

    Read from the variant's stages: the kernel computes the stages marked
    ``kernel`` (the first moment, squares, bias correction on or off, the
    square-root denominator, the plain direction), i.e. plain Adam/AdamW, on
    real moments in optax's ``ScaleByAdamState``.
    """
    for each in config.stages:
        if not each.kernel:
            return f"the {each.name} variant has no native kernel (the kernel computes plain Adam/AdamW)"
    if config.layout.state_class is not _core.ScaleByAdamState:
        return f"the state {config.layout.state_class.__name__} has no native kernel (it keeps ScaleByAdamState)"
    if any(
        jnp.issubdtype(jnp.dtype(d), jnp.complexfloating) for d in (config.mu_dtype, config.nu_dtype) if d is not None
    ):
        return "complex moments have no native kernel"
    return None


def _reference(param, grad, mu, nu, h: dict, *, coupled: bool, decoupled: bool, updates: bool):
    """The kernel's result computed by the core in JAX, from a dict of the kernel's hyperparameters.

    The values are the chain's own (Python numbers stay Python numbers, so a
    positive ``eps`` drops the core's zero-denominator guard) or the float32
    operand's entries (``jax.grad`` through the kernel).
    """
    g = grad
    if coupled:
        g = g + _numerics.scale_leaf(h["coupled_wd"], param)
    config = _core.AdamConfig(b1=h["b1"], b2=h["b2"], eps=h["eps"], eps_root=h["eps_root"])
    step = _stages.adam_step(
        g,
        mu,
        nu,
        None,
        jnp.zeros([], jnp.int32),  # unread: the bias corrections are given
        config,
        bias_corrections=(h["bc1"], h["bc2"]),
        # Python decays: the core takes 1 - b in double precision itself, as the kernel's operand did.
        complements=None if isinstance(h["b1"], int | float) else (h["one_minus_b1"], h["one_minus_b2"]),
    )
    update = step.update.astype(grad.dtype)
    if decoupled:
        update = update + _numerics.scale_leaf(h["decoupled_wd"], param)
    update = _numerics.scale_leaf(-h["lr"], update)
    out = update if updates else (param + update).astype(param.dtype)
    return out, step.mu.astype(mu.dtype), step.nu.astype(nu.dtype)


def _reference_all(params, grads, mus, nus, hyper, **flags):
    h = dict(zip(_native.HYPER_FIELDS, (hyper[i] for i in range(len(_native.HYPER_FIELDS))), strict=True))
    outs = [_reference(p, g, m, v, h, **flags) for p, g, m, v in zip(params, grads, mus, nus, strict=True)]
    new_params, new_mus, new_nus = (tuple(column) for column in zip(*outs, strict=True)) if outs else ((), (), ())
    return new_params, new_mus, new_nus


def _quantized_reference_all(
    params, grads, mu_codes, mu_scales, nu_codes, nu_scales, hyper, *, layout: tuple, **flags
) -> tuple[tuple, ...]:
    """The quantized kernel's results computed by the core in JAX: dequantize, step, requantize."""
    bits, block_size, mu_signed, nu_signed = layout
    h = dict(zip(_native.HYPER_FIELDS, (hyper[i] for i in range(len(_native.HYPER_FIELDS))), strict=True))
    outs = []
    for p, g, mc, ms, nc, ns in zip(params, grads, mu_codes, mu_scales, nu_codes, nu_scales, strict=True):
        shape = tuple(jnp.shape(p))
        mu = _quantize.QuantizedArray(mc, ms, shape, bits, mu_signed, block_size)
        nu = _quantize.QuantizedArray(nc, ns, shape, bits, nu_signed, block_size)
        out, new_mu, new_nu = _reference(p, g, _core.read_moment(mu), _core.read_moment(nu), h, **flags)
        new_mu, new_nu = _core.write_moment(new_mu, mu), _core.write_moment(new_nu, nu)
        outs.append((out, new_mu.codes, new_mu.scales, new_nu.codes, new_nu.scales))
    return tuple(tuple(column) for column in zip(*outs, strict=True)) if outs else ((),) * 5


@functools.cache
def quantized_kernel(coupled: bool, decoupled: bool, updates: bool, layout: tuple):
    """``(params, grads, mu codes, mu scales, nu codes, nu scales, hyper) -> the five new columns``.

    ``layout`` is ``(bits, block_size, mu signed, nu signed)``, shared by the
    arrays of one call. As :func:`kernel`: ``jax.grad`` and ``jax.jvp``
    differentiate the core (through dequantization and requantization) instead.
    """
    flags = {"coupled": coupled, "decoupled": decoupled, "updates": updates}
    bits, block_size, mu_signed, nu_signed = layout
    reference = functools.partial(_quantized_reference_all, layout=layout, **flags)

    @jax.custom_jvp
    def step(params, grads, mu_codes, mu_scales, nu_codes, nu_scales, hyper):
        return _native.ffi_quantized_step(
            params,
            grads,
            mu_codes,
            mu_scales,
            nu_codes,
            nu_scales,
            hyper,
            bits=bits,
            block_size=block_size,
            mu_map=_quantize.quantization_map(bits, mu_signed),
            nu_map=_quantize.quantization_map(bits, nu_signed),
            **flags,
        )

    @step.defjvp
    def _jvp(primals, tangents):
        return jax.jvp(reference, primals, tangents)

    return step


def _step_quantized(indices: list, hyper: jax.Array, params: list, grads: list, mus: list, nus: list, **flags) -> dict:
    """The quantized kernel over the arrays at ``indices``: ``{index: (out, new mu, new nu)}``.

    One call per layout (bits, block size, codebooks); an optimizer's arrays share one.
    """
    groups: dict[tuple, list] = {}
    for i in indices:
        mu, nu = mus[i], nus[i]
        groups.setdefault((mu.bits, mu.block_size, mu.signed, nu.signed), []).append(i)
    results = {}
    for layout, members in groups.items():
        columns = quantized_kernel(flags["coupled"], flags["decoupled"], flags["updates"], layout)(
            tuple(params[i] for i in members),
            tuple(grads[i] for i in members),
            tuple(mus[i].codes for i in members),
            tuple(mus[i].scales for i in members),
            tuple(nus[i].codes for i in members),
            tuple(nus[i].scales for i in members),
            hyper,
        )
        for position, i in enumerate(members):
            out, mu_codes, mu_scales, nu_codes, nu_scales = (column[position] for column in columns)
            mu, nu = mus[i], nus[i]
            results[i] = (
                out,
                _quantize.QuantizedArray(mu_codes, mu_scales, mu.shape, mu.bits, mu.signed, mu.block_size),
                _quantize.QuantizedArray(nu_codes, nu_scales, nu.shape, nu.bits, nu.signed, nu.block_size),
            )
    return results


@functools.cache
def kernel(coupled: bool, decoupled: bool, updates: bool = False):
    """``(params, grads, mus, nus, hyper) -> (params or updates, mus, nus)`` over tuples of arrays.

    One FFI call for the whole tree; ``jax.grad`` and ``jax.jvp`` differentiate the
    core instead. The caller checks that the computation targets the CPU
    (``jax.lax.platform_dependent`` would also allow mixed platforms, but it
    triples the compile time of a many-array step).
    """
    flags = {"coupled": coupled, "decoupled": decoupled, "updates": updates}
    reference = functools.partial(_reference_all, **flags)

    @jax.custom_jvp
    def step(params, grads, mus, nus, hyper):
        return _native.ffi_step(params, grads, mus, nus, hyper, **flags)

    @step.defjvp
    def _jvp(primals, tangents):
        return jax.jvp(reference, primals, tangents)

    return step


def _scheduled(value: Any, part_state: Any) -> tuple[Any, Any]:
    """A chain member's current value and next state (schedules count their own steps)."""
    if callable(value) and not _checks.is_traced(value):
        return value(part_state.count), part_state._replace(count=optax.safe_increment(part_state.count))
    return value, part_state


def _moment_like(moment: Any) -> Any:
    """A moment as the gradient tree's check sees it: itself, or a quantized one's shape and float32."""
    return jax.ShapeDtypeStruct(moment.shape, moment.dtype) if _core.is_quantized(moment) else moment


def _is_literal_zero(value: Any) -> bool:
    return not callable(value) and not _checks.is_traced(value) and float(value) == 0.0


def _mesh_free(x: Any) -> bool:
    """True when ``x``'s type carries no mesh (explicit sharding puts one there even on one device)."""
    mesh = getattr(jax.typeof(x).sharding, "mesh", None)
    return mesh is None or mesh.empty


def _unsupported_quantized(grad: jax.Array, param: Any, mu: Any, nu: Any) -> str | None:
    """Why the quantized kernel cannot step this array, or None when it can."""
    if not (_core.is_quantized(mu) and _core.is_quantized(nu)):
        return "one moment is quantized and the other is not"
    reason = _native.quantized_unavailable_reason()
    if reason is not None:
        return reason
    if (mu.bits, mu.block_size, mu.shape) != (nu.bits, nu.block_size, nu.shape) or mu.shape != grad.shape:
        return "its two quantized moments differ in bits, block size or shape"
    arrays = (grad, mu.codes, mu.scales, nu.codes, nu.scales) + (() if param is None else (param,))
    if not all(_mesh_free(x) for x in arrays):
        return "its type carries a mesh (explicit sharding); the pure-JAX path keeps it sharded"
    dtype = jnp.dtype(grad.dtype)
    if param is not None and (jnp.dtype(jnp.result_type(param)) != dtype or jnp.shape(param) != grad.shape):
        return (
            f"the gradient ({dtype}) and the parameter ({jnp.dtype(jnp.result_type(param))}) differ in dtype or shape"
        )
    if dtype not in _native.SUPPORTED_PARAM_DTYPES:
        return f"dtype {dtype} is not the quantized kernel's (float32 or bfloat16 parameters)"
    return None


def _unsupported_leaf(grad: Any, param: Any, mu: Any, nu: Any) -> str | None:
    """Why the kernel cannot step this array, or None when it can."""
    if not isinstance(grad, jax.Array):
        return f"the gradient is a {type(grad).__name__}, not a JAX array"
    if _core.is_quantized(mu) or _core.is_quantized(nu):
        return _unsupported_quantized(grad, param, mu, nu)
    if not all(_mesh_free(x) for x in (grad, mu, nu) + (() if param is None else (param,))):
        return "its type carries a mesh (explicit sharding); the pure-JAX path keeps it sharded"
    dtype = jnp.dtype(grad.dtype)
    if param is not None and (jnp.dtype(jnp.result_type(param)) != dtype or jnp.shape(param) != grad.shape):
        return (
            f"the gradient ({dtype}) and the parameter ({jnp.dtype(jnp.result_type(param))}) differ in dtype or shape"
        )
    if not _native.supports(dtype, mu.dtype, nu.dtype):
        return (
            f"dtypes {dtype} / mu {jnp.dtype(mu.dtype)} / nu {jnp.dtype(nu.dtype)} are not the kernel's "
            "(float32 or bfloat16 parameters, float32 or bfloat16 moments)"
        )
    return None


def config_reason(config: _core.AdamConfig) -> str | None:
    """Why no step of ``config`` can run the kernel in this trace, or None (the arrays are checked apart)."""
    reason = _native.unavailable_reason() or variant_reason(config)
    if reason is not None:
        return reason
    if _core._RECORDER.get() is not None:
        return "the simulator is recording the core's internals"
    if jax.default_backend() != "cpu":
        return f"the native kernel is for the CPU; the default backend is {jax.default_backend()}"
    return None


def leaves_reason(paths: Any, grads: list, params: list, mus: list, nus: list) -> str | None:
    """Why the kernel cannot step these arrays (naming the first that does not fit), or None."""
    for path, *leaf in zip(paths, grads, params, mus, nus, strict=True):
        why = _unsupported_leaf(*leaf)
        if why is not None:
            return f"the array at {path}: {why}"
    return None


#: In updates mode (``tx.update`` outside :func:`apply_step`), arrays with at least this many
#: elements are stepped by the core in JAX, which XLA fuses with ``optax.apply_updates``.
UPDATES_KERNEL_MAX_SIZE = 2**16


def step_leaves(
    config: _core.AdamConfig,
    count: Any,
    lr: Any,
    params: list,
    grads: list,
    mus: list,
    nus: list,
    *,
    coupled_value: Any = None,
    decoupled_value: Any = None,
    updates: bool = False,
    every_size: bool = False,
) -> tuple[tuple, tuple, tuple]:
    """One kernel step of ``config`` over lists of arrays: ``(new params, new mus, new nus)``.

    With ``updates=True``, ``(updates, new mus, new nus)``: what the alias's
    ``update`` returns, for ``optax.apply_updates`` to add; arrays of
    :data:`UPDATES_KERNEL_MAX_SIZE` elements or more are then stepped by the
    core in JAX (the same numbers), so that XLA fuses them with the addition;
    with ``every_size`` too the kernel steps every array (inside a wrapper's
    ``lax.cond``, which no addition can join). Arrays whose moments are
    quantized (:class:`adamjax._quantize.QuantizedArray`) take the quantized
    kernel in both modes and at every size.

    ``count`` is the step being taken (``t >= 1``); the bias corrections, the
    complements ``1 - b`` and the step size are computed once for all arrays.
    The caller has checked :func:`config_reason` and :func:`leaves_reason`.
    """
    f32 = jnp.dtype(jnp.float32)
    bc1 = _numerics.bias_correction(config.b1, count, f32) if config.bias_correction_mu else 1.0
    bc2 = _numerics.bias_correction(config.b2, count, f32) if config.bias_correction_nu else 1.0
    coupled, decoupled = coupled_value is not None, decoupled_value is not None
    values = {
        "lr": lr,
        "b1": config.b1,
        "one_minus_b1": 1 - config.b1,
        "b2": config.b2,
        "one_minus_b2": 1 - config.b2,
        "eps": config.eps,
        "eps_root": config.eps_root,
        "bc1": bc1,
        "bc2": bc2,
        "coupled_wd": coupled_value if coupled else 0.0,
        "decoupled_wd": decoupled_value if decoupled else 0.0,
    }
    hyper = _native.pack_hyper(values)
    flags = {"coupled": coupled, "decoupled": decoupled, "updates": updates}
    outs: list = [None] * len(grads)
    # Quantized moments take the quantized kernel in both modes, whatever the size: XLA cannot
    # fuse the pure path's dequantization, absmax and code search with `optax.apply_updates`
    # (they are several passes in any case), so one kernel pass plus the addition's is less.
    quantized = [i for i, mu in enumerate(mus) if _core.is_quantized(mu)]
    for i, out in _step_quantized(quantized, hyper, params, grads, mus, nus, **flags).items():
        outs[i] = out
    # The updates feed `optax.apply_updates`, a second pass over the parameters. For a large
    # array XLA fuses the core's expression with that addition into one in-place loop (optax's
    # own step), which the kernel cannot join: it would write the updates to a new buffer and
    # the addition would read them back. Large arrays take the core; the many small ones, whose
    # cost is compiling a loop each, share one kernel call.
    small = [
        i
        for i, g in enumerate(grads)
        if outs[i] is None and (not updates or every_size or jnp.size(g) < UPDATES_KERNEL_MAX_SIZE)
    ]
    if small:
        columns = kernel(coupled, decoupled, updates)(
            *(tuple(leaves[i] for i in small) for leaves in (params, grads, mus, nus)), hyper
        )
        for position, i in enumerate(small):
            outs[i] = tuple(column[position] for column in columns)
    for i, out in enumerate(outs):
        if out is None:  # the chain's own values: Python numbers fold into XLA's loop as in optax
            outs[i] = _reference(params[i], grads[i], mus[i], nus[i], values, **flags)
    new_params, new_mus, new_nus = (tuple(column) for column in zip(*outs, strict=True)) if outs else ((), (), ())
    return new_params, new_mus, new_nus


def run(
    spec: FusedSpec, grads: Any, state: tuple, params: Any, *, updates: bool = False, every_size: bool = False
) -> tuple[Any, tuple] | str:
    """The chain's step and ``apply_updates`` through the kernel, or why the kernel does not apply.

    Returns ``(new_params, new_state)``, where ``new_state`` has exactly the
    chain's structure, or a one-line reason (a ``str``). With ``updates=True``
    it returns ``(updates, new_state)``, the chain's ``update`` in one pass
    (``every_size``: see :func:`step_leaves`).
    """
    reason = config_reason(spec.config)
    if reason is not None:
        return reason
    if spec.after_decay is not None:
        return f"{spec.after_decay} after the decay has no native kernel"
    if spec.rounding != "nearest":
        return f'rounding="{spec.rounding}" of 16-bit weights has no native kernel'
    # The core's state is found by its type; the decay's and the learning rate's where the alias's
    # description (built with its chain) says they are.
    states = list(state)
    core_index = next((i for i, s in enumerate(states) if _core.is_core_state(s)), None)
    if core_index is None:
        return "the state holds no Adam core state"
    if len(states) <= spec.rate_slot:
        return "the state is not the alias's chain state"
    core_state = states[core_index]
    # A quantized moment is one leaf here, like its gradient (as the core reads it).
    treedef = jax.tree.structure(core_state.mu, is_leaf=_core.is_quantized)
    mus = treedef.flatten_up_to(core_state.mu)
    nus = treedef.flatten_up_to(core_state.nu)
    shapes = treedef.unflatten([_moment_like(m) for m in mus])
    grad_leaves = _core.check_same_structure(spec.func, grads, shapes)

    coupled_value = _core.coupled_decay_value(spec.config, core_state.count)
    coupled = coupled_value is not None
    decoupled, decoupled_value = False, 0.0
    decay_flags = [True] * len(grad_leaves)
    if spec.decoupled_decay is not None and spec.decay_slot is not None:
        slot = spec.decay_slot
        if spec.mask is None:
            decoupled_value, states[slot] = _scheduled(spec.decoupled_decay, states[slot])
        else:
            # optax.masked calls a callable mask with the updates it masks (shaped like the gradients),
            # and keeps the decay's own state inside MaskedState.
            try:
                decay_flags = _core.decay_masks(spec.func, spec.mask, grads, jax.tree.structure(grads))
            except (TypeError, jax.errors.ConcretizationTypeError):
                return "the weight decay's mask is not a tree of Python booleans"
            decoupled_value, inner = _scheduled(spec.decoupled_decay, states[slot].inner_state)
            states[slot] = states[slot]._replace(inner_state=inner)
        decoupled = not _is_literal_zero(spec.decoupled_decay)
    lr, states[spec.rate_slot] = _scheduled(spec.learning_rate, states[spec.rate_slot])
    if params is None and (updates and not (coupled or decoupled)):
        params = grads  # read by the kernel only for a decay
    if params is None:
        return "no parameters were given"  # the two-call path raises the error that names what is missing

    _core.check_same_structure(spec.func, params, shapes)
    param_leaves = treedef.flatten_up_to(params)
    paths = (jax.tree_util.keystr(p) or "the root" for p, _ in jax.tree_util.tree_leaves_with_path(shapes))
    reason = leaves_reason(paths, grad_leaves, param_leaves, mus, nus)
    if reason is not None:
        return reason

    count = jnp.asarray(optax.safe_increment(core_state.count))
    outs: list = [None] * len(grad_leaves)
    new_mu: list = [None] * len(grad_leaves)
    new_nu: list = [None] * len(grad_leaves)
    # A masked decay: the arrays it reaches and the others are two kernel calls.
    for decayed in (True, False):
        chosen = [i for i, flag in enumerate(decay_flags) if flag == decayed]
        if not chosen:
            continue
        columns = step_leaves(
            spec.config,
            count,
            lr,
            *([leaves[i] for i in chosen] for leaves in (param_leaves, grad_leaves, mus, nus)),
            coupled_value=coupled_value if coupled else None,
            decoupled_value=decoupled_value if decoupled and decayed else None,
            updates=updates,
            every_size=every_size,
        )
        for column, results in zip(columns, (outs, new_mu, new_nu), strict=True):
            for i, value in zip(chosen, column, strict=True):
                results[i] = value
    states[core_index] = core_state._replace(
        count=count, mu=treedef.unflatten(list(new_mu)), nu=treedef.unflatten(list(new_nu))
    )
    return treedef.unflatten(list(outs)), tuple(states)


class _Request(NamedTuple):
    """One :func:`apply_step` call: its parameters, the kernel's results and the reasons it declined.

    ``updates_only`` marks the second trace of a step whose alias sits inside a
    wrapper that changes its updates (``optax.apply_if_finite``'s and
    ``optax.MultiSteps``' ``lax.cond``): the aliases then return the kernel's
    updates, computed for arrays of every size, and ``optax.apply_updates``
    adds them after the wrapper.
    """

    params: Any
    results: list  # (updates object the alias returned, new params)
    reasons: list  # one line per alias that could not use the kernel
    updates_only: bool  # the second trace: the aliases return the kernel's updates
    updated: list  # the aliases whose updates the kernel computed (second trace)


_REQUEST: contextvars.ContextVar[_Request | None] = contextvars.ContextVar("adamjax_fused_step", default=None)


def attach(spec: FusedSpec, chain: optax.GradientTransformationExtraArgs) -> optax.GradientTransformationExtraArgs:
    """``chain``, able to run through the kernel when :func:`apply_step` calls it.

    Outside :func:`apply_step`, ``update`` is the chain's. Inside it (the call
    may come through any wrapper that passes the same ``params`` on, such as
    ``optax.chain`` after clipping or ``optax.inject_hyperparams``), the alias
    computes the new parameters and state with the kernel and hands the new
    parameters to :func:`apply_step`, keyed by the updates object it returns;
    those updates are still the chain's own, so a member after the alias sees
    correct values, and under ``jit`` XLA drops them when nothing uses them.
    """

    def update_fn(updates, state, params=None, **extra_args):
        request = _REQUEST.get()
        inside = request is not None and params is not None and params is request.params
        if request is None or not inside or request.updates_only:
            try:
                result = run(spec, updates, state, params, updates=True, every_size=inside)
            except (TypeError, ValueError):  # the chain raises its own error, naming what is wrong
                result = "the inputs do not fit"
            if isinstance(result, str):
                if request is not None and inside:
                    request.reasons.append(f"{spec.func}: {result}")
                return chain.update(updates, state, params, **extra_args)
            if request is not None:
                request.updated.append(spec.func)
            return result
        result = run(spec, updates, state, params)
        if isinstance(result, str):
            request.reasons.append(f"{spec.func}: {result}")
            return chain.update(updates, state, params, **extra_args)
        new_params, new_state = result
        chain_updates, _ = chain.update(updates, state, params, **extra_args)
        request.results.append((chain_updates, new_params))
        return chain_updates, new_state

    return optax.GradientTransformationExtraArgs(chain.init, update_fn)


def _step(
    tx: optax.GradientTransformation, grads: Any, state: Any, params: Any
) -> tuple[Any, Any, _Request, bool, Any]:
    """``(new params, new state, the request, whether the kernel stepped, tx's own updates)``.

    The first trace asks every adamjax alias inside ``tx`` for its new
    parameters. When the alias's updates reach ``tx``'s output unchanged, those
    are the step (one pass). When a wrapper changed them on the way (the
    ``lax.cond`` of ``optax.apply_if_finite`` or ``optax.MultiSteps``, whose
    outputs are updates, zeros on a skipped step), the first trace's results
    are dropped (under ``jit`` XLA removes them) and ``tx`` is traced again with
    the aliases returning the kernel's updates, which ``optax.apply_updates``
    adds: two passes, the kernel inside the wrapper.
    """
    request = _Request(params, [], [], updates_only=False, updated=[])
    updates, new_state = _update_with(request, tx, grads, state, params)
    for registered, new_params in request.results:
        if registered is updates:
            return new_params, new_state, request, True, updates
    if request.results:
        request = _Request(params, [], [], updates_only=True, updated=[])
        updates, new_state = _update_with(request, tx, grads, state, params)
    return optax.apply_updates(params, updates), new_state, request, False, updates


def _update_with(request: _Request, tx: optax.GradientTransformation, grads: Any, state: Any, params: Any) -> Any:
    """``tx.update(grads, state, params)`` with ``request`` visible to the aliases it reaches."""
    token = _REQUEST.set(request)
    try:
        return tx.update(grads, state, params)
    finally:
        _REQUEST.reset(token)


def apply_step(
    tx: optax.GradientTransformation, grads: optax.Updates, state: optax.OptState, params: optax.Params
) -> tuple[optax.Params, optax.OptState]:
    r"""One optimizer step that returns the new parameters: ``update`` and ``apply_updates`` fused.

    Equivalent to::

      updates, state = tx.update(grads, state, params)
      params = optax.apply_updates(params, updates)

    i.e. :math:`\theta_t = \theta_{t-1} + u_t` with :math:`u_t` the
    transformation's update. For ``adamjax.adam`` and ``adamjax.adamw`` on the
    CPU it runs the native kernel, which reads the parameters, gradients and
    both moments once and writes parameters and moments back in place: 28
    bytes of memory traffic per float32 parameter, the minimum, against about
    40 for ``update`` followed by ``apply_updates``. Inside a ``jax.jit`` that
    donates ``params`` and ``state`` nothing is copied. Any other
    transformation, variant or dtype (and every GPU or TPU) takes the
    equivalent two-call path above, so ``apply_step`` is always safe to use.

    Args:
      tx: an optax transformation (adamjax's aliases get the fast path).
      grads: the gradients, shaped like ``params``.
      state: ``tx``'s state.
      params: the parameters.

    Returns:
      ``(new_params, new_state)``.

    References:
      Kingma & Ba, "Adam: A Method for Stochastic Optimization", 2015;
      Loshchilov & Hutter, "Decoupled Weight Decay Regularization", 2019.

    Examples:
      >>> import jax, jax.numpy as jnp, adamjax
      >>> opt = adamjax.adamw(0.1, weight_decay=0.0)
      >>> params = jnp.zeros(3)
      >>> state = opt.init(params)
      >>> params, state = adamjax.apply_step(opt, jnp.array([1.0, -2.0, 0.5]), state, params)
      >>> [round(float(p), 4) for p in params]  # Adam's first step is -lr * sign(g)
      [-0.1, 0.1, -0.1]
    """
    new_params, state, *_ = _step(tx, grads, state, params)
    return new_params, state


def native_status(tx: optax.GradientTransformation | None = None, params: Any = None) -> str:
    """Whether the native CPU kernel is in use, and if not, why, in one line.

    Without arguments it speaks of this process (the library built and
    loaded, ``ADAMJAX_DISABLE_NATIVE``, the device count). Given a
    transformation and a parameter tree (arrays or ``jax.ShapeDtypeStruct``),
    it traces :func:`apply_step` for them abstractly (nothing is computed) and
    says whether that step runs the kernel, or why not: no adamjax Adam/AdamW
    in the transformation, a variant or dtype the kernel lacks, a wrapper
    after the alias that changes its updates (``optax.apply_if_finite``,
    ``optax.MultiSteps``), and so on.

    Args:
      tx: an optax transformation, or None for the process-wide status.
      params: the parameters ``tx`` will step (needed with ``tx``).

    Returns:
      ``"available"`` / ``"fused: ..."``, or a sentence saying why not.

    Examples:
      >>> import jax.numpy as jnp, optax, adamjax
      >>> isinstance(adamjax.native_status(), str)
      True
      >>> adamjax.native_status(optax.sgd(0.1), jnp.zeros(3))
      'not fused: the transformation holds no adamjax Adam or AdamW alias'
    """
    process = _native.unavailable_reason()
    if tx is None:
        return process or "available"
    if params is None:
        raise TypeError("`native_status(tx, params)`: give the parameters the transformation will step.")
    outcome: list = []

    def traced(params):
        state = tx.init(params)
        _, _, request, fused, _ = _step(tx, params, state, params)
        outcome.extend([request, fused])
        return ()

    jax.eval_shape(traced, params)
    request, fused = outcome
    if fused:
        return "fused: apply_step runs the native kernel for this transformation"
    if request.reasons:
        return "not fused: " + "; ".join(request.reasons)
    if request.updated:
        return (
            "not fused: a wrapper changes the adamjax alias's updates or parameters (for example "
            "optax.apply_if_finite, optax.MultiSteps or optax.multi_transform), so the native kernel computes "
            "the updates of " + ", ".join(sorted(set(request.updated))) + " and optax.apply_updates adds them "
            "(two passes)"
        )
    return "not fused: the transformation holds no adamjax Adam or AdamW alias"
