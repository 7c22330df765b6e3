"""A claims JSON against a baseline: changed verdicts first, then table cells that moved.

Used by `--claims-baseline PATH` (each claim test whose verdict differs from the
baseline's fails) and by `python -m lib compare A.json B.json` (exit 1 when a verdict
changed). Rows match on (claim, kind, run label); when each side has a single run, its
runs match whatever their labels (another model or text gives another label, and that
comparison is what a baseline is for). Claims on the document's own tables have no run.

A verdict is compared by its Status (holds, fails, does not hold, skipped, ...;
lib/writeup/judge.py), not by a skip's reason, whose wording names the run. A cell "moved" when the two measured values
differ by more than the cell's own tolerance (lib/writeup/claims.py: the tolerance stated for
comparing the cell with the write-up, with its reason), so a move is reported at the scale
the suite already judges the cell on.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lib.errors import ConfigError
from lib.report.rows import Row
from lib.report.summary import STABLE

if TYPE_CHECKING:
    from lib.writeup.write_up import WriteUp

Key = tuple[str, str, str]
"""(claim id, kind, run label)."""


@dataclass
class Result:
    """One claims JSON: its provenance, its runs and its rows."""

    path: str
    meta: dict[str, Any] = field(default_factory=dict)
    runs: dict[str, Any] = field(default_factory=dict)
    rows: list[Row] = field(default_factory=list)

    @property
    def run_labels(self) -> list[str]:
        """The run labels of the rows (claims on the document's own tables have none)."""
        return list(dict.fromkeys(r.run for r in self.rows if r.run))


def load(path: str | Path) -> Result:
    """Read a --claims-json file: {"meta", "runs", "rows"}, or the bare list of rows written before provenance."""
    p = Path(path)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except OSError as e:
        raise ConfigError(
            f"claims JSON {str(path)!r} cannot be read ({e.strerror or e}); expected a --claims-json file"
        ) from None
    except ValueError as e:
        raise ConfigError(f"claims JSON {str(path)!r} is not JSON ({e}); expected a --claims-json file") from None
    if isinstance(data, list):
        rows, meta, runs = data, {}, {}
    elif isinstance(data, dict) and isinstance(data.get("rows"), list):
        rows, meta, runs = data["rows"], data.get("meta") or {}, data.get("runs") or {}
    else:
        raise ConfigError(
            f"claims JSON {str(path)!r} has neither a 'rows' list nor is a list of rows; expected a --claims-json file"
        )
    if meta.get("complete") is False:
        raise ConfigError(
            f"claims JSON {str(path)!r} is incomplete: the session that wrote it did not run to its end "
            f"({meta.get('stopped', 'interrupted')}); rerun that session, or compare against a complete result"
        )
    try:
        return Result(str(path), meta, runs, [Row.from_json(r) for r in rows])
    except ValueError as e:
        raise ConfigError(f"claims JSON {str(path)!r}: {e}") from None


def run_map(baseline_runs: list[str], current_runs: list[str]) -> dict[str, str]:
    """current run label -> the baseline's: by label, or the only run to the only run."""
    if len(baseline_runs) == 1 and len(current_runs) == 1:
        return {current_runs[0]: baseline_runs[0]}
    return {r: r for r in current_runs if r in baseline_runs}


def index(rows: list[Row]) -> dict[Key, Row]:
    return {(r.id, r.kind, r.run): r for r in rows}


@dataclass
class Change:
    """One difference between a baseline row and the current one."""

    before: Row
    after: Row
    tolerance: str = ""
    """For a moved cell: the tolerance it moved beyond (or "intervals that do not overlap")."""

    @property
    def noise(self) -> str:
        """A changed verdict: "beyond noise" where the claim is stable (>= STABLE of the bootstrap replicates)
        in both results, "within noise" where it is not in one of them, "" where a result has no bootstrap."""
        a, b = self.before.stability, self.after.stability
        if a is None or b is None:
            return ""
        return "beyond noise" if min(a, b) >= STABLE else "within noise"

    def where(self) -> str:
        base_run, run = self.before.run, self.after.run
        shown = run if base_run == run else f"{base_run} -> {run}"
        return f"{self.after.id} [{self.after.kind}{', ' + shown if shown else ''}]"

    def verdict_line(self) -> str:
        before, after = self.before.status, self.after.status
        noise = (
            f" ({self.noise}: stability {self.before.stability:.2f} -> {self.after.stability:.2f})"
            if self.noise
            else ""
        )
        return (
            f"{self.where()}: verdict {before.value if before else ''!r} in the baseline, "
            f"{after.value if after else ''!r} now{noise}; measured: baseline {self.before.measured or '-'}, "
            f"now {self.after.measured or '-'}"
        )

    def movement(self) -> str:
        """A moved cell's 'before -> after (relative change), beyond its tolerance'."""
        a, b = self.before.value, self.after.value
        assert a is not None and b is not None
        rel = f" ({(b - a) / abs(a):+.2%})" if a else ""
        return f"{a:.6g} -> {b:.6g}{rel}, beyond {self.tolerance}"

    def cell_line(self) -> str:
        return f"{self.where()}: {self.movement()}"


Tolerances = Mapping[str, tuple[float, float]]
"""cell id -> (rtol, atol): a write-up's cells' own tolerances (cell_tolerances)."""


def cell_tolerances(write_up: WriteUp) -> dict[str, tuple[float, float]]:
    """cell id -> (rtol, atol), the write-up's cells' own tolerances."""
    return {c.id: (c.rtol, c.atol) for c in write_up.cells}


def moved(before: float, after: float, rtol: float, atol: float) -> bool:
    """The two measured values differ by more than the cell's tolerance (NaN on one side only: moved)."""
    if math.isnan(before) or math.isnan(after):
        return math.isnan(before) != math.isnan(after)
    return not math.isclose(after, before, rel_tol=rtol, abs_tol=atol)


@dataclass
class Comparison:
    """Changed verdicts and moved cells of `current` against `baseline`."""

    verdicts: list[Change]
    cells: list[Change]
    unmatched: list[Key]
    """Baseline rows with no current row (a claim removed or renamed, a run subset, -k, another session's runs)."""
    only_current: int
    compared: int = 0
    """Current rows that had a baseline row."""

    def failing(self, strict: bool = False) -> list[Change]:
        """The changed verdicts that fail: beyond noise, or of a result without a bootstrap (every change
        counts there, as before); strict: every change."""
        return [c for c in self.verdicts if strict or c.noise != "within noise"]

    @property
    def only_baseline(self) -> int:
        return len(self.unmatched)

    def summary(self, path: str) -> str:
        """The one line a baseline session ends with."""
        unmatched = f", {self.only_baseline} baseline row(s) without a counterpart" if self.unmatched else ""
        within = sum(c.noise == "within noise" for c in self.verdicts)
        noise = f" ({within} within noise)" if within else ""
        return (
            f"baseline {path}: {self.compared} row(s) compared, {len(self.verdicts)} verdict(s) changed{noise}, "
            f"{len(self.cells)} cell(s) moved beyond their tolerance{unmatched}"
        )

    def unmatched_lines(self, limit: int = 10) -> list[str]:
        shown = [f"  {claim} [{kind}{', ' + run if run else ''}]" for claim, kind, run in self.unmatched[:limit]]
        more = len(self.unmatched) - limit
        return shown + ([f"  ... and {more} more"] if more > 0 else [])


def baseline_key(row: Row, runs: dict[str, str]) -> Key:
    """The key of the baseline's row that `row` is compared with."""
    return (row.id, row.kind, runs.get(row.run, row.run) if row.run else "")


def change_for(
    row: Row, baseline: dict[Key, Row], runs: dict[str, str], tolerances: Tolerances
) -> tuple[Change | None, Change | None]:
    """(changed verdict, moved cell) of one current row against the baseline's rows; None where unchanged.
    tolerances: the session's write-up's (cell_tolerances)."""
    before = baseline.get(baseline_key(row, runs))
    if before is None:
        return None, None
    verdict = Change(before, row) if before.status != row.status else None
    cell = None
    tol = tolerances.get(row.id) if row.kind == "cell" else None
    a, b = before.value, row.value
    if before.interval and row.interval and row.kind == "cell":  # both bootstrapped: intervals that do not overlap
        lo, hi = max(before.interval[0], row.interval[0]), min(before.interval[1], row.interval[1])
        if lo > hi:
            cell = Change(before, row, f"the 95% intervals {before.interval} and {row.interval}, which do not overlap")
    elif tol and a is not None and b is not None and moved(a, b, *tol):
        cell = Change(before, row, f"rtol={tol[0]:g} atol={tol[1]:g}")
    return verdict, cell


def judge_against(
    row: Row, baseline: Result, runs: list[str], tolerances: Tolerances, strict: bool = False
) -> str | None:
    """One row against the baseline, as a --claims-baseline session judges each claim test: a moved cell
    gets `row.moved`, a changed verdict `row.baseline` (the baseline's verdict and measured value). Returns
    the failure message where the verdict changed beyond noise (strict: at all), else None."""
    changed, moved = change_for(row, index(baseline.rows), run_map(baseline.run_labels, runs), tolerances)
    if moved is not None:
        row.moved = moved.movement()
    if changed is None:
        return None
    before = changed.before
    if changed.noise == "within noise" and not strict:
        a, b = before.stability, row.stability
        row.baseline = f"{before.verdict_text} (within noise: stability {a:.2f} -> {b:.2f})"
        return None
    row.baseline = f"{before.verdict_text}; measured {before.measured or '-'} ({baseline.path})"
    return (
        f"{row.id}: verdict changed against the baseline {baseline.path}: "
        f"{before.verdict_text!r} (measured {before.measured or '-'}) -> "
        f"{row.verdict_text!r} (measured {row.measured or '-'})"
    )


def compare(baseline: Result, current: Result, tolerances: Tolerances) -> Comparison:
    """Changed verdicts and moved cells (beyond `tolerances`, the write-up's: cell_tolerances)."""
    runs = run_map(baseline.run_labels, current.run_labels)
    base = index(baseline.rows)
    verdicts, cells, matched = [], [], set()
    for row in current.rows:
        key = baseline_key(row, runs)
        if key in base:
            matched.add(key)
        verdict, cell = change_for(row, base, runs, tolerances)
        verdicts += [verdict] if verdict else []
        cells += [cell] if cell else []
    unmatched = [key for key in base if key not in matched]
    return Comparison(verdicts, cells, unmatched, len(current.rows) - len(matched), len(matched))


def report(baseline: Result, current: Result, comparison: Comparison) -> list[str]:
    """`python -m lib compare`'s lines: both provenances, changed verdicts, moved cells, what did not match."""
    from lib.setup.provenance import describe

    lines = []
    for name, result in (("baseline", baseline), ("current", current)):
        lines += [f"{name}: {result.path}", *(f"  {line}" for line in describe(result.meta))]
    runs = run_map(baseline.run_labels, current.run_labels)
    paired = ", ".join(f"{b} -> {c}" if b != c else c for c, b in runs.items())
    lines += [f"runs compared: {paired or 'none in common'}"]
    lines += [f"options that differ: {d}" for d in [options_differ(baseline.meta, current.meta)] if d]
    lines += [
        f"presentation options that differ (how verdicts are shown, not the verdicts): {d}"
        for d in [options_differ(baseline.meta, current.meta, presentation=True)]
        if d
    ] + [""]
    if not any(r.stability is not None for r in baseline.rows):
        lines.append(
            "the baseline has no bootstrap (--bootstrap): every changed verdict counts, cells by their tolerance"
        )
    lines.append(f"changed verdicts: {len(comparison.verdicts)}")
    lines += [f"  {c.verdict_line()}" for c in comparison.verdicts]
    lines.append(f"cells that moved beyond their tolerance: {len(comparison.cells)}")
    lines += [f"  {c.cell_line()}" for c in comparison.cells]
    if comparison.unmatched:
        lines.append(f"baseline rows without a counterpart: {comparison.only_baseline}")
        lines += comparison.unmatched_lines()
    if comparison.only_current:
        lines.append(f"not compared: {comparison.only_current} row(s) only in the current result")
    return lines


PRESENTATION = ("claims_xfail", "claims_report", "claims_json", "claims_csv", "claims_baseline")
"""Options that change how verdicts are shown or where they are written, never a verdict: --claims-xfail
shows "does not hold" as xfail instead of a failure; the row's verdict is the same."""


def options_differ(before: dict[str, Any], after: dict[str, Any], presentation: bool = False) -> str:
    """'model: gpt2 -> tiny-wikitext, n_tokens: 1000 -> 500': the session options two results differ in;
    presentation: only the PRESENTATION ones (else: only the others)."""
    a, b = before.get("options") or {}, after.get("options") or {}
    keys = [k for k in sorted(a.keys() | b.keys()) if a.get(k) != b.get(k) and (k in PRESENTATION) == presentation]
    return ", ".join(f"{k}: {a.get(k)} -> {b.get(k)}" for k in keys)


def main(baseline_path: str, current_path: str, allow_unmatched: bool = False, strict: bool = False) -> int:
    """`python -m lib compare A.json B.json`: 1 when a verdict changed beyond noise (strict: at all) or a
    baseline row has no counterpart (unless allow_unmatched), 0 when neither, 2 on a bad or incomplete file."""
    import sys

    from lib.writeup.write_up import load_write_up

    try:
        baseline, current = load(baseline_path), load(current_path)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    try:  # the cells' tolerances are those of the write-up the current result judged
        write_up = load_write_up((current.meta.get("options") or {}).get("write_up"))
    except ValueError as e:
        print(f"error: {current_path}: its write-up: {e}", file=sys.stderr)
        return 2
    comparison = compare(baseline, current, cell_tolerances(write_up))
    print("\n".join(report(baseline, current, comparison)))
    print(comparison.summary(baseline.path))
    return 1 if comparison.failing(strict) or (comparison.unmatched and not allow_unmatched) else 0
