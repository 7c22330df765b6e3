"""syrupy snapshots of the measured tables: one readable JSON file per table, per run.

Layout: snapshots/<run id>/<test module>/<test name>[<table>].json, where the run id
names model, text, token count, device and conventions and ends in the config hash, so
different runs never share a snapshot. Floats are stored to 6 significant digits and
compared with a tolerance (FLOAT_RTOL), not by their text, so rounding cannot flip a
comparison at a boundary.
"""

from __future__ import annotations

import json
import math
import os
from functools import cache
from pathlib import Path
from typing import Any

from syrupy.extensions.json import JSONSnapshotExtension

SNAPSHOTS = Path(os.environ.get("DPHI_SNAPSHOT_DIR") or Path(__file__).resolve().parent.parent / "snapshots")
"""Top-level snapshots/; DPHI_SNAPSHOT_DIR moves it (the suite's own tests use a temp dir)."""
# Same config and device: bitwise-equal numbers on one machine; across CPUs, BLAS kernels
# reorder float32 sums (~1e-6 relative in Δφ), which moves perplexities by up to ~1e-5.
FLOAT_RTOL, FLOAT_ATOL = 1e-4, 1e-6
SIGNIFICANT = 6


def rounded(data: Any) -> Any:
    """Floats to SIGNIFICANT digits, recursively: what a snapshot stores."""
    if isinstance(data, float):
        return float(f"{data:.{SIGNIFICANT}g}") if math.isfinite(data) else str(data)
    if isinstance(data, dict):
        return {k: rounded(v) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return [rounded(v) for v in data]
    return data


def close(a: Any, b: Any) -> bool:
    """Equal structure and ints/strings; floats within FLOAT_RTOL / FLOAT_ATOL."""
    if isinstance(a, float) or isinstance(b, float):
        return (
            isinstance(a, (int, float))
            and isinstance(b, (int, float))
            and math.isclose(a, b, rel_tol=FLOAT_RTOL, abs_tol=FLOAT_ATOL)
        )
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(close(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(close(x, y) for x, y in zip(a, b))
    return a == b


@cache
def extension_for(run_id: str) -> type[JSONSnapshotExtension]:
    """A JSON snapshot extension that files this run's snapshots under snapshots/<run_id>/."""

    class TableSnapshot(JSONSnapshotExtension):
        @classmethod
        def dirname(cls, *, test_location: Any) -> str:
            return str(SNAPSHOTS / run_id / test_location.basename)

        def matches(self, *, serialized_data: Any, snapshot_data: Any) -> bool:
            return close(json.loads(serialized_data), json.loads(snapshot_data))

    TableSnapshot.__name__ = f"TableSnapshot[{run_id}]"
    return TableSnapshot
