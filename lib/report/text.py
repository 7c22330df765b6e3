"""The report's two text helpers: one number formatter and one Markdown table."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any


def num(value: float, digits: int = 4, sign: bool = False, grouping: bool = False, whole: bool = True) -> str:
    """A number as the suite prints it: `digits` significant digits, a whole number in full (`whole`;
    the cells' 354.1 and 1000 read as the write-up prints them), with a sign or thousands separators."""
    spec = ("+" if sign else "") + ("," if grouping else "")
    if whole and float(value).is_integer():
        return format(value, f"{spec}g")
    return format(value, f"{spec}.{digits}g")


def escape(text: Any) -> str:
    """A Markdown table cell's text: pipes escaped, on one line."""
    return str(text).replace("|", "\\|").replace("\n", " ")


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[Any]], aligned: bool = False) -> list[str]:
    """A Markdown table's lines. Cells are str()'d as given (escape or num them first); aligned: every
    column right-justified to its widest cell, for a terminal (`python -m lib tables`)."""
    body = [[str(c) for c in row] for row in rows]
    if not aligned:
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        return lines + ["| " + " | ".join(row) + " |" for row in body]
    widths = [max(len(h), *(len(r[i]) for r in body)) for i, h in enumerate(header)]
    line = lambda cells: "| " + " | ".join(c.rjust(w) for c, w in zip(cells, widths)) + " |"  # noqa: E731
    return [line(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *(line(r) for r in body)]
