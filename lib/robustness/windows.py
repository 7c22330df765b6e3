"""What the token windows say: "would another 1000 positions of this kind of text give this?".

The bootstrap (bootstrap.py) reweights one window's positions; `--windows W` measures W disjoint
stretches of the text, each a run. Per table cell: its values across the windows (mean, SD, min, max);
per claim: the share of windows whose verdict is window 0's (the write-up's window), by the one judge.
On the embedded model K90's SD across 4 windows is 2.0-4.1x the bootstrap SD (docs/uncertainty.md).
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from typing import Any

from lib.robustness.judged import Judged, cell_value
from lib.writeup.claims import Cell
from lib.writeup.judge import decide


def window_spread(windows: Sequence[Mapping[str, Any]], items: Sequence[Judged]) -> dict[str, Any]:
    """windows: each window's tables, window 0 first; items: the claims and cells judged (judged.judged).

    {"windows": W, "cells": {cell id: {"values", "mean", "sd", "min", "max"}} for the cells every window
    measures, "agreement": {id: share of windows giving window 0's verdict, or None where window 0
    decides nothing}}; sd is None for one window."""
    if not windows:
        raise ValueError("window_spread needs the tables of at least one window")
    cells: dict[str, dict[str, Any]] = {}
    agreement: dict[str, float | None] = {}
    for item in items:
        holds = [decide(item, tables, cell_value).holds for tables in windows]
        agreement[item.id] = None if holds[0] is None else sum(h == holds[0] for h in holds) / len(holds)
        if isinstance(item, Cell):
            values = [_value(item, tables) for tables in windows]
            if all(v is not None for v in values):
                numbers = [float(v) for v in values if v is not None]
                cells[item.id] = {
                    "values": numbers,
                    "mean": statistics.fmean(numbers),
                    "sd": statistics.stdev(numbers) if len(numbers) > 1 else None,
                    "min": min(numbers),
                    "max": max(numbers),
                }
    return {"windows": len(windows), "cells": cells, "agreement": agreement}


def _value(cell: Cell, tables: Mapping[str, Any]) -> float | None:
    try:
        return cell_value(cell, tables) if cell.table in tables else None
    except (KeyError, IndexError, TypeError):
        return None
