"""What :func:`adamjax.plot.compare` accepts, as traces: any optax transformation run on a gradient signal.

One containing an adamjax core is simulated with its internals; any other is
run recording only its updates and parameters.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import jax
import numpy as np

if TYPE_CHECKING:
    from adamjax._simulate import Trace


def _has_core(tx: Any, grad: Any, params: Any) -> bool:
    """Whether one update of ``tx`` runs an adamjax core (traced abstractly: nothing is computed)."""
    import jax.numpy as jnp

    from adamjax import _core

    dtype = jnp.asarray(grad).dtype
    example = jnp.zeros(np.shape(grad)[1:], dtype) if params is None else jnp.asarray(params, dtype)
    # Another library's code may rely on standard promotion (optax's radam mixes a Python float and an int32).
    with _core.record_steps() as recorded, jax.numpy_dtype_promotion("standard"):
        jax.eval_shape(lambda p: tx.update(p, tx.init(p), p), example)
    return bool(recorded)


def _updates_only(tx: Any, grads: Any, params: Any) -> Trace:
    """Any optax transformation on a gradient signal: what it does without an adamjax core to read.

    The gradients, updates and parameters at every step (open loop, one
    ``jax.lax.scan``); the moments, denominator and direction are ``None``.
    """
    import jax.numpy as jnp

    from adamjax._simulate import Trace

    grads = jnp.asarray(grads)
    start = jnp.zeros(grads.shape[1:], grads.dtype) if params is None else jnp.asarray(params, grads.dtype)

    def body(carry, grad):
        theta, state = carry
        update, state = tx.update(grad, state, theta)
        theta = theta + update
        return (theta, state), (update, theta)

    with jax.numpy_dtype_promotion("standard"):  # as in _has_core: the promotion rules it was written for
        _, (updates, thetas) = jax.lax.scan(body, (start, tx.init(start)), grads)
    return Trace(grads, None, None, None, None, None, None, updates, thetas)  # type: ignore[arg-type]


def _run_one(tx: Any, grads: Any, params: Any) -> Trace:
    from adamjax._simulate import simulate

    if _has_core(tx, grads, params):
        return simulate(tx, grads, params=params)
    return _updates_only(tx, grads, params)


def _as_runs(runs: Any, grads: Any, labels: Sequence[str] | None, params: Any = None) -> dict[str, dict[str, Trace]]:
    """``{signal name: {run label: Trace}}`` from what :func:`compare` accepts."""
    from adamjax import _core
    from adamjax._simulate import Trace

    if isinstance(runs, Trace):
        if labels is None:
            raise ValueError(
                "`adamjax.plot.compare(trace, labels=...)`: a single Trace is read as a stack of runs (its leading "
                "axis, as `jax.vmap` returns); pass one label per run, or pass a mapping {label: trace}."
            )
        labels = list(labels)
        count = np.shape(runs.grad)[0]
        if len(labels) != count:
            raise ValueError(
                f"`adamjax.plot.compare(labels=...)` needs {count} labels (one per run); got {len(labels)}."
            )
        runs = {label: jax.tree.map(lambda x, i=i: x[i], runs) for i, label in enumerate(labels)}
    elif labels is not None:
        raise ValueError("`adamjax.plot.compare(labels=...)` is only for a stacked Trace; a mapping has its keys.")
    if not isinstance(runs, Mapping) or not runs:
        raise ValueError(
            "`adamjax.plot.compare(runs)` needs a non-empty mapping {name: optimizer, config or Trace}; "
            f"got {type(runs).__name__}."
        )
    if grads is None:
        signal_map: dict[str, Any] = {}
    elif isinstance(grads, Mapping):
        signal_map = dict(grads)
    else:
        signal_map = {"": grads}

    def optimizer(name: str, value: Any) -> Any:
        if isinstance(value, _core.AdamConfig):
            return _core.transformation(value)
        if isinstance(value, Mapping):
            from adamjax import scale_by_adam

            return scale_by_adam(**value)
        if callable(getattr(value, "init", None)) and callable(getattr(value, "update", None)):
            return value
        raise TypeError(
            f"`adamjax.plot.compare(runs=...)`: {name!r} must be a Trace, an optax GradientTransformation, an "
            f"adamjax.AdamConfig or a dict of scale_by_adam arguments; got {type(value).__name__}."
        )

    if not signal_map:
        traces = {}
        for name, value in runs.items():
            if not isinstance(value, Trace):
                raise ValueError(
                    f"`adamjax.plot.compare(runs, grads=...)`: {name!r} is an optimizer, so pass the gradient "
                    "signal(s) to run it on as `grads`."
                )
            traces[name] = value
        return {"": traces}
    built = {name: value if isinstance(value, Trace) else optimizer(name, value) for name, value in runs.items()}
    return {
        signal: {
            name: value if isinstance(value, Trace) else _run_one(value, g, params) for name, value in built.items()
        }
        for signal, g in signal_map.items()
    }
