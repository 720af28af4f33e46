"""One figure per question about Adam, drawn by adamjax's simulator and written to PNG files.

Each figure feeds a gradient stream through adamjax's own Adam core and asks
one question in its title:

  swinging_suppressed  why does the second moment suppress a swinging gradient?
  bias_correction      what does bias correction do at the first steps?
  centered             what does centering the second moment change?
  amsgrad              how does AMSGrad's running maximum behave?
  power                what does a p-th power moment change against Adam?
  b2_sweep             what does b2 change?
  family               how do the Adam variants differ on the same gradients?
  sine                 what does Adam make of a sine (moments and step)?
  swinging_windows     how does Adam start on a long swinging run, and where does it settle?
  quantization         what do 8-bit and 4-bit moments store of m and v, and what does that do to the step?

Run: ``python examples/simulator_figures.py --out figures`` (``--only
bias_correction,amsgrad`` for a few).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from tqdm import tqdm

import adamjax
from adamjax import plot, signals


def family():
    runs = {
        "adam": adamjax.adam(1e-3),
        "amsgrad": adamjax.amsgrad(1e-3),
        "adabelief": adamjax.adabelief(1e-3),
        "adamax": adamjax.adamax(1e-3),
        "nadam": adamjax.nadam(1e-3),
    }
    return plot.compare(
        runs,
        {"sine": signals.sine(300), "pulses": signals.pulses()},
        title="How do the Adam variants differ on the same gradients?",
    )


FIGURES: dict[str, Callable[[], object]] = {
    "swinging_suppressed": plot.suppression,
    "bias_correction": plot.bias_correction,
    "centered": plot.centered,
    "amsgrad": plot.amsgrad,
    "power": plot.power,
    "b2_sweep": plot.b2_sweep,
    "family": family,
    "sine": lambda: plot.trace(
        adamjax.simulate(adamjax.scale_by_adam(), signals.sine(300)), title="What does Adam make of a sine?"
    ),
    "swinging_windows": lambda: plot.windows(
        adamjax.simulate(adamjax.scale_by_adam(eps=1e-7), signals.swinging(10_000, seed=1)), 200
    ),
    "quantization": plot.quantization,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="figures: " + ", ".join(FIGURES),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--out", default="figures", help="folder for the PNG files (created if missing)")
    parser.add_argument("--only", default="all", help="comma-separated names of the figures to draw, or all")
    parser.add_argument("--dpi", type=int, default=100, help="resolution of the PNG files")
    args = parser.parse_args(argv)
    names = list(FIGURES) if args.only == "all" else [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = [name for name in names if name not in FIGURES]
    if unknown:
        parser.error(f"argument --only: unknown figure(s) {', '.join(unknown)}; choose from {', '.join(FIGURES)}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for name in tqdm(names, desc="figures", unit="figure"):
        FIGURES[name]().savefig(out / f"{name}.png", dpi=args.dpi)
    print(f"wrote {len(names)} figures to {out}/: {', '.join(names)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
