"""The fast path: an adamjax Adam/AdamW step as one native pass per array.

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
single device. ``jax.grad`` through a step differentiates the pure-JAX twin
(:func:`_reference`), which runs the core's :func:`adamjax._core.adam_step`.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from adamjax import _checks, _core, _native


class FusedSpec(NamedTuple):
    """What an alias chain computes, for the kernel (see ``_aliases._build``)."""

    func: str
    config: _core.AdamConfig
    learning_rate: Any
    coupled_decay: Any
    decoupled_decay: Any  # None: the chain has no decoupled term


def config_supported(config: _core.AdamConfig) -> bool:
    """Whether the kernel computes this variant (it knows plain Adam only)."""
    power = config.power
    # With eps = 0 in float32 the kernel's m_hat / (sqrt(v_hat) + eps) is 0/0 for a zero
    # gradient; the core gives sign(m_hat) = 0 there (see adam_step), so such configs run the core.
    eps_is_zero = not _checks.is_traced(config.eps) and float(np.float32(config.eps)) == 0.0
    return (
        not _checks.is_traced(power)
        and float(power) == 2.0
        and not (config.centered or config.amsgrad or config.nesterov)
        and not eps_is_zero
    )


def _reference(param, grad, mu, nu, hyper, *, apply: bool, coupled: bool, decoupled: bool):
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
    out = (param + update).astype(param.dtype) if apply else update
    return out, step.mu.astype(mu.dtype), step.nu.astype(nu.dtype)


@functools.cache
def kernel(apply: bool, coupled: bool, decoupled: bool):
    """``(param, grad, mu, nu, hyper) -> (param or update, mu, nu)``: native on CPU, the core elsewhere."""
    flags = {"apply": apply, "coupled": coupled, "decoupled": decoupled}
    reference = functools.partial(_reference, **flags)

    @jax.custom_jvp
    def step(param, grad, mu, nu, hyper):
        return jax.lax.platform_dependent(
            param, grad, mu, nu, hyper, cpu=functools.partial(_native.ffi_step, **flags), default=reference
        )

    @step.defjvp
    def _jvp(primals, tangents):
        return jax.jvp(reference, primals, tangents)

    return step


def _scheduled(value: Any, part_state: Any) -> tuple[Any, Any]:
    """A chain member's current value and next state (schedules count their own steps)."""
    if callable(value) and not _checks.is_traced(value):
        return value(part_state.count), optax.ScaleByScheduleState(count=optax.safe_increment(part_state.count))
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


def run(spec: FusedSpec, grads: Any, state: tuple, params: Any, *, apply: bool) -> tuple[Any, tuple] | None:
    """The chain's step through the kernel, or None when the kernel does not apply.

    Returns ``(updates, new_state)`` (``apply=False``, the optax protocol) or
    ``(new_params, new_state)`` (``apply=True``); ``new_state`` has exactly the
    chain's structure.
    """
    if _native.unavailable_reason() is not None or _core._RECORDER.get() is not None:
        return None
    if jax.default_backend() != "cpu":
        return None
    states = list(state)
    core_index = 1
    core_state = states[core_index]
    grad_leaves = _core.check_same_structure(spec.func, grads, core_state.mu)

    coupled_value, states[0] = _scheduled(spec.coupled_decay, states[0])
    coupled = not _is_literal_zero(spec.coupled_decay)
    if coupled and params is None and _checks.is_traced(spec.coupled_decay) and not apply:
        coupled = False  # the chain skips a traced coupled decay without params; so do we
    decoupled, decoupled_value = False, 0.0
    if spec.decoupled_decay is not None:
        decoupled_value, states[2] = _scheduled(spec.decoupled_decay, states[2])
        decoupled = not _is_literal_zero(spec.decoupled_decay)
    lr, states[-1] = _scheduled(spec.learning_rate, states[-1])
    if params is None and (apply or coupled or decoupled):
        return None  # the chain raises the error that names what is missing

    treedef = jax.tree.structure(core_state.mu)
    mus = treedef.flatten_up_to(core_state.mu)
    nus = treedef.flatten_up_to(core_state.nu)
    if params is None:
        param_leaves = [None] * len(grad_leaves)
    else:
        _core.check_same_structure(spec.func, params, core_state.mu)
        param_leaves = treedef.flatten_up_to(params)
    if not all(_supported_leaf(*leaf) for leaf in zip(grad_leaves, param_leaves, mus, nus, strict=True)):
        return None

    count = optax.safe_increment(core_state.count)
    config = spec.config
    if config.bias_correction:
        bc1 = _core.bias_correction(config.b1, count, jnp.dtype(jnp.float32))
        bc2 = _core.bias_correction(config.b2, count, jnp.dtype(jnp.float32))
    else:
        bc1 = bc2 = 1.0
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
    step = kernel(apply, coupled, decoupled)
    outs, new_mu, new_nu = [], [], []
    for grad, param, mu, nu in zip(grad_leaves, param_leaves, mus, nus, strict=True):
        out, mu, nu = step(grad if param is None else param, grad, mu, nu, hyper)
        outs.append(out)
        new_mu.append(mu)
        new_nu.append(nu)
    states[core_index] = _core.ScaleByAdamState(
        count=count, mu=treedef.unflatten(new_mu), nu=treedef.unflatten(new_nu), nu_max=None
    )
    return treedef.unflatten(outs), tuple(states)


def attach(spec: FusedSpec, chain: optax.GradientTransformationExtraArgs) -> optax.GradientTransformationExtraArgs:
    """``chain`` with an update that takes the kernel when it applies (same state, same results)."""

    def update_fn(updates, state, params=None, **extra_args):
        fused = run(spec, updates, state, params, apply=False)
        if fused is None:
            return chain.update(updates, state, params, **extra_args)
        return fused

    def apply_fn(grads, state, params):
        return run(spec, grads, state, params, apply=True)

    update_fn.adamjax_apply = apply_fn
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
