"""A tiny, dependency-free progress bar for the examples' long loops."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from typing import TextIO, TypeVar

T = TypeVar("T")


def progress(
    iterable: Iterable[T],
    total: int | None = None,
    *,
    desc: str = "",
    width: int = 30,
    stream: TextIO | None = None,
    min_interval: float = 0.1,
) -> Iterator[T]:
    """Yields from ``iterable`` while drawing ``desc [#####     ] 50% 5/10 1.2s`` on ``stream``.

    On a terminal the bar is redrawn in place at most every ``min_interval``
    seconds; elsewhere (a log file, a CI job) it prints a line at every tenth
    of the way, so logs stay short. The last line always shows the total.

    Args:
      iterable: what to iterate over.
      total: its length, when ``len(iterable)`` does not work (a generator).
      desc: a label in front of the bar.
      width: the bar's width in characters.
      stream: where to draw; ``sys.stderr`` by default.
      min_interval: seconds between redraws on a terminal.

    Yields:
      The items of ``iterable``.

    Examples:
      >>> import io
      >>> out = io.StringIO()
      >>> sum(progress(range(4), desc="sum", stream=out))
      6
      >>> out.getvalue().splitlines()[-1].split()[:3]
      ['sum', '[##############################]', '100%']
    """
    stream = sys.stderr if stream is None else stream
    if total is None:
        try:
            total = len(iterable)  # type: ignore[arg-type]
        except TypeError:
            total = None
    interactive = bool(getattr(stream, "isatty", lambda: False)())
    start = time.perf_counter()
    last_draw = -float("inf")
    last_tenth = -1

    def draw(done: int, final: bool) -> None:
        elapsed = time.perf_counter() - start
        if total:
            filled = int(width * done / total)
            bar = f"[{'#' * filled}{' ' * (width - filled)}] {100 * done // total:3d}% {done}/{total}"
        else:
            bar = f"{done} it"
        line = f"{desc} {bar} {elapsed:.1f}s".lstrip()
        if interactive:
            stream.write("\r" + line + ("\n" if final else ""))
        else:
            stream.write(line + "\n")
        stream.flush()

    done = 0
    for item in iterable:
        yield item
        done += 1
        now = time.perf_counter()
        if interactive:
            if now - last_draw >= min_interval:
                draw(done, final=False)
                last_draw = now
        elif total:
            tenth = 10 * done // total
            if tenth > last_tenth and done < total:
                draw(done, final=False)
                last_tenth = tenth
    draw(done, final=True)
