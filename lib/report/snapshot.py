"""syrupy snapshots of the measured tables: one readable JSON file per table, per run.

Layout: snapshots/<run id>/<test module>/<test name>[<table>].json, where the run id
names model, text, token count, device and conventions and ends in the config hash, so
different runs never share a snapshot. Floats are stored to 6 significant digits and
compared with a tolerance (FLOAT_RTOL), not by their text, so rounding cannot flip a
comparison at a boundary.

Snapshots are committed for the CPU. A run on mps or cuda with no snapshot of its own is
checked against the CPU snapshot of the same run (cpu_snapshot) within the device tolerance
(device_difference), which is wider than the same-device one for the reasons given there.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from syrupy.extensions.json import JSONSnapshotExtension

from lib.setup.options import ROOT

if TYPE_CHECKING:
    from lib.setup.config import RunConfig

SNAPSHOTS = Path(os.environ.get("DPHI_SNAPSHOT_DIR") or ROOT / "snapshots")
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


# Another device against the CPU snapshot. Float32 kernels differ between devices by about 1e-5
# relative in Δφ (other summation orders, fused and TF32-free matmuls); the perplexities carry
# that through the 7D projections and exp(mean NLL), and the PCA statistics through float64
# sums of float32 inputs, so floats get 100x the kernel difference: rtol 1e-3 (atol 1e-5 for
# values near 0: overlaps, shares). K at a threshold is the first k whose cumulative explained
# variance reaches it: where that curve is flat at the threshold, a 1e-5 change in the
# eigenvalues moves K by a component or two, so K counts get +-2; the Attn/FFN K90 ratio may
# move as far as its two K's allow. A bug or a changed convention moves these far more.
DEVICE_RTOL, DEVICE_ATOL, DEVICE_K_ATOL = 1e-3, 1e-5, 2
K_COUNT = re.compile(r"^(attn_|ffn_)?k\d+$")
"""Keys of the K counts at a threshold (k50 ... k95, attn_k90, ffn_k90); `k` (a row's K) and `layer` are exact."""


def _ratio_allowed(expected: dict[str, Any], measured: float) -> bool:
    """The Attn/FFN ratio within what K counts moved by +-DEVICE_K_ATOL allow (and DEVICE_RTOL)."""
    attn, ffn, d = expected["attn_k90"], expected["ffn_k90"], DEVICE_K_ATOL
    low = max(attn - d, 0) / (ffn + d)
    high = (attn + d) / (ffn - d) if ffn > d else math.inf
    return low * (1 - DEVICE_RTOL) <= measured <= high * (1 + DEVICE_RTOL)


def device_difference(expected: Any, measured: Any, path: str = "", key: str = "") -> str | None:
    """Where a table measured on another device leaves the CPU snapshot's device tolerance
    (DEVICE_RTOL, DEVICE_ATOL, DEVICE_K_ATOL), as 'path: snapshot value vs measured'; None when within."""
    here = f"{path}: snapshot {expected!r} vs measured {measured!r}"
    if isinstance(expected, dict) and isinstance(measured, dict):
        if expected.keys() != measured.keys():
            return f"{path}: snapshot keys {sorted(expected)} vs measured {sorted(measured)}"
        for k in expected:
            if k == "ratio" and {"attn_k90", "ffn_k90"} <= expected.keys() and isinstance(measured[k], (int, float)):
                if not _ratio_allowed(expected, measured[k]):
                    return f"{path}.{k}: snapshot {expected[k]!r} vs measured {measured[k]!r}"
                continue
            found = device_difference(expected[k], measured[k], f"{path}.{k}", k)
            if found:
                return found
        return None
    if isinstance(expected, list) and isinstance(measured, list):
        if len(expected) != len(measured):
            return f"{path}: snapshot has {len(expected)} rows, measured {len(measured)}"
        return next(
            (
                d
                for i, (a, b) in enumerate(zip(expected, measured))
                if (d := device_difference(a, b, f"{path}[{i}]", key))
            ),
            None,
        )
    if isinstance(expected, int) and isinstance(measured, int) and K_COUNT.match(key):
        return None if abs(expected - measured) <= DEVICE_K_ATOL else here
    if isinstance(expected, float) or isinstance(measured, float):
        numbers = isinstance(expected, (int, float)) and isinstance(measured, (int, float))
        within = numbers and math.isclose(expected, measured, rel_tol=DEVICE_RTOL, abs_tol=DEVICE_ATOL)
        return None if within else here
    return None if expected == measured else here


def cpu_snapshot(config: RunConfig, test_name: str) -> Path | None:
    """The CPU snapshot of the same run for a run on another device (None on the CPU, or when absent)."""
    if config.device == "cpu":
        return None
    cpu = dataclasses.replace(config, device="cpu")
    path = SNAPSHOTS / cpu.run_id / "test_snapshots" / f"{test_name}.json"
    return path if path.is_file() else None
