"""Progress on long work: a tqdm bar on a terminal, one line per stage elsewhere (a CI log, a pipe),
nothing when quiet (pytest -q, `python -m lib tables --quiet`, lib.run(quiet=True)).

Every long stage (the capture, 7D's projected passes, the follow-ups' passes, bootstrap replicates,
the fragility search, token windows) wraps its list of steps in `progress(desc)`: on a terminal the bar
stays once done (its time is what a user reads next time), elsewhere the stage ends in one line
"dphi: capture Δφ: 4 steps in 3.1 s" on stderr. Rank 0 alone shows it under torchrun.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")
Progress = Callable[[Iterable[T]], Iterable[T]]

QUIET = False
"""Set by the front doors from their quiet flag; every stage then shows nothing."""


def set_quiet(quiet: bool) -> None:
    global QUIET
    QUIET = quiet


def progress(desc: str) -> Progress:
    """desc -> a wrapper of one stage's steps that shows its progress (module docstring)."""

    def wrap(steps: Iterable[T]) -> Iterable[T]:
        if QUIET or os.environ.get("RANK", "0") != "0":  # torchrun: rank 0 alone shows it
            return steps
        if sys.stderr.isatty():
            from tqdm.auto import tqdm

            return tqdm(steps, desc=f"dphi: {desc}", file=sys.stderr, leave=True, dynamic_ncols=True)
        return _lines(desc, steps)

    return wrap


def _lines(desc: str, steps: Iterable[T]) -> Iterator[T]:
    start, n = time.perf_counter(), 0
    for step in steps:
        yield step
        n += 1
    print(f"dphi: {desc}: {n} step{'s' if n != 1 else ''} in {time.perf_counter() - start:.1f} s", file=sys.stderr)
