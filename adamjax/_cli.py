"""The ``adamjax`` command line: simulate Adam on a gradient signal and write the figure.

Examples::

  adamjax simulate --signal sine --steps 300 --out adam.png
  adamjax simulate --signal swinging_soft --steps 10000 --window 200 --out soft.png --csv soft.csv
  adamjax simulate --signal swinging --steps 10000 --b2 0.9,0.99,0.999 --out sweep.png
  adamjax signals

Bad arguments print one line on stderr and exit with status 2; the messages
about hyperparameters are those of adamjax's own constructors.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

_SWEPT = ("b1", "b2", "eps", "power")
_CSV_FIELDS = ("grad", "mu", "nu", "mu_hat", "nu_hat", "denom", "direction", "update", "params")


class UsageError(Exception):
    """A bad command line; its message is printed as one line."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def _number_list(text: str) -> tuple[float, ...]:
    """``"0.9,0.99"`` -> ``(0.9, 0.99)``."""
    parts = text.split(",")
    try:
        values = tuple(float(part) for part in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"malformed number list {text!r}: expected numbers separated by commas, such as 0.9,0.99,0.999"
        ) from None
    return values


def _integer(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer; got {text!r}") from None


def _parser() -> _Parser:
    parser = _Parser(prog="adamjax", description="See inside Adam: simulate it on gradient signals and plot.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    sim = commands.add_parser(
        "simulate",
        help="feed a gradient signal through Adam and draw its moments and steps",
        description=(
            "Feed a gradient signal through adamjax.adam and draw the gradient, moments and steps. "
            "b1, b2, eps and power accept comma lists (--b2 0.9,0.99,0.999): one curve per setting."
        ),
    )
    sim.add_argument("--signal", default="sine", help="gradient signal (see `adamjax signals`); default sine")
    sim.add_argument("--steps", type=_integer, default=None, help="number of steps; default the signal's own length")
    sim.add_argument("--b1", type=_number_list, default=(0.9,), help="first-moment decay(s); default 0.9")
    sim.add_argument("--b2", type=_number_list, default=(0.999,), help="second-moment decay(s); default 0.999")
    sim.add_argument("--eps", type=_number_list, default=(1e-8,), help="epsilon(s); default 1e-8")
    sim.add_argument("--power", type=_number_list, default=(2.0,), help="moment order(s) p; 2 is Adam; default 2")
    sim.add_argument("--lr", type=float, default=1e-3, help="learning rate; default 1e-3")
    sim.add_argument("--centered", action="store_true", help="centered second moment (AdaBelief)")
    sim.add_argument("--amsgrad", action="store_true", help="AMSGrad (running maximum of the second moment)")
    sim.add_argument(
        "--window", type=_integer, default=200, help="runs longer than 2*window show the first/last window steps"
    )
    sim.add_argument("--seed", type=_integer, default=0, help="seed of the random signals; default 0")
    sim.add_argument("--out", required=True, help="the PNG to write")
    sim.add_argument("--csv", default=None, help="also write every step's values to this CSV file")
    commands.add_parser("signals", help="list the gradient signals")
    return parser


def _label(setting: dict[str, float], varied: Sequence[str]) -> str:
    if not varied:
        return "adam"
    return ", ".join(f"{name}={setting[name]:g}" for name in varied)


def _write_csv(path: str, traces: dict[str, Any], sweep: bool) -> None:
    import numpy as np

    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow((["setting"] if sweep else []) + ["step", *_CSV_FIELDS])
        for label, trace in traces.items():
            columns = [np.asarray(getattr(trace, field), np.float64).reshape(-1) for field in _CSV_FIELDS]
            for row, values in enumerate(zip(*columns, strict=True)):
                writer.writerow(([label] if sweep else []) + [row + 1, *(repr(float(v)) for v in values)])


def _simulate(args: argparse.Namespace) -> int:
    import adamjax

    grads = adamjax.signals.by_name(args.signal, args.steps, seed=args.seed)
    steps = int(grads.shape[0])
    if args.window < 1:
        raise UsageError(f"argument --window: must be a positive integer; got {args.window}")
    settings = [
        dict(zip(_SWEPT, values, strict=True)) for values in itertools.product(*(getattr(args, n) for n in _SWEPT))
    ]
    varied = [name for name in _SWEPT if len(getattr(args, name)) > 1]
    # Build every optimizer first, so a bad value fails before any simulation runs.
    optimizers = {
        _label(setting, varied): adamjax.adam(
            args.lr,
            setting["b1"],
            setting["b2"],
            setting["eps"],
            power=setting["power"],
            centered=args.centered,
            amsgrad=args.amsgrad,
        )
        for setting in settings
    }
    traces = {label: adamjax.simulate(tx, grads) for label, tx in optimizers.items()}

    window = args.window if steps > 2 * args.window else None
    title = f"adamjax.adam on '{args.signal}' ({steps} steps)"
    if len(traces) == 1:
        (trace,) = traces.values()
        power = settings[0]["power"]
        if window is None:
            fig = adamjax.plot.trace(trace, power=power, title=title)
        else:
            fig = adamjax.plot.windows(trace, window, power=power, title=title)
    else:
        fig = adamjax.plot.compare(traces, fields=("grad", "direction", "denom"), window=window, title=title)
    fig.savefig(args.out, dpi=100)
    print(f"wrote {args.out}")
    if args.csv:
        _write_csv(args.csv, traces, sweep=len(traces) > 1)
        print(f"wrote {args.csv}")
    return 0


def _list_signals() -> int:
    from adamjax import signals

    for name in signals.NAMES:
        summary = (getattr(signals, name).__doc__ or "").strip().splitlines()[0]
        print(f"{name:18s} {_plain(summary)}")
    return 0


def _plain(text: str) -> str:
    """A docstring line without its reStructuredText markup."""
    return text.replace("``", "").replace(":func:", "").replace("`", "")


def _one_line(message: str) -> str:
    return " ".join(str(message).split())


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the ``adamjax`` command; returns the exit status (0 ok, 1 failure, 2 bad arguments)."""
    parser = _parser()
    try:
        args = parser.parse_args(argv)
        if args.command == "signals":
            return _list_signals()
        return _simulate(args)
    except SystemExit as exit_:  # --help
        return exit_.code if isinstance(exit_.code, int) else 0
    except (UsageError, ValueError, TypeError) as err:
        command = f"adamjax {_command_name(argv)}".rstrip()
        print(f"{command}: error: {_one_line(err)}", file=sys.stderr)
        return 2
    except (ImportError, OSError) as err:
        print(f"adamjax: {_one_line(err)}", file=sys.stderr)
        return 1
    except MemoryError as err:  # for example --steps far larger than the machine can hold
        print(f"adamjax: out of memory: {_one_line(err)}", file=sys.stderr)
        return 1


def _command_name(argv: Sequence[str] | None) -> str:
    """The subcommand named on the command line, for error messages."""
    words = list(sys.argv[1:] if argv is None else argv)
    return next((word for word in words if word in ("simulate", "signals")), "")
