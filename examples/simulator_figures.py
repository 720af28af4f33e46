"""The seed simulators' figures, drawn by adamjax and written to PNG files.

Seed 000 fed short gradient patterns through Adam and plotted the gradient,
the bias-corrected first moment, the root of the second moment, their trends
and the step; it also tried a 4th-power moment with its own decay. Seed 002
ran 10,000 steps of swinging, noisy gradients and looked at the first and the
last 200 steps, and asked what a centered second moment would change.

Run: ``python examples/simulator_figures.py [--out figures]``
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from tqdm import tqdm

import adamjax
from adamjax import plot, signals

EPS_SEED002 = 1e-7  # seed 002's epsilon


def seed000_figure(signal: Callable[[], object], title: str) -> Callable[[], object]:
    def draw():
        trace = adamjax.simulate(adamjax.scale_by_adam(0.9, 0.999, 1e-8), signal())
        return plot.trace(trace, title=f"Adam simulator: {title}")

    return draw


def seed000_power4():
    # Seed 000's toy model: a 4th-power moment and 4th root with its own decay 0.99.
    grads = signals.sine(300)
    runs = {
        "Adam (p=2, b2=0.999)": adamjax.simulate(adamjax.scale_by_adam(0.9, 0.999, 1e-8), grads),
        "p=4, b2=0.99": adamjax.simulate(adamjax.scale_by_adam(0.9, 0.99, 1e-8, power=4.0), grads),
        "p=2, b2=0.99": adamjax.simulate(adamjax.scale_by_adam(0.9, 0.99, 1e-8), grads),
    }
    return plot.compare(runs, fields=("grad", "denom", "direction"), title="p-th power moment on a sine")


def seed002_figure(signal: Callable[[], object], title: str) -> Callable[[], object]:
    def draw():
        trace = adamjax.simulate(adamjax.scale_by_adam(0.9, 0.999, EPS_SEED002), signal())
        return plot.windows(trace, 200, title=title)

    return draw


def seed002_centered():
    grads = signals.swinging_soft(10_000, seed=1)
    runs = {
        "Adam": adamjax.simulate(adamjax.scale_by_adam(0.9, 0.999, EPS_SEED002), grads),
        "centered (AdaBelief)": adamjax.simulate(adamjax.scale_by_adam(0.9, 0.999, EPS_SEED002, centered=True), grads),
    }
    return plot.compare(runs, fields=("denom", "direction"), window=200, title="centered second moment, swinging_soft")


FIGURES: dict[str, Callable[[], object]] = {
    "seed000_uniform": seed000_figure(lambda: signals.uniform(200, seed=0), "uniform random gradients"),
    "seed000_patterns": seed000_figure(signals.patterns, "1/0, blocks and ±0.001 patterns"),
    "seed000_pulses": seed000_figure(signals.pulses, "pulses of decreasing height"),
    "seed000_sine": seed000_figure(lambda: signals.sine(300), "sine"),
    "seed000_power4": seed000_power4,
    "seed002_swinging": seed002_figure(lambda: signals.swinging(10_000, seed=1), "swinging (noise 1.0)"),
    "seed002_swinging_soft": seed002_figure(lambda: signals.swinging_soft(10_000, seed=1), "swinging_soft (noise 0.5)"),
    "seed002_noisy_line": seed002_figure(lambda: signals.noisy_line(10_000, seed=1), "noisy line at 5"),
    "seed002_centered": seed002_centered,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="figures", help="directory for the PNG files (created if missing)")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for name, draw in tqdm(FIGURES.items(), desc="figures", unit="figure"):
        draw().savefig(out / f"{name}.png", dpi=100)
    print(f"wrote {len(FIGURES)} figures to {out}/: {', '.join(FIGURES)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
