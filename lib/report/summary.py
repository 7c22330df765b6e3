"""What a session's claim rows come to, for the terminal summary (lib/report/terminal.py) and the
Markdown report (lib/report/markdown.py) alike: the run's own counts, the findings that carry over, the
claims to look at in the order a reader takes them in, and the write-up's own verdicts, apart.

1. The run's counts (RUN_COUNTS): holds, does not hold, undecided, on the run's rows alone (cells and
   sentences on a run; the verdicts on the write-up's own tables are not the run's).
2. The findings that carry over: the sentences that hold on a run, with what each measured.
3. The claims to look at, each in the first group it belongs to (LOOK_AT): changed against the
   --claims-baseline (a regression until someone accepts it); failures (an error, or a claim that does
   not hold without --claims-xfail); FRAGILE under --fragility; UNSTABLE under --bootstrap.
4. The claims that do not hold on a run: on a model or text other than the write-up's these are the
   expected "does not carry over", so they are counted per section, and listed only on request.
5. The write-up's own verdicts (a sentence on its own tables): counted apart, and its contradicted or
   overstated sentences listed once, in a section of their own (`on_the_write_up`).
Sentences with the same reading (the same predicate and parameters) are one finding: listed once, the
others named beside it (`same_reading`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from lib.report.rows import HELD, Row
from lib.writeup.judge import Status


def fragility_text(f: dict[str, Any] | None) -> str:
    """A fragility row in a few words: k, its share and the first witnesses; FRAGILE where a claim
    that holds flips at k <= 0.5% of the positions."""
    if not f or f.get("holds") is None:
        return ""
    if f["k"] is None:
        return f"no flip within {f['budget']}"
    where = ", ".join(f"({c}, {p})" for c, p in f["positions"][:3]) + (" …" if len(f["positions"]) > 3 else "")
    return ("FRAGILE: " if f.get("fragile") else "") + f"flips at k={f['k']} ({f['share']:.1%}) dropping {where}"


STABLE = 0.95
"""A claim that holds in fewer than this share of the bootstrap's replicate pairs is UNSTABLE (docs/uncertainty.md)."""


def unstable(r: Row) -> bool:
    """A claim that holds on all positions but not in at least STABLE of the bootstrap's replicate pairs (--bootstrap)."""
    return r.stability is not None and r.stability < STABLE and r.status in HELD


def fragile(r: Row) -> bool:
    """A claim that holds but flips when at most FRAGILE_SHARE of the positions are dropped (--fragility)."""
    return bool(r.fragility and r.fragility.get("fragile")) and r.status in HELD


def not_reproduced(r: Row) -> bool:
    """A cell or sentence that does not hold on the write-up's own set-up: the finding is not reproduced
    (a regression, or a reading to revisit), which is not the same as a finding that does not carry over."""
    return bool(r.own_set_up) and r.status is Status.DOES_NOT_HOLD and r.kind in ("cell", "measured")


LOOK_AT: dict[str, Callable[[Row], bool]] = {
    "changed against the baseline": lambda r: bool(r.baseline),
    "not reproduced on the write-up's own set-up": not_reproduced,
    "failures": lambda r: r.status is Status.FAILS,
    "FRAGILE (hold, but flip when at most 0.5% of the positions are dropped)": fragile,
    "UNSTABLE (hold, but in fewer than 95% of the bootstrap's replicate pairs)": unstable,
}
"""The groups of claims a summary always shows, in its order; a claim goes to the first that takes it."""
SAID_WHEN_EMPTY = ("changed against the baseline", "failures")
"""The LOOK_AT groups the Markdown summary names even when empty ("none"); the others only where they have claims."""
DOES_NOT_CARRY_OVER = "do not hold on a run (on another model or text: the finding does not carry over)"


RUN_COUNTS = {
    "holds": HELD,
    "does not hold": (Status.DOES_NOT_HOLD, Status.FAILS),
    "undecided": (Status.SKIPPED, None),
}
"""A run's verdicts in three words: holds, does not hold (a failed test too), undecided (not judged, skipped)."""
MARKED = (Status.CONTRADICTED, Status.OVERSTATED)
"""The write-up's own verdicts that mark a sentence: its tables contradict it, or its literal reading
goes beyond them."""


def on_run(rows: Iterable[Row]) -> list[Row]:
    """The rows of the session's runs: cells and sentences on a run (not the write-up's own tables)."""
    return [r for r in rows if r.kind != "document"]


def run_counts(rows: Iterable[Row]) -> str:
    """'10 holds, 35 does not hold, 214 undecided': the run's rows alone."""
    mine = on_run(rows)
    return ", ".join(f"{sum(r.status in statuses for r in mine)} {word}" for word, statuses in RUN_COUNTS.items())


def on_the_write_up(rows: Iterable[Row]) -> list[Row]:
    """The write-up's own verdicts that mark a sentence (contradicted, overstated), in their order."""
    return [r for r in rows if r.kind == "document" and r.status in MARKED]


def same_reading(rows: Iterable[Row]) -> dict[str, list[str]]:
    """claim id -> the later claims with the same reading (predicate and parameters): one finding."""
    first: dict[str, str] = {}
    out: dict[str, list[str]] = {}
    for r in rows:
        if r.reading and r.kind != "cell":
            head = first.setdefault(r.reading, r.id)
            if head != r.id and r.id not in out.setdefault(head, []):
                out[head].append(r.id)
    return {k: v for k, v in out.items() if v}


def repeats(rows: Iterable[Row]) -> set[str]:
    """The claims whose reading an earlier claim already tests (listed under that one)."""
    return {c for later in same_reading(rows).values() for c in later}


def carry_over(rows: list[Row]) -> list[Row]:
    """The findings that carry over: the sentences that hold on a run, each reading once."""
    again = repeats(rows)
    return [r for r in rows if r.kind == "measured" and r.status in HELD and r.id not in again]


def reason(r: Row) -> str:
    """A row's verdict in words: what it measured where it was judged, why not where it was skipped."""
    if r.status is Status.SKIPPED:
        return r.verdict.reason if r.verdict else ""
    if r.kind == "document":
        return r.document
    return r.measured


def counts(rows: Iterable[Row]) -> dict[str, int]:
    """Rows per verdict, in the order the verdicts first appear."""
    out: dict[str, int] = {}
    for r in rows:
        key = r.status.value if r.status else ""
        out[key] = out.get(key, 0) + 1
    return out


def count_text(rows: Iterable[Row]) -> str:
    """'46 holds, 3 overstated by the document, ...'."""
    return ", ".join(f"{n} {k}" for k, n in counts(rows).items())


def totals(rows: list[Row]) -> str:
    """A section's counts: 'cells 20 holds, 4 fails; sentences 3 holds; on the document 4 holds'."""
    parts = []
    for kind, name in (("cell", "cells"), ("measured", "sentences"), ("document", "on the write-up")):
        of_kind = [r for r in rows if r.kind == kind]
        if of_kind:
            parts.append(f"{name} {count_text(of_kind)}")
    return "; ".join(parts)


def by_section(rows: Iterable[Row], order: Sequence[str] = ()) -> dict[str, list[Row]]:
    """Rows per report section (Row.report_section; a row of an older claims JSON: its section), the sections of
    `order` first (the write-up's, lib/report/sections.py titles), then the others as they come."""
    sections: dict[str, list[Row]] = {}
    for r in rows:
        sections.setdefault(r.report_section or r.section, []).append(r)
    return {name: sections[name] for name in [*(n for n in order if n in sections), *sections] if name in sections}


def look_at(rows: Iterable[Row]) -> dict[str, list[Row]]:
    """The claims a summary always shows, per LOOK_AT group (each claim in its first group; empty groups kept)."""
    groups: dict[str, list[Row]] = {name: [] for name in LOOK_AT}
    for r in rows:
        name = next((name for name, belongs in LOOK_AT.items() if belongs(r)), None)
        if name is not None:
            groups[name].append(r)
    return groups


def not_carried_over(rows: list[Row], order: Sequence[str] = ()) -> dict[str, list[Row]]:
    """The claims that do not hold on a run (and are in no LOOK_AT group), per report section."""
    shown = {id(r) for group in look_at(rows).values() for r in group}
    mine = (r for r in on_run(rows) if r.status is Status.DOES_NOT_HOLD and id(r) not in shown)
    return by_section(mine, order)


def per_section(groups: dict[str, list[Row]]) -> str:
    """'7A 2, 7B 4, conclusions 6'."""
    return ", ".join(f"{name} {len(rs)}" for name, rs in groups.items())


def json_document(rows: list[Row], runs: dict[str, dict[str, Any]], meta: dict[str, Any]) -> dict[str, Any]:
    """--claims-json: {"meta": provenance, "runs": label -> config, "rows": one Row.to_json per claim test and run}."""
    return {"meta": meta, "runs": runs, "rows": [r.to_json() for r in rows]}
