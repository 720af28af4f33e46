"""Steps written the way users write them: the loss's gradient computed inside the jitted, donated step.

Each path is one ``jax.jit`` that takes the parameters and the optimizer state
(donated), computes ``jax.grad(loss)`` and steps; paths are compared with
optax's same chain (bare ``adam``, bare ``adamw``, clipping plus ``adamw`` with
a warmup-cosine schedule, ``inject_hyperparams(adamw)``) measured in the same
run. Only public APIs are used (``tx.init``/``tx.update``, ``optax``,
``adamjax.apply_step``, ``adamjax.optimizers``), so the rows do not depend on
how adamjax lays out its state.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import _harness as h
import jax
import jax.numpy as jnp
import numpy as np
import optax

import adamjax
from adamjax import optimizers

LR = 1e-3
WEIGHT_DECAY = 1e-4
SCHEDULE = optax.warmup_cosine_decay_schedule(init_value=0.0, peak_value=LR, warmup_steps=100, decay_steps=10_000)


BATCH = 2  # rows of the fixed input each array multiplies


@functools.cache
def _inputs(rows: int) -> np.ndarray:
    return np.random.default_rng(rows).standard_normal((BATCH, rows), dtype=np.float32) / np.sqrt(rows)


def _as_matrix(leaf: jax.Array) -> jax.Array:
    return leaf.reshape(-1, leaf.shape[-1]) if leaf.ndim >= 2 else leaf.reshape(1, -1)


def loss(params: Any) -> jax.Array:
    """Each array as a linear layer applied to a fixed batch of two inputs: ``sum mean((x W)^2)``.

    Cheap (two rows per matrix), so the optimizer's own cost shows, yet every
    gradient is what a model's is: a matrix product ``x^T dy`` written to its
    own buffer. (With a loss that is elementwise in the parameters, such as
    ``mean((W - 0.5)^2)``, XLA fuses the gradient into optax's update loop and
    never writes it; no real model's gradient is elementwise in its weights.)
    """
    total = jnp.zeros([], jnp.float32)
    for leaf in jax.tree.leaves(params):
        w = _as_matrix(leaf)
        total = total + jnp.mean(jnp.square(jnp.asarray(_inputs(w.shape[0])) @ w))
    return total


@dataclass
class Built:
    """A path's jitted step, the arguments of its first call and how to advance them."""

    jitted: Any
    args: tuple
    advance: Callable[[Any, tuple], tuple]

    def loop(self) -> h.Loop:
        return h.Loop(lambda args: self.advance(self.jitted(*args), args), self.args)


def _outputs(out: Any, args: tuple) -> tuple:
    return tuple(out)


def two_calls(tx: optax.GradientTransformation, params: Any) -> Built:
    def step(params, state):
        grads = jax.grad(loss)(params)
        updates, state = tx.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    return Built(jax.jit(step, donate_argnums=(0, 1)), (params, tx.init(params)), _outputs)


def fused(tx: optax.GradientTransformation, params: Any) -> Built:
    def step(params, state):
        return adamjax.apply_step(tx, jax.grad(loss)(params), state, params)

    return Built(jax.jit(step, donate_argnums=(0, 1)), (params, tx.init(params)), _outputs)


def classic_triple(params: Any) -> Built:
    init, update, get_params = optimizers.adam(LR)

    def step(i, state):
        return update(i, jax.grad(loss)(get_params(state)), state)

    return Built(jax.jit(step, donate_argnums=1), (0, init(params)), lambda out, args: (args[0] + 1, out))


def flat_triple(params: Any) -> Built:
    init, update, _ = optimizers.from_transformation(adamjax.adam(LR), flat=True)

    def step(state):
        return update(0, jax.grad(lambda flat: loss(flat.unflatten()))(state.params), state)

    return Built(jax.jit(step, donate_argnums=0), (init(params),), lambda out, args: (out,))


def gradient_floor(params: Any) -> Built:
    """The loss's gradient and a plain SGD step on the tree: the least any optimizer's step can cost here."""

    def step(params):
        return jax.tree.map(lambda p, g: p - LR * g, params, jax.grad(loss)(params))

    return Built(jax.jit(step, donate_argnums=0), (params,), lambda out, args: (out,))


def flat_gradient_floor(params: Any) -> Built:
    """The same floor for the flat triple: the gradient w.r.t. the flat buffer, then one SGD pass over it."""
    init, update, _ = optimizers.from_transformation(optax.sgd(LR), flat=True)

    def step(state):
        return update(0, jax.grad(lambda flat: loss(flat.unflatten()))(state.params), state)

    return Built(jax.jit(step, donate_argnums=0), (init(params),), lambda out, args: (out,))


def clipped(adamw: Callable) -> optax.GradientTransformation:
    return optax.chain(optax.clip_by_global_norm(1.0), adamw(SCHEDULE, weight_decay=WEIGHT_DECAY))


def injected(adamw: Callable) -> optax.GradientTransformation:
    return optax.inject_hyperparams(adamw)(learning_rate=LR, weight_decay=WEIGHT_DECAY)


OPTAX_ADAM, OPTAX_ADAMW, OPTAX_CLIPPED, OPTAX_INJECTED = (
    "optax.adam",
    "optax.adamw",
    "optax clip + adamw(schedule)",
    "optax.inject_hyperparams(optax.adamw)",
)
DROP_IN = "adamjax.adam: update + apply_updates"
CLASSIC = "optimizers.adam triple, user jit"
FLAT = "flat triple, flat gradients"
FUSED_ADAMW = "apply_step(adamjax.adamw)"
FUSED_CLIPPED = "apply_step(clip + adamjax.adamw(schedule))"
FUSED_INJECTED = "apply_step(inject_hyperparams(adamjax.adamw))"
FLOOR = "floor: gradient + SGD, tree"
FLAT_FLOOR = "floor: flat gradient + SGD, flat triple"


@dataclass
class Path:
    base: str  # the optax row with the same chain
    build: Callable[[Any], Built]
    # Bytes per parameter beyond Adam's single pass: clipping reads the gradients again (+4); an SGD pass
    # (read p and g, write p: 12 bytes) moves 16 fewer than Adam's 28.
    extra_bytes: int = 0


PATHS: dict[str, Path] = {
    OPTAX_ADAM: Path(OPTAX_ADAM, lambda p: two_calls(optax.adam(LR), p)),
    OPTAX_ADAMW: Path(OPTAX_ADAMW, lambda p: two_calls(optax.adamw(LR, weight_decay=WEIGHT_DECAY), p)),
    OPTAX_CLIPPED: Path(OPTAX_CLIPPED, lambda p: two_calls(clipped(optax.adamw), p), 4),
    OPTAX_INJECTED: Path(OPTAX_INJECTED, lambda p: two_calls(injected(optax.adamw), p)),
    DROP_IN: Path(OPTAX_ADAM, lambda p: two_calls(adamjax.adam(LR), p)),
    "adamjax.adamw: update + apply_updates": Path(
        OPTAX_ADAMW, lambda p: two_calls(adamjax.adamw(LR, weight_decay=WEIGHT_DECAY), p)
    ),
    "adamjax clip + adamw(schedule): update + apply_updates": Path(
        OPTAX_CLIPPED, lambda p: two_calls(clipped(adamjax.adamw), p), 4
    ),
    FUSED_ADAMW: Path(OPTAX_ADAMW, lambda p: fused(adamjax.adamw(LR, weight_decay=WEIGHT_DECAY), p)),
    FUSED_CLIPPED: Path(OPTAX_CLIPPED, lambda p: fused(clipped(adamjax.adamw), p), 4),
    FUSED_INJECTED: Path(OPTAX_INJECTED, lambda p: fused(injected(adamjax.adamw), p)),
    CLASSIC: Path(OPTAX_ADAM, classic_triple),
    FLAT: Path(OPTAX_ADAM, flat_triple),
    # Not optimizers one would pick: the cost of the loss's gradient alone (plus an SGD pass, 12 bytes per
    # parameter instead of Adam's 28), the floor under every Adam row of the same layout.
    FLOOR: Path(OPTAX_ADAM, gradient_floor, -16),
    FLAT_FLOOR: Path(OPTAX_ADAM, flat_gradient_floor, -16),
}


@dataclass
class Measured:
    """One path in one scenario: step time, init time and first-call time (seconds)."""

    name: str
    base: str
    step: h.Stats
    init: h.Stats
    first: h.Stats
    extra_bytes: int


def measure(
    shapes: Any, rounds: int, steps: int, reps: int, extra: dict | None = None
) -> tuple[dict[str, Measured], dict[str, h.Stats]]:
    """First calls of every path (``reps`` rotations, caches cleared), then their steps interleaved.

    A first call is the build (optimizer and state initialisation) and then the
    first step (trace, compile, run). Before each rotation the caches are
    cleared and the loss's gradient is traced once on these shapes, so that no
    path pays for warming up JAX's own tracing caches. The step timings reuse
    the last rotation's compiled steps.
    """
    params = h.random_like(shapes, seed=0)
    names = list(PATHS)
    inits: dict[str, list[float]] = {n: [] for n in names}
    firsts: dict[str, list[float]] = {n: [] for n in names}
    built: dict[str, Built] = {}
    for r in range(reps):
        jax.clear_caches()
        jax.make_jaxpr(jax.grad(loss))(params)
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            owned = jax.block_until_ready(jax.tree.map(jnp.copy, params))
            start = time.perf_counter()
            step = PATHS[name].build(owned)
            jax.block_until_ready(step.args)
            ready = time.perf_counter()
            step.args = step.advance(jax.block_until_ready(step.jitted(*step.args)), step.args)
            done = time.perf_counter()
            inits[name].append(ready - start)
            firsts[name].append(done - ready)
            built[name] = step
    del params
    loops = {name: step.loop() for name, step in built.items()}
    for name, (loop, _) in (extra or {}).items():
        loops[name] = loop
    timed = h.interleave(loops, rounds, steps)
    rows = {
        name: Measured(
            name, PATHS[name].base, timed[name], h.stats(inits[name]), h.stats(firsts[name]), PATHS[name].extra_bytes
        )
        for name in names
    }
    return rows, {name: timed[name] for name in (extra or {})}


ADAM_BYTES = 28.0  # read g, p, m, v; write p, m, v (float32)
GRADIENT_BYTES = 8.0  # the loss's gradient pass: read p, write g


SGD_BYTES = 12.0  # the floor rows' update: read p, g; write p


def floor_of(row: Measured) -> str:
    """The floor row under ``row``: the same layout's gradient, plus an SGD pass."""
    return FLAT_FLOOR if row.name.startswith("flat") else FLOOR


def past_gradient(row: Measured, rows: dict[str, Measured], n: int, roof: float) -> float | None:
    """Share of the roof the optimizer reaches once the gradient's measured cost is set aside.

    The ideal step is the floor row (this layout's gradient plus an SGD pass,
    measured in the same run) plus the bytes the optimizer moves beyond SGD's
    12 per parameter, streamed at the roof: ``ideal / median``. ``None`` for
    the floor rows themselves, or when the run has no floor row.
    """
    floor = rows.get(floor_of(row))
    if floor is None or row.name.startswith("floor"):
        return None
    ideal = floor.step.median + (ADAM_BYTES + row.extra_bytes - SGD_BYTES) * n / (roof * 1e9)
    return ideal / row.step.median


def traffic(row: Measured) -> float:
    """Bytes per parameter an ideal step moves: the gradient pass, Adam's single pass, clipping's extra read."""
    return GRADIENT_BYTES + ADAM_BYTES + row.extra_bytes


def print_table(rows: dict[str, Measured], n: int, roof: float | None = None) -> None:
    header = [
        "variant",
        "compared with",
        "median ms",
        "min-max ms",
        "step vs optax",
        "init s",
        "first step s",
        "first step vs optax",
        "init + first vs optax",
    ]
    if roof is not None:
        header += ["GB/s", "of roof", "of roof past the gradient"]
    table = []
    for row in rows.values():
        cells = [
            row.name,
            "itself" if row.base == row.name else row.base,
            h.ms(row.step.median),
            h.spread(row.step),
            h.ratio(vs_base(rows, row.name, "step")),
            f"{row.init.low:.3f}",
            f"{row.first.low:.3f}",
            h.ratio(vs_base(rows, row.name, "first")),
            h.ratio(vs_base(rows, row.name, "total")),
        ]
        if roof is not None:
            gbs = traffic(row) * n / row.step.median / 1e9
            share = past_gradient(row, rows, n, roof)
            cells += [f"{gbs:.1f}", f"{gbs / roof:.2f}", "n/a" if share is None else f"{share:.2f}"]
        table.append(cells)
    print(h.markdown_table(header, table))
    note = (
        "\n(The gradient is computed inside each jitted, donated step. Ratios are against optax's same chain, "
        "measured in this run, from each row's fastest sample (step) and least of its cold starts (init, first "
        "step): on a shared machine noise only adds time, and two rows running the same computation then read "
        "1.00x rather than whichever drew less noise. First step: trace + compile + run after "
        "`jax.clear_caches()`; init: building the optimizer and its state."
    )
    if roof is not None:
        note += (
            f" GB/s: {GRADIENT_BYTES + ADAM_BYTES:.0f} bytes per float32 parameter (the gradient pass, read p and "
            f"write g, then Adam's single pass), {GRADIENT_BYTES + ADAM_BYTES + 4:.0f} with clipping, which reads "
            "the gradients once more, over the median step. Of roof past the gradient: the floor row of the same "
            "layout (the gradient and an SGD pass, measured here) plus the optimizer's bytes beyond SGD's 12 at the "
            "roof, over the median step: how close the optimizer itself comes to the roof, since the gradient of a "
            "linear layer does not stream at it."
        )
    print(note + ")")


def vs_base(rows: dict[str, Measured], name: str, field: str) -> float:
    """``name``'s ``field`` (``step``, ``first`` or ``total`` = init + first) over its optax row's, fastest samples."""
    row, base = rows[name], rows[rows[name].base]
    if field == "total":
        return (row.init.low + row.first.low) / (base.init.low + base.first.low)
    return getattr(row, field).low / getattr(base, field).low


def check_paths(report: h.Report, label: str, rows: dict[str, Measured]) -> None:
    """No path slower than optax: the drop-in and the classic triple, step and first call."""
    for name in (DROP_IN, CLASSIC):
        for field, what in (("step", "step time"), ("first", "first call")):
            value = vs_base(rows, name, field)
            report.check(f"{label}: {name} {what}", "<= 1.00x optax", h.ratio(value, 3), value <= 1.0)


@dataclass
class Summary:
    """What one scenario measured, for the closing "which path for which model" table."""

    model: str
    rows: dict[str, Measured]


def recommend(summaries: list[Summary]) -> str:
    """The "which path for which model" table, computed from the measured rows."""
    table = []
    for summary in summaries:
        rows = summary.rows
        ours = [name for name in rows if not name.startswith(("optax", "floor"))]
        fastest = min(ours, key=lambda n: vs_base(rows, n, "step"))
        quickest = min(ours, key=lambda n: vs_base(rows, n, "total"))
        slower = [n for n in ours if vs_base(rows, n, "step") > 1.0]
        table.append(
            (
                summary.model,
                f"{fastest} ({h.ratio(vs_base(rows, fastest, 'step'))})",
                f"{quickest} ({h.ratio(vs_base(rows, quickest, 'total'))})",
                ", ".join(f"{n} ({h.ratio(vs_base(rows, n, 'step'))})" for n in slower) or "none",
            )
        )
    header = ("model", "fastest step (vs optax's same chain)", "quickest init + first step", "steps slower than optax")
    return h.markdown_table(header, table)
