"""A hyperparameter sweep in one compiled call: ``jax.vmap`` over Adam's b2 and moment power.

For each of the long swinging and noisy signals, 8 values of ``b2`` times 3 moment powers
(24 settings) run for 10,000 steps in a single ``jit(vmap(simulate))`` call:
the optimizer is built from traced hyperparameters inside the vmapped
function. The figure shows, for the last 1,000 steps, the mean step
``m_hat / (v_hat^(1/p) + eps)`` and how much it jitters, against ``1 - b2``.

Run: ``python examples/hyperparameter_sweep.py [--out figures] [--steps 10000]``
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from matplotlib.figure import Figure
from tqdm import tqdm

import adamjax
from adamjax import plot, signals

B2 = (0.9, 0.95, 0.99, 0.995, 0.999, 0.9995, 0.9999, 0.99995)
POWERS = (2.0, 3.0, 4.0)
SIGNALS = {
    "swinging": lambda steps: signals.swinging(steps, seed=1),
    "swinging_soft": lambda steps: signals.swinging_soft(steps, seed=1),
    "noisy_line": lambda steps: signals.noisy_line(steps, seed=1),
}


def simulate_one(grads: jax.Array, b1: jax.Array, b2: jax.Array, eps: jax.Array, power: jax.Array) -> adamjax.Trace:
    """One setting; called under vmap, so every hyperparameter is a tracer."""
    return adamjax.simulate(adamjax.adam(1e-3, b1, b2, eps, power=power), grads)


sweep = jax.jit(jax.vmap(simulate_one, in_axes=(None, 0, 0, 0, 0)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("--out", default="figures", help="directory for the PNG files (created if missing)")
    parser.add_argument("--steps", type=int, default=10_000, help="steps per run")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    grid_b2, grid_power = (np.array(x, np.float32).ravel() for x in np.meshgrid(B2, POWERS, indexing="ij"))
    settings = len(grid_b2)
    b1 = jnp.full(settings, 0.9, jnp.float32)
    eps = jnp.full(settings, 1e-8, jnp.float32)
    last = slice(-min(1000, args.steps), None)

    fig = Figure(figsize=(11, 3.2 * len(SIGNALS)), layout="constrained")
    axes = fig.subplots(len(SIGNALS), 2, squeeze=False)
    traces = {}
    for row, name in enumerate(tqdm(SIGNALS, desc="sweep", unit="signal")):
        grads = SIGNALS[name](args.steps)
        start = time.perf_counter()
        trace = jax.block_until_ready(sweep(grads, b1, jnp.asarray(grid_b2), eps, jnp.asarray(grid_power)))
        seconds = time.perf_counter() - start
        traces[name] = trace
        steps = np.asarray(trace.direction)[:, last]
        mean = steps.mean(axis=1).reshape(len(B2), len(POWERS))
        jitter = steps.std(axis=1).reshape(len(B2), len(POWERS))
        note = " (including compilation)" if row == 0 else ""
        print(f"{name}: {settings} settings x {args.steps} steps in {seconds:.3f} s{note}")
        print("   b2      " + "  ".join(f"p={p:g}: mean  std " for p in POWERS))
        for i, b2 in enumerate(B2):
            print(f"  {b2:<8g}" + "  ".join(f"{mean[i, j]:9.3f} {jitter[i, j]:5.3f}" for j in range(len(POWERS))))
        for j, power in enumerate(POWERS):
            axes[row, 0].plot(1 - np.array(B2), mean[:, j], marker="o", label=f"p={power:g}")
            axes[row, 1].plot(1 - np.array(B2), jitter[:, j], marker="o", label=f"p={power:g}")
        axes[row, 0].set_ylabel(f"{name}\nmean step, last {steps.shape[1]}")
        axes[row, 1].set_ylabel("std of the step")
        for ax in axes[row]:
            ax.set_xscale("log")
            ax.grid(True, alpha=0.4)
    for ax in axes[-1]:
        ax.set_xlabel("1 - b2")
    axes[0, 0].legend()
    fig.suptitle("Adam's step against b2 and the moment's power (one vmapped call per signal)")
    fig.savefig(out / "hyperparameter_sweep.png", dpi=100)

    chosen = [B2.index(b2) * len(POWERS) for b2 in (0.9, 0.99, 0.999)]  # power 2
    subset = jax.tree.map(lambda x: x[np.array(chosen)], traces["swinging"])
    curves = plot.compare(
        subset,
        labels=[f"b2={B2[i // len(POWERS)]:g}" for i in chosen],
        fields=("denom", "direction"),
        window=min(200, args.steps),
        title="swinging: Adam with three b2 values (from the same sweep)",
    )
    curves.savefig(out / "hyperparameter_sweep_traces.png", dpi=100)
    print(f"wrote {out}/hyperparameter_sweep.png and {out}/hyperparameter_sweep_traces.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
