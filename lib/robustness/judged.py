"""What the drop-k search (dropk.py) and the bootstrap (bootstrap.py) share: the claims they judge and
how, the held-capture rule, and what their cache entries depend on."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lib.errors import ConfigError
from lib.tables.registry import TABLES, names
from lib.writeup import judge as judge_module
from lib.writeup.claims import Cell, Claim
from lib.writeup.judge import decide
from lib.writeup.write_up import EXP7_WRITE_UP, WriteUp

if TYPE_CHECKING:
    from lib.tables.run import Run

PER_LAYER: dict[str, tuple[str, ...]] = {n: TABLES[n].reads for n in names(per_layer=True)}
"""Tables whose row i is layer i, and the writes (or "norm": 7A's per-position norms) row i reads
(lib/tables/registry.py); every other table reads its writes at every layer."""


def require_held(run: Run, option: str) -> None:
    """ConfigError unless the run holds every position's Δφ in memory (Run.held): both analyses
    re-weight the positions one by one."""
    cfg = run.bridge.cfg
    if not run.held(cfg.n_layers, cfg.d_model):
        raise ConfigError(
            f"{option} needs every position's Δφ held in memory (at most {run.stream_above:,} positions and "
            f"{run.hold_bytes / 2**30:.0f} GiB); got --n-tokens {run.config.n_tokens:,}: lower it"
        )


Judged = Claim | Cell
"""What the search judges: a sentence (its predicate) or a table cell (within tolerance)."""


def kind_of(item: Judged) -> str:
    return "cell" if isinstance(item, Cell) else "sentence"


def verdict(item: Judged, tables: Mapping[str, Any]) -> tuple[bool | None, str]:
    """(holds, what was measured) by the one judge (lib/writeup/judge.py); holds None where these tables
    cannot decide it (its reason then)."""
    v = decide(item, tables, cell_value)
    if v.holds is None:
        return None, v.reason
    return v.holds, f"{v.value:.6g}" if v.value is not None else v.measured


def cell_value(cell: Cell, tables: Mapping[str, Any]) -> float | None:
    """Cell.measured, reading a per-layer table's row by index (row i is layer i) so that the other
    layers' rows are not computed."""
    if cell.table in PER_LAYER and cell.row is not None:
        rows = tables[cell.table]
        return float(rows[cell.row][cell.column]) if cell.row < len(rows) else None
    return cell.measured(tables)  # type: ignore[arg-type]


def claims_digest(write_up: WriteUp = EXP7_WRITE_UP) -> str:
    """What the cached rows depend on beside the run: every claim's id, predicate (by name, with its
    parameters and scope) and every cell's value and tolerance, and the source of the code that decides
    them (the predicates, the roles, the judge), so that a changed predicate recomputes them. Read from
    text only, never from object reprs, so every process computes the same digest."""
    h = hashlib.sha256()
    for j in judged(True, write_up):
        if isinstance(j, Cell):
            h.update(repr((j.id, j.value, j.rtol, j.atol)).encode())
        else:
            h.update(repr((j.id, j.predicate_name, j.params, j.scope, j.followup)).encode())
    h.update(write_up.digest.encode())  # its files: checks, [constants], its own predicates.py
    code = Path(judge_module.__file__).parent  # lib/writeup/
    for source in sorted([*code.glob("predicates/*.py"), code / "roles.py", code / "judge.py", code / "expression.py"]):
        h.update(source.name.encode() + source.read_bytes())
    return h.hexdigest()[:16]


def judged(follow_ups: bool = False, write_up: WriteUp = EXP7_WRITE_UP) -> list[Judged]:
    """Every sentence with a predicate that reads 7A-7E and the causes (and, with follow_ups, the
    follow-up tables 7F-7H), then every cell."""
    sentences: list[Judged] = [c for c in write_up.claims if c.predicate is not None and (follow_ups or not c.followup)]
    return sentences + list(write_up.cells)


def cache_meta(
    stage: str, version: int, run: Run, write_up: WriteUp, follow_ups: bool, **params: Any
) -> dict[str, Any]:
    """What a cached search over a run's positions (fragility, the bootstrap) depends on: its version and
    parameters, the tables' version, the claims (claims_digest) and the run's identity; the follow-ups' too."""
    from lib.tables.followups import FOLLOWUPS_VERSION
    from lib.tables.run import TABLES_VERSION

    meta = {"stage": stage, "version": version, "tables_version": TABLES_VERSION, **params}
    meta.update(claims=claims_digest(write_up), **run.config.identity())
    if follow_ups:
        meta.update(follow_ups=True, followups_version=FOLLOWUPS_VERSION)
    return meta
