"""The claims summary in the terminal, at the terminal's width (lib/report/text.py `width`).

It leads with the run: its own counts (holds, does not hold, undecided), the findings that carry over
with what each measured; then the claims to look at, in the order of lib/report/summary.py (changed
against the baseline, failures, FRAGILE, UNSTABLE); then the claims that do not hold on a run, counted per
section; then the totals per section, and one line pointing to the write-up's own verdicts (listed with
-v, or where the session judged only the write-up's own tables). `-v` lists every claim. Lines wrap
between words, never inside a number, at display width (wide characters take two columns).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lib.report.rows import Row
from lib.report.sections import titles
from lib.report.summary import (
    DOES_NOT_CARRY_OVER,
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
    run_counts,
    same_reading,
    totals,
    unstable,
)
from lib.report.text import MIN_WIDTH, num, wrap
from lib.writeup.judge import Status

if TYPE_CHECKING:
    from lib.writeup.write_up import WriteUp


def entry(r: Row, columns: int = MIN_WIDTH) -> list[str]:
    """One claim: what, where, verdict; then what the document and the run say."""
    where = ", ".join(p for p in (r.kind, r.run) if p)
    lines = wrap(f"{r.id} ({where}): {r.verdict_text}", "  ", columns)
    detail = lambda text: wrap(text, "      ", columns)  # noqa: E731
    if r.kind == "cell":
        lines += detail(f"document {r.document}, measured {r.measured or '-'}")
    else:
        lines += detail(f"document: {r.document or '-'}")
        lines += detail(f"measured: {r.measured}") if r.kind != "document" and r.measured else []
    lines += detail(f"baseline: {r.baseline}") if r.baseline else []
    lines += detail(f"against the baseline: {r.moved}") if r.moved else []
    lines += detail(f"fragility: {fragility_text(r.fragility)}") if fragility_text(r.fragility) else []
    if r.interval:
        kind, sd = r.interval_kind or "bootstrap", f", sd {num(r.sd)}" if r.sd is not None else ""
        lines += detail(f"95 percent {kind} interval [{num(r.interval[0])}, {num(r.interval[1])}]{sd}")
    lines += (
        detail(f"stability {r.stability:.2f}" + (" (UNSTABLE)" if unstable(r) else ""))
        if r.stability is not None
        else []
    )
    return lines


def _collapsed(rows: list[Row], columns: int, collapse: int) -> list[str]:
    """Entries, skips that share a reason more than `collapse` times as one line."""
    reasons: dict[str, list[Row]] = {}
    for r in rows:
        if r.status is Status.SKIPPED and not r.baseline:
            reasons.setdefault(r.verdict_text, []).append(r)
    collapsed = {v for v, rs in reasons.items() if len(rs) > collapse}
    lines = [line for r in rows if r.verdict_text not in collapsed for line in entry(r, columns)]
    return lines + [line for v in sorted(collapsed) for line in wrap(f"({len(reasons[v])} claims) {v}", "  ", columns)]


def _own_tables(rows: list[Row], listed: bool, columns: int) -> list[str]:
    """The write-up's own verdicts: one line (listed: with each sentence its tables contradict or overstate)."""
    own = [r for r in rows if r.kind == "document"]
    if not own:
        return []
    marked = on_the_write_up(rows)
    head = f"the write-up's own tables: {count_text(own)}"
    if not listed:
        return ["", *wrap(head + (f" (-v lists the {len(marked)} marked)" if marked else ""), "", columns)]
    lines = ["", *wrap(head, "", columns)]
    for r in marked:
        lines += wrap(f"{r.id}: {r.verdict_text.split(':', 1)[0]}", "  ", columns)
        lines += wrap(r.note.split(": ", 1)[-1] or r.document, "      ", columns)
    return lines


def terminal_summary(
    rows: list[Row],
    verbose: bool = False,
    columns: int = MIN_WIDTH,
    collapse: int = 5,
    write_up: WriteUp | None = None,
) -> list[str]:
    """The summary's lines, none over `columns`: the run's counts, the findings that carry over, the claims
    to look at (every claim with verbose), the claims that do not carry over counted per section, the
    totals per section and the write-up's own verdicts (one line unless verbose or a session of the
    write-up's own tables alone). write_up: the session's, for its sections' order."""
    order = list(titles(write_up))
    mine = on_run(rows)
    lines: list[str] = []
    shown: set[int] = set()
    if mine:
        runs = list(dict.fromkeys(r.run for r in mine))
        lines += wrap(("this run: " if len(runs) == 1 else f"the {len(runs)} runs: ") + run_counts(rows), "", columns)
        findings = carry_over(rows)
        lines += ["", *wrap(f"findings that carry over: {len(findings)}", "", columns)]
        also = same_reading(rows)
        for r in findings:  # -v: each in full (its fragility too)
            same = f" (also {', '.join(also[r.id])})" if r.id in also else ""
            lines += (
                entry(r, columns) if verbose else wrap(f"{r.id}{same} ({r.run}): {r.measured or '-'}", "  ", columns)
            )
        shown |= {id(r) for r in findings}
    groups = look_at(rows)
    shown |= {id(r) for group in groups.values() for r in group}
    for name, group in groups.items():
        if group:
            lines += ["", *wrap(f"{name}: {len(group)}", "", columns), *(x for r in group for x in entry(r, columns))]
    rest = not_carried_over(rows, order)
    if rest:
        n = sum(map(len, rest.values()))
        lines += ["", *wrap(f"{n} {DOES_NOT_CARRY_OVER}: {per_section(rest)}", "", columns)]
        if verbose:
            lines += [x for rs in rest.values() for r in rs for x in entry(r, columns)]
            shown |= {id(r) for rs in rest.values() for r in rs}
    if verbose:
        others = [r for r in rows if id(r) not in shown]
        lines += ["", f"every other claim: {len(others)}", *_collapsed(others, columns, collapse)]
    moved = [r for r in rows if r.moved]
    if moved:
        lines += ["", *wrap(f"cells that moved beyond their tolerance against the baseline: {len(moved)}", "", columns)]
        for r in moved:
            lines += wrap(f"{r.id} ({r.run}): {r.moved}", "  ", columns)
    lines += ["", "totals per section:"]
    for name, of_section in by_section(rows, order).items():
        lines += wrap(f"{name}: {totals(of_section)}", "  ", columns)
    lines += _own_tables(rows, verbose or not mine, columns)
    n_fragile, n_unstable = sum(map(fragile, rows)), sum(map(unstable, rows))
    summary = "totals: " + (f"this run {run_counts(rows)}" if mine else "no run")
    summary += f"; {n_fragile} FRAGILE" if n_fragile else ""
    summary += f"; {n_unstable} UNSTABLE" if n_unstable else ""
    lines += ["", *wrap(summary, "", columns)]
    if not verbose:
        lines.append("(-v lists every claim)")
    return lines
