"""Timing, memory accounting and table printing for ``benchmarks/suite.py``.

Every timing here is relative: variants run interleaved, round by round, in
one process, so a noisy neighbour or a thermal dip hits all of them alike, and
the suite only ever compares numbers taken in the same run. A round runs each
variant for a few steps and records seconds per step; the order of the
variants rotates from round to round so none always runs right after another.
"""

from __future__ import annotations

import datetime
import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np


class Stats(NamedTuple):
    """Median, fastest and slowest of a list of samples (seconds)."""

    median: float
    low: float
    high: float


def stats(samples: Sequence[float]) -> Stats:
    return Stats(statistics.median(samples), min(samples), max(samples))


class Loop:
    """One variant's training loop: ``advance(carry) -> carry`` called ``steps`` times per sample.

    ``carry`` holds the donated buffers, which each call replaces. JAX steps
    are not waited for one by one (as in a real training loop, dispatch
    overlaps the previous step), only at the end of a sample.
    """

    def __init__(self, advance: Callable[[Any], Any], carry: Any, steps: int | None = None):
        self.advance = advance
        self.carry = carry
        self.steps = steps  # None: the steps of the call to `interleave`

    def run(self, steps: int) -> float:
        """Seconds per step over ``steps`` steps."""
        carry = self.carry
        jax.block_until_ready(carry)
        start = time.perf_counter()
        for _ in range(steps):
            carry = self.advance(carry)
        jax.block_until_ready(carry)
        elapsed = time.perf_counter() - start
        self.carry = carry
        return elapsed / steps


def interleave(loops: dict[str, Loop], rounds: int, steps: int, warmup: int = 2) -> dict[str, Stats]:
    """Warms every loop up, then times ``rounds`` rounds of all of them, rotating the order."""
    for loop in loops.values():
        loop.run(warmup)
    names = list(loops)
    samples: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            loop = loops[name]
            samples[name].append(loop.run(loop.steps or steps))
    return {name: stats(values) for name, values in samples.items()}


def interleave_calls(calls: dict[str, Callable[[], Any]], reps: int) -> dict[str, list[Any]]:
    """``reps`` rounds of one call of each (for example a first call), the order rotating."""
    names = list(calls)
    results: dict[str, list[Any]] = {name: [] for name in names}
    for r in range(reps):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            results[name].append(calls[name]())
    return results


def tree_bytes(tree: Any) -> int:
    """Bytes held by the array leaves of ``tree`` (Python scalars count as nothing)."""
    return sum(int(leaf.nbytes) for leaf in jax.tree.leaves(tree) if hasattr(leaf, "nbytes"))


class MemoryUse(NamedTuple):
    """What XLA reports for a compiled step, and the peak it implies."""

    argument: int
    output: int
    alias: int
    temp: int

    @property
    def peak(self) -> int:
        # Donated outputs reuse their argument's buffer: count them once.
        return self.argument + self.output - self.alias + self.temp


def memory_use(compiled: Any) -> MemoryUse:
    analysis = compiled.memory_analysis()
    return MemoryUse(
        int(analysis.argument_size_in_bytes),
        int(analysis.output_size_in_bytes),
        int(analysis.alias_size_in_bytes),
        int(analysis.temp_size_in_bytes),
    )


def load_torch(threads: int) -> Any | None:
    """``torch`` with ``threads`` intra-op threads, or None (after saying so) when it is missing."""
    try:
        import torch
    except ImportError:
        print("note: torch is not installed; its rows are skipped (pip install 'adamjax[reference]').")
        return None
    torch.set_num_threads(threads)
    return torch


def cpu_threads() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def environment(torch: Any | None) -> str:
    import optax

    import adamjax

    torch_version = torch.__version__ if torch is not None else "not installed"
    return (
        f"{datetime.date.today()} | {platform.machine()}, {cpu_threads()} CPU threads | python "
        f"{platform.python_version()}, jax {jax.__version__} ({jax.default_backend()}), optax {optax.__version__}, "
        f"torch {torch_version} | adamjax native kernel: {adamjax.native_status()}"
    )


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub Markdown table; numbers right-aligned."""
    cells = [[str(c) for c in header]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    numeric = [all(_looks_numeric(row[i]) for row in cells[1:]) and len(cells) > 1 for i in range(len(header))]

    def line(row: Sequence[str]) -> str:
        parts = [c.rjust(w) if num else c.ljust(w) for c, w, num in zip(row, widths, numeric, strict=True)]
        return "| " + " | ".join(parts) + " |"

    rule = "|" + "|".join(
        ("-" * (w + 1) + ":") if num else ("-" * (w + 2)) for w, num in zip(widths, numeric, strict=True)
    )
    return "\n".join([line(cells[0]), rule + "|", *(line(row) for row in cells[1:])])


def _looks_numeric(text: str) -> bool:
    stripped = text.replace(",", "").replace("x", "").replace("-", "").replace(".", "").replace("%", "").strip()
    return stripped.isdigit() or text == "n/a"


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:,.3f}" if seconds < 0.01 else f"{seconds * 1e3:,.1f}"


def us(seconds: float) -> str:
    return f"{seconds * 1e6:,.1f}" if seconds < 1e-3 else f"{seconds * 1e6:,.0f}"


def spread(s: Stats, unit: Callable[[float], str] = ms) -> str:
    return f"{unit(s.low)}-{unit(s.high)}"


def mib(n: float) -> str:
    return f"{n / 2**20:,.1f}"


def ratio(x: float, digits: int = 2) -> str:
    return f"{x:.{digits}f}x" if x < 100 else f"{x:,.0f}x"


@dataclass
class Target:
    """One requirement and how this run measured against it."""

    name: str
    goal: str
    measured: str
    passed: bool


@dataclass
class Report:
    """What the scenarios found, printed at the end."""

    targets: list[Target] = field(default_factory=list)
    memory: list[tuple[str, str, float]] = field(default_factory=list)  # (scenario, variant, peak / needed)
    summaries: list[Any] = field(default_factory=list)  # per scenario, for the "which path" table

    def check(self, name: str, goal: str, measured: str, passed: bool) -> None:
        self.targets.append(Target(name, goal, measured, bool(passed)))

    def table(self) -> str:
        rows = [(t.name, t.goal, t.measured, "PASS" if t.passed else "MISS") for t in self.targets]
        return markdown_table(("target", "goal", "measured", "result"), rows)


def random_like(tree: Any, seed: int) -> Any:
    """float32 standard normal arrays shaped like ``tree``'s leaves (arrays or ``ShapeDtypeStruct``s)."""
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda x: jnp.asarray(rng.standard_normal(x.shape, dtype=np.float32)), tree)
