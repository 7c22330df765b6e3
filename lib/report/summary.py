"""What a session's claim rows come to, for the terminal summary (lib/report/terminal.py) and the
Markdown report (lib/report/markdown.py) alike: the verdict counts, and the claims to look at in the
order a reader takes them in.

The claims to look at, each in the first group it belongs to (LOOK_AT):
1. contradicted or overstated by the document (the write-up's own tables disagree with its sentence);
2. changed against the --claims-baseline (a regression until someone accepts it);
3. failures (a test that failed: an error, or a claim that does not hold without --claims-xfail);
4. FRAGILE under --fragility (holds, but flips when at most 0.5% of the positions are dropped).
Then the claims that do not hold on a run: on a model or text other than the write-up's these are the
expected "does not carry over", so they are counted per section, and listed only on request.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from lib.report.rows import HELD, Row
from lib.report.sections import TITLES, section_of
from lib.writeup.claims import CLAIMS
from lib.writeup.judge import Status

_SENTENCES = {c.id: c.sentence for c in CLAIMS}


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


LOOK_AT: dict[str, Callable[[Row], bool]] = {
    "contradicted or overstated by the document": lambda r: r.status in (Status.CONTRADICTED, Status.OVERSTATED),
    "changed against the baseline": lambda r: bool(r.baseline),
    "failures": lambda r: r.status is Status.FAILS,
    "FRAGILE (hold, but flip when at most 0.5% of the positions are dropped)": fragile,
    "UNSTABLE (hold, but in fewer than 95% of the bootstrap's replicate pairs)": unstable,
}
"""The groups of claims a summary always shows, in its order; a claim goes to the first that takes it."""
DOES_NOT_CARRY_OVER = "do not hold on a run (on another model or text: the finding does not carry over)"


def sentence(claim_id: str) -> str:
    """A claim's English sentence (claims.toml); empty for a table cell or a claim of another write-up."""
    return _SENTENCES.get(claim_id, "")


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
    for kind, name in (("cell", "cells"), ("measured", "sentences"), ("document", "on the document")):
        of_kind = [r for r in rows if r.kind == kind]
        if of_kind:
            parts.append(f"{name} {count_text(of_kind)}")
    return "; ".join(parts)


def by_section(rows: Iterable[Row]) -> dict[str, list[Row]]:
    """Rows per report section (lib/report/sections.py), in the report's order."""
    sections: dict[str, list[Row]] = {}
    for r in rows:
        sections.setdefault(section_of(r.id, r.section), []).append(r)
    return {name: sections[name] for name in TITLES if name in sections}


def look_at(rows: Iterable[Row]) -> dict[str, list[Row]]:
    """The claims a summary always shows, per LOOK_AT group (each claim in its first group; empty groups kept)."""
    groups: dict[str, list[Row]] = {name: [] for name in LOOK_AT}
    for r in rows:
        name = next((name for name, belongs in LOOK_AT.items() if belongs(r)), None)
        if name is not None:
            groups[name].append(r)
    return groups


def not_carried_over(rows: list[Row]) -> dict[str, list[Row]]:
    """The claims that do not hold on a run (and are in no LOOK_AT group), per report section."""
    shown = {id(r) for group in look_at(rows).values() for r in group}
    return by_section(r for r in rows if r.status is Status.DOES_NOT_HOLD and id(r) not in shown)


def per_section(groups: dict[str, list[Row]]) -> str:
    """'7A 2, 7B 4, conclusions 6'."""
    return ", ".join(f"{name} {len(rs)}" for name, rs in groups.items())


def json_document(rows: list[Row], runs: dict[str, dict[str, Any]], meta: dict[str, Any]) -> dict[str, Any]:
    """--claims-json: {"meta": provenance, "runs": label -> config, "rows": one Row.to_json per claim test and run}."""
    return {"meta": meta, "runs": runs, "rows": [r.to_json() for r in rows]}
