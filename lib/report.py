"""The claims summary: one row per claim test and run, in the terminal, as Markdown and as JSON.

With several runs (models, texts, conventions, token windows) the Markdown adds a claim x run
matrix ("holds in k of n runs") and, for every table cell, the spread of the measured value
over the windows of each model and text beside the document's value.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any


@dataclass
class Row:
    """One claim test's outcome."""

    id: str
    section: str
    kind: str
    """cell, measured (a sentence on the measured tables) or document (on the write-up's own)."""
    document: str = ""
    measured: str = ""
    ja: str = ""
    """The Japanese phrase the sentence tests (exp7.ja.md); empty for table cells."""
    note: str = ""
    """'overstated: why' where the literal sentence goes beyond the document's tables and the qualified reading holds."""
    run: str = ""
    """The run's label (lib.runs.label); empty for claims on the document's own tables."""
    value: float | None = None
    """A table cell's measured value, shown even where the cell's tolerance check does not apply."""
    verdict: str = ""
    fragility: dict[str, Any] | None = None
    """With --fragility: the claim's row of Run.fragility (lib/fragility.py); None without."""


def fragility_text(f: dict[str, Any] | None) -> str:
    """A fragility row in a few words: k, its share and the first witnesses; FRAGILE where a claim
    that holds flips at k <= 0.5% of the positions."""
    if not f or f.get("holds") is None:
        return ""
    if f["k"] is None:
        return f"no flip within {f['budget']}"
    where = ", ".join(f"({c}, {p})" for c, p in f["positions"][:3]) + (" …" if len(f["positions"]) > 3 else "")
    return ("FRAGILE: " if f.get("fragile") else "") + f"flips at k={f['k']} ({f['share']:.1%}) dropping {where}"


def verdict(outcome: str, kind: str, xfail_reason: str | None, skip_reason: str | None, note: str = "") -> str:
    """Map a pytest outcome to the summary's words."""
    if xfail_reason is not None:
        return "contradicted by the document" if kind == "document" else "does not hold (xfail)"
    if outcome == "passed":
        return (
            "overstated by the document" + note.removeprefix("overstated") if note.startswith("overstated") else "holds"
        )
    if outcome == "skipped":
        return f"skipped: {skip_reason}" if skip_reason else "skipped"
    return "fails"


def _clip(text: str, width: int) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= width else text[: width - 1] + "…"


def counts(rows: Iterable[Row]) -> dict[str, int]:
    out: dict[str, int] = {}
    for r in rows:
        key = r.verdict.split(":")[0]
        out[key] = out.get(key, 0) + 1
    return out


def terminal_table(rows: list[Row], width: int = 44, collapse: int = 5) -> list[str]:
    """One line per claim test; skips sharing a reason more than `collapse` times become one line."""
    reasons: dict[str, list[Row]] = {}
    for r in rows:
        if r.verdict.startswith("skipped"):
            reasons.setdefault(r.verdict, []).append(r)
    collapsed = {v for v, rs in reasons.items() if len(rs) > collapse}
    shown = [r for r in rows if r.verdict not in collapsed]
    header: tuple[str, ...] = ("claim", "section", "kind", "run", "document", "measured", "verdict")
    body = [
        (r.id, r.section, r.kind, r.run, _clip(r.document, width), _clip(r.measured, width), _clip(r.verdict, 70))
        for r in shown
    ]
    body += [(f"({len(reasons[v])} more)", "", "", "", "", "", v) for v in sorted(collapsed)]
    if any(r.fragility for r in rows):  # --fragility
        header += ("fragility",)
        texts = [_clip(fragility_text(r.fragility), width) for r in shown] + [""] * len(collapsed)
        body = [(*b, text) for b, text in zip(body, texts)]
    widths = [max(len(h), *(len(b[i]) for b in body)) for i, h in enumerate(header)]
    fmt = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()  # noqa: E731
    summary = ", ".join(f"{n} {k}" for k, n in counts(rows).items())
    fragile = sum(bool(r.fragility and r.fragility.get("fragile")) for r in rows)
    summary += f"; {fragile} fragile (hold, but flip when at most 0.5% of the positions are dropped)" if fragile else ""
    return [fmt(header), fmt(["-" * w for w in widths]), *(fmt(b) for b in body), "", summary]


def _short(verdict: str) -> str:
    return verdict.split(":")[0].replace(" by the document", "").replace(" (xfail)", "")


def matrix(rows: list[Row], runs: list[str]) -> list[str]:
    """Markdown lines: one row per claim test (cells and sentences), one column per run."""
    by_claim: dict[tuple[str, str], dict[str, Row]] = {}
    for r in rows:
        if r.run:
            by_claim.setdefault((r.id, r.kind), {})[r.run] = r
    lines = ["| claim | kind | " + " | ".join(runs) + " | holds in |", "|---|---|" + "---|" * len(runs) + "---|"]
    for (claim, kind), cells in by_claim.items():
        verdicts = [_short(cells[run].verdict) if run in cells else "" for run in runs]
        held = sum(v in ("holds", "overstated") for v in verdicts)
        lines.append(f"| {claim} | {kind} | " + " | ".join(verdicts) + f" | {held} of {len(runs)} runs |")
    return lines


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
    lines = ["| cell | runs | windows | document | mean | sd | min–max |", "|---|---|---|---|---|---|---|"]
    for (cell, group), values in groups.items():
        if len(values) < 2:
            continue
        mean = statistics.mean(values)
        lines.append(
            f"| {cell} | {group} | {len(values)} | {document[cell]} | {mean:.4g} | {statistics.stdev(values):.3g} | "
            f"{min(values):.4g}–{max(values):.4g} |"
        )
    return lines if len(lines) > 2 else []


def markdown(rows: list[Row], runs: dict[str, dict[str, Any]], figure: str | None = None) -> str:
    """The report: runs, totals, the claim x run matrix and window spreads (several runs), every row.

    runs: label -> the run's config (JSON), plus 'group' (the label without its window).
    """
    esc = lambda s: str(s).replace("|", "\\|")  # noqa: E731
    lines = [
        "# Experiment 7 claims report",
        "",
        "## Runs",
        "",
        "| run | model | text | positions | numerics | position policy | window | device |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, c in runs.items():
        lines.append(
            f"| {name} | `{c.get('model')}` | `{c.get('dataset')}` | {c.get('n_tokens')} | {c.get('numerics')} | "
            f"{c.get('positions')} | {c.get('window', 0)} | {c.get('device')} |"
        )
    lines += ["", "Totals: " + ", ".join(f"{n} {k}" for k, n in counts(rows).items()), ""]
    if figure:
        lines += [f"![document vs measured]({figure})", ""]
    if len(runs) > 1:
        lines += ["## Claims across runs", "", *matrix(rows, list(runs)), ""]
        spread = window_spread(rows, runs)
        if spread:
            lines += ["## Table cells across token windows", "", *spread, ""]
    fragility = any(r.fragility for r in rows)  # --fragility: one more column
    lines += [
        "## Every claim test",
        "",
        "| claim | section | kind | run | original (exp7.ja.md) | document | measured | verdict |"
        + (" fragility |" if fragility else ""),
        "|---|---|---|---|---|---|---|---|" + ("---|" if fragility else ""),
    ]
    lines += [
        f"| {esc(r.id)} | {r.section} | {r.kind} | {r.run} | {esc(r.ja)} | {esc(r.document)} | {esc(r.measured)} | {esc(r.verdict)} |"
        + (f" {esc(fragility_text(r.fragility))} |" if fragility else "")
        for r in rows
    ]
    return "\n".join(lines) + "\n"


def json_rows(rows: list[Row]) -> list[dict[str, Any]]:
    """--claims-json: one object per claim test and run."""
    return [
        {
            "claim": r.id,
            "section": r.section,
            "kind": r.kind,
            "run": r.run,
            "document": r.document,
            "measured": r.measured,
            "value": r.value,
            "verdict": r.verdict,
            "ja": r.ja,
            **({"fragility": r.fragility} if r.fragility else {}),
        }
        for r in rows
    ]
