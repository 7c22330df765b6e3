"""The claims summary for a person: one row per claim test, in the terminal and as Markdown."""

from __future__ import annotations

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
    verdict: str = ""


def verdict(outcome: str, kind: str, xfail_reason: str | None, skip_reason: str | None, note: str = "") -> str:
    """Map a pytest outcome to the summary's words."""
    if xfail_reason is not None:
        return "contradicted by the document" if kind == "document" else "does not hold (xfail)"
    if outcome == "passed":
        return "overstated by the document" + note.removeprefix("overstated") if note.startswith("overstated") else "holds"
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
    header = ("claim", "section", "kind", "document", "measured", "verdict")
    body = [(r.id, r.section, r.kind, _clip(r.document, width), _clip(r.measured, width), _clip(r.verdict, 70)) for r in shown]
    body += [(f"({len(reasons[v])} more)", "", "", "", "", v) for v in sorted(collapsed)]
    widths = [max(len(h), *(len(b[i]) for b in body)) for i, h in enumerate(header)]
    fmt = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()  # noqa: E731
    summary = ", ".join(f"{n} {k}" for k, n in counts(rows).items())
    return [fmt(header), fmt(["-" * w for w in widths]), *(fmt(b) for b in body), "", summary]


def markdown(rows: list[Row], config: dict[str, Any]) -> str:
    esc = lambda s: str(s).replace("|", "\\|")  # noqa: E731
    lines = [
        "# Experiment 7 claims report", "",
        "Run: " + ", ".join(f"`{k}={v}`" for k, v in config.items()), "",
        "Totals: " + ", ".join(f"{n} {k}" for k, n in counts(rows).items()), "",
        "| claim | section | kind | original (exp7.ja.md) | document | measured | verdict |", "|---|---|---|---|---|---|---|",
    ]
    lines += [f"| {esc(r.id)} | {r.section} | {r.kind} | {esc(r.ja)} | {esc(r.document)} | {esc(r.measured)} | {esc(r.verdict)} |"
              for r in rows]
    return "\n".join(lines) + "\n"
