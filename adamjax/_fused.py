"""The fast path: an adamjax Adam/AdamW step and ``apply_updates`` as one native pass.

``adamjax.adam`` and ``adamjax.adamw`` are ``optax.chain``s (decay, core,
decay, learning rate). XLA on CPU turns such a chain into about three loops per
array that read and write memory ten times; the native kernel
(:mod:`adamjax._native`) does the whole chain in one pass. This module decides,
per call and while tracing, whether the kernel applies, and otherwise hands the
call to the chain unchanged, so results and errors are the chain's.

The kernel applies when the variant is plain Adam (``power=2``, no AMSGrad,
NAdam or centering; bias correction on or off; any ``eps``/``eps_root``), the
decays are unmasked, no simulator is recording, every array is float32 or
bfloat16 (state float32 or bfloat16), the backend is the CPU, and JAX sees a
single device whose arrays carry no mesh in their types. ``jax.grad`` through a step differentiates the pure-JAX twin
(:func:`_reference`), which runs the core's :func:`adamjax._core.adam_step`.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from adamjax import _checks, _core, _native


class FusedSpec(NamedTuple):
    """What an alias chain computes, for the kernel (see ``_aliases._build``)."""

    func: str
    config: _core.AdamConfig  # its ``weight_decay`` is the coupled term
    learning_rate: Any
    decoupled_decay: Any  # None: the chain has no decoupled term


def config_supported(config: _core.AdamConfig) -> bool:
    """Whether the kernel computes this variant (it knows plain Adam only)."""
    power = config.power
    return (
        not _checks.is_traced(power)
        and float(power) == 2.0
        and not (config.centered or config.amsgrad or config.nesterov)
    )


def _reference(param, grad, mu, nu, hyper, *, coupled: bool, decoupled: bool):
    """The kernel's result computed by the core in JAX (for ``jax.grad`` and non-CPU backends)."""
    h = dict(zip(_native.HYPER_FIELDS, (hyper[i] for i in range(len(_native.HYPER_FIELDS))), strict=True))
    g = grad
    if coupled:
        g = g + _core.scale_leaf(h["coupled_wd"], param)
    config = _core.AdamConfig(b1=h["b1"], b2=h["b2"], eps=h["eps"], eps_root=h["eps_root"])
    step = _core.adam_step(
        g,
        mu,
        nu,
        None,
        None,
        config,
        bias_corrections=(h["bc1"], h["bc2"]),
        complements=(h["one_minus_b1"], h["one_minus_b2"]),
    )
    update = step.update.astype(grad.dtype)
    if decoupled:
        update = update + _core.scale_leaf(h["decoupled_wd"], param)
    update = _core.scale_leaf(-h["lr"], update)
    return (param + update).astype(param.dtype), step.mu.astype(mu.dtype), step.nu.astype(nu.dtype)


def _reference_all(params, grads, mus, nus, hyper, **flags):
    outs = [_reference(p, g, m, v, hyper, **flags) for p, g, m, v in zip(params, grads, mus, nus, strict=True)]
    return tuple(tuple(column) for column in zip(*outs, strict=True)) if outs else ((), (), ())


@functools.cache
def kernel(coupled: bool, decoupled: bool):
    """``(params, grads, mus, nus, hyper) -> (params or updates, mus, nus)`` over tuples of arrays.

    One FFI call for the whole tree; ``jax.grad`` and ``jax.jvp`` differentiate the
    core instead. The caller checks that the computation targets the CPU
    (``jax.lax.platform_dependent`` would also allow mixed platforms, but it
    triples the compile time of a many-array step).
    """
    flags = {"coupled": coupled, "decoupled": decoupled}
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


def _is_literal_zero(value: Any) -> bool:
    return not callable(value) and not _checks.is_traced(value) and float(value) == 0.0


def _mesh_free(x: Any) -> bool:
    """True when ``x``'s type carries no mesh (explicit sharding puts one there even on one device)."""
    mesh = getattr(jax.typeof(x).sharding, "mesh", None)
    return mesh is None or mesh.empty


def _supported_leaf(grad: Any, param: Any, mu: Any, nu: Any) -> bool:
    if not isinstance(grad, jax.Array):
        return False
    if not all(_mesh_free(x) for x in (grad, mu, nu) + (() if param is None else (param,))):
        return False
    dtype = jnp.dtype(grad.dtype)
    if param is not None and (jnp.dtype(jnp.result_type(param)) != dtype or jnp.shape(param) != grad.shape):
        return False
    return _native.supports(dtype, mu.dtype, nu.dtype)


def run(spec: FusedSpec, grads: Any, state: tuple, params: Any) -> tuple[Any, tuple] | None:
    """The chain's step and ``apply_updates`` through the kernel, or None when the kernel does not apply.

    Returns ``(new_params, new_state)``; ``new_state`` has exactly the chain's
    structure.
    """
    if _native.unavailable_reason() is not None or _core._RECORDER.get() is not None:
        return None
    if jax.default_backend() != "cpu":
        return None
    # The alias's chain is (core, [decoupled decay], learning rate); the core is
    # found by its state's type, the members after it keep their order.
    states = list(state)
    core_index = next((i for i, s in enumerate(states) if _core.is_core_state(s)), None)
    if core_index is None:
        return None
    core_state = states[core_index]
    grad_leaves = _core.check_same_structure(spec.func, grads, core_state.mu)

    coupled_value = _core.coupled_decay_value(spec.config, core_state.count)
    coupled = coupled_value is not None
    decoupled, decoupled_value = False, 0.0
    if spec.decoupled_decay is not None:
        decay_index = core_index + 1
        decoupled_value, states[decay_index] = _scheduled(spec.decoupled_decay, states[decay_index])
        decoupled = not _is_literal_zero(spec.decoupled_decay)
    lr, states[-1] = _scheduled(spec.learning_rate, states[-1])
    if params is None:
        return None  # the two-call path raises the error that names what is missing

    treedef = jax.tree.structure(core_state.mu)
    mus = treedef.flatten_up_to(core_state.mu)
    nus = treedef.flatten_up_to(core_state.nu)
    _core.check_same_structure(spec.func, params, core_state.mu)
    param_leaves = treedef.flatten_up_to(params)
    if not all(_supported_leaf(*leaf) for leaf in zip(grad_leaves, param_leaves, mus, nus, strict=True)):
        return None

    count = optax.safe_increment(core_state.count)
    config = spec.config
    f32 = jnp.dtype(jnp.float32)
    bc1 = _core.bias_correction(config.b1, count, f32) if config.bias_correction_mu else 1.0
    bc2 = _core.bias_correction(config.b2, count, f32) if config.bias_correction_nu else 1.0
    hyper = _native.pack_hyper(
        {
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
    )
    step = kernel(coupled, decoupled)
    outs, new_mu, new_nu = step(tuple(param_leaves), tuple(grad_leaves), tuple(mus), tuple(nus), hyper)
    states[core_index] = core_state._replace(
        count=count, mu=treedef.unflatten(list(new_mu)), nu=treedef.unflatten(list(new_nu))
    )
    return treedef.unflatten(list(outs)), tuple(states)


def attach(spec: FusedSpec, chain: optax.GradientTransformationExtraArgs) -> optax.GradientTransformationExtraArgs:
    """``chain``, marked so that :func:`apply_step` can run it through the kernel.

    ``update`` itself stays the chain's: returning ``updates`` for
    ``optax.apply_updates`` means writing a fresh array per parameter, which
    XLA cannot fuse with the kernel, so the fused step exists only as
    :func:`apply_step`.
    """

    def update_fn(updates, state, params=None, **extra_args):
        return chain.update(updates, state, params, **extra_args)

    update_fn.adamjax_apply = functools.partial(run, spec)
    return optax.GradientTransformationExtraArgs(chain.init, update_fn)


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
    fused_apply = getattr(tx.update, "adamjax_apply", None)
    if fused_apply is not None:
        result = fused_apply(grads, state, params)
        if result is not None:
            return result
    updates, state = tx.update(grads, state, params)
    return optax.apply_updates(params, updates), state


def native_status() -> str:
    """Whether the native CPU kernel is in use in this process, and if not, why.

    Returns:
      ``"available"``, or the reason the pure-JAX path runs instead (library
      not built, ``ADAMJAX_DISABLE_NATIVE`` set, more than one device).

    Examples:
      >>> import adamjax
      >>> isinstance(adamjax.native_status(), str)
      True
    """
    return _native.unavailable_reason() or "available"
