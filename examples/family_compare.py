"""How do members of the Adam family turn the same gradients into steps? One figure, written to a PNG file.

Every optimizer is built with the same learning rate and fed the same two
gradient streams from ``adamjax.signals``: a gradient that swings between
signs around a small mean, and a noisy one whose mean is small against its
noise. Each member gets a row showing its step (the update over the learning
rate) with Adam drawn behind it in grey, so a reader sees where a member
damps the swings, follows the noise, or steps differently from Adam.

The members are optax gradient transformations: adamjax's own and optax's
(``optax.radam``, ``optax.contrib.adopt``, ``optax.contrib.ademamix``,
``optax.lamb``); ``adamjax.plot.compare`` runs any of them.

Run: ``python examples/family_compare.py --out docs/figures/family_compare.png``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import optax

import adamjax
from adamjax import plot, signals


def members(learning_rate: float) -> dict[str, optax.GradientTransformation]:
    """The members drawn, each at its authors' or framework's default settings."""
    return {
        "adam": adamjax.adam(learning_rate),
        "amsgrad": adamjax.amsgrad(learning_rate),
        "adabelief": adamjax.adabelief(learning_rate),
        "nadam": adamjax.nadam(learning_rate),
        "radam (optax)": optax.radam(learning_rate),
        "adopt (optax.contrib)": optax.contrib.adopt(learning_rate),
        "ademamix (optax.contrib)": optax.contrib.ademamix(learning_rate, b3=0.999),
        "lamb (optax)": optax.lamb(learning_rate),
    }


def figure(steps: int = 2000, window: int = 300, learning_rate: float = 1e-3, seed: int = 1):
    """The comparison: the last ``window`` of ``steps`` steps of each signal, one row per member."""
    grads = {
        "swinging (signs change)": signals.swinging(steps, seed=seed),
        "noisy (mean 0.5, noise 2)": signals.noisy_line(steps, intercept=0.5, noise=2.0, seed=seed),
    }
    return plot.compare(
        members(learning_rate),
        grads,
        layout="runs",
        learning_rate=learning_rate,
        params=1.0,
        spans=[(steps - window, steps, f"last {window} of {steps} steps")],
        title="How does each member of the Adam family step on a swinging and on a noisy gradient?",
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("--out", default="family_compare.png", help="the PNG file to write (its folder is created)")
    parser.add_argument("--steps", type=int, default=2000, help="length of each gradient signal")
    parser.add_argument("--window", type=int, default=300, help="the last steps drawn")
    parser.add_argument("--learning-rate", type=float, default=1e-3, help="the learning rate of every member")
    parser.add_argument("--random-state", type=int, default=1, help="draws the signals' noise")
    parser.add_argument("--dpi", type=int, default=100, help="resolution of the PNG file")
    args = parser.parse_args(argv)
    if not 1 <= args.window <= args.steps:
        parser.error(f"argument --window: must be in [1, --steps={args.steps}]; got {args.window}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    figure(args.steps, args.window, args.learning_rate, args.random_state).savefig(out, dpi=args.dpi)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
