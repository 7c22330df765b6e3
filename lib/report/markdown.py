"""The Markdown report (--claims-report): a page a reader pastes into an issue or a pull request.

It opens with a one-screen summary (the verdict counts, then the claims to look at, in the order of
lib/report/summary.py), then the runs and the provenance, then one section per write-up table
(lib/report/sections.py): the document's values beside the measured ones, and each sentence once,
in English beside the Japanese it tests, with its verdict on the document and on every run ("holds
in k of n" counts the runs that judged it). With several runs, each cell's spread over the token
windows. The appendix gives what the sentences that do not hold measured; the JSON (--claims-json)
keeps every row.
Paths are relative to the working directory.
"""

from __future__ import annotations

import statistics
from typing import Any

from lib.report.rows import HELD, SHORT, Row
from lib.report.sections import LEGEND, TITLES, grid, tables_of
from lib.report.summary import (
    DOES_NOT_CARRY_OVER,
    by_section,
    count_text,
    fragile,
    fragility_text,
    look_at,
    not_carried_over,
    per_section,
    sentence,
    unstable,
)
from lib.report.text import escape, markdown_table, num, relative
from lib.writeup.claims import CLAIMS
from lib.writeup.judge import Status

_CLAIMS = {c.id: c for c in CLAIMS}

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


def mark(r: Row) -> str:
    """A verdict in a word or two, with its marks: FRAGILE (--fragility), the baseline's where it changed."""
    if r.status is None:
        return ""
    marks = ["FRAGILE"] if fragile(r) else []
    marks += [f"UNSTABLE, stability {r.stability:.2f}"] if unstable(r) else []
    marks += ["changed against the baseline"] if r.baseline else []
    return SHORT[r.status] + (f" ({', '.join(marks)})" if marks else "")


def judged(r: Row | None) -> bool:
    """Whether a run decided the claim (a skip is not judged; neither is a run without the claim)."""
    return r is not None and r.status not in (None, Status.SKIPPED)


def holds_in(cells: list[Row | None]) -> str:
    """'k of n runs' over the runs that judged the claim; 'not judged' where none did."""
    decided = [r for r in cells if judged(r)]
    if not decided:
        return "not judged"
    return f"{sum(r.status in HELD for r in decided if r)} of {len(decided)} runs"


def _summary_entry(r: Row) -> str:
    """One claim to look at, on one line: id, where, verdict, and why."""
    where = ", ".join(p for p in (r.section if r.section in TITLES else "", r.run or "on the document") if p)
    claim = _CLAIMS.get(r.id)
    if r.status is Status.CONTRADICTED:
        why = claim.contradicted if claim and claim.contradicted else r.document
    elif r.baseline:
        why = f"now {r.verdict_text}, measured {r.measured or '-'}; baseline: {r.baseline}"
    elif r.status is Status.FAILS:
        why = f"measured {r.measured or '-'}; document {r.document or '-'}"
    elif fragile(r):
        why = fragility_text(r.fragility)
    else:
        why = r.verdict_text.split(": ", 1)[-1]
    return f"- **{escape(r.id)}** ({where}): {escape(why)}"


def summary(rows: list[Row]) -> list[str]:
    """The one-screen summary: the verdict counts, the claims to look at, and how many claims do not carry
    over, per section."""
    lines = [f"Verdicts: {count_text(rows)}.", ""]
    groups = look_at(rows)
    empty = [name for name, group in groups.items() if not group and not name.startswith("FRAGILE")]
    for name, group in groups.items():
        if group:
            lines += [f"**{name[0].upper()}{name[1:]}: {len(group)}**", *(_summary_entry(r) for r in group), ""]
    if empty:
        lines += [" ".join(f"**{name[0].upper()}{name[1:]}**: none." for name in empty), ""]
    rest = not_carried_over(rows)
    if rest:
        n = sum(map(len, rest.values()))
        lines += [f"**{n} {DOES_NOT_CARRY_OVER}**: {per_section(rest)}.", ""]
    return lines


def sentences(rows: list[Row], runs: list[str]) -> list[str]:
    """A section's sentences, each once: English, the Japanese it tests, its verdict on the document and per run."""
    by_claim: dict[str, dict[str, Row]] = {}
    for r in rows:
        if r.kind != "cell":
            by_claim.setdefault(r.id, {})[r.run if r.kind == "measured" else ""] = r
    if not by_claim:
        return []
    by_claim = {c: of_claim for c, of_claim in by_claim.items() if c not in untested(rows)}
    if not by_claim:
        return []
    several = len(runs) > 1
    header = ["claim", "sentence", "original (exp7.ja.md)", "document", *(runs if several else ["this run"])]
    body = []
    for claim, of_claim in by_claim.items():
        ja = next((r.ja for r in of_claim.values() if r.ja), "")
        cells = [of_claim.get(run) for run in runs]
        verdicts = [mark(c) if c else "" for c in cells]
        on_document = mark(of_claim[""]) if "" in of_claim else ""
        body.append(
            [escape(claim), escape(sentence(claim)), escape(ja), on_document, *verdicts]
            + ([holds_in(cells)] if several else [])
        )
    return [*markdown_table(header + (["holds in"] if several else []), body), ""]


def untested(rows: list[Row]) -> list[str]:
    """The sentences no experiment of the suite can decide (every row of theirs skipped as "not tested"):
    listed once, in one line, not in their sections' tables."""
    by_claim: dict[str, list[Row]] = {}
    for r in rows:
        if r.kind != "cell":
            by_claim.setdefault(r.id, []).append(r)
    not_tested = (Status.SKIPPED, "not tested")
    return [
        c
        for c, of_claim in by_claim.items()
        if all(r.verdict is not None and (r.status, r.verdict.reason[:10]) == not_tested for r in of_claim)
    ]


def _table(title: str, table: list[str]) -> list[str]:
    """A write-up table under its title; a table of one value (7D's baseline) as one line."""
    if len(table) == 3:
        header, value = (cells.strip("| ").split(" | ") for cells in (table[0], table[2]))
        return [f"{title}: " + ", ".join(f"{h} {v}" for h, v in zip(header[1:], value[1:]) if v)]
    return [title, "", *table] if title else table


def section_lines(name: str, rows: list[Row], runs: list[str]) -> list[str]:
    """One section: the write-up's tables per run (✗ on judged cells only; named where there are several), the
    sentences."""
    lines = [f"## {TITLES[name]}", ""]
    for table in tables_of(name):
        for run in runs:
            cells = [r for r in rows if r.kind == "cell" and r.run == run and r.value is not None]
            values = {r.id: r.value for r in cells if r.value is not None}
            if values:
                marked = {r.id for r in cells if judged(r)}
                named = len(runs) > 1 or len(tables_of(name)) > 1
                title = f"`{table}`" + (f", run {run}" if len(runs) > 1 else "")
                bands = {r.id: r.interval for r in cells if r.interval}
                lines += [*_table(title if named else "", grid(table, values, marked, bands)), ""]
    lines += sentences(rows, runs)
    moved = [r for r in rows if r.moved]
    lines += [f"Against the baseline: {escape(r.id)} ({r.run}): {escape(r.moved)}" for r in moved]
    return lines + ([""] if moved else [])


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


def appendix(rows: list[Row]) -> list[str]:
    """What each sentence that did not hold on a run measured (with its fragility under --fragility); what
    the others measured stays in the JSON (--claims-json), which keeps every row."""
    shown = [r for r in rows if r.kind == "measured" and r.status in (Status.DOES_NOT_HOLD, Status.FAILS)]
    shown += [r for r in rows if r.kind == "measured" and r not in shown and (fragile(r) or r.baseline)]
    if not shown:
        return []
    with_fragility = any(r.fragility for r in shown)
    header = ["claim", "run", "verdict", "measured", *(["fragility"] if with_fragility else [])]
    body = [
        [escape(r.id), r.run, mark(r), escape(r.measured)]
        + ([escape(fragility_text(r.fragility))] if with_fragility else [])
        for r in shown
    ]
    title = "## Appendix: what the sentences that do not hold, fail or are FRAGILE measured"
    return [title, "", *markdown_table(header, body), ""]


def runs_table(runs: dict[str, dict[str, Any]]) -> list[str]:
    """The runs, one row each; the model and text as code spans, relative to the working directory."""
    body = [
        [name, *(f"`{relative(c.get(f))}`" if f in ("model", "dataset") else c.get(f, "") for f in fields)]
        for name, c in runs.items()
        for fields in [list(RUN_COLUMNS.values())[1:]]
    ]
    return markdown_table(list(RUN_COLUMNS), body)


def bootstrap_legend(rows: list[Row]) -> str:
    """What the brackets beside a value are (--bootstrap): the interval's kind, and what it describes."""
    kinds = sorted({r.interval_kind or "bootstrap" for r in rows if r.interval})
    return (
        f"[lo, hi] beside a value: its 95 percent {' / '.join(kinds)} interval over the bootstrap of these "
        "positions (docs/uncertainty.md); a prediction interval is where a fresh sample of as many positions "
        "would put the value. The bootstrap describes these positions; the token windows (--windows) describe "
        "the text."
    )


def markdown(
    rows: list[Row], runs: dict[str, dict[str, Any]], figure: str | None = None, meta: list[str] | None = None
) -> str:
    """The report: the summary, the runs and the provenance, one section per write-up table
    (lib/report/sections.py), the window spreads (several runs), the appendix.

    runs: label -> the run's config (JSON), plus 'group' (the label without its window).
    meta: the provenance lines (lib.setup.provenance.describe); absolute paths under the working
    directory are shown relative to it.
    """
    import os

    here = os.getcwd() + os.sep
    lines = ["# Experiment 7 claims report", "", *summary(rows)]
    if untested(rows):
        lines += [f"**Not tested** (`python -m lib claims` says why): {', '.join(untested(rows))}.", ""]
    lines += ["## Runs", "", *runs_table(runs), ""]
    lines += [f"- {line.replace(here, '')}" for line in meta or []] + ([""] if meta else [])
    lines += [f"![document vs measured]({relative(figure)})"] if figure else []  # the legend under it
    lines += [LEGEND, ""]
    lines += [bootstrap_legend(rows), ""] if any(r.interval for r in rows) else []
    for name, of_section in by_section(rows).items():
        lines += section_lines(name, of_section, list(runs))
    spread = window_spread(rows, runs) if len(runs) > 1 else []
    if spread:
        lines += ["## Table cells across token windows", "", *spread, ""]
    lines += appendix(rows)
    return "\n".join(lines).rstrip("\n") + "\n"
