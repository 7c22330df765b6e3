"""The claims summary: one row per claim test and run, in the terminal, as Markdown and as JSON.

The Markdown report follows the write-up: one section per table (lib/report/sections.py) with the
document's values beside the measured ones, then the section's sentences and totals; the
runs and the provenance (lib/setup/provenance.py) head it, every claim test is listed at the end.
With several runs it adds a claim x run matrix ("holds in k of n runs") and, for every table
cell, the spread of the measured value over the windows of each model and text.

The terminal summary fits TERMINAL_WIDTH columns: totals per section, then the claims to look
at (failing, not holding, changed against the baseline, contradicted or overstated by the
document, FRAGILE under --fragility); `-v` lists every claim. Lines wrap between words, never inside a number.
"""

from __future__ import annotations

import statistics
import textwrap
from collections.abc import Iterable
from typing import Any

from lib.report.rows import HELD, SHORT, Row
from lib.report.sections import LEGEND, TITLES, grid, section_of, tables_of
from lib.report.text import escape, markdown_table, num
from lib.writeup.judge import Status

TERMINAL_WIDTH = 120
"""The terminal summary's width: a common terminal's, and what a review diff shows unwrapped."""
LOOK_AT = {
    Status.FAILS: "fails",
    Status.DOES_NOT_HOLD: "does not hold",
    Status.CONTRADICTED: "contradicted by the document",
    Status.OVERSTATED: "overstated by the document",
}
"""Verdicts the terminal summary always lists (with every claim changed against the baseline)."""


def fragility_text(f: dict[str, Any] | None) -> str:
    """A fragility row in a few words: k, its share and the first witnesses; FRAGILE where a claim
    that holds flips at k <= 0.5% of the positions."""
    if not f or f.get("holds") is None:
        return ""
    if f["k"] is None:
        return f"no flip within {f['budget']}"
    where = ", ".join(f"({c}, {p})" for c, p in f["positions"][:3]) + (" …" if len(f["positions"]) > 3 else "")
    return ("FRAGILE: " if f.get("fragile") else "") + f"flips at k={f['k']} ({f['share']:.1%}) dropping {where}"


def counts(rows: Iterable[Row]) -> dict[str, int]:
    """Rows per verdict, in the order the verdicts first appear."""
    out: dict[str, int] = {}
    for r in rows:
        key = r.status.value if r.status else ""
        out[key] = out.get(key, 0) + 1
    return out


def wrap(text: str, indent: str = "", width: int = TERMINAL_WIDTH) -> list[str]:
    """text in lines of at most `width` columns, broken between words (numbers stay whole); a
    continuation is indented 4 more. A single word longer than a line is the only thing cut."""
    text = " ".join(str(text).split())
    options = {"width": width, "initial_indent": indent, "subsequent_indent": indent + "    "}
    lines = textwrap.wrap(text, break_long_words=False, break_on_hyphens=False, **options)
    if any(len(line) > width for line in lines):
        lines = textwrap.wrap(text, break_long_words=True, break_on_hyphens=False, **options)
    return lines or [indent.rstrip()]


def _entry(r: Row) -> list[str]:
    """One claim in the terminal: what, where, verdict; then what the document and the run say."""
    where = ", ".join(p for p in (r.kind, r.run) if p)
    lines = wrap(f"{r.id} ({where}): {r.verdict_text}", "  ")
    if r.kind == "cell":
        lines += wrap(f"document {r.document}, measured {r.measured or '-'}", "      ")
    else:
        lines += wrap(f"document: {r.document or '-'}", "      ")
        lines += wrap(f"measured: {r.measured}", "      ") if r.kind != "document" and r.measured else []
    lines += wrap(f"baseline: {r.baseline}", "      ") if r.baseline else []
    lines += wrap(f"against the baseline: {r.moved}", "      ") if r.moved else []
    lines += wrap(f"fragility: {fragility_text(r.fragility)}", "      ") if fragility_text(r.fragility) else []
    return lines


def fragile(r: Row) -> bool:
    """A claim that holds but flips when at most FRAGILE_SHARE of the positions are dropped (--fragility)."""
    return bool(r.fragility and r.fragility.get("fragile")) and r.status in HELD


def look_at(r: Row) -> bool:
    """A claim the terminal summary always shows."""
    return bool(r.baseline) or fragile(r) or r.status in LOOK_AT


def terminal_summary(rows: list[Row], verbose: bool = False, collapse: int = 5) -> list[str]:
    """Totals per section, then the claims to look at (every claim with verbose; skips sharing a
    reason more than `collapse` times as one line), then the totals; no line over TERMINAL_WIDTH."""
    sections: dict[str, list[Row]] = {}
    for r in rows:
        sections.setdefault(section_of(r.id, r.section), []).append(r)
    lines = ["totals per section:"]
    for name in (n for n in TITLES if n in sections):
        lines += wrap(f"{name}: {totals(sections[name])}", "  ")
    shown = [r for r in rows if verbose or look_at(r)]
    reasons: dict[str, list[Row]] = {}
    for r in shown:
        if r.status is Status.SKIPPED and not r.baseline:
            reasons.setdefault(r.verdict_text, []).append(r)
    collapsed = {v for v, rs in reasons.items() if len(rs) > collapse}
    title = (
        "every claim"
        if verbose
        else "claims to look at (" + ", ".join(LOOK_AT.values()) + ", changed against the baseline, or FRAGILE)"
    )
    lines += ["", *wrap(f"{title}: {len(shown)}")]
    for r in shown:
        if r.verdict_text not in collapsed:
            lines += _entry(r)
    for v in sorted(collapsed):
        lines += wrap(f"({len(reasons[v])} claims) {v}", "  ")
    moved = [r for r in rows if r.moved]
    if moved:
        lines += ["", f"cells that moved beyond their tolerance against the baseline: {len(moved)}"]
        for r in moved:
            lines += wrap(f"{r.id} ({r.run}): {r.moved}", "  ")
    summary = "totals: " + ", ".join(f"{n} {k}" for k, n in counts(rows).items())
    n_fragile = sum(map(fragile, rows))
    summary += (
        f"; {n_fragile} FRAGILE (hold, but flip when at most 0.5% of the positions are dropped)" if n_fragile else ""
    )
    lines += ["", *wrap(summary)]
    if not verbose:
        lines.append("(-v lists every claim)")
    return lines


def totals(rows: list[Row]) -> str:
    """A section's counts: 'cells 20 holds, 4 fails; sentences 3 holds; on the document 4 holds'."""
    parts = []
    for kind, name in (("cell", "cells"), ("measured", "sentences"), ("document", "on the document")):
        of_kind = [r for r in rows if r.kind == kind]
        if of_kind:
            parts.append(f"{name} " + ", ".join(f"{n} {k}" for k, n in counts(of_kind).items()))
    return "; ".join(parts)


def matrix(rows: list[Row], runs: list[str]) -> list[str]:
    """Markdown lines: one row per claim test (cells and sentences), one column per run."""
    by_claim: dict[tuple[str, str], dict[str, Row]] = {}
    for r in rows:
        if r.run:
            by_claim.setdefault((r.id, r.kind), {})[r.run] = r
    body = []
    for (claim, kind), cells in by_claim.items():
        statuses = [cells[run].status if run in cells else None for run in runs]
        held = sum(s in HELD for s in statuses)
        body.append([claim, kind, *(SHORT[s] if s else "" for s in statuses), f"{held} of {len(runs)} runs"])
    return markdown_table(["claim", "kind", *runs, "holds in"], body)


def window_spread(rows: list[Row], runs: dict[str, dict[str, Any]]) -> list[str]:
    """Markdown lines: each table cell's measured mean, sd and min-max over the windows of one
    model, text and convention, beside the document's value (is 1000 tokens typical?)."""
    groups: dict[tuple[str, str], list[float]] = {}
    document: dict[str, str] = {}
    for r in rows:
        if r.kind == "cell" and r.value is not None and r.run in runs:
            group = runs[r.run].get("group", r.run)
            groups.setdefault((r.id, group), []).append(r.value)
            document[r.id] = r.document
    body = [
        [cell, group, len(values), document[cell], num(statistics.mean(values), whole=False)]
        + [
            num(statistics.stdev(values), 3, whole=False),
            f"{num(min(values), whole=False)}–{num(max(values), whole=False)}",
        ]
        for (cell, group), values in groups.items()
        if len(values) >= 2
    ]
    return markdown_table(["cell", "runs", "windows", "document", "mean", "sd", "min–max"], body) if body else []


def section_lines(name: str, rows: list[Row], runs: list[str]) -> list[str]:
    """One section of the Markdown report: the write-up's tables per run, the sentences, the totals."""
    lines = [f"## {TITLES[name]}", ""]
    for table in tables_of(name):
        for run in runs:
            values = {r.id: r.value for r in rows if r.kind == "cell" and r.run == run and r.value is not None}
            if values:
                lines += [f"`{table}`" + (f", run {run}" if len(runs) > 1 else ""), "", *grid(table, values), ""]
    sentences = [r for r in rows if r.kind != "cell"]
    if sentences:
        header = ["claim", "kind", "run", "original (exp7.ja.md)", "document", "measured", "verdict"]
        body = [
            [escape(r.id), r.kind, r.run, escape(r.ja), escape(r.document), escape(r.measured)]
            + [escape(r.verdict_text + (f" (baseline: {r.baseline})" if r.baseline else ""))]
            for r in sentences
        ]
        lines += [*markdown_table(header, body), ""]
    moved = [r for r in rows if r.moved]
    lines += [f"Against the baseline: {escape(r.id)} ({r.run}): {escape(r.moved)}" for r in moved]
    lines += [""] if moved else []
    return [*lines, f"Totals: {totals(rows)}", ""]


RUN_COLUMNS = {
    "run": None,
    "model": "model",
    "text": "dataset",
    "positions": "n_tokens",
    "dtype": "dtype",
    "numerics": "numerics",
    "position policy": "positions",
    "PCA": "pca",
    "window": "window",
    "device": "device",
}
"""The Runs table: column -> the run config's field (RunConfig.to_json)."""


def markdown(
    rows: list[Row], runs: dict[str, dict[str, Any]], figure: str | None = None, meta: list[str] | None = None
) -> str:
    """The report: provenance, runs, totals, one section per write-up table (lib/report/sections.py), the
    claim x run matrix and window spreads (several runs), and every claim test at the end.

    runs: label -> the run's config (JSON), plus 'group' (the label without its window).
    meta: the provenance lines (lib.setup.provenance.describe).
    """
    lines = ["# Experiment 7 claims report", ""]
    lines += [f"- {line}" for line in meta or []] + ([""] if meta else [])
    code = ("model", "dataset")  # names and paths in code spans
    runs_body = [
        [name, *(f"`{c.get(f)}`" if f in code else c.get(f, "") for f in list(RUN_COLUMNS.values())[1:])]
        for name, c in runs.items()
    ]
    lines += ["## Runs", "", *markdown_table(list(RUN_COLUMNS), runs_body)]
    lines += ["", "Totals: " + ", ".join(f"{n} {k}" for k, n in counts(rows).items()), ""]
    if figure:
        lines += [f"![document vs measured]({figure})", ""]
    sections: dict[str, list[Row]] = {}
    for r in rows:
        sections.setdefault(section_of(r.id, r.section), []).append(r)
    lines += [LEGEND, ""]
    for name in (n for n in TITLES if n in sections):
        lines += section_lines(name, sections[name], list(runs))
    if len(runs) > 1:
        lines += ["## Claims across runs", "", *matrix(rows, list(runs)), ""]
        spread = window_spread(rows, runs)
        if spread:
            lines += ["## Table cells across token windows", "", *spread, ""]
    fragility = any(r.fragility for r in rows)  # --fragility: one more column
    header = ["claim", "section", "kind", "run", "original (exp7.ja.md)", "document", "measured", "verdict"]
    body = [
        [escape(r.id), r.section, r.kind, r.run, escape(r.ja), escape(r.document), escape(r.measured)]
        + [escape(r.verdict_text), *([escape(fragility_text(r.fragility))] if fragility else [])]
        for r in rows
    ]
    lines += ["## Every claim test", "", *markdown_table(header + (["fragility"] if fragility else []), body)]
    return "\n".join(lines) + "\n"


def json_document(rows: list[Row], runs: dict[str, dict[str, Any]], meta: dict[str, Any]) -> dict[str, Any]:
    """--claims-json: {"meta": provenance, "runs": label -> config, "rows": one Row.to_json per claim test and run}."""
    return {"meta": meta, "runs": runs, "rows": [r.to_json() for r in rows]}
