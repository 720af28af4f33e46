"""The single-pass CPU kernel for Adam, called through ``jax.ffi``.

``adamjax/_csrc/adam_kernel.cc`` is compiled by the package's build (see
``setup.py``) against the XLA FFI headers that jaxlib ships. It runs the same
float32 arithmetic as :func:`adamjax._stages.adam_step` for the plain Adam/AdamW
variant, reading and writing each element once. Everything here degrades to
"not available" (the pure-JAX path runs instead) when the library was not
built, cannot be loaded, or the step is not one the kernel covers.

Hyperparameters travel as a float32 operand, so traced learning rates and
schedules do not recompile; under ``vmap`` the call broadcasts every operand
to the batch and the kernel reads one row of hyperparameters per member.
:mod:`adamjax._fused` decides when the call applies and wraps it for ``jax.grad``.

A second target steps arrays whose moments are blockwise quantized
(:mod:`adamjax._quantize`): per block it dequantizes both moments, takes the
same step and requantizes them, reading and writing codes and scales once
(:func:`ffi_quantized_step`).
"""

from __future__ import annotations

import ctypes
import functools
import glob
import os
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from adamjax import _build_record

_TARGET = "adamjax_adam_step"
_QUANTIZED_TARGET = "adamjax_quantized_adam_step"
# Order of the float32 hyperparameter operand; keep in sync with adam_kernel.cc.
HYPER_FIELDS = (
    "lr",
    "b1",
    "one_minus_b1",
    "b2",
    "one_minus_b2",
    "eps",
    "eps_root",
    "bc1",
    "bc2",
    "coupled_wd",
    "decoupled_wd",
)
SUPPORTED_PARAM_DTYPES = (jnp.dtype(jnp.float32), jnp.dtype(jnp.bfloat16))
SUPPORTED_STATE_DTYPES = (jnp.dtype(jnp.float32), jnp.dtype(jnp.bfloat16))
_DISABLE_ENV = "ADAMJAX_DISABLE_NATIVE"
GROUP = 16  # arrays per FFI call (see ffi_step)


def _library_path() -> str | None:
    here = os.path.dirname(os.path.abspath(__file__))
    found = sorted(glob.glob(os.path.join(here, "_adam_kernel*.so")))
    return found[0] if found else None


@functools.cache
def _load() -> str | None:
    """Registers the kernel with XLA once; returns why it is unavailable, or None."""
    path = _library_path()
    if path is None:
        return (
            _build_record.not_built_reason() or "the native kernel was not built (install adamjax with pip to build it)"
        )
    mismatch = _build_record.incompatibility()
    if mismatch is not None:  # registering it would stop XLA's CPU backend from starting
        return mismatch
    try:
        library = ctypes.cdll.LoadLibrary(path)
        jax.ffi.register_ffi_target(_TARGET, jax.ffi.pycapsule(library.AdamjaxAdamStep), platform="cpu")
    except (OSError, AttributeError, ValueError, RuntimeError) as error:  # a stale or foreign build
        return f"the native kernel at {path} could not be loaded: {error}"
    return None


@functools.cache
def _load_quantized() -> str | None:
    """Registers the quantized step once; returns why it is unavailable, or None."""
    path = _library_path()
    assert path is not None  # _load found it
    try:
        step = ctypes.cdll.LoadLibrary(path).AdamjaxQuantizedAdamStep
        jax.ffi.register_ffi_target(_QUANTIZED_TARGET, jax.ffi.pycapsule(step), platform="cpu")
    except (OSError, AttributeError, ValueError, RuntimeError) as error:  # a library built before it existed
        return f"the native kernel at {path} has no quantized step ({error}); rebuild adamjax"
    return None


def unavailable_reason() -> str | None:
    """Why the native kernel cannot run in this process, or None when it can.

    It is off when ``ADAMJAX_DISABLE_NATIVE=1`` is set, when the compiled
    library is missing or cannot be loaded, and when JAX sees more than one
    device (the FFI call has no partitioning rule, so sharded arrays would be
    gathered; the pure-JAX path keeps them sharded instead).
    """
    if os.environ.get(_DISABLE_ENV, "") not in ("", "0"):
        return f"{_DISABLE_ENV} is set"
    reason = _load()
    if reason is not None:
        return reason
    if jax.device_count() > 1:
        return "JAX sees more than one device; the pure-JAX path keeps sharded state sharded"
    return None


def instruction_set() -> str | None:
    """Which loops the kernel runs, ``"avx2"`` (AVX2 and FMA) or ``"baseline"``, or None when it is absent.

    The CPU decides, unless ``ADAMJAX_KERNEL_BASELINE=1`` was set before the
    first step, which forces the baseline loops (tests run both).
    """
    if _load() is not None:
        return None
    path = _library_path()
    assert path is not None  # _load found it
    query = ctypes.cdll.LoadLibrary(path).AdamjaxKernelIsa
    query.restype = ctypes.c_char_p
    return query().decode()


def quantized_unavailable_reason() -> str | None:
    """Why the quantized step cannot run in this process, or None when it can (see :func:`unavailable_reason`)."""
    return unavailable_reason() or _load_quantized()


def nearest_codes(table: np.ndarray, x: np.ndarray) -> np.ndarray:
    """The quantized step's nearest-code search on its own: the code of each ``x`` (in ``[-1, 1]``).

    Runs the loops the steps run (AVX2 or baseline); for the tests, which
    compare it with :func:`adamjax._quantize.quantize`'s search.
    """
    reason = quantized_unavailable_reason()
    if reason is not None:
        raise RuntimeError(reason)
    path = _library_path()
    assert path is not None
    search = ctypes.cdll.LoadLibrary(path).AdamjaxNearestCodes
    search.restype = ctypes.c_int
    values = np.ascontiguousarray(table, np.float32)
    points = np.ascontiguousarray(x, np.float32).reshape(-1)
    out = np.empty(points.shape, np.uint8)
    pointer = ctypes.POINTER(ctypes.c_float)
    status = search(
        values.ctypes.data_as(pointer),
        ctypes.c_int64(values.size),
        points.ctypes.data_as(pointer),
        ctypes.c_int64(points.size),
        out.ctypes.data_as(ctypes.POINTER(ctypes.c_uint8)),
    )
    if status != 0:
        raise ValueError(f"the kernel refuses a codebook of {values.size} values")
    return out.reshape(np.shape(x))


def available() -> bool:
    """True when :func:`unavailable_reason` finds nothing in the way."""
    return unavailable_reason() is None


def supports(param_dtype: Any, mu_dtype: Any, nu_dtype: Any) -> bool:
    """Whether the kernel handles this combination of dtypes."""
    return (
        jnp.dtype(param_dtype) in SUPPORTED_PARAM_DTYPES
        and jnp.dtype(mu_dtype) in SUPPORTED_STATE_DTYPES
        and jnp.dtype(nu_dtype) in SUPPORTED_STATE_DTYPES
    )


def _in_groups(
    step: Callable[..., tuple[tuple[jax.Array, ...], ...]],
    columns: tuple[tuple[jax.Array, ...], ...],
    hyper: jax.Array,
    results: int,
    **options: Any,
) -> tuple[tuple[jax.Array, ...], ...]:
    """``step`` over :data:`GROUP` arrays at a time, each column cut alike; its ``results`` columns joined."""
    parts = [
        step(*(column[i : i + GROUP] for column in columns), hyper, **options) for i in range(0, len(columns[0]), GROUP)
    ]
    return tuple(tuple(x for part in parts for x in part[k]) for k in range(results))


def ffi_step(
    params: tuple[jax.Array, ...],
    grads: tuple[jax.Array, ...],
    mus: tuple[jax.Array, ...],
    nus: tuple[jax.Array, ...],
    hyper: jax.Array,
    *,
    coupled: bool,
    decoupled: bool,
    updates: bool = False,
) -> tuple[tuple[jax.Array, ...], tuple[jax.Array, ...], tuple[jax.Array, ...]]:
    """FFI calls over groups of arrays: new ``(params, mus, nus)``, written over the old ones (aliased).

    With ``updates=True`` the first results are the updates ``tx.update``
    returns (``new params - params`` as the chain rounds it), written over the
    gradients; the parameters are read only for a weight decay.

    XLA's compile time grows with the square of one call's operand count (2.1 s
    for a 294-array call against 0.3 s in groups of 16), so the arrays go in
    groups of :data:`GROUP`; a group still shares one pass and one thread pool.
    """
    if len(params) > GROUP:
        flags = {"coupled": coupled, "decoupled": decoupled, "updates": updates}
        new_params, new_mus, new_nus = _in_groups(ffi_step, (params, grads, mus, nus), hyper, 3, **flags)
        return new_params, new_mus, new_nus
    count = len(params)
    if count == 0:
        return (), (), ()
    out_types = [jax.ShapeDtypeStruct(x.shape, x.dtype) for group in (params, mus, nus) for x in group]
    # operand 0 is `hyper`; parameters are operands 1..L, gradients L+1..2L, moments 2L+1..3L
    # and 3L+1..4L. The new parameters overwrite the parameters; the updates, which have the
    # gradients' dtype and shape, overwrite the gradients (element i is read before it is
    # written), so `tx.update` needs no buffer beyond optax's.
    aliases = {1 + count + i: i for i in range(count)} if updates else {1 + i: i for i in range(count)}
    aliases.update({1 + 2 * count + i: count + i for i in range(count)})
    aliases.update({1 + 3 * count + i: 2 * count + i for i in range(count)})
    call = jax.ffi.ffi_call(_TARGET, out_types, input_output_aliases=aliases, vmap_method="broadcast_all")
    outs = call(hyper, *params, *grads, *mus, *nus, coupled=coupled, decoupled=decoupled, updates=updates)
    return tuple(outs[:count]), tuple(outs[count : 2 * count]), tuple(outs[2 * count :])


def ffi_quantized_step(
    params: tuple[jax.Array, ...],
    grads: tuple[jax.Array, ...],
    mu_codes: tuple[jax.Array, ...],
    mu_scales: tuple[jax.Array, ...],
    nu_codes: tuple[jax.Array, ...],
    nu_scales: tuple[jax.Array, ...],
    hyper: jax.Array,
    *,
    bits: int,
    block_size: int,
    mu_map: np.ndarray,
    nu_map: np.ndarray,
    coupled: bool,
    decoupled: bool,
    updates: bool = False,
) -> tuple[tuple[jax.Array, ...], ...]:
    """The quantized step over groups of arrays: new ``(params, mu codes, mu scales, nu codes, nu scales)``.

    Each array's codes and scales have :mod:`adamjax._quantize`'s layout for
    ``bits`` and ``block_size``; ``mu_map`` and ``nu_map`` are the codebooks
    (passed as attributes, so they are constants of the compiled step). Every
    result is written over its operand (aliased); with ``updates=True`` the
    first results are the updates, written over the gradients, as in
    :func:`ffi_step`, whose grouping this follows.
    """
    columns = (params, grads, mu_codes, mu_scales, nu_codes, nu_scales)
    if len(params) > GROUP:
        flags = {"coupled": coupled, "decoupled": decoupled, "updates": updates}
        maps = {"bits": bits, "block_size": block_size, "mu_map": mu_map, "nu_map": nu_map}
        return _in_groups(ffi_quantized_step, columns, hyper, 5, **flags, **maps)
    count = len(params)
    if count == 0:
        return (), (), (), (), ()
    results = (params, mu_codes, mu_scales, nu_codes, nu_scales)
    out_types = [jax.ShapeDtypeStruct(x.shape, x.dtype) for group in results for x in group]
    # Operand 0 is `hyper`; then the six columns of L arrays. Result column k overwrites operand
    # column 0 (parameters; 1, the gradients, in updates mode), 2, 3, 4 or 5.
    sources = (1 if updates else 0, 2, 3, 4, 5)
    aliases = {1 + source * count + i: k * count + i for k, source in enumerate(sources) for i in range(count)}
    call = jax.ffi.ffi_call(_QUANTIZED_TARGET, out_types, input_output_aliases=aliases, vmap_method="broadcast_all")
    outs = call(
        hyper,
        *(x for column in columns for x in column),
        coupled=coupled,
        decoupled=decoupled,
        updates=updates,
        bits=np.int64(bits),
        block_size=np.int64(block_size),
        mu_map=np.asarray(mu_map, np.float32),
        nu_map=np.asarray(nu_map, np.float32),
    )
    return tuple(tuple(outs[k * count : (k + 1) * count]) for k in range(5))


def pack_hyper(values: dict[str, Any]) -> jax.Array:
    """The float32 operand, in :data:`HYPER_FIELDS` order, from a dict of scalars."""
    return jnp.stack([jnp.asarray(values[name], jnp.float32) for name in HYPER_FIELDS])
