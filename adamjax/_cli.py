"""The ``adamjax`` command line: simulate Adam on a gradient signal and write the figure.

Examples::

  adamjax simulate --signal sine --steps 300 --out adam.png
  adamjax simulate --signal swinging_soft --steps 10000 --window 200 --out soft.png --csv soft.csv
  adamjax simulate --signal swinging --steps 10000 --b2 0.9,0.99,0.999 --out sweep.png
  adamjax simulate --signal pulses --amsgrad false,true --b2 0.99 --out amsgrad.png
  adamjax simulate --grads recorded.csv --out recorded.png
  adamjax simulate --signal swinging --steps 2000 --state-bits 8,4 --out quantized.png
  adamjax signals

Bad arguments print one line on stderr that names the flag and exit with
status 2, before any simulation runs; output folders are created first (or
refused the same way).
"""

from __future__ import annotations

import argparse
import csv
import itertools
import sys
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NoReturn

_SWEPT = ("lr", "b1", "b2", "eps", "power", "centered", "amsgrad")
_CSV_FIELDS = ("grad", "mu", "nu", "mu_hat", "nu_hat", "denom", "direction", "update", "params")
_STORED_FIELDS = ("mu_stored", "nu_stored", "mu_error", "nu_error")  # with --state-bits
_TRUE = ("true", "yes", "on", "1")
_FALSE = ("false", "no", "off", "0")

_SIMULATE_EXAMPLES = """\
examples:
  adamjax simulate --signal sine --out adam.png
  adamjax simulate --signal swinging --steps 10000 --b2 0.9,0.99,0.999 --out sweep.png
  adamjax simulate --signal noisy_line --centered false,true --out centered.png
  adamjax simulate --signal pulses --amsgrad false,true --b2 0.99 --out amsgrad.png
  adamjax simulate --signal swinging_soft --steps 100 --no-bias-correction --out uncorrected.png
  adamjax simulate --grads recorded.npy --power 2,4 --out recorded.png --csv recorded.csv
  adamjax simulate --signal swinging --steps 2000 --state-bits 8,4 --out quantized.png --csv quantized.csv
"""

_SIGNALS_EXAMPLES = """\
example:
  adamjax signals
"""


class UsageError(Exception):
    """A bad command line; its message is printed as one line."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


class _Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Shows each flag's default (where it has one) and keeps the examples' line breaks."""

    def _get_help_string(self, action: argparse.Action) -> str:
        if action.default is None or action.default is False:
            return action.help or ""
        return super()._get_help_string(action) or ""


def _number_list(text: str) -> tuple[float, ...]:
    """``"0.9,0.99"`` -> ``(0.9, 0.99)``."""
    try:
        return tuple(float(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"malformed number list {text!r}: expected numbers separated by commas, such as 0.9,0.99,0.999"
        ) from None


def _flag_list(text: str) -> tuple[bool, ...]:
    """``"false,true"`` -> ``(False, True)``."""
    values = []
    for part in text.split(","):
        word = part.strip().lower()
        if word not in _TRUE + _FALSE:
            raise argparse.ArgumentTypeError(f"expected true, false or a list such as false,true; got {text!r}")
        values.append(word in _TRUE)
    return tuple(values)


def _bits_list(text: str) -> tuple[int, ...]:
    """``"8,4"`` -> ``(8, 4)``."""
    values = []
    for part in text.split(","):
        word = part.strip()
        if word not in ("8", "4"):
            raise argparse.ArgumentTypeError(f"expected 8, 4 or a list such as 8,4; got {text!r}")
        values.append(int(word))
    return tuple(dict.fromkeys(values))


def _integer(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer; got {text!r}") from None


def _parser() -> _Parser:
    from adamjax import __version__, signals

    parser = _Parser(
        prog="adamjax",
        description="See inside Adam: simulate it on gradient signals and plot its moments and steps.",
        epilog="examples:\n  adamjax simulate --signal sine --out adam.png\n  adamjax signals",
        formatter_class=_Formatter,
    )
    parser.add_argument("--version", action="version", version=f"adamjax {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    sim = commands.add_parser(
        "simulate",
        help="feed a gradient signal through Adam and draw its moments and steps",
        description=textwrap.fill(
            "Feed a gradient signal (or your own recorded gradients, --grads) through adamjax's Adam core and "
            "draw the gradient, the moments and the step. --lr, --b1, --b2, --eps and --power take comma lists, "
            "--centered and --amsgrad take false,true: one curve per combination.",
            width=79,
        ),
        epilog=_SIMULATE_EXAMPLES,
        formatter_class=_Formatter,
    )
    names = ", ".join(signals.NAMES)
    sim.add_argument("--signal", default="sine", help=f"gradient signal: {names} (see `adamjax signals`)")
    sim.add_argument(
        "--grads",
        default=None,
        metavar="FILE",
        help="your own gradients instead of --signal: a CSV (optional header row) or .npy file, one row per step "
        "and one column per tracked weight",
    )
    sim.add_argument("--steps", type=_integer, default=None, help="number of steps; by default the signal's own length")
    # String defaults go through `type` like typed values, and show in --help as one would type them.
    sim.add_argument("--lr", type=_number_list, default="1e-3", help="learning rate(s)")
    sim.add_argument("--b1", type=_number_list, default="0.9", help="first-moment decay(s)")
    sim.add_argument("--b2", type=_number_list, default="0.999", help="second-moment decay(s)")
    sim.add_argument("--eps", type=_number_list, default="1e-8", help="epsilon(s)")
    sim.add_argument("--power", type=_number_list, default="2", help="moment order(s) p; 2 is Adam, inf Adamax")
    sim.add_argument(
        "--centered",
        type=_flag_list,
        nargs="?",
        const=(True,),
        default="false",
        help="centered second moment (AdaBelief): true, false or false,true",
    )
    sim.add_argument(
        "--amsgrad",
        type=_flag_list,
        nargs="?",
        const=(True,),
        default="false",
        help="AMSGrad (running maximum of the second moment): true, false or false,true",
    )
    sim.add_argument("--no-bias-correction", action="store_true", help="divide by neither 1 - b1^t nor 1 - b2^t")
    sim.add_argument(
        "--state-bits",
        type=_bits_list,
        default=None,
        metavar="BITS",
        help="store the moments quantized to 8 or 4 bits (8,4 for both) and draw what is stored, the storage "
        "error and the step against float32 Adam; the tracked weight shares one quantization block with "
        "weights that see Gaussian noise (--neighbour-noise). Takes one --signal or a one-column --grads and "
        "single values of the other settings",
    )
    sim.add_argument(
        "--block-size",
        type=_integer,
        default=None,
        metavar="N",
        help="weights per quantization block with --state-bits (by default 256 at 8 bits, 128 at 4)",
    )
    sim.add_argument(
        "--neighbour-noise",
        type=float,
        default=None,
        metavar="STD",
        help="with --state-bits: the standard deviation of the Gaussian gradients of the block's other weights "
        "(by default the signal's root mean square; 0 leaves the weight alone in its block)",
    )
    sim.add_argument(
        "--window", type=_integer, default=200, help="runs longer than 2*window show their first and last window steps"
    )
    sim.add_argument(
        "--seed",
        type=_integer,
        default=0,
        metavar="N",
        help="random state of the random signals (and of the neighbours' noise with --state-bits)",
    )
    sim.add_argument("--out", required=True, help="the figure to write (.png, .pdf, .svg); folders are created")
    sim.add_argument("--csv", default=None, help="also write every step's values to this CSV file")
    commands.add_parser(
        "signals", help="list the gradient signals", epilog=_SIGNALS_EXAMPLES, formatter_class=_Formatter
    )
    return parser


def _check_values(args: argparse.Namespace) -> None:
    """Every value, checked by adamjax's own constructors, the error naming the flag."""
    import adamjax

    if args.steps is not None and args.steps < 1:
        raise UsageError(f"argument --steps: must be a positive integer; got {args.steps}")
    if args.window < 1:
        raise UsageError(f"argument --window: must be a positive integer; got {args.window}")
    checks = {
        "lr": lambda v: adamjax.adam(v),
        "b1": lambda v: adamjax.adam(1e-3, b1=v),
        "b2": lambda v: adamjax.adam(1e-3, b2=v),
        "eps": lambda v: adamjax.adam(1e-3, eps=v),
        "power": lambda v: adamjax.adam(1e-3, power=v),
    }
    for name, build in checks.items():
        for value in getattr(args, name):
            try:
                build(value)
            except (TypeError, ValueError) as err:
                raise UsageError(f"argument --{name}: {err}") from None
    _check_quantization(args)
    if args.grads is None and args.signal not in adamjax.signals.NAMES:
        raise UsageError(f"argument --signal: must be one of {', '.join(adamjax.signals.NAMES)}; got {args.signal!r}")


def _check_quantization(args: argparse.Namespace) -> None:
    """``--state-bits``, ``--block-size`` and ``--neighbour-noise``: allowed values, and what they combine with."""
    import adamjax

    if args.state_bits is None:
        for flag, value in (("block-size", args.block_size), ("neighbour-noise", args.neighbour_noise)):
            if value is not None:
                raise UsageError(f"argument --{flag}: sets how moments are quantized and needs --state-bits 8 or 4")
        return
    for bits in args.state_bits:
        try:
            adamjax.adam(1e-3, state_bits=bits, block_size=args.block_size)
        except (TypeError, ValueError) as err:
            raise UsageError(f"argument --block-size: {err}") from None
    if args.neighbour_noise is not None and not 0 <= args.neighbour_noise < float("inf"):
        raise UsageError(f"argument --neighbour-noise: must be a finite number >= 0; got {args.neighbour_noise:g}")
    swept = [f"--{name}" for name in _SWEPT if len(getattr(args, name)) > 1]
    if swept:
        raise UsageError(
            f"argument --state-bits: draws one optimizer's settings at 8 and 4 bits; give single values of "
            f"{', '.join(swept)}"
        )


def _prepare_output(flag: str, path: str | None, figure: bool) -> None:
    """Creates the folder ``path`` goes in, or refuses it, before any work."""
    if path is None:
        return
    target = Path(path)
    if target.is_dir():
        raise UsageError(f"argument --{flag}: {path!r} is a folder; give a file name such as {path}/adam.png")
    if figure:
        from matplotlib.figure import Figure

        supported = Figure().canvas.get_supported_filetypes()
        suffix = target.suffix.lower().lstrip(".")
        if suffix not in supported:
            raise UsageError(
                f"argument --{flag}: cannot tell the figure format from {path!r}; end it with one of "
                f"{', '.join('.' + s for s in sorted(supported))}"
            )
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UsageError(
            f"argument --{flag}: cannot create the folder {str(target.parent)!r}: {err.strerror}"
        ) from None
    if not target.parent.is_dir():
        raise UsageError(f"argument --{flag}: {str(target.parent)!r} is not a folder")


def _read_grads(path: str, steps: int | None) -> tuple[Any, list[str]]:
    """The recorded gradients as float32 ``[T, W]`` and the columns' names."""
    import numpy as np

    file = Path(path)
    if not file.is_file():
        raise UsageError(f"argument --grads: no such file {path!r}")
    names: list[str] | None = None
    try:
        if file.suffix.lower() == ".npy":
            values = np.load(file, allow_pickle=False)
        else:
            with open(file, newline="") as handle:
                rows = [row for row in csv.reader(handle) if row and any(cell.strip() for cell in row)]
            if rows and not _numeric(rows[0]):
                names, rows = [cell.strip() for cell in rows[0]], rows[1:]
            widths = {len(row) for row in rows}
            if len(widths) > 1:
                raise ValueError(f"rows have different numbers of columns ({', '.join(map(str, sorted(widths)))})")
            values = np.array([[float(cell) for cell in row] for row in rows], np.float64)
    except (OSError, ValueError) as err:
        raise UsageError(f"argument --grads: cannot read {path!r}: {' '.join(str(err).split())}") from None
    if values.dtype.kind not in "iuf":
        raise UsageError(f"argument --grads: {path!r} holds {values.dtype} values; expected real numbers")
    if values.ndim == 1:
        values = values[:, None]
    if values.ndim != 2 or values.shape[0] == 0 or values.shape[1] == 0:
        raise UsageError(
            f"argument --grads: {path!r} must hold one row per step and one column per weight; got shape {values.shape}"
        )
    if not np.all(np.isfinite(values)):
        raise UsageError(f"argument --grads: {path!r} holds NaN or infinite values")
    if names is None or len(names) != values.shape[1]:
        names = ["weight"] if values.shape[1] == 1 else [f"weight {i}" for i in range(values.shape[1])]
    if steps is not None:
        values = values[:steps]
    return values.astype(np.float32), names


def _numeric(row: Sequence[str]) -> bool:
    try:
        for cell in row:
            float(cell)
    except ValueError:
        return False
    return True


def _label(setting: Mapping[str, Any], varied: Sequence[str]) -> str:
    if not varied:
        return "adam"
    parts = []
    for name in varied:
        value = setting[name]
        if isinstance(value, bool):
            parts.append(name if value else f"not {name}")
        else:
            parts.append(f"{name}={value:g}")
    return ", ".join(parts)


def _write_csv(path: str, traces: dict[str, dict[str, Any]], sweep: bool, fields: Sequence[str]) -> None:
    import numpy as np

    weights = len(next(iter(traces.values())))
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow((["setting"] if sweep else []) + (["weight"] if weights > 1 else []) + ["step", *fields])
        for label, per_weight in traces.items():
            for weight, trace in per_weight.items():
                columns = [np.asarray(getattr(trace, field), np.float64).reshape(-1) for field in fields]
                prefix = ([label] if sweep else []) + ([weight] if weights > 1 else [])
                for row, values in enumerate(zip(*columns, strict=True)):
                    writer.writerow([*prefix, row + 1, *(repr(float(v)) for v in values)])


def _question(varied: Sequence[str], signal: str) -> str:
    if not varied:
        return f"What does Adam make of '{signal}'?"
    words = {
        "centered": "centering the second moment",
        "amsgrad": "AMSGrad's running maximum",
        "power": "the moment's power p",
        "lr": "the learning rate",
    }
    named = [words.get(name, name) for name in varied]
    verb = "does" if len(named) == 1 else "do"
    return f"What {verb} {' and '.join(named)} change on '{signal}'?"


def _figure(args: argparse.Namespace) -> tuple[Any, dict[str, dict[str, Any]], bool]:
    """Runs the simulations the arguments ask for; returns the figure, the traces and whether it is a sweep."""
    import adamjax
    from adamjax import plot

    if args.grads is not None:
        values, names = _read_grads(args.grads, args.steps)
        signal = Path(args.grads).name
        grads = {name: values[:, column] for column, name in enumerate(names)}
    else:
        signal = args.signal
        grads = {signal: adamjax.signals.by_name(args.signal, args.steps, seed=args.seed)}
    steps = int(next(iter(grads.values())).shape[0])
    if args.state_bits is not None:
        return _quantization_figure(args, grads, signal, steps)
    settings: list[dict[str, Any]] = [
        dict(zip(_SWEPT, values, strict=True)) for values in itertools.product(*(getattr(args, n) for n in _SWEPT))
    ]
    varied = [name for name in _SWEPT if len(getattr(args, name)) > 1]
    optimizers = {
        _label(setting, varied): adamjax.adam(
            setting["lr"],
            setting["b1"],
            setting["b2"],
            setting["eps"],
            power=setting["power"],
            centered=setting["centered"],
            amsgrad=setting["amsgrad"],
            bias_correction=not args.no_bias_correction,
        )
        for setting in settings
    }
    traces = {label: {name: adamjax.simulate(tx, g) for name, g in grads.items()} for label, tx in optimizers.items()}
    window = args.window if steps > 2 * args.window else None
    question = _question(varied, signal) + f" ({steps} steps)"
    any_amsgrad = any(setting["amsgrad"] for setting in settings)
    if len(traces) == 1 and len(grads) == 1 and not any_amsgrad:
        ((trace,),) = (per_weight.values() for per_weight in traces.values())
        if window is None:
            fig = adamjax.plot.trace(trace, title=question)
        else:
            fig = adamjax.plot.windows(trace, window, title=question)
    else:
        fields = ["denom", "direction"]
        if any_amsgrad:
            fields = ["nu", "nu_max", *fields]
        if "lr" in varied:
            fields.append("update")
        by_signal = {name: {label: per_weight[name] for label, per_weight in traces.items()} for name in grads}
        fig = plot.compare_traces(by_signal, fields=fields, window=window, title=question)
    return fig, traces, len(traces) > 1


def _quantization_figure(
    args: argparse.Namespace, grads: dict[str, Any], signal: str, steps: int
) -> tuple[Any, dict[str, dict[str, Any]], bool]:
    """``--state-bits``: float32 Adam and each bit width on one weight that shares its block; one CSV row each."""
    from adamjax import _plot_quantization

    if len(grads) != 1:
        raise UsageError(
            f"argument --state-bits: draws one weight; {args.grads!r} has {len(grads)} columns (give one column)"
        )
    ((name, values),) = grads.items()
    optimizer = {
        "learning_rate": args.lr[0],
        "b1": args.b1[0],
        "b2": args.b2[0],
        "eps": args.eps[0],
        "power": args.power[0],
        "centered": args.centered[0],
        "amsgrad": args.amsgrad[0],
        "bias_correction": not args.no_bias_correction,
    }
    reference, runs, noise = _plot_quantization._quantization_runs(
        values, args.state_bits, args.block_size, args.neighbour_noise, args.seed, optimizer
    )
    window = args.window if steps > 2 * args.window else None
    bits = " and ".join(f"{b}-bit" for b in runs)
    question = f"What do {bits} moments store of m and v on '{signal}', and what does that do to the step?"
    fig = _plot_quantization._quantization_figure(
        reference, runs, noise, args.neighbour_noise is None, window, question, None
    )
    # The weight of interest is column 0 of each quantized block.
    traces = {"float32": {name: reference}}
    traces.update({f"{b} bits": {name: _column(run)} for b, run in runs.items()})
    return fig, traces, True


def _column(trace: Any) -> Any:
    """The trace of column 0 (the weight of interest) of a simulated block."""
    import jax

    return jax.tree.map(lambda field: field[:, 0], trace)


def _simulate(args: argparse.Namespace) -> int:
    _check_values(args)
    _prepare_output("out", args.out, figure=True)
    _prepare_output("csv", args.csv, figure=False)
    fig, traces, sweep = _figure(args)
    fig.savefig(args.out, dpi=100)
    print(f"wrote {args.out}")
    if args.csv:
        stored = _STORED_FIELDS if args.state_bits is not None else ()
        _write_csv(args.csv, traces, sweep, (*_CSV_FIELDS, *stored))
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


def _one_line(message: object) -> str:
    return " ".join(str(message).split())


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the ``adamjax`` command; returns the exit status (0 ok, 1 failure, 2 bad arguments)."""
    parser = _parser()
    try:
        args = parser.parse_args(argv)
        if args.command == "signals":
            return _list_signals()
        return _simulate(args)
    except SystemExit as exit_:  # --help, --version
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
