"""The ``quantized`` scenario of ``benchmarks/suite.py``: the fused step for 8- and 4-bit moments on one large array.

One float32 matrix of 2^N parameters (4096 x 4096 at the default N = 24),
stepped by jitted steps that donate the parameters and the state, measured
twice: with precomputed gradients (the optimizer alone) and with the gradient
of ``realistic.loss`` (a linear layer per array) computed inside the step, as
the suite's other rows are. Rows: ``optax.adam``; ``adamjax.apply_step`` with
float32, 8-bit and 4-bit moments; the same 8- and 4-bit steps on the pure-JAX
path (traced with ``ADAMJAX_DISABLE_NATIVE=1``); and, for the choice that
``tx.update`` takes the kernel for quantized moments too, ``tx.update`` +
``optax.apply_updates`` with 8-bit moments on the kernel and in pure JAX.

Every row's GB/s counts the bytes one pass of its layout must move per
parameter: read the gradient and the parameter, write the parameter (12), read
and write the state (2 x its bytes per parameter: 8 for float32 moments,
2.03 at 8 bits, 1.06 at 4 bits, scales included), plus the updates' round trip
(8) for the two-call rows and the gradient's pass (8: read p, write g) when it
is computed in the step. The pure-JAX quantized step makes several passes over
memory to do the same work, so its GB/s is an effective rate on those bytes.
The roof is the best streaming rate of the run (the suite's probes, or a row
if one streams faster), and the targets are judged against it and against the
float32 fused step measured in the same run.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import _harness as h
import jax
import jax.numpy as jnp
import optax
import realistic

import adamjax

LR = 1e-3
OPTAX = "optax.adam"
FP32 = "apply_step, float32 state"
FUSED = {8: "apply_step, 8-bit state", 4: "apply_step, 4-bit state"}
PURE = {8: "pure JAX apply_step, 8-bit state", 4: "pure JAX apply_step, 4-bit state"}
UPDATE = "tx.update + apply_updates, 8-bit state"
PURE_UPDATE = "pure JAX tx.update + apply_updates, 8-bit state"
FLOOR = "floor: gradient + SGD"
ROOF_SHARE = 0.8  # the target: this share of the run's bandwidth roof, on the bytes a step moves


@contextlib.contextmanager
def pure_jax() -> Iterator[None]:
    """adamjax's pure-JAX path for whatever is traced inside (the switch is read while tracing)."""
    before = os.environ.get("ADAMJAX_DISABLE_NATIVE")
    os.environ["ADAMJAX_DISABLE_NATIVE"] = "1"
    try:
        yield
    finally:
        if before is None:
            del os.environ["ADAMJAX_DISABLE_NATIVE"]
        else:
            os.environ["ADAMJAX_DISABLE_NATIVE"] = before


@dataclass
class Variant:
    """A row: its optimizer, how it steps, and whether it is traced on the pure-JAX path."""

    make: Callable[[], Any]
    fused: bool  # apply_step, or tx.update + optax.apply_updates
    bits: int | None = None  # quantized moments
    pure: bool = False


VARIANTS: dict[str, Variant] = {
    OPTAX: Variant(lambda: optax.adam(LR), fused=False),
    FP32: Variant(lambda: adamjax.adam(LR), fused=True),
    FUSED[8]: Variant(lambda: adamjax.adam(LR, state_bits=8), fused=True, bits=8),
    FUSED[4]: Variant(lambda: adamjax.adam(LR, state_bits=4), fused=True, bits=4),
    PURE[8]: Variant(lambda: adamjax.adam(LR, state_bits=8), fused=True, bits=8, pure=True),
    PURE[4]: Variant(lambda: adamjax.adam(LR, state_bits=4), fused=True, bits=4, pure=True),
    UPDATE: Variant(lambda: adamjax.adam(LR, state_bits=8), fused=False, bits=8),
    PURE_UPDATE: Variant(lambda: adamjax.adam(LR, state_bits=8), fused=False, bits=8, pure=True),
}
KERNEL = 'custom_call_target="adamjax_quantized_adam_step"'


def state_bytes_per_parameter(make: Callable[[], Any], shapes: Any) -> float:
    state = jax.eval_shape(make().init, shapes)
    held = sum(x.size * jnp.dtype(x.dtype).itemsize for x in jax.tree.leaves(state) if x.size > 1)
    return held / sum(x.size for x in jax.tree.leaves(shapes))


def bytes_per_parameter(name: str, shapes: Any, *, in_step: bool) -> float:
    """What one pass of the row's layout moves per parameter (see the module docstring)."""
    variant = VARIANTS[name]
    moved = 12 + 2 * state_bytes_per_parameter(variant.make, shapes)
    if not variant.fused and name != OPTAX:
        moved += 8  # the updates written by tx.update and read back by optax.apply_updates
    return moved + (realistic.GRADIENT_BYTES if in_step else 0)


def build(name: str, params: Any, grads: Any | None) -> h.Loop:
    """The row's jitted, donated step (compiled here, on the pure path where the row asks) as a timing loop."""
    variant = VARIANTS[name]
    tx = variant.make()
    state = tx.init(params)

    def step(params, state, grads):
        if grads is None:  # the gradient in the step, as the suite's realistic rows
            grads = jax.grad(realistic.loss)(params)
        if variant.fused:
            return adamjax.apply_step(tx, grads, state, params)
        updates, state = tx.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    jitted = jax.jit(step, donate_argnums=(0, 1))
    with pure_jax() if variant.pure else contextlib.nullcontext():
        compiled = jitted.lower(params, state, grads).compile()
    # A row that does not run what its name says would make the table lie.
    if variant.bits is not None and variant.pure == (KERNEL in compiled.as_text()):
        raise RuntimeError(f"{name}: the compiled step {'holds' if variant.pure else 'lacks'} the quantized kernel")
    return h.Loop(lambda carry: (*compiled(carry[0], carry[1], grads), carry[2]), (params, state, None))


def floor_loop(params: Any) -> h.Loop:
    built = realistic.gradient_floor(params)
    return h.Loop(lambda args: built.advance(built.jitted(*args), args), built.args)


@dataclass
class Row:
    name: str
    time: h.Stats
    moved: float  # bytes per parameter


def measure(shapes: Any, settings: Any, *, in_step: bool, probes: dict) -> list[Row]:
    """Builds every row on its own copy of the same parameters and times them interleaved, with the probes."""
    params = h.random_like(shapes, seed=0)
    grads = None if in_step else h.random_like(shapes, seed=1)
    loops, moved = {}, {}
    for name in VARIANTS:
        loops[name] = build(name, jax.block_until_ready(jax.tree.map(jnp.copy, params)), grads)
        moved[name] = bytes_per_parameter(name, shapes, in_step=in_step)
    if in_step:
        loops[FLOOR] = floor_loop(jax.block_until_ready(jax.tree.map(jnp.copy, params)))
        moved[FLOOR] = realistic.GRADIENT_BYTES + realistic.SGD_BYTES
    for name, (loop, per_parameter) in probes.items():
        loops[name], moved[name] = loop, per_parameter
    del params
    timed = h.interleave(loops, settings.rounds, settings.steps_for(parameter_count(shapes)))
    return [Row(name, timed[name], moved[name]) for name in loops]


def parameter_count(shapes: Any) -> int:
    return sum(x.size for x in jax.tree.leaves(shapes))


def past_gradient(row: Row, floor: Row, n: int, roof: float) -> float:
    """As ``realistic.past_gradient``: the floor row plus the bytes beyond SGD's at the roof, over the median."""
    ideal = floor.time.median + (row.moved - floor.moved) * n / (roof * 1e9)
    return ideal / row.time.median


def report_rows(rows: list[Row], n: int, report: h.Report, label: str, *, in_step: bool) -> None:
    by_name = {row.name: row for row in rows}
    rates = {row.name: row.moved * n / row.time.median / 1e9 for row in rows}
    roof_name = max(rates, key=rates.__getitem__)
    roof = rates[roof_name]
    optax_ms, fp32_ms = by_name[OPTAX].time.median, by_name[FP32].time.median
    header = ["variant", "bytes/param", "median ms", "min-max ms", "vs optax", "vs fp32 apply_step", "GB/s", "of roof"]
    if in_step:
        header.append("of roof past the gradient")
    table = []
    for row in rows:
        cells = [
            row.name,
            f"{row.moved:.2f}",
            h.ms(row.time.median),
            h.spread(row.time),
            h.ratio(row.time.median / optax_ms),
            h.ratio(row.time.median / fp32_ms),
            f"{rates[row.name]:.1f}",
            f"{rates[row.name] / roof:.2f}",
        ]
        if in_step:
            optimizer = row.name in VARIANTS
            cells.append(f"{past_gradient(row, by_name[FLOOR], n, roof):.2f}" if optimizer else "n/a")
        table.append(cells)
    print(f"\n{label}; roof = the best streaming rate of these rows, {roof:.1f} GB/s ({roof_name}):\n")
    print(h.markdown_table(header, table))
    for bits in (8, 4):
        row = by_name[FUSED[bits]]
        if in_step:
            share = past_gradient(row, by_name[FLOOR], n, roof)
            measured = f"{share:.2f} past the gradient (whole step {rates[row.name]:.1f} of {roof:.1f} GB/s)"
        else:
            share = rates[row.name] / roof
            measured = f"{share:.2f} ({rates[row.name]:.1f} of {roof:.1f} GB/s on {row.moved:.2f} B/param)"
        where = "gradient in the step" if in_step else "precomputed gradients"
        report.check(
            f"one 2^{n.bit_length() - 1} array, {where}: {row.name} vs bandwidth roof",
            f">= {ROOF_SHARE:.2f} of roof",
            measured,
            share >= ROOF_SHARE,
        )
        ratio = row.time.median / fp32_ms
        report.check(
            f"one 2^{n.bit_length() - 1} array, {where}: {row.name} vs {FP32}",
            "<= 1.00x step time",
            h.ratio(ratio, 3),
            ratio <= 1.0,
        )


def scenario(settings: Any, probes: Callable[[int], dict], report: h.Report) -> None:
    """Both halves of the scenario; ``probes(n)`` builds the suite's bandwidth probes."""
    n = 2**settings.large_log2
    rows = 2 ** (settings.large_log2 // 2)
    shapes = jax.ShapeDtypeStruct((rows, n // rows), jnp.float32)
    print(
        f"One float32 {rows:,} x {n // rows:,} matrix, 2^{settings.large_log2} = {n:,} parameters; "
        f"adamjax.native_status for 8 bits: {adamjax.native_status(adamjax.adam(LR, state_bits=8), shapes)}."
    )
    if n < 2**24:
        print("Note: arrays this small partly stay in the CPU's last-level cache; the roof then measures the cache.")
    for in_step in (False, True):
        label = "Gradient computed in the step" if in_step else "Precomputed gradients (the optimizer step alone)"
        measured = measure(shapes, settings, in_step=in_step, probes=probes(n))
        report_rows(measured, n, report, label, in_step=in_step)
    print(
        "\n(bytes/param: one pass of the row's layout: parameter read and written, gradient read, state read and "
        "written, the updates' round trip for the two-call rows, and the gradient's pass (read p, write g) when it "
        "is in the step. The pure-JAX rows make several passes to do the same work. Of roof past the gradient: the "
        "floor row (gradient + SGD) plus the row's bytes beyond it at the roof, over the median, as in `large-leaf`.)"
    )
