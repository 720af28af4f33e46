"""How fast a vmapped grid of simulations runs: 10,000 steps x 64 settings by default.

The grid crosses 4 values each of b1 and b2 with 2 of eps and 2 moment powers
(64 settings); every hyperparameter, the power included, is traced, so the
whole grid is one ``jit(vmap(simulate))`` call. Prints the compile time, the
median run time over ``--repeats`` calls and the throughput in
steps x settings per second. Not a test: numbers depend on the machine.

Run: ``python benchmarks/simulator_grid.py [--steps 10000] [--repeats 20] [--unroll 1]``
"""

from __future__ import annotations

import argparse
import itertools
import os
import platform
import statistics
import time
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

import adamjax
from adamjax import signals

B1 = (0.5, 0.8, 0.9, 0.95)
B2 = (0.9, 0.99, 0.999, 0.9999)
EPS = (1e-8, 1e-6)
POWERS = (2.0, 4.0)


class GridTiming(NamedTuple):
    """One measurement of the grid: sizes, compile time and run times (seconds)."""

    settings: int
    steps: int
    compile_s: float
    times: list[float]


def measure(steps: int = 10_000, repeats: int = 20, unroll: int = 1) -> GridTiming:
    """Compiles the grid once, runs it once to warm up, then times ``repeats`` runs."""
    grid = np.array(list(itertools.product(B1, B2, EPS, POWERS)), np.float32)
    b1, b2, eps, power = (jnp.asarray(grid[:, i]) for i in range(4))
    grads = signals.swinging(steps, seed=1)

    def simulate_one(b1, b2, eps, power):
        tx = adamjax.adam(1e-3, b1, b2, eps, power=power)
        return adamjax.simulate(tx, grads, unroll=unroll)

    run = jax.jit(jax.vmap(simulate_one))
    start = time.perf_counter()
    compiled = run.lower(b1, b2, eps, power).compile()
    compile_s = time.perf_counter() - start

    jax.block_until_ready(compiled(b1, b2, eps, power))  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        trace = jax.block_until_ready(compiled(b1, b2, eps, power))
        times.append(time.perf_counter() - start)
    if not np.all(np.isfinite(np.asarray(trace.direction))):
        raise SystemExit("the grid produced non-finite steps")
    return GridTiming(len(grid), steps, compile_s, times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--unroll", type=int, default=1, help="lax.scan unroll")
    args = parser.parse_args(argv)

    timing = measure(args.steps, args.repeats, args.unroll)
    median = statistics.median(timing.times)
    work = timing.steps * timing.settings

    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs, jax {jax.__version__}, backend {jax.default_backend()}"
    )
    print(
        f"grid: {timing.settings} settings (b1 x b2 x eps x power) x {args.steps} steps, float32, unroll={args.unroll}"
    )
    print(f"compile time:        {timing.compile_s:.3f} s")
    print(f"median run time:     {median * 1e3:.1f} ms over {args.repeats} runs (min {min(timing.times) * 1e3:.1f} ms)")
    print(f"throughput:          {work / median:.3g} steps*settings per second")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
