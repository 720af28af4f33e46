"""Time a plain Python training loop (no user ``jit``) over the triple API.

Compares, per step, ``adamjax.optimizers.adam`` called eagerly with
``jax.example_libraries.optimizers.adam`` called eagerly (which compiles
``b ** (i + 1)`` anew for every new ``i``) and with the same upstream update
wrapped in ``jax.jit`` by the user, the fast path upstream users had to know
about. Variants are interleaved round by round in one process, each keeping its
own step counter so every call sees a new ``i``, and each step is waited for
with ``block_until_ready``.

Run: ``python benchmarks/eager_loop.py`` (about 30 s on 2 CPU cores).
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax
import jax.example_libraries.optimizers as upstream
import jax.numpy as jnp
import numpy as np

from adamjax import optimizers


def scalar_problem():
    """One float32 scalar, the gradient of (w - 1)^2 at w = 0."""
    w = jnp.asarray(0.0, jnp.float32)
    return w, 2 * w - 2


def mlp_problem(widths=(32, 64, 64, 64, 64, 10)):
    """Five dense layers: ten float32 leaves (weights and biases)."""
    rng = np.random.default_rng(0)
    params = []
    for fan_in, fan_out in zip(widths[:-1], widths[1:], strict=True):
        params.append(
            {
                "w": jnp.asarray(rng.normal(size=(fan_in, fan_out)) / np.sqrt(fan_in), jnp.float32),
                "b": jnp.zeros(fan_out, jnp.float32),
            }
        )
    grads = jax.tree.map(lambda p: jnp.asarray(rng.normal(size=p.shape), jnp.float32), params)
    return params, grads


class Runner:
    """One variant on one problem: a triple, its state, and its own step counter."""

    def __init__(self, triple, params, grads, jit_update=False, first_step=0):
        init, update, _ = triple
        self.update = jax.jit(update) if jit_update else update
        self.state = init(params)
        self.grads = grads
        self.step = first_step

    def run(self, steps):
        """Seconds per step over ``steps`` new steps."""
        start = time.perf_counter()
        for _ in range(steps):
            self.state = self.update(self.step, self.grads, self.state)
            jax.block_until_ready(self.state)
            self.step += 1
        return (time.perf_counter() - start) / steps


VARIANTS = {
    "adamjax.optimizers.adam": lambda: (optimizers.adam(1e-3), False),
    "example_libraries.adam": lambda: (upstream.adam(1e-3), False),
    "example_libraries.adam + user jit": lambda: (upstream.adam(1e-3), True),
}
SLOW = "example_libraries.adam"


def measure(problem, rounds, steps, slow_steps, first_step):
    params, grads = problem()
    runners = {}
    for name, make in VARIANTS.items():
        triple, jit_update = make()
        # Eager upstream compiles once per new `i` and jax caches the result
        # process-wide, so each problem starts it at indices no run has seen.
        runners[name] = Runner(triple, params, grads, jit_update, first_step if name == SLOW else 0)
        runners[name].run(2)  # first calls: compilation, not timed
    samples = {name: [] for name in VARIANTS}
    for _ in range(rounds):
        for name, runner in runners.items():
            samples[name].append(1e6 * runner.run(slow_steps if name == SLOW else steps))
    return samples


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=9, help="interleaved rounds (default 9)")
    parser.add_argument("--steps", type=int, default=500, help="steps per round, fast variants (default 500)")
    parser.add_argument(
        "--slow-steps", type=int, default=20, help="steps per round, eager example_libraries (default 20)"
    )
    args = parser.parse_args()

    print(f"jax {jax.__version__} on {jax.devices()[0].platform}; {args.rounds} interleaved rounds")
    header = f"{'problem':<8} {'variant':<36} {'median us/step':>15} {'min-max':>22}"
    print(header)
    print("-" * len(header))
    ratios = []
    for k, (label, problem) in enumerate((("scalar", scalar_problem), ("mlp", mlp_problem))):
        samples = measure(problem, args.rounds, args.steps, args.slow_steps, first_step=100_000 * k)
        medians = {name: statistics.median(values) for name, values in samples.items()}
        for name, values in samples.items():
            spread = f"{min(values):.1f}-{max(values):.1f}"
            print(f"{label:<8} {name:<36} {medians[name]:>15.1f} {spread:>22}")
        ours = medians["adamjax.optimizers.adam"]
        ratios.append(
            (label, ours / medians["example_libraries.adam + user jit"], medians["example_libraries.adam"] / ours)
        )
    print()
    print(f"{'problem':<8} {'adamjax / user-jitted':>22} {'example_libraries / adamjax':>28}")
    for label, vs_jit, speedup in ratios:
        print(f"{label:<8} {vs_jit:>22.2f} {speedup:>28.0f}")


if __name__ == "__main__":
    main()
