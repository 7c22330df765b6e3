"""The Markdown report (--claims-report): a page a reader pastes into an issue or a pull request.

It speaks of the session's write-up (a value: its title, sections, tables, cells and sentences) and of
the run. It opens with a one-screen summary (the run's own counts, the findings that carry over with what
each measured, the claims to look at, in the order of lib/report/summary.py), then the runs and the
provenance, then one section per write-up section (lib/report/sections.py): the write-up's values beside
the measured ones, and each sentence once, beside the original it tests where the write-up quotes one,
with its verdict and what it measured on every run (a skip: its reason; "holds in k of n" counts the runs
that judged it). Sentences with the same reading are listed once, the others named beside it. Then the
write-up's own verdicts, in a section of their own, and with several runs each cell's spread over the
token windows. Paths are relative to the working directory.
"""

from __future__ import annotations

import statistics
from typing import TYPE_CHECKING, Any

from lib.report.rows import HELD, SHORT, Row
from lib.report.sections import LEGEND, grid, tables_of, titles
from lib.report.summary import (
    DOES_NOT_CARRY_OVER,
    SAID_WHEN_EMPTY,
    by_section,
    carry_over,
    count_text,
    fragile,
    fragility_text,
    look_at,
    not_carried_over,
    on_run,
    on_the_write_up,
    per_section,
    reason,
    run_counts,
    same_reading,
    unstable,
)
from lib.report.text import escape, markdown_table, num, relative
from lib.writeup.judge import Status

if TYPE_CHECKING:
    from lib.writeup.write_up import WriteUp

OWN_TABLES = "The write-up's own tables"
"""The section of the write-up's own verdicts (a sentence on its own numbers), printed once."""

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


def _summary_entry(r: Row, write_up: WriteUp) -> str:
    """One claim to look at, on one line: id, where, verdict, and why."""
    section = r.report_section or r.section
    where = ", ".join(
        p for p in (section if section in write_up.section_titles else "", r.run or "on the write-up") if p
    )
    if r.baseline:
        why = f"now {r.verdict_text}, measured {r.measured or '-'}; baseline: {r.baseline}"
    elif r.status is Status.FAILS:
        why = f"measured {r.measured or '-'}; write-up {r.document or '-'}"
    elif fragile(r):
        why = fragility_text(r.fragility)
    else:
        why = r.verdict_text.split(": ", 1)[-1]
    return f"- **{escape(r.id)}** ({where}): {escape(why)}"


def _also(claim: str, same: dict[str, list[str]]) -> str:
    """' (also: id2, id3)' for the claims with the same reading as `claim` (same: summary.same_reading)."""
    others = same.get(claim)
    return f" (also: {', '.join(others)})" if others else ""


def summary(rows: list[Row], write_up: WriteUp) -> list[str]:
    """The one-screen summary: the run's own counts, the findings that carry over with what each measured,
    the claims to look at, how many claims do not carry over per section, and a pointer to the write-up's
    own verdicts."""
    lines = []
    runs = list(dict.fromkeys(r.run for r in on_run(rows)))
    if runs:
        lines += [f"This run: {run_counts(rows)}." if len(runs) == 1 else f"The {len(runs)} runs: {run_counts(rows)}."]
        lines += [f"- {run}: {run_counts(r for r in rows if r.run == run)}" for run in runs if len(runs) > 1]
        lines += [""]
        findings = carry_over(rows)
        lines += [f"**Findings that carry over: {len(findings)}**"]
        lines += [
            f"- **{escape(r.id)}**{escape(_also(r.id, same_reading(rows)))} ({r.report_section or r.section}, {r.run}): "
            f"measured {escape(r.measured or '-')}"
            for r in findings
        ]
        lines += [""]
    own = [r for r in rows if r.kind == "document"]
    if own:
        marked = len(on_the_write_up(rows))
        pointer = f" ({marked} contradicted or overstated: see *{OWN_TABLES}*)" if marked else ""
        lines += [f"On the write-up's own tables: {count_text(own)}{pointer}.", ""]
    groups = look_at(rows)
    empty = [name for name, group in groups.items() if not group and name in SAID_WHEN_EMPTY]
    for name, group in groups.items():
        if group:
            lines += [
                f"**{name[0].upper()}{name[1:]}: {len(group)}**",
                *(_summary_entry(r, write_up) for r in group),
                "",
            ]
    if empty:
        lines += [" ".join(f"**{name[0].upper()}{name[1:]}**: none." for name in empty), ""]
    rest = not_carried_over(rows, list(titles(write_up)))
    if rest:
        n = sum(map(len, rest.values()))
        lines += [f"**{n} {DOES_NOT_CARRY_OVER}**: {per_section(rest)}.", ""]
    return lines


def _verdict(r: Row | None, same: dict[str, list[str]]) -> str:
    """A run's verdict on a sentence, with what it measured (a skip: its reason); a claim whose reading
    an earlier one tests points to it."""
    if r is None or r.status is None:
        return ""
    head = next((c for c, later in same.items() if r.id in later), None)
    said = f"as {head}" if head else reason(r)
    return escape(mark(r) + (f": {said}" if said else ""))


def sentences(
    rows: list[Row], runs: list[str], original: str = "original", same: dict[str, list[str]] | None = None
) -> list[str]:
    """A section's sentences, each once: the sentence, the original it tests (where the write-up quotes one:
    `original` names the column), its verdict on the write-up's tables and per run, with what it measured.
    same: the claims with the same reading (summary.same_reading over every row; default: over `rows`)."""
    same = same_reading(rows) if same is None else same
    again = {c for later in same.values() for c in later}
    by_claim: dict[str, dict[str, Row]] = {}
    for r in rows:
        if r.kind != "cell":
            by_claim.setdefault(r.id, {})[r.run if r.kind == "measured" else ""] = r
    skip = set(untested(rows))
    by_claim = {c: of_claim for c, of_claim in by_claim.items() if c not in skip}
    if not by_claim:
        return []
    several = len(runs) > 1
    header = ["claim", "sentence", *([original] if original else []), "write-up", *(runs if several else ["this run"])]
    body = []
    for claim, of_claim in by_claim.items():
        ja = next((r.ja for r in of_claim.values() if r.ja), "")
        sentence = next((r.sentence for r in of_claim.values() if r.sentence), "")
        cells = [of_claim.get(run) for run in runs]
        own = of_claim.get("")
        document = mark(own) if own else ""
        side = next((r.document for r in of_claim.values() if r.document), "")
        if side and claim not in again:
            document = f"{document}: {side}" if document else side
        body.append(
            [escape(claim + _also(claim, same)), escape(sentence), *([escape(ja)] if original else [])]
            + [escape(document), *(_verdict(c, same) for c in cells)]
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
    """A write-up table under its title; a table of one row (7D's baseline, one layer) as one line."""
    if len(table) == 3:
        header, value = (cells.strip("| ").split(" | ") for cells in (table[0], table[2]))
        row = f"{header[0]} {value[0]}: " if header[0] != "quantity" else ""
        return [
            f"{title + ': ' if title else ''}{row}" + ", ".join(f"{h} {v}" for h, v in zip(header[1:], value[1:]) if v)
        ]
    return [title, "", *table] if title else table


def _same_set_up(config: dict[str, Any], judged_cells: set[str], write_up: WriteUp) -> bool:
    """Whether a run is the write-up's set-up (its config, RunConfig.to_json); without a config, whether
    it judged a cell."""
    return not write_up.document.setup.differs(config) if config.get("model") else bool(judged_cells)


def section_lines(
    name: str,
    rows: list[Row],
    runs: dict[str, dict[str, Any]] | list[str],
    write_up: WriteUp,
    same: dict[str, list[str]] | None = None,
) -> list[str]:
    """One section: the write-up's tables per run (✗ on judged cells only; named where there are several), the
    sentences (same: the claims with the same reading, over every section)."""
    configs = runs if isinstance(runs, dict) else {run: {} for run in runs}
    lines = [f"## {titles(write_up).get(name, name)}", ""]
    shown = tables_of(name, write_up)
    for table in shown:
        for run in configs:
            cells = [r for r in rows if r.kind == "cell" and r.run == run and r.value is not None]
            values = {r.id: r.value for r in cells if r.value is not None}
            if any(c.id in values for c in write_up.cells if c.table == table):
                marked = {r.id for r in cells if judged(r)}
                named = len(configs) > 1 or len(shown) > 1
                title = f"`{table}`" + (f", run {run}" if len(configs) > 1 else "")
                bands = {r.id: r.interval for r in cells if r.interval}
                set_up = _same_set_up(configs[run], marked, write_up)
                lines += [*_table(title if named else "", grid(table, values, marked, write_up, bands, set_up)), ""]
    lines += sentences(rows, list(configs), write_up.original, same)
    moved = [r for r in rows if r.moved]
    lines += [f"Against the baseline: {escape(r.id)} ({r.run}): {escape(r.moved)}" for r in moved]
    return lines + ([""] if moved else [])


def own_tables(rows: list[Row]) -> list[str]:
    """The write-up's own verdicts, once: their counts, then each sentence its own tables contradict or
    overstate, with why."""
    own = [r for r in rows if r.kind == "document"]
    if not own:
        return []
    lines = [
        f"## {OWN_TABLES}",
        "",
        f"Each sentence checked against the write-up's own numbers: {count_text(own)}.",
        "",
    ]
    for r in on_the_write_up(rows):
        lines.append(
            f"- **{escape(r.id)}** ({SHORT[r.status] if r.status else ''}): {escape(r.note.split(': ', 1)[-1] or r.document)}"
        )
    return lines + [""]


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
    """The sentences that are FRAGILE (--fragility) or changed against the baseline, with their fragility
    (what every sentence measured is in its section's table)."""
    shown = [r for r in rows if r.kind == "measured" and (fragile(r) or r.baseline)]
    if not shown:
        return []
    with_fragility = any(r.fragility for r in shown)
    header = ["claim", "run", "verdict", "measured", *(["fragility"] if with_fragility else [])]
    body = [
        [escape(r.id), r.run, mark(r), escape(r.measured)]
        + ([escape(fragility_text(r.fragility))] if with_fragility else [])
        for r in shown
    ]
    title = "## Appendix: FRAGILE sentences and sentences changed against the baseline"
    return [title, "", *markdown_table(header, body), ""]


def cell_skips(rows: list[Row]) -> list[str]:
    """Why a run's table cells were not judged, once per run and reason ("this run differs in model, ...")."""
    reasons: dict[tuple[str, str], int] = {}
    for r in rows:
        if r.kind == "cell" and r.status is Status.SKIPPED and r.verdict is not None:
            reasons[(r.run, r.verdict.reason)] = reasons.get((r.run, r.verdict.reason), 0) + 1
    out = [f"- {n} table cells of {run} skipped: {escape(why)}" for (run, why), n in reasons.items()]
    return [*out, ""] if out else []


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
    rows: list[Row],
    runs: dict[str, dict[str, Any]],
    write_up: WriteUp,
    figure: str | None = None,
    meta: list[str] | None = None,
) -> str:
    """The report of `write_up`'s claims: the summary, the runs and the provenance, one section per
    write-up section (lib/report/sections.py), the write-up's own verdicts, the window spreads (several
    runs), the appendix.

    runs: label -> the run's config (JSON), plus 'group' (the label without its window).
    meta: the provenance lines (lib.setup.provenance.describe); absolute paths under the working
    directory are shown relative to it.
    """
    import os

    here = os.getcwd() + os.sep
    lines = [f"# {write_up.title}: claims report", "", *summary(rows, write_up)]
    if untested(rows):
        lines += [f"**Not tested** (`python -m lib claims` says why): {', '.join(untested(rows))}.", ""]
    lines += ["## Runs", "", *runs_table(runs), ""]
    lines += cell_skips(rows)
    lines += [f"- {line.replace(here, '')}" for line in meta or []] + ([""] if meta else [])
    lines += [f"![write-up vs measured]({relative(figure)})"] if figure else []  # the legend under it
    lines += [LEGEND, ""]
    lines += [bootstrap_legend(rows), ""] if any(r.interval for r in rows) else []
    for name, of_section in by_section(rows, list(titles(write_up))).items():
        lines += section_lines(name, of_section, runs, write_up, same_reading(rows))
    lines += own_tables(rows)
    spread = window_spread(rows, runs) if len(runs) > 1 else []
    if spread:
        lines += ["## Table cells across token windows", "", *spread, ""]
    lines += appendix(rows)
    return "\n".join(lines).rstrip("\n") + "\n"
