"""Adam step time, compile time and memory: adamjax against optax, example_libraries and torch.

Every scenario runs its libraries interleaved in this one process and prints
Markdown tables of medians, min-max and ratios taken from the same run; a
"which path for which model" table and a table of the performance targets
close the run. The main rows are steps written the way users write them
(``benchmarks/realistic.py``): one jitted step that donates parameters and
state and computes the loss's gradient inside, for optax's chains and each
adamjax path, with the first-call (trace + compile + run) time. Extra rows,
labelled "precomputed gradients", time the optimizer alone: the gradients are
passed in, not donated (``torch.optim.Adam`` with ``.grad`` already set), all
float32 and of the same sizes.

Scenarios (``--scenario NAME``, repeatable; default all):

* ``large-leaf``: one array of 2^24 parameters (``--large-log2``), with
  in-run bandwidth probes; the roof is the best streaming rate measured in the
  run, probes and libraries alike; and XLA's memory accounting;
* ``small-leaves``: a 294-array transformer-like model of ~0.6M parameters;
* ``large-leaves``: the same 294 arrays scaled to ~39M parameters, and memory;
* ``many-leaves``: 1,000 arrays;
* ``quantized``: 8- and 4-bit moments (``state_bits``) on the one large array:
  the fused native step against float32 Adam and the pure-JAX quantized path
  (``benchmarks/quantized.py``);
* ``eager-loop``: the scalar quadratic of Adam-from-scratch tutorials, a plain Python loop over the
  triple API (``benchmarks/eager_loop.py``);
* ``sweep``: 64 learning rates x a small MLP in one jitted, vmapped step;
* ``simulator``: the 64-setting simulator grid (``benchmarks/simulator_grid.py``).

Run: ``python benchmarks/suite.py [--quick] [--scenario large-leaf ...]``
(about 20 minutes on 2 CPU cores; ``--quick``, smaller and fewer, about a minute).
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import jax.example_libraries.optimizers as jax_optimizers
import jax.numpy as jnp
import numpy as np
import optax

# This checkout's adamjax first, then the benchmark helpers next to this file.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import _harness as h  # noqa: E402
import eager_loop  # noqa: E402
import quantized  # noqa: E402
import realistic  # noqa: E402
import simulator_grid  # noqa: E402

import adamjax  # noqa: E402
from adamjax import optimizers  # noqa: E402

LR = 1e-3
F32 = jnp.dtype(jnp.float32)
BF16 = jnp.dtype(jnp.bfloat16)


@dataclass
class Settings:
    """Sizes and repetitions for one run (``--quick`` shrinks both)."""

    quick: bool
    large_log2: int
    rounds: int

    @property
    def transformer_blocks(self) -> int:
        return 2 if self.quick else 24

    @property
    def large_width(self) -> int:
        return 256 if self.quick else 368

    @property
    def many_leaves(self) -> int:
        return 100 if self.quick else 1000

    @property
    def first_call_reps(self) -> int:
        return 1 if self.quick else 2

    def steps_for(self, n: int) -> int:
        """Steps per timing sample: about 20 M parameter-steps (0.1-0.5 s), at least 3."""
        return max(3, min(20 if self.quick else 50, int(2e7 / n)))


# --------------------------------------------------------------------------- models


def _block(d: int) -> dict:
    def f32(*shape: int) -> jax.ShapeDtypeStruct:
        return jax.ShapeDtypeStruct(shape, F32)

    attention = {"qkv": f32(d, 3 * d), "qkv_bias": f32(3 * d), "proj": f32(d, d), "proj_bias": f32(d)}
    mlp = {"up": f32(d, 4 * d), "up_bias": f32(4 * d), "down": f32(4 * d, d), "down_bias": f32(d)}
    return {
        "attention": {**attention, "ln_scale": f32(d), "ln_bias": f32(d)},
        "mlp": {**mlp, "ln_scale": f32(d), "ln_bias": f32(d)},
    }


def transformer_like(blocks: int, width: int, vocab: int = 256, context: int = 128) -> dict:
    """Shapes of a small GPT: 12 arrays per block plus 6 (294 arrays for 24 blocks)."""
    d = width
    return {
        "embed": {
            "tokens": jax.ShapeDtypeStruct((vocab, d), F32),
            "positions": jax.ShapeDtypeStruct((context, d), F32),
        },
        "blocks": [_block(d) for _ in range(blocks)],
        "head": {
            "ln_scale": jax.ShapeDtypeStruct((d,), F32),
            "ln_bias": jax.ShapeDtypeStruct((d,), F32),
            "w": jax.ShapeDtypeStruct((d, vocab), F32),
            "b": jax.ShapeDtypeStruct((vocab,), F32),
        },
    }


def assorted_leaves(count: int, width: int = 44) -> list:
    """``count`` arrays cycling through a transformer block's shapes."""
    return list(itertools.islice(itertools.cycle(jax.tree.leaves(_block(width))), count))


def parameter_count(shapes: Any) -> int:
    return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(shapes))


def describe(shapes: Any) -> str:
    return f"{len(jax.tree.leaves(shapes)):,} float32 arrays, {parameter_count(shapes):,} parameters"


def fresh(tree: Any) -> Any:
    """A copy of ``tree`` that a step may donate."""
    return jax.block_until_ready(jax.tree.map(jnp.copy, tree))


# --------------------------------------------------------------------------- steps


@dataclass
class JaxStep:
    """A library's jitted, donating step and the arguments of its first call."""

    jitted: Any
    args: tuple
    advance: Callable[[Any, tuple], tuple]  # (outputs, arguments) -> next arguments
    state_bytes: int

    def loop(self) -> h.Loop:
        return h.Loop(lambda args: self.advance(self.jitted(*args), args), self.args)


def _params_state_grads(out: Any, args: tuple) -> tuple:
    return (*out, args[2])


def donated_step(tx: Any, step: Callable, params: Any, grads: Any) -> JaxStep:
    """``step(params, state, grads) -> (params, state)`` jitted as a careful user does: params and state donated."""
    state = tx.init(params)
    return JaxStep(
        jax.jit(step, donate_argnums=(0, 1)), (params, state, grads), _params_state_grads, h.tree_bytes(state)
    )


def two_calls(tx: Any, params: Any, grads: Any) -> JaxStep:
    """The optax protocol: ``tx.update`` then ``optax.apply_updates``."""

    def step(params, state, grads):
        updates, state = tx.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    return donated_step(tx, step, params, grads)


def optax_adam(params: Any, grads: Any) -> JaxStep:
    return two_calls(optax.adam(LR), params, grads)


def adamjax_apply_step(params: Any, grads: Any, state_dtype: Any = None) -> JaxStep:
    tx = adamjax.adam(LR, mu_dtype=state_dtype, nu_dtype=state_dtype)

    def step(params, state, grads):
        return adamjax.apply_step(tx, grads, state, params)

    return donated_step(tx, step, params, grads)


def adamjax_update(params: Any, grads: Any) -> JaxStep:
    """adamjax as a drop-in for optax: ``tx.update`` then ``optax.apply_updates``."""
    return two_calls(adamjax.adam(LR), params, grads)


def adamjax_flat_triple(params: Any, grads: Any, flat_grads: bool = True) -> JaxStep:
    """The flat triple; its gradients are taken with respect to the flat parameters
    (``jax.grad(lambda flat: loss(flat.unflatten()))(state.params)``, which XLA
    writes straight into one buffer), or given as a tree and concatenated by ``update``."""
    init, update, _ = optimizers.from_transformation(adamjax.adam(LR), flat=True)
    state = init(params)
    if flat_grads:
        grads = jax.block_until_ready(adamjax.FlatParams.from_tree(grads))
    jitted = jax.jit(lambda grads, state: update(0, grads, state), donate_argnums=1)
    return JaxStep(jitted, (grads, state), lambda out, args: (args[0], out), h.tree_bytes(state.inner_state))


def example_libraries_adam(params: Any, grads: Any) -> JaxStep:
    init, update, _ = jax_optimizers.adam(LR)
    state_bytes = 2 * h.tree_bytes(params)  # m and v; the state also holds the parameters
    jitted = jax.jit(update, donate_argnums=2)
    return JaxStep(jitted, (0, grads, init(params)), lambda out, args: (args[0] + 1, args[1], out), state_bytes)


JAX_STEPS: dict[str, Callable[[Any, Any], JaxStep]] = {
    "optax.adam": optax_adam,
    "adamjax.apply_step": adamjax_apply_step,
    "adamjax.apply_step, bf16 state": lambda p, g: adamjax_apply_step(p, g, BF16),
    "adamjax.adam update + apply_updates": adamjax_update,
    "adamjax flat triple": adamjax_flat_triple,
    "adamjax flat triple, tree gradients": lambda p, g: adamjax_flat_triple(p, g, flat_grads=False),
    "example_libraries.adam": example_libraries_adam,
}
OPTAX = "optax.adam"
TORCH_FUSED = "torch Adam fused"


def torch_adam(torch: Any, params: Any, grads: Any, **flavour: Any) -> tuple[h.Loop, int]:
    """``torch.optim.Adam`` over copies of the same arrays, ``.grad`` set once."""
    tensors = [torch.nn.Parameter(torch.from_numpy(np.array(p))) for p in jax.tree.leaves(params)]
    for tensor, grad in zip(tensors, jax.tree.leaves(grads), strict=True):
        tensor.grad = torch.from_numpy(np.array(grad))
    opt = torch.optim.Adam(tensors, lr=LR, **flavour)
    opt.step()  # creates the state
    state_bytes = sum(v.nbytes for s in opt.state.values() for v in s.values() if torch.is_tensor(v))

    def advance(carry: None) -> None:
        opt.step()

    return h.Loop(advance, None), state_bytes


def torch_steps(torch: Any | None) -> dict[str, dict]:
    if torch is None:
        return {}
    return {"torch Adam foreach": {"foreach": True}, TORCH_FUSED: {"fused": True}}


# --------------------------------------------------------------------------- measurements


@dataclass
class Row:
    name: str
    time: h.Stats
    traffic: float  # bytes moved per parameter by the ideal single pass


def traffic_per_parameter(state_bytes: int, n: int, param_bytes: int = 4) -> float:
    """Read gradient and parameter, write parameter, read and write the state."""
    return 3 * param_bytes + 2 * state_bytes / n


def measure_steps(
    shapes: Any, settings: Settings, torch: Any | None, report: h.Report, scenario: str, extra: dict | None = None
) -> list[Row]:
    """Builds every library's step on the same data, reports memory, and times them interleaved."""
    n = parameter_count(shapes)
    params = h.random_like(shapes, seed=0)
    grads = h.random_like(shapes, seed=1)
    loops: dict[str, h.Loop] = {}
    traffic: dict[str, float] = {}
    memory_rows = []
    for name, build in JAX_STEPS.items():
        step = build(fresh(params), grads)
        use = h.memory_use(step.jitted.lower(*step.args).compile())
        needed = h.tree_bytes(step.args)
        memory_rows.append((name, step.state_bytes / n, needed, use))
        report.memory.append((scenario, name, use.peak / needed))
        loops[name] = step.loop()
        traffic[name] = traffic_per_parameter(step.state_bytes, n)
    for name, flavour in torch_steps(torch).items():
        loops[name], state_bytes = torch_adam(torch, params, grads, **flavour)
        traffic[name] = traffic_per_parameter(state_bytes, n)
        memory_rows.append((name, state_bytes / n, None, None))
    for name, (loop, bytes_per_parameter) in (extra or {}).items():
        loops[name] = loop
        traffic[name] = bytes_per_parameter
    del params

    # About 20 M parameter-steps per sample (0.1-0.5 s): enough for small models, few for large ones.
    steps = max(3, min(20 if settings.quick else 50, int(2e7 / n)))
    timed = h.interleave(loops, settings.rounds, steps)
    print_memory(memory_rows, n)
    return [Row(name, timed[name], traffic[name]) for name in loops]


def print_memory(rows: list, n: int) -> None:
    print(
        "\nMemory of one donated step (XLA's `compiled.memory_analysis()`; peak = arguments + outputs - aliased + "
        "temporaries; needed = parameters + gradients + state):\n"
    )
    table = []
    for name, per_param, needed, use in rows:
        if use is None:
            table.append((name, f"{per_param:.2f}", "n/a", "n/a", "n/a", "n/a"))
            continue
        table.append(
            (name, f"{per_param:.2f}", h.mib(needed), h.mib(use.peak), h.mib(use.temp), f"{use.peak / needed:.3f}")
        )
    print(
        h.markdown_table(("variant", "state bytes/param", "needed MiB", "peak MiB", "temp MiB", "peak/needed"), table)
    )
    print(f"\n({n:,} parameters; torch's state is counted from `optimizer.state` after one step.)")


def print_step_table(rows: list[Row], n: int, roof: float | None = None) -> None:
    base = next((r.time.median for r in rows if r.name == OPTAX), None)
    header = ["variant (precomputed gradients)", "median ms", "min-max ms", "vs optax", "GB/s"]
    if roof is not None:
        header.append("of roof")
    table = []
    for row in rows:
        gbs = row.traffic * n / row.time.median / 1e9
        cells = [row.name, h.ms(row.time.median), h.spread(row.time), h.ratio(row.time.median / base), f"{gbs:.1f}"]
        if roof is not None:
            cells.append(f"{gbs / roof:.2f}")
        table.append(cells)
    print(h.markdown_table(header, table))
    print(
        "\n(GB/s: the bytes an ideal single pass moves, 28 per float32 parameter with float32 state, over the median.)"
    )


# --------------------------------------------------------------------------- scenarios


def bandwidth_probes(n: int) -> dict[str, tuple[h.Loop, float]]:
    """Streaming kernels with no Adam in them: what this machine's memory can do."""
    rng = np.random.default_rng(2)
    p, m, v, g = (jnp.asarray(rng.standard_normal(n, dtype=np.float32)) for _ in range(4))
    seven = jax.jit(lambda p, m, v, g: (p + 1e-3 * g, 0.9 * m + g, 0.999 * v + g * g), donate_argnums=(0, 1, 2))
    three = jax.jit(lambda a, b: 0.5 * a + b, donate_argnums=0)
    a, b = (jnp.asarray(rng.standard_normal(n, dtype=np.float32)) for _ in range(2))
    return {
        "probe: p,m,v += f(g) (read 4, write 3)": (h.Loop(lambda c: (*seven(*c), c[3]), (p, m, v, g)), 28.0),
        "probe: a = 0.5 a + b (read 2, write 1)": (h.Loop(lambda c: (three(*c), c[1]), (a, b)), 12.0),
    }


def realistic_rows(
    model: str, shapes: Any, settings: Settings, report: h.Report, reps: int, extra: dict | None = None
) -> tuple[dict[str, realistic.Measured], dict[str, h.Stats]]:
    """Measures every path with the gradient computed in the step; prints the table unless probes need a roof."""
    n = parameter_count(shapes)
    rows, probes = realistic.measure(shapes, settings.rounds, settings.steps_for(n), reps, extra)
    report.summaries.append(realistic.Summary(model, rows))
    realistic.check_paths(report, model, rows)
    return rows, probes


def scenario_large_leaf(settings: Settings, torch: Any | None, report: h.Report) -> None:
    n = 2**settings.large_log2
    rows = 2 ** (settings.large_log2 // 2)
    shapes = jax.ShapeDtypeStruct((rows, n // rows), F32)
    print(f"One float32 {rows:,} x {n // rows:,} matrix, 2^{settings.large_log2} = {n:,} parameters.")
    if n < 2**24:
        print("Note: arrays this small partly stay in the CPU's last-level cache; the roof then measures the cache.")
    probes_loops = bandwidth_probes(n)
    rows, probes = realistic_rows(
        f"one 2^{settings.large_log2} array", shapes, settings, report, settings.first_call_reps, probes_loops
    )
    rates = {name: realistic.traffic(row) * n / row.step.median / 1e9 for name, row in rows.items()}
    rates |= {name: probes_loops[name][1] * n / s.median / 1e9 for name, s in probes.items()}
    roof_name = max(rates, key=rates.__getitem__)
    roof = rates[roof_name]
    print(
        f"\nGradient computed in the step; roof = the best streaming rate of this run, {roof:.1f} GB/s "
        f"({roof_name}); the probes: "
        + ", ".join(f"{name} {probes_loops[name][1] * n / s.median / 1e9:.1f} GB/s" for name, s in probes.items())
        + ".\n"
    )
    realistic.print_table(rows, n, roof)
    for name in (realistic.FUSED_ADAMW, realistic.FUSED_CLIPPED):
        share = realistic.past_gradient(rows[name], rows, n, roof)
        assert share is not None  # the floor rows are always measured
        report.check(
            f"one large array: {name} vs bandwidth roof past the measured gradient",
            ">= 0.90 of roof",
            f"{share:.2f} (whole step {rates[name]:.1f} of {roof:.1f} GB/s)",
            share >= 0.9,
        )

    print("\nPrecomputed gradients (extra rows: the optimizer step alone):")
    rows = measure_steps(shapes, settings, torch, report, "large-leaf", extra=bandwidth_probes(n))
    bandwidth = {r.name: r.traffic * n / r.time.median / 1e9 for r in rows}
    roof_name = max(bandwidth, key=bandwidth.__getitem__)
    roof = bandwidth[roof_name]
    probes_rate = max(rate for name, rate in bandwidth.items() if name.startswith("probe"))
    print(
        f"\nStep time, precomputed gradients; roof = the best streaming rate of these rows, {roof:.1f} GB/s "
        f"({roof_name}; the probes alone: {probes_rate:.1f} GB/s):\n"
    )
    print_step_table(rows, n, roof)
    medians = {r.name: r.time.median for r in rows}
    ours = "adamjax.apply_step"
    report.check(
        "one large leaf, precomputed gradients: adamjax.apply_step vs bandwidth roof",
        ">= 0.90 of roof",
        f"{bandwidth[ours] / roof:.2f} ({bandwidth[ours]:.1f} of {roof:.1f} GB/s)",
        bandwidth[ours] >= 0.9 * roof,
    )
    if TORCH_FUSED in medians:
        vs_torch = medians[ours] / medians[TORCH_FUSED]
        report.check(
            "one large leaf, precomputed gradients: adamjax.apply_step vs torch fused",
            "<= 1.00x step time",
            h.ratio(vs_torch, 3),
            vs_torch <= 1.0,
        )


def step_medians(shapes: Any, settings: Settings, torch: Any | None, report: h.Report, scenario: str) -> dict:
    """Measures and prints every library's step time on ``shapes``; returns the medians by name."""
    rows = measure_steps(shapes, settings, torch, report, scenario)
    print("\nStep time:\n")
    print_step_table(rows, parameter_count(shapes))
    return {r.name: r.time.median for r in rows}


def scenario_small_leaves(settings: Settings, torch: Any | None, report: h.Report) -> None:
    shapes = transformer_like(settings.transformer_blocks, 44)
    leaves = len(jax.tree.leaves(shapes))
    print(f"Transformer-like model: {describe(shapes)}.\n\nGradient computed in the step:\n")
    rows, _ = realistic_rows(f"{leaves} small arrays", shapes, settings, report, settings.first_call_reps)
    realistic.print_table(rows, parameter_count(shapes))
    flat = realistic.FLAT
    for field, what, limit in (("step", "step time", 0.25), ("first", "first call", 0.15)):
        value = realistic.vs_base(rows, flat, field)
        floor = realistic.vs_base(rows, realistic.FLAT_FLOOR, field)
        report.check(
            f"{leaves} small arrays: {flat} {what}",
            f"<= {limit:.2f}x optax",
            f"{h.ratio(value, 3)} (its gradient floor alone: {h.ratio(floor, 3)})",
            value <= limit,
        )
    print("\nPrecomputed gradients (extra rows: the optimizer step alone):")
    step_medians(shapes, settings, torch, report, "small-leaves")


def scenario_large_leaves(settings: Settings, torch: Any | None, report: h.Report) -> None:
    shapes = transformer_like(settings.transformer_blocks, settings.large_width)
    leaves = len(jax.tree.leaves(shapes))
    print(f"Transformer-like model: {describe(shapes)}.\n\nGradient computed in the step:\n")
    rows, _ = realistic_rows(f"{leaves} large arrays", shapes, settings, report, 1)
    realistic.print_table(rows, parameter_count(shapes))
    print("\nPrecomputed gradients (extra rows: the optimizer step alone):")
    step_medians(shapes, settings, torch, report, "large-leaves")


def scenario_many_leaves(settings: Settings, torch: Any | None, report: h.Report) -> None:
    shapes = assorted_leaves(settings.many_leaves)
    print(f"Many arrays: {describe(shapes)}.\n\nGradient computed in the step:\n")
    label = f"{settings.many_leaves:,} arrays"
    rows, _ = realistic_rows(label, shapes, settings, report, 1)
    realistic.print_table(rows, parameter_count(shapes))
    value = realistic.vs_base(rows, realistic.FLAT, "total")
    floor = realistic.vs_base(rows, realistic.FLAT_FLOOR, "total")
    report.check(
        f"{label}: {realistic.FLAT} init + first step",
        "<= 0.20x optax",
        f"{h.ratio(value, 3)} (its gradient floor alone: {h.ratio(floor, 3)})",
        value <= 0.2,
    )


def scenario_quantized(settings: Settings, torch: Any | None, report: h.Report) -> None:
    quantized.scenario(settings, bandwidth_probes, report)


def scenario_eager_loop(settings: Settings, torch: Any | None, report: h.Report) -> None:
    rounds, steps, slow_steps = (3, 200, 5) if settings.quick else (settings.rounds, 500, 20)
    print(
        f"The scalar quadratic (w - 1)^2 from w = 0; {rounds} interleaved rounds of {steps} steps ({slow_steps} for the slow one).\n"
    )
    # Eager example_libraries compiles once per new `i`; start where no run has been.
    samples = eager_loop.measure(eager_loop.scalar_problem, rounds, steps, slow_steps, first_step=1_000_000)
    timed = {name: h.stats(values) for name, values in samples.items()}  # microseconds
    ours, user_jit, upstream = "adamjax.optimizers.adam", "example_libraries.adam + user jit", "example_libraries.adam"
    labels = {
        ours: "adamjax.optimizers.adam, plain Python loop",
        upstream: "example_libraries.adam, plain Python loop",
        user_jit: "example_libraries.adam + user jit",
    }
    table = [
        (
            labels[name],
            f"{s.median:,.1f}",
            f"{s.low:,.1f}-{s.high:,.1f}",
            h.ratio(s.median / timed[user_jit].median),
        )
        for name, s in timed.items()
    ]
    print(h.markdown_table(("variant", "median us/step", "min-max us", "vs user-jitted"), table))
    vs_jit = timed[ours].median / timed[user_jit].median
    speedup = timed[upstream].median / timed[ours].median
    report.check("eager triple loop vs user-jitted", "<= 3x", h.ratio(vs_jit, 3), vs_jit <= 3)
    report.check("eager triple loop vs example_libraries eager", ">= 100x faster", h.ratio(speedup), speedup >= 100)


def scenario_sweep(settings: Settings, torch: Any | None, report: h.Report) -> None:
    members = 64
    widths = (32, 64, 64, 10)
    shapes = [
        {"w": jax.ShapeDtypeStruct((members, a, b), F32), "b": jax.ShapeDtypeStruct((members, b), F32)}
        for a, b in zip(widths[:-1], widths[1:], strict=True)
    ]
    per_member = parameter_count(shapes) // members
    print(f"{members} learning rates x an MLP {widths} ({per_member:,} parameters each), one jitted vmapped step.\n")
    params = h.random_like(shapes, seed=0)
    grads = h.random_like(shapes, seed=1)
    lrs = jnp.asarray(np.logspace(-4, -1, members), jnp.float32)

    def injected(make: Callable, apply: Callable, static_args: tuple = ()) -> h.Loop:
        """``optax.inject_hyperparams``: the learning rate lives in the (vmapped) state."""
        inject = optax.inject_hyperparams(make, static_args=static_args)
        tx = inject(learning_rate=LR)
        state = jax.vmap(lambda lr, p: inject(learning_rate=lr).init(p))(lrs, params)
        state = fresh(state)  # the state holds `lrs` itself, which the donation would delete
        step = jax.jit(jax.vmap(lambda p, s, g: apply(tx, g, s, p)), donate_argnums=(0, 1))
        return h.Loop(lambda c: (*step(*c), c[2]), (fresh(params), state, grads))

    def traced(make: Callable, apply: Callable) -> h.Loop:
        """The optimizer built inside the vmapped step from a traced learning rate."""
        state = jax.vmap(make(LR).init)(fresh(params))
        step = jax.jit(jax.vmap(lambda lr, p, s, g: apply(make(lr), g, s, p)), donate_argnums=(1, 2))
        return h.Loop(lambda c: (c[0], *step(*c), c[3]), (lrs, fresh(params), state, grads))

    def optax_apply(tx, grads, state, params):
        updates, state = tx.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    loops = {
        "optax.adam, inject_hyperparams": injected(optax.adam, optax_apply),
        "adamjax.adam, inject_hyperparams + apply_step": injected(adamjax.adam, adamjax.apply_step),
        # inject_hyperparams also injects `power`; traced, it rules out the kernel and sqrt.
        "adamjax.adam, inject_hyperparams(static power) + apply_step": injected(
            adamjax.adam, adamjax.apply_step, static_args=("power",)
        ),
        "optax.adam, built from traced lr": traced(optax.adam, optax_apply),
        "adamjax.adam, built from traced lr + apply_step": traced(adamjax.adam, adamjax.apply_step),
    }
    timed = h.interleave(loops, settings.rounds, 20 if settings.quick else 200)
    bases = {"inject": timed["optax.adam, inject_hyperparams"], "traced": timed["optax.adam, built from traced lr"]}
    table = []
    for name, s in timed.items():
        base = bases["inject" if "inject" in name else "traced"]
        table.append(
            (name, h.us(s.median), h.spread(s, h.us), h.us(s.median / members), h.ratio(s.median / base.median))
        )
    print(h.markdown_table(("variant", "median us/step", "min-max us", "us/member", "vs optax, same way"), table))


def scenario_simulator(settings: Settings, torch: Any | None, report: h.Report) -> None:
    steps, repeats = (1000, 5) if settings.quick else (10_000, 20)
    timing = simulator_grid.measure(steps, repeats)
    s = h.stats(timing.times)
    print(
        f"{timing.settings} settings (b1 x b2 x eps x power, all traced) x {steps:,} steps in one jit(vmap(simulate)).\n"
    )
    table = [
        (
            f"{timing.settings} x {steps:,}",
            f"{timing.compile_s:.3f}",
            h.ms(s.median),
            h.spread(s),
            f"{timing.settings * steps / s.median:.3g}",
        )
    ]
    print(h.markdown_table(("grid", "compile s", "median ms", "min-max ms", "steps*settings/s"), table))


SCENARIOS: dict[str, tuple[str, Callable]] = {
    "large-leaf": ("One large leaf", scenario_large_leaf),
    "small-leaves": ("~300 small leaves", scenario_small_leaves),
    "large-leaves": ("~300 large leaves", scenario_large_leaves),
    "many-leaves": ("Many leaves: first call", scenario_many_leaves),
    "quantized": ("Quantized moments: the fused step on one large array", scenario_quantized),
    "eager-loop": ("A scalar loop, called eagerly", scenario_eager_loop),
    "sweep": ("Vmapped learning-rate sweep", scenario_sweep),
    "simulator": ("Simulator grid", scenario_simulator),
}


def memory_targets(report: h.Report) -> None:
    worst: dict[str, tuple[float, str]] = {}
    for scenario, name, peak_ratio in report.memory:
        if name.startswith("adamjax") and peak_ratio > worst.get(name, (0.0, ""))[0]:
            worst[name] = (peak_ratio, scenario)
    for name, (peak_ratio, scenario) in worst.items():
        report.check(
            f"no hidden copies: {name}",
            "peak <= 1.05x needed",
            f"{peak_ratio:.3f}x ({scenario})",
            peak_ratio <= 1.05,
        )


def state_dtype_table(report: h.Report) -> None:
    """Bytes of adamjax state per parameter for each (mu_dtype, nu_dtype) setting."""
    params = jax.ShapeDtypeStruct((2**20,), F32)
    table = []
    per_param = {}
    for mu, nu in ((None, None), (BF16, None), (None, BF16), (BF16, BF16)):
        state = jax.eval_shape(adamjax.adam(LR, mu_dtype=mu, nu_dtype=nu).init, params)
        nbytes = sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(state))
        per_param[(mu, nu)] = nbytes / params.size
        name = lambda d: "float32" if d is None else jnp.dtype(d).name  # noqa: E731
        table.append((name(mu), name(nu), f"{per_param[(mu, nu)]:.2f}"))
    print(h.markdown_table(("mu_dtype", "nu_dtype", "state bytes/param"), table))
    print("\n(float32 parameters; the step counter adds 4 bytes per optimizer, not per parameter.)")
    halved = per_param[(BF16, BF16)] / per_param[(None, None)]
    report.check(
        "bfloat16 mu and nu halve state memory", "<= 0.50x float32 state", f"{halved:.2f}x", halved <= 0.5 + 1e-3
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--scenario", action="append", choices=list(SCENARIOS), help="run only this scenario (repeatable)"
    )
    parser.add_argument("--quick", action="store_true", help="smaller sizes and fewer repetitions (a smoke test)")
    parser.add_argument(
        "--large-log2", type=int, choices=range(16, 27), help="large-leaf size, 2^N parameters (default 24, quick 22)"
    )
    parser.add_argument("--rounds", type=int, help="interleaved timing rounds (default 7, quick 3)")
    args = parser.parse_args(argv)
    settings = Settings(
        quick=args.quick,
        large_log2=args.large_log2 or (22 if args.quick else 24),
        rounds=args.rounds or (3 if args.quick else 7),
    )
    torch = h.load_torch(h.cpu_threads())
    print(f"# adamjax benchmark suite{' (--quick)' if args.quick else ''}\n\n{h.environment(torch)}")
    report = h.Report()
    started = time.perf_counter()
    for key in args.scenario or list(SCENARIOS):
        title, run = SCENARIOS[key]
        print(f"\n## {title} (`{key}`)\n", flush=True)
        scenario_start = time.perf_counter()
        run(settings, torch, report)
        print(f"\n[{key}: {time.perf_counter() - scenario_start:.0f} s]", flush=True)
    if report.summaries:
        print("\n## Which path for which model\n")
        print(realistic.recommend(report.summaries))
        print(
            "\n(From the rows above with the gradient computed in the step; ratios against optax's same chain. "
            "First-call times on a shared machine are noisy: compare paths within one run.)"
        )
    print("\n## State dtypes\n")
    state_dtype_table(report)
    memory_targets(report)
    print(f"\n## Targets\n\n{report.table()}")
    print(f"\n[total: {time.perf_counter() - started:.0f} s]")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
